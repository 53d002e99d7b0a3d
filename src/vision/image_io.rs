//! Decoding image files (enrolment photos, `identify` arguments) safely.
//!
//! Files come from users and may be anything: a truncated JPEG, a text file named `.jpg`, or a
//! header that claims 20000x20000 pixels to make us allocate gigabytes. The format is guessed from
//! the content (never the extension), the dimensions are checked against limits before any pixel
//! is decoded, and every failure is a [`VisionError::Image`] naming the file and the reason.

use std::io::Cursor;
use std::path::Path;

use image::{ImageReader, Limits, RgbImage};

use super::VisionError;

/// Limits for [`decode_image_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest accepted width and height, checked from the header. Default 8192.
    pub max_side: u32,
    /// Largest file read, in bytes. Default 64 MiB.
    pub max_file_bytes: u64,
    /// Cap on the decoder's allocations, in bytes. Default 512 MiB (an 8192x8192 RGBA image
    /// needs 256 MiB).
    pub max_alloc: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits { max_side: 8192, max_file_bytes: 64 << 20, max_alloc: 512 << 20 }
    }
}

/// Reads and decodes `path` to RGB24 within `limits`.
pub fn decode_image_file(path: &Path, limits: &ImageLimits) -> Result<RgbImage, VisionError> {
    let fail = |reason: String| VisionError::Image { path: path.to_path_buf(), reason };
    let len = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?.len();
    if len > limits.max_file_bytes {
        return Err(fail(format!("file is {len} bytes, more than the limit of {}", limits.max_file_bytes)));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    decode_image_bytes(&bytes, limits).map_err(fail)
}

/// Decodes an in-memory image; the error is the reason only (the caller adds the source).
pub fn decode_image_bytes(bytes: &[u8], limits: &ImageLimits) -> Result<RgbImage, String> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    let Some(format) = reader.format() else {
        return Err("not an image: the content matches no supported format (JPEG, PNG)".into());
    };
    let mut l = Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_alloc);
    reader.limits(l);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => {
            // Say how large the header claims the image is, when it can be read cheaply.
            let dims = ImageReader::with_format(Cursor::new(bytes), format).into_dimensions().ok();
            match dims {
                Some((w, h)) => format!(
                    "{format:?} header says {w}x{h} pixels, more than the limit of {0}x{0}",
                    limits.max_side
                ),
                None => format!("{format:?} image exceeds the decoding limits: {e}"),
            }
        }
        e => format!("corrupt or unsupported {format:?} data: {e}"),
    })?;
    Ok(img.into_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small valid JPEG, encoded here so the test needs no fixture file.
    fn tiny_jpeg() -> Vec<u8> {
        let img = RgbImage::from_fn(16, 8, |x, y| image::Rgb([(x * 15) as u8, (y * 30) as u8, 128]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg).unwrap();
        out
    }

    fn decode_file(name: &str, bytes: &[u8]) -> Result<RgbImage, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        decode_image_file(&p, &ImageLimits::default()).map_err(|e| {
            let s = e.to_string();
            assert!(s.contains(&*p.to_string_lossy()), "error does not name the file: {s}");
            s
        })
    }

    #[test]
    fn a_good_jpeg_decodes() {
        let img = decode_file("ok.jpg", &tiny_jpeg()).unwrap();
        assert_eq!(img.dimensions(), (16, 8));
    }

    #[test]
    fn text_named_jpg_is_not_an_image() {
        let err = decode_file("photo.jpg", b"hello, I am not a JPEG\n").unwrap_err();
        assert!(err.contains("not an image"), "{err}");
    }

    #[test]
    fn truncated_jpeg_is_corrupt() {
        let jpeg = tiny_jpeg();
        let err = decode_file("cut.jpg", &jpeg[..jpeg.len() / 2]).unwrap_err();
        assert!(err.contains("corrupt"), "{err}");
    }

    #[test]
    fn huge_header_is_refused_before_decoding() {
        // Patch the SOF0 marker (FF C0, length, precision, height, width) to claim 20000x20000.
        let mut jpeg = tiny_jpeg();
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline JPEG has SOF0");
        jpeg[sof + 5..sof + 7].copy_from_slice(&20000u16.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&20000u16.to_be_bytes());
        let err = decode_file("huge.jpg", &jpeg).unwrap_err();
        assert!(err.contains("20000x20000") && err.contains("limit"), "{err}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = decode_image_file(Path::new("/nonexistent/x.jpg"), &ImageLimits::default()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.jpg"));
    }
}
