//! Recognition: the gallery in Redis, matching embeddings against it, the workers, and
//! recognition on request (a client's crops answered on a reply list).

pub mod embed_service;
pub mod gallery;
pub mod matcher;
pub mod request;
pub mod worker;

pub use matcher::{Match, MatchPolicy, Matcher};
