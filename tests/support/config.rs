//! The `cameras.toml` a test runs with, built in code and written into the test's temp dir.
//!
//! Every config starts from the same base (see [`TestConfig::new`]) and says only what its test
//! is about: the Redis topology, worker timings, the groups and their cameras.
//!
//! ```ignore
//! let config = TestConfig::new("wt")
//!     .redis(&redis)
//!     .worker("claim_idle_ms", 1500)
//!     .group(Group::new("g1").camera(Camera::unused("cam1")))
//!     .write(dir.path());
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::redis::RedisServer;
use super::{ort_library, repo};

/// A `cameras.toml` under construction.
#[derive(Debug, Clone)]
pub struct TestConfig {
    root: Table,
}

impl TestConfig {
    /// Keys under `prefix`; the admin server on an ephemeral loopback port; workers that block
    /// 200 ms per read, so that they notice a shutdown quickly; the repository's models and ONNX
    /// Runtime with one intra-op thread. No Redis topology (so the default, or
    /// `REDEYE_REDIS_URL`) and no groups.
    pub fn new(prefix: &str) -> TestConfig {
        let mut root = models();
        root.insert("redis".into(), table([("key_prefix", prefix.into())]));
        root.insert("admin".into(), table([("listen", "127.0.0.1:0".into())]));
        root.insert("worker".into(), table([("block_ms", 200.into())]));
        TestConfig { root }
    }

    /// `[redis] url`: the single server `server`.
    pub fn redis(self, server: &RedisServer) -> TestConfig {
        self.redis_key("url", server.url())
    }

    /// Any other `[redis]` key, e.g. `cache_ttl_secs`, `cluster` or `shared_node`.
    pub fn redis_key(mut self, key: &str, value: impl Into<Value>) -> TestConfig {
        self.section("redis").insert(key.into(), value.into());
        self
    }

    /// A `[[redis.node]]`: a named standalone server that groups can be pinned to.
    pub fn node(mut self, name: &str, server: &RedisServer) -> TestConfig {
        let node = table([("name", name.into()), ("url", server.url().into())]);
        array(self.section("redis"), "node").push(node);
        self
    }

    /// `[redis.sentinel]`: the master `master_name`, found through `sentinels`.
    pub fn sentinel(mut self, master_name: &str, sentinels: &[RedisServer]) -> TestConfig {
        let addresses: Vec<String> = sentinels.iter().map(RedisServer::url).collect();
        let sentinel = table([("master_name", master_name.into()), ("addresses", addresses.into())]);
        self.section("redis").insert("sentinel".into(), sentinel);
        self
    }

    /// `[admin] listen`, for a test that scrapes or probes the admin server.
    pub fn admin(mut self, listen: SocketAddr) -> TestConfig {
        self.section("admin").insert("listen".into(), listen.to_string().into());
        self
    }

    /// A `[worker]` key, e.g. `claim_idle_ms` or `max_deliveries`.
    pub fn worker(mut self, key: &str, value: impl Into<Value>) -> TestConfig {
        self.section("worker").insert(key.into(), value.into());
        self
    }

    /// Any key of any table, e.g. `("tracking", "max_age_ms", 1500)`.
    pub fn set(mut self, section: &str, key: &str, value: impl Into<Value>) -> TestConfig {
        self.section(section).insert(key.into(), value.into());
        self
    }

    /// `[tracking] enabled = false`: every accepted face is looked up in the content cache and
    /// sent, one per-face event each (the frame-level pipeline).
    pub fn untracked(self) -> TestConfig {
        self.set("tracking", "enabled", false)
    }

    /// A `[[group]]`.
    pub fn group(mut self, group: Group) -> TestConfig {
        array(&mut self.root, "group").push(Value::Table(group.0));
        self
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.root).expect("a test config serialises")
    }

    /// Writes `<dir>/cameras.toml` and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("cameras.toml");
        std::fs::write(&path, self.to_toml()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    fn section(&mut self, name: &str) -> &mut Table {
        match self.root.entry(name).or_insert_with(|| Value::Table(Table::new())) {
            Value::Table(t) => t,
            other => panic!("[{name}] is not a table: {other:?}"),
        }
    }
}

/// A `[[group]]` and its cameras.
#[derive(Debug, Clone)]
pub struct Group(Table);

impl Group {
    pub fn new(name: &str) -> Group {
        Group(map([("name", name.into())]))
    }

    /// `node`: pins the group to a `[[redis.node]]`.
    pub fn node(mut self, node: &str) -> Group {
        self.0.insert("node".into(), node.into());
        self
    }

    /// A `[[group.camera]]`.
    pub fn camera(mut self, camera: Camera) -> Group {
        array(&mut self.0, "camera").push(Value::Table(camera.0));
        self
    }
}

/// A `[[group.camera]]`.
#[derive(Debug, Clone)]
pub struct Camera(Table);

impl Camera {
    pub fn new(name: &str, url: &str) -> Camera {
        Camera(map([("name", name.into()), ("url", url.into())]))
    }

    /// A camera replaying the file `clip` (looping, at native pace).
    pub fn file(name: &str, clip: &Path) -> Camera {
        Camera::new(name, &format!("file://{}", clip.display()))
    }

    /// A camera that nothing connects to: for tests that run only workers, which still need
    /// their groups to have a camera. Port 1 refuses connections.
    pub fn unused(name: &str) -> Camera {
        Camera::new(name, &format!("rtsp://127.0.0.1:1/{name}"))
    }

    /// Any other camera key: `fps`, `transport`, `key_frames_only`, …
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Camera {
        self.0.insert(key.into(), value.into());
        self
    }
}

/// The `[runtime]`, `[detector]` and `[recognizer]` tables pointing at the repository's files.
pub fn models() -> Table {
    let path = |p: PathBuf| Value::from(p.display().to_string());
    let models = repo().join("models");
    map([
        ("runtime", table([("onnxruntime", path(ort_library())), ("intra_threads", 1.into())])),
        ("detector", table([("model", path(models.join("face_detection_yunet_2023mar.onnx")))])),
        ("recognizer", table([("model", path(models.join("face_recognition_sface_2021dec_fp32.onnx")))])),
    ])
}

/// [`models`] as TOML text, for tests that write the rest of a file by hand.
pub fn model_tables() -> String {
    toml::to_string(&models()).expect("the model tables serialise")
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Table {
    entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn table<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Table(map(entries))
}

fn array<'a>(t: &'a mut Table, key: &str) -> &'a mut Vec<Value> {
    match t.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
        Value::Array(a) => a,
        other => panic!("`{key}` is not an array: {other:?}"),
    }
}
