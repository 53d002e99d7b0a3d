//! Detect → align → gate → embed for one frame, the whole vision path in one call.
//!
//! Used by `identify`/`enroll` on photos and by the benchmark; the camera path may split it
//! (detect and align on the vision threads, embed on the recognise workers) with the same parts.

use image::RgbImage;

use super::align::align_face;
use super::detect::Detection;
use super::quality::{QualityGate, Rejection};
use super::{Detector, Embedder, VisionError};

/// What became of one detected face.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Passed the gate; the L2-normalised embedding.
    Embedded(Vec<f32>),
    /// Stopped by the quality gate.
    Rejected(Rejection),
}

/// One face of a frame.
#[derive(Debug, Clone)]
pub struct FaceOutcome {
    pub detection: Detection,
    /// The aligned crop, `embedder.input_size()` square.
    pub crop: RgbImage,
    pub verdict: Verdict,
}

impl FaceOutcome {
    pub fn embedding(&self) -> Option<&[f32]> {
        match &self.verdict {
            Verdict::Embedded(v) => Some(v),
            Verdict::Rejected(_) => None,
        }
    }
}

/// A detected face, aligned and judged, before embedding: what the camera side produces.
#[derive(Debug, Clone)]
pub struct AlignedFace {
    pub detection: Detection,
    /// The aligned crop, `embedder.input_size()` square.
    pub crop: RgbImage,
    /// The quality gate's decision.
    pub gate: Result<(), Rejection>,
}

/// A detector, a quality gate and an embedder, owned by one thread.
pub struct FacePipeline {
    pub detector: Box<dyn Detector>,
    pub gate: QualityGate,
    pub embedder: Box<dyn Embedder>,
}

impl FacePipeline {
    pub fn new(detector: Box<dyn Detector>, gate: QualityGate, embedder: Box<dyn Embedder>) -> Self {
        FacePipeline { detector, gate, embedder }
    }

    /// Detects and aligns every face, and applies the gate; no embedding.
    pub fn detect_and_align(&mut self, img: &RgbImage) -> Result<Vec<AlignedFace>, VisionError> {
        let size = self.embedder.input_size();
        let dets = self.detector.detect(img)?;
        Ok(dets
            .into_iter()
            .map(|detection| {
                let crop = align_face(img, &detection.landmarks, size);
                // The sharpness only matters to the tracker.
                let gate = self.gate.check(&detection, &crop).map(|_sharpness| ());
                AlignedFace { detection, crop, gate }
            })
            .collect())
    }

    /// Every face of `img`, best detection score first. The accepted faces are embedded in one
    /// [`Embedder::embed`] call, which batches them as the model allows.
    pub fn analyse(&mut self, img: &RgbImage) -> Result<Vec<FaceOutcome>, VisionError> {
        let faces = self.detect_and_align(img)?;
        let accepted: Vec<RgbImage> =
            faces.iter().filter(|f| f.gate.is_ok()).map(|f| f.crop.clone()).collect();
        let mut embeddings = if accepted.is_empty() {
            Vec::new().into_iter()
        } else {
            self.embedder.embed(&accepted)?.into_iter()
        };
        Ok(faces
            .into_iter()
            .map(|AlignedFace { detection, crop, gate }| {
                let verdict = match gate {
                    // embed() returns one embedding per crop, in order.
                    Ok(()) => Verdict::Embedded(embeddings.next().unwrap_or_default()),
                    Err(r) => Verdict::Rejected(r),
                };
                FaceOutcome { detection, crop, verdict }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::detect::BBox;
    use crate::vision::{ARCFACE_TEMPLATE, FakeDetector, FakeEmbedder, QualitySpec};

    fn det(x: f32, size: f32, score: f32) -> Detection {
        // Landmarks: the template scaled to the box, so the crop is a real part of the image.
        let k = size / 112.0;
        let landmarks = ARCFACE_TEMPLATE.map(|[lx, ly]| [x + lx * k, 10.0 + ly * k]);
        Detection { bbox: BBox { x, y: 10.0, w: size, h: size }, score, landmarks }
    }

    #[test]
    fn gate_then_embed_the_accepted_faces() {
        let img =
            RgbImage::from_fn(400, 200, |x, y| image::Rgb([(x * 7 % 256) as u8, (y * 13 % 256) as u8, 50]));
        let dets = vec![
            det(0.0, 100.0, 0.95),
            det(150.0, 10.0, 0.95),
            det(200.0, 100.0, 0.9),
            det(300.0, 90.0, 0.61),
        ];
        let gate = QualityGate::new(QualitySpec { min_sharpness: 0.0, ..QualitySpec::default() });
        let mut p =
            FacePipeline::new(Box::new(FakeDetector::new(dets)), gate, Box::new(FakeEmbedder::new(16)));
        let out = p.analyse(&img).unwrap();
        let kinds: Vec<&str> = out
            .iter()
            .map(|o| match &o.verdict {
                Verdict::Embedded(_) => "embedded",
                Verdict::Rejected(r) => r.as_str(),
            })
            .collect();
        assert_eq!(kinds, ["embedded", "too_small", "embedded", "low_score"]);
        assert!(out.iter().all(|o| o.crop.dimensions() == (112, 112)));
        assert_ne!(out[0].embedding(), out[2].embedding());
    }

    #[test]
    fn no_faces_no_embed_call() {
        let gate = QualityGate::default();
        let mut p =
            FacePipeline::new(Box::new(FakeDetector::default()), gate, Box::new(FakeEmbedder::new(4)));
        assert!(p.analyse(&RgbImage::new(10, 10)).unwrap().is_empty());
    }
}
