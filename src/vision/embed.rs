//! Face embedding with any ONNX recogniser described by data.
//!
//! Recognisers differ only in details a config can state: tensor names, crop size, channel order,
//! normalisation, embedding length, and whether the batch dimension is dynamic. Describing them
//! in a [`RecognizerSpec`] lets a user switch from SFace (the default, Apache-2.0) to e.g. the
//! MobileFaceNet port without code changes. The spec is checked against the model when it loads,
//! so a wrong name or size fails at startup with the model file in the message, not at the first
//! face.

use std::path::PathBuf;

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};

use super::runtime::{Runtime, SessionOptions};
use super::{Embedder, VisionError};

/// Channel order the recogniser expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColorOrder {
    Rgb,
    Bgr,
}

/// Longest embedding accepted anywhere (configuration, gallery records). Real recognisers are
/// 128 to 512; checking a bound keeps `dim * 4` far from overflowing.
pub const MAX_EMBEDDING_DIM: usize = 4096;

/// The `[recognizer]` table of `cameras.toml`. Every default is SFace 2021dec's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecognizerSpec {
    /// ONNX file. Default `models/face_recognition_sface_2021dec_fp32.onnx`.
    #[serde(default = "default_model")]
    pub model: PathBuf,
    /// Short model id stored with cached results, so that embeddings of different models are
    /// never compared. Default `sface-2021dec-fp32`.
    #[serde(default = "default_id")]
    pub id: String,
    /// Input tensor name. Default `data`.
    #[serde(default = "default_input")]
    pub input: String,
    /// Output tensor name. Default `fc1`.
    #[serde(default = "default_output")]
    pub output: String,
    /// Side of the square aligned crop. Default 112.
    #[serde(default = "default_input_size")]
    pub input_size: u32,
    /// Channel order of the input. Default `rgb`.
    #[serde(default = "default_color")]
    pub color: ColorOrder,
    /// Input normalisation `x' = (x - mean) * scale` on 0..255 values. Default mean 0 (SFace
    /// normalises inside the graph; MobileFaceNet wants 127.5).
    #[serde(default = "default_mean")]
    pub mean: f32,
    /// See `mean`. Default 1 (MobileFaceNet: 0.0078125 = 1/128).
    #[serde(default = "default_scale")]
    pub scale: f32,
    /// Embedding length. Default 128 (MobileFaceNet: 192).
    #[serde(default = "default_dim")]
    pub dim: usize,
    /// Most crops per inference. Default 1, because SFace's batch dimension is fixed at 1; a
    /// batch-dynamic model (MobileFaceNet) amortises per-call overhead with e.g. 32.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Cosine similarity from which a match with this model is accepted (the matcher's
    /// threshold). It belongs to the model: cosines of different recognisers live on different
    /// scales. Default 0.363, OpenCV's published SFace threshold; for MobileFaceNet about 0.45
    /// (different-person pairs in the test photos reach 0.40, same-person pairs start at 0.51).
    #[serde(default = "default_match_threshold")]
    pub match_threshold: f32,
}

fn default_model() -> PathBuf {
    "models/face_recognition_sface_2021dec_fp32.onnx".into()
}
fn default_id() -> String {
    "sface-2021dec-fp32".into()
}
fn default_input() -> String {
    "data".into()
}
fn default_output() -> String {
    "fc1".into()
}
fn default_input_size() -> u32 {
    112
}
fn default_color() -> ColorOrder {
    ColorOrder::Rgb
}
fn default_mean() -> f32 {
    0.0
}
fn default_scale() -> f32 {
    1.0
}
fn default_dim() -> usize {
    128
}
fn default_max_batch() -> usize {
    1
}
fn default_match_threshold() -> f32 {
    0.363
}

impl Default for RecognizerSpec {
    fn default() -> Self {
        RecognizerSpec {
            model: default_model(),
            id: default_id(),
            input: default_input(),
            output: default_output(),
            input_size: default_input_size(),
            color: default_color(),
            mean: default_mean(),
            scale: default_scale(),
            dim: default_dim(),
            max_batch: default_max_batch(),
            match_threshold: default_match_threshold(),
        }
    }
}

/// A recogniser session plus its spec and a reusable input buffer. One per worker thread.
pub struct OnnxEmbedder {
    session: Session,
    spec: RecognizerSpec,
    /// The batch size the model insists on, if its batch dimension is fixed.
    fixed_batch: Option<usize>,
    buf: Vec<f32>,
}

impl OnnxEmbedder {
    /// Loads the model and checks it against the spec: input `[N, 3, S, S]` named `spec.input`,
    /// output `[N, dim]` named `spec.output`, and `max_batch` allowed by `N`.
    pub fn load(
        rt: &Runtime,
        spec: RecognizerSpec,
        opts: &SessionOptions,
    ) -> Result<OnnxEmbedder, VisionError> {
        if spec.max_batch == 0 || spec.dim == 0 || spec.input_size == 0 {
            return Err(VisionError::ModelMismatch {
                model: spec.model.clone(),
                detail: "max_batch, dim and input_size must be at least 1".into(),
            });
        }
        let session = rt.session(&spec.model, opts)?;
        let fixed_batch = check_io(&session, &spec)
            .map_err(|detail| VisionError::ModelMismatch { model: spec.model.clone(), detail })?;
        Ok(OnnxEmbedder { session, spec, fixed_batch, buf: Vec::new() })
    }

    pub fn spec(&self) -> &RecognizerSpec {
        &self.spec
    }

    fn run_batch(&mut self, crops: &[RgbImage], out: &mut Vec<Vec<f32>>) -> Result<(), VisionError> {
        let s = self.spec.input_size as usize;
        let n = self.fixed_batch.unwrap_or(crops.len());
        let plane = s * s;
        self.buf.clear();
        // A fixed-batch model gets zero padding after the real crops.
        self.buf.resize(n * 3 * plane, 0.0);
        let (mean, scale) = (self.spec.mean, self.spec.scale);
        let order = match self.spec.color {
            ColorOrder::Rgb => [0, 1, 2],
            ColorOrder::Bgr => [2, 1, 0],
        };
        for (crop, dst) in crops.iter().zip(self.buf.chunks_exact_mut(3 * plane)) {
            let (c0, rest) = dst.split_at_mut(plane);
            let (c1, c2) = rest.split_at_mut(plane);
            for (((px, a), b), c) in crop.as_raw().chunks_exact(3).zip(c0).zip(c1).zip(c2) {
                *a = (f32::from(px[order[0]]) - mean) * scale;
                *b = (f32::from(px[order[1]]) - mean) * scale;
                *c = (f32::from(px[order[2]]) - mean) * scale;
            }
        }
        let fail = |reason: String| VisionError::Inference {
            stage: "embed",
            model: self.spec.model.clone(),
            reason,
        };
        let input =
            TensorRef::from_array_view(([n, 3, s, s], &self.buf[..])).map_err(|e| fail(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.spec.input.as_str() => input])
            .map_err(|e| fail(e.to_string()))?;
        let name = &self.spec.output;
        let value = outputs.get(name).ok_or_else(|| fail(format!("no output `{name}`")))?;
        let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| fail(format!("{name}: {e}")))?;
        let dim = self.spec.dim;
        if data.len() != n * dim {
            return Err(fail(format!("output `{name}` has shape {:?}, expected [{n}, {dim}]", &shape[..])));
        }
        for row in data.chunks_exact(dim).take(crops.len()) {
            let mut v = row.to_vec();
            l2_normalize(&mut v);
            out.push(v);
        }
        Ok(())
    }
}

impl Embedder for OnnxEmbedder {
    fn model_id(&self) -> &str {
        &self.spec.id
    }
    fn dim(&self) -> usize {
        self.spec.dim
    }
    fn input_size(&self) -> u32 {
        self.spec.input_size
    }

    /// Embeds `crops` in batches of at most `max_batch`.
    fn embed(&mut self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>, VisionError> {
        let s = self.spec.input_size;
        if let Some((i, c)) = crops.iter().enumerate().find(|(_, c)| c.dimensions() != (s, s)) {
            return Err(VisionError::InvalidInput {
                stage: "embed",
                detail: format!("crop {i} is {}x{}, the model takes {s}x{s}", c.width(), c.height()),
            });
        }
        let mut out = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(self.spec.max_batch) {
            self.run_batch(chunk, &mut out)?;
        }
        Ok(out)
    }
}

/// Checks the model's declared input and output against the spec; returns the fixed batch size,
/// if any. Dynamic dimensions (-1) are accepted.
fn check_io(session: &Session, spec: &RecognizerSpec) -> Result<Option<usize>, String> {
    let shape_of = |outlets: &[ort::value::Outlet], name: &str, kind: &str| -> Result<Vec<i64>, String> {
        let o = outlets.iter().find(|o| o.name() == name).ok_or_else(|| {
            let names: Vec<&str> = outlets.iter().map(|o| o.name()).collect();
            format!("no {kind} named `{name}` (the model has {names:?})")
        })?;
        o.dtype().tensor_shape().map(|s| s.to_vec()).ok_or_else(|| format!("{kind} `{name}` is not a tensor"))
    };
    let fits = |got: i64, want: usize| got < 0 || got == want as i64;
    let s = spec.input_size as usize;
    let inp = shape_of(session.inputs(), &spec.input, "input")?;
    if inp.len() != 4 || !fits(inp[1], 3) || !fits(inp[2], s) || !fits(inp[3], s) {
        return Err(format!("input `{}` has shape {inp:?}, expected [N, 3, {s}, {s}]", spec.input));
    }
    let out = shape_of(session.outputs(), &spec.output, "output")?;
    if out.len() != 2 || !fits(out[1], spec.dim) {
        return Err(format!("output `{}` has shape {out:?}, expected [N, {}]", spec.output, spec.dim));
    }
    match inp[0] {
        n if n < 0 => Ok(None),
        n if n as usize == spec.max_batch => Ok(Some(n as usize)),
        n => Err(format!("the batch dimension is fixed at {n} but max_batch is {}", spec.max_batch)),
    }
}

/// Scales `v` to unit length (left as is when it is all zeros).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Cosine similarity of two L2-normalised vectors (their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sface() {
        let s: RecognizerSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(s, RecognizerSpec::default());
        assert_eq!((s.input.as_str(), s.output.as_str(), s.dim, s.max_batch), ("data", "fc1", 128, 1));
    }

    #[test]
    fn mobilefacenet_is_configuration_only() {
        let s: RecognizerSpec = serde_json::from_str(
            r#"{"model":"models/mobilefacenet_192d_dynbatch.onnx","id":"mobilefacenet-192d",
                "input":"input","output":"embeddings","mean":127.5,"scale":0.0078125,
                "dim":192,"max_batch":32,"color":"rgb","match_threshold":0.45}"#,
        )
        .unwrap();
        assert_eq!(s.dim, 192);
    }

    #[test]
    fn normalize_and_cosine() {
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        assert!((cosine(&v, &v) - 1.0).abs() < 1e-6);
        let mut z = vec![0.0; 3];
        l2_normalize(&mut z);
        assert_eq!(z, vec![0.0; 3]);
    }
}
