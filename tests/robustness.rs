//! Bad data and faults never stop recognition or lose work silently (issue 15): malformed gallery
//! records injected into a real Redis, a worker stopped with SIGSTOP behind a capped stream,
//! hostile files and crops, names with control characters, Redis refusing writes. Each case runs
//! the real binary against a real `redis-server`.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use redeye::wire::FaceEntry;
use support::config::{Camera, Group, TestConfig};
use support::faces::{self, Faces};
use support::process::{Process, run_redeye};
use support::redis::RedisServer;
use support::{free_port, photo, wait_until};

const PREFIX: &str = "rb";

/// `GET url`: status and body (status 0 and the error when nothing answers).
fn get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    match agent.get(url).call() {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// The value of the sample `name` (with its labels, as printed) in a Prometheus text page.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn admin_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// XADDs `entry` to its group's faces stream as ingest would; returns the entry id.
fn add(redis: &RedisServer, entry: &FaceEntry) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(format!("{PREFIX}:{{{}}}:faces", entry.group)).arg("*");
    for (k, v) in entry.to_fields() {
        cmd.arg(k).arg(v);
    }
    redis.query(&cmd)
}

/// Every event in the events stream, as JSON.
fn events(redis: &RedisServer) -> Vec<serde_json::Value> {
    let rows: Vec<(String, HashMap<String, Vec<u8>>)> =
        redis.query(redis::cmd("XRANGE").arg(format!("{PREFIX}:events")).arg("-").arg("+"));
    rows.into_iter().map(|(_, f)| serde_json::from_slice(&f["event"]).expect("event JSON")).collect()
}

fn dead_len(redis: &RedisServer, group: &str) -> i64 {
    redis.query(redis::cmd("XLEN").arg(format!("{PREFIX}:{{{group}}}:dead")))
}

/// Enrols `name` from `photo_file` with the real binary.
fn enroll(config: &Path, name: &str, photo_file: &str) {
    support::process::enroll(config, name, photo_file);
}

fn people_key() -> String {
    format!("{PREFIX}:{{gallery}}:people")
}

/// The three malformed records of the probe: a `dim` whose `* 4` wraps, a record that is not
/// JSON, and a person whose embeddings are 7 bytes.
fn inject_bad_records(redis: &RedisServer) {
    let huge = r#"{"id":"huge","name":"Huge","model":"sface-2021dec-fp32","dim":4611686018427387904,"created":1,"updated":1}"#;
    let _: () = redis.query(redis::cmd("HSET").arg(people_key()).arg("huge").arg(huge));
    let _: () =
        redis.query(redis::cmd("SET").arg(format!("{PREFIX}:{{gallery}}:emb:huge")).arg(vec![0u8; 16]));
    let _: () = redis.query(redis::cmd("HSET").arg(people_key()).arg("bogus").arg("notjson"));
    let seven =
        r#"{"id":"seven","name":"Seven","model":"sface-2021dec-fp32","dim":128,"created":1,"updated":1}"#;
    let _: () = redis.query(redis::cmd("HSET").arg(people_key()).arg("seven").arg(seven));
    let _: () =
        redis.query(redis::cmd("SET").arg(format!("{PREFIX}:{{gallery}}:emb:seven")).arg(vec![1u8; 7]));
}

fn config_for(redis: &RedisServer, dir: &Path, admin: SocketAddr) -> PathBuf {
    TestConfig::new(PREFIX)
        .redis(redis)
        .admin(admin)
        .worker("claim_idle_ms", 1500)
        .group(Group::new("lobby").camera(Camera::unused("door")))
        .write(dir)
}

#[test]
fn malformed_gallery_records_are_skipped_and_the_rest_still_recognises() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let admin = admin_addr();
    let config = config_for(&redis, dir.path(), admin);
    enroll(&config, "Barack Obama", "obama.jpg");
    inject_bad_records(&redis);

    // The clients: `gallery` lists the good person and names each bad key; `identify` names him.
    let out = run_redeye(&config, &["gallery"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "gallery: {stdout}\n{stderr}");
    assert!(stdout.contains("1 people") && stdout.contains("barack-obama"), "{stdout}");
    for key in ["people huge", "people bogus", "emb:seven"] {
        assert!(stderr.contains(key), "gallery names the malformed `{key}`: {stderr}");
    }
    let photo_path = photo("obama2.jpg");
    let out = run_redeye(&config, &["identify", "--local", photo_path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "identify: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("barack-obama"), "{stdout}");

    // A worker: recognises, dead-letters nothing, says so once per key and in the gauge.
    let mut worker = Process::redeye(dir.path(), "recognize", &config, &["recognize", "--workers", "1"]);
    let mut faces = Faces::load();
    let crops = faces.crops("obama2.jpg", 3);
    add(&redis, &faces::entry(&crops[0], "door", "lobby", 1));
    let named = |redis: &RedisServer, n: usize| {
        let ev = events(redis);
        ev.len() >= n && ev.iter().all(|e| e["person"]["id"] == "barack-obama")
    };
    wait_until(Duration::from_secs(60), "the crop to be named", || {
        worker.assert_running();
        named(&redis, 1)
    });
    let metrics = format!("http://{admin}/metrics");
    wait_until(Duration::from_secs(10), "the malformed gauge", || {
        sample(&get(&metrics).1, "redeye_gallery_malformed_records") == Some(3.0)
    });

    // A version that is not a counter: nothing is answered from the cache, recognition goes on.
    let _: () = redis.query(redis::cmd("SET").arg(format!("{PREFIX}:{{gallery}}:version")).arg("abc"));
    add(&redis, &faces::entry(&crops[1], "door", "lobby", 2));
    add(&redis, &faces::entry(&crops[2], "door", "lobby", 3));
    wait_until(Duration::from_secs(30), "both crops to be named", || {
        worker.assert_running();
        named(&redis, 3)
    });
    wait_until(Duration::from_secs(10), "the gauge to count the version", || {
        sample(&get(&metrics).1, "redeye_gallery_malformed_records") == Some(4.0)
    });
    assert_eq!(dead_len(&redis, "lobby"), 0, "nothing dead-lettered");
    assert_eq!(get(&format!("http://{admin}/ready")).0, 200);
    let log = worker.log_text();
    for key in ["people huge", "people bogus", "emb:seven"] {
        assert_eq!(log.matches(key).count(), 1, "`{key}` is logged once:\n{log}");
    }
    assert!(!log.contains("retrying") && !log.contains("panicked"), "{log}");
    let out = run_redeye(&config, &["identify", photo_path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("barack-obama"), "{stdout}");
    assert!(stdout.contains("\"cached\":false"), "no cache at an unknown version: {stdout}");
}

/// Sends `signal` (e.g. `-STOP`, `-CONT`) to `pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").arg(signal).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

fn xlen(redis: &RedisServer, key: &str) -> u64 {
    redis.query(redis::cmd("XLEN").arg(key))
}

/// Sum of every sample of family `name` (all label sets) on a metrics page.
fn family_sum(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_stopped_worker_behind_a_capped_stream_loses_no_crop_silently() {
    const CAP: u64 = 4;
    let redis = RedisServer::start();
    let clip = support::clips::clip(&support::clips::vga());
    let mut rtsp = support::rtsp::RtspServer::start(&[("vga", &clip)]);
    let dir = tempfile::tempdir().unwrap();
    let (worker_admin, ingest_admin) = (admin_addr(), admin_addr());
    let camera = Camera::new("door", &rtsp.url("vga")).set("transport", "tcp").set("fps", 4);
    let base = TestConfig::new(PREFIX)
        .redis(&redis)
        .redis_key("faces_stream_maxlen", CAP as i64)
        .untracked()
        .group(Group::new("lobby").camera(camera));
    let (wdir, idir) = (dir.path().join("w"), dir.path().join("i"));
    std::fs::create_dir_all(&wdir).unwrap();
    std::fs::create_dir_all(&idir).unwrap();
    let worker_config = base.clone().admin(worker_admin).write(&wdir);
    let ingest_config = base.admin(ingest_admin).write(&idir);
    enroll(&worker_config, "Barack Obama", "obama.jpg");

    let mut worker =
        Process::redeye(dir.path(), "recognize", &worker_config, &["recognize", "--workers", "1"]);
    wait_until(Duration::from_secs(60), "the worker to be ready", || {
        worker.assert_running();
        get(&format!("http://{worker_admin}/ready")).0 == 200
    });
    let mut ingest = Process::redeye(dir.path(), "ingest", &ingest_config, &["ingest"]);
    let ingest_metrics = format!("http://{ingest_admin}/metrics");
    let misses = || sample(&get(&ingest_metrics).1, "redeye_cache_misses_total").unwrap_or(0.0);
    let dropped = || {
        sample(&get(&ingest_metrics).1, "redeye_ingest_crops_dropped_total{reason=\"stream_full\"}")
            .unwrap_or(0.0)
    };
    wait_until(Duration::from_secs(60), "crops through the worker", || {
        ingest.assert_running();
        misses() >= 2.0 && !events(&redis).is_empty()
    });

    // The worker falls behind for good: the stream fills to the cap and no further.
    signal(worker.pid(), "-STOP");
    let faces = format!("{PREFIX}:{{lobby}}:faces");
    wait_until(Duration::from_secs(60), "ingest to drop crops at the cap", || {
        ingest.assert_running();
        let len = xlen(&redis, &faces);
        assert!(len <= CAP, "the stream holds {len} entries, more than the cap {CAP}");
        dropped() >= 5.0
    });
    assert!(ingest.log_text().contains("faces stream is full"), "a warning says so");

    // The camera stops; once ingest's counters settle, every crop it handed off must be finished.
    rtsp.stop();
    let mut last = (misses(), dropped());
    let mut settled = 0;
    wait_until(Duration::from_secs(30), "ingest's counters to settle", || {
        let now = (misses(), dropped());
        settled = if now == last { settled + 1 } else { 0 };
        last = now;
        settled >= 20
    });
    let (handed_off, dropped) = last;
    signal(worker.pid(), "-CONT");
    let pending = |redis: &RedisServer| -> i64 {
        let summary: redis::Value = redis.query(redis::cmd("XPENDING").arg(&faces).arg("recognizers"));
        match summary {
            redis::Value::Array(v) => match v.first() {
                Some(redis::Value::Int(n)) => *n,
                _ => -1,
            },
            _ => -1,
        }
    };
    wait_until(Duration::from_secs(60), "the worker to finish the backlog", || {
        worker.assert_running();
        xlen(&redis, &faces) == 0 && pending(&redis) == 0
    });
    let recognised: Vec<String> = events(&redis)
        .into_iter()
        .filter(|e| e["cached"] == false)
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let unique: std::collections::HashSet<&String> = recognised.iter().collect();
    assert_eq!(unique.len(), recognised.len(), "each entry once");
    assert_eq!(
        recognised.len() as f64 + dead_len(&redis, "lobby") as f64,
        handed_off,
        "every crop handed off was recognised or dead-lettered ({dropped} dropped at the cap)"
    );
    let worker_page = get(&format!("http://{worker_admin}/metrics")).1;
    assert_eq!(family_sum(&worker_page, "redeye_recognitions_total"), handed_off, "{worker_page}");
    ingest.terminate(Duration::from_secs(20));
}

/// A JPEG of `side` x `side` pixels.
fn big_jpeg(side: u32) -> Vec<u8> {
    faces::jpeg(&image::RgbImage::from_pixel(side, side, image::Rgb([90, 120, 150])))
}

/// Peak resident memory of `pid`, in kB (`VmHWM`).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn an_oversized_crop_is_refused_from_its_header_without_decoding() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let admin = admin_addr();
    let config = config_for(&redis, dir.path(), admin);
    let mut worker = Process::redeye(dir.path(), "recognize", &config, &["recognize", "--workers", "1"]);
    let mut faces = Faces::load();
    let crop = faces.crops("obama2.jpg", 1).remove(0);
    // A good crop first, so the worker has loaded everything it ever loads.
    add(&redis, &faces::entry(&crop, "door", "lobby", 1));
    wait_until(Duration::from_secs(60), "the good crop's event", || {
        worker.assert_running();
        !events(&redis).is_empty()
    });
    let before = peak_rss_kb(worker.pid());
    // 8000x8000 RGB is 192 MB decoded.
    let mut entry = faces::entry(&crop, "door", "lobby", 2);
    entry.crop = big_jpeg(8000);
    entry.md5 = redeye::recognition::content_key(&entry.crop);
    add(&redis, &entry);
    wait_until(Duration::from_secs(60), "the dead letter", || {
        worker.assert_running();
        dead_len(&redis, "lobby") == 1
    });
    let rows: Vec<(String, HashMap<String, Vec<u8>>)> =
        redis.query(redis::cmd("XRANGE").arg(format!("{PREFIX}:{{lobby}}:dead")).arg("-").arg("+"));
    let reason = String::from_utf8_lossy(&rows[0].1["reason"]).to_string();
    assert!(reason.contains("8000x8000"), "{reason}");
    let grown_mb = peak_rss_kb(worker.pid()).saturating_sub(before) / 1024;
    assert!(grown_mb < 64, "the worker's peak memory grew by {grown_mb} MB: the crop was decoded");
}

fn version_key() -> String {
    format!("{PREFIX}:{{gallery}}:version")
}

#[test]
fn forget_after_the_version_went_back_does_not_keep_naming_from_the_cache() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&redis, dir.path(), admin_addr());
    enroll(&config, "Barack Obama", "obama.jpg");
    let after_obama: String = redis.query(redis::cmd("GET").arg(version_key()));
    enroll(&config, "Nicolas Cage", "cage.jpg");
    let probe = photo("obama2.jpg");
    let identify = || {
        let out = run_redeye(&config, &["identify", "--local", probe.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(identify().contains("barack-obama"));
    assert!(identify().contains("\"cached\":true"), "the second answer is cached");
    // A restore from before Cage's enrolment (or a failover that lost that INCR): the counter
    // goes back; then Obama is forgotten, which bumps it again.
    let _: () = redis.query(redis::cmd("SET").arg(version_key()).arg(&after_obama));
    let out = run_redeye(&config, &["forget", "Barack Obama"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer = identify();
    assert!(!answer.contains("barack-obama"), "a forgotten person is named from the cache: {answer}");
    assert!(answer.contains("\"cached\":false"), "{answer}");
}

/// Runs `redeye identify <path>` and fails the test if it takes longer than `limit`.
fn identify_within(config: &Path, path: &Path, limit: Duration) -> std::process::Output {
    let mut child = support::process::redeye_command(config)
        .arg("identify")
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("identify {} still runs after {limit:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn identify_refuses_devices_fifos_and_directories_at_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&redis, dir.path(), admin_addr());
    let fifo = dir.path().join("photo.jpg");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for path in [Path::new("/dev/zero"), &fifo, dir.path()] {
        let out = identify_within(&config, path, Duration::from_secs(10));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", path.display());
        assert!(stderr.contains("not a regular file"), "{}: {stderr}", path.display());
    }
}

#[test]
fn names_are_limited_at_enrolment_and_escaped_in_every_text_output() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&redis, dir.path(), admin_addr());
    let obama = photo("obama.jpg");
    for name in ["Evil\u{1b}[2J", "two\nlines", "rtl\u{202e}kcab", &"x".repeat(200)] {
        let out = support::process::redeye_command(&config)
            .args(["enroll", "--name", name])
            .arg(&obama)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name:?} was enrolled");
        assert!(stderr.contains("is refused"), "{stderr}");
        assert!(
            !stderr.contains('\u{1b}') && !stderr.contains('\u{202e}'),
            "the error echoes it raw: {stderr:?}"
        );
    }
    let people: i64 = redis.query(redis::cmd("HLEN").arg(people_key()));
    assert_eq!(people, 0, "nothing enrolled");

    // A record written into Redis by something else: `gallery` shows it escaped, on one line.
    let evil = "Evil\u{1b}[2J\nforged line";
    let record = serde_json::json!({"id": "evil", "name": evil, "model": "sface-2021dec-fp32", "dim": 128, "created": 1, "updated": 1});
    let _: () = redis.query(redis::cmd("HSET").arg(people_key()).arg("evil").arg(record.to_string()));
    let emb: Vec<u8> = (0..128).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let _: () = redis.query(redis::cmd("SET").arg(format!("{PREFIX}:{{gallery}}:emb:evil")).arg(emb));
    let out = run_redeye(&config, &["gallery"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(!stdout.contains('\u{1b}') && stdout.lines().count() == 2, "{stdout:?}");
    assert!(stdout.contains("Evil\\u{1b}[2J\\u{a}forged line"), "{stdout:?}");

    // Events read from Redis: camera and name escaped in `subscribe --format text`.
    let face = serde_json::json!({
        "schema": 1, "id": "lobby:1-0", "camera": "door\u{1b}]0;pwned\u{7}", "group": "lobby",
        "capture_ts": 1, "event_ts": 2, "frame": 3, "md5": "0", "person": {"id": "evil", "name": evil},
        "score": 0.9, "bbox": {"x": 1.0, "y": 2.0, "w": 3.0, "h": 4.0}, "cached": false, "model": "m"
    });
    let visit = serde_json::json!({
        "schema": 2, "kind": "arrived", "id": "t:arrived", "track": "t", "camera": "door\r\u{1b}[1A",
        "group": "lobby", "first_seen": 1, "event_ts": 2, "person": {"id": "evil", "name": evil},
        "score": 0.9, "md5": "0", "bbox": {"x": 1.0, "y": 2.0, "w": 3.0, "h": 4.0}, "model": "m"
    });
    for event in [face, visit] {
        let _: String = redis.query(
            redis::cmd("XADD").arg(format!("{PREFIX}:events")).arg("*").arg("event").arg(event.to_string()),
        );
    }
    let out = run_redeye(
        &config,
        &["subscribe", "--from", "0", "--format", "text", "--kind", "all", "--count", "2"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().count(), 2, "one line per event: {stdout:?}");
    for c in ['\u{1b}', '\u{7}', '\r'] {
        assert!(!stdout.contains(c), "{c:?} printed raw: {stdout:?}");
    }
    assert!(
        stdout.contains("door\\u{1b}]0;pwned\\u{7}") && stdout.contains("door\\u{d}\\u{1b}[1A"),
        "{stdout:?}"
    );
}

#[test]
fn redis_out_of_memory_is_said_in_logs_and_on_ready_and_work_resumes() {
    let redis = RedisServer::start();
    let clip = support::clips::clip(&support::clips::vga());
    let rtsp = support::rtsp::RtspServer::start(&[("vga", &clip)]);
    let dir = tempfile::tempdir().unwrap();
    let (worker_admin, ingest_admin) = (admin_addr(), admin_addr());
    let camera = Camera::new("door", &rtsp.url("vga")).set("transport", "tcp").set("fps", 2);
    let base = TestConfig::new(PREFIX).redis(&redis).untracked().group(Group::new("lobby").camera(camera));
    let (wdir, idir) = (dir.path().join("w"), dir.path().join("i"));
    std::fs::create_dir_all(&wdir).unwrap();
    std::fs::create_dir_all(&idir).unwrap();
    let worker_config = base.clone().admin(worker_admin).write(&wdir);
    let ingest_config = base.admin(ingest_admin).write(&idir);
    enroll(&worker_config, "Barack Obama", "obama.jpg");
    // A crop waiting in a group a worker made earlier; then Redis runs out of memory.
    let faces_key = format!("{PREFIX}:{{lobby}}:faces");
    let _: () = redis.query(
        redis::cmd("XGROUP").arg("CREATE").arg(&faces_key).arg("recognizers").arg("0").arg("MKSTREAM"),
    );
    let crop = Faces::load().crops("obama2.jpg", 1).remove(0);
    add(&redis, &faces::entry(&crop, "door", "lobby", 1));
    let _: () = redis.query(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1"));

    let mut worker = Process::redeye(&wdir, "recognize", &worker_config, &["recognize", "--workers", "1"]);
    let mut ingest = Process::redeye(&idir, "ingest", &ingest_config, &["ingest"]);
    for (name, admin) in [("worker", worker_admin), ("ingest", ingest_admin)] {
        let ready = format!("http://{admin}/ready");
        let mut last = (0, String::new());
        wait_until(Duration::from_secs(60), &format!("{name}'s /ready to say out of memory"), || {
            worker.assert_running();
            ingest.assert_running();
            last = get(&ready);
            last.0 == 503 && last.1.contains("out of memory")
        });
        assert!(last.1.contains("command not allowed when used memory"), "Redis's own words: {}", last.1);
    }
    let (wlog, ilog) = (worker.log_text(), ingest.log_text());
    assert!(wlog.contains("Worker reading"), "the existing group is used:\n{wlog}");
    assert!(!wlog.contains("XGROUP CREATE"), "no loop on XGROUP CREATE:\n{wlog}");
    assert!(ilog.contains("command not allowed when used memory"), "ingest logs Redis's text:\n{ilog}");
    assert!(events(&redis).is_empty());

    // Memory back: the waiting crop is recognised and both are ready again.
    let _: () = redis.query(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0"));
    wait_until(Duration::from_secs(60), "the waiting crop's event and both ready", || {
        worker.assert_running();
        !events(&redis).is_empty()
            && get(&format!("http://{worker_admin}/ready")).0 == 200
            && get(&format!("http://{ingest_admin}/ready")).0 == 200
    });
    assert_eq!(events(&redis)[0]["person"]["id"], "barack-obama");
}

/// The ACL rules README.md documents for a redeye user (with its own key prefix `rb` and the
/// default image key prefix): keep the two in step.
const ACL_RULES: &[&str] = &[
    "resetkeys",
    "~rb:*",
    "~image:*",
    "resetchannels",
    "&rb:events",
    "-@all",
    "+ping",
    "+get",
    "+set",
    "+del",
    "+append",
    "+incrby",
    "+expire",
    "+ttl",
    "+hget",
    "+hset",
    "+hsetnx",
    "+hgetall",
    "+hdel",
    "+hexists",
    "+hincrby",
    "+hlen",
    "+hmget",
    "+exists",
    "+zadd",
    "+zrem",
    "+zcard",
    "+zrangebyscore",
    "+zrevrange",
    "+zpopmin",
    "+sadd",
    "+smembers",
    "+lpush",
    "+blpop",
    "+xadd",
    "+xlen",
    "+xrange",
    "+xrevrange",
    "+xtrim",
    "+xread",
    "+xreadgroup",
    "+xack",
    "+xdel",
    "+xautoclaim",
    "+xpending",
    "+xgroup|create",
    "+xgroup|delconsumer",
    "+xinfo|groups",
    "+xinfo|consumers",
    "+evalsha",
    "+eval",
    "+script|load",
    "+multi",
    "+exec",
    "+publish",
    "+subscribe",
    "+unsubscribe",
];

#[test]
fn redeye_works_under_exactly_the_documented_acl_user() {
    let redis = RedisServer::start();
    let mut setuser = redis::cmd("ACL");
    setuser.arg("SETUSER").arg("redeye").arg("on").arg(">s3cret-pw");
    for rule in ACL_RULES {
        setuser.arg(*rule);
    }
    let _: () = redis.query(&setuser);
    // The README's list is the one tested.
    let readme = std::fs::read_to_string(support::repo().join("README.md")).unwrap();
    let documented = ACL_RULES[5..].join(" ");
    assert!(readme.contains(&documented), "README.md documents `{documented}`");

    let clip = support::clips::clip(&support::clips::vga());
    let rtsp = support::rtsp::RtspServer::start(&[("vga", &clip)]);
    let dir = tempfile::tempdir().unwrap();
    let admin = admin_addr();
    let camera = Camera::new("door", &rtsp.url("vga")).set("transport", "tcp").set("fps", 4);
    let config = TestConfig::new(PREFIX)
        .redis(&redis)
        .redis_key("username_env", "RB_REDIS_USER")
        .redis_key("password_env", "RB_REDIS_PW")
        .admin(admin)
        .worker("claim_idle_ms", 1000)
        .group(Group::new("lobby").camera(camera))
        .write(dir.path());
    let redeye = || {
        let mut cmd = support::process::redeye_command(&config);
        cmd.env("RB_REDIS_USER", "redeye").env("RB_REDIS_PW", "s3cret-pw");
        cmd
    };
    let ok = |args: &[&str]| -> String {
        let out = redeye().args(args).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "redeye {args:?}: {stdout}\n{stderr}");
        stdout.into_owned()
    };
    let obama = photo("obama.jpg");
    ok(&["enroll", "--name", "Barack Obama", obama.to_str().unwrap()]);
    // Cage stays a stranger: his track (the slideshow's third photo on) gets a visitor.
    assert!(ok(&["gallery"]).contains("barack-obama"));

    let mut listen = redeye();
    listen.args(["subscribe", "--kind", "all", "--count", "1"]).env("REDEYE_LOG", "info");
    let mut subscriber = Process::spawn("subscribe", listen, dir.path().join("subscribe.log"), "cargo build");
    let mut run = redeye();
    run.arg("run").env("REDEYE_LOG", "info");
    let mut run = Process::spawn("run", run, dir.path().join("run.log"), "cargo build");
    wait_until(Duration::from_secs(60), "visit events (and a stranger's visitor) under the ACL user", || {
        run.assert_running();
        events(&redis).iter().any(|e| e["kind"] == "arrived" && e["visitor"].is_string())
    });
    assert_eq!(get(&format!("http://{admin}/ready")).0, 200);
    // `identify` through `run`'s workers (XINFO CONSUMERS, the request on the faces stream, the
    // reply list), then from the cache.
    let probe = photo("obama2.jpg");
    assert!(ok(&["identify", probe.to_str().unwrap()]).contains("barack-obama"));
    assert!(ok(&["identify", probe.to_str().unwrap()]).contains("\"cached\":true"));
    // The claimer and the metrics poller run every second or so.
    std::thread::sleep(Duration::from_secs(3));
    run.terminate(Duration::from_secs(20));
    wait_until(Duration::from_secs(10), "the live subscriber to hear an event and exit", || {
        subscriber_exited(&mut subscriber)
    });
    assert!(ok(&["subscribe", "--from", "0", "--kind", "all", "--count", "1"]).contains("\"schema\""));
    ok(&["forget", "Barack Obama"]);
    // The clip's stranger became a visitor under the same user.
    let visitors = ok(&["visitors", "--json"]);
    let first: serde_json::Value = serde_json::from_str(visitors.lines().next().expect("a visitor")).unwrap();
    ok(&[
        "visitors",
        "show",
        first["id"].as_str().unwrap(),
        "--out",
        dir.path().join("v.jpg").to_str().unwrap(),
    ]);
    ok(&["forget", "--visitor", first["id"].as_str().unwrap()]);

    let denied: Vec<redis::Value> = redis.query(redis::cmd("ACL").arg("LOG"));
    assert!(denied.is_empty(), "commands the ACL refused: {denied:#?}\nrun log:\n{}", run.log_text());
}

/// Whether `p` has exited (successfully: fails the test otherwise).
fn subscriber_exited(p: &mut Process) -> bool {
    p.try_exit().is_some_and(|status| {
        assert!(status.success(), "subscribe failed:\n{}", p.log_text());
        true
    })
}

/// Names of the consumers of the faces stream of `lobby`.
fn consumer_names(redis: &RedisServer) -> Vec<String> {
    let rows: Vec<HashMap<String, redis::Value>> = redis.query(
        redis::cmd("XINFO").arg("CONSUMERS").arg(format!("{PREFIX}:{{lobby}}:faces")).arg("recognizers"),
    );
    rows.iter()
        .map(|r| match &r["name"] {
            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("consumer name {other:?}"),
        })
        .collect()
}

#[test]
fn implausible_capture_times_are_not_timed_and_misrouted_entries_are_dead_lettered() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let admin = admin_addr();
    let config = config_for(&redis, dir.path(), admin);
    enroll(&config, "Barack Obama", "obama.jpg");
    let mut worker = Process::redeye(dir.path(), "recognize", &config, &["recognize", "--workers", "1"]);
    let mut faces = Faces::load();
    let crops = faces.crops("obama2.jpg", 3);
    let mut epoch = faces::entry(&crops[0], "door", "lobby", 1);
    epoch.capture_ts = 0;
    add(&redis, &epoch);
    // Entries that say they belong elsewhere, in lobby's stream.
    let mut other_group = faces::entry(&crops[1], "door", "garage", 2);
    let mut cmd = redis::cmd("XADD");
    cmd.arg(format!("{PREFIX}:{{lobby}}:faces")).arg("*");
    for (k, v) in other_group.to_fields() {
        cmd.arg(k).arg(v);
    }
    let _: String = redis.query(&cmd);
    other_group.group = "lobby".into();
    other_group.model = "mobilefacenet-192d".into();
    add(&redis, &other_group);
    wait_until(Duration::from_secs(60), "one event and two dead letters", || {
        worker.assert_running();
        events(&redis).len() == 1 && dead_len(&redis, "lobby") == 2
    });
    let rows: Vec<(String, HashMap<String, Vec<u8>>)> =
        redis.query(redis::cmd("XRANGE").arg(format!("{PREFIX}:{{lobby}}:dead")).arg("-").arg("+"));
    let reasons: Vec<String> =
        rows.iter().map(|(_, f)| String::from_utf8_lossy(&f["reason"]).into_owned()).collect();
    assert!(reasons[0].contains("entry of group `garage` in group `lobby`'s stream"), "{reasons:?}");
    assert!(reasons[1].contains("entry for model `mobilefacenet-192d`"), "{reasons:?}");
    let page = get(&format!("http://{admin}/metrics")).1;
    assert_eq!(sample(&page, "redeye_recognitions_total{outcome=\"known\"}"), Some(1.0), "{page}");
    assert_eq!(
        sample(&page, "redeye_time_to_name_seconds_count"),
        Some(0.0),
        "capture_ts 0 is not timed: {page}"
    );
    assert_eq!(sample(&page, "redeye_time_to_name_seconds_sum"), Some(0.0), "{page}");
}

#[test]
fn a_role_started_before_its_redis_waits_for_it_and_says_why_once() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let admin = admin_addr();
    let config = config_for(&redis, dir.path(), admin);
    redis.stop();
    let mut worker = Process::redeye(dir.path(), "recognize", &config, &["recognize", "--workers", "1"]);
    let ready = format!("http://{admin}/ready");
    wait_until(Duration::from_secs(30), "/ready to say it waits for Redis", || {
        worker.assert_running();
        let (status, body) = get(&ready);
        status == 503 && body.contains("not connected to Redis yet")
    });
    std::thread::sleep(Duration::from_secs(3));
    worker.assert_running();
    let log = worker.log_text();
    assert_eq!(log.matches("Redis is not reachable").count(), 1, "the cause, once:\n{log}");
    assert!(log.contains("Connection refused") || log.contains("connection refused"), "{log}");
    redis.restart();
    wait_until(Duration::from_secs(60), "/ready once Redis is up", || {
        worker.assert_running();
        get(&ready).0 == 200
    });
    worker.terminate(Duration::from_secs(20));
}

#[test]
fn consumers_of_crashed_workers_are_removed_once_idle_with_nothing_pending() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new(PREFIX)
        .redis(&redis)
        .worker("claim_idle_ms", 1000)
        .worker("stale_consumer_secs", 2)
        .group(Group::new("lobby").camera(Camera::unused("door")))
        .write(dir.path());
    enroll(&config, "Barack Obama", "obama.jpg");
    let faces_key = format!("{PREFIX}:{{lobby}}:faces");
    let _: () = redis.query(
        redis::cmd("XGROUP").arg("CREATE").arg(&faces_key).arg("recognizers").arg("0").arg("MKSTREAM"),
    );
    // Two workers that died: one never read, one holds an entry it never finished.
    let _: i64 = redis.query(
        redis::cmd("XGROUP").arg("CREATECONSUMER").arg(&faces_key).arg("recognizers").arg("crashed-a"),
    );
    let crop = Faces::load().crops("obama2.jpg", 1).remove(0);
    add(&redis, &faces::entry(&crop, "door", "lobby", 1));
    let _: redis::Value = redis.query(
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("recognizers")
            .arg("crashed-b")
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(&faces_key)
            .arg(">"),
    );
    assert_eq!(consumer_names(&redis).len(), 2);
    let mut worker = Process::redeye(dir.path(), "recognize", &config, &["recognize", "--workers", "1"]);
    let own = format!("-{}-", worker.pid());
    wait_until(Duration::from_secs(60), "the held entry recognised and only the live consumer left", || {
        worker.assert_running();
        let names = consumer_names(&redis);
        events(&redis).len() == 1 && names.len() == 1 && names[0].contains(&own)
    });
    assert!(worker.log_text().contains("Removed the consumer of a worker that is gone"));
}
