//! `cameras.toml`: the types, their defaults, loading and validation.
//!
//! Every key is optional unless it says otherwise; the default is stated on each field and in the
//! shipped, commented `cameras.toml`. Loading ([`Config::load`]) reports unknown keys and wrong
//! types with file, line and column; [`Config::validate`] then reports every semantic problem at
//! once (duplicate names, undefined nodes, missing model files, unset environment variables...).
//!
//! Credentials never live in the file: the file names environment variables (`password_env`),
//! and a URL that carries a password is rejected.

mod load;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use load::{ConfigError, LocatedProblem, Problem, Seg};

use crate::recognize::MatchPolicy;
use crate::vision::{DetectorSpec, QualitySpec, RecognizerSpec};

/// Environment variable that, when set, replaces the configured Redis topology by one URL.
pub const REDIS_URL_ENV: &str = "REDEYE_REDIS_URL";

/// The whole `cameras.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    /// `[redis]`: topology, credentials, key names, TTLs and stream caps.
    #[serde(default)]
    pub redis: RedisConfig,
    /// `[admin]`: the HTTP address serving /metrics, /live and /ready.
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[runtime]`: where ONNX Runtime lives and how many threads inference uses.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// `[detector]`: the face detector (YuNet) and its thresholds.
    #[serde(default)]
    pub detector: DetectorSpec,
    /// `[quality]`: which detected faces are good enough to recognise.
    #[serde(default)]
    pub quality: QualitySpec,
    /// `[recognizer]`: the embedding model, described by data.
    #[serde(default)]
    pub recognizer: RecognizerSpec,
    /// `[matching]`: when an embedding counts as a known person.
    #[serde(default)]
    pub matching: MatchingConfig,
    /// `[worker]`: how recognition workers read their streams.
    #[serde(default)]
    pub worker: WorkerConfig,
    /// `[tracking]`: per-camera face tracks and which of their crops are sent.
    #[serde(default)]
    pub tracking: TrackingConfig,
    /// `[events]`: per-face events next to the visit events, or not.
    #[serde(default)]
    pub events: EventsConfig,
    /// `[visitors]`: anonymous visitor ids that follow a stranger across cameras and visits.
    #[serde(default)]
    pub visitors: VisitorsConfig,
    /// `[retention]`: how long events and dead letters are kept (by age, on top of the caps).
    #[serde(default)]
    pub retention: RetentionConfig,
    /// `[[group]]`: camera groups. Each group has its own faces stream (and, with named nodes,
    /// its own Redis node).
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupConfig>,

    /// The directory relative paths in the file are resolved against (the file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file this was loaded from, for messages.
    #[serde(skip)]
    pub source: PathBuf,
    /// The file's text, kept to point problems at their line and column.
    #[serde(skip)]
    text: String,
    /// Keys no field consumed (misspellings), reported together with the semantic problems.
    #[serde(skip)]
    unknown_keys: Vec<Problem>,
}

/// `[redis]`. Exactly one topology: `url`, `[[redis.node]]`, `cluster` or `[redis.sentinel]`.
/// With none given, the default is `url = "redis://127.0.0.1:6379"`.
#[derive(Debug, Clone, Deserialize)]
pub struct RedisConfig {
    /// One Redis server (`redis://host:port/db` or `rediss://` for TLS). No default when another
    /// topology is chosen.
    pub url: Option<String>,
    /// Named nodes; each group is pinned to one with `group.node` (the seed article's layout).
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeConfig>,
    /// With named nodes: the node holding the gallery and the events (default: the first node).
    pub shared_node: Option<String>,
    /// Redis Cluster seed URLs (any subset of the masters).
    #[serde(default)]
    pub cluster: Vec<String>,
    /// Redis Sentinel: the master's name and the sentinels' addresses.
    pub sentinel: Option<SentinelConfig>,
    /// Environment variable holding the Redis ACL user name (default: none, the default user).
    pub username_env: Option<String>,
    /// Environment variable holding the Redis password (default: none, no AUTH).
    pub password_env: Option<String>,
    /// Prefix of every key, stream and channel redeye owns (default `redeye`).
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Prefix of the result cache keys, `<image_key_prefix>:<md5>` (default `image`, the seed's).
    #[serde(default = "default_image_key_prefix")]
    pub image_key_prefix: String,
    /// Seconds a cached recognition result lives (default 86400, one day). Biometric data expires.
    #[serde(default = "default_cache_ttl_secs")]
    pub cache_ttl_secs: u64,
    /// Most unfinished entries a group's faces stream may hold (default 10000). Finished
    /// entries are deleted; at the cap ingest drops new crops and counts them, never trimming.
    #[serde(default = "default_faces_stream_maxlen")]
    pub faces_stream_maxlen: u64,
    /// Approximate cap of each group's dead-letter stream (default 10000 entries).
    #[serde(default = "default_dead_stream_maxlen")]
    pub dead_stream_maxlen: u64,
    /// Approximate cap of the replayable events stream (default 100000 entries).
    #[serde(default = "default_events_stream_maxlen")]
    pub events_stream_maxlen: u64,
    /// Pub/sub channel (and stream) of recognition events (default `<key_prefix>:events`).
    pub event_channel: Option<String>,
}

/// `[[redis.node]]`: one named Redis server.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeConfig {
    /// Name groups refer to with `node = "..."`. Required.
    pub name: String,
    /// `redis://` or `rediss://` URL without credentials. Required.
    pub url: String,
}

/// `[redis.sentinel]`.
#[derive(Debug, Clone, Deserialize)]
pub struct SentinelConfig {
    /// The monitored master's name (`sentinel monitor <name> ...`). Required.
    pub master_name: String,
    /// Sentinel URLs, e.g. `redis://10.0.0.5:26379`. Required, at least one.
    pub addresses: Vec<String>,
    /// Environment variable holding the sentinels' own password, if they have one (default none).
    pub password_env: Option<String>,
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
pub struct AdminConfig {
    /// Address of the admin HTTP server (default `127.0.0.1:9464`, loopback only).
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
}

/// `[runtime]`.
#[derive(Debug, Clone, Deserialize)]
pub struct RuntimeConfig {
    /// The ONNX Runtime shared library (default `third_party/onnxruntime/libonnxruntime.so`,
    /// fetched by `scripts/setup.sh`). The environment variable `ORT_DYLIB_PATH` overrides it.
    #[serde(default = "default_onnxruntime")]
    pub onnxruntime: PathBuf,
    /// Threads each inference session uses (default 0: ONNX Runtime decides, one per core).
    #[serde(default)]
    pub intra_threads: usize,
}

/// `[matching]`: cosine top-1 against the gallery, with a threshold and a margin.
#[derive(Debug, Clone, Deserialize)]
pub struct MatchingConfig {
    /// Minimum cosine similarity for a known person (default: the recogniser's
    /// `match_threshold`, 0.363 for SFace, OpenCV's published value).
    pub threshold: Option<f32>,
    /// Minimum lead of the best person over the second-best person (default 0.2; measured on
    /// the test photos, see `recognize::matcher`). Ignored while only one person is enrolled.
    #[serde(default = "default_match_margin")]
    pub margin: f32,
}

/// `[worker]`: recognition workers.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkerConfig {
    /// Entries read per XREADGROUP, and so the largest embedding batch (default 16).
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// How long one XREADGROUP blocks waiting for entries, in ms (default 2000).
    #[serde(default = "default_block_ms")]
    pub block_ms: u64,
    /// Entries pending longer than this (ms) belong to a dead consumer and are claimed
    /// (default 30000).
    #[serde(default = "default_claim_idle_ms")]
    pub claim_idle_ms: u64,
    /// An entry delivered this many times goes to the dead-letter stream (default 5).
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries: u64,
    /// Worker tasks per process (default 1; each owns its inference sessions).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// A consumer idle this long (seconds) with nothing pending is a worker that crashed or
    /// stopped without leaving; workers remove such consumers from the group (default 21600,
    /// 6 h).
    #[serde(default = "default_stale_consumer_secs")]
    pub stale_consumer_secs: u64,
}

/// `[tracking]`: the per-camera face tracker and its best-shot policy (see [`crate::track`]).
/// Times are capture-time milliseconds, not frame counts, because sampling rates differ per camera.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrackingConfig {
    /// Track faces and send only each track's best shots (default true). When false, every
    /// accepted face is sent, as before tracking existed.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Frames a track must be seen in before it is confirmed and may send a shot (default 2:
    /// one stray detection never reaches recognition; at 2 fps this costs 0.5 s to first name).
    #[serde(default = "default_min_hits")]
    pub min_hits: u32,
    /// A track unseen for longer than this ends, in ms (default 2000: four frames at 2 fps).
    #[serde(default = "default_max_age_ms")]
    pub max_age_ms: u64,
    /// Minimum IoU between a track's predicted box and a detection to associate them
    /// (default 0.3, SORT's).
    #[serde(default = "default_iou")]
    pub iou: f32,
    /// Most shots one track sends to recognition (default 5).
    #[serde(default = "default_max_shots")]
    pub max_shots: u32,
    /// Least time between two shots of one track, in ms (default 1000).
    #[serde(default = "default_min_interval_ms")]
    pub min_interval_ms: u64,
    /// A later shot is sent only if its quality beats the best sent so far by this fraction
    /// (default 0.15, i.e. 15% better).
    #[serde(default = "default_quality_margin")]
    pub quality_margin: f32,
    /// A shot is sent anyway this long after the track's last one, in ms, so that a person
    /// enrolled during the visit is recognised (default 10000).
    #[serde(default = "default_refresh_ms")]
    pub refresh_ms: u64,
    /// TTL of a track's record in Redis, in seconds, refreshed on every write to it (default
    /// 3600). The record holds the vote and the decided identity, biometric data, so it must
    /// not outlive the visit by much; it must outlive the gap between a track's last shot and
    /// its end, or the `left` event is lost (ingest refreshes live tracks' records, see
    /// `ingest::tracks`).
    #[serde(default = "default_record_ttl_secs")]
    pub record_ttl_secs: u64,
}

/// `[events]`: which events are published on the channel and the events stream.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct EventsConfig {
    /// Also publish a per-face event (schema 1) for every crop recognised, next to the visit
    /// events (default false). Without tracking, per-face events are the only events and are
    /// always published.
    #[serde(default)]
    pub faces: bool,
}

/// `[visitors]`: anonymous visitors (see [`crate::visitor`]). A track decided unknown gets a
/// visitor id shared by every track of the same stranger, on any camera of the site, while the
/// visitor is remembered.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VisitorsConfig {
    /// How long a visitor is remembered after they were last seen, in seconds (default 86400,
    /// a day; 0 turns visitors off). Every visitor record expires this long after its last write.
    #[serde(default = "default_visitors_ttl_secs")]
    pub ttl_secs: u64,
    /// Least cosine similarity for a track to take an existing visitor's id (default 0.5).
    /// Stricter than `[matching] threshold`: merging two strangers is worse than splitting one.
    #[serde(default = "default_visitors_threshold")]
    pub threshold: f32,
    /// Most visitors remembered; past it, the least recently seen is evicted (default 100000).
    #[serde(default = "default_max_visitors")]
    pub max_visitors: u64,
    /// Embeddings kept per visitor, the best shots' (default 5).
    #[serde(default = "default_visitor_embeddings")]
    pub embeddings: usize,
    /// Least embeddings a visitor needs before `enroll --visitor` makes them a person (default 2).
    #[serde(default = "default_enroll_min_embeddings")]
    pub enroll_min_embeddings: usize,
    /// Give enrolled people visitor ids too (default false: `visitor` is null for them).
    #[serde(default)]
    pub for_known: bool,
}

impl VisitorsConfig {
    /// Whether visitors are on (`ttl_secs` > 0).
    pub fn enabled(&self) -> bool {
        self.ttl_secs > 0
    }
}

impl Default for VisitorsConfig {
    fn default() -> Self {
        VisitorsConfig {
            ttl_secs: default_visitors_ttl_secs(),
            threshold: default_visitors_threshold(),
            max_visitors: default_max_visitors(),
            embeddings: default_visitor_embeddings(),
            enroll_min_embeddings: default_enroll_min_embeddings(),
            for_known: false,
        }
    }
}

/// `[retention]`: how long the artefacts that are not already bounded by a TTL are kept.
///
/// Cached results and visitors keep their TTLs where they always were, `[redis] cache_ttl_secs`
/// and `[visitors] ttl_secs` (one place each: `redeye audit` and the README's retention table
/// read them from there). Streams have no per-entry TTL, so they are trimmed by age
/// (`XTRIM MINID`) each time an entry is appended, as well as by count (`MAXLEN ~`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RetentionConfig {
    /// Age after which events (visit and per-face, which name people) are trimmed from the
    /// events stream, in seconds (default 604800, 7 days).
    #[serde(default = "default_retention_secs")]
    pub events_secs: u64,
    /// Age after which dead letters (which hold face crops) are trimmed, in seconds
    /// (default 604800, 7 days).
    #[serde(default = "default_retention_secs")]
    pub dead_letters_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { events_secs: default_retention_secs(), dead_letters_secs: default_retention_secs() }
    }
}

fn default_retention_secs() -> u64 {
    7 * 86_400
}

/// `[[group]]`: a camera group.
#[derive(Debug, Clone, Deserialize)]
pub struct GroupConfig {
    /// Unique group name; becomes the Redis Cluster hash tag `{<name>}`. Required.
    pub name: String,
    /// With `[[redis.node]]`: the node this group's stream and cache live on. Required then,
    /// not allowed otherwise.
    pub node: Option<String>,
    /// Detection threads for this group's cameras (default 1).
    #[serde(default = "default_detect_threads")]
    pub detect_threads: usize,
    /// `[[group.camera]]`: the group's cameras.
    #[serde(default, rename = "camera")]
    pub cameras: Vec<CameraConfig>,
}

/// `[[group.camera]]`: one camera.
#[derive(Debug, Clone, Deserialize)]
pub struct CameraConfig {
    /// Unique camera name (unique across all groups; it labels metrics and events). Required.
    pub name: String,
    /// `rtsp://host[:port]/path` (no credentials), or `file://<path>` (an mp4 or raw .h264
    /// replayed at native pace, looping; relative paths are relative to this file). Required.
    pub url: String,
    /// RTSP transport: `tcp` (interleaved, default) or `udp`.
    #[serde(default)]
    pub transport: Transport,
    /// Frames per second handed to detection (default 2.0; range 0.1 to 60).
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// Decode key frames only (libavcodec skip_frame), for cheap many-camera operation
    /// (default false).
    #[serde(default)]
    pub key_frames_only: bool,
    /// A disabled camera is configured but not started (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Environment variable holding the RTSP user name (default none).
    pub username_env: Option<String>,
    /// Environment variable holding the RTSP password (default none).
    pub password_env: Option<String>,
}

/// RTSP transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// RTP interleaved on the RTSP TCP connection: works through NAT and firewalls.
    #[default]
    Tcp,
    /// RTP over UDP: lower latency on a clean LAN, loses packets under load.
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl Config {
    /// Reads, parses and validates `path`; relative paths inside resolve against its directory.
    /// A syntax error or a wrong type stops with file, line and column; otherwise every unknown
    /// key and every semantic problem is reported at once, each with its line and column.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let config = load::load(path)?;
        config.validate()?;
        Ok(config)
    }

    /// [`Config::load`] for text that is not in a file (tests, generated configs).
    pub fn from_toml(text: &str, path: &Path, base_dir: &Path) -> Result<Config, ConfigError> {
        let config = load::from_str(text, path, base_dir)?;
        config.validate()?;
        Ok(config)
    }

    /// Every unknown key and semantic problem at once, each with its location in the file.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = self.unknown_keys.clone();
        problems.extend(validate::problems(self));
        if problems.is_empty() { Ok(()) } else { Err(load::locate_problems(self, problems)) }
    }

    /// What is allowed but probably not meant: said by `check-config` and logged at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.admin.listen.ip().is_loopback() {
            out.push(format!(
                "[admin] listen = {} is not a loopback address: /metrics and /ready answer other \
                 machines (they are unauthenticated); bind 127.0.0.1 unless a scraper needs it",
                self.admin.listen
            ));
        }
        out
    }

    /// The events channel (also the events stream's key).
    pub fn event_channel(&self) -> String {
        self.redis.event_channel.clone().unwrap_or_else(|| format!("{}:events", self.redis.key_prefix))
    }

    /// Makes relative paths absolute against the file's directory, so the process's working
    /// directory does not matter. `ORT_DYLIB_PATH`, when set, wins over `runtime.onnxruntime`.
    fn resolve_paths(&mut self) {
        let base = self.base_dir.clone();
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.detector.model);
        resolve(&mut self.recognizer.model);
        match std::env::var_os("ORT_DYLIB_PATH") {
            Some(path) if !path.is_empty() => self.runtime.onnxruntime = PathBuf::from(path),
            _ => resolve(&mut self.runtime.onnxruntime),
        }
    }

    /// The local file behind a `file://` camera URL, resolved against the config's directory.
    pub fn file_source_path(&self, url: &str) -> Option<PathBuf> {
        let rest = url.strip_prefix("file://")?;
        let path = Path::new(rest);
        Some(if path.is_relative() { self.base_dir.join(path) } else { path.to_owned() })
    }

    /// The Redis topology in words, e.g. `3 named nodes (gallery and events on "core")`.
    pub fn topology_description(&self) -> String {
        let r = &self.redis;
        if !r.nodes.is_empty() {
            let nodes: Vec<String> = r.nodes.iter().map(|n| format!("{} = {}", n.name, n.url)).collect();
            let shared = r.shared_node.as_deref().unwrap_or(&r.nodes[0].name);
            format!("{} named nodes ({}); gallery and events on {shared}", r.nodes.len(), nodes.join(", "))
        } else if !r.cluster.is_empty() {
            format!("Redis Cluster, seeds {}", r.cluster.join(", "))
        } else if let Some(s) = &r.sentinel {
            format!("Sentinel master `{}` via {}", s.master_name, s.addresses.join(", "))
        } else {
            format!("one node {}", r.url.as_deref().unwrap_or(DEFAULT_REDIS_URL))
        }
    }

    /// The matching rule: `[matching]` over the recogniser's own threshold.
    pub fn match_policy(&self) -> MatchPolicy {
        MatchPolicy {
            threshold: self.matching.threshold.unwrap_or(self.recognizer.match_threshold),
            margin: self.matching.margin,
        }
    }

    /// The enabled cameras of a group.
    pub fn enabled_cameras<'a>(&'a self, group: &'a GroupConfig) -> impl Iterator<Item = &'a CameraConfig> {
        group.cameras.iter().filter(|c| c.enabled)
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            nodes: Vec::new(),
            shared_node: None,
            cluster: Vec::new(),
            sentinel: None,
            username_env: None,
            password_env: None,
            key_prefix: default_key_prefix(),
            image_key_prefix: default_image_key_prefix(),
            cache_ttl_secs: default_cache_ttl_secs(),
            faces_stream_maxlen: default_faces_stream_maxlen(),
            dead_stream_maxlen: default_dead_stream_maxlen(),
            events_stream_maxlen: default_events_stream_maxlen(),
            event_channel: None,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: default_admin_listen() }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { onnxruntime: default_onnxruntime(), intra_threads: 0 }
    }
}

impl Default for MatchingConfig {
    fn default() -> Self {
        MatchingConfig { threshold: None, margin: default_match_margin() }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            batch: default_batch(),
            block_ms: default_block_ms(),
            claim_idle_ms: default_claim_idle_ms(),
            max_deliveries: default_max_deliveries(),
            stale_consumer_secs: default_stale_consumer_secs(),
            workers: default_workers(),
        }
    }
}

impl Default for TrackingConfig {
    fn default() -> Self {
        TrackingConfig {
            enabled: true,
            min_hits: default_min_hits(),
            max_age_ms: default_max_age_ms(),
            iou: default_iou(),
            max_shots: default_max_shots(),
            min_interval_ms: default_min_interval_ms(),
            quality_margin: default_quality_margin(),
            refresh_ms: default_refresh_ms(),
            record_ttl_secs: default_record_ttl_secs(),
        }
    }
}

impl Config {
    /// Whether recognised crops become per-face events (schema 1): always without tracking.
    pub fn face_events(&self) -> bool {
        self.events.faces || !self.tracking.enabled
    }
}

/// The default single-node URL when the file names no topology.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

fn default_key_prefix() -> String {
    "redeye".into()
}
fn default_image_key_prefix() -> String {
    "image".into()
}
fn default_cache_ttl_secs() -> u64 {
    86_400
}
fn default_faces_stream_maxlen() -> u64 {
    10_000
}
fn default_dead_stream_maxlen() -> u64 {
    10_000
}
fn default_events_stream_maxlen() -> u64 {
    100_000
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn default_onnxruntime() -> PathBuf {
    PathBuf::from("third_party/onnxruntime/libonnxruntime.so")
}
fn default_match_margin() -> f32 {
    0.2
}
fn default_batch() -> usize {
    16
}
fn default_block_ms() -> u64 {
    2_000
}
fn default_claim_idle_ms() -> u64 {
    30_000
}
fn default_max_deliveries() -> u64 {
    5
}
fn default_stale_consumer_secs() -> u64 {
    21_600
}
fn default_workers() -> usize {
    1
}
fn default_min_hits() -> u32 {
    2
}
fn default_max_age_ms() -> u64 {
    2_000
}
fn default_iou() -> f32 {
    0.3
}
fn default_max_shots() -> u32 {
    5
}
fn default_min_interval_ms() -> u64 {
    1_000
}
fn default_quality_margin() -> f32 {
    0.15
}
fn default_refresh_ms() -> u64 {
    10_000
}
fn default_record_ttl_secs() -> u64 {
    3_600
}
fn default_detect_threads() -> usize {
    1
}
fn default_fps() -> f64 {
    2.0
}
fn default_visitors_ttl_secs() -> u64 {
    86_400
}
fn default_visitors_threshold() -> f32 {
    0.5
}
fn default_max_visitors() -> u64 {
    100_000
}
fn default_visitor_embeddings() -> usize {
    5
}
fn default_enroll_min_embeddings() -> usize {
    2
}
fn default_true() -> bool {
    true
}
