//! Ingest and `redeye run` end to end, as processes, against a real Redis, a real RTSP server
//! and the real models: faces land in the right group's stream with every field, a crop seen
//! before is answered from the cache, and events name the enrolled people.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use redeye::wire::Event;
use support::clips;
use support::config::{Camera, Group, TestConfig};
use support::process::{Process, enroll};
use support::redis::RedisServer;
use support::rtsp::RtspServer;
use support::wait_until;

const PREFIX: &str = "it";

/// The tests' base config, on `redis`.
fn config(redis: &RedisServer) -> TestConfig {
    TestConfig::new(PREFIX).redis(redis)
}

fn entries(redis: &RedisServer, group: &str) -> Vec<(String, HashMap<String, Vec<u8>>)> {
    redis.query(redis::cmd("XRANGE").arg(format!("{PREFIX}:{{{group}}}:faces")).arg("-").arg("+"))
}

fn events(redis: &RedisServer) -> Vec<Event> {
    let rows: Vec<(String, HashMap<String, Vec<u8>>)> =
        redis.query(redis::cmd("XRANGE").arg(format!("{PREFIX}:events")).arg("-").arg("+"));
    rows.into_iter().map(|(_, f)| serde_json::from_slice(&f["event"]).unwrap()).collect()
}

#[test]
fn faces_from_rtsp_over_tcp_and_udp_land_in_their_groups_streams_with_every_field() {
    let redis = RedisServer::start();
    let vga = clips::clip(&clips::vga());
    let bframes = clips::clip(&clips::vga_bframes());
    let rtsp = RtspServer::start(&[("vga", &vga), ("bf", &bframes)]);
    let dir = tempfile::tempdir().unwrap();
    let door = Camera::new("door", &rtsp.url("vga")).set("transport", "tcp").set("fps", 3);
    let ramp = Camera::new("ramp", &rtsp.url("bf")).set("transport", "udp").set("fps", 3);
    // Every accepted face is an entry (untracked), so the stream fills at the sampling rate.
    let config = config(&redis)
        .untracked()
        .group(Group::new("lobby").camera(door))
        .group(Group::new("garage").camera(ramp))
        .write(dir.path());
    let _ingest = Process::redeye(dir.path(), "ingest", &config, &["ingest"]);
    wait_until(Duration::from_secs(60), "5 faces in each group's stream", || {
        entries(&redis, "lobby").len() >= 5 && entries(&redis, "garage").len() >= 5
    });
    for (group, camera) in [("lobby", "door"), ("garage", "ramp")] {
        for (id, fields) in entries(&redis, group) {
            let entry = redeye::recognition::read_entry(&fields)
                .unwrap_or_else(|e| panic!("{group} entry {id} is not a complete face entry: {e}"));
            // read_entry checks md5 == MD5(crop); say it here too, it is the content key.
            assert_eq!(entry.md5, redeye::recognition::content_key(&entry.crop));
            assert_eq!((entry.group.as_str(), entry.camera.as_str()), (group, camera));
            assert_eq!(entry.crop_size, 112);
            let crop = image::load_from_memory(&entry.crop).unwrap();
            assert_eq!((crop.width(), crop.height()), (112, 112));
            let age = redeye::instrument::unix_millis().saturating_sub(entry.capture_ts);
            assert!(age < 120_000, "capture time is wall time: {age} ms ago");
            assert!(entry.bbox.w > 20.0 && entry.score >= 0.65);
        }
    }
}

#[test]
fn run_names_enrolled_people_and_answers_a_looped_clip_from_the_cache() {
    let redis = RedisServer::start();
    // Key frames only: every loop of the file decodes the same key frames, so the same crops
    // (same MD5) come back, which is what the cache is for.
    let clip = clips::clip(&clips::short());
    let dir = tempfile::tempdir().unwrap();
    let replay = Camera::file("replay", &clip).set("key_frames_only", true).set("fps", 25);
    // The content cache answers byte-identical crops: the frame-level pipeline, untracked.
    let config = config(&redis).untracked().group(Group::new("lobby").camera(replay)).write(dir.path());
    enroll(&config, "Barack Obama", "obama2.jpg");
    enroll(&config, "Nicolas Cage", "cage2_crop.jpg");
    let _run = Process::redeye(dir.path(), "run", &config, &["run"]);
    wait_until(Duration::from_secs(90), "events answered from the cache", || {
        events(&redis).iter().filter(|e| e.cached).count() >= 4
    });
    let events = events(&redis);
    let recognised: Vec<&Event> = events.iter().filter(|e| !e.cached).collect();
    let cached: Vec<&Event> = events.iter().filter(|e| e.cached).collect();
    let named = |es: &[&Event]| -> std::collections::BTreeSet<String> {
        es.iter().filter_map(|e| e.person.as_ref().map(|p| p.id.clone())).collect()
    };
    assert!(!recognised.is_empty(), "the first loop goes through the workers");
    let expected: std::collections::BTreeSet<String> =
        ["barack-obama", "nicolas-cage"].map(String::from).into();
    assert_eq!(named(&recognised), expected, "{recognised:#?}");
    assert_eq!(named(&cached), expected, "{cached:#?}");
    for e in &cached {
        assert!(e.id.starts_with("cache:replay:"), "{}", e.id);
        assert!(recognised.iter().any(|r| r.md5 == e.md5), "a cache hit repeats an earlier crop");
    }
    // Hits do not touch the stream: it took only the misses (each deleted once finished).
    let info: HashMap<String, redis::Value> =
        redis.query(redis::cmd("XINFO").arg("STREAM").arg(format!("{PREFIX}:{{lobby}}:faces")));
    assert_eq!(info["entries-added"], redis::Value::Int(recognised.len() as i64));
}
