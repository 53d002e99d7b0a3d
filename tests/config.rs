//! `cameras.toml` loading and `redeye check-config`, through the real binary.
//!
//! Each bad file is written to a temp dir with absolute model paths, so only the problem under
//! test is reported; the checks assert the exit code, the problem text and its line.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use redeye::config::{Config, ConfigError, REDIS_URL_ENV};
use support::config::model_tables;
use support::process::redeye_command;
use support::repo;

/// `[detector]`, `[recognizer]` and `[runtime]` pointing at the repository's files, so a config in
/// a temp dir validates.
fn header() -> String {
    model_tables()
}

/// Lines of [`header`]: line `n` of a test's body is line `header_lines() + n` of the file.
fn header_lines() -> usize {
    header().lines().count()
}

fn check_config(path: &Path, envs: &[(&str, &str)]) -> Output {
    let mut cmd = redeye_command(path);
    cmd.arg("check-config");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run redeye")
}

fn write(dir: &tempfile::TempDir, body: &str) -> PathBuf {
    let path = dir.path().join("cameras.toml");
    std::fs::write(&path, format!("{}{body}", header())).unwrap();
    path
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Parses `body` (after the header) and returns every located problem as "line: path: message".
fn problems(body: &str) -> Vec<String> {
    let text = format!("{}{body}", header());
    match Config::from_toml(&text, Path::new("test.toml"), Path::new("/nonexistent")) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.iter().map(|p| format!("{}: {}: {}", p.line, p.path, p.message)).collect()
        }
        Err(e) => vec![e.to_string()],
    }
}

#[test]
fn shipped_cameras_toml_is_valid_and_summarised() {
    let out = check_config(&repo().join("cameras.toml"), &[]);
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    for expected in [
        "groups: 3 with 8 cameras (7 enabled)",
        "entrance: 3 cameras",
        "food-court: 3 cameras",
        "parking: 2 cameras",
        "stream redeye:{entrance}:faces",
        "face_detection_yunet_2023mar.onnx",
        "face_recognition_sface_2021dec_fp32.onnx",
        "one node redis://127.0.0.1:6379",
    ] {
        assert!(text.contains(expected), "summary lacks {expected:?}:\n{text}");
    }
}

#[test]
fn misspelled_key_duplicate_camera_and_password_in_url_are_all_reported_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        r#"[redis]
url = "redis://:hunter2@10.0.0.5:6379"
[[group]]
name = "entrance"
[[group.camera]]
name = "door"
url = "rtsp://10.0.0.7/stream"
fsp = 4.0
[[group.camera]]
name = "door"
url = "rtsp://10.0.0.8/stream"
"#,
    );
    let out = check_config(&path, &[]);
    let text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let file = path.display().to_string();
    let line = |n: usize| format!("{file}:{}:", header_lines() + n);
    assert!(text.contains("has 3 problems"), "{text}");
    let expect = [
        (line(2), "redis.url", "password inside the URL"),
        (line(8), "group[0].camera[0].fsp", "unknown key `fsp`"),
        (line(10), "group[0].camera[1].name", "duplicate camera name `door`"),
    ];
    for (at, path, message) in expect {
        let found = text.lines().any(|l| l.contains(&at) && l.contains(path) && l.contains(message));
        assert!(found, "no line with {at} {path} {message:?} in:\n{text}");
    }
    // The password itself is never echoed back.
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn wrong_type_stops_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "[[group]]\nname = \"a\"\n[[group.camera]]\nname = \"c\"\nurl = \"rtsp://h/s\"\nfps = \"fast\"\n",
    );
    let out = check_config(&path, &[]);
    let text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains(&format!("line {}", header_lines() + 6)), "{text}");
    assert!(text.contains("column"), "{text}");
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let body = r#"[redis]
shared_node = "core"
[[redis.node]]
name = "core"
url = "redis://10.0.0.1:6379"
[[redis.node]]
name = "core"
url = "http://10.0.0.2:6379"
[[group]]
name = "a"
node = "west"
[[group.camera]]
name = "c1"
url = "rtsp://user:pw@10.0.0.9/s"
fps = 0.0
password_env = "REDEYE_TEST_SURELY_UNSET_VAR"
[[group.camera]]
name = "c2"
url = "file://missing-clip.mp4"
[[group]]
name = "a"
node = "core"
[[group.camera]]
name = "c3"
url = "rtsp://10.0.0.10/s"
fps = 75
"#;
    let got = problems(body);
    let has = |line: usize, path: &str, message: &str| {
        let line = header_lines() + line;
        assert!(
            got.iter().any(|p| p.starts_with(&format!("{line}: {path}: ")) && p.contains(message)),
            "no problem {line}: {path}: ..{message}.. in {got:#?}"
        );
    };
    has(7, "redis.node[1].name", "duplicate node name `core`");
    has(8, "redis.node[1].url", "scheme must be redis:// or rediss://");
    has(11, "group[0].node", "node `west` is not defined");
    has(14, "group[0].camera[0].url", "credentials inside the URL");
    has(15, "group[0].camera[0].fps", "out of range");
    has(16, "group[0].camera[0].password_env", "`REDEYE_TEST_SURELY_UNSET_VAR` is not set");
    has(19, "group[0].camera[1].url", "does not exist");
    has(21, "group[1].name", "duplicate group name `a`");
    has(26, "group[1].camera[0].fps", "out of range");
    assert_eq!(got.len(), 9, "{got:#?}");
}

#[test]
fn missing_models_and_runtime_are_reported() {
    let body = "[detector]\nmodel = \"nope/yunet.onnx\"\n[[group]]\nname = \"g\"\n[[group.camera]]\nname = \"c\"\nurl = \"rtsp://h/s\"\n";
    // Without the header, every path is the default relative to a directory that has no models.
    let got = match Config::from_toml(body, Path::new("x.toml"), Path::new("/nonexistent")) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected problems, got {other:?}"),
    };
    let messages: Vec<String> = got.iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
    for expected in [
        "detector.model: model file /nonexistent/nope/yunet.onnx does not exist",
        "recognizer.model: model file /nonexistent/models/face_recognition_sface_2021dec_fp32.onnx",
    ] {
        assert!(messages.iter().any(|m| m.starts_with(expected)), "{expected:?} not in {messages:#?}");
    }
}

#[test]
fn bad_tracking_values_are_reported_with_their_lines() {
    let body = r#"[tracking]
min_hits = 0
max_age_ms = 7200000
iou = 1.5
max_shots = 0
quality_margin = nan
record_ttl_secs = 5
[[group]]
name = "g"
[[group.camera]]
name = "c"
url = "rtsp://h/s"
"#;
    let got = problems(body);
    let has = |line: usize, path: &str, message: &str| {
        let line = header_lines() + line;
        assert!(
            got.iter().any(|p| p.starts_with(&format!("{line}: {path}: ")) && p.contains(message)),
            "no problem {line}: {path}: ..{message}.. in {got:#?}"
        );
    };
    has(2, "tracking.min_hits", "between 1 and 100");
    has(3, "tracking.max_age_ms", "between 1 and 3600000");
    has(4, "tracking.iou", "must be in (0, 1]");
    has(5, "tracking.max_shots", "between 1 and 1000");
    has(6, "tracking.quality_margin", "NaN");
    has(7, "tracking.record_ttl_secs", "between 60");
    assert_eq!(got.len(), 6, "{got:#?}");
    // And a misspelt key in the table is reported like any other.
    let got = problems(
        "[tracking]\nmax_age = 100\n[[group]]\nname = \"g\"\n[[group.camera]]\nname = \"c\"\nurl = \"rtsp://h/s\"\n",
    );
    assert!(
        got.iter().any(|p| p.starts_with(&format!("{}: tracking.max_age: unknown key", header_lines() + 2))),
        "{got:#?}"
    );
}

#[test]
fn visitors_settings_out_of_range_are_reported_with_their_lines() {
    let body = r#"[visitors]
ttl_secs = 99999999
threshold = 0.2
max_visitors = 0
embeddings = 40
enroll_min_embeddings = 0
[[group]]
name = "g"
[[group.camera]]
name = "c"
url = "rtsp://h/s"
"#;
    let got = problems(body);
    let has = |line: usize, path: &str, message: &str| {
        let line = header_lines() + line;
        assert!(
            got.iter().any(|p| p.starts_with(&format!("{line}: {path}: ")) && p.contains(message)),
            "no problem {line}: {path}: ..{message}.. in {got:#?}"
        );
    };
    has(2, "visitors.ttl_secs", "between 0 (off) and 2592000");
    has(3, "visitors.threshold", "below [matching] threshold 0.363");
    has(4, "visitors.max_visitors", "between 1 and");
    has(5, "visitors.embeddings", "between 1 and 32");
    has(6, "visitors.enroll_min_embeddings", "between 1 and embeddings");
    assert_eq!(got.len(), 5, "{got:#?}");
    let nan = problems(
        "[visitors]\nthreshold = nan\n[[group]]\nname = \"g\"\n[[group.camera]]\nname = \"c\"\nurl = \"rtsp://h/s\"\n",
    );
    assert!(
        nan.iter().any(|p| p.contains("visitors.threshold: threshold NaN must be in (0, 1]")),
        "{nan:#?}"
    );
}

#[test]
fn topologies_exclude_each_other_and_nodes_need_pinning() {
    let body = r#"[redis]
url = "redis://127.0.0.1:6379"
cluster = ["redis://10.0.0.1:7000"]
[[group]]
name = "g"
node = "x"
[[group.camera]]
name = "c"
url = "rtsp://h/s"
"#;
    let got = problems(body);
    assert!(got.iter().any(|p| p.contains("choose one Redis topology, found url, cluster")), "{got:#?}");
    assert!(got.iter().any(|p| p.contains("group[0].node") && p.contains("none are defined")), "{got:#?}");
}

#[test]
fn set_environment_variables_are_accepted_and_override_url_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "[redis]\npassword_env = \"REDEYE_TEST_CONFIG_PW\"\n[[group]]\nname = \"g\"\n[[group.camera]]\nname = \"c\"\nurl = \"rtsp://h/s\"\n",
    );
    let out = check_config(&path, &[("REDEYE_TEST_CONFIG_PW", "s3cret")]);
    assert!(out.status.success(), "{}", text(&out));
    let out = check_config(
        &path,
        &[("REDEYE_TEST_CONFIG_PW", "s3cret"), (REDIS_URL_ENV, "redis://127.0.0.1:7777")],
    );
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("redis://127.0.0.1:7777 (from REDEYE_REDIS_URL"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = check_config(Path::new("/nonexistent/cameras.toml"), &[]);
    let text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("/nonexistent/cameras.toml"), "{text}");
}
