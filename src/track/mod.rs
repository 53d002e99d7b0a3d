//! Visits: a face tracker per camera and the best-shot policy that decides which crops of a
//! track are worth recognising.
//!
//! Live video never repeats a crop byte for byte, so without tracking every sampled frame's face
//! costs an embedding. A [`Tracker`] follows faces from one sampled frame to the next, SORT style
//! (Bewley et al. 2016): a constant-velocity Kalman filter per track predicts its box at the
//! frame's capture time (`kalman.rs`), detections are assigned to predictions by IoU with the
//! Hungarian method (`assign.rs`); a track its prediction missed may still take a leftover
//! detection overlapping its last observed box (a head that turned back between two samples),
//! and unmatched detections start tracks. A track is *tentative*
//! until seen in `min_hits` frames, *confirmed* after, and ends when unseen for `max_age_ms`.
//! Only confirmed tracks send shots, as `shots.rs` decides from each face's [`quality()`].
//!
//! Time is the capture time in Unix ms, never a frame count: sampling rates differ per camera and
//! frames are dropped when vision is busy. Track ids are `<camera>:<first_seen_ms>:<n>`, `n` a
//! per-tracker counter, so they are unique across restarts and processes without coordination
//! (a camera is ingested by one process at a time).
//!
//! **Frames out of order.** Two detection threads may serve one camera, so a frame can arrive
//! after a newer one. The Kalman state cannot go back in time, so such a late frame is matched by
//! IoU against each track's last *observed* box without touching the filters or expiring anything:
//! a matched face counts as a sighting of its track and goes through the shot policy as usual; an
//! unmatched one is not tracked (`track: None`, [`DropReason::OutOfOrder`]), since a track must not
//! start in the past, and the person will be in the next frame anyway. A frame older than the
//! newest by more than `max_age_ms` is not "late" but a clock step backwards (NTP, camera reboot):
//! every track ends and tracking restarts at the new time, rather than dropping frames until the
//! clock catches up.
//!
//! **Why not the `similari` crate** (Savant's SORT, v0.26.2, Apache-2.0), measured on this machine:
//! it adds 50 packages to our Cargo.lock (97 crates in its own tree: pyo3 with `extension-module`
//! as a non-optional dependency, so a Python interpreter at build time, nalgebra, geo, rayon,
//! crossbeam, ultraviolet, env_logger); a cold release build of it took 106 s of CPU (1 min 53 s
//! wall on 2 cores, next to another build). Its API fits poorly: every `Sort` spawns a store thread
//! per shard for its live and its wasted store (two OS threads per camera), ages are counted in
//! epochs (calls), not milliseconds, it has no tentative/confirmed state (`min_hits`), and ids are
//! its own `u64` counter. What we need is about 400 lines without tests: the Kalman filter
//! decomposes into 2x2 blocks (`kalman.rs`), and the one algorithm worth not hand-writing, the
//! Hungarian assignment, comes from `pathfinding` (`kuhn_munkres`, maintained since 2016). It adds
//! 3 packages (pathfinding, integer-sqrt, deprecate-until; its other dependencies are already in
//! our tree), builds in 7 s cold, and starts no threads.

mod assign;
mod kalman;
mod quality;
mod shots;
mod tracker;

pub use quality::{frontalness, quality};
pub use tracker::Tracker;

use crate::vision::BBox;

/// One accepted face of a sampled frame, as the quality gate passed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The detector's box, in frame pixels.
    pub bbox: BBox,
    /// The detector's score.
    pub score: f32,
    /// YuNet's five landmarks: eyes, nose tip, mouth corners, the subject's right first.
    pub landmarks: [[f32; 2]; 5],
    /// Laplacian variance of the aligned crop (the quality gate's sharpness measure).
    pub sharpness: f32,
}

/// What [`Tracker::update`] made of one frame.
#[derive(Debug, Clone, Default)]
pub struct FrameOutcome {
    /// One decision per input face, in the same order.
    pub faces: Vec<FaceDecision>,
    /// Tracks that ended at this frame (unseen for `max_age_ms`), including ones that never
    /// confirmed (`confirmed: false`, nothing was sent for those: no "left" event is due).
    pub ended: Vec<EndedTrack>,
    /// Ids of tracks confirmed at this frame.
    pub started: Vec<String>,
}

/// The tracker's decision about one face.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceDecision {
    /// The track the face belongs to; `None` only for an untracked face (see
    /// [`DropReason::OutOfOrder`]).
    pub track: Option<String>,
    /// When the track was first seen (the time in its id); the frame's time if untracked.
    pub first_seen_ms: u64,
    /// The face's [`quality()`].
    pub quality: f32,
    pub action: Action,
}

/// Send the crop to recognition, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `first`: the track's first shot (the one that names it).
    Send {
        first: bool,
    },
    Drop(DropReason),
}

/// Why a tracked face was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The track is not confirmed yet (seen in fewer than `min_hits` frames).
    Tentative,
    /// Not better than the best shot sent by `quality_margin`, and no refresh due.
    NotBetter,
    /// Better, or a refresh is due, but within `min_interval_ms` of the last shot.
    TooSoon,
    /// The track has sent `max_shots` already.
    MaxShots,
    /// In a frame older than the newest one and matching no track: not tracked.
    OutOfOrder,
}

impl DropReason {
    /// A stable, bounded label for metrics (`reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Tentative => "tentative",
            DropReason::NotBetter => "not_better",
            DropReason::TooSoon => "too_soon",
            DropReason::MaxShots => "max_shots",
            DropReason::OutOfOrder => "out_of_order",
        }
    }

    /// Every reason, e.g. to pre-register metric children.
    pub const ALL: [DropReason; 5] = [
        DropReason::Tentative,
        DropReason::NotBetter,
        DropReason::TooSoon,
        DropReason::MaxShots,
        DropReason::OutOfOrder,
    ];
}

/// A track that ended: what a "left" event and the visit record need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedTrack {
    pub id: String,
    pub first_seen_ms: u64,
    /// Capture time of the last frame the face was seen in.
    pub last_seen_ms: u64,
    /// Frames the face was seen in.
    pub faces_seen: u64,
    pub shots_sent: u32,
    /// Whether it was ever confirmed; unconfirmed tracks sent nothing.
    pub confirmed: bool,
}
