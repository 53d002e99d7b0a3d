//! The motion model: SORT's constant-velocity Kalman filter on a face box, with real time steps.
//!
//! SORT's state is `[u, v, s, r, u', v', s']` (centre, area, aspect ratio, and the velocities of
//! the first three) with block-diagonal F, H, Q, R and initial P. Block-diagonal in, block-diagonal
//! out: the 7-state filter is exactly three independent (value, rate) filters plus one for the
//! aspect ratio, so no matrix library is needed. Two changes for us:
//! - time steps are the real gap between sampled frames in seconds (SORT assumes one frame), with
//!   the discrete white-noise-acceleration Q, because our sampling rate varies per camera and
//!   frames get dropped when vision is busy;
//! - the scale is `sqrt(area)` in pixels instead of the area, so that all three moving coordinates
//!   share units and a face walking towards the camera grows linearly. Noise is relative to that
//!   size (as in DeepSORT), so a 40 px and a 400 px face are tracked alike.

use crate::vision::BBox;

/// Detector jitter, standard deviation as a fraction of the face size.
const MEASUREMENT_STD: f64 = 0.05;
/// Unmodelled acceleration, standard deviation in face sizes per s^2 (people turn and stop).
const ACCELERATION_STD: f64 = 1.0;
/// Velocity uncertainty of a new track, in face sizes per second: large, so that the second
/// sighting sets the velocity (SORT's 1e4 initial variance does the same).
const INITIAL_VELOCITY_STD: f64 = 10.0;
/// How quickly the aspect ratio follows measurements (SORT keeps it as a constant state).
const ASPECT_GAIN: f64 = 0.5;

/// One coordinate and its rate of change, with their 2x2 covariance.
#[derive(Debug, Clone, Copy)]
struct Axis {
    x: f64,
    v: f64,
    p00: f64,
    p01: f64,
    p11: f64,
}

impl Axis {
    fn new(x: f64, pos_var: f64, vel_var: f64) -> Axis {
        Axis { x, v: 0.0, p00: pos_var, p01: 0.0, p11: vel_var }
    }

    /// x' = x + v dt; P' = F P F^T + q [[dt^4/4, dt^3/2], [dt^3/2, dt^2]].
    fn predict(&mut self, dt: f64, q: f64) {
        let (dt2, dt3, dt4) = (dt * dt, dt * dt * dt, dt * dt * dt * dt);
        self.x += self.v * dt;
        self.p00 += 2.0 * dt * self.p01 + dt2 * self.p11 + q * dt4 / 4.0;
        self.p01 += dt * self.p11 + q * dt3 / 2.0;
        self.p11 += q * dt2;
    }

    /// Measurement of x with variance r.
    fn update(&mut self, z: f64, r: f64) {
        let s = self.p00 + r;
        let (k0, k1) = (self.p00 / s, self.p01 / s);
        let y = z - self.x;
        self.x += k0 * y;
        self.v += k1 * y;
        let (p00, p01) = (self.p00, self.p01);
        self.p00 = (1.0 - k0) * p00;
        self.p01 = (1.0 - k0) * p01;
        self.p11 -= k1 * p01;
    }
}

/// A face box's filtered position, size and their velocities.
#[derive(Debug, Clone)]
pub(super) struct BoxFilter {
    cx: Axis,
    cy: Axis,
    size: Axis,
    /// w / h.
    aspect: f64,
}

impl BoxFilter {
    pub(super) fn new(b: &BBox) -> BoxFilter {
        let (cx, cy, size, aspect) = measure(b);
        let r = (MEASUREMENT_STD * size).powi(2);
        let vel = (INITIAL_VELOCITY_STD * size).powi(2);
        BoxFilter {
            cx: Axis::new(cx, r, vel),
            cy: Axis::new(cy, r, vel),
            size: Axis::new(size, r, vel),
            aspect,
        }
    }

    /// Moves the state `dt_s` seconds ahead.
    pub(super) fn predict(&mut self, dt_s: f64) {
        if dt_s <= 0.0 {
            return;
        }
        let q = (ACCELERATION_STD * self.size.x).powi(2);
        self.cx.predict(dt_s, q);
        self.cy.predict(dt_s, q);
        self.size.predict(dt_s, q);
        // SORT zeroes the scale velocity rather than predict a negative area.
        if self.size.x < 1.0 {
            self.size.x = 1.0;
            self.size.v = 0.0;
        }
    }

    pub(super) fn update(&mut self, b: &BBox) {
        let (cx, cy, size, aspect) = measure(b);
        let r = (MEASUREMENT_STD * self.size.x.max(size)).powi(2);
        self.cx.update(cx, r);
        self.cy.update(cy, r);
        self.size.update(size, r);
        self.size.x = self.size.x.max(1.0);
        self.aspect += ASPECT_GAIN * (aspect - self.aspect);
    }

    /// The current estimate as a box.
    pub(super) fn bbox(&self) -> BBox {
        let root = self.aspect.sqrt();
        let (w, h) = (self.size.x * root, self.size.x / root);
        BBox { x: (self.cx.x - w / 2.0) as f32, y: (self.cy.x - h / 2.0) as f32, w: w as f32, h: h as f32 }
    }

    /// The current size estimate, `sqrt(w h)` in pixels.
    #[cfg(test)]
    fn size(&self) -> f64 {
        self.size.x
    }
}

/// Centre, `sqrt(area)` and aspect ratio of a box, guarded against empty boxes.
fn measure(b: &BBox) -> (f64, f64, f64, f64) {
    let (w, h) = (f64::from(b.w).max(1.0), f64::from(b.h).max(1.0));
    (f64::from(b.x) + w / 2.0, f64::from(b.y) + h / 2.0, (w * h).sqrt(), w / h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(x: f32, y: f32, w: f32, h: f32) -> BBox {
        BBox { x, y, w, h }
    }

    #[test]
    fn a_new_filter_returns_its_box() {
        let f = BoxFilter::new(&bx(10.0, 20.0, 80.0, 100.0));
        let b = f.bbox();
        assert!((b.x - 10.0).abs() < 1e-3 && (b.y - 20.0).abs() < 1e-3, "{b:?}");
        assert!((b.w - 80.0).abs() < 1e-3 && (b.h - 100.0).abs() < 1e-3, "{b:?}");
    }

    #[test]
    fn two_sightings_give_the_velocity_and_prediction_follows_it() {
        let mut f = BoxFilter::new(&bx(100.0, 100.0, 80.0, 80.0));
        f.predict(0.5);
        f.update(&bx(140.0, 100.0, 80.0, 80.0));
        for step in 2..6 {
            f.predict(0.5);
            let p = f.bbox();
            let expected = 100.0 + 40.0 * step as f32;
            assert!((p.x - expected).abs() < 4.0, "step {step}: predicted {p:?}, expected x {expected}");
            f.update(&bx(expected, 100.0, 80.0, 80.0));
        }
    }

    #[test]
    fn a_shrinking_box_never_gets_a_negative_size() {
        let mut f = BoxFilter::new(&bx(0.0, 0.0, 40.0, 40.0));
        f.predict(0.1);
        f.update(&bx(0.0, 0.0, 10.0, 10.0));
        f.predict(100.0);
        assert!(f.size() >= 1.0);
        assert!(f.bbox().w > 0.0);
    }
}
