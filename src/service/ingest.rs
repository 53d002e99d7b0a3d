//! The ingest role: the cameras and detection threads of some groups, and the Redis hand-off
//! they feed.

use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::SHUTDOWN_GRACE;
use crate::app;
use crate::bus::Bus;
use crate::camera::{self, GroupIngest, GroupOptions, GroupSpec};
use crate::config::Config;
use crate::health::Health;
use crate::ingest::RedisSink;
use crate::metrics::Metrics;
use crate::vision::{QualityGate, Runtime};

/// The running ingest of some groups.
pub struct Ingest {
    pub groups: Vec<GroupIngest>,
    pub sink: Arc<RedisSink>,
    /// Ends the tracks of cameras that stopped sending frames (see [`RedisSink::run_expiry`]).
    expiry: tokio::task::JoinHandle<()>,
}

impl Ingest {
    /// Exports every camera's, detection pool's and the sink's counters and latencies.
    pub fn register_metrics(&self, metrics: &Metrics) {
        for group in &self.groups {
            metrics.add_group_ingest(group);
        }
        metrics.add_sink(self.sink.stats().clone());
        if let Some(trackers) = self.sink.trackers() {
            metrics.add_trackers(trackers);
        }
    }

    /// The names of the running groups.
    pub fn group_names(&self) -> Vec<String> {
        self.groups.iter().map(|g| g.name().to_owned()).collect()
    }
}

/// Starts the cameras and detection threads of the `names` groups (all when empty).
pub fn start(
    config: &Config,
    bus: &Bus,
    names: &[String],
    health: &Arc<Health>,
    token: &CancellationToken,
) -> anyhow::Result<Ingest> {
    let crop = camera::CROP_SIZE;
    anyhow::ensure!(
        config.recognizer.input_size == crop,
        "the recognizer takes {0}x{0} crops, ingest aligns faces to {crop}x{crop} (the ArcFace template)",
        config.recognizer.input_size
    );
    let runtime = Runtime::init(Some(&config.runtime.onnxruntime))?;
    // Detection threads run beside the decode threads and the workers: one ONNX Runtime thread
    // each, and more detection threads per group where `detect_threads` asks for them.
    let opts = crate::vision::SessionOptions { intra_threads: 1, ..Default::default() };
    let selected = app::select_groups(config, names)?;
    let sink = Arc::new(RedisSink::new(bus.clone(), config, &selected, health.clone(), token.clone()));
    let mut specs = selected
        .iter()
        .map(|g| GroupSpec::from_config(g, config).with_context(|| format!("group {}", g.name)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    camera::spread_sample_phases(&mut specs);
    let mut groups = Vec::new();
    for (group, spec) in selected.into_iter().zip(specs) {
        let detectors = camera::yunet_detectors(runtime, &config.detector, &opts, group.detect_threads)?;
        let cameras = spec.cameras.len();
        let ingest = GroupIngest::start(
            spec,
            GroupOptions::default(),
            detectors,
            QualityGate::new(config.quality.clone()),
            sink.clone(),
            token,
        )?;
        tracing::info!(group = %group.name, cameras, "Ingest started.");
        groups.push(ingest);
    }
    let expiry = tokio::spawn({
        let (sink, token) = (sink.clone(), token.clone());
        async move { sink.run_expiry(token).await }
    });
    Ok(Ingest { groups, sink, expiry })
}

/// After the token is cancelled: waits for cameras (TEARDOWN) and detection, then ends every
/// live track (each visit gets its `left`), within the grace.
pub async fn stop(ingest: Ingest) {
    let Ingest { groups, sink, expiry } = ingest;
    let all = async {
        futures::future::join_all(groups.into_iter().map(GroupIngest::join)).await;
        let _ = expiry.await;
        sink.finish().await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        tracing::warn!("Ingest did not stop within the grace period.");
    }
}
