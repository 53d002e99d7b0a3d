//! Distributed deployments, everything on loopback and started here: a 3-master Redis Cluster
//! with separate ingest and recognition processes, two named standalone nodes with camera groups
//! pinned to them, and a Sentinel failover under a running worker.
//!
//! Each test checks what crosses Redis by id: a faces stream entry `<id>` of group `g` becomes
//! the event `g:<id>`; cache hits at ingest have `cache:` ids and add no entry.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redeye::instrument::unix_millis;
use redeye::wire::Event;
use support::clips;
use support::config::{Camera, Group, TestConfig};
use support::faces::Faces;
use support::process::{Process, enroll};
use support::redis::{RedisCluster, RedisServer};
use support::wait_until;

const PREFIX: &str = "dt";
const EVENTS: &str = "dt:events";

fn faces_key(group: &str) -> String {
    format!("{PREFIX}:{{{group}}}:faces")
}

fn dead_key(group: &str) -> String {
    format!("{PREFIX}:{{{group}}}:dead")
}

/// The tests' base config, with no topology yet: a short worker block time, a claim time longer
/// than any test (nothing crashes here except Redis), the repository's models.
fn config() -> TestConfig {
    TestConfig::new(PREFIX).redis_key("cache_ttl_secs", 600).worker("batch", 8).worker("claim_idle_ms", 20000)
}

/// A `[[group]]` with one file camera replaying `clip` (looping, at native pace).
fn file_group(name: &str, camera: &str, clip: &Path, fps: f64) -> Group {
    Group::new(name).camera(Camera::file(camera, clip).set("fps", fps))
}

type Fields = HashMap<String, Vec<u8>>;

fn xlen(server: &RedisServer, key: &str) -> usize {
    server.query(redis::cmd("XLEN").arg(key))
}

/// Entries ever added to the stream `key` (`XINFO STREAM` `entries-added`): finished entries
/// are deleted on ack, so this, not the length, is what ingest handed off.
/// 0 while the stream does not exist.
fn entries_added(server: &RedisServer, key: &str) -> usize {
    let info: redis::RedisResult<HashMap<String, redis::Value>> =
        redis::cmd("XINFO").arg("STREAM").arg(key).query(&mut server.connection());
    let info = match info {
        Ok(info) => info,
        Err(e) if e.to_string().contains("no such key") => return 0,
        Err(e) => panic!("XINFO STREAM {key}: {e}"),
    };
    match info.get("entries-added") {
        Some(redis::Value::Int(n)) => *n as usize,
        other => panic!("XINFO STREAM {key}: entries-added is {other:?}"),
    }
}

/// Worker events (not cache hits) of `group`.
fn recognised(events: &[Event], group: &str) -> usize {
    events.iter().filter(|e| !e.cached && e.group == group).count()
}

/// The events stream on `server`.
fn events(server: &RedisServer) -> Vec<Event> {
    let rows: Vec<(String, Fields)> = server.query(redis::cmd("XRANGE").arg(EVENTS).arg("-").arg("+"));
    rows.into_iter().map(|(_, f)| serde_json::from_slice(&f["event"]).expect("event JSON")).collect()
}

/// The keys `server` itself holds (on a Cluster node: its own slots only).
fn keys_on(server: &RedisServer, pattern: &str) -> BTreeSet<String> {
    server.query(redis::cmd("KEYS").arg(pattern))
}

fn text(fields: &Fields, name: &str) -> String {
    String::from_utf8_lossy(fields.get(name).map_or(&[][..], |v| v)).into_owned()
}

/// Entries of `group`'s faces stream that are delivered and not acked (`XPENDING` summary).
fn pending(server: &RedisServer, group: &str) -> i64 {
    let summary: Vec<redis::Value> =
        server.query(redis::cmd("XPENDING").arg(faces_key(group)).arg("recognizers"));
    match summary[0] {
        redis::Value::Int(n) => n,
        ref other => panic!("XPENDING summary: {other:?}"),
    }
}

/// A pub/sub subscriber to the events channel on one server, on a thread of its own.
struct Subscriber {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<String>>,
}

impl Subscriber {
    /// Returns once the server has confirmed the subscription.
    fn start(server: &RedisServer) -> Subscriber {
        let mut conn = server.connection();
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut pubsub = conn.as_pubsub();
            pubsub.subscribe(EVENTS).expect("SUBSCRIBE");
            pubsub.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            ready_tx.send(()).unwrap();
            let mut ids = Vec::new();
            while !stopping.load(Ordering::Relaxed) {
                match pubsub.get_message() {
                    Ok(msg) => {
                        let event: Event =
                            serde_json::from_slice(msg.get_payload_bytes()).expect("event JSON");
                        ids.push(event.id);
                    }
                    Err(e) if e.is_timeout() => {}
                    Err(e) => panic!("subscriber: {e}"),
                }
            }
            ids
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("subscribed");
        Subscriber { stop, thread }
    }

    /// Every event id received, in order.
    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("subscriber thread")
    }
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// Two `redeye ingest --group` processes (one per group) and two `redeye recognize` processes
/// over a 3-master Cluster: every faces stream entry becomes exactly one event with its id, each
/// key sits on the master its slot says, and a subscriber on any master sees every event.
#[test]
fn cluster_with_two_ingest_and_two_recognize_processes_recognize_every_entry_exactly_once() {
    let started = Instant::now();
    let cluster = RedisCluster::start(3);
    let node_of = |key: &str| cluster.node_for_key(key);
    // Two groups whose hash tags land on different masters.
    let candidates = ["lobby", "garage", "entrance", "food-court", "atrium", "parking", "roof"];
    let ga = candidates[0];
    let gb = *candidates[1..]
        .iter()
        .find(|g| node_of(&faces_key(g)) != node_of(&faces_key(ga)))
        .expect("two groups on different masters");
    let (node_a, node_b) = (node_of(&faces_key(ga)), node_of(&faces_key(gb)));
    let events_node = node_of(EVENTS);

    let dir = tempfile::tempdir().unwrap();
    let (vga, short) = (clips::clip(&clips::vga()), clips::clip(&clips::short()));
    // Frame level: every crop is an entry, recognised exactly once.
    let config = config()
        .untracked()
        .redis_key("cluster", cluster.seeds())
        .group(file_group(ga, "door", &vga, 4.0))
        .group(file_group(gb, "ramp", &short, 4.0))
        .write(dir.path());
    enroll(&config, "Barack Obama", "obama2.jpg");
    enroll(&config, "Nicolas Cage", "cage2_crop.jpg");

    let subscribers: Vec<Subscriber> = cluster.nodes().iter().map(Subscriber::start).collect();
    let mut workers = [
        Process::redeye(dir.path(), "recognize-1", &config, &["recognize"]),
        Process::redeye(dir.path(), "recognize-2", &config, &["recognize"]),
    ];
    let mut ingests = [
        Process::redeye(dir.path(), "ingest-a", &config, &["ingest", "--group", ga]),
        Process::redeye(dir.path(), "ingest-b", &config, &["ingest", "--group", gb]),
    ];
    let (stream_a, stream_b) = (&cluster.nodes()[node_a], &cluster.nodes()[node_b]);
    // Until the short clip has looped into a cache hit (a GET routed by content).
    let on_events = &cluster.nodes()[events_node];
    wait_until(Duration::from_secs(45), "faces through both groups' streams and a cache hit", || {
        let events = events(on_events);
        entries_added(stream_a, &faces_key(ga)) >= 20
            && entries_added(stream_b, &faces_key(gb)) >= 10
            && recognised(&events, ga) >= 1
            && recognised(&events, gb) >= 1
            && events.iter().any(|e| e.cached)
    });

    // Sources first; then the workers finish what is on the streams.
    for ingest in &mut ingests {
        ingest.terminate(Duration::from_secs(15));
    }
    // An entry is deleted when it is finished: empty streams with nothing pending are drained.
    let added = entries_added(stream_a, &faces_key(ga)) + entries_added(stream_b, &faces_key(gb));
    wait_until(Duration::from_secs(30), "the workers to drain both streams", || {
        xlen(stream_a, &faces_key(ga)) == 0
            && xlen(stream_b, &faces_key(gb)) == 0
            && pending(stream_a, ga) == 0
            && pending(stream_b, gb) == 0
    });
    for worker in &mut workers {
        worker.terminate(Duration::from_secs(15));
    }
    std::thread::sleep(Duration::from_millis(300)); // the last messages reach the subscribers
    let heard: Vec<Vec<String>> = subscribers.into_iter().map(Subscriber::finish).collect();

    // Every entry, by id, exactly once; nothing else from the workers.
    let events = events(on_events);
    let mut by_id: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in events.iter().filter(|e| !e.cached) {
        by_id.entry(e.id.as_str()).or_default().push(e);
    }
    for (id, got) in &by_id {
        assert_eq!(got.len(), 1, "entry {id} has {} events", got.len());
        assert!(id.starts_with(&format!("{}:", got[0].group)), "{id} is in {}'s stream", got[0].group);
    }
    assert_eq!(by_id.len(), added, "one worker event per entry ever added");
    let cached: Vec<&Event> = events.iter().filter(|e| e.cached).collect();
    let entry_md5s: BTreeSet<String> = by_id.values().map(|e| e[0].md5.clone()).collect();
    for e in &cached {
        assert!(e.id.starts_with("cache:"), "{}", e.id);
        assert!(entry_md5s.contains(&e.md5), "a cache hit repeats a recognised crop: {}", e.id);
    }
    let named: BTreeSet<&str> =
        events.iter().filter_map(|e| e.person.as_ref()).map(|p| p.id.as_str()).collect();
    assert!(named.contains("barack-obama") && named.contains("nicolas-cage"), "named {named:?}");

    // Placement: each key on exactly the master its slot says; a group's keys on one master.
    let mut holders: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, node) in cluster.nodes().iter().enumerate() {
        for key in keys_on(node, "*") {
            holders.entry(key).or_default().push(i);
        }
    }
    for (key, nodes) in &holders {
        assert_eq!(nodes, &vec![node_of(key)], "{key} is on the master its slot names, only");
    }
    assert_eq!(holders[&faces_key(ga)], vec![node_a]);
    assert_eq!(holders[&faces_key(gb)], vec![node_b]);
    assert_ne!(node_a, node_b);
    assert_eq!(holders[EVENTS], vec![events_node]);
    let gallery_nodes: BTreeSet<usize> =
        holders.iter().filter(|(k, _)| k.contains("{gallery}")).map(|(_, n)| n[0]).collect();
    assert_eq!(gallery_nodes.len(), 1, "the gallery is one slot");
    // Cache keys: one per distinct crop recognised, spread over the masters by content.
    let mut image_nodes: BTreeMap<usize, usize> = BTreeMap::new();
    let mut image_md5s = BTreeSet::new();
    for (key, nodes) in &holders {
        if let Some(md5) = key.strip_prefix("image:") {
            image_md5s.insert(md5.to_owned());
            *image_nodes.entry(nodes[0]).or_default() += 1;
        }
    }
    assert_eq!(image_md5s, entry_md5s, "every recognised crop is cached under its md5");
    assert!(image_nodes.len() >= 2, "image keys spread over the masters: {image_nodes:?}");

    // PUBLISH on a Cluster reaches every master: each subscriber heard every event.
    let all_ids = sorted(events.iter().map(|e| e.id.clone()).collect());
    for (i, ids) in heard.into_iter().enumerate() {
        assert_eq!(sorted(ids), all_ids, "subscriber on master {i}");
    }
    eprintln!(
        "cluster: {} entries ({ga} on master {node_a}, {gb} on master {node_b}), {} worker events, {} cache hits, \
         image keys per master {image_nodes:?}, events on master {events_node}; {:.1} s",
        added,
        by_id.len(),
        cached.len(),
        started.elapsed().as_secs_f64()
    );
}

/// `redeye run` over two standalone servers with groups pinned (`g1` on `a`, `g2` on `b`,
/// shared node `a`): each group's faces stream, dead letters and cache stay on its node; the
/// gallery and the events are on `a`.
#[test]
fn named_nodes_keep_each_groups_stream_dead_letters_and_cache_on_its_node() {
    let started = Instant::now();
    let a = RedisServer::start();
    let b = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // Different clips, so the two groups' crops (and cache keys) differ.
    let (vga, short) = (clips::clip(&clips::vga()), clips::clip(&clips::short()));
    let config = config()
        .untracked()
        .redis_key("shared_node", "a")
        .node("a", &a)
        .node("b", &b)
        .group(file_group("g1", "cam1", &vga, 4.0).node("a"))
        .group(file_group("g2", "cam2", &short, 4.0).node("b"))
        .write(dir.path());
    enroll(&config, "Barack Obama", "obama2.jpg");
    // One poison entry per group, on its node, for the dead letters.
    let poison = |server: &RedisServer, group: &str| -> String {
        server.query(redis::cmd("XADD").arg(faces_key(group)).arg("*").arg("md5").arg("not-a-crop"))
    };
    let (poison1, poison2) = (poison(&a, "g1"), poison(&b, "g2"));

    let mut run = Process::redeye(dir.path(), "run", &config, &["run"]);
    // The short clip loops every 1.6 s, so g2 soon sees crops again: cache hits, read on b.
    wait_until(Duration::from_secs(45), "faces, dead letters, events and cache hits for both groups", || {
        let events = events(&a);
        let groups_seen: HashSet<&str> = events.iter().map(|e| e.group.as_str()).collect();
        recognised(&events, "g1") >= 8
            && recognised(&events, "g2") >= 5
            && xlen(&a, &dead_key("g1")) >= 1
            && xlen(&b, &dead_key("g2")) >= 1
            && groups_seen.len() == 2
            && events.iter().any(|e| e.cached && e.group == "g2")
    });
    run.terminate(Duration::from_secs(20));

    // b holds g2's stream, dead letters and cache, and nothing else.
    let events = events(&a);
    let md5s = |group: &str| -> BTreeSet<String> {
        events.iter().filter(|e| !e.cached && e.group == group).map(|e| e.md5.clone()).collect()
    };
    let (md5s_1, md5s_2) = (md5s("g1"), md5s("g2"));
    assert!(md5s_1.is_disjoint(&md5s_2), "the two clips give different crops");
    let cached_on = |server: &RedisServer| -> BTreeSet<String> {
        keys_on(server, "image:*").iter().map(|k| k["image:".len()..].to_owned()).collect()
    };
    let (cache_a, cache_b) = (cached_on(&a), cached_on(&b));
    assert!(!cache_a.is_empty() && cache_a.is_subset(&md5s_1), "a caches g1's crops only: {cache_a:?}");
    assert!(!cache_b.is_empty() && cache_b.is_subset(&md5s_2), "b caches g2's crops only: {cache_b:?}");
    // The per-person index of cached results lives beside the results it points to, so that
    // `forget` finds them on each node (src/privacy/index.rs).
    let cache_index = format!("{PREFIX}:{{gallery}}:cached:");
    let others_on_b: Vec<String> = keys_on(&b, "*")
        .into_iter()
        .filter(|k| !k.starts_with("image:") && !k.starts_with(&cache_index))
        .filter(|k| *k != faces_key("g2") && *k != dead_key("g2"))
        .collect();
    assert!(others_on_b.is_empty(), "b holds only g2's keys, cache and cache index: {others_on_b:?}");
    for key in [faces_key("g2"), dead_key("g2")] {
        assert!(!keys_on(&a, &key).contains(&key), "{key} is not on a");
    }
    let on_a = keys_on(&a, "*");
    for key in [faces_key("g1"), dead_key("g1"), EVENTS.to_owned(), format!("{PREFIX}:{{gallery}}:people")] {
        assert!(on_a.contains(&key), "{key} on a: {on_a:?}");
    }

    // Dead letters: the poison entry, on its own group's node.
    for (server, group, poison_id) in [(&a, "g1", &poison1), (&b, "g2", &poison2)] {
        let dead: Vec<(String, Fields)> =
            server.query(redis::cmd("XRANGE").arg(dead_key(group)).arg("-").arg("+"));
        assert_eq!(dead.len(), 1, "{group}: {dead:?}");
        assert_eq!(&text(&dead[0].1, "original_id"), poison_id);
        assert!(text(&dead[0].1, "reason").contains("missing field"), "{}", text(&dead[0].1, "reason"));
    }

    // Events of both groups on a; each worker event is an entry of its group's node (finished
    // entries are deleted: their count is what the node's stream ever took), cached there.
    for e in &events {
        let cache = if e.group == "g1" { &cache_a } else { &cache_b };
        assert!(cache.contains(&e.md5), "{} was cached on, or read from, {}'s node", e.id, e.group);
        assert!(e.cached || e.id.starts_with(&format!("{}:", e.group)), "{}", e.id);
    }
    for (server, group) in [(&a, "g1"), (&b, "g2")] {
        let entries = entries_added(server, &faces_key(group));
        assert!(recognised(&events, group) <= entries, "{group}: more worker events than entries");
    }
    eprintln!(
        "named nodes: a holds {} g1 entries and {} cache keys, b holds {} g2 entries and {} cache keys; \
         {} events on a ({} cached); {:.1} s",
        md5s_1.len(),
        cache_a.len(),
        md5s_2.len(),
        cache_b.len(),
        events.len(),
        events.iter().filter(|e| e.cached).count(),
        started.elapsed().as_secs_f64()
    );
}

const MASTER_NAME: &str = "dtmaster";

/// A faces stream entry's fields, as ingest writes them.
type EntryFields = Vec<(&'static str, Vec<u8>)>;

/// XADDs a faces entry to `g1`'s stream; returns its id.
fn xadd(conn: &mut redis::Connection, fields: &EntryFields) -> redis::RedisResult<String> {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(faces_key("g1")).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(v.as_slice());
    }
    cmd.query(conn)
}

/// The master address a sentinel names now.
fn sentinel_master_port(sentinel: &RedisServer) -> Option<u16> {
    let addr: Option<Vec<String>> =
        sentinel.query(redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(MASTER_NAME));
    addr.and_then(|a| a.get(1)?.parse().ok())
}

/// A master, its replica and three sentinels (quorum 2) under two `redeye recognize`
/// processes fed with crops; the master is SIGKILLed mid-run. Sentinel promotes the replica,
/// the workers follow it, and finish the entries that reached it; crops added after the failover
/// all become events. Entries acknowledged by the old master but not yet replicated are lost:
/// the test counts them (asynchronous replication makes no promise there).
#[test]
fn sentinel_failover_mid_run_the_workers_follow_the_promoted_replica() {
    let started = Instant::now();
    let mut master = RedisServer::start();
    let replica = RedisServer::start_replica_of(&master);
    replica.wait_replica_synced();
    let sentinels: Vec<RedisServer> =
        (0..3).map(|_| RedisServer::start_sentinel_with_quorum(&master, MASTER_NAME, 2)).collect();
    wait_until(Duration::from_secs(20), "the sentinels to find each other and the replica", || {
        sentinels.iter().all(|s| {
            let info: HashMap<String, String> =
                s.query(redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME));
            info.get("num-other-sentinels").map(String::as_str) == Some("2")
                && info.get("num-slaves").map(String::as_str) == Some("1")
                && info.get("quorum").map(String::as_str) == Some("2")
        })
    });

    let dir = tempfile::tempdir().unwrap();
    let config = config()
        .sentinel(MASTER_NAME, &sentinels)
        .group(Group::new("g1").camera(Camera::unused("cam1")))
        .write(dir.path());
    let mut faces = Faces::load();
    let crops = [faces.crops("obama2.jpg", 10), faces.crops("cage2_crop.jpg", 10)].concat();
    let fields: Arc<Vec<EntryFields>> = Arc::new(
        crops
            .iter()
            .enumerate()
            .map(|(i, c)| support::faces::entry(c, "cam1", "g1", i as u64).to_fields())
            .collect(),
    );

    let mut workers = [
        Process::redeye(dir.path(), "recognize-1", &config, &["recognize"]),
        Process::redeye(dir.path(), "recognize-2", &config, &["recognize"]),
    ];
    // A writer appends a crop every 5 ms to the master, faster than two workers on two cores
    // recognise them, until the master dies under it; it returns the ids the master accepted.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, mut conn, fields) = (stop.clone(), master.connection(), fields.clone());
        std::thread::spawn(move || {
            let mut ids = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match xadd(&mut conn, &fields[i % fields.len()]) {
                    Ok(id) => ids.push(format!("g1:{id}")),
                    Err(_) => break, // the master is gone
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            ids
        })
    };
    wait_until(Duration::from_secs(30), "the first 30 events on the master", || events(&master).len() >= 30);
    let kill_ms = unix_millis();
    master.stop(); // SIGKILL, mid-write and mid-recognition
    let killed = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let before_kill: Vec<String> = writer.join().expect("writer");

    wait_until(Duration::from_secs(30), "Sentinel to promote the replica", || {
        sentinels.iter().all(|s| sentinel_master_port(s) == Some(replica.port()))
    });
    let failover = killed.elapsed();
    let role: Vec<redis::Value> = replica.query(&redis::cmd("ROLE"));
    assert_eq!(role[0], redis::Value::BulkString(b"master".to_vec()), "the replica is the master now");

    // New work after the failover: every crop becomes exactly one event.
    let mut conn = replica.connection();
    let after: Vec<String> = (0..20)
        .map(|i| format!("g1:{}", xadd(&mut conn, &fields[i]).expect("XADD to the new master")))
        .collect();
    // A finished entry is deleted: an empty stream with nothing pending is all recognised.
    wait_until(
        Duration::from_secs(40),
        "every entry on the promoted replica, and every new one, to become an event",
        || xlen(&replica, &faces_key("g1")) == 0 && pending(&replica, "g1") == 0,
    );
    for worker in &mut workers {
        worker.terminate(Duration::from_secs(15));
    }

    let events = events(&replica);
    let mut by_id: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in &events {
        by_id.entry(e.id.as_str()).or_default().push(e);
    }
    for id in &after {
        let got = by_id.get(id.as_str()).map_or(0, Vec::len);
        assert_eq!(got, 1, "new entry {id} after the failover has {got} events");
    }
    // Every entry the replica holds was recognised there, or before the kill with its event
    // replicated; an entry without an event was lost in the replication window.
    let lost: Vec<&String> = before_kill.iter().filter(|id| !by_id.contains_key(id.as_str())).collect();
    let survived: Vec<&String> = before_kill.iter().filter(|id| by_id.contains_key(id.as_str())).collect();
    // Entries the master stored but whose reply the writer never got (killed in between).
    let known: HashSet<&str> = before_kill.iter().chain(&after).map(String::as_str).collect();
    let in_flight = by_id.keys().filter(|id| !known.contains(*id)).count();
    let first_event = |id: &str| by_id[id].iter().map(|e| e.event_ts).min().expect("an event");
    let done_before = survived.iter().filter(|id| first_event(id) < kill_ms).count();
    let recovered = survived.len() - done_before;
    let duplicates = events.len() - by_id.len();
    let resumed_ms =
        events.iter().map(|e| e.event_ts).filter(|&t| t >= kill_ms).min().expect("events after the kill")
            - kill_ms;
    let switches: usize = workers
        .iter()
        .map(|w| w.log_text().matches("Switched to the master named by Sentinel").count())
        .sum();
    eprintln!(
        "sentinel: {} entries accepted by the master before SIGKILL: {done_before} recognised before the kill \
         (events replicated), {recovered} recovered and recognised on the promoted replica, {} lost in the \
         asynchronous replication window; {in_flight} written but unacknowledged at the kill; {} new entries \
         after the failover, all recognised; {duplicates} duplicate events (same id); failover took {:.1} s, first event on the new master {:.1} s after the kill; \
         {switches} shared-connection switches logged; {:.1} s in all",
        before_kill.len(),
        lost.len(),
        after.len(),
        failover.as_secs_f64(),
        resumed_ms as f64 / 1000.0,
        started.elapsed().as_secs_f64()
    );
    assert!(survived.len() + lost.len() == before_kill.len());
    // Duplicates keep their id and their answer.
    for (id, dupes) in &by_id {
        let people: HashSet<_> = dupes.iter().map(|e| e.person.clone()).collect();
        assert_eq!(people.len(), 1, "{id}: duplicates disagree");
    }
}
