//! Five-point face alignment onto the ArcFace 112x112 template.
//!
//! Recognisers are trained on faces warped so that the eyes, nose and mouth corners land on fixed
//! points; feeding them a plain bounding-box crop costs a lot of accuracy. We fit the similarity
//! transform (rotation, uniform scale, translation, never a reflection) that maps the detector's
//! landmarks onto the template in the least-squares sense, and warp with bilinear sampling, as
//! OpenCV's `FaceRecognizerSF::alignCrop` does.

use image::{Rgb, RgbImage};

/// ArcFace reference points for a 112x112 crop, in the detector's landmark order.
pub const ARCFACE_TEMPLATE: [[f32; 2]; 5] =
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]];

/// A 2x3 affine matrix `[[a, b, tx], [c, d, ty]]` mapping `(x, y)` to
/// `(a x + b y + tx, c x + d y + ty)`.
pub type Affine = [[f64; 3]; 2];

/// Least-squares similarity transform from `src` to `dst` (Umeyama 1991, without reflection).
///
/// In 2-D, Umeyama's rotation-plus-scale with the reflection correction is exactly the
/// complex least-squares fit `dst - mean_dst = z (src - mean_src)` with `z = s e^{iθ}`, which
/// has the closed form below, so no SVD is needed and a reflection cannot be produced.
/// Returns `[[s cos θ, -s sin θ, tx], [s sin θ, s cos θ, ty]]`.
pub fn similarity_transform(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Affine {
    assert_eq!(src.len(), dst.len(), "point sets differ in length");
    let n = src.len() as f64;
    let mean = |p: &[[f32; 2]]| {
        let (sx, sy) = p.iter().fold((0.0, 0.0), |(x, y), q| (x + f64::from(q[0]), y + f64::from(q[1])));
        (sx / n, sy / n)
    };
    let (msx, msy) = mean(src);
    let (mdx, mdy) = mean(dst);
    // z = sum(conj(s) * d) / sum(|s|^2), over centred points.
    let (mut re, mut im, mut var) = (0.0, 0.0, 0.0);
    for (s, d) in src.iter().zip(dst) {
        let (sx, sy) = (f64::from(s[0]) - msx, f64::from(s[1]) - msy);
        let (dx, dy) = (f64::from(d[0]) - mdx, f64::from(d[1]) - mdy);
        re += sx * dx + sy * dy;
        im += sx * dy - sy * dx;
        var += sx * sx + sy * sy;
    }
    let (a, b) = if var > 0.0 { (re / var, im / var) } else { (1.0, 0.0) };
    [[a, -b, mdx - (a * msx - b * msy)], [b, a, mdy - (b * msx + a * msy)]]
}

/// Warps `img` so that `landmarks` land on the ArcFace template scaled to `size` (112 for every
/// model we ship). Bilinear, pixels from outside the image are black.
pub fn align_face(img: &RgbImage, landmarks: &[[f32; 2]; 5], size: u32) -> RgbImage {
    let k = size as f32 / 112.0;
    let template = ARCFACE_TEMPLATE.map(|[x, y]| [x * k, y * k]);
    let m = similarity_transform(landmarks, &template);
    warp_affine(img, &m, size, size)
}

/// `out(x, y) = img(M^-1 (x, y))`, bilinear, border 0. Pixel centres at integer coordinates,
/// like OpenCV's `warpAffine`.
pub fn warp_affine(img: &RgbImage, m: &Affine, out_w: u32, out_h: u32) -> RgbImage {
    let [[a, b, tx], [c, d, ty]] = *m;
    let det = a * d - b * c;
    let mut out = RgbImage::new(out_w, out_h);
    if det.abs() < 1e-12 {
        return out;
    }
    // Inverse of the linear part, and of the translation.
    let (ia, ib, ic, id) = (d / det, -b / det, -c / det, a / det);
    let (itx, ity) = (-(ia * tx + ib * ty), -(ic * tx + id * ty));
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    let src = img.as_raw();
    let fetch = |x: i64, y: i64| -> [f64; 3] {
        if x < 0 || y < 0 || x >= w || y >= h {
            return [0.0; 3];
        }
        let o = ((y * w + x) * 3) as usize;
        [f64::from(src[o]), f64::from(src[o + 1]), f64::from(src[o + 2])]
    };
    for (x, y, px) in out.enumerate_pixels_mut() {
        let (xf, yf) = (f64::from(x), f64::from(y));
        let sx = ia * xf + ib * yf + itx;
        let sy = ic * xf + id * yf + ity;
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let p00 = fetch(x0, y0);
        let p10 = fetch(x0 + 1, y0);
        let p01 = fetch(x0, y0 + 1);
        let p11 = fetch(x0 + 1, y0 + 1);
        let mut v = [0u8; 3];
        for ch in 0..3 {
            let top = p00[ch] + (p10[ch] - p00[ch]) * fx;
            let bot = p01[ch] + (p11[ch] - p01[ch]) * fx;
            v[ch] = (top + (bot - top) * fy).round().clamp(0.0, 255.0) as u8;
        }
        *px = Rgb(v);
    }
    out
}

/// Applies `m` to a point.
pub fn apply(m: &Affine, p: [f32; 2]) -> [f32; 2] {
    let (x, y) = (f64::from(p[0]), f64::from(p[1]));
    [(m[0][0] * x + m[0][1] * y + m[0][2]) as f32, (m[1][0] * x + m[1][1] * y + m[1][2]) as f32]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(m: &Affine, want: &Affine, tol: f64) -> bool {
        m.iter().flatten().zip(want.iter().flatten()).all(|(a, b)| (a - b).abs() < tol)
    }

    #[test]
    fn template_onto_itself_is_identity() {
        let m = similarity_transform(&ARCFACE_TEMPLATE, &ARCFACE_TEMPLATE);
        assert!(close(&m, &[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], 1e-9), "{m:?}");
    }

    #[test]
    fn recovers_a_known_similarity() {
        let (s, th, tx, ty) = (1.7f64, 0.4f64, -12.5, 33.0);
        let want = [[s * th.cos(), -s * th.sin(), tx], [s * th.sin(), s * th.cos(), ty]];
        let src = ARCFACE_TEMPLATE;
        let dst = src.map(|p| apply(&want, p));
        let m = similarity_transform(&src, &dst);
        assert!(close(&m, &want, 1e-4), "{m:?} vs {want:?}");
    }

    #[test]
    fn a_mirrored_face_is_not_reflected() {
        // Mirror the template horizontally: the best similarity must still be a proper rotation.
        let src = ARCFACE_TEMPLATE.map(|[x, y]| [112.0 - x, y]);
        let m = similarity_transform(&src, &ARCFACE_TEMPLATE);
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        assert!(det > 0.0, "reflection: {m:?}");
    }

    #[test]
    fn warp_moves_pixels_where_the_transform_says() {
        // A pure translation by (+10, +5): output (x, y) reads input (x - 10, y - 5).
        let mut img = RgbImage::new(40, 40);
        img.put_pixel(3, 4, Rgb([200, 100, 50]));
        let m = [[1.0, 0.0, 10.0], [0.0, 1.0, 5.0]];
        let out = warp_affine(&img, &m, 30, 30);
        assert_eq!(out.get_pixel(13, 9), &Rgb([200, 100, 50]));
        assert_eq!(out.get_pixel(0, 0), &Rgb([0, 0, 0])); // from outside the image
    }

    #[test]
    fn aligning_template_landmarks_is_a_copy() {
        let mut img = RgbImage::new(112, 112);
        for (x, y, p) in img.enumerate_pixels_mut() {
            *p = Rgb([x as u8, y as u8, (x ^ y) as u8]);
        }
        let out = align_face(&img, &ARCFACE_TEMPLATE, 112);
        assert_eq!(out, img);
    }
}
