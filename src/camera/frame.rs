//! The decoded frame that travels from a camera's decode thread through its newest-frame slot
//! to the group's detection threads.

use std::sync::Arc;
use std::time::SystemTime;

use image::RgbImage;

/// A decoded, sampled frame, ready for detection.
#[derive(Debug, Clone)]
pub struct Frame {
    pub camera: Arc<str>,
    /// Position in the camera's stream, presentation order, monotonic across reconnects and
    /// file loops.
    pub frame_number: u64,
    /// Capture wall time (see the module docs).
    pub capture_time: SystemTime,
    pub key_frame: bool,
    pub image: RgbImage,
}
