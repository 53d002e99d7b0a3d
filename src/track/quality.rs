//! How good a face is for recognition, as one number in [0, 1], to pick a track's best shots.
//!
//! ```text
//! quality = frontal * (0.40 size + 0.35 sharpness + 0.25 score)
//! size      = log2(min(w, h) / 16) / 3            32 px -> 0.33, 64 -> 0.67, >= 128 -> 1
//! sharpness = log10(laplacian_var / 25) / log10(20)  25 (the gate's floor) -> 0, 100 -> 0.46,
//!                                                    >= 500 -> 1
//! score     = the detector score
//! frontal   = yaw * pitch * (1 - 0.5 roll)
//! yaw       = 1 - |nose offset from the eye-mouth midline| / (0.6 eye distance)
//! pitch     = 1 - max(0, |nose position between eye line and mouth line - 0.55| - 0.1) / 0.3
//! roll      = |eye-line angle| / 45 degrees
//! ```
//! (each term clamped to [0, 1]). Why this shape:
//! - Frontalness multiplies: a face turned away gives a poor embedding however large and sharp it
//!   is, while size, sharpness and score trade off against each other, so they are summed.
//! - Size and sharpness are on log scales: both matter by ratio (a face twice as large carries
//!   the same extra detail at 40 and at 80 px), and both saturate: 128 px already fills the
//!   112x112 crop, and Laplacian variances of sharp test faces span 200-2400 depending on
//!   lighting and skin, not focus (`vision::quality` has the measurements).
//! - Yaw: the nose tip stands about 0.6 eye distances in front of the eyes, so its sideways
//!   offset from the eye-mouth midline is about 0.6 tan(yaw) eye distances: 0.35 at 30 degrees,
//!   0.6 (quality 0) at 45 degrees. Roll is corrected by alignment, so it costs at most half;
//!   pitch only counts when the nose nears the eye or mouth line. On the 29 faces of the golden
//!   test photos (near-frontal portraits, `tests/fixtures/golden`) YuNet puts the nose tip 0.51 to
//!   0.63 of the way from the eye line to the mouth line (the ArcFace template: 0.50), hence the
//!   flat band 0.45-0.65, and 0.00 to 0.20 eye distances off the midline; their frontalness
//!   is 0.63 to 1.0, median 0.84. The yaw scale is geometry, not yet measured on turned faces.
//! - The score is YuNet's confidence: 0.71-0.96 on real faces, so it separates little and weighs
//!   least.

use super::Observation;

/// Face size (pixels) at which the size term reaches 0 and 1.
const SIZE_FLOOR_PX: f32 = 16.0;
const SIZE_FULL_PX: f32 = 128.0;
/// Laplacian variance at which the sharpness term reaches 0 (the quality gate's floor) and 1.
const SHARP_FLOOR: f32 = 25.0;
const SHARP_FULL: f32 = 500.0;
/// Nose offset from the midline, in eye distances, at which yaw quality reaches 0 (about 45°).
const YAW_ZERO: f32 = 0.6;
/// Where the nose tip sits between the eye line (0) and the mouth line (1) on frontal faces, the
/// band around it that costs nothing, and how much further it may go before pitch quality is 0.
const PITCH_CENTRE: f32 = 0.55;
const PITCH_FLAT: f32 = 0.1;
const PITCH_SLOPE: f32 = 0.3;
/// Eye-line roll, in degrees, that costs the most (half the frontal term).
const ROLL_ZERO_DEG: f32 = 45.0;

/// The quality of one accepted face, in [0, 1]; NaN inputs count as the worst value.
pub fn quality(face: &Observation) -> f32 {
    let side = face.bbox.w.min(face.bbox.h);
    let size = unit((side / SIZE_FLOOR_PX).log2() / (SIZE_FULL_PX / SIZE_FLOOR_PX).log2());
    let sharp = unit((face.sharpness / SHARP_FLOOR).log10() / (SHARP_FULL / SHARP_FLOOR).log10());
    let score = unit(face.score);
    unit(frontalness(&face.landmarks) * (0.40 * size + 0.35 * sharp + 0.25 * score))
}

/// Frontalness in [0, 1] from YuNet's five landmarks: the subject's right eye, left eye, nose
/// tip, right and left mouth corners.
pub fn frontalness(lm: &[[f32; 2]; 5]) -> f32 {
    let [re, le, nose, rm, lmo] = *lm;
    let mid = |a: [f32; 2], b: [f32; 2]| [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];
    let (eyes, mouth) = (mid(re, le), mid(rm, lmo));
    let eye_vec = [le[0] - re[0], le[1] - re[1]];
    let eye_dist = eye_vec[0].hypot(eye_vec[1]);
    // The midline runs from the eyes' midpoint to the mouth's.
    let axis = [mouth[0] - eyes[0], mouth[1] - eyes[1]];
    let axis_len = axis[0].hypot(axis[1]);
    if !(eye_dist > 1e-3 && axis_len > 1e-3) {
        return 0.0;
    }
    let to_nose = [nose[0] - eyes[0], nose[1] - eyes[1]];
    // Perpendicular (cross product) and along-axis (dot product) parts of the nose position.
    let offset = (axis[0] * to_nose[1] - axis[1] * to_nose[0]).abs() / axis_len;
    let along = (axis[0] * to_nose[0] + axis[1] * to_nose[1]) / (axis_len * axis_len);
    let yaw = unit(1.0 - offset / (YAW_ZERO * eye_dist));
    let pitch = unit(1.0 - ((along - PITCH_CENTRE).abs() - PITCH_FLAT).max(0.0) / PITCH_SLOPE);
    let roll_deg = eye_vec[1].atan2(eye_vec[0]).to_degrees().abs();
    let roll = unit(roll_deg / ROLL_ZERO_DEG);
    unit(yaw * pitch * (1.0 - 0.5 * roll))
}

/// Clamps to [0, 1], NaN to 0.
fn unit(x: f32) -> f32 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::{ARCFACE_TEMPLATE, BBox};

    /// A face of side `side` at (100, 100) with the ArcFace template's landmarks scaled to it.
    fn face(side: f32, sharpness: f32, score: f32) -> Observation {
        let k = side / 112.0;
        let landmarks = ARCFACE_TEMPLATE.map(|[x, y]| [100.0 + x * k, 100.0 + y * k]);
        Observation { bbox: BBox { x: 100.0, y: 100.0, w: side, h: side }, score, landmarks, sharpness }
    }

    /// The same face turned by moving the nose and mouth sideways, as yaw does.
    fn turned(mut f: Observation, by_eye_distances: f32) -> Observation {
        let eye_dist = f.landmarks[1][0] - f.landmarks[0][0];
        f.landmarks[2][0] += by_eye_distances * eye_dist;
        f
    }

    #[test]
    fn the_template_is_frontal() {
        let f = face(112.0, 800.0, 0.9);
        assert!(frontalness(&f.landmarks) > 0.95, "{}", frontalness(&f.landmarks));
    }

    #[test]
    fn frontal_sharp_large_beats_turned_blurred_and_small() {
        let best = face(140.0, 900.0, 0.92);
        let q = quality(&best);
        let worse = [
            ("turned", turned(best.clone(), 0.35)),
            ("profile", turned(best.clone(), 0.7)),
            ("blurred", face(140.0, 40.0, 0.92)),
            ("small", face(36.0, 900.0, 0.92)),
            ("low score", face(140.0, 900.0, 0.66)),
        ];
        for (what, f) in worse {
            let w = quality(&f);
            assert!(w < q, "{what}: {w} should be below {q}");
        }
        assert!(quality(&turned(best.clone(), 0.7)) < 0.05, "a profile is nearly worthless");
        // Moderate differences rank in order too.
        assert!(quality(&face(64.0, 300.0, 0.9)) > quality(&face(40.0, 300.0, 0.9)));
        assert!(quality(&face(64.0, 300.0, 0.9)) > quality(&face(64.0, 60.0, 0.9)));
    }

    #[test]
    fn roll_costs_less_than_yaw() {
        let f = face(112.0, 500.0, 0.9);
        // Rotate all landmarks by 30 degrees about the first eye.
        let (s, c) = 30f32.to_radians().sin_cos();
        let o = f.landmarks[0];
        let rolled = f.landmarks.map(|[x, y]| {
            let (dx, dy) = (x - o[0], y - o[1]);
            [o[0] + c * dx - s * dy, o[1] + s * dx + c * dy]
        });
        let r = frontalness(&rolled);
        assert!(r > 0.6 && r < 0.75, "30 degrees of roll: {r}");
        assert!(frontalness(&turned(f, 0.35).landmarks) < r);
    }

    #[test]
    fn pitch_counts_only_far_from_the_usual_nose_position() {
        let f = face(112.0, 500.0, 0.9);
        let with_nose_at = |frac: f32| {
            let mut lm = f.landmarks;
            let (eye_y, mouth_y) = ((lm[0][1] + lm[1][1]) / 2.0, (lm[3][1] + lm[4][1]) / 2.0);
            lm[2][1] = eye_y + frac * (mouth_y - eye_y);
            frontalness(&lm)
        };
        assert!(with_nose_at(0.62) > 0.95, "{}", with_nose_at(0.62));
        assert!(with_nose_at(0.8) < 0.7, "looking down: {}", with_nose_at(0.8));
        assert!(with_nose_at(0.15) < 0.05, "nose on the eye line: {}", with_nose_at(0.15));
    }

    #[test]
    fn degenerate_inputs_stay_in_range() {
        let mut f = face(0.0, f32::NAN, f32::NAN);
        assert_eq!(quality(&f), 0.0);
        f.landmarks = [[5.0, 5.0]; 5];
        assert_eq!(frontalness(&f.landmarks), 0.0);
        let huge = face(5000.0, 1e9, 2.0);
        assert!((0.0..=1.0).contains(&quality(&huge)));
    }
}
