//! A camera group's detection stage: a fixed pool of OS threads, each owning its own detector
//! (ort sessions need `&mut`), taking the newest frames from the group's slots.
//!
//! Per frame: detect → quality gate on the box (size, score) → five-point alignment → gate on
//! the crop (sharpness); then the frame's accepted faces together → [`FaceSink::accept`], also
//! when there are none (the tracker needs to see the empty frames to end tracks).
//!
//! A crop that goes to Redis is [`FaceCrop::encode`]d there: JPEG (quality 92), then MD5 of
//! exactly those bytes. The JPEG bytes are the content identity: the Redis cache key is
//! `image:<md5>` and the faces stream carries the same bytes, so a consumer can re-hash what it
//! received. Encoding waits for the hand-off because the tracker sends a few shots per visit out
//! of every accepted face of every sampled frame: at 24 cameras, JPEG and MD5 of every face were
//! about half of the alignment stage.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime};

use image::RgbImage;

use super::slot::FrameSlots;
use super::stats::DetectStats;
use crate::instrument::Stage;
use crate::recognition::content_key;
use crate::vision::{BBox, Detection, Detector, QualityGate, align_face};

/// JPEG quality of face crops: visually lossless for a 112x112 face, ~5 KB.
pub const JPEG_QUALITY: u8 = 92;

/// Side of the aligned crop (the ArcFace template size every shipped recogniser takes).
pub const CROP_SIZE: u32 = 112;

/// An accepted, aligned face, ready for the cache lookup and the faces stream.
#[derive(Debug, Clone)]
pub struct FaceCrop {
    pub camera: Arc<str>,
    pub group: Arc<str>,
    /// Capture wall time of the frame.
    pub capture_time: SystemTime,
    pub frame_number: u64,
    /// In the frame's pixels.
    pub bbox: BBox,
    /// Detector score.
    pub score: f32,
    /// Eyes, nose tip, mouth corners in the frame's pixels (the subject's right first).
    pub landmarks: [[f32; 2]; 5],
    /// Laplacian variance of the aligned crop (the gate's sharpness, one term of the tracker's
    /// quality score).
    pub sharpness: f32,
    /// The aligned crop, [`CROP_SIZE`] square.
    pub crop: RgbImage,
}

/// A crop as it is shipped and cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedCrop {
    /// The crop as JPEG (quality [`JPEG_QUALITY`]): the bytes that are hashed and shipped.
    pub jpeg: Vec<u8>,
    /// Lower-case hex MD5 of `jpeg`, the content key.
    pub md5: String,
}

impl FaceCrop {
    /// The crop's JPEG and content key. Deterministic: the same crop gives the same bytes.
    pub fn encode(&self) -> Result<EncodedCrop, image::ImageError> {
        let jpeg = encode_jpeg(&self.crop)?;
        Ok(EncodedCrop { md5: content_key(&jpeg), jpeg })
    }
}

/// One detected frame: its accepted faces (possibly none), in the detector's order.
#[derive(Debug, Clone)]
pub struct DetectedFrame {
    pub camera: Arc<str>,
    pub group: Arc<str>,
    /// Capture wall time of the frame.
    pub capture_time: SystemTime,
    pub frame_number: u64,
    pub faces: Vec<FaceCrop>,
}

/// Where detected frames go (the Redis hand-off, or a collector in tests).
///
/// Called on the detection threads, once per frame detected, in no guaranteed order across
/// threads (two threads may serve one camera). It may block (a durable hand-off should apply backpressure
/// rather than drop): detection then falls behind and the camera slots drop older frames as
/// `replaced`, while the RTSP readers are never stalled.
pub trait FaceSink: Send + Sync {
    fn accept(&self, frame: DetectedFrame);
}

/// The running detection threads of a group.
pub struct DetectPool {
    threads: Vec<std::thread::JoinHandle<()>>,
    stats: Arc<DetectStats>,
}

impl DetectPool {
    /// Starts one thread `detect-<group>-<i>` per detector, taking frames from `slots` until
    /// they are closed and drained.
    pub fn start(
        group: Arc<str>,
        detectors: Vec<Box<dyn Detector>>,
        gate: QualityGate,
        slots: Arc<FrameSlots>,
        sink: Arc<dyn FaceSink>,
    ) -> std::io::Result<DetectPool> {
        let stats = Arc::new(DetectStats::default());
        let mut threads = Vec::with_capacity(detectors.len());
        for (i, detector) in detectors.into_iter().enumerate() {
            let worker = DetectThread {
                group: group.clone(),
                detector,
                gate: gate.clone(),
                sink: sink.clone(),
                stats: stats.clone(),
            };
            let slots = slots.clone();
            let span = tracing::error_span!("detect", group = %group, thread = i);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("detect-{group}-{i}"))
                    .spawn(move || span.in_scope(|| worker.run(&slots)))?,
            );
        }
        Ok(DetectPool { threads, stats })
    }

    pub fn stats(&self) -> &Arc<DetectStats> {
        &self.stats
    }

    /// Waits for every thread to exit (close the slots first). Blocking.
    pub fn join(self) {
        for t in self.threads {
            if t.join().is_err() {
                tracing::error!("A detection thread panicked.");
            }
        }
    }
}

struct DetectThread {
    group: Arc<str>,
    detector: Box<dyn Detector>,
    gate: QualityGate,
    sink: Arc<dyn FaceSink>,
    stats: Arc<DetectStats>,
}

impl DetectThread {
    fn run(mut self, slots: &FrameSlots) {
        tracing::debug!("Detection thread starting.");
        while let Some((frame, camera_stats)) = slots.take() {
            let started = Instant::now();
            let detections = self.detector.detect(&frame.image);
            self.stats.detect_nanos.fetch_add(nanos(started), Relaxed);
            self.stats.latency.observe(Stage::Detect, started.elapsed());
            self.stats.frames.fetch_add(1, Relaxed);
            let detections = match detections {
                Ok(d) => d,
                Err(e) => {
                    self.stats.errors.fetch_add(1, Relaxed);
                    tracing::warn!(camera = %frame.camera, frame = frame.frame_number, error = %e, "Detection failed; frame skipped.");
                    continue;
                }
            };
            self.stats.faces_detected.fetch_add(detections.len() as u64, Relaxed);
            camera_stats.faces_detected.fetch_add(detections.len() as u64, Relaxed);
            let mut faces = Vec::with_capacity(detections.len());
            for det in detections {
                let one = Instant::now();
                if let Some(crop) = self.crop(&frame, det) {
                    self.stats.latency.observe(Stage::Align, one.elapsed());
                    self.stats.faces_accepted.fetch_add(1, Relaxed);
                    faces.push(crop);
                }
            }
            self.sink.accept(DetectedFrame {
                camera: frame.camera.clone(),
                group: self.group.clone(),
                capture_time: frame.capture_time,
                frame_number: frame.frame_number,
                faces,
            });
        }
        tracing::debug!("Detection thread ending.");
    }

    /// The face as a [`FaceCrop`], or `None` (counted) when the gate rejects it.
    fn crop(&self, frame: &super::Frame, det: Detection) -> Option<FaceCrop> {
        // Size and score first: cheap, and no alignment for faces that fail them.
        if let Err(r) = self.gate.check_detection(&det) {
            self.stats.reject(&r);
            return None;
        }
        let crop = align_face(&frame.image, &det.landmarks, CROP_SIZE);
        let sharpness = match self.gate.check(&det, &crop) {
            Ok(sharpness) => sharpness,
            Err(r) => {
                self.stats.reject(&r);
                return None;
            }
        };
        Some(FaceCrop {
            camera: frame.camera.clone(),
            group: self.group.clone(),
            capture_time: frame.capture_time,
            frame_number: frame.frame_number,
            bbox: det.bbox,
            score: det.score,
            landmarks: det.landmarks,
            sharpness,
            crop,
        })
    }
}

/// `img` as a JPEG at [`JPEG_QUALITY`].
pub fn encode_jpeg(img: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Vec::with_capacity(8 * 1024);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY).encode_image(img)?;
    Ok(out)
}

fn nanos(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::Frame;
    use crate::instrument::RejectReason;
    use crate::vision::{ARCFACE_TEMPLATE, FakeDetector, QualitySpec};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<DetectedFrame>>);
    impl FaceSink for Collect {
        fn accept(&self, frame: DetectedFrame) {
            self.0.lock().unwrap().push(frame);
        }
    }

    fn det(x: f32, size: f32, score: f32) -> Detection {
        let k = size / 112.0;
        let landmarks = ARCFACE_TEMPLATE.map(|[lx, ly]| [x + lx * k, 10.0 + ly * k]);
        Detection { bbox: BBox { x, y: 10.0, w: size, h: size }, score, landmarks }
    }

    #[test]
    fn accepted_faces_reach_the_sink_with_their_hash() {
        let slots = FrameSlots::new();
        let cam_stats = Arc::new(super::super::CameraStats::default());
        let h = slots.register(cam_stats);
        let dets = vec![det(0.0, 100.0, 0.95), det(150.0, 10.0, 0.95), det(200.0, 100.0, 0.5)];
        let sink = Arc::new(Collect::default());
        let gate = QualityGate::new(QualitySpec { min_sharpness: 0.0, ..QualitySpec::default() });
        let pool = DetectPool::start(
            "g".into(),
            vec![Box::new(FakeDetector::new(dets))],
            gate,
            slots.clone(),
            sink.clone(),
        )
        .unwrap();
        let image =
            RgbImage::from_fn(400, 200, |x, y| image::Rgb([(x * 7 % 256) as u8, (y * 13 % 256) as u8, 50]));
        h.put(Frame {
            camera: "cam".into(),
            frame_number: 42,
            capture_time: SystemTime::now(),
            key_frame: true,
            image,
        });
        slots.close();
        let stats = pool.stats().clone();
        pool.join();
        let frames = sink.0.lock().unwrap();
        assert_eq!(frames.len(), 1);
        let got = &frames[0].faces;
        assert_eq!(got.len(), 1);
        let c = &got[0];
        assert_eq!((&*c.camera, &*c.group, c.frame_number), ("cam", "g", 42));
        assert_eq!(c.crop.dimensions(), (CROP_SIZE, CROP_SIZE));
        let e = c.encode().unwrap();
        assert_eq!(e.md5, content_key(&e.jpeg));
        assert_eq!(e, c.encode().unwrap(), "the same crop, the same bytes and key");
        assert_eq!(image::load_from_memory(&e.jpeg).unwrap().to_rgb8().dimensions(), (112, 112));
        assert_eq!(stats.faces_detected.load(Relaxed), 3);
        assert_eq!((stats.rejected(RejectReason::TooSmall), stats.rejected(RejectReason::LowScore)), (1, 1));
    }
}
