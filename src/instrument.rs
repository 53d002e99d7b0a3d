//! Instrumentation vocabulary: the stage names, the drop and rejection reasons, and the latency
//! hooks the pipeline observes into. A leaf: it imports nothing from the rest of the crate, so
//! every stage of the pipeline can use it and the exporter ([`crate::metrics`]) can read the
//! pipeline's counters without a circle of imports.
//!
//! # The rules (the README's "Metrics" section lists every family)
//! - A **counter** is a relaxed `AtomicU64` in the stage's own stats struct (`CameraStats`,
//!   `DetectStats`, `SinkStats`, `WorkerStats`), incremented on the hot path and read by the
//!   exporter when `/metrics` is scraped. Every counter a stats struct keeps is exported; a
//!   counter nobody exports is removed.
//! - A **histogram** is a latency, in seconds: [`Stage`] names the step, and [`StageHooks`]
//!   carries the histograms into structs made before any registry exists (and in tests, none).
//!   Time-to-name is the one non-stage histogram.
//! - **Labels** are bounded by the configuration or by an enum in this file: `camera`, `group`,
//!   `stage` ([`Stage`]), `reason` ([`DropReason`], [`RejectReason`]) and
//!   `outcome`. Never a person, an md5, a message or a URL.
//! - A reason is an enum with `ALL` and `as_str()`; code never types a label string.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::Histogram;

/// A timed step of the pipeline: the `stage` label of `redeye_stage_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// libavcodec: one packet in, its frames out (decode thread).
    Decode,
    /// YuNet on one frame (detection thread).
    Detect,
    /// One accepted face: alignment and the sharpness gate.
    Align,
    /// One batch of crops through the recogniser.
    Embed,
    /// One embedding against the gallery.
    Match,
    /// `GET image:<md5>` (ingest's cache lookup).
    RedisGet,
    /// `XADD` of a crop to its group's faces stream (ingest).
    RedisXadd,
    /// `SET image:<md5> EX ttl` (worker caching a result).
    RedisSet,
    /// `XACK` of a batch (worker).
    RedisXack,
    /// An event: `XADD` to the events stream, then `PUBLISH`.
    RedisPublish,
    /// One shot's vote folded into its track record (the track script, worker).
    RedisFold,
    /// A track's embedding against the in-memory index of recent visitors (worker).
    VisitorMatch,
    /// The visitor script: re-check and create or attach a visitor (worker).
    RedisVisitor,
}

impl Stage {
    /// Every stage, in label order.
    pub const ALL: [Stage; 13] = [
        Stage::Decode,
        Stage::Detect,
        Stage::Align,
        Stage::Embed,
        Stage::Match,
        Stage::RedisGet,
        Stage::RedisXadd,
        Stage::RedisSet,
        Stage::RedisXack,
        Stage::RedisPublish,
        Stage::RedisFold,
        Stage::VisitorMatch,
        Stage::RedisVisitor,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Detect => "detect",
            Stage::Align => "align",
            Stage::Embed => "embed",
            Stage::Match => "match",
            Stage::RedisGet => "redis_get",
            Stage::RedisXadd => "redis_xadd",
            Stage::RedisSet => "redis_set",
            Stage::RedisXack => "redis_xack",
            Stage::RedisPublish => "redis_publish",
            Stage::RedisFold => "redis_fold",
            Stage::VisitorMatch => "visitor_match",
            Stage::RedisVisitor => "redis_visitor",
        }
    }
}

/// Why a frame was dropped. Bounded and stable: these become the `reason` label of
/// `redeye_camera_frames_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Decoded, but between two samples of the configured fps.
    Sampling,
    /// Waited in the newest-frame slot and was replaced by a newer frame before detection took it.
    Replaced,
    /// libavcodec refused the packet or the frame could not be converted.
    DecodeError,
    /// Received while the decoder's input queue was full (the decoder is behind); the stream
    /// then resumes at the next key frame.
    Backlog,
    /// Received before the first key frame of a session (or after a backlog drop): it cannot
    /// be decoded without its references.
    WaitingForKey,
    /// Not a key frame, in key-frames-only mode (skipped by libavcodec).
    NonKey,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 6] = [
        DropReason::Sampling,
        DropReason::Replaced,
        DropReason::DecodeError,
        DropReason::Backlog,
        DropReason::WaitingForKey,
        DropReason::NonKey,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Sampling => "sampling",
            DropReason::Replaced => "replaced",
            DropReason::DecodeError => "decode_error",
            DropReason::Backlog => "backlog",
            DropReason::WaitingForKey => "waiting_for_key",
            DropReason::NonKey => "non_key",
        }
    }
}

/// Why the quality gate stopped a face: the `reason` label of `redeye_faces_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    TooSmall,
    LowScore,
    Blurry,
}

impl RejectReason {
    /// Every reason, in label order.
    pub const ALL: [RejectReason; 3] = [RejectReason::TooSmall, RejectReason::LowScore, RejectReason::Blurry];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::TooSmall => "too_small",
            RejectReason::LowScore => "low_score",
            RejectReason::Blurry => "blurry",
        }
    }
}

/// Latency histograms attached after the fact. The pipeline's counter structs each carry one,
/// because they are created before any registry sees them (and in tests, with none):
/// observing before the exporter attaches the histograms does nothing.
#[derive(Debug, Default)]
pub struct StageHooks {
    stages: [OnceLock<Histogram>; Stage::ALL.len()],
    time_to_name: OnceLock<Histogram>,
    visit_time_to_name: OnceLock<Histogram>,
}

impl StageHooks {
    /// Records `elapsed` for `stage`.
    pub fn observe(&self, stage: Stage, elapsed: Duration) {
        if let Some(h) = self.stages[stage as usize].get() {
            h.observe(elapsed.as_secs_f64());
        }
    }

    /// Records the time from `capture_ts_ms` (Unix ms, the frame's capture) to now, the event.
    /// A capture time in the future (cameras with a skewed clock) counts as zero; an implausible
    /// one (see [`plausible_age`]) is not recorded.
    pub fn observe_time_to_name(&self, capture_ts_ms: u64) {
        if let (Some(h), Some(age)) = (self.time_to_name.get(), plausible_age(capture_ts_ms)) {
            h.observe(age);
        }
    }

    /// Records the time from a track's first sighting (Unix ms) to now, its `arrived` event
    /// (not recorded when implausible, as [`StageHooks::observe_time_to_name`]).
    pub fn observe_visit_time_to_name(&self, first_seen_ms: u64) {
        if let (Some(h), Some(age)) = (self.visit_time_to_name.get(), plausible_age(first_seen_ms)) {
            h.observe(age);
        }
    }

    /// Sends later observations to these histograms: `stages` indexed by [`Stage`] order,
    /// time-to-name per face and per visit. Only the first attachment counts.
    pub fn attach(&self, stages: &[Histogram], time_to_name: &Histogram, visit_time_to_name: &Histogram) {
        for (hook, h) in self.stages.iter().zip(stages) {
            let _ = hook.set(h.clone());
        }
        let _ = self.time_to_name.set(time_to_name.clone());
        let _ = self.visit_time_to_name.set(visit_time_to_name.clone());
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_millis() -> u64 {
    millis_of(SystemTime::now())
}

/// `t` in Unix milliseconds; 0 for a time before 1970 (a clock that is badly off).
pub fn millis_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds from `ts_ms` (Unix ms) to now; zero for a time in the future.
pub fn seconds_since(ts_ms: u64) -> f64 {
    unix_millis().saturating_sub(ts_ms) as f64 / 1000.0
}

/// The oldest capture time a latency histogram takes: a day. Nothing waits a day to be named;
/// an older time (0, a camera clock reset to 1970, a mangled entry) would put a 56-year sample
/// in the histogram and wreck every percentile.
pub const MAX_PLAUSIBLE_AGE_MS: u64 = 86_400_000;

/// Seconds since `ts_ms`, or `None` when `ts_ms` is 0 or more than [`MAX_PLAUSIBLE_AGE_MS`] ago.
pub fn plausible_age(ts_ms: u64) -> Option<f64> {
    let age = unix_millis().saturating_sub(ts_ms);
    (ts_ms > 0 && age <= MAX_PLAUSIBLE_AGE_MS).then(|| age as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implausible_capture_times_have_no_age() {
        assert_eq!(plausible_age(0), None);
        assert_eq!(plausible_age(unix_millis() - MAX_PLAUSIBLE_AGE_MS - 1000), None);
        assert!(plausible_age(unix_millis() - 1500).is_some_and(|s| (1.4..2.0).contains(&s)));
        assert_eq!(plausible_age(unix_millis() + 60_000), Some(0.0), "a clock ahead counts as 0");
    }

    #[test]
    fn stages_index_their_histograms_in_order() {
        for (i, s) in Stage::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{s:?}");
        }
    }

    #[test]
    fn labels_are_stable() {
        let drops: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(drops, ["sampling", "replaced", "decode_error", "backlog", "waiting_for_key", "non_key"]);
        let rejects: Vec<&str> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(rejects, ["too_small", "low_score", "blurry"]);
    }

    #[test]
    fn hooks_observe_only_once_attached() {
        let hooks = StageHooks::default();
        hooks.observe(Stage::Embed, Duration::from_millis(1));
        let stages: Vec<Histogram> = Stage::ALL
            .iter()
            .map(|s| Histogram::with_opts(prometheus::HistogramOpts::new(s.as_str(), "h")).unwrap())
            .collect();
        let ttn = Histogram::with_opts(prometheus::HistogramOpts::new("ttn", "h")).unwrap();
        hooks.attach(&stages, &ttn, &ttn);
        hooks.observe(Stage::Embed, Duration::from_millis(1));
        hooks.observe_time_to_name(unix_millis() + 60_000);
        assert_eq!(stages[Stage::Embed as usize].get_sample_count(), 1);
        assert_eq!(ttn.get_sample_sum(), 0.0, "a capture time in the future counts as zero");
    }
}
