//! The quality gate between detection and recognition.
//!
//! Embeddings of tiny, doubtful or blurred faces are noise: they match nobody reliably and, worse,
//! sometimes match the wrong person with a confident score. Rejecting them is cheaper than
//! embedding them, and the reason is counted (`reason` label) so that an operator can see whether
//! a camera is too far, too dark or out of focus.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::detect::Detection;
use crate::instrument::RejectReason;

/// The `[quality]` table of `cameras.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualitySpec {
    /// Minimum face size in pixels, `min(w, h)` of the (clipped) box. Default 32: below that
    /// the 112x112 crop is more than 3.5x interpolation and SFace's scores drift.
    #[serde(default = "default_min_face")]
    pub min_face: f32,
    /// Minimum detector score. Default 0.65: above the detector's own threshold (0.6), kept low
    /// so that small faces are still found. On the test photos real faces score 0.71-0.96
    /// (tightly cropped portraits lowest), while a skull mask scores 0.56 and a stray box in
    /// `terminator_crop.jpg` 0.60.
    #[serde(default = "default_min_score")]
    pub min_score: f32,
    /// Minimum variance of the Laplacian of the grey aligned crop (a sharpness measure; 0
    /// disables the check). Default 25. Measured on the test photos' 112x112 crops: sharp faces
    /// 205-2400; the same crops blurred with a Gaussian of sigma 1 give 24-128, sigma 1.5 11-44,
    /// sigma 2 6-21; 60-70 px faces (upsampled into the crop) 39-470. So 25 rejects real
    /// defocus or motion blur but not mere low resolution, which `min_face` handles.
    #[serde(default = "default_min_sharpness")]
    pub min_sharpness: f32,
}

fn default_min_face() -> f32 {
    32.0
}
fn default_min_score() -> f32 {
    0.65
}
fn default_min_sharpness() -> f32 {
    25.0
}

impl Default for QualitySpec {
    fn default() -> Self {
        QualitySpec {
            min_face: default_min_face(),
            min_score: default_min_score(),
            min_sharpness: default_min_sharpness(),
        }
    }
}

/// Why a face was not sent to recognition, with the value that failed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rejection {
    /// `min(w, h)` of the box, in pixels.
    TooSmall { size: f32 },
    /// The detector score.
    LowScore { score: f32 },
    /// The Laplacian variance of the aligned crop.
    Blurry { sharpness: f32 },
}

impl Rejection {
    /// The bounded reason, without the value (the metric label).
    pub fn reason(&self) -> RejectReason {
        match self {
            Rejection::TooSmall { .. } => RejectReason::TooSmall,
            Rejection::LowScore { .. } => RejectReason::LowScore,
            Rejection::Blurry { .. } => RejectReason::Blurry,
        }
    }

    /// A stable, bounded label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        self.reason().as_str()
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::TooSmall { size } => write!(f, "too_small ({size:.0} px)"),
            Rejection::LowScore { score } => write!(f, "low_score ({score:.3})"),
            Rejection::Blurry { sharpness } => write!(f, "blurry (sharpness {sharpness:.1})"),
        }
    }
}

/// Applies a [`QualitySpec`]. Cheap checks (size, score) come first so that the crop is only
/// measured for faces that pass them.
#[derive(Debug, Clone, Default)]
pub struct QualityGate {
    spec: QualitySpec,
}

impl QualityGate {
    pub fn new(spec: QualitySpec) -> QualityGate {
        QualityGate { spec }
    }

    pub fn spec(&self) -> &QualitySpec {
        &self.spec
    }

    /// Checks the detection alone (size, score); no crop needed.
    pub fn check_detection(&self, det: &Detection) -> Result<(), Rejection> {
        let size = det.bbox.w.min(det.bbox.h);
        if size < self.spec.min_face {
            return Err(Rejection::TooSmall { size });
        }
        if det.score < self.spec.min_score {
            return Err(Rejection::LowScore { score: det.score });
        }
        Ok(())
    }

    /// Checks the detection, then the sharpness of its aligned crop. Returns the sharpness
    /// (the Laplacian variance), which the tracker's quality score uses too.
    pub fn check(&self, det: &Detection, crop: &RgbImage) -> Result<f32, Rejection> {
        self.check_detection(det)?;
        let sharpness = laplacian_variance(crop);
        if sharpness < self.spec.min_sharpness {
            return Err(Rejection::Blurry { sharpness });
        }
        Ok(sharpness)
    }
}

/// Variance of the 4-neighbour Laplacian (`cv2.Laplacian(gray, CV_64F, ksize=1)`) over the
/// interior of the grey image (BT.601 luma, as `cv2.COLOR_RGB2GRAY`). Higher is sharper.
pub fn laplacian_variance(img: &RgbImage) -> f32 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let gray: Vec<f32> = img
        .as_raw()
        .chunks_exact(3)
        .map(|p| (0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])).round())
        .collect();
    let (mut sum, mut sum2) = (0f64, 0f64);
    for y in 1..h - 1 {
        let (up, row, down) =
            (&gray[(y - 1) * w..y * w], &gray[y * w..(y + 1) * w], &gray[(y + 1) * w..(y + 2) * w]);
        for x in 1..w - 1 {
            let l = f64::from(up[x] + down[x] + row[x - 1] + row[x + 1] - 4.0 * row[x]);
            sum += l;
            sum2 += l * l;
        }
    }
    let n = ((w - 2) * (h - 2)) as f64;
    let mean = sum / n;
    (sum2 / n - mean * mean) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::detect::BBox;

    fn det(size: f32, score: f32) -> Detection {
        Detection { bbox: BBox { x: 0.0, y: 0.0, w: size, h: size * 1.2 }, score, landmarks: [[0.0; 2]; 5] }
    }

    fn checkerboard(cell: u32) -> RgbImage {
        RgbImage::from_fn(112, 112, |x, y| {
            let v = if (x / cell + y / cell).is_multiple_of(2) { 0 } else { 255 };
            image::Rgb([v, v, v])
        })
    }

    #[test]
    fn flat_image_has_zero_sharpness_and_edges_have_a_lot() {
        assert_eq!(laplacian_variance(&RgbImage::from_pixel(112, 112, image::Rgb([90, 90, 90]))), 0.0);
        assert!(laplacian_variance(&checkerboard(4)) > 10_000.0);
    }

    #[test]
    fn reasons_in_order_and_stable_names() {
        let gate = QualityGate::default();
        let sharp = checkerboard(4);
        let flat = RgbImage::from_pixel(112, 112, image::Rgb([90, 90, 90]));
        assert_eq!(gate.check(&det(10.0, 0.99), &sharp).unwrap_err().as_str(), "too_small");
        assert_eq!(gate.check(&det(80.0, 0.62), &sharp).unwrap_err().as_str(), "low_score");
        assert_eq!(gate.check(&det(80.0, 0.95), &flat).unwrap_err().as_str(), "blurry");
        assert!(gate.check(&det(80.0, 0.95), &sharp).unwrap() > 1000.0);
    }

    #[test]
    fn zero_disables_the_blur_check() {
        let gate = QualityGate::new(QualitySpec { min_sharpness: 0.0, ..QualitySpec::default() });
        let flat = RgbImage::from_pixel(112, 112, image::Rgb([90, 90, 90]));
        assert_eq!(gate.check(&det(80.0, 0.95), &flat), Ok(0.0));
    }

    #[test]
    fn spec_defaults() {
        let s: QualitySpec = serde_json::from_str("{}").unwrap();
        assert_eq!(s, QualitySpec::default());
    }
}
