//! redeye: face recognition across many RTSP cameras, with Redis as the backbone.
//!
//! # Layout
//! - [`config`]: `cameras.toml` types, defaults, parsing with locations, and `validate()`.
//! - [`telemetry`]: the tracing subscriber (`REDEYE_LOG`, `REDEYE_FORMAT=json`) and panic hook.
//! - [`bus`]: Redis: topology and connections, key names, capped streams, the result cache,
//!   events. Everything that crosses a process boundary goes through here.
//! - [`camera`]: RTSP (retina) and file sources, decode threads (ffmpeg), newest-frame slots and
//!   the per-group detection pool that turns frames into hashed face crops.
//! - [`vision`]: ONNX Runtime loading, YuNet detection, the quality gate, 5-point alignment,
//!   embedding (SFace by default; any recogniser described by data).
//! - [`recognize`]: the gallery in Redis (enrol, forget, list), matching, the workers, and
//!   recognition on request (`identify`'s crops answered on a reply list).
//! - [`track`]: visits: the per-camera SORT-style face tracker, face quality, and the best-shot
//!   policy that sends only a track's best crops.
//! - [`ingest`]: the Redis hand-off of face crops: cache lookup, then an event or an XADD.
//! - [`visit`]: face tracks as visits: the track record in Redis (shots sent and folded, the
//!   weighted vote, one decision) and the `arrived` / `updated` / `left` events (schema 2).
//! - [`visitor`]: anonymous visitors: one id per stranger across cameras and visits, created
//!   atomically in Redis, matched in memory, with a TTL and a cap.
//! - [`privacy`]: per-person indexes of every key and event naming someone, so `forget` erases
//!   them everywhere; retention and the `audit` of a live store.
//! - [`wire`]: what crosses Redis between processes: the faces stream entry and the event.
//! - [`metrics`]: every Prometheus family, registered on the process's registry; the Redis
//!   poller for stream length, lag and pending.
//! - [`admin`]: the admin HTTP server: `/metrics`, `/live`, `/ready`.
//! - [`app`]: builds the bus and the face pipeline from a config, the same way for every command.
//! - [`cmd`]: one module per subcommand, each with `Args` and `run(args)`.
//! - [`terminal`]: text for terminals: control characters escaped.

pub mod admin;
pub mod app;
pub mod backoff;
pub mod bus;
pub mod camera;
pub mod cmd;
pub mod config;
pub mod health;
pub mod ingest;
pub mod instrument;
pub mod metrics;
pub mod privacy;
pub mod recognition;
pub mod recognize;
pub mod service;
pub mod telemetry;
pub mod terminal;
pub mod track;
pub mod vision;
pub mod visit;
pub mod visitor;
pub mod wire;
