//! YuNet face detection (OpenCV Zoo `face_detection_yunet_2023mar.onnx`).
//!
//! The model takes a `[1, 3, H, W]` BGR tensor of raw 0..255 values. The shipped file's H and W
//! are dynamic, so each frame is scaled to a long side of `input_size` and padded to a multiple of
//! 32 only; a model with a fixed square input gets that square (see [`super::letterbox`]). It is
//! anchor-free: each of the three strides (8, 16, 32)
//! predicts one face per grid cell, decoded as in OpenCV's `FaceDetectorYN` (the formula is in
//! `models/README.md`), then greedy NMS, then back to the frame's pixels.

use std::path::PathBuf;

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};

use super::letterbox::Letterbox;
use super::runtime::{Runtime, SessionOptions};
use super::{Detector, VisionError};

const STRIDES: [usize; 3] = [8, 16, 32];
/// A dynamic input's sides are padded to a multiple of this, so every stride's grid is whole.
const COARSEST_STRIDE: u32 = 32;
const INPUT: &str = "input";

/// The `[detector]` table of `cameras.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorSpec {
    /// YuNet ONNX file. Default `models/face_detection_yunet_2023mar.onnx` (the config module
    /// resolves it relative to the config file).
    #[serde(default = "default_detector_model")]
    pub model: PathBuf,
    /// Minimum face score, `sqrt(cls * obj)`. Default 0.6: OpenCV's 0.9 misses the small faces
    /// of a group photo, and the quality gate filters again before recognition.
    #[serde(default = "default_score_threshold")]
    pub score_threshold: f32,
    /// IoU above which the lower-scoring of two boxes is suppressed. Default 0.3 (OpenCV's).
    #[serde(default = "default_nms_threshold")]
    pub nms_threshold: f32,
    /// At most this many candidates (best first) enter NMS. Default 5000 (OpenCV's).
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// The long side frames are scaled to (the side of a fixed square model input). Default 640,
    /// the size YuNet 2023mar is exported with.
    #[serde(default = "default_input_size")]
    pub input_size: u32,
}

fn default_detector_model() -> PathBuf {
    "models/face_detection_yunet_2023mar.onnx".into()
}
fn default_score_threshold() -> f32 {
    0.6
}
fn default_nms_threshold() -> f32 {
    0.3
}
fn default_top_k() -> usize {
    5000
}
fn default_input_size() -> u32 {
    640
}

impl Default for DetectorSpec {
    fn default() -> Self {
        DetectorSpec {
            model: default_detector_model(),
            score_threshold: default_score_threshold(),
            nms_threshold: default_nms_threshold(),
            top_k: default_top_k(),
            input_size: default_input_size(),
        }
    }
}

/// An axis-aligned box in pixels: top-left corner, width, height.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl BBox {
    pub fn area(&self) -> f32 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    /// Intersection over union; 0 for disjoint or empty boxes.
    pub fn iou(&self, o: &BBox) -> f32 {
        let iw = (self.x + self.w).min(o.x + o.w) - self.x.max(o.x);
        let ih = (self.y + self.h).min(o.y + o.h) - self.y.max(o.y);
        if iw <= 0.0 || ih <= 0.0 {
            return 0.0;
        }
        let inter = iw * ih;
        inter / (self.area() + o.area() - inter)
    }

    /// The part of the box inside a `w` x `h` image (possibly empty).
    pub fn clip(&self, w: u32, h: u32) -> BBox {
        let x1 = self.x.clamp(0.0, w as f32);
        let y1 = self.y.clamp(0.0, h as f32);
        let x2 = (self.x + self.w).clamp(0.0, w as f32);
        let y2 = (self.y + self.h).clamp(0.0, h as f32);
        BBox { x: x1, y: y1, w: x2 - x1, h: y2 - y1 }
    }
}

/// One face. `bbox` is clipped to the image (it is what crops and size checks use); the
/// landmarks are kept as predicted, even outside the image, because alignment needs them whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub bbox: BBox,
    pub score: f32,
    /// Right eye, left eye, nose tip, right and left mouth corners (the subject's right first,
    /// i.e. image-left), in image pixels: the order of the ArcFace template.
    pub landmarks: [[f32; 2]; 5],
}

/// YuNet with its session and reusable letterbox buffers. One per worker thread.
pub struct YuNet {
    session: Session,
    spec: DetectorSpec,
    letterbox: Letterbox,
}

impl YuNet {
    /// Loads the model and checks that its input is `[1, 3, S, S]` with `S = spec.input_size`
    /// (frames letterboxed to that square) or has a dynamic height and width (frames scaled to
    /// a long side of `S` and padded to a multiple of 32 only), and that the twelve
    /// `cls/obj/bbox/kps_{8,16,32}` outputs exist.
    pub fn load(rt: &Runtime, spec: DetectorSpec, opts: &SessionOptions) -> Result<YuNet, VisionError> {
        let session = rt.session(&spec.model, opts)?;
        let mismatch = |detail: String| VisionError::ModelMismatch { model: spec.model.clone(), detail };
        let s = i64::from(spec.input_size);
        let letterbox = match session.inputs().iter().find(|i| i.name() == INPUT) {
            None => return Err(mismatch(format!("no input named `{INPUT}`"))),
            Some(i) => match i.dtype().tensor_shape().map(|s| s.to_vec()).unwrap_or_default()[..] {
                [1, 3, h, w] if h == s && w == s => Letterbox::new(spec.input_size),
                // Dynamic height and width (the shipped model, see models/README.md): each frame at
                // its own aspect ratio, padded to the coarsest stride.
                [1, 3, h, w] if h < 0 && w < 0 => Letterbox::fitting(spec.input_size, COARSEST_STRIDE),
                ref shape => {
                    return Err(mismatch(format!(
                        "input `{INPUT}` has shape {shape:?}, expected [1, 3, {s}, {s}] or a dynamic \
                         height and width"
                    )));
                }
            },
        };
        for name in output_names() {
            if !session.outputs().iter().any(|o| o.name() == name) {
                return Err(mismatch(format!("no output named `{name}`")));
            }
        }
        Ok(YuNet { session, spec, letterbox })
    }

    pub fn spec(&self) -> &DetectorSpec {
        &self.spec
    }
}

fn output_names() -> impl Iterator<Item = String> {
    STRIDES.iter().flat_map(|s| ["cls", "obj", "bbox", "kps"].map(move |k| format!("{k}_{s}")))
}

impl Detector for YuNet {
    fn detect(&mut self, img: &RgbImage) -> Result<Vec<Detection>, VisionError> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Ok(Vec::new());
        }
        let (sx, sy) = self.letterbox.fill(img);
        let (width, height) = self.letterbox.dims();
        let fail = |reason: String| VisionError::Inference {
            stage: "detect",
            model: self.spec.model.clone(),
            reason,
        };
        let input = TensorRef::from_array_view(([1usize, 3, height, width], self.letterbox.tensor()))
            .map_err(|e| fail(e.to_string()))?;
        let outputs = self.session.run(ort::inputs![INPUT => input]).map_err(|e| fail(e.to_string()))?;
        let mut cands = Vec::new();
        for stride in STRIDES {
            let get = |k: &str| -> Result<&[f32], VisionError> {
                let name = format!("{k}_{stride}");
                let v = outputs.get(&name).ok_or_else(|| fail(format!("no output `{name}`")))?;
                v.try_extract_tensor::<f32>().map(|(_, d)| d).map_err(|e| fail(format!("{name}: {e}")))
            };
            let raw = RawStride { cls: get("cls")?, obj: get("obj")?, bbox: get("bbox")?, kps: get("kps")? };
            decode_stride(stride, (width, height), &raw, self.spec.score_threshold, &mut cands)
                .map_err(|e| fail(format!("stride {stride}: {e}")))?;
        }
        drop(outputs);
        let kept = nms(cands, self.spec.nms_threshold, self.spec.top_k);
        Ok(kept
            .into_iter()
            .filter_map(|d| {
                let landmarks = d.landmarks.map(|[x, y]| [x / sx, y / sy]);
                let b = BBox { x: d.bbox.x / sx, y: d.bbox.y / sy, w: d.bbox.w / sx, h: d.bbox.h / sy };
                let bbox = b.clip(w, h);
                (bbox.area() > 0.0).then_some(Detection { bbox, score: d.score, landmarks })
            })
            .collect())
    }
}

/// The four raw outputs of one stride.
pub struct RawStride<'a> {
    pub cls: &'a [f32],
    pub obj: &'a [f32],
    pub bbox: &'a [f32],
    pub kps: &'a [f32],
}

/// Decodes one stride's grid into candidates (in input-tensor pixels) scoring at least
/// `threshold`, appended to `out`.
pub fn decode_stride(
    stride: usize,
    (width, height): (usize, usize),
    raw: &RawStride<'_>,
    threshold: f32,
    out: &mut Vec<Detection>,
) -> Result<(), String> {
    let cols = width / stride;
    let n = cols * (height / stride);
    if raw.cls.len() != n || raw.obj.len() != n || raw.bbox.len() != 4 * n || raw.kps.len() != 10 * n {
        return Err(format!(
            "unexpected output sizes cls {} obj {} bbox {} kps {} for {n} cells",
            raw.cls.len(),
            raw.obj.len(),
            raw.bbox.len(),
            raw.kps.len()
        ));
    }
    let s = stride as f32;
    let cells = raw.cls.iter().zip(raw.obj).zip(raw.bbox.chunks_exact(4)).zip(raw.kps.chunks_exact(10));
    for (idx, (((&cls, &obj), b), k)) in cells.enumerate() {
        let score = (cls.clamp(0.0, 1.0) * obj.clamp(0.0, 1.0)).sqrt();
        if score < threshold {
            continue;
        }
        let (r, c) = ((idx / cols) as f32, (idx % cols) as f32);
        let cx = (c + b[0]) * s;
        let cy = (r + b[1]) * s;
        let bw = b[2].exp() * s;
        let bh = b[3].exp() * s;
        let mut landmarks = [[0f32; 2]; 5];
        for (i, lm) in landmarks.iter_mut().enumerate() {
            *lm = [(k[2 * i] + c) * s, (k[2 * i + 1] + r) * s];
        }
        out.push(Detection {
            bbox: BBox { x: cx - bw / 2.0, y: cy - bh / 2.0, w: bw, h: bh },
            score,
            landmarks,
        });
    }
    Ok(())
}

/// Greedy non-maximum suppression: best score first, the `top_k` best candidates only, a box is
/// dropped when its IoU with an already kept one exceeds `iou`. Returns best first.
pub fn nms(mut cands: Vec<Detection>, iou: f32, top_k: usize) -> Vec<Detection> {
    cands.sort_by(|a, b| b.score.total_cmp(&a.score));
    cands.truncate(top_k);
    let mut kept: Vec<Detection> = Vec::new();
    for c in cands {
        if kept.iter().all(|k| k.bbox.iou(&c.bbox) <= iou) {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, y: f32, w: f32, h: f32, score: f32) -> Detection {
        Detection { bbox: BBox { x, y, w, h }, score, landmarks: [[0.0; 2]; 5] }
    }

    #[test]
    fn iou_basics() {
        let a = BBox { x: 0.0, y: 0.0, w: 10.0, h: 10.0 };
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&BBox { x: 20.0, y: 0.0, w: 5.0, h: 5.0 }), 0.0);
        let half = BBox { x: 5.0, y: 0.0, w: 10.0, h: 10.0 };
        assert!((a.iou(&half) - 50.0 / 150.0).abs() < 1e-6);
    }

    #[test]
    fn clip_keeps_the_inside() {
        let b = BBox { x: -5.0, y: 90.0, w: 20.0, h: 20.0 }.clip(100, 100);
        assert_eq!(b, BBox { x: 0.0, y: 90.0, w: 15.0, h: 10.0 });
        assert_eq!(BBox { x: 200.0, y: 0.0, w: 5.0, h: 5.0 }.clip(100, 100).area(), 0.0);
    }

    #[test]
    fn nms_suppresses_overlaps_and_honours_top_k() {
        let c = vec![
            det(0.0, 0.0, 10.0, 10.0, 0.7),
            det(1.0, 1.0, 10.0, 10.0, 0.9),
            det(50.0, 50.0, 10.0, 10.0, 0.8),
        ];
        let kept = nms(c.clone(), 0.3, 100);
        assert_eq!(kept.iter().map(|d| d.score).collect::<Vec<_>>(), vec![0.9, 0.8]);
        assert_eq!(nms(c, 0.3, 1).len(), 1);
    }

    #[test]
    fn decode_follows_the_formula() {
        // A 16x16 input at stride 8 is a 2x2 grid; light up cell (r=1, c=0).
        let mut cls = vec![0.0; 4];
        let mut obj = vec![0.0; 4];
        cls[2] = 0.81;
        obj[2] = 1.5; // clamped to 1
        let mut bbox = vec![0.0; 16];
        bbox[8..12].copy_from_slice(&[0.5, 0.25, 0.0, (2.0f32).ln()]);
        let mut kps = vec![0.0; 40];
        kps[20..30].copy_from_slice(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]);
        let raw = RawStride { cls: &cls, obj: &obj, bbox: &bbox, kps: &kps };
        let mut out = Vec::new();
        decode_stride(8, (16, 16), &raw, 0.5, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        let d = &out[0];
        assert!((d.score - 0.9).abs() < 1e-6);
        // cx = (0 + 0.5) * 8 = 4, cy = (1 + 0.25) * 8 = 10, w = 8, h = 16.
        assert_eq!(d.bbox, BBox { x: 0.0, y: 2.0, w: 8.0, h: 16.0 });
        assert!((d.landmarks[0][0] - 0.8).abs() < 1e-5 && (d.landmarks[0][1] - 9.6).abs() < 1e-5);
        assert!(decode_stride(8, (32, 32), &raw, 0.5, &mut out).is_err());
        // The same four cells as a 32x8 input: one row of four, cell 2 at column 2.
        out.clear();
        decode_stride(8, (32, 8), &raw, 0.5, &mut out).unwrap();
        assert_eq!(out[0].bbox, BBox { x: 16.0, y: -6.0, w: 8.0, h: 16.0 });
    }

    #[test]
    fn spec_defaults() {
        let s: DetectorSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(s, DetectorSpec::default());
    }
}
