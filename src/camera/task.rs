//! The camera task: one per camera, reconnecting forever with backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use retina::client::SessionGroup;
use tokio_util::sync::CancellationToken;

use super::decode::DecodeSettings;
use super::error::{SessionEnd, error_chain};
use super::session::SessionCtx;
use super::session::Timeouts;
use super::slot::SlotHandle;
use super::spec::{CameraSpec, Source};
use super::stats::CameraStats;
use super::{file, rtsp};
use crate::backoff::{Backoff, BackoffPolicy};

/// One camera, reconnecting forever.
pub struct CameraTask {
    spec: CameraSpec,
    stats: Arc<CameraStats>,
    slot: SlotHandle,
    /// The next frame number, continued across sessions.
    numbers: Arc<AtomicU64>,
    backoff: Backoff,
    timeouts: Timeouts,
    /// This camera's RTSP sessions, for TEARDOWN tracking (one group per camera, so that one
    /// camera's stale sessions never delay another's reconnect).
    session_group: Arc<SessionGroup>,
    stale: rtsp::StaleState,
}

impl CameraTask {
    pub fn new(spec: CameraSpec, slot: SlotHandle, stats: Arc<CameraStats>) -> CameraTask {
        let session_group = Arc::new(SessionGroup::default().named(spec.name.to_string()));
        CameraTask {
            spec,
            stats,
            slot,
            numbers: Arc::default(),
            backoff: Backoff::new(BackoffPolicy::default()),
            timeouts: Timeouts::default(),
            session_group,
            stale: rtsp::StaleState::default(),
        }
    }

    pub fn with_backoff(mut self, policy: BackoffPolicy) -> CameraTask {
        self.backoff = Backoff::new(policy);
        self
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> CameraTask {
        self.timeouts = timeouts;
        self
    }

    pub fn stats(&self) -> &Arc<CameraStats> {
        &self.stats
    }

    pub fn session_group(&self) -> &Arc<SessionGroup> {
        &self.session_group
    }

    /// Runs sessions until `token` is cancelled, backing off (exponential, full jitter) between
    /// them; a session that streamed for `healthy_after` resets the backoff. On the way out,
    /// waits (bounded) for the RTSP TEARDOWN.
    pub async fn run(mut self, token: CancellationToken) {
        tracing::info!(source = %self.spec.describe_source(), fps = self.spec.fps, key_frames_only = self.spec.key_frames_only, "Camera starting.");
        let mut first = true;
        loop {
            if !first {
                self.stats.reconnects.fetch_add(1, Relaxed);
            }
            first = false;
            let started = Instant::now();
            let decoded_before = self.stats.frames_decoded.load(Relaxed);
            let end = self.run_once(&token).await;
            self.stats.up.store(false, Relaxed);
            let streamed = self.stats.frames_decoded.load(Relaxed) > decoded_before;
            if streamed && started.elapsed() >= self.backoff.policy().healthy_after {
                self.backoff.reset();
            }
            if matches!(end, SessionEnd::Cancelled) {
                break;
            }
            let ceiling = self.backoff.ceiling();
            self.stats
                .backoff_ceiling_ms
                .store(u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX), Relaxed);
            let delay = self.backoff.next_delay(&mut rand::rng());
            match &end {
                // retina also reports a closed RTSP connection (a camera that died) this way.
                SessionEnd::EndOfStream => {
                    tracing::warn!(?delay, "The server ended the stream; reconnecting.")
                }
                SessionEnd::Stalled { after, other_items } => {
                    tracing::warn!(?after, other_items, ?delay, "No video frames; reconnecting.")
                }
                SessionEnd::Failed(e) => {
                    tracing::warn!(error = %error_chain(e), ?delay, "Camera session failed; retrying.")
                }
                SessionEnd::Cancelled => {} // left the loop above
            }
            tokio::select! {
                biased;
                _ = token.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        match tokio::time::timeout(self.timeouts.teardown, self.session_group.await_teardown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "TEARDOWN failed."),
            Err(_) => tracing::warn!(after = ?self.timeouts.teardown, "TEARDOWN not confirmed in time."),
        }
        tracing::info!("Camera ending.");
    }

    /// One session: connect (or open), stream until cancelled or broken.
    pub async fn run_once(&mut self, token: &CancellationToken) -> SessionEnd {
        let ctx = SessionCtx {
            camera: self.spec.name.clone(),
            stats: self.stats.clone(),
            slot: self.slot.clone(),
            numbers: self.numbers.clone(),
            settings: DecodeSettings {
                fps: self.spec.fps,
                key_frames_only: self.spec.key_frames_only,
                sample_phase: self.spec.sample_phase,
            },
            timeouts: self.timeouts,
            token: token.clone(),
        };
        match &self.spec.source {
            Source::Rtsp(src) => rtsp::run(&ctx, src, &self.session_group, &mut self.stale).await,
            Source::File(path) => file::run(&ctx, path).await,
        }
    }
}
