//! The OpenCV column: scripts/opencv_bench.py run by the venv `make setup-opencv` creates.
//!
//! A subprocess rather than bindings: OpenCV is only a yardstick here, and Python's
//! `opencv-python-headless` wheel is the stock build most people would compare against.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;

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
    let mut args: Vec<OsString> = ["--seconds".into(), seconds.to_string().into(), "--models".into()].into();
    args.push(models.into());
    args.extend(photos.iter().map(OsString::from));
    run_json(SCRIPT, threads, args)
}

/// Runs `script` with the venv's interpreter, `--threads threads` and `args`, OpenCV (and its
/// BLAS) kept to that thread count, and parses the one JSON object it prints.
pub fn run_json<T: DeserializeOwned>(
    script: &str,
    threads: usize,
    args: impl IntoIterator<Item = impl AsRef<OsStr>>,
) -> anyhow::Result<T> {
    let threads = threads.to_string();
    let out = Command::new(PYTHON)
        .arg(script)
        .args(["--threads", &threads])
        .args(args)
        .env("OMP_NUM_THREADS", &threads)
        .env("OPENBLAS_NUM_THREADS", &threads)
        .output()
        .with_context(|| format!("cannot run {PYTHON} {script}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{script} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).with_context(|| format!("cannot parse the JSON {script} printed"))
}
