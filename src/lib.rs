//! redeye: face recognition across many RTSP cameras, with Redis as the backbone.
//!
//! # Layout
//! - [`config`]: `cameras.toml` types, defaults, parsing with locations, and `validate()`.
//! - [`telemetry`]: the tracing subscriber (`REDEYE_LOG`, `REDEYE_FORMAT=json`) and panic hook.
//! - [`bus`]: Redis: topology and connections, key names, capped streams, the result cache,
//!   events. Everything that crosses a process boundary goes through here.
//! - [`vision`]: ONNX Runtime loading, YuNet detection, the quality gate, 5-point alignment,
//!   embedding (SFace by default; any recogniser described by data).
//! - [`recognize`]: the gallery in Redis (enrol, forget, list) and matching.
//! - [`cmd`]: one module per subcommand, each with `Args` and `run(args)`.

pub mod bus;
pub mod cmd;
pub mod config;
pub mod recognize;
pub mod telemetry;
pub mod vision;
