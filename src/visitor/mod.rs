//! Anonymous visitors: one stranger keeps one id across cameras and visits, without anyone
//! knowing who they are.
//!
//! A track whose vote decides "unknown" gets a visitor id (`v-` and 12 random base-32
//! characters, never derived from the face). The worker that folded the deciding shot matches
//! its embedding against the recent visitors of the whole site (every group, every camera) in
//! its in-memory [`VisitorIndex`]; at or above `[visitors] threshold` the track takes that
//! visitor's id, below it a new visitor is created. Later shots of the track add their
//! embeddings to the visitor (the best few are kept) and its best shot's JPEG, so an operator can
//! see whom they are naming (`redeye visitors show`).
//!
//! # One id under concurrency
//! Two workers may see the same new stranger on two cameras in the same second. Creation is
//! atomic in Redis: [`store::resolve`] is one Lua script that, before creating, compares the
//! embedding with every visitor created or changed since the caller's index was current (the
//! visitor log), so the second caller finds the first one's visitor and takes its id. We chose
//! this over merging two ids after the fact because a merge cannot be taken back from
//! subscribers who already acted on the two ids; the re-check costs one script call per new
//! track, not per shot.
//!
//! # Storage and retention
//! Per visitor: a hash with the best few embeddings, first and last sighting, cameras, tracks,
//! visits and returns, and the best shot's JPEG; both expire `ttl_secs` after the last sighting,
//! the index (sorted by last sighting) is swept by age on every change, and past
//! `max_visitors` the least recently seen is evicted and counted. Workers follow the visitor
//! log (op and id only, no biometrics) to keep their index current.

mod index;
mod live;
pub mod store;

pub use index::VisitorIndex;
pub use live::LiveVisitors;
pub use store::VisitorRecord;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rand::Rng as _;

use crate::config::Config;

/// What visitors need from `cameras.toml` (`[visitors]`) and the recogniser.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitorSettings {
    /// Seconds a visitor is remembered after the last sighting; 0 turns visitors off.
    pub ttl_secs: u64,
    /// Least cosine for a track to take an existing visitor's id.
    pub threshold: f32,
    pub max_visitors: u64,
    /// Embeddings kept per visitor.
    pub embeddings: usize,
    /// Give enrolled people visitor ids too.
    pub for_known: bool,
    /// Recogniser id and embedding length: visitors of another model never match.
    pub model: String,
    pub dim: usize,
}

impl VisitorSettings {
    pub fn from_config(config: &Config) -> VisitorSettings {
        let v = &config.visitors;
        VisitorSettings {
            ttl_secs: v.ttl_secs,
            threshold: v.threshold,
            max_visitors: v.max_visitors,
            embeddings: v.embeddings,
            for_known: v.for_known,
            model: config.recognizer.id.clone(),
            dim: config.recognizer.dim,
        }
    }

    pub fn enabled(&self) -> bool {
        self.ttl_secs > 0
    }
}

/// One shot of a track, as a visitor sees it.
#[derive(Debug, Clone, Copy)]
pub struct Sighting<'a> {
    pub track: &'a str,
    pub camera: &'a str,
    /// The shot's embedding.
    pub embedding: &'a [f32],
    /// The aligned crop, JPEG: kept as the visitor's best shot if it is the best so far.
    pub jpeg: &'a [u8],
    /// How good the shot is: face size (px) times detector score.
    pub quality: f32,
}

/// What a track's visitor turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The visitor id.
    pub id: String,
    pub status: ResolveStatus,
    /// Similarity to the visitor matched (0 for a new one).
    pub score: f32,
}

/// How a track got its visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveStatus {
    /// A new visitor.
    Created,
    /// An existing visitor, seen now on another track while none of theirs had left.
    Attached,
    /// An existing visitor, back after one of their tracks had left.
    Returning,
    /// This track already belonged to the visitor (a redelivered shot).
    SameTrack,
    /// The visitor is gone (expired, forgotten, evicted).
    Missing,
}

/// A new visitor id: `v-` and 12 base-32 characters (60 random bits), from the thread's
/// cryptographically seeded generator, never from the face.
pub fn new_id() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut rng = rand::rng();
    let tail: String = (0..12).map(|_| ALPHABET[rng.random_range(0..32)] as char).collect();
    format!("v-{tail}")
}

/// Whether `s` looks like a visitor id (for clear errors on bad input).
pub fn is_id(s: &str) -> bool {
    s.strip_prefix("v-")
        .is_some_and(|t| !t.is_empty() && t.len() <= 32 && t.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Visitor counters of a process; the metrics registry reads them.
#[derive(Debug, Default)]
pub struct VisitorCounts {
    /// Visitors created.
    pub created: AtomicU64,
    /// Tracks that took an existing visitor's id after one of their tracks had left.
    pub returning: AtomicU64,
    /// Tracks that took an existing visitor's id while none of theirs had left (another camera
    /// at the same time).
    pub attached: AtomicU64,
}

impl VisitorCounts {
    pub fn count(&self, status: ResolveStatus) {
        match status {
            ResolveStatus::Created => self.created.fetch_add(1, Relaxed),
            ResolveStatus::Returning => self.returning.fetch_add(1, Relaxed),
            ResolveStatus::Attached => self.attached.fetch_add(1, Relaxed),
            ResolveStatus::SameTrack | ResolveStatus::Missing => 0,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_recognisable() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 14);
        assert!(is_id(&a) && is_id(&b));
        assert!(!is_id("v-") && !is_id("barack-obama") && !is_id("v-a b") && !is_id("v-x\u{1b}[2J"));
    }
}
