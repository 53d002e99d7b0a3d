//! Camera ingestion: RTSP or file sources → decode threads → newest-frame slots → a per-group
//! detection pool → [`FaceSink`].
//!
//! ```text
//! CameraTask (async, one per camera)        decode-<cam> thread          detect-<group>-<i> threads
//!   rtsp.rs: retina DESCRIBE/SETUP/PLAY  ─┐
//!   file.rs: file-<cam> thread, paced   ──┴─► bounded packet queue ─► Decoder ─► FrameSlots ─► detect → gate
//!                                             (drop + resync at key      (sample fps,  (one frame     → align
//!                                              frame when full)           RGB)          per camera)     → FaceSink
//! ```
//!
//! # Layout
//! - `spec`: [`CameraSpec`] (from `cameras.toml`), [`Source`], [`Timeouts`]. `task`:
//!   [`CameraTask`] (`run` reconnects forever with backoff; `run_once` is one session).
//!   `error`: [`SessionEnd`], [`CameraError`]. `session`: what a session's source and decode
//!   thread share. `frame`: [`Frame`], what travels from decode to detection.
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

pub mod decode;
mod detect;
mod error;
pub mod file;
mod frame;
mod group;
pub mod rtsp;
mod session;
mod slot;
mod spec;
mod stats;
mod task;

pub use crate::backoff::{Backoff, BackoffPolicy};
pub use crate::instrument::DropReason;
pub use decode::{DecodeError, DecodeSettings, Decoder, EncodedFrame, VideoCodec};
pub use detect::{
    CROP_SIZE, DetectPool, DetectedFrame, EncodedCrop, FaceCrop, FaceSink, JPEG_QUALITY, encode_jpeg,
};
pub use error::{CameraError, SessionEnd, error_chain};
pub use file::FileReader;
pub use frame::Frame;
pub use group::{GroupIngest, GroupOptions, GroupSpec, spread_sample_phases, yunet_detectors};
pub use rtsp::RtspSource;
pub use session::Timeouts;
pub(crate) use session::{KeyGate, SessionCtx};
pub use slot::{FrameSlots, SlotHandle, Take};
pub use spec::{CameraSpec, Source};
pub use stats::{CameraSnapshot, CameraStats, DetectStats};
pub use task::CameraTask;
