//! The OpenCV column: scripts/opencv_bench.py run by the venv `make setup-opencv` creates.
//!
//! A subprocess rather than bindings: OpenCV is only a yardstick here, and Python's
//! `opencv-python-headless` wheel is the stock build most people would compare against.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use serde::Deserialize;

use super::measure::Sample;

/// The interpreter of the venv made by `scripts/setup.sh opencv`, relative to the repository root.
pub const PYTHON: &str = ".cache/venv-opencv/bin/python";
pub const SCRIPT: &str = "scripts/opencv_bench.py";

/// What the script prints: one JSON object.
#[derive(Debug, Deserialize)]
pub struct Report {
    pub opencv_version: String,
    pub faces_per_pass: usize,
    /// `ru_maxrss` of the Python process (interpreter and numpy included).
    pub peak_rss_kib: u64,
    /// `detect_frame`, `detect_photo`, `embed_sface`, `e2e`: samples `[ms, items]`.
    pub ops: BTreeMap<String, Vec<Sample>>,
}

/// Checks that the venv and the script are there; the error says how to get them.
pub fn check() -> Result<(), String> {
    if !Path::new(PYTHON).is_file() {
        return Err(format!(
            "the OpenCV venv ({PYTHON}) is missing: run `make setup-opencv` (or `bash scripts/setup.sh \
             opencv`) from the repository root, or pass --no-opencv to benchmark redeye alone"
        ));
    }
    if !Path::new(SCRIPT).is_file() {
        return Err(format!("{SCRIPT} not found: run from the repository root, or pass --no-opencv"));
    }
    Ok(())
}

/// Runs the script at `threads` threads over `photos` and parses its report.
pub fn run(threads: usize, seconds: f64, models: &Path, photos: &[PathBuf]) -> anyhow::Result<Report> {
    let out = Command::new(PYTHON)
        .arg(SCRIPT)
        .args(["--threads", &threads.to_string(), "--seconds", &seconds.to_string()])
        .arg("--models")
        .arg(models)
        .args(photos)
        // Keep OpenCV (and its BLAS) to the thread count asked for.
        .env("OMP_NUM_THREADS", threads.to_string())
        .env("OPENBLAS_NUM_THREADS", threads.to_string())
        .output()
        .with_context(|| format!("cannot run {PYTHON} {SCRIPT}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{SCRIPT} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).with_context(|| format!("cannot parse the JSON {SCRIPT} printed"))
}
