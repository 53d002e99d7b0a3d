//! Recognition: matching embeddings against the enrolled gallery.

pub mod matcher;

pub use matcher::{Match, MatchPolicy, Matcher};
