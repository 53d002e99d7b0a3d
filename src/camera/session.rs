//! What one camera session shares between its source (RTSP or file) and its decode thread,
//! and its time limits.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::decode::{self, DecodeError, DecodeSettings, Decoder};
use super::error::CameraError;
use super::slot::SlotHandle;
use super::stats::CameraStats;
use crate::instrument::DropReason;

/// Time limits of a camera session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// Each of DESCRIBE, SETUP and PLAY, including the TCP connect (default 10 s).
    pub connect: Duration,
    /// No frame for this long ends the session as stalled (default 10 s).
    pub stall: Duration,
    /// On shutdown, how long to wait for TEARDOWN (default 5 s).
    pub teardown: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            stall: Duration::from_secs(10),
            teardown: Duration::from_secs(5),
        }
    }
}

/// How long a decode thread gets to drain its queue when its session ends.
const DECODER_EXIT: Duration = Duration::from_secs(5);

/// What one session needs, cheap to clone (the file source moves a copy to its thread).
#[derive(Clone)]
pub(crate) struct SessionCtx {
    pub(super) camera: Arc<str>,
    pub(super) stats: Arc<CameraStats>,
    pub(super) slot: SlotHandle,
    pub(super) numbers: Arc<AtomicU64>,
    pub(super) settings: DecodeSettings,
    pub(super) timeouts: Timeouts,
    pub(super) token: CancellationToken,
}

impl SessionCtx {
    pub(super) fn spawn_decoder(
        &self,
        setup: decode::CodecSetup,
    ) -> Result<decode::DecoderHandle, DecodeError> {
        let d = Decoder::new(
            self.camera.clone(),
            setup,
            self.settings,
            self.stats.clone(),
            self.numbers.clone(),
        )?;
        decode::spawn(d, self.slot.clone())
    }

    /// The error for a decode thread that exited while its source was still running.
    pub(super) fn decoder_failure(&self, r: Result<(), DecodeError>) -> CameraError {
        match r {
            Err(e) => CameraError::Decode(e),
            Ok(()) => CameraError::Internal("the decode thread exited early".into()),
        }
    }

    /// Closes the decoder's input and waits for it to drain.
    pub(super) async fn close_decoder(&self, handle: decode::DecoderHandle) {
        match handle.close(DECODER_EXIT).await {
            Some(Ok(())) => {}
            Some(Err(e)) => tracing::debug!(error = %e, "Decoder ended with an error."),
            None => tracing::warn!("Decode thread still busy {DECODER_EXIT:?} after its session ended."),
        }
    }
}

/// Drops frames until a key frame: the start of a session, and after a frame was lost to a
/// full decoder queue (the frames after it would reference a picture the decoder never saw).
#[derive(Debug, Default)]
pub(crate) struct KeyGate {
    started: bool,
}

impl KeyGate {
    pub(super) fn admit(&mut self, key: bool, stats: &CameraStats) -> bool {
        if !self.started {
            if !key {
                stats.drop_frame(DropReason::WaitingForKey);
                return false;
            }
            self.started = true;
        }
        true
    }

    pub(super) fn resync(&mut self) {
        self.started = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_gate_waits_for_a_key_frame_and_resyncs() {
        let stats = CameraStats::default();
        let mut g = KeyGate::default();
        let admitted: Vec<bool> = [false, false, true, false].iter().map(|&k| g.admit(k, &stats)).collect();
        assert_eq!(admitted, [false, false, true, true]);
        g.resync();
        assert!(!g.admit(false, &stats) && g.admit(true, &stats));
        assert_eq!(stats.dropped(DropReason::WaitingForKey), 3);
    }
}
