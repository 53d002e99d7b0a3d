//! Letterbox: resize a frame so that its long side fits the detector's input size, pad right
//! and bottom with 0, and write it as planar BGR `f32` (NCHW) in one pass.
//!
//! The padded tensor is either the model's fixed square, or, for a model whose input height and
//! width are dynamic, the scaled frame itself rounded up to a multiple of the model's largest
//! stride ([`Letterbox::fitting`]): a 4:3 frame is then 640x480 rather than 640x640, and a 16:9
//! one 640x384, which cuts a quarter and two fifths of the detector's work.
//!
//! This runs on every sampled frame of every camera, so it avoids the obvious costs: the resampling
//! weights are computed once per frame size, the buffers are reused across frames, the padding is
//! rewritten only when the frame size changes, and the inner loops walk slices (no per-pixel
//! bounds checks, no per-pixel `get_pixel`).
//!
//! The filter matches OpenCV's `cv2.resize` so that the golden test (scripts/opencv_golden.py)
//! feeds OpenCV's detector the same pixels: area averaging (`INTER_AREA`) when shrinking, which is
//! what a downscale by 2-6x from a camera frame needs to avoid aliasing, and bilinear with
//! half-pixel centres (`INTER_LINEAR`) when enlarging. Unlike OpenCV we keep the values in `f32`
//! rather than rounding to `u8`, a difference of at most half a grey level.

use image::RgbImage;

/// Resampling taps for one axis: for output index `i`, source indices
/// `start[i] .. start[i] + weights[i].len()` with those weights (summing to 1).
#[derive(Debug, Default, Clone)]
struct Taps {
    start: Vec<usize>,
    offset: Vec<usize>,
    weights: Vec<f32>,
}

impl Taps {
    fn new(src: usize, dst: usize) -> Taps {
        let mut t = Taps::default();
        let ratio = src as f64 / dst as f64;
        for i in 0..dst {
            t.offset.push(t.weights.len());
            if ratio > 1.0 {
                // Area: output pixel i covers [i*ratio, (i+1)*ratio) of the source.
                let lo = i as f64 * ratio;
                let hi = ((i + 1) as f64 * ratio).min(src as f64);
                let first = lo.floor() as usize;
                let mut j = first;
                while (j as f64) < hi && j < src {
                    let overlap = (hi.min((j + 1) as f64) - lo.max(j as f64)).max(0.0);
                    t.weights.push((overlap / (hi - lo)) as f32);
                    j += 1;
                }
                t.start.push(first);
            } else {
                // Bilinear with half-pixel centres, clamped at the edges like OpenCV.
                let x = (i as f64 + 0.5) * ratio - 0.5;
                let (x0, f) = if x <= 0.0 {
                    (0, 0.0)
                } else if x >= (src - 1) as f64 {
                    (src - 1, 0.0)
                } else {
                    (x.floor() as usize, x - x.floor())
                };
                t.start.push(x0);
                t.weights.push((1.0 - f) as f32);
                if f > 0.0 {
                    t.weights.push(f as f32);
                }
            }
        }
        t.offset.push(t.weights.len());
        t
    }

    #[inline]
    fn get(&self, i: usize) -> (usize, &[f32]) {
        (self.start[i], &self.weights[self.offset[i]..self.offset[i + 1]])
    }
}

/// The same taps padded to `k` per output (zero weights; the start moved left at the right
/// edge), so that the horizontal inner loop has a compile-time length and no branches.
#[derive(Debug, Default, Clone)]
struct FixedTaps {
    k: usize,
    start: Vec<usize>,
    weights: Vec<f32>,
}

impl FixedTaps {
    fn new(t: &Taps, src: usize) -> FixedTaps {
        let n = t.start.len();
        // k <= src: area taps stay inside the source, bilinear uses 2 taps only if src >= 2.
        let k = (0..n).map(|i| t.get(i).1.len()).max().unwrap_or(1);
        let mut f = FixedTaps { k, start: Vec::with_capacity(n), weights: Vec::with_capacity(n * k) };
        for i in 0..n {
            let (s, w) = t.get(i);
            let s2 = s.min(src - k);
            f.start.push(s2);
            f.weights.extend(std::iter::repeat_n(0.0, s - s2));
            f.weights.extend_from_slice(w);
            f.weights.extend(std::iter::repeat_n(0.0, k - (s - s2) - w.len()));
        }
        f
    }
}

/// Horizontal resampling of one interleaved RGB row into the three planes' rows.
fn hpass<const K: usize>(acc: &[f32], t: &FixedTaps, b: &mut [f32], g: &mut [f32], r: &mut [f32]) {
    let taps = t.start.iter().zip(t.weights.chunks_exact(K));
    for (((b, g), r), (&start, w)) in b.iter_mut().zip(g).zip(r).zip(taps) {
        let seg = &acc[start * 3..start * 3 + 3 * K];
        let (mut sr, mut sg, mut sb) = (0f32, 0f32, 0f32);
        for k in 0..K {
            sr += w[k] * seg[3 * k];
            sg += w[k] * seg[3 * k + 1];
            sb += w[k] * seg[3 * k + 2];
        }
        *r = sr;
        *g = sg;
        *b = sb;
    }
}

/// [`hpass`] for any tap count (very large downscales).
fn hpass_dyn(acc: &[f32], t: &FixedTaps, b: &mut [f32], g: &mut [f32], r: &mut [f32]) {
    let taps = t.start.iter().zip(t.weights.chunks_exact(t.k));
    for (((b, g), r), (&start, w)) in b.iter_mut().zip(g).zip(r).zip(taps) {
        let seg = &acc[start * 3..(start + t.k) * 3];
        let (mut sr, mut sg, mut sb) = (0f32, 0f32, 0f32);
        for (px, &wt) in seg.chunks_exact(3).zip(w) {
            sr += wt * px[0];
            sg += wt * px[1];
            sb += wt * px[2];
        }
        *r = sr;
        *g = sg;
        *b = sb;
    }
}

/// Reusable letterbox state for one detector (one per worker thread).
#[derive(Debug)]
pub struct Letterbox {
    size: usize,
    /// `None`: the tensor is `size` square. `Some(m)`: it is the scaled frame padded up to
    /// multiples of `m`.
    multiple: Option<usize>,
    /// The tensor's width and height.
    dims: (usize, usize),
    /// The NCHW tensor data, `3 * width * height`, planes in B, G, R order.
    tensor: Vec<f32>,
    /// One vertically resampled source-width row, interleaved RGB, `w * 3`.
    acc: Vec<f32>,
    /// Frame size the taps and padding were prepared for.
    prepared: Option<(u32, u32)>,
    new_w: usize,
    new_h: usize,
    xt: FixedTaps,
    yt: Taps,
}

impl Letterbox {
    /// Letterboxes into a `size` square (a model with a fixed square input).
    pub fn new(size: u32) -> Letterbox {
        Self::with(size as usize, None)
    }

    /// Scales the long side to `size` and pads each side up to a multiple of `multiple` only
    /// (a model with a dynamic input height and width).
    pub fn fitting(size: u32, multiple: u32) -> Letterbox {
        Self::with(size as usize, Some(multiple.max(1) as usize))
    }

    fn with(size: usize, multiple: Option<usize>) -> Letterbox {
        Letterbox {
            size,
            multiple,
            dims: (size, size),
            tensor: vec![0.0; 3 * size * size],
            acc: Vec::new(),
            prepared: None,
            new_w: 0,
            new_h: 0,
            xt: FixedTaps::default(),
            yt: Taps::default(),
        }
    }

    /// The scaled size `(round(w*s), round(h*s))` for `s = size / max(w, h)`.
    pub fn scaled_size(size: u32, w: u32, h: u32) -> (u32, u32) {
        let s = size as f64 / w.max(h) as f64;
        let sw = ((w as f64 * s).round() as u32).clamp(1, size);
        let sh = ((h as f64 * s).round() as u32).clamp(1, size);
        (sw, sh)
    }

    /// Fills the tensor from `img` and returns the per-axis scale `(new_w / w, new_h / h)` to
    /// divide detector coordinates by. (Both equal `s` up to the rounding of the short side.)
    pub fn fill(&mut self, img: &RgbImage) -> (f32, f32) {
        let (w, h) = img.dimensions();
        assert!(w > 0 && h > 0, "letterbox of an empty image");
        if self.prepared != Some((w, h)) {
            self.prepare(w, h);
        }
        let (w, new_w, new_h, stride) = (w as usize, self.new_w, self.new_h, self.dims.0);
        let src = img.as_raw();
        let plane = self.dims.0 * self.dims.1;
        let (bp, rest) = self.tensor.split_at_mut(plane);
        let (gp, rp) = rest.split_at_mut(plane);
        for y in 0..new_h {
            // Vertical first, over whole contiguous rows (this loop vectorises well), so that
            // the horizontal pass, which gathers, only runs on the `new_h` output rows.
            let (start, wts) = self.yt.get(y);
            let taps = &src[start * w * 3..(start + wts.len()) * w * 3];
            let mut rows = taps.chunks_exact(w * 3).zip(wts);
            if let Some((row, &wt)) = rows.next() {
                for (a, &v) in self.acc.iter_mut().zip(row) {
                    *a = wt * f32::from(v);
                }
            }
            for (row, &wt) in rows {
                for (a, &v) in self.acc.iter_mut().zip(row) {
                    *a += wt * f32::from(v);
                }
            }
            // Horizontal, written straight into the B, G, R planes.
            let o = y * stride;
            let (b, g, r) = (&mut bp[o..o + new_w], &mut gp[o..o + new_w], &mut rp[o..o + new_w]);
            let xt = &self.xt;
            match xt.k {
                1 => hpass::<1>(&self.acc, xt, b, g, r),
                2 => hpass::<2>(&self.acc, xt, b, g, r),
                3 => hpass::<3>(&self.acc, xt, b, g, r),
                4 => hpass::<4>(&self.acc, xt, b, g, r),
                5 => hpass::<5>(&self.acc, xt, b, g, r),
                6 => hpass::<6>(&self.acc, xt, b, g, r),
                _ => hpass_dyn(&self.acc, xt, b, g, r),
            }
        }
        (new_w as f32 / w as f32, new_h as f32 / h as f32)
    }

    /// The tensor written by the last [`fill`](Self::fill): `[1, 3, height, width]`, BGR planes.
    pub fn tensor(&self) -> &[f32] {
        &self.tensor
    }

    /// The tensor's `(width, height)` for the last frame filled (`size` square before any).
    pub fn dims(&self) -> (usize, usize) {
        self.dims
    }

    fn prepare(&mut self, w: u32, h: u32) {
        let (nw, nh) = Self::scaled_size(self.size as u32, w, h);
        let (nw, nh) = (nw as usize, nh as usize);
        self.xt = FixedTaps::new(&Taps::new(w as usize, nw), w as usize);
        self.yt = Taps::new(h as usize, nh);
        self.acc = vec![0.0; w as usize * 3];
        self.new_w = nw;
        self.new_h = nh;
        self.dims = match self.multiple {
            None => (self.size, self.size),
            Some(m) => (nw.div_ceil(m) * m, nh.div_ceil(m) * m),
        };
        // The content area is overwritten by every fill; zero the rest once per frame size.
        self.tensor.clear();
        self.tensor.resize(3 * self.dims.0 * self.dims.1, 0.0);
        self.prepared = Some((w, h));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_sum_to_one() {
        for (src, dst) in [(1920, 640), (1000, 640), (641, 640), (300, 640), (640, 640), (7, 3)] {
            let t = Taps::new(src, dst);
            for i in 0..dst {
                let (start, w) = t.get(i);
                let sum: f32 = w.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{src}->{dst} at {i}: {sum}");
                assert!(start + w.len() <= src);
            }
        }
    }

    #[test]
    fn matches_a_naive_resampler() {
        for (w, h) in [(1000, 700), (300, 220), (641, 17), (5, 9), (1, 1), (3000, 2), (1, 700)] {
            let img = RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x * 37 % 256) as u8, (y * 91 % 256) as u8, ((x * y) % 256) as u8])
            });
            let mut lb = Letterbox::new(64);
            let _ = lb.fill(&img);
            let (nw, nh) = Letterbox::scaled_size(64, w, h);
            let (xt, yt) = (Taps::new(w as usize, nw as usize), Taps::new(h as usize, nh as usize));
            for oy in 0..nh as usize {
                for ox in 0..nw as usize {
                    let (ys, yw) = yt.get(oy);
                    let (xs, xw) = xt.get(ox);
                    for (c, plane) in [(2usize, 0usize), (1, 1), (0, 2)] {
                        let mut want = 0f32;
                        for (dy, wy) in yw.iter().enumerate() {
                            for (dx, wx) in xw.iter().enumerate() {
                                want +=
                                    wy * wx * f32::from(img.get_pixel((xs + dx) as u32, (ys + dy) as u32)[c]);
                            }
                        }
                        let got = lb.tensor()[plane * 64 * 64 + oy * 64 + ox];
                        assert!((got - want).abs() < 1e-2, "{w}x{h} at ({ox},{oy}) ch {c}: {got} vs {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn scaled_size_rounds_the_short_side() {
        assert_eq!(Letterbox::scaled_size(640, 1920, 1080), (640, 360));
        assert_eq!(Letterbox::scaled_size(640, 300, 400), (480, 640));
        assert_eq!(Letterbox::scaled_size(640, 1, 5000), (1, 640));
    }

    #[test]
    fn integer_downscale_averages_blocks_and_pads_with_zero() {
        // A 2x downscale: each output pixel is the mean of a 2x2 block.
        let mut img = RgbImage::new(1280, 640);
        for (x, y, p) in img.enumerate_pixels_mut() {
            *p = image::Rgb([(x % 2 * 100) as u8, (y % 2 * 50) as u8, 7]);
        }
        let mut lb = Letterbox::new(640);
        let (sx, sy) = lb.fill(&img);
        assert_eq!((sx, sy), (0.5, 0.5));
        let t = lb.tensor();
        let plane = 640 * 640;
        // B plane holds the blue channel (7), G the mean of 0/50, R the mean of 0/100.
        assert!((t[0] - 7.0).abs() < 1e-4);
        assert!((t[plane] - 25.0).abs() < 1e-4);
        assert!((t[2 * plane] - 50.0).abs() < 1e-4);
        // Row 319 is content, row 320 onwards is padding.
        assert!(t[319 * 640] > 0.0);
        assert!(t[320 * 640..plane].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn fitting_pads_the_scaled_frame_to_the_multiple_only() {
        let mut lb = Letterbox::fitting(640, 32);
        // 4:3 at scale 1: no padding at all.
        let img = RgbImage::from_pixel(640, 480, image::Rgb([1, 2, 3]));
        assert_eq!(lb.fill(&img), (1.0, 1.0));
        assert_eq!(lb.dims(), (640, 480));
        assert_eq!(lb.tensor().len(), 3 * 640 * 480);
        assert!(lb.tensor()[..640 * 480].iter().all(|&v| v == 3.0), "B plane first");
        // 16:9 HD: 640x360 of content, padded to 640x384.
        lb.fill(&RgbImage::from_pixel(1920, 1080, image::Rgb([9, 9, 9])));
        assert_eq!(lb.dims(), (640, 384));
        let t = lb.tensor();
        assert!(t[..360 * 640].iter().all(|&v| (v - 9.0).abs() < 1e-4));
        assert!(t[360 * 640..384 * 640].iter().all(|&v| v == 0.0));
        // Portrait: the height is the long side.
        lb.fill(&RgbImage::new(300, 400));
        assert_eq!(lb.dims(), (480, 640));
    }

    #[test]
    fn padding_survives_a_size_change() {
        let mut lb = Letterbox::new(64);
        lb.fill(&RgbImage::from_pixel(64, 64, image::Rgb([9, 9, 9])));
        lb.fill(&RgbImage::from_pixel(64, 32, image::Rgb([9, 9, 9])));
        let t = lb.tensor();
        assert!(t[32 * 64..64 * 64].iter().all(|&v| v == 0.0));
        assert!(t[..32 * 64].iter().all(|&v| (v - 9.0).abs() < 1e-4));
    }
}
