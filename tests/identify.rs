//! `identify` as the seed article's client (issue 14, item 5), against a real Redis, the real
//! models and real `redeye recognize` processes: a miss is detected and aligned here and
//! recognised by a worker through the group's faces stream and a reply list; the second ask
//! comes from `image:<md5>`; a request the worker dead-letters is answered with the reason. With
//! no worker it fails at once and says what to start; a worker that does not answer makes it
//! time out, say so, and withdraw its request; `--local` recognises in the process, with no
//! worker.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::config::{Camera, Group, TestConfig};
use support::process::{Process, enroll, run_redeye};
use support::redis::RedisServer;
use support::{photo, wait_until};

const PREFIX: &str = "idt";

struct Env {
    redis: RedisServer,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    /// Barack Obama and Joe Biden enrolled; no worker running.
    fn new() -> Env {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let config = TestConfig::new(PREFIX)
            .redis(&redis)
            .redis_key("cache_ttl_secs", 600)
            .group(Group::new("lobby").camera(Camera::unused("door")))
            .write(dir.path());
        enroll(&config, "Barack Obama", "obama.jpg");
        enroll(&config, "Joe Biden", "biden.jpg");
        Env { redis, dir, config }
    }

    /// `redeye recognize`, once its worker reads the faces stream (its consumer is listed).
    fn worker(&self) -> Process {
        let mut worker = Process::redeye(self.dir.path(), "recognize", &self.config, &["recognize"]);
        wait_until(Duration::from_secs(60), "the worker to read the faces stream", || {
            worker.assert_running();
            !self.consumers().is_empty()
        });
        worker
    }

    /// The consumers of the faces stream's group (none before a worker created it).
    fn consumers(&self) -> Vec<redis::Value> {
        let mut conn = self.redis.connection();
        redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(faces())
            .arg("recognizers")
            .query(&mut conn)
            .unwrap_or_default()
    }

    fn identify(&self, args: &[&str], file: &Path) -> Output {
        let mut all = vec!["identify"];
        all.extend(args);
        all.push(file.to_str().unwrap());
        run_redeye(&self.config, &all)
    }

    /// Keys matching `pattern`.
    fn keys(&self, pattern: &str) -> Vec<String> {
        self.redis.query(redis::cmd("KEYS").arg(pattern))
    }

    fn xlen(&self, key: &str) -> u64 {
        self.redis.query(redis::cmd("XLEN").arg(key))
    }
}

fn faces() -> String {
    format!("{PREFIX}:{{lobby}}:faces")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The JSON lines of a successful `identify`.
fn lines(out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "identify failed:\n{}", text(out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn identify_is_answered_by_a_recognize_process_then_from_the_cache() {
    let env = Env::new();
    let mut worker = env.worker();
    let probe = photo("obama2.jpg");

    let first = lines(&env.identify(&[], &probe));
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["person"]["id"], "barack-obama", "{first:?}");
    assert_eq!(first[0]["cached"], false);
    assert!(first[0]["bbox"]["w"].as_f64().unwrap() > 50.0, "the photo's box: {first:?}");
    // The worker recognised the crop: it cached the crop's result under the crop's own content
    // key, next to the photo's result identify cached (an in-process answer makes only the latter).
    let images = env.keys("image:*");
    assert_eq!(images.len(), 2, "the crop's and the photo's results: {images:?}");
    // A request is not a sighting: no event, no track, no visitor. Its entry is finished and
    // deleted, and its reply list was emptied (so deleted) as identify read it.
    wait_until(Duration::from_secs(10), "the request's entry to be acked and deleted", || {
        env.xlen(&faces()) == 0
    });
    assert_eq!(env.xlen(&format!("{PREFIX}:events")), 0, "a request published an event");
    assert!(env.keys(&format!("{PREFIX}:*track*")).is_empty(), "a request made a track record");
    assert!(env.keys(&format!("{PREFIX}:{{visitors}}*")).is_empty(), "a request made a visitor");
    assert!(env.keys(&format!("{PREFIX}:*reply*")).is_empty(), "a reply list was left behind");

    // Second ask: from `image:<md5>`, without the worker.
    let second = lines(&env.identify(&[], &probe));
    assert_eq!(second[0]["cached"], true, "{second:?}");
    assert_eq!(second[0]["person"], first[0]["person"]);
    assert_eq!(second[0]["score"], first[0]["score"]);

    // Several faces and several photos in one run: one request per photo, a reply per face.
    let out = run_redeye(
        &env.config,
        &["identify", photo("biden.jpg").to_str().unwrap(), photo("faces.jpg").to_str().unwrap()],
    );
    let more = lines(&out);
    assert_eq!(more[0]["person"]["id"], "joe-biden", "{more:?}");
    let group: Vec<&Value> =
        more.iter().filter(|l| l["file"].as_str().unwrap().ends_with("faces.jpg")).collect();
    assert_eq!(group.len(), 3, "{more:?}");
    assert!(group.iter().all(|l| l["person"]["id"] != "barack-obama"), "{group:?}");
    worker.assert_running();
    assert!(!worker.log_text().contains("Dead-lettered"), "{}", worker.log_text());

    // A client cropping for another recogniser: the worker dead-letters its entry and says why
    // on the reply list, so the client hears it at once instead of at its timeout.
    let other_dir = env.dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = TestConfig::new(PREFIX)
        .redis(&env.redis)
        .set("recognizer", "id", "other-model")
        .group(Group::new("lobby").camera(Camera::unused("door")))
        .write(&other_dir);
    let started = Instant::now();
    let out = run_redeye(&other, &["identify", "--timeout", "30", photo("cage.jpg").to_str().unwrap()]);
    let took = started.elapsed();
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("the workers could not recognise face 0: dead-lettered: entry for model `other-model`"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(20), "the answer came at the timeout ({took:?}), not at once");
    assert_eq!(env.xlen(&format!("{PREFIX}:{{lobby}}:dead")), 1);
    worker.assert_running();
}

#[test]
fn identify_without_a_worker_fails_at_once_and_local_needs_none() {
    let env = Env::new();
    let probe = photo("obama2.jpg");
    let started = Instant::now();
    let out = env.identify(&[], &probe); // the default --timeout: 10 s
    let took = started.elapsed();
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("no recognition worker reads group `lobby`"), "{msg}");
    assert!(msg.contains("start `redeye recognize`") && msg.contains("--local"), "{msg}");
    assert!(took < Duration::from_secs(8), "it waited {took:?} for workers that are not there");
    assert_eq!(env.xlen(&faces()), 0, "nothing was sent");
    assert!(env.keys("image:*").is_empty(), "nothing was answered");

    // `--local`: today's in-process path, no worker needed.
    let local = lines(&env.identify(&["--local"], &probe));
    assert_eq!(local[0]["person"]["id"], "barack-obama", "{local:?}");
    assert_eq!(local[0]["cached"], false);
    assert_eq!(env.keys("image:*").len(), 1, "only the photo's result");
    // ...and its answer is the cache's from then on, with or without workers.
    let again = lines(&env.identify(&[], &probe));
    assert_eq!(again[0]["cached"], true, "{again:?}");
}

#[test]
fn a_worker_that_does_not_answer_times_out_and_the_request_is_withdrawn() {
    let env = Env::new();
    let mut worker = env.worker();
    // Stopped, not dead: its consumer still looks alive, but nothing will answer.
    signal(worker.pid(), "-STOP");
    let probe = photo("obama2.jpg");
    let started = Instant::now();
    let out = env.identify(&["--timeout", "2"], &probe);
    let took = started.elapsed();
    // Withdrawn: no crop left on the stream for nobody, no reply list.
    let (left, replies) = (env.xlen(&faces()), env.keys(&format!("{PREFIX}:*reply*")));
    signal(worker.pid(), "-CONT");
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("no answer from the recognition workers of group `lobby` within 2 s"), "{msg}");
    assert!(msg.contains("redeye recognize") && msg.contains("--local"), "{msg}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(left, 0, "the unanswered crop is still on the stream");
    assert!(replies.is_empty(), "{replies:?}");

    // Running again, the worker answers the next ask (or it finished the crop it had been
    // handed before it stopped, and the crop's cached result answers).
    let answer = lines(&env.identify(&[], &probe));
    assert_eq!(answer[0]["person"]["id"], "barack-obama", "{answer:?}");
    worker.assert_running();
}

/// Sends `signal` (e.g. `-STOP`, `-CONT`) to `pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}
