//! Observability against real peers: `redeye run` (or `recognize`) as a process with a real
//! Redis and the real models, scraped by a real Prometheus server; every PromQL expression of
//! the Grafana dashboards is evaluated through Prometheus's HTTP API and must return data, the
//! exposition passes `promtool check metrics`, and `/ready` follows Redis.
//!
//! A missing `prometheus` or `promtool` (Debian's `prometheus` package) is a failure that says
//! to run the setup, never a skip.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::config::{Camera, Group, TestConfig};
use support::process::{Process, enroll};
use support::redis::RedisServer;
use support::{clips, free_port, repo, wait_until};

const PREFIX: &str = "ob";
const SETUP: &str = "run make setup (it installs Debian's `prometheus` package: prometheus and promtool)";

/// Grafana's interval variables, as the test evaluates them: one minute holds 60 scrapes at
/// the test's 1 s interval, five minutes hold everything the test has seen.
const GRAFANA_INTERVALS: [(&str, &str); 3] =
    [("$__rate_interval", "1m"), ("$__interval", "15s"), ("$__range", "5m")];

/// An HTTP client that returns 4xx/5xx responses instead of errors.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// `GET url`: (status, body), or (0, the error) when nothing answered.
fn get(url: &str) -> (u16, String) {
    match agent().get(url).call() {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// The subcommand that runs everything `redeye` has: `run` (ingest and workers) when it
/// exists, so the camera metrics are covered, else `recognize`.
fn everything_subcommand() -> &'static str {
    let out = Command::new(env!("CARGO_BIN_EXE_redeye")).args(["run", "--help"]).output().unwrap();
    if out.status.success() { "run" } else { "recognize" }
}

/// A Prometheus server scraping `targets` every second, with its data in a temp dir.
struct Prometheus {
    url: String,
    /// Killed on drop.
    _process: Process,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[SocketAddr]) -> Prometheus {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let targets = targets.join(", ");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: redeye\n    static_configs:\n      - targets: [{targets}]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let log = dir.path().join("prometheus.log");
        let mut process = Process::spawn("prometheus", cmd, log, SETUP);
        let url = format!("http://127.0.0.1:{port}");
        wait_until(Duration::from_secs(30), "Prometheus to be ready", || {
            process.assert_running();
            get(&format!("{url}/-/ready")).0 == 200
        });
        Prometheus { url, _process: process, _dir: dir }
    }

    /// The `result` of an instant query; panics on an API error (a PromQL syntax error says so).
    fn query(&self, expr: &str) -> Vec<Value> {
        let mut r = agent()
            .get(format!("{}/api/v1/query", self.url))
            .query("query", expr)
            .call()
            .unwrap_or_else(|e| panic!("Prometheus query {expr}: {e}"));
        let body = r.body_mut().read_to_string().unwrap();
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{expr}: {e}: {body}"));
        assert_eq!(v["status"], "success", "Prometheus refused `{expr}`: {body}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The value of a query returning one sample, or None.
    fn scalar(&self, expr: &str) -> Option<f64> {
        let r = self.query(expr);
        r.first().and_then(|s| s["value"][1].as_str()).and_then(|v| v.parse().ok())
    }
}

/// The PromQL of one dashboard: every `expr` anywhere in it, and its template variables
/// (name, query) in order.
struct Dashboard {
    file: String,
    exprs: Vec<String>,
    variables: Vec<(String, String)>,
}

fn dashboards() -> Vec<Dashboard> {
    let dir = repo().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "expected overview.json and camera.json in {}", dir.display());
    files
        .iter()
        .map(|path| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut exprs = Vec::new();
            collect_exprs(&v, &mut exprs);
            let variables = v["templating"]["list"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter(|t| t["type"] == "query")
                        .map(|t| {
                            let q = t["query"]["query"]
                                .as_str()
                                .or(t["query"].as_str())
                                .or(t["definition"].as_str());
                            (
                                t["name"].as_str().unwrap().to_owned(),
                                q.expect("a query variable has a query").to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            Dashboard { file: path.file_name().unwrap().to_string_lossy().into_owned(), exprs, variables }
        })
        .collect()
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}

/// `expr` with Grafana's variables replaced.
fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let mut s = expr.to_owned();
    for (name, value) in GRAFANA_INTERVALS {
        s = s.replace(name, value);
    }
    for (name, value) in vars {
        s = s.replace(&format!("${{{name}}}"), value).replace(&format!("${name}"), value);
    }
    assert!(!s.contains('$'), "unresolved variable in `{s}` (from `{expr}`)");
    s
}

/// Evaluates `label_values(selector, label)`: the selector must return series, and the label's
/// first value becomes the variable's value.
fn resolve_variable(prom: &Prometheus, query: &str) -> Result<String, String> {
    let inner =
        query.trim().strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')).unwrap_or_else(|| {
            panic!("the test understands label_values(selector, label) only, not `{query}`")
        });
    let (selector, label) = inner.rsplit_once(',').expect("label_values(selector, label)");
    let values: BTreeSet<String> = prom
        .query(selector.trim())
        .iter()
        .filter_map(|s| s["metric"][label.trim()].as_str().map(String::from))
        .collect();
    values.into_iter().next().ok_or_else(|| format!("variable query `{query}` has no values"))
}

/// Every dashboard expression that returns no data now (after resolving the variables).
fn empty_queries(prom: &Prometheus, boards: &[Dashboard]) -> Vec<String> {
    let mut empty = Vec::new();
    for board in boards {
        let mut vars = BTreeMap::new();
        for (name, query) in &board.variables {
            match resolve_variable(prom, &substitute(query, &vars)) {
                Ok(value) => {
                    vars.insert(name.clone(), value);
                }
                Err(e) => {
                    empty.push(format!("{}: {e}", board.file));
                    vars.insert(name.clone(), "no-value".into());
                }
            }
        }
        for expr in &board.exprs {
            let q = substitute(expr, &vars);
            if prom.query(&q).is_empty() {
                empty.push(format!("{}: {q}", board.file));
            }
        }
    }
    empty
}

/// Metric names in the README's "Metrics" section.
fn readme_metrics() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("\n## Metrics").expect("README has a \"## Metrics\" section");
    let rest = &readme[start + 1..];
    let end = rest[1..].find("\n## ").map_or(rest.len(), |i| i + 1);
    metric_names(&rest[..end])
}

/// Every `redeye_...` name in `text`, histogram series folded into their family.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("redeye_") {
        if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if name.ends_with('_') {
            continue; // a pattern in prose, like `redeye_<subsystem>_...`
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| f.ends_with("_seconds")))
            .unwrap_or(&name);
        names.insert(family.to_owned());
    }
    names
}

/// The tests' base config: `redis`, the admin server on `admin`, and claims quick enough that
/// the poison entry is dead-lettered within the test.
fn config(redis: &RedisServer, admin: SocketAddr) -> TestConfig {
    TestConfig::new(PREFIX)
        .redis(redis)
        .admin(admin)
        .worker("claim_idle_ms", 2000)
        .worker("max_deliveries", 2)
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus_and_promtool_accepts_the_exposition() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // Key frames only: every loop of the file yields the same crops, so after the first loop
    // the cache answers (hits), while the first loop goes through the workers (misses).
    let clip = clips::clip(&clips::short());
    let replay = Camera::file("replay", &clip).set("key_frames_only", true).set("fps", 25);
    // Untracked, so that the cache answers (the cache and per-face time-to-name panels).
    let config =
        config(&redis, admin).untracked().group(Group::new("lobby").camera(replay)).write(dir.path());
    enroll(&config, "Barack Obama", "obama2.jpg");
    enroll(&config, "Nicolas Cage", "cage2_crop.jpg");
    // A poison entry, so the dead-letter series carry a real count.
    let _: String = redis.query(
        redis::cmd("XADD").arg(format!("{PREFIX}:{{lobby}}:faces")).arg("*").arg("md5").arg("not-a-face"),
    );

    let subcommand = everything_subcommand();
    let mut redeye = Process::redeye(dir.path(), "redeye", &config, &[subcommand]);
    // A second, tracked process on real video (another group, the same Redis and gallery) for
    // the visit panels.
    let visits_dir = tempfile::tempdir().unwrap();
    let visits_admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let franck = Camera::file("franck", &clips::video_clip(&clips::franck_minute())).set("fps", 2.0);
    let visits_config = TestConfig::new(PREFIX)
        .redis(&redis)
        .admin(visits_admin)
        .group(Group::new("visits").camera(franck))
        .write(visits_dir.path());
    enroll(&visits_config, "Franck", "franck_02045.jpg");
    let mut tracked = Process::redeye(visits_dir.path(), "tracked", &visits_config, &["run"]);
    let prom = Prometheus::start(&[admin, visits_admin]);
    wait_until(Duration::from_secs(60), "Prometheus to scrape both processes", || {
        redeye.assert_running();
        tracked.assert_running();
        prom.scalar("sum(up{job=\"redeye\"})") == Some(2.0)
    });
    let mut needed = vec![
        "sum(redeye_recognitions_total{outcome=~\"known|unknown\"})",
        "sum(redeye_recognitions_total{outcome=\"dead_letter\"})",
        "sum(redeye_time_to_name_seconds_count)",
        "sum(redeye_stage_duration_seconds_count{stage=\"embed\"})",
        "sum(redeye_gallery_people)",
    ];
    if subcommand == "run" {
        needed.extend([
            "sum(redeye_camera_frames_decoded_total)",
            "sum(redeye_faces_detected_total)",
            "sum(redeye_cache_hits_total)",
            "sum(redeye_stage_duration_seconds_count{stage=\"decode\"})",
            "sum(redeye_visit_events_total{kind=\"arrived\"})",
            "sum(redeye_shots_sent_total)",
            "sum(redeye_visit_time_to_name_seconds_count)",
        ]);
    }
    wait_until(Duration::from_secs(120), "recognitions, dead letters, cache hits and camera frames", || {
        redeye.assert_running();
        tracked.assert_running();
        needed.iter().all(|q| prom.scalar(q).is_some_and(|v| v > 0.0))
    });

    let boards = dashboards();
    let exprs: usize = boards.iter().map(|b| b.exprs.len() + b.variables.len()).sum();
    assert!(exprs >= 20, "only {exprs} queries in the dashboards");
    let mut empty = Vec::new();
    // Rates need two scrapes inside their window: give fresh series a few seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        empty = empty_queries(&prom, &boards);
        if empty.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        empty.is_empty(),
        "{} of {exprs} dashboard queries return no data (redeye {subcommand}):\n{}\n--- /metrics ---\n{}",
        empty.len(),
        empty.join("\n"),
        get(&format!("http://{admin}/metrics")).1
    );
    eprintln!("{exprs} dashboard queries over redeye {subcommand}: all return data");

    // The exposition passes promtool's lint.
    let (status, body) = get(&format!("http://{admin}/metrics"));
    assert_eq!(status, 200, "{body}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool ({e}): {SETUP}"));
    promtool.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n--- /metrics ---\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The README lists every family served, and nothing else; the dashboards use only those.
    let documented = readme_metrics();
    let served: BTreeSet<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    if subcommand == "run" {
        // The untracked process serves everything but the tracker's per-camera families (the
        // tracked one serves those; its gauges are checked through the dashboards).
        let tracker_only: BTreeSet<String> = [
            "redeye_tracks_started_total",
            "redeye_tracks_ended_total",
            "redeye_shots_sent_total",
            "redeye_faces_tracked_dropped_total",
        ]
        .map(String::from)
        .into();
        let expected: BTreeSet<String> = documented.difference(&tracker_only).cloned().collect();
        assert_eq!(served, expected, "families served (left) vs listed in the README (right)");
    } else {
        let missing: Vec<_> = served.difference(&documented).collect();
        assert!(missing.is_empty(), "served but not in the README: {missing:?}");
    }
    for board in &boards {
        for expr in board.exprs.iter().chain(board.variables.iter().map(|(_, q)| q)) {
            let unknown: Vec<_> =
                metric_names(expr).into_iter().filter(|m| !documented.contains(m)).collect();
            assert!(
                unknown.is_empty(),
                "{}: `{expr}` uses metrics the README does not list: {unknown:?}",
                board.file
            );
        }
    }
}

#[test]
fn ready_is_503_while_redis_is_down_and_200_when_it_answers_and_live_stays_200() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let lobby = Group::new("lobby").camera(Camera::unused("door"));
    let config = config(&redis, admin).group(lobby).write(dir.path());
    let mut redeye = Process::redeye(dir.path(), "redeye", &config, &["recognize"]);
    let (live, ready) = (format!("http://{admin}/live"), format!("http://{admin}/ready"));

    wait_until(Duration::from_secs(60), "/ready to say 200", || {
        redeye.assert_running();
        get(&ready).0 == 200
    });
    assert_eq!(get(&live).0, 200);

    redis.stop();
    let mut last = (0, String::new());
    wait_until(Duration::from_secs(20), "/ready to say 503 with Redis down", || {
        last = get(&ready);
        last.0 == 503
    });
    assert!(last.1.contains("Redis"), "the reason names Redis: {:?}", last.1);
    let (status, body) = get(&live);
    assert_eq!(status, 200, "/live stays up while Redis is down: {body}");
    let (status, metrics) = get(&format!("http://{admin}/metrics"));
    assert_eq!(status, 200);
    assert!(metrics.contains("redeye_recognitions_total"), "{metrics}");

    redis.restart();
    wait_until(Duration::from_secs(30), "/ready to say 200 again", || {
        redeye.assert_running();
        get(&ready).0 == 200
    });
}
