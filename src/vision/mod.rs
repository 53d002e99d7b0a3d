//! Face vision: ONNX Runtime loading, YuNet detection, the quality gate, five-point alignment and
//! embedding.
//!
//! Everything here is synchronous and CPU-bound: callers run it on dedicated OS threads that own
//! their models (`ort`'s `Session::run` takes `&mut self`), never inline in async tasks.
//!
//! # Layout
//! - [`runtime`]: loads the ONNX Runtime shared library once per process and builds sessions.
//! - [`letterbox`]: the resize + pad to the detector's square input, straight into an NCHW tensor.
//! - [`detect`]: YuNet ([`YuNet`], [`DetectorSpec`]): decode, NMS, back to image coordinates.
//! - [`align`]: Umeyama similarity onto the ArcFace 112x112 template, bilinear warp.
//! - [`quality`]: size / score / blur gate ([`QualityGate`], [`QualitySpec`], [`Rejection`]).
//! - [`embed`]: any recogniser described by data ([`RecognizerSpec`], [`OnnxEmbedder`]).
//! - [`image_io`]: decoding image files with size limits checked before decoding.
//! - [`pipeline`]: [`FacePipeline`], detect → align → gate → embed in one call.
//! - [`prelu`]: a load-time rewrite of PRelu nodes, which ONNX Runtime runs slowly.
//!
//! The seams that tests fake are the [`Detector`] and [`Embedder`] traits; [`FakeDetector`] and
//! [`FakeEmbedder`] stand in for the models where a test is about plumbing, not faces.

pub mod align;
pub mod detect;
pub mod embed;
pub mod image_io;
pub mod letterbox;
pub mod pipeline;
pub mod prelu;
pub mod quality;
pub mod runtime;

use std::path::PathBuf;

use image::RgbImage;

pub use align::{ARCFACE_TEMPLATE, align_face, similarity_transform};
pub use detect::{BBox, Detection, DetectorSpec, YuNet};
pub use embed::{ColorOrder, MAX_EMBEDDING_DIM, OnnxEmbedder, RecognizerSpec};
pub use image_io::{ImageLimits, decode_image_bytes, decode_image_file, read_image_file};
pub use pipeline::{AlignedFace, FaceOutcome, FacePipeline, Verdict};
pub use quality::{QualityGate, QualitySpec, Rejection, laplacian_variance};
pub use runtime::{OptLevel, Runtime, SessionOptions};

/// Errors from the vision stages. Each variant names the file or model involved so that a log
/// line is enough to act on, without reproducing.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    /// The ONNX Runtime shared library could not be found or loaded. Permanent: fail at startup.
    #[error(
        "cannot load ONNX Runtime from {}: {reason}; run scripts/setup.sh to fetch it, \
         or set ORT_DYLIB_PATH to a libonnxruntime.so (1.17 or later)",
        path.display()
    )]
    Runtime { path: PathBuf, reason: String },

    /// A model file is missing or ONNX Runtime refused it.
    #[error("cannot load model {}: {reason}", model.display())]
    ModelLoad { model: PathBuf, reason: String },

    /// The model loaded but its inputs/outputs do not match what the spec describes.
    #[error("model {} does not match its spec: {detail}", model.display())]
    ModelMismatch { model: PathBuf, detail: String },

    /// Inference failed at run time (`stage` is e.g. `detect` or `embed`).
    #[error("{stage} failed with model {}: {reason}", model.display())]
    Inference { stage: &'static str, model: PathBuf, reason: String },

    /// The caller passed something the stage cannot use (e.g. a crop of the wrong size).
    #[error("{stage}: invalid input: {detail}")]
    InvalidInput { stage: &'static str, detail: String },

    /// An image file could not be read or decoded, or it is larger than the limits.
    #[error("cannot decode image {}: {reason}", path.display())]
    Image { path: PathBuf, reason: String },
}

/// Finds faces in a frame. The seam between the camera threads and the model, so that pipeline
/// tests can run without ONNX Runtime.
pub trait Detector: Send {
    /// Detections in `img`'s pixel coordinates, best score first.
    fn detect(&mut self, img: &RgbImage) -> Result<Vec<Detection>, VisionError>;
}

/// Turns aligned face crops into L2-normalised embeddings.
pub trait Embedder: Send {
    /// Short id of the model (e.g. `sface-2021dec-fp32`), stored next to cached results so that
    /// embeddings from different models are never compared.
    fn model_id(&self) -> &str;
    /// Length of each embedding.
    fn dim(&self) -> usize;
    /// Side of the square crop the model takes (the aligned crop size).
    fn input_size(&self) -> u32;
    /// One embedding per crop, in order. Each crop must be `input_size` square.
    fn embed(&mut self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>, VisionError>;
}

impl<T: Detector + ?Sized> Detector for Box<T> {
    fn detect(&mut self, img: &RgbImage) -> Result<Vec<Detection>, VisionError> {
        (**self).detect(img)
    }
}

impl<T: Embedder + ?Sized> Embedder for Box<T> {
    fn model_id(&self) -> &str {
        (**self).model_id()
    }
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn input_size(&self) -> u32 {
        (**self).input_size()
    }
    fn embed(&mut self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>, VisionError> {
        (**self).embed(crops)
    }
}

/// A [`Detector`] that returns the same detections for every frame, and counts its calls.
#[derive(Debug, Clone, Default)]
pub struct FakeDetector {
    /// What every call returns.
    pub detections: Vec<Detection>,
    /// Number of frames seen.
    pub calls: usize,
}

impl FakeDetector {
    pub fn new(detections: Vec<Detection>) -> Self {
        FakeDetector { detections, calls: 0 }
    }
}

impl Detector for FakeDetector {
    fn detect(&mut self, _img: &RgbImage) -> Result<Vec<Detection>, VisionError> {
        self.calls += 1;
        Ok(self.detections.clone())
    }
}

/// An [`Embedder`] whose embedding is a deterministic function of the crop's pixels: identical
/// crops give identical embeddings, different crops (almost surely) different ones. Records the
/// batch sizes it was called with, so tests can check batching.
#[derive(Debug, Clone)]
pub struct FakeEmbedder {
    pub dim: usize,
    pub input_size: u32,
    /// Length of `crops` at each call.
    pub batches: Vec<usize>,
}

impl FakeEmbedder {
    pub fn new(dim: usize) -> Self {
        FakeEmbedder { dim, input_size: 112, batches: Vec::new() }
    }
}

impl Embedder for FakeEmbedder {
    fn model_id(&self) -> &str {
        "fake"
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn input_size(&self) -> u32 {
        self.input_size
    }
    fn embed(&mut self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>, VisionError> {
        self.batches.push(crops.len());
        Ok(crops
            .iter()
            .map(|crop| {
                // Spread the pixels over `dim` buckets with a cheap hash of their position.
                let mut v = vec![0f32; self.dim];
                for (i, &b) in crop.as_raw().iter().enumerate() {
                    let k = (i.wrapping_mul(2_654_435_761)) % self.dim;
                    v[k] += f32::from(b) - 127.5;
                }
                embed::l2_normalize(&mut v);
                v
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traits_are_object_safe_and_send() {
        fn assert_send<T: Send>(_: &T) {}
        let d: Box<dyn Detector> = Box::new(FakeDetector::default());
        let e: Box<dyn Embedder> = Box::new(FakeEmbedder::new(8));
        assert_send(&d);
        assert_send(&e);
    }

    #[test]
    fn fake_embedder_is_deterministic_and_normalised() {
        let mut e = FakeEmbedder::new(16);
        let a = RgbImage::from_pixel(112, 112, image::Rgb([10, 200, 30]));
        let mut b = a.clone();
        b.put_pixel(5, 5, image::Rgb([255, 0, 0]));
        let out = e.embed(&[a.clone(), a, b]).unwrap();
        assert_eq!(out[0], out[1]);
        assert_ne!(out[0], out[2]);
        let norm: f32 = out[2].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(e.batches, vec![3]);
    }

    #[test]
    fn errors_name_the_file() {
        let e = VisionError::Runtime { path: "/x/libonnxruntime.so".into(), reason: "not found".into() };
        let s = e.to_string();
        assert!(s.contains("/x/libonnxruntime.so") && s.contains("scripts/setup.sh"), "{s}");
    }
}
