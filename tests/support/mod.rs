//! Helpers shared by the integration tests: real servers (Redis, RTSP), `redeye` as a child
//! process, the `cameras.toml` the tests run with, test clips and face crops, and waiting.
//!
//! Each test binary includes this with `mod support;` and uses only some of it, so unused items
//! would warn in every binary that does not use them; that is expected, hence the allow.
#![allow(dead_code)]

pub mod bus;
pub mod clips;
pub mod config;
pub mod faces;
pub mod process;
pub mod redis;
pub mod rtsp;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// How often [`wait_until`] looks again.
const POLL: Duration = Duration::from_millis(100);

/// Polls `done` until it holds; fails the test, naming `what`, once `limit` has passed.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// A loopback TCP port that was free a moment ago (the caller must tolerate losing a race for it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind an ephemeral port").port()
}

/// Kills `child` (SIGKILL: a crash, not a shutdown) and reaps it, if there is one.
pub fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The last `lines` lines of the text file at `path` (empty if it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The ONNX Runtime library: `ORT_DYLIB_PATH`, else the one `make setup` fetches.
pub fn ort_library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .filter(|p| !p.is_empty())
        .map_or_else(|| repo().join("third_party/onnxruntime/libonnxruntime.so"), PathBuf::from)
}

/// A test photo (`REDEYE_PHOTOS_DIR`, else `.cache/photos/`); fails the test if it is missing.
pub fn photo(name: &str) -> PathBuf {
    let dir =
        std::env::var_os("REDEYE_PHOTOS_DIR").map_or_else(|| repo().join(".cache/photos"), PathBuf::from);
    let path = dir.join(name);
    assert!(path.is_file(), "{} is missing: run `make setup` (scripts/setup.sh)", path.display());
    path
}

/// The sum of every sample of `family` on the `/metrics` of the process serving `admin` (0 when
/// it does not answer).
pub fn metric_sum(admin: std::net::SocketAddr, family: &str) -> f64 {
    metric_sum_where(admin, family, "")
}

/// [`metric_sum`] over the samples whose line contains `label` (e.g. `camera="door"`).
pub fn metric_sum_where(admin: std::net::SocketAddr, family: &str, label: &str) -> f64 {
    let body = ureq::get(&format!("http://{admin}/metrics"))
        .call()
        .map(|mut r| r.body_mut().read_to_string().unwrap_or_default())
        .unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
