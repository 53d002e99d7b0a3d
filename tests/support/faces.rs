//! Real face crops for pipeline tests, made from the registry photos with the real detector:
//! what ingest would put on a faces stream, without the cameras.

use std::io::Cursor;

use image::RgbImage;
use redeye::recognition::content_key;
use redeye::vision::{
    Detector, DetectorSpec, Embedder, OnnxEmbedder, RecognizerSpec, Runtime, SessionOptions, YuNet,
    align_face,
};
use redeye::wire::FaceEntry;

use super::{ort_library, photo, repo};

fn runtime() -> &'static Runtime {
    Runtime::init(Some(&ort_library())).unwrap_or_else(|e| panic!("{e}"))
}

/// Detector + SFace, loaded once per test.
pub struct Faces {
    detector: YuNet,
    embedder: OnnxEmbedder,
}

/// One aligned crop of a photo, JPEG-encoded the way ingest sends it.
#[derive(Clone)]
pub struct Crop {
    pub photo: String,
    pub jpeg: Vec<u8>,
    pub rgb: RgbImage,
}

impl Faces {
    pub fn load() -> Faces {
        let rt = runtime();
        let opts = SessionOptions::default();
        let detector = DetectorSpec {
            model: repo().join("models/face_detection_yunet_2023mar.onnx"),
            ..Default::default()
        };
        let recognizer = RecognizerSpec {
            model: repo().join("models/face_recognition_sface_2021dec_fp32.onnx"),
            ..Default::default()
        };
        Faces {
            detector: YuNet::load(rt, detector, &opts).unwrap_or_else(|e| panic!("{e}")),
            embedder: OnnxEmbedder::load(rt, recognizer, &opts).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// `n` distinct crops of the best face of `photo`: the landmarks are nudged by a fraction of
    /// a pixel for each, which changes the crop's bytes (and MD5) but not who it is.
    pub fn crops(&mut self, photo_name: &str, n: usize) -> Vec<Crop> {
        let img = image::open(photo(photo_name)).unwrap().to_rgb8();
        let faces = self.detector.detect(&img).unwrap();
        let face = faces.first().unwrap_or_else(|| panic!("no face in {photo_name}"));
        (0..n)
            .map(|i| {
                let d = 0.25 * i as f32;
                let mut landmarks = face.landmarks;
                for p in &mut landmarks {
                    p[0] += d % 2.0;
                    p[1] += (d / 2.0).floor() * 0.25;
                }
                let rgb = align_face(&img, &landmarks, 112);
                Crop { photo: photo_name.to_owned(), jpeg: jpeg(&rgb), rgb }
            })
            .collect()
    }

    /// The SFace embedding of a photo's best face, for enrolling.
    pub fn embedding(&mut self, photo_name: &str) -> Vec<f32> {
        let crop = self.crops(photo_name, 1).remove(0);
        self.embedder.embed(&[crop.rgb]).unwrap().remove(0)
    }
}

pub fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut out), 92).encode_image(img).unwrap();
    out
}

/// The faces stream entry ingest would write for `crop`.
pub fn entry(crop: &Crop, camera: &str, group: &str, frame: u64) -> FaceEntry {
    FaceEntry {
        md5: content_key(&crop.jpeg),
        camera: camera.to_owned(),
        group: group.to_owned(),
        capture_ts: redeye::instrument::unix_millis(),
        frame,
        bbox: redeye::vision::BBox { x: 10.0, y: 20.0, w: 100.0, h: 120.0 },
        score: 0.9,
        landmarks: redeye::vision::ARCFACE_TEMPLATE,
        crop: crop.jpeg.clone(),
        crop_size: 112,
        model: "sface-2021dec-fp32".to_owned(),
    }
}
