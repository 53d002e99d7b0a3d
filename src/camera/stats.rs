//! Counters of the camera path, kept as plain atomics behind an `Arc`.
//!
//! The hot path only does relaxed increments; the metrics module reads these when it is scraped
//! (or mirrors them into Prometheus families) and tests read them directly. Every frame dropped
//! on purpose is counted under exactly one [`DropReason`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::instrument::{DropReason, RejectReason, StageHooks};
use crate::vision::Rejection;

/// One camera's counters. Cheap to share: wrap in an `Arc` and hand clones to the task, the
/// decode thread and the slot.
#[derive(Debug, Default)]
pub struct CameraStats {
    /// Encoded frames (access units) received from the source, including dropped ones.
    pub frames_received: AtomicU64,
    /// Frames that came out of the decoder.
    pub frames_decoded: AtomicU64,
    /// Frames kept by sampling, converted to RGB and put in the newest-frame slot.
    pub frames_sampled: AtomicU64,
    /// Frames taken from the slot by the detection stage.
    pub frames_detected: AtomicU64,
    /// Faces the detector found in this camera's frames, before the quality gate.
    pub faces_detected: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    /// Sessions started after the first one (each failed attempt counts).
    pub reconnects: AtomicU64,
    /// True while a session is delivering decoded frames.
    pub up: AtomicBool,
    /// Ceiling of the delay before the latest reconnect, ms: doubles while attempts fail, back to
    /// the initial value after a healthy session.
    pub backoff_ceiling_ms: AtomicU64,
    /// Time spent in libavcodec (send packet + receive frames), nanoseconds.
    pub decode_nanos: AtomicU64,
    /// Time spent converting sampled frames to RGB, nanoseconds.
    pub convert_nanos: AtomicU64,
    /// The decode latency histogram, once the metrics registry attaches it.
    pub latency: StageHooks,
}

impl CameraStats {
    /// Counts one dropped frame.
    pub fn drop_frame(&self, reason: DropReason) {
        self.dropped[reason as usize].fetch_add(1, Relaxed);
    }

    /// Frames dropped for `reason` so far.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Relaxed)
    }

    /// A consistent-enough copy of every counter, for logs and tests.
    pub fn snapshot(&self) -> CameraSnapshot {
        CameraSnapshot {
            frames_received: self.frames_received.load(Relaxed),
            frames_decoded: self.frames_decoded.load(Relaxed),
            frames_sampled: self.frames_sampled.load(Relaxed),
            frames_detected: self.frames_detected.load(Relaxed),
            dropped: DropReason::ALL.map(|r| (r.as_str(), self.dropped(r))),
            reconnects: self.reconnects.load(Relaxed),
            up: self.up.load(Relaxed),
            backoff_ceiling_ms: self.backoff_ceiling_ms.load(Relaxed),
            decode_nanos: self.decode_nanos.load(Relaxed),
            convert_nanos: self.convert_nanos.load(Relaxed),
        }
    }
}

/// Plain values of [`CameraStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraSnapshot {
    pub frames_received: u64,
    pub frames_decoded: u64,
    pub frames_sampled: u64,
    pub frames_detected: u64,
    /// `(reason label, count)` for every [`DropReason`].
    pub dropped: [(&'static str, u64); DropReason::ALL.len()],
    pub reconnects: u64,
    pub up: bool,
    pub backoff_ceiling_ms: u64,
    pub decode_nanos: u64,
    pub convert_nanos: u64,
}

impl CameraSnapshot {
    /// Frames dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].1
    }
}

/// Counters of one group's detection stage.
#[derive(Debug, Default)]
pub struct DetectStats {
    /// Frames run through the detector.
    pub frames: AtomicU64,
    /// Faces the detector returned.
    pub faces_detected: AtomicU64,
    /// Faces that passed the quality gate and went to the sink.
    pub faces_accepted: AtomicU64,
    rejected: [AtomicU64; RejectReason::ALL.len()],
    /// Frames the detector failed on (logged, then skipped).
    pub errors: AtomicU64,
    /// Time in the detector, nanoseconds.
    pub detect_nanos: AtomicU64,
    /// The detect and align latency histograms, once the metrics registry attaches them.
    pub latency: StageHooks,
}

impl DetectStats {
    /// Counts a face stopped by the quality gate.
    pub fn reject(&self, r: &Rejection) {
        self.rejected[r.reason() as usize].fetch_add(1, Relaxed);
    }

    /// Faces rejected for `reason` so far.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason as usize].load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_per_reason() {
        let s = CameraStats::default();
        s.drop_frame(DropReason::Sampling);
        s.drop_frame(DropReason::Sampling);
        s.drop_frame(DropReason::Replaced);
        let snap = s.snapshot();
        assert_eq!(snap.dropped(DropReason::Sampling), 2);
        assert_eq!(snap.dropped(DropReason::Replaced), 1);
        assert_eq!(snap.dropped(DropReason::NonKey), 0);
    }

    #[test]
    fn rejections_by_label() {
        let s = DetectStats::default();
        s.reject(&Rejection::Blurry { sharpness: 3.0 });
        assert_eq!(s.rejected(RejectReason::Blurry), 1);
        assert_eq!(s.rejected(RejectReason::TooSmall), 0);
    }
}
