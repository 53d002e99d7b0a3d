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

/// Asserts `got` holds a problem at `line` of the body (after the header) and `path` that says
/// `message`.
fn has_problem(got: &[String], line: usize, path: &str, message: &str) {
    let line = header_lines() + line;
    assert!(
        got.iter().any(|p| p.starts_with(&format!("{line}: {path}: ")) && p.contains(message)),
        "no problem {line}: {path}: ..{message}.. in {got:#?}"
    );
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
    let has = |line: usize, path: &str, message: &str| has_problem(&got, line, path, message);
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
    let has = |line: usize, path: &str, message: &str| has_problem(&got, line, path, message);
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
    let has = |line: usize, path: &str, message: &str| has_problem(&got, line, path, message);
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
fn retention_out_of_range_is_reported_with_its_lines() {
    let body = r#"[retention]
events_secs = 10
dead_letters_secs = 99999999
[[group]]
name = "g"
[[group.camera]]
name = "c"
url = "rtsp://h/s"
"#;
    let got = problems(body);
    for (line, path) in [(2, "retention.events_secs"), (3, "retention.dead_letters_secs")] {
        has_problem(&got, line, path, "between 60 and 2592000");
    }
    assert_eq!(got.len(), 2, "{got:#?}");
    let unknown = problems(
        "[retention]\ncache_secs = 5\n[[group]]\nname = \"g\"\n[[group.camera]]\nname = \"c\"\nurl = \"rtsp://h/s\"\n",
    );
    assert!(unknown.iter().any(|p| p.contains("retention.cache_secs")), "{unknown:#?}");
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

/// `[runtime]` only, and the model paths for a body that writes its own `[detector]` and
/// `[recognizer]` tables (TOML refuses a table defined twice).
fn runtime_header() -> (String, String, String) {
    let models = support::config::models();
    let runtime: toml::Table = [("runtime".to_owned(), models["runtime"].clone())].into_iter().collect();
    let model = |t: &str| models[t]["model"].to_string();
    (toml::to_string(&runtime).unwrap(), model("detector"), model("recognizer"))
}

/// Located problems of a whole file's text.
fn problems_of(text: &str) -> Vec<String> {
    match Config::from_toml(text, Path::new("test.toml"), Path::new("/nonexistent")) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.iter().map(|p| format!("{}: {}: {}", p.line, p.path, p.message)).collect()
        }
        Err(e) => vec![e.to_string()],
    }
}

#[test]
fn numbers_and_names_out_of_range_are_reported_with_their_lines() {
    let (runtime, detector, recognizer) = runtime_header();
    let text = format!(
        r#"{runtime}
[redis]
key_prefix = ""
image_key_prefix = "img"
event_channel = "ev\u001b[2J"
cache_ttl_secs = 9223372036854775807
faces_stream_maxlen = 0
[worker]
workers = 100000000
batch = 9200000000000000000
block_ms = 9200000000000000000
[recognizer]
model = {recognizer}
dim = 9200000000000000000
max_batch = 0
mean = nan
scale = 0.0
[detector]
model = {detector}
top_k = 9200000000000000000
[quality]
min_face = inf
min_sharpness = 0.0
[[group]]
name = "g"
[[group.camera]]
name = "c"
url = "rtsp://h/s"
"#
    );
    let got = problems_of(&text);
    // Each problem is on the line of its key.
    let has = |key: &str, path: &str, message: &str| {
        let line = 1 + text.lines().position(|l| l.starts_with(&format!("{key} ="))).expect("the key");
        assert!(
            got.iter().any(|p| p.starts_with(&format!("{line}: {path}: ")) && p.contains(message)),
            "no problem {line}: {path}: ..{message}.. in {got:#?}"
        );
    };
    has("key_prefix", "redis.key_prefix", "1 to 128 characters");
    has("event_channel", "redis.event_channel", "control characters");
    has("cache_ttl_secs", "redis.cache_ttl_secs", "between 1 and 2592000");
    has("faces_stream_maxlen", "redis.faces_stream_maxlen", "between 1 and");
    has("workers", "worker.workers", "between 1 and 256");
    has("batch", "worker.batch", "between 1 and 1000");
    has("block_ms", "worker.block_ms", "between 1 and 10000");
    has("dim", "recognizer.dim", "between 1 and 4096");
    has("max_batch", "recognizer.max_batch", "between 1 and 1024");
    has("mean", "recognizer.mean", "NaN");
    has("scale", "recognizer.scale", "above 0");
    has("top_k", "detector.top_k", "between 1 and 100000");
    has("min_face", "quality.min_face", "inf");
    has("min_sharpness", "quality.min_sharpness", "above 0");
    assert_eq!(got.len(), 14, "{got:#?}");
}

#[test]
fn no_enabled_camera_is_refused_and_a_public_admin_address_is_a_warning() {
    let got = problems(
        "[[group]]\nname = \"g\"\n[[group.camera]]\nname = \"c\"\nurl = \"rtsp://h/s\"\nenabled = false\n",
    );
    assert!(got.iter().any(|p| p.contains("no enabled camera")), "{got:#?}");
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "[admin]\nlisten = \"0.0.0.0:9464\"\n[[group]]\nname = \"g\"\n[[group.camera]]\nname = \"c\"\nurl = \"rtsp://h/s\"\n",
    );
    let out = check_config(&path, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a warning, not an error: {}", text(&out));
    assert!(stderr.contains("warning:") && stderr.contains("0.0.0.0:9464 is not a loopback"), "{stderr}");
}

mod properties {
    //! The parser and validator on generated files: never a panic, and whatever is accepted is
    //! within the documented ranges (a value outside them is always reported).

    use super::*;
    use proptest::prelude::*;

    /// Integers around every boundary that matters, and far beyond; mostly small.
    fn integer() -> impl Strategy<Value = i64> {
        prop_oneof![
            6 => 1i64..=200,
            1 => 0i64..=2,
            1 => 1i64..=5000,
            1 => prop_oneof![Just(255), Just(1000), Just(4096), Just(1 << 31), Just(i64::MAX)],
        ]
    }

    fn float() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => (0.5f64..200.0).prop_map(|f| format!("{f:?}")),
            1 => (-1000.0f64..1000.0).prop_map(|f| format!("{f:?}")),
            1 => Just("nan".to_owned()),
            1 => Just("inf".to_owned()),
            1 => Just("-inf".to_owned()),
            1 => Just("0.0".to_owned()),
        ]
    }

    /// Names with the characters that break keys and terminals.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => proptest::string::string_regex("[a-z]{1,10}").unwrap(),
            1 => proptest::string::string_regex("[a-z\\-{} \\x00-\\x1f\\u{7f}\\u{202e}é]{0,10}").unwrap(),
        ]
    }

    /// Generated files with every number around its bounds: the generated TOML always parses,
    /// and a file the validator accepts has every value in range. Counts acceptances, so the
    /// property cannot hold vacuously.
    #[test]
    fn accepted_configs_are_within_range() {
        let strategy =
            (proptest::collection::vec(integer(), 9), proptest::collection::vec(float(), 4), name());
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(400));
        let accepted = std::cell::Cell::new(0);
        let (runtime, detector, recognizer) = runtime_header();
        runner
            .run(&strategy, |(ints, floats, prefix)| {
                let text = format!(
                    "{runtime}[redis]\nkey_prefix = {}\ncache_ttl_secs = {}\nfaces_stream_maxlen = {}\n\
                     [worker]\nworkers = {}\nbatch = {}\nblock_ms = {}\n\
                     [recognizer]\nmodel = {recognizer}\ndim = {}\nmax_batch = {}\nmean = {}\nscale = {}\n\
                     [detector]\nmodel = {detector}\ntop_k = {}\n[quality]\nmin_face = {}\nmin_sharpness = {}\n\
                     [[group]]\nname = \"g\"\n[[group.camera]]\nname = \"c\"\nurl = \"rtsp://h/s\"\nfps = {}.5\n",
                    toml::Value::String(prefix),
                    ints[0], ints[1], ints[2], ints[3], ints[4], ints[5], ints[6],
                    floats[0], floats[1], ints[7], floats[2], floats[3], ints[8] % 50,
                );
                let c = match Config::from_toml(&text, Path::new("p.toml"), Path::new("/nonexistent")) {
                    Ok(c) => c,
                    Err(ConfigError::Invalid { .. }) => return Ok(()),
                    Err(e) => return Err(TestCaseError::fail(format!("{e}\n{text}"))),
                };
                accepted.set(accepted.get() + 1);
                prop_assert!((1..=30 * 86_400).contains(&c.redis.cache_ttl_secs));
                prop_assert!(c.redis.faces_stream_maxlen >= 1);
                prop_assert!((1..=256).contains(&c.worker.workers));
                prop_assert!((1..=1000).contains(&c.worker.batch));
                prop_assert!((1..=10_000).contains(&c.worker.block_ms));
                prop_assert!((1..=4096).contains(&c.recognizer.dim));
                prop_assert!((1..=1024).contains(&c.recognizer.max_batch));
                prop_assert!(c.recognizer.mean.is_finite());
                prop_assert!(c.recognizer.scale.is_finite() && c.recognizer.scale > 0.0);
                prop_assert!((1..=100_000).contains(&c.detector.top_k));
                prop_assert!(c.quality.min_face >= 1.0 && c.quality.min_face.is_finite());
                prop_assert!(c.quality.min_sharpness > 0.0 && c.quality.min_sharpness.is_finite());
                let p = &c.redis.key_prefix;
                let plain = !p.is_empty() && !p.chars().any(|ch| ch.is_control() || ch.is_whitespace() || ch == '{');
                prop_assert!(plain, "key prefix {:?}", p);
                Ok(())
            })
            .unwrap();
        assert!(accepted.get() >= 5, "only {} of 400 generated files were accepted", accepted.get());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn any_text_is_parsed_or_refused_without_a_panic(body in "[\\[\\]a-z_=\"0-9.\\n #-]{0,200}") {
            let text = format!("{}{body}", header());
            let _ = Config::from_toml(&text, Path::new("p.toml"), Path::new("/nonexistent"));
        }
    }
}

#[test]
fn a_password_in_redeye_redis_url_is_refused_like_one_in_the_file_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "[[group]]\nname = \"g\"\n[[group.camera]]\nname = \"c\"\nurl = \"rtsp://h/s\"\n");
    let out = check_config(&path, &[(REDIS_URL_ENV, "redis://:hunter2@127.0.0.1:7777")]);
    let refused = text(&out);
    assert_eq!(out.status.code(), Some(1), "{refused}");
    assert!(
        refused.contains("REDEYE_REDIS_URL (from the environment)") && refused.contains("password"),
        "{refused}"
    );
    assert!(!refused.contains("hunter2"), "{refused}");
    // A user name alone is accepted, and shown.
    let out = check_config(&path, &[(REDIS_URL_ENV, "redis://reader@127.0.0.1:7777")]);
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("redis://reader@127.0.0.1:7777 (from REDEYE_REDIS_URL"), "{text}");
}
