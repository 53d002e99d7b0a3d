//! One camera group's ingestion: its camera tasks, their slots and its detection pool.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::detect::{DetectPool, FaceSink};
use super::slot::FrameSlots;
use super::stats::{CameraStats, DetectStats};
use super::{CameraError, CameraSpec, CameraTask, Timeouts};
use crate::backoff::BackoffPolicy;
use crate::config::{Config, GroupConfig};
use crate::vision::{Detector, DetectorSpec, QualityGate, Runtime, SessionOptions, VisionError, YuNet};

/// A group and its enabled cameras, resolved from `cameras.toml`.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub name: Arc<str>,
    pub cameras: Vec<CameraSpec>,
}

impl GroupSpec {
    /// The group's enabled cameras. Fails on the first camera whose URL is unusable (which
    /// `Config::validate` should already have reported).
    pub fn from_config(group: &GroupConfig, config: &Config) -> Result<GroupSpec, CameraError> {
        let cameras = config
            .enabled_cameras(group)
            .map(|c| CameraSpec::from_config(c, config))
            .collect::<Result<_, _>>()?;
        Ok(GroupSpec { name: group.name.as_str().into(), cameras })
    }
}

/// Spreads the sampling phases of the cameras of `groups` evenly over the sampling interval, in
/// order, so that the process's detection threads get a steady stream of frames (see the
/// decoder's `Sampler`) rather than every camera's frame at the same instant.
pub fn spread_sample_phases(groups: &mut [GroupSpec]) {
    let n = groups.iter().map(|g| g.cameras.len()).sum::<usize>().max(1);
    for (i, cam) in groups.iter_mut().flat_map(|g| g.cameras.iter_mut()).enumerate() {
        cam.sample_phase = i as f64 / n as f64;
    }
}

/// Reconnect and timeout settings shared by a group's cameras.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupOptions {
    pub backoff: BackoffPolicy,
    pub timeouts: Timeouts,
}

/// `n` YuNet detectors, one per detection thread (each owns its ort session).
pub fn yunet_detectors(
    rt: &Runtime,
    spec: &DetectorSpec,
    opts: &SessionOptions,
    n: usize,
) -> Result<Vec<Box<dyn Detector>>, VisionError> {
    (0..n.max(1)).map(|_| Ok(Box::new(YuNet::load(rt, spec.clone(), opts)?) as Box<dyn Detector>)).collect()
}

/// A running group: camera tasks on the tokio runtime, detection threads beside it.
pub struct GroupIngest {
    name: Arc<str>,
    cameras: Vec<(Arc<str>, Arc<CameraStats>)>,
    tracker: TaskTracker,
    slots: Arc<FrameSlots>,
    pool: DetectPool,
}

impl GroupIngest {
    /// Starts one task per camera (each in an `error_span!("camera")`) and one detection thread
    /// per detector. Everything runs until `token` is cancelled; then [`GroupIngest::join`].
    /// Must be called within a tokio runtime.
    pub fn start(
        spec: GroupSpec,
        options: GroupOptions,
        detectors: Vec<Box<dyn Detector>>,
        gate: QualityGate,
        sink: Arc<dyn FaceSink>,
        token: &CancellationToken,
    ) -> std::io::Result<GroupIngest> {
        let slots = FrameSlots::new();
        let pool = DetectPool::start(spec.name.clone(), detectors, gate, slots.clone(), sink)?;
        let tracker = TaskTracker::new();
        let mut cameras = Vec::with_capacity(spec.cameras.len());
        for cam in spec.cameras {
            let stats = Arc::new(CameraStats::default());
            let span = tracing::error_span!("camera", camera = %cam.name, group = %spec.name);
            cameras.push((cam.name.clone(), stats.clone()));
            let task = CameraTask::new(cam, slots.register(stats.clone()), stats)
                .with_backoff(options.backoff.clone())
                .with_timeouts(options.timeouts);
            tracker.spawn(task.run(token.child_token()).instrument(span));
        }
        tracker.close();
        Ok(GroupIngest { name: spec.name, cameras, tracker, slots, pool })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Each camera's name and counters, in configuration order.
    pub fn cameras(&self) -> &[(Arc<str>, Arc<CameraStats>)] {
        &self.cameras
    }

    /// The counters of the camera called `name`.
    pub fn camera_stats(&self, name: &str) -> Option<&Arc<CameraStats>> {
        self.cameras.iter().find(|(n, _)| &**n == name).map(|(_, s)| s)
    }

    pub fn detect_stats(&self) -> &Arc<DetectStats> {
        self.pool.stats()
    }

    /// After the token is cancelled: waits for the camera tasks (and their TEARDOWN), then lets
    /// detection finish the frames still waiting and waits for its threads.
    pub async fn join(self) {
        self.tracker.wait().await;
        self.slots.close();
        let pool = self.pool;
        if tokio::task::spawn_blocking(move || pool.join()).await.is_err() {
            tracing::error!(group = %self.name, "Joining the detection threads failed.");
        }
    }
}
