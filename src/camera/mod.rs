//! Camera ingestion: RTSP or file sources → decode threads → newest-frame slots → a per-group
//! detection pool → [`FaceSink`].
//!
//! ```text
//! CameraTask (async, one per camera)        decode-<cam> thread          detect-<group>-<i> threads
//!   rtsp.rs: retina DESCRIBE/SETUP/PLAY  ─┐
//!   file.rs: file-<cam> thread, paced   ──┴─► bounded packet queue ─► Decoder ─► FrameSlots ─► detect → gate
//!                                             (drop + resync at key      (sample fps,  (one frame     → align → JPEG
//!                                              frame when full)           RGB)          per camera)     → md5 → FaceSink
//! ```
//!
//! # Layout
//! - this file: [`CameraSpec`] (from `cameras.toml`), [`CameraTask`] (`run` reconnects forever
//!   with backoff; `run_once` is one session), [`SessionEnd`], [`CameraError`].
//! - [`rtsp`]: retina sessions, RTP time → wall time. [`file`](mod@file): replaying files.
//! - [`decode`]: the libavcodec thread, sampling, key-frames-only, RGB conversion.
//! - `slot`: [`FrameSlots`], the newest-frame slots. `detect`: [`DetectPool`], [`FaceCrop`],
//!   [`FaceSink`]. `group`: [`GroupIngest`], one group's cameras and pool together.
//! - `stats`: [`CameraStats`] and [`DetectStats`], plain atomics for the metrics module.
//!
//! # Failure isolation
//! Each camera is its own task with its own decode thread, its own retina `SessionGroup` and
//! its own backoff: a camera that fails (refused, unauthorised, stalled, undecodable) retries
//! alone, and never blocks the others. Only the detection pool is shared within a group, and it
//! only ever sees the newest frame of each camera.

mod backoff;
pub mod decode;
mod detect;
pub mod file;
mod group;
pub mod rtsp;
mod slot;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use retina::client::SessionGroup;
use tokio_util::sync::CancellationToken;
use url::Url;

pub use backoff::{Backoff, BackoffPolicy};
pub use decode::{DecodeError, DecodeSettings, Decoder, EncodedFrame, Frame, VideoCodec};
pub use detect::{CROP_SIZE, DetectPool, FaceCrop, FaceSink, JPEG_QUALITY, encode_jpeg, md5_hex};
pub use file::FileReader;
pub use group::{GroupIngest, GroupOptions, GroupSpec, yunet_detectors};
pub use rtsp::RtspSource;
pub use slot::{FrameSlots, SlotHandle, Take};
pub use stats::{CameraSnapshot, CameraStats, DetectStats, DropReason};

use crate::config::{CameraConfig, Config};

/// Where a camera's video comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Rtsp(RtspSource),
    /// A local mp4 or raw H.264/H.265 file, replayed at native pace, looping.
    File(PathBuf),
}

/// One camera, resolved from `cameras.toml`.
#[derive(Debug, Clone)]
pub struct CameraSpec {
    pub name: Arc<str>,
    pub source: Source,
    /// Frames per second handed to detection.
    pub fps: f64,
    /// Decode key frames only.
    pub key_frames_only: bool,
}

impl CameraSpec {
    /// Resolves a `[[group.camera]]` entry: `file://` paths against the config's directory,
    /// `rtsp://` URLs parsed and checked to carry no credentials.
    pub fn from_config(cam: &CameraConfig, config: &Config) -> Result<CameraSpec, CameraError> {
        let source = if let Some(path) = config.file_source_path(&cam.url) {
            Source::File(path)
        } else {
            let bad = |reason: &str| CameraError::BadUrl { camera: cam.name.clone(), reason: reason.into() };
            let url = Url::parse(&cam.url).map_err(|e| bad(&format!("not a URL ({e})")))?;
            if url.scheme() != "rtsp" {
                return Err(bad(&format!("scheme `{}` is neither rtsp nor file", url.scheme())));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(bad("credentials in the URL; use username_env / password_env"));
            }
            Source::Rtsp(RtspSource {
                url,
                transport: cam.transport,
                username_env: cam.username_env.clone(),
                password_env: cam.password_env.clone(),
            })
        };
        Ok(CameraSpec {
            name: cam.name.as_str().into(),
            source,
            fps: cam.fps,
            key_frames_only: cam.key_frames_only,
        })
    }

    /// The source for logs: the URL without credentials, or the file path.
    pub fn describe_source(&self) -> String {
        match &self.source {
            Source::Rtsp(r) => rtsp::redact(&r.url),
            Source::File(p) => format!("file://{}", p.display()),
        }
    }
}

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

/// Why a camera session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// The token was cancelled: shutting down.
    Cancelled,
    /// The server ended the stream or closed the connection (a file does not end: it loops).
    EndOfStream,
    /// No frame arrived for `after`.
    Stalled { after: Duration },
    /// Connecting, streaming or decoding failed.
    Failed(CameraError),
}

/// What went wrong with a camera. Every variant names enough (stage, URL without credentials,
/// file) to act on from the log line alone.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("camera {camera}: unusable URL: {reason}")]
    BadUrl { camera: String, reason: String },
    #[error("environment variable {var} (named by {field}) is not set")]
    MissingCredential { var: String, field: &'static str },
    #[error("RTSP {stage} {url}: {source}")]
    Rtsp {
        stage: &'static str,
        url: String,
        #[source]
        source: retina::Error,
    },
    #[error("RTSP {stage} {url}: no answer within {after:?}")]
    Timeout { stage: &'static str, url: String, after: Duration },
    #[error("{url}: no H.264 or H.265 video stream (streams: {found})")]
    NoVideo { url: String, found: String },
    #[error("file {}: {stage}: {source}", path.display())]
    File {
        path: PathBuf,
        stage: &'static str,
        #[source]
        source: ffmpeg_next::Error,
    },
    #[error("file {}: no video packets", path.display())]
    EmptyFile { path: PathBuf },
    #[error("decoder: {0}")]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Internal(String),
}

/// What one session needs, cheap to clone (the file source moves a copy to its thread).
#[derive(Clone)]
pub(crate) struct SessionCtx {
    camera: Arc<str>,
    stats: Arc<CameraStats>,
    slot: SlotHandle,
    numbers: Arc<AtomicU64>,
    settings: DecodeSettings,
    timeouts: Timeouts,
    token: CancellationToken,
}

impl SessionCtx {
    fn spawn_decoder(&self, setup: decode::CodecSetup) -> Result<decode::DecoderHandle, DecodeError> {
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
    fn decoder_failure(&self, r: Result<(), DecodeError>) -> CameraError {
        match r {
            Err(e) => CameraError::Decode(e),
            Ok(()) => CameraError::Internal("the decode thread exited early".into()),
        }
    }

    /// Closes the decoder's input and waits for it to drain.
    async fn close_decoder(&self, handle: decode::DecoderHandle) {
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
    fn admit(&mut self, key: bool, stats: &CameraStats) -> bool {
        if !self.started {
            if !key {
                stats.drop_frame(DropReason::WaitingForKey);
                return false;
            }
            self.started = true;
        }
        true
    }

    fn resync(&mut self) {
        self.started = false;
    }
}

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
                SessionEnd::Stalled { after } => tracing::warn!(?after, ?delay, "No frames; reconnecting."),
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
            settings: DecodeSettings { fps: self.spec.fps, key_frames_only: self.spec.key_frames_only },
            timeouts: self.timeouts,
            token: token.clone(),
        };
        match &self.spec.source {
            Source::Rtsp(src) => rtsp::run(&ctx, src, &self.session_group, &mut self.stale).await,
            Source::File(path) => file::run(&ctx, path).await,
        }
    }
}

/// `e` and its sources, `: `-separated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        // Some errors repeat their source in their own message.
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(base: &Path) -> Config {
        let mut c = Config::default();
        c.base_dir = base.to_owned();
        c
    }

    fn cam(url: &str) -> CameraConfig {
        CameraConfig {
            name: "door".into(),
            url: url.into(),
            transport: Default::default(),
            fps: 2.0,
            key_frames_only: false,
            enabled: true,
            username_env: None,
            password_env: None,
        }
    }

    #[test]
    fn specs_from_config() {
        let c = config(Path::new("/etc/redeye"));
        let s = CameraSpec::from_config(&cam("file://clips/a.mp4"), &c).unwrap();
        assert!(matches!(&s.source, Source::File(p) if p == Path::new("/etc/redeye/clips/a.mp4")));
        let s = CameraSpec::from_config(&cam("rtsp://10.0.0.5:554/s1"), &c).unwrap();
        assert_eq!(s.describe_source(), "rtsp://10.0.0.5:554/s1");
        let e = CameraSpec::from_config(&cam("rtsp://u:secret@10.0.0.5/s1"), &c).unwrap_err().to_string();
        assert!(e.contains("username_env") && !e.contains("secret"), "{e}");
        let e = CameraSpec::from_config(&cam("http://x/y"), &c).unwrap_err().to_string();
        assert!(e.contains("door") && e.contains("http"), "{e}");
    }

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
