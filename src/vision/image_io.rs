//! Decoding image files (enrolment photos, `identify` arguments) safely.
//!
//! Files come from users and may be anything: a truncated JPEG, a text file named `.jpg`, or a
//! header that claims 20000x20000 pixels to make us allocate gigabytes. The format is guessed from
//! the content (never the extension), the dimensions are checked against limits before any pixel
//! is decoded, and every failure is a [`VisionError::Image`] naming the file and the reason.

use std::io::{Cursor, Read as _};
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
    let bytes = read_image_file(path, limits)?;
    decode_image_bytes(&bytes, limits)
        .map_err(|reason| VisionError::Image { path: path.to_path_buf(), reason })
}

/// The bytes of the regular file `path`, at most `limits.max_file_bytes` of them.
///
/// The size a device or a FIFO reports is 0, so checking it is not enough: `/dev/zero` would be
/// read forever and a FIFO would block until someone writes. Anything but a regular file is
/// refused before it is opened (opening a FIFO blocks too), and the read itself is bounded.
pub fn read_image_file(path: &Path, limits: &ImageLimits) -> Result<Vec<u8>, VisionError> {
    let fail = |reason: String| VisionError::Image { path: path.to_path_buf(), reason };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "a device, FIFO or socket" };
        return Err(fail(format!("not a regular file ({kind}): give the path of an image file")));
    }
    let too_big = |len: u64| {
        fail(format!("file is {len} bytes or more, more than the limit of {}", limits.max_file_bytes))
    };
    if meta.len() > limits.max_file_bytes {
        return Err(too_big(meta.len()));
    }
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    // One byte more than the limit tells a file that grew since the check from one that fits.
    let mut bytes = Vec::new();
    file.take(limits.max_file_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
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
    fn devices_fifos_and_directories_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.jpg");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        for path in [Path::new("/dev/zero"), &fifo, dir.path()] {
            let err = decode_image_file(path, &ImageLimits::default()).unwrap_err().to_string();
            assert!(err.contains("not a regular file"), "{}: {err}", path.display());
        }
    }

    #[test]
    fn the_read_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.jpg");
        std::fs::write(&p, vec![0u8; 2000]).unwrap();
        let limits = ImageLimits { max_file_bytes: 1000, ..ImageLimits::default() };
        let err = read_image_file(&p, &limits).unwrap_err().to_string();
        assert!(err.contains("more than the limit of 1000"), "{err}");
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
