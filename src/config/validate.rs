//! Semantic checks of a parsed `cameras.toml`: every problem at once, each with its path so that
//! `load::locate_problems` can point at its line.

use std::collections::HashMap;
use std::path::Path;

use url::Url;

use super::{CameraConfig, Config, Problem, Seg};
use crate::vision::MAX_EMBEDDING_DIM;

/// Accepted range of a camera's sampling rate, frames per second.
pub const FPS_RANGE: std::ops::RangeInclusive<f64> = 0.1..=60.0;

/// Longest accepted track record TTL: a day. A record is biometric data; a visit is hours at most.
const MAX_RECORD_TTL_SECS: u64 = 86_400;
/// Longest accepted `[tracking]` time, ms: an hour-long track or refresh is a typo, not a visit.
pub const MAX_TRACKING_MS: u64 = 3_600_000;
/// Longest accepted cache TTL: 30 days. Results name people (biometric data), and Redis refuses
/// an `EX` whose expiry time overflows, so every cache write would fail.
pub const MAX_CACHE_TTL_SECS: u64 = 30 * 86_400;
/// Largest accepted stream caps: far above any real backlog, far below memory exhaustion.
const MAX_STREAM_LEN: u64 = 100_000_000;

/// Collects problems under a growing path.
struct Checker<'a> {
    config: &'a Config,
    problems: Vec<Problem>,
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_owned())
}

/// Builds a path from keys and indices, e.g. `path!["group", 1, "camera", 0, "url"]`.
macro_rules! path {
    ($($seg:expr),* $(,)?) => { vec![$(IntoSeg::into_seg($seg)),*] };
}

trait IntoSeg {
    fn into_seg(self) -> Seg;
}
impl IntoSeg for &str {
    fn into_seg(self) -> Seg {
        key(self)
    }
}
impl IntoSeg for usize {
    fn into_seg(self) -> Seg {
        Seg::Index(self)
    }
}

pub(super) fn problems(config: &Config) -> Vec<Problem> {
    let mut c = Checker { config, problems: Vec::new() };
    c.redis();
    c.groups();
    c.models();
    c.numbers();
    c.tracking();
    c.visitors();
    c.problems
}

impl Checker<'_> {
    fn report(&mut self, path: Vec<Seg>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    fn redis(&mut self) {
        let r = &self.config.redis;
        let chosen: Vec<&str> = [
            ("url", r.url.is_some()),
            ("node", !r.nodes.is_empty()),
            ("cluster", !r.cluster.is_empty()),
            ("sentinel", r.sentinel.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if chosen.len() > 1 {
            self.report(
                path!["redis"],
                format!(
                    "choose one Redis topology, found {}: `url`, `[[redis.node]]`, `cluster` and \
                     `[redis.sentinel]` exclude each other",
                    chosen.join(", ")
                ),
            );
        }
        if let Some(url) = &r.url {
            self.redis_url(path!["redis", "url"], url);
        }
        // The override is held to the same rules as the file (a password in it would show in
        // `ps`, shell history and logs): checked here, so every command refuses it alike. Its
        // value is never echoed.
        if let Some(url) = std::env::var(super::REDIS_URL_ENV).ok().filter(|u| !u.is_empty()) {
            let before = self.problems.len();
            self.redis_url(path!["redis"], &url);
            for p in &mut self.problems[before..] {
                p.message = format!(
                    "{} (from the environment): {}",
                    super::REDIS_URL_ENV,
                    p.message.replace(&url, "<the URL>")
                );
            }
        }
        let mut node_names: HashMap<&str, usize> = HashMap::new();
        for (i, node) in r.nodes.iter().enumerate() {
            self.name(path!["redis", "node", i, "name"], "node", &node.name);
            if let Some(first) = node_names.insert(&node.name, i) {
                self.report(
                    path!["redis", "node", i, "name"],
                    format!("duplicate node name `{}` (also redis.node[{first}])", node.name),
                );
            }
            self.redis_url(path!["redis", "node", i, "url"], &node.url);
        }
        if let Some(shared) = &r.shared_node {
            if r.nodes.is_empty() {
                self.report(path!["redis", "shared_node"], "`shared_node` needs `[[redis.node]]` entries");
            } else if !node_names.contains_key(shared.as_str()) {
                self.report(path!["redis", "shared_node"], undefined_node(shared, &node_names));
            }
        }
        for (i, url) in r.cluster.iter().enumerate() {
            self.redis_url(path!["redis", "cluster", i], url);
        }
        if let Some(s) = &r.sentinel {
            if s.master_name.trim().is_empty() {
                self.report(path!["redis", "sentinel", "master_name"], "must not be empty");
            }
            if s.addresses.is_empty() {
                self.report(path!["redis", "sentinel", "addresses"], "give at least one sentinel address");
            }
            for (i, url) in s.addresses.iter().enumerate() {
                self.redis_url(path!["redis", "sentinel", "addresses", i], url);
            }
            self.env_var(path!["redis", "sentinel", "password_env"], s.password_env.as_deref());
        }
        self.env_var(path!["redis", "username_env"], r.username_env.as_deref());
        self.env_var(path!["redis", "password_env"], r.password_env.as_deref());
        for (field, value) in [("key_prefix", &r.key_prefix), ("image_key_prefix", &r.image_key_prefix)] {
            self.plain_text(path!["redis", field], value);
        }
        if let Some(channel) = &r.event_channel {
            self.plain_text(path!["redis", "event_channel"], channel);
        }
    }

    /// Key prefixes and channel names: non-empty, without whitespace, control characters or
    /// braces (a brace would change the Cluster hash tag of every key).
    fn plain_text(&mut self, path: Vec<Seg>, value: &str) {
        if value.is_empty()
            || value.len() > 128
            || value.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '{' | '}'))
        {
            self.report(
                path,
                "must be 1 to 128 characters, without whitespace, control characters or braces",
            );
        }
    }

    /// A Redis URL: parseable, redis:// or rediss://, and with no credentials in it.
    fn redis_url(&mut self, path: Vec<Seg>, text: &str) {
        match Url::parse(text) {
            Err(e) => self.report(path, format!("`{text}` is not a URL: {e}")),
            Ok(url) => {
                if !matches!(url.scheme(), "redis" | "rediss") {
                    self.report(
                        path.clone(),
                        format!("scheme must be redis:// or rediss://, not {}://", url.scheme()),
                    );
                }
                if url.host_str().is_none_or(str::is_empty) {
                    self.report(path.clone(), "the URL has no host");
                }
                if url.password().is_some() {
                    self.report(
                        path,
                        "a password inside the URL is not accepted (it would end up in logs and in \
                         version control): remove it and name an environment variable with \
                         `password_env`",
                    );
                }
            }
        }
    }

    /// A named environment variable must be set (and not empty) when the config names one.
    fn env_var(&mut self, path: Vec<Seg>, name: Option<&str>) {
        let Some(name) = name else { return };
        if name.is_empty() || name.contains(['=', '\0']) {
            self.report(path, format!("`{name}` is not an environment variable name"));
        } else if std::env::var_os(name).is_none_or(|v| v.is_empty()) {
            self.report(path, format!("environment variable `{name}` is not set"));
        }
    }

    /// Names become hash tags, key parts, metric labels: keep them plain.
    fn name(&mut self, path: Vec<Seg>, what: &str, name: &str) {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            self.report(
                path,
                format!("{what} name `{name}` must be 1 to 64 characters of a-z, A-Z, 0-9, `-`, `_`, `.`"),
            );
        }
    }

    fn groups(&mut self) {
        let config = self.config;
        let nodes: HashMap<&str, usize> =
            config.redis.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
        let pinned = !config.redis.nodes.is_empty();
        if config.groups.is_empty() {
            self.report(Vec::new(), "no camera groups: add at least one `[[group]]` with cameras");
        } else if config.groups.iter().all(|g| g.cameras.iter().all(|c| !c.enabled)) {
            self.report(
                path!["group", 0],
                "no enabled camera in any group: ingest would watch nothing (set `enabled = true` on one)",
            );
        }
        let mut group_names: HashMap<&str, usize> = HashMap::new();
        let mut camera_names: HashMap<&str, (usize, usize)> = HashMap::new();
        for (g, group) in config.groups.iter().enumerate() {
            self.name(path!["group", g, "name"], "group", &group.name);
            if let Some(first) = group_names.insert(&group.name, g) {
                self.report(
                    path!["group", g, "name"],
                    format!("duplicate group name `{}` (also group[{first}])", group.name),
                );
            }
            match (&group.node, pinned) {
                (Some(node), true) if !nodes.contains_key(node.as_str()) => {
                    self.report(path!["group", g, "node"], undefined_node(node, &nodes));
                }
                (Some(_), false) => self.report(
                    path!["group", g, "node"],
                    "`node` pins a group to one of `[[redis.node]]`, and none are defined",
                ),
                (None, true) => self.report(
                    path!["group", g],
                    format!(
                        "group `{}` needs `node = \"...\"`: with `[[redis.node]]` every group is pinned",
                        group.name
                    ),
                ),
                _ => {}
            }
            if group.detect_threads == 0 || group.detect_threads > 64 {
                self.report(path!["group", g, "detect_threads"], "must be between 1 and 64");
            }
            if group.cameras.is_empty() {
                self.report(path!["group", g], format!("group `{}` has no cameras", group.name));
            }
            for (c, camera) in group.cameras.iter().enumerate() {
                self.name(path!["group", g, "camera", c, "name"], "camera", &camera.name);
                if let Some((fg, fc)) = camera_names.insert(&camera.name, (g, c)) {
                    self.report(
                        path!["group", g, "camera", c, "name"],
                        format!(
                            "duplicate camera name `{}` (also group[{fg}].camera[{fc}]); camera names \
                             are unique across all groups",
                            camera.name
                        ),
                    );
                }
                self.camera(g, c, camera);
            }
        }
    }

    fn camera(&mut self, g: usize, c: usize, camera: &CameraConfig) {
        let at = |field: &str| path!["group", g, "camera", c, field];
        if !FPS_RANGE.contains(&camera.fps) {
            self.report(
                at("fps"),
                format!("fps {} is out of range {}..={}", camera.fps, FPS_RANGE.start(), FPS_RANGE.end()),
            );
        }
        self.env_var(at("username_env"), camera.username_env.as_deref());
        self.env_var(at("password_env"), camera.password_env.as_deref());
        if let Some(path) = self.config.file_source_path(&camera.url) {
            if !path.is_file() {
                self.report(at("url"), format!("file source {} does not exist", path.display()));
            }
            return;
        }
        match Url::parse(&camera.url) {
            Err(e) => self.report(at("url"), format!("`{}` is not a URL: {e}", camera.url)),
            Ok(url) => {
                if url.scheme() != "rtsp" {
                    self.report(
                        at("url"),
                        format!("scheme must be rtsp:// or file://, not {}://", url.scheme()),
                    );
                } else if url.host_str().is_none_or(str::is_empty) {
                    self.report(at("url"), "the URL has no host");
                }
                if url.password().is_some() || !url.username().is_empty() {
                    self.report(
                        at("url"),
                        "credentials inside the URL are not accepted: remove them and name \
                         environment variables with `username_env` and `password_env`",
                    );
                }
            }
        }
    }

    fn models(&mut self) {
        let config = self.config;
        for (table, model) in [("detector", &config.detector.model), ("recognizer", &config.recognizer.model)]
        {
            self.file(path![table, "model"], "model file", model);
        }
        self.file(
            path!["runtime", "onnxruntime"],
            "ONNX Runtime library (run scripts/setup.sh, or set ORT_DYLIB_PATH)",
            &config.runtime.onnxruntime,
        );
    }

    fn file(&mut self, path: Vec<Seg>, what: &str, file: &Path) {
        if !file.is_file() {
            self.report(path, format!("{what} {} does not exist", file.display()));
        }
    }

    fn numbers(&mut self) {
        let config = self.config;
        let d = &config.detector;
        let unit = |v: f32| (0.0..=1.0).contains(&v);
        if !unit(d.score_threshold) {
            self.report(path!["detector", "score_threshold"], "must be between 0 and 1");
        }
        if !unit(d.nms_threshold) {
            self.report(path!["detector", "nms_threshold"], "must be between 0 and 1");
        }
        if !d.input_size.is_multiple_of(32) {
            self.report(path!["detector", "input_size"], "must be a multiple of 32");
        }
        let q = &config.quality;
        if !unit(q.min_score) {
            self.report(path!["quality", "min_score"], "must be between 0 and 1");
        }
        // 0 would switch the check off, NaN fails every comparison (also switching it off), and
        // infinity refuses every face: none of them is a threshold.
        if !(q.min_face >= 1.0 && q.min_face <= 4096.0) {
            self.report(
                path!["quality", "min_face"],
                format!("min_face {} must be between 1 and 4096 pixels", q.min_face),
            );
        }
        if !(q.min_sharpness > 0.0 && q.min_sharpness <= 1e6) {
            self.report(
                path!["quality", "min_sharpness"],
                format!("min_sharpness {} must be above 0 and at most 1000000", q.min_sharpness),
            );
        }
        let r = &config.recognizer;
        // The input is (x - mean) * scale on 0..255 values: a NaN or infinite factor, or a zero
        // scale, makes every embedding the same, and every face unknown.
        if !(r.mean.is_finite() && (-255.0..=255.0).contains(&r.mean)) {
            self.report(path!["recognizer", "mean"], format!("mean {} must be between -255 and 255", r.mean));
        }
        if !(r.scale.is_finite() && r.scale > 0.0 && r.scale <= 1000.0) {
            self.report(
                path!["recognizer", "scale"],
                format!("scale {} must be above 0 and at most 1000", r.scale),
            );
        }
        if !(-1.0..=1.0).contains(&r.match_threshold) {
            self.report(path!["recognizer", "match_threshold"], "a cosine threshold is between -1 and 1");
        }
        if let Some(t) = config.matching.threshold
            && !(-1.0..=1.0).contains(&t)
        {
            self.report(path!["matching", "threshold"], "a cosine threshold is between -1 and 1");
        }
        if !(0.0..=2.0).contains(&config.matching.margin) {
            self.report(path!["matching", "margin"], "must be between 0 and 2");
        }
        // Each integer that sizes memory, threads or time has a range: generous for real
        // deployments; past it the value is a typo (`workers = 100000000` spawns threads until
        // memory runs out).
        let (w, r, redis) = (&config.worker, &config.recognizer, &config.redis);
        let integers: [(&str, &str, u64, u64, u64); 18] = [
            ("worker", "workers", w.workers as u64, 1, 256),
            // A batch is acked in one script call: keep it well inside Lua's stack for `unpack`.
            ("worker", "batch", w.batch as u64, 1, 1000),
            // A blocking read longer than half the reply timeout would look like a dead server.
            ("worker", "block_ms", w.block_ms, 1, 10_000),
            ("worker", "claim_idle_ms", w.claim_idle_ms, 100, 86_400_000),
            ("worker", "max_deliveries", w.max_deliveries, 1, 1000),
            ("worker", "stale_consumer_secs", w.stale_consumer_secs, 1, 7 * 86_400),
            ("recognizer", "dim", r.dim as u64, 1, MAX_EMBEDDING_DIM as u64),
            ("recognizer", "max_batch", r.max_batch as u64, 1, 1024),
            ("recognizer", "input_size", u64::from(r.input_size), 16, 1024),
            ("detector", "top_k", d.top_k as u64, 1, 100_000),
            ("detector", "input_size", u64::from(d.input_size), 32, 4096),
            ("runtime", "intra_threads", config.runtime.intra_threads as u64, 0, 256),
            ("redis", "cache_ttl_secs", redis.cache_ttl_secs, 1, MAX_CACHE_TTL_SECS),
            ("redis", "faces_stream_maxlen", redis.faces_stream_maxlen, 1, MAX_STREAM_LEN),
            ("redis", "dead_stream_maxlen", redis.dead_stream_maxlen, 1, MAX_STREAM_LEN),
            ("redis", "events_stream_maxlen", redis.events_stream_maxlen, 1, MAX_STREAM_LEN),
            // Events name people and dead letters hold crops: at most 30 days, like a visitor.
            ("retention", "events_secs", config.retention.events_secs, 60, MAX_RETENTION_SECS),
            ("retention", "dead_letters_secs", config.retention.dead_letters_secs, 60, MAX_RETENTION_SECS),
        ];
        for (table, field, value, min, max) in integers {
            if !(min..=max).contains(&value) {
                self.report(path![table, field], format!("{field} {value} must be between {min} and {max}"));
            }
        }
    }

    fn tracking(&mut self) {
        let t = &self.config.tracking;
        let at = |field: &str| path!["tracking", field];
        if !(1..=100).contains(&t.min_hits) {
            self.report(at("min_hits"), format!("min_hits {} must be between 1 and 100", t.min_hits));
        }
        if !(1..=1000).contains(&t.max_shots) {
            self.report(at("max_shots"), format!("max_shots {} must be between 1 and 1000", t.max_shots));
        }
        // (0, 1] is no Range; written out, NaN fails both comparisons and is reported too.
        if !(t.iou > 0.0 && t.iou <= 1.0) {
            self.report(at("iou"), format!("iou {} must be in (0, 1]", t.iou));
        }
        if !(0.0..=10.0).contains(&t.quality_margin) {
            self.report(
                at("quality_margin"),
                format!(
                    "quality_margin {} must be between 0 and 10 (a fraction: 0.15 = 15%)",
                    t.quality_margin
                ),
            );
        }
        for (field, value, min) in [
            ("max_age_ms", t.max_age_ms, 1),
            ("min_interval_ms", t.min_interval_ms, 0),
            ("refresh_ms", t.refresh_ms, 1),
        ] {
            if !(min..=MAX_TRACKING_MS).contains(&value) {
                self.report(
                    at(field),
                    format!("{field} {value} must be between {min} and {MAX_TRACKING_MS} (1 h)"),
                );
            }
        }
        // The record must outlive the longest gap between shots (refresh_ms) with room to spare.
        let min_ttl = (t.refresh_ms / 1000).max(60);
        if !(min_ttl..=MAX_RECORD_TTL_SECS).contains(&t.record_ttl_secs) {
            self.report(
                at("record_ttl_secs"),
                format!(
                    "record_ttl_secs {} must be between {min_ttl} (60 s, and at least refresh_ms) and {MAX_RECORD_TTL_SECS} (1 day)",
                    t.record_ttl_secs
                ),
            );
        }
    }
}

/// Longest accepted retention of events and dead letters: 30 days.
pub const MAX_RETENTION_SECS: u64 = 30 * 86_400;
/// Longest accepted visitor TTL: 30 days. A visitor is biometric data kept without consent.
pub const MAX_VISITOR_TTL_SECS: u64 = 30 * 86_400;
/// Most visitors accepted: the index of every worker holds them all in memory.
pub const MAX_VISITORS: u64 = 10_000_000;

impl Checker<'_> {
    fn visitors(&mut self) {
        let v = &self.config.visitors;
        let at = |field: &str| path!["visitors", field];
        if v.ttl_secs > MAX_VISITOR_TTL_SECS {
            self.report(
                at("ttl_secs"),
                format!(
                    "ttl_secs {} must be between 0 (off) and {MAX_VISITOR_TTL_SECS} (30 days)",
                    v.ttl_secs
                ),
            );
        }
        let matching = self.config.match_policy().threshold;
        // Written out so that NaN fails too.
        if !(v.threshold > 0.0 && v.threshold <= 1.0) {
            self.report(at("threshold"), format!("threshold {} must be in (0, 1]", v.threshold));
        } else if v.threshold < matching {
            self.report(
                at("threshold"),
                format!(
                    "threshold {} is below [matching] threshold {matching}: a visitor must be at least as sure as a person",
                    v.threshold
                ),
            );
        }
        if !(1..=MAX_VISITORS).contains(&v.max_visitors) {
            self.report(
                at("max_visitors"),
                format!("max_visitors {} must be between 1 and {MAX_VISITORS}", v.max_visitors),
            );
        }
        if !(1..=32).contains(&v.embeddings) {
            self.report(at("embeddings"), format!("embeddings {} must be between 1 and 32", v.embeddings));
        }
        if !(1..=v.embeddings.max(1)).contains(&v.enroll_min_embeddings) {
            self.report(
                at("enroll_min_embeddings"),
                format!(
                    "enroll_min_embeddings {} must be between 1 and embeddings ({})",
                    v.enroll_min_embeddings, v.embeddings
                ),
            );
        }
    }
}

fn undefined_node(name: &str, nodes: &HashMap<&str, usize>) -> String {
    let mut known: Vec<&str> = nodes.keys().copied().collect();
    known.sort_unstable();
    format!("node `{name}` is not defined in `[[redis.node]]` (defined: {})", known.join(", "))
}
