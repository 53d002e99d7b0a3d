//! Helpers shared by the integration tests: real servers (Redis, RTSP) and test clips.
//!
//! Each test binary includes this with `mod support;` and uses only some of it, so unused items
//! would warn in every binary that does not use them; that is expected, hence the allow.
#![allow(dead_code)]

pub mod clips;
pub mod faces;
pub mod redis;
pub mod rtsp;
