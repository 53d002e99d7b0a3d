//! Recognition workers against a real Redis and the real models: every crop becomes exactly one
//! event (by id) or one dead letter, through crashes, Redis restarts and poison entries.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use redeye::bus::{Bus, Credentials, Keys, Topology};
use redeye::config::Config;
use redeye::recognize::gallery;
use redeye::wire::{Event, FaceEntry};
use support::config::{Camera, Group, TestConfig};
use support::faces::{Crop, Faces};
use support::process::{Process, redeye_command};
use support::redis::RedisServer;
use support::wait_until;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const PREFIX: &str = "wt";

/// A config for groups `g1` and `g2` on `redis`, with short claim times so crash recovery is
/// quick in a test.
fn write_config(dir: &tempfile::TempDir, redis: &RedisServer) -> PathBuf {
    TestConfig::new(PREFIX)
        .redis(redis)
        .redis_key("cache_ttl_secs", 600)
        .worker("batch", 8)
        .worker("claim_idle_ms", 1500)
        .worker("max_deliveries", 3)
        .group(Group::new("g1").camera(Camera::unused("cam1")))
        .group(Group::new("g2").camera(Camera::unused("cam2")))
        .write(dir.path())
}

/// What every test starts from.
struct Setup {
    redis: RedisServer,
    /// Holds the config file; removed on drop.
    dir: tempfile::TempDir,
    config_path: PathBuf,
    config: Config,
    bus: Bus,
    faces: Faces,
}

/// A Redis, the config for it, a bus on it, and the models with `people` enrolled.
async fn setup(people: &[(&str, &str)]) -> Setup {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_config(&dir, &redis);
    let config = Config::load(&config_path).unwrap();
    let bus = bus(&redis).await;
    let mut faces = Faces::load();
    enroll(&bus, &mut faces, people).await;
    Setup { redis, dir, config_path, config, bus, faces }
}

async fn bus(redis: &RedisServer) -> Bus {
    let keys = Keys::new(PREFIX, "image", &format!("{PREFIX}:events"));
    Bus::connect(Topology::Single { url: redis.url() }, Credentials::none(), keys).await.unwrap()
}

/// XADDs `entry` to its group's stream, as ingest does; returns the event id it will get,
/// `<group>:<entry id>`.
fn add(redis: &RedisServer, entry: &FaceEntry) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(format!("{PREFIX}:{{{}}}:faces", entry.group)).arg("*");
    for (k, v) in entry.to_fields() {
        cmd.arg(k).arg(v);
    }
    let id: String = redis.query(&cmd);
    format!("{}:{id}", entry.group)
}

/// Every event in the events stream, in order.
fn events(redis: &RedisServer) -> Vec<Event> {
    let rows: Vec<(String, HashMap<String, Vec<u8>>)> =
        redis.query(redis::cmd("XRANGE").arg(format!("{PREFIX}:events")).arg("-").arg("+"));
    rows.into_iter().map(|(_, f)| serde_json::from_slice(&f["event"]).expect("event JSON")).collect()
}

/// Every dead letter of a group: (`<group>:<original id>`, reason).
fn dead_letters(redis: &RedisServer, group: &str) -> Vec<(String, String)> {
    let rows: Vec<(String, HashMap<String, Vec<u8>>)> =
        redis.query(redis::cmd("XRANGE").arg(format!("{PREFIX}:{{{group}}}:dead")).arg("-").arg("+"));
    rows.into_iter()
        .map(|(_, f)| {
            let text = |k: &str| String::from_utf8_lossy(f.get(k).map_or(&[][..], |v| v)).to_string();
            (format!("{group}:{}", text("original_id")), text("reason"))
        })
        .collect()
}

/// Enrols each (name, photo) with the real embedder.
async fn enroll(bus: &Bus, faces: &mut Faces, people: &[(&str, &str)]) {
    for (name, photo) in people {
        let e = faces.embedding(photo);
        gallery::enroll(&mut bus.shared(), bus.keys(), name, "sface-2021dec-fp32", &[e]).await.unwrap();
    }
}

/// Workers for every group, in this process.
fn start_workers(config: &Config, bus: &Bus) -> (CancellationToken, TaskTracker) {
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let health = std::sync::Arc::new(redeye::health::Health::default());
    redeye::service::recognize::spawn_workers(config, bus, &[], Some(1), &tracker, &token, &health).unwrap();
    tracker.close();
    (token, tracker)
}

async fn stop(token: CancellationToken, tracker: TaskTracker) {
    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), tracker.wait()).await.expect("workers stop");
}

const PEOPLE: [(&str, &str); 4] = [
    ("Barack Obama", "obama.jpg"),
    ("Nicolas Cage", "cage.jpg"),
    ("Franck", "franck_01829.jpg"),
    ("Sean Connery", "SeanConnery.jpg"),
];

/// Probe crops of the enrolled people, from photos other than the enrolled ones.
fn probes(faces: &mut Faces, per_photo: usize) -> Vec<(String, Crop)> {
    let photos = [
        ("barack-obama", "obama2.jpg"),
        ("barack-obama", "obama3.jpg"),
        ("nicolas-cage", "cage2_crop.jpg"),
        ("franck", "franck_02888.jpg"),
        ("franck", "franck_04117.jpg"),
        ("sean-connery", "sean_guru2_crop.jpg"),
    ];
    photos
        .iter()
        .flat_map(|(who, p)| faces.crops(p, per_photo).into_iter().map(move |c| (who.to_string(), c)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_crops_over_two_groups_give_two_hundred_events_with_the_right_people() {
    let Setup { redis, dir: _dir, config_path: _, config, bus, mut faces } = setup(&PEOPLE).await;
    let crops = probes(&mut faces, 34); // 6 photos x 34 = 204, we take 200
    let mut expected: HashMap<String, String> = HashMap::new();
    for (i, (who, crop)) in crops.iter().take(200).enumerate() {
        let (camera, group) = if i.is_multiple_of(2) { ("cam1", "g1") } else { ("cam2", "g2") };
        let id = add(&redis, &support::faces::entry(crop, camera, group, i as u64));
        expected.insert(id, who.clone());
    }
    let (token, tracker) = start_workers(&config, &bus);
    wait_until(Duration::from_secs(120), "200 events", || events(&redis).len() >= 200);
    stop(token, tracker).await;

    let events = events(&redis);
    assert_eq!(events.len(), 200, "exactly one event per crop");
    let ids: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 200, "event ids are the entry ids, each once");
    let mut wrong = Vec::new();
    for e in &events {
        let want = expected.get(&e.id).unwrap_or_else(|| panic!("event for unknown id {}", e.id));
        if e.person.as_ref().map(|p| p.id.as_str()) != Some(want) {
            wrong.push(format!("{}: {:?} (score {:.3}), want {want}", e.id, e.person, e.score));
        }
        assert!(!e.cached && e.schema == 1 && e.capture_ts <= e.event_ts);
    }
    assert!(wrong.is_empty(), "{} of 200 wrong:\n{}", wrong.len(), wrong.join("\n"));
    // Results are cached under the crop's md5 with the TTL, and nothing is left pending.
    let some = &events[0];
    let ttl: i64 = redis.query(redis::cmd("TTL").arg(format!("image:{}", some.md5)));
    assert!(ttl > 500, "TTL {ttl}");
    for g in ["g1", "g2"] {
        let pending: Vec<redis::Value> =
            redis.query(redis::cmd("XPENDING").arg(format!("{PREFIX}:{{{g}}}:faces")).arg("recognizers"));
        assert_eq!(pending[0], redis::Value::Int(0), "{g} has pending entries");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_entries_are_dead_lettered_with_reasons_and_good_ones_still_recognized() {
    let Setup { redis, dir: _dir, config_path: _, config, bus, mut faces } = setup(&PEOPLE[..1]).await;
    let good = faces.crops("obama2.jpg", 1).remove(0);
    let base = support::faces::entry(&good, "cam1", "g1", 1);

    let mut poison: BTreeMap<String, &str> = BTreeMap::new();
    // Missing fields.
    let id: String =
        redis.query(redis::cmd("XADD").arg(format!("{PREFIX}:{{g1}}:faces")).arg("*").arg("md5").arg("abc"));
    poison.insert(format!("g1:{id}"), "missing field");
    // Garbage bytes where the JPEG should be (with a matching md5).
    let garbage = b"\x00\x01garbage, not a jpeg".to_vec();
    let e = FaceEntry { md5: redeye::recognition::content_key(&garbage), crop: garbage, ..base.clone() };
    poison.insert(add(&redis, &e), "crop is not a JPEG");
    // A crop of the wrong size.
    let small = support::faces::jpeg(&image::imageops::resize(
        &good.rgb,
        64,
        64,
        image::imageops::FilterType::Triangle,
    ));
    let e = FaceEntry { md5: redeye::recognition::content_key(&small), crop: small, ..base.clone() };
    poison.insert(add(&redis, &e), "crop is 64x64, expected 112x112");
    // An md5 that is not the crop's.
    let e = FaceEntry { md5: "0".repeat(32), ..base.clone() };
    poison.insert(add(&redis, &e), "does not match the crop bytes");
    let good_id = add(&redis, &base);

    let (token, tracker) = start_workers(&config, &bus);
    wait_until(Duration::from_secs(60), "dead letters and the good event", || {
        dead_letters(&redis, "g1").len() >= 4 && !events(&redis).is_empty()
    });
    stop(token, tracker).await;
    let dead: BTreeMap<String, String> = dead_letters(&redis, "g1").into_iter().collect();
    assert_eq!(dead.len(), 4, "{dead:#?}");
    for (id, reason) in &poison {
        let got = dead.get(id).unwrap_or_else(|| panic!("{id} not dead-lettered: {dead:#?}"));
        assert!(got.contains(reason), "{id}: reason {got:?} lacks {reason:?}");
    }
    let events = events(&redis);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, good_id);
    assert_eq!(events[0].person.as_ref().map(|p| p.id.as_str()), Some("barack-obama"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_enrolled_after_coming_back_unknown_is_recognized_next_time() {
    let Setup { redis, dir: _dir, config_path: _, config, bus, mut faces } = setup(&PEOPLE).await;
    let crop = faces.crops("biden.jpg", 1).remove(0);
    let entry = support::faces::entry(&crop, "cam1", "g1", 1);
    let (token, tracker) = start_workers(&config, &bus);

    add(&redis, &entry);
    wait_until(Duration::from_secs(60), "the first event", || events(&redis).len() == 1);
    assert_eq!(events(&redis)[0].person, None, "Biden is not enrolled yet");
    let cached: String = redis.query(redis::cmd("GET").arg(format!("image:{}", entry.md5)));
    let cached: redeye::recognition::CachedResult = serde_json::from_str(&cached).unwrap();

    enroll(&bus, &mut faces, &[("Joe Biden", "biden.jpg")]).await;
    let version = gallery::version(&mut bus.shared(), bus.keys()).await.unwrap();
    assert!(
        !cached.is_fresh("sface-2021dec-fp32", version),
        "the unknown result must not be served any more"
    );

    add(&redis, &entry);
    wait_until(Duration::from_secs(60), "the second event", || events(&redis).len() == 2);
    stop(token, tracker).await;
    let second = &events(&redis)[1];
    assert_eq!(second.md5, entry.md5);
    assert_eq!(second.person.as_ref().map(|p| p.id.as_str()), Some("joe-biden"), "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_goes_on_after_redis_restarts_under_it() {
    let Setup { mut redis, dir: _dir, config_path: _, config, bus, mut faces } = setup(&[]).await;
    let crops = faces.crops("cage2_crop.jpg", 6);
    let (token, tracker) = start_workers(&config, &bus);
    for (i, c) in crops[..3].iter().enumerate() {
        add(&redis, &support::faces::entry(c, "cam1", "g1", i as u64));
    }
    wait_until(Duration::from_secs(60), "3 events before the restart", || events(&redis).len() == 3);

    // Without persistence the restarted server is empty: the worker must reconnect and
    // re-create its consumer group by itself.
    redis.restart();
    std::thread::sleep(Duration::from_millis(500));
    let mut ids = HashSet::new();
    for (i, c) in crops[3..].iter().enumerate() {
        ids.insert(add(&redis, &support::faces::entry(c, "cam1", "g1", 10 + i as u64)));
    }
    wait_until(Duration::from_secs(60), "3 events after the restart", || {
        events(&redis).len() == 3 && {
            let got: HashSet<String> = events(&redis).into_iter().map(|e| e.id).collect();
            got == ids
        }
    });
    stop(token, tracker).await;
}

/// `redeye recognize` as a separate process, logging into `<dir>/<name>.log`.
fn worker_process(dir: &tempfile::TempDir, name: &str, config: &std::path::Path) -> Process {
    Process::redeye(dir.path(), name, config, &["recognize"])
}

/// SIGKILL of one of two worker processes while it holds read, unacked entries: the survivor
/// claims them, and every entry ends as an event; none is lost and none is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_worker_process_loses_nothing() {
    let Setup { redis, dir, config_path, config: _, bus: _bus, mut faces } = setup(&PEOPLE).await;
    let mut victim = worker_process(&dir, "victim", &config_path);
    let mut survivor = worker_process(&dir, "survivor", &config_path);
    let mut ids = HashSet::new();
    for (i, (_, crop)) in probes(&mut faces, 10).iter().enumerate() {
        let group = if i.is_multiple_of(2) { "g1" } else { "g2" };
        ids.insert(add(&redis, &support::faces::entry(crop, "cam1", group, i as u64)));
    }
    // Kill one worker as soon as work is flowing: it dies holding a read, unacked batch.
    wait_until(Duration::from_secs(60), "the first events", || events(&redis).len() >= 5);
    let victim_tag = format!("-{}-", victim.pid());
    victim.kill(); // SIGKILL
    // Its consumers hold read, unacked entries: the case recovery exists for.
    let mut held = HashSet::new();
    for g in ["g1", "g2"] {
        // (id, consumer, idle ms, deliveries) of every pending entry.
        let pending: Vec<(String, String, i64, i64)> = redis.query(
            redis::cmd("XPENDING")
                .arg(format!("{PREFIX}:{{{g}}}:faces"))
                .arg("recognizers")
                .arg("-")
                .arg("+")
                .arg(1000),
        );
        held.extend(
            pending.into_iter().filter(|p| p.1.contains(&victim_tag)).map(|p| format!("{g}:{}", p.0)),
        );
    }
    assert!(!held.is_empty(), "the killed worker held no pending entries; the test proves nothing");

    let accounted = || {
        let mut seen: HashSet<String> = events(&redis).into_iter().map(|e| e.id).collect();
        for g in ["g1", "g2"] {
            seen.extend(dead_letters(&redis, g).into_iter().map(|(id, _)| id));
        }
        seen
    };
    wait_until(Duration::from_secs(120), "every entry to end as an event or a dead letter", || {
        accounted() == ids
    });
    survivor.kill();
    // Recovered, not given up on: the survivor claims the killed worker's entries and recognises
    // them. (Every entry is a good crop, so no dead letter is right for any of them.)
    let dead: Vec<(String, String)> = ["g1", "g2"].iter().flat_map(|g| dead_letters(&redis, g)).collect();
    let held_dead: Vec<&(String, String)> = dead.iter().filter(|(id, _)| held.contains(id)).collect();
    assert!(held_dead.is_empty(), "entries the killed worker held were dead-lettered: {held_dead:?}");
    assert!(dead.is_empty(), "good crops were dead-lettered: {dead:?}");
    let events = events(&redis);
    let recognised: HashSet<String> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(
        recognised,
        ids,
        "every entry, the {} the killed worker held included, is an event",
        held.len()
    );
    let mut by_id: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in &events {
        by_id.entry(e.id.as_str()).or_default().push(e);
    }
    // A duplicate (recognised by the victim, not acked, claimed and recognised again) carries
    // the same id and the same answer.
    for (id, dupes) in &by_id {
        let people: HashSet<_> = dupes.iter().map(|e| e.person.clone()).collect();
        assert_eq!(people.len(), 1, "{id}: duplicates disagree: {dupes:?}");
    }
    eprintln!(
        "{} entries, {} held by the killed worker, {} events, {} duplicates",
        ids.len(),
        held.len(),
        events.len(),
        events.len() - by_id.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_from_replays_then_follows_without_gap_or_duplicate() {
    use std::io::{BufRead, BufReader};
    let Setup { redis, dir: _dir, config_path, config, bus, mut faces } = setup(&PEOPLE[..2]).await;
    let crops = faces.crops("cage2_crop.jpg", 9);
    let (token, tracker) = start_workers(&config, &bus);
    for (i, c) in crops[..6].iter().enumerate() {
        add(&redis, &support::faces::entry(c, "cam1", "g1", i as u64));
    }
    wait_until(Duration::from_secs(60), "6 events", || events(&redis).len() == 6);

    let redeye = |args: &[&str]| {
        redeye_command(&config_path).arg("subscribe").args(args).stdout(Stdio::piped()).spawn().unwrap()
    };
    let mut replay = redeye(&["--from", "0", "--count", "9", "--kind", "face"]);
    let live = redeye(&["--camera", "cam2", "--count", "3", "--kind", "face"]);
    let mut replay_out = BufReader::new(replay.stdout.take().unwrap());
    // The replay prints the six past events before any new one exists.
    let mut lines = Vec::new();
    for _ in 0..6 {
        let mut line = String::new();
        replay_out.read_line(&mut line).unwrap();
        lines.push(line);
    }
    std::thread::sleep(Duration::from_millis(500)); // let the live subscriber subscribe
    for (i, c) in crops[6..].iter().enumerate() {
        add(&redis, &support::faces::entry(c, "cam2", "g2", 100 + i as u64));
    }
    for line in replay_out.lines() {
        lines.push(line.unwrap());
    }
    assert!(replay.wait().unwrap().success());
    let got: Vec<Event> = lines.iter().map(|l| serde_json::from_str(l.trim()).unwrap()).collect();
    stop(token, tracker).await;
    let all = events(&redis);
    assert_eq!(all.len(), 9);
    assert_eq!(got, all, "replay then follow gives exactly the stream, in order");

    let live_out = live.wait_with_output().unwrap();
    assert!(live_out.status.success());
    let live_events: Vec<Event> = String::from_utf8(live_out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(live_events, all[6..].to_vec(), "the live subscriber sees the new cam2 events only");
}
