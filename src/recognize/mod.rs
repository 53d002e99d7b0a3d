//! Recognition: the gallery in Redis, matching embeddings against it, and the cached result.

pub mod embed_service;
pub mod gallery;
pub mod matcher;
pub mod worker;

pub use matcher::{Match, MatchPolicy, Matcher};
