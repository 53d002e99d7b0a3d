//! Why a camera session ended, and what went wrong with a camera.

use std::path::PathBuf;
use std::time::Duration;

use super::decode::DecodeError;

/// Why a camera session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// The token was cancelled: shutting down.
    Cancelled,
    /// The server ended the stream or closed the connection (a file does not end: it loops).
    EndOfStream,
    /// No video frame arrived for `after`, though `other_items` other items (RTCP, other media)
    /// did.
    Stalled { after: Duration, other_items: u64 },
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
