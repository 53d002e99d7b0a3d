//! Ingest's face trackers, one per camera, and what they decide per frame: which faces are sent
//! as shots of which track, which are dropped (and why), and which tracks ended.
//!
//! The trackers live behind one mutex: a frame's update takes microseconds (a few boxes, a 2x2
//! Kalman step per track), far less than the detection that produced it, and two detection
//! threads serving one camera must see its tracker in one order anyway. No Redis call is made
//! under the lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::camera::DetectedFrame;
use crate::config::TrackingConfig;
use crate::instrument::millis_of;
use crate::track::{self, Action, EndedTrack, Observation, Tracker};

/// One camera's tracking counters; the metrics module reads them.
#[derive(Debug, Default)]
pub struct TrackStats {
    /// Tracks confirmed (seen in `min_hits` frames): visits.
    pub started: AtomicU64,
    /// Confirmed tracks that ended.
    pub ended: AtomicU64,
    /// Shots handed off to recognition.
    pub shots_sent: AtomicU64,
    dropped: [AtomicU64; track::DropReason::ALL.len()],
}

impl TrackStats {
    fn drop_face(&self, reason: track::DropReason) {
        self.dropped[reason as usize].fetch_add(1, Relaxed);
    }

    /// Faces the tracker did not send, for `reason`.
    pub fn dropped(&self, reason: track::DropReason) -> u64 {
        self.dropped[reason as usize].load(Relaxed)
    }
}

/// A face of the frame to send: its index in [`DetectedFrame::faces`] and its track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shot {
    pub index: usize,
    pub track: String,
    /// First sighting of the track, Unix ms.
    pub first_seen: u64,
}

/// A confirmed track that ended, with its group: its record is to be closed (`left`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub group: Arc<str>,
    pub track: EndedTrack,
}

/// What to do after one frame.
#[derive(Debug, Default)]
pub struct FramePlan {
    pub shots: Vec<Shot>,
    pub ended: Vec<Ended>,
    /// The camera's counters (`shots_sent` is counted once a shot is handed off).
    pub stats: Option<Arc<TrackStats>>,
}

struct CameraTracker {
    group: Arc<str>,
    tracker: Tracker,
    stats: Arc<TrackStats>,
    /// When the tracker last saw a frame, to end the tracks of a camera that stopped sending.
    last_frame: Instant,
}

/// The trackers of every camera this ingest runs.
pub struct Trackers {
    max_age: Duration,
    cameras: Mutex<HashMap<Arc<str>, CameraTracker>>,
}

impl Trackers {
    /// One tracker per `(group, camera)`, each with counters at zero.
    pub fn new(config: &TrackingConfig, cameras: &[(Arc<str>, Arc<str>)]) -> Trackers {
        let cameras = cameras
            .iter()
            .map(|(group, camera)| {
                let tracker = CameraTracker {
                    group: group.clone(),
                    tracker: Tracker::new(camera, config),
                    stats: Arc::default(),
                    last_frame: Instant::now(),
                };
                (camera.clone(), tracker)
            })
            .collect();
        Trackers { max_age: Duration::from_millis(config.max_age_ms), cameras: Mutex::new(cameras) }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, CameraTracker>> {
        // Tracker state is plain data; a panic mid-update leaves at worst one odd track.
        self.cameras.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `(group, camera, counters)` of every camera, for the metrics.
    pub fn stats(&self) -> Vec<(String, String, Arc<TrackStats>)> {
        let mut all: Vec<_> = self
            .lock()
            .iter()
            .map(|(camera, t)| (t.group.to_string(), camera.to_string(), t.stats.clone()))
            .collect();
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        all
    }

    /// Runs the camera's tracker on one frame. A camera without a tracker (not configured
    /// here) sends nothing; that is a bug upstream, logged once per frame.
    pub fn update(&self, frame: &DetectedFrame) -> FramePlan {
        let mut cameras = self.lock();
        let Some(cam) = cameras.get_mut(&frame.camera) else {
            tracing::error!(camera = %frame.camera, "No tracker for this camera; frame ignored.");
            return FramePlan::default();
        };
        cam.last_frame = Instant::now();
        let faces: Vec<Observation> = frame
            .faces
            .iter()
            .map(|f| Observation {
                bbox: f.bbox,
                score: f.score,
                landmarks: f.landmarks,
                sharpness: f.sharpness,
            })
            .collect();
        let outcome = cam.tracker.update(millis_of(frame.capture_time), &faces);
        cam.stats.started.fetch_add(outcome.started.len() as u64, Relaxed);
        let mut plan = FramePlan { stats: Some(cam.stats.clone()), ..FramePlan::default() };
        for (index, decision) in outcome.faces.into_iter().enumerate() {
            match (decision.action, decision.track) {
                (Action::Send { .. }, Some(track)) => {
                    plan.shots.push(Shot { index, track, first_seen: decision.first_seen_ms })
                }
                (Action::Send { .. }, None) => cam.stats.drop_face(track::DropReason::OutOfOrder),
                (Action::Drop(reason), _) => cam.stats.drop_face(reason),
            }
        }
        plan.ended = confirmed(&cam.group, &cam.stats, outcome.ended);
        plan
    }

    /// Ends the tracks of cameras that sent no frame for `max_age` (a stalled or finished
    /// stream): tracks unseen for `max_age` before `now_ms`. The extra `max_age` of slack
    /// keeps a camera whose frames merely wait for a busy detector from losing its tracks.
    pub fn expire_idle(&self, now_ms: u64) -> Vec<Ended> {
        let mut ended = Vec::new();
        for cam in self.lock().values_mut() {
            if cam.last_frame.elapsed() > self.max_age {
                let gone = cam.tracker.expire(now_ms.saturating_sub(self.max_age.as_millis() as u64));
                ended.extend(confirmed(&cam.group, &cam.stats, gone));
            }
        }
        ended
    }

    /// Ends every live track (shutdown: no more frames will come).
    pub fn end_all(&self) -> Vec<Ended> {
        let mut ended = Vec::new();
        for cam in self.lock().values_mut() {
            let gone = cam.tracker.end_all();
            ended.extend(confirmed(&cam.group, &cam.stats, gone));
        }
        ended
    }

    /// `(group, track)` of every live track with a record in Redis, to keep the records alive.
    pub fn with_record(&self) -> Vec<(Arc<str>, String)> {
        let cameras = self.lock();
        cameras
            .values()
            .flat_map(|cam| cam.tracker.with_record().map(|id| (cam.group.clone(), id.to_owned())))
            .collect()
    }
}

/// The confirmed ones of `tracks` (a tentative track sent nothing and has no record), counted.
fn confirmed(group: &Arc<str>, stats: &TrackStats, tracks: Vec<EndedTrack>) -> Vec<Ended> {
    let ended: Vec<Ended> = tracks
        .into_iter()
        .filter(|t| t.confirmed)
        .map(|track| Ended { group: group.clone(), track })
        .collect();
    stats.ended.fetch_add(ended.len() as u64, Relaxed);
    ended
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::camera::FaceCrop;
    use crate::vision::{ARCFACE_TEMPLATE, BBox};

    fn crop(x: f32) -> FaceCrop {
        let side = 100.0;
        let k = side / 112.0;
        FaceCrop {
            camera: "door".into(),
            group: "lobby".into(),
            capture_time: SystemTime::UNIX_EPOCH,
            frame_number: 0,
            bbox: BBox { x, y: 10.0, w: side, h: side },
            score: 0.9,
            landmarks: ARCFACE_TEMPLATE.map(|[lx, ly]| [x + lx * k, 10.0 + ly * k]),
            sharpness: 300.0,
            crop: image::RgbImage::new(1, 1),
        }
    }

    fn frame(ms: u64, faces: Vec<FaceCrop>) -> DetectedFrame {
        DetectedFrame {
            camera: "door".into(),
            group: "lobby".into(),
            capture_time: SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
            frame_number: ms / 500,
            faces,
        }
    }

    #[test]
    fn a_face_is_sent_once_confirmed_and_ends_after_max_age() {
        let trackers = Trackers::new(&TrackingConfig::default(), &[("lobby".into(), "door".into())]);
        let t0 = 1_700_000_000_000;
        assert!(trackers.update(&frame(t0, vec![crop(50.0)])).shots.is_empty(), "tentative");
        let plan = trackers.update(&frame(t0 + 500, vec![crop(52.0)]));
        assert_eq!(plan.shots, [Shot { index: 0, track: format!("door:{t0}:0"), first_seen: t0 }]);
        assert_eq!(trackers.with_record(), [("lobby".into(), format!("door:{t0}:0"))]);
        assert!(trackers.update(&frame(t0 + 1000, vec![crop(54.0)])).shots.is_empty(), "not better");
        let plan = trackers.update(&frame(t0 + 3100, vec![]));
        assert_eq!(plan.ended.len(), 1);
        assert_eq!((plan.ended[0].track.first_seen_ms, plan.ended[0].track.last_seen_ms), (t0, t0 + 1000));
        let (_, _, stats) = &trackers.stats()[0];
        assert_eq!((stats.started.load(Relaxed), stats.ended.load(Relaxed)), (1, 1));
        assert_eq!(stats.dropped(track::DropReason::Tentative), 1);
        assert_eq!(stats.dropped(track::DropReason::NotBetter), 1);
    }

    #[test]
    fn a_tentative_track_ends_without_a_record_and_shutdown_ends_the_rest() {
        let trackers = Trackers::new(&TrackingConfig::default(), &[("lobby".into(), "door".into())]);
        let t0 = 1_700_000_000_000;
        trackers.update(&frame(t0, vec![crop(50.0), crop(400.0)]));
        trackers.update(&frame(t0 + 500, vec![crop(52.0)]));
        // The second face, seen once, expires without a trace.
        assert!(trackers.update(&frame(t0 + 2400, vec![crop(53.0)])).ended.is_empty());
        assert!(trackers.expire_idle(t0 + 9000).is_empty(), "the camera sent a frame just now");
        let ended = trackers.end_all();
        assert_eq!(ended.len(), 1, "only the confirmed track: {ended:?}");
        assert!(trackers.with_record().is_empty());
    }
}
