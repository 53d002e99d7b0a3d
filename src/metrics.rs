//! Prometheus metrics: every family is created and registered here, on a [`Registry`] the
//! process owns (no global registry), and served by [`crate::admin`].
//!
//! Two kinds of sources feed it:
//! - Counters the pipeline already keeps as plain atomics ([`CameraStats`], [`DetectStats`],
//!   [`WorkerStats`], [`SinkStats`]) are read when `/metrics` is scraped, by the collector in
//!   `sources`; registering them ([`Metrics::add_camera`] and friends) costs the hot path nothing.
//! - Latencies are histograms observed where they happen: [`Metrics::observe`] with a
//!   [`Stage`], or through the [`StageHooks`] each counter struct carries, which
//!   [`Metrics::add_camera`] and friends attach to the histograms when they register it.
//!
//! Stream length, consumer-group lag and pending, and the gallery size are polled from Redis by
//! [`poll_redis`] every [`POLL_INTERVAL`].
//!
//! Names follow `redeye_<subsystem>_<name>_<unit>`, counters end in `_total`, and the only
//! labels are `camera`, `group`, `stage`, `reason`, `outcome` and `kind` (plus `version` on
//! `redeye_build_info`), all bounded by the configuration. The README's "Metrics" section lists
//! every family; the dashboards use only those.

mod poll;
mod sources;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::camera::{CameraStats, DetectStats, GroupIngest};
use crate::ingest::{SinkStats, Trackers};
use crate::instrument::seconds_since;
pub use crate::instrument::{Stage, StageHooks};
use crate::recognize::worker::WorkerStats;

pub use poll::{POLL_INTERVAL, poll_redis};

/// Stage buckets, seconds: 100 µs (a Redis round trip on loopback) to 10 s (a stalled node).
const STAGE_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Time-to-name buckets, seconds: 10 ms to 10 min (a backlog after an outage).
const TIME_TO_NAME_BUCKETS: [f64; 15] =
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// Every metric family of the process, registered on its own [`Registry`].
pub struct Metrics {
    registry: Registry,
    /// One child of `redeye_stage_duration_seconds` per [`Stage`], resolved once.
    stages: Vec<Histogram>,
    time_to_name: Histogram,
    visit_time_to_name: Histogram,
    gallery_people: IntGauge,
    visitors_stored: IntGauge,
    visitors_evicted: IntGauge,
    stream_length: IntGaugeVec,
    stream_lag: IntGaugeVec,
    stream_pending: IntGaugeVec,
    sources: Arc<sources::Sources>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every family. Label sets are pre-created where they are known
    /// (every stage, the build), so a series exists from the first scrape, at zero.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let stage_vec = HistogramVec::new(
            HistogramOpts::new(
                "redeye_stage_duration_seconds",
                "Time spent in one pipeline stage (per frame, face, batch or Redis command).",
            )
            .buckets(STAGE_BUCKETS.to_vec()),
            &["stage"],
        )
        .expect("valid stage histogram");
        let stages = Stage::ALL.iter().map(|s| stage_vec.with_label_values(&[s.as_str()])).collect();
        let time_to_name = Histogram::with_opts(
            HistogramOpts::new(
                "redeye_time_to_name_seconds",
                "From a frame's capture to the recognition event of a face in it.",
            )
            .buckets(TIME_TO_NAME_BUCKETS.to_vec()),
        )
        .expect("valid time-to-name histogram");
        let visit_time_to_name = Histogram::with_opts(
            HistogramOpts::new(
                "redeye_visit_time_to_name_seconds",
                "From a track's first sighting to its arrived event (the identity decided).",
            )
            .buckets(TIME_TO_NAME_BUCKETS.to_vec()),
        )
        .expect("valid visit time-to-name histogram");
        let gallery_people =
            IntGauge::new("redeye_gallery_people", "People enrolled in the gallery.").expect("valid gauge");
        let visitors_stored = IntGauge::new(
            "redeye_visitors_stored",
            "Anonymous visitors remembered in Redis (the visitor index, ZCARD).",
        )
        .expect("valid gauge");
        let visitors_evicted = IntGauge::new(
            "redeye_visitors_evicted",
            "Visitors evicted by [visitors] max_visitors since the store began (a counter kept in Redis).",
        )
        .expect("valid gauge");
        let group_gauge = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["group"]).expect("valid group gauge")
        };
        let stream_length =
            group_gauge("redeye_stream_length_entries", "Entries in the group's faces stream (XLEN).");
        let stream_lag = group_gauge(
            "redeye_stream_lag_entries",
            "Entries of the group's faces stream not yet delivered to any worker (XINFO GROUPS lag).",
        );
        let stream_pending = group_gauge(
            "redeye_stream_pending_entries",
            "Entries delivered to a worker and not yet acknowledged (XINFO GROUPS pending).",
        );
        let build = IntGaugeVec::new(
            Opts::new("redeye_build_info", "Always 1; the version label says which build is running."),
            &["version"],
        )
        .expect("valid build info");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let sources = Arc::new(sources::Sources::new());

        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(stage_vec),
            Box::new(time_to_name.clone()),
            Box::new(visit_time_to_name.clone()),
            Box::new(gallery_people.clone()),
            Box::new(visitors_stored.clone()),
            Box::new(visitors_evicted.clone()),
            Box::new(stream_length.clone()),
            Box::new(stream_lag.clone()),
            Box::new(stream_pending.clone()),
            Box::new(build),
            Box::new(sources::Collector(sources.clone())),
        ];
        for c in collectors {
            registry.register(c).expect("metric families have distinct names");
        }
        Metrics {
            registry,
            stages,
            time_to_name,
            visit_time_to_name,
            gallery_people,
            visitors_stored,
            visitors_evicted,
            stream_length,
            stream_lag,
            stream_pending,
            sources,
        }
    }

    /// The registry, for callers that add families of their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format (what `/metrics` serves).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }

    /// Records `elapsed` for `stage`.
    pub fn observe(&self, stage: Stage, elapsed: Duration) {
        self.stages[stage as usize].observe(elapsed.as_secs_f64());
    }

    /// The histogram of `stage`, for a thread that keeps the handle (cheap to clone).
    pub fn stage(&self, stage: Stage) -> Histogram {
        self.stages[stage as usize].clone()
    }

    /// Records the time from `capture_ts_ms` (Unix ms, the frame's capture) to now, the event.
    /// A capture time in the future (cameras with a skewed clock) counts as zero.
    pub fn observe_time_to_name(&self, capture_ts_ms: u64) {
        self.time_to_name.observe(seconds_since(capture_ts_ms));
    }

    /// Exports a camera's counters under `camera` and `group`, and attaches the stage
    /// histograms to its hooks (decode). Registering the same camera again replaces it.
    pub fn add_camera(&self, group: &str, camera: &str, stats: Arc<CameraStats>) {
        stats.latency.attach(&self.stages, &self.time_to_name, &self.visit_time_to_name);
        self.sources.add_camera(group, camera, stats);
    }

    /// Exports a group's detection counters and attaches the stage histograms (detect, align).
    pub fn add_detect(&self, group: &str, stats: Arc<DetectStats>) {
        stats.latency.attach(&self.stages, &self.time_to_name, &self.visit_time_to_name);
        self.sources.add_detect(group, stats);
    }

    /// [`Metrics::add_camera`] for each camera of a running group, and [`Metrics::add_detect`].
    pub fn add_group_ingest(&self, ingest: &GroupIngest) {
        for (camera, stats) in ingest.cameras() {
            self.add_camera(ingest.name(), camera, stats.clone());
        }
        self.add_detect(ingest.name(), ingest.detect_stats().clone());
    }

    /// Exports the recognition workers' counters (several registrations add up) and attaches
    /// the stage histograms (embed, match, Redis commands) and time-to-name.
    pub fn add_workers(&self, stats: Arc<WorkerStats>) {
        stats.latency.attach(&self.stages, &self.time_to_name, &self.visit_time_to_name);
        self.sources.add_workers(stats);
    }

    /// Exports ingest's cache hit and miss counters (several registrations add up) and
    /// attaches the stage histograms (Redis commands) and time-to-name (cache hits).
    pub fn add_sink(&self, stats: Arc<SinkStats>) {
        stats.latency.attach(&self.stages, &self.time_to_name, &self.visit_time_to_name);
        self.sources.add_sink(stats);
    }

    /// Exports the trackers' counters per camera (tracks started and ended, shots sent, faces
    /// dropped by the tracker). Registering a camera again replaces it.
    pub fn add_trackers(&self, trackers: &Trackers) {
        self.sources.add_tracks(trackers.stats());
    }

    /// Creates the per-group gauges at zero, so the series exist before the first poll.
    pub fn add_stream_group(&self, group: &str) {
        for g in [&self.stream_length, &self.stream_lag, &self.stream_pending] {
            g.with_label_values(&[group]);
        }
    }

    fn set_stream(&self, group: &str, length: u64, lag: Option<u64>, pending: u64) {
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.stream_length.with_label_values(&[group]).set(int(length));
        // Redis cannot always tell the lag (entries deleted past the last delivered one). The
        // stream holds only unfinished work (finished entries are deleted), so what is not
        // pending is undelivered: the length minus the pending count is the lag then.
        let lag = lag.unwrap_or(length.saturating_sub(pending));
        self.stream_lag.with_label_values(&[group]).set(int(lag));
        self.stream_pending.with_label_values(&[group]).set(int(pending));
    }

    fn set_gallery_people(&self, n: u64) {
        self.gallery_people.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    fn set_visitors(&self, stored: u64, evicted: u64) {
        self.visitors_stored.set(i64::try_from(stored).unwrap_or(i64::MAX));
        self.visitors_evicted.set(i64::try_from(evicted).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn families_are_named_and_labelled_as_documented() {
        let m = Metrics::new();
        m.observe(Stage::Embed, Duration::from_millis(3));
        m.add_stream_group("g1");
        let workers = Arc::new(WorkerStats::default());
        workers.known.fetch_add(2, Relaxed);
        workers.dead_letters.fetch_add(1, Relaxed);
        m.add_workers(workers.clone());
        m.add_workers(workers);
        let cam = Arc::new(CameraStats::default());
        cam.frames_received.fetch_add(7, Relaxed);
        cam.drop_frame(crate::instrument::DropReason::Sampling);
        cam.latency.observe(Stage::Decode, Duration::from_millis(4)); // before: not recorded
        m.add_camera("g1", "door", cam.clone());
        cam.latency.observe(Stage::Decode, Duration::from_millis(4));
        let text = m.render();
        for line in [
            "redeye_stage_duration_seconds_count{stage=\"embed\"} 1",
            "redeye_stage_duration_seconds_count{stage=\"decode\"} 1",
            "redeye_stage_duration_seconds_count{stage=\"redis_xack\"} 0",
            "redeye_recognitions_total{outcome=\"known\"} 4",
            "redeye_recognitions_total{outcome=\"dead_letter\"} 2",
            "redeye_camera_frames_received_total{camera=\"door\",group=\"g1\"} 7",
            "redeye_camera_frames_dropped_total{camera=\"door\",group=\"g1\",reason=\"sampling\"} 1",
            "redeye_camera_up{camera=\"door\",group=\"g1\"} 0",
            "redeye_stream_lag_entries{group=\"g1\"} 0",
            "redeye_build_info{version=\"",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        // Nothing registered for ingest's cache: no family at all rather than a false zero.
        assert!(!text.contains("redeye_cache_hits_total"));
    }

    #[test]
    fn an_unknown_lag_is_the_unfinished_entries_not_pending() {
        let m = Metrics::new();
        m.add_stream_group("g");
        m.set_stream("g", 5, None, 2);
        assert!(m.render().contains("redeye_stream_lag_entries{group=\"g\"} 3"));
        m.set_stream("g", 5, Some(1), 2);
        assert!(m.render().contains("redeye_stream_lag_entries{group=\"g\"} 1"));
    }

    #[test]
    fn a_camera_registered_again_replaces_the_old_counters() {
        let m = Metrics::new();
        let old = Arc::new(CameraStats::default());
        old.frames_received.fetch_add(5, Relaxed);
        m.add_camera("g", "c", old);
        m.add_camera("g", "c", Arc::new(CameraStats::default()));
        let text = m.render();
        assert!(text.contains("redeye_camera_frames_received_total{camera=\"c\",group=\"g\"} 0"), "{text}");
        assert_eq!(text.matches("redeye_camera_frames_received_total{").count(), 1);
    }
}
