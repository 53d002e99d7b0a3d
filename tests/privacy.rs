//! Privacy (issue 16) against real Redis: `forget` leaves nothing naming a person after a real
//! clip through `redeye run` and an `identify`; finished faces entries are gone; `audit` passes
//! on a live store and fails on a biometric key without a TTL; forget and audit on a Cluster.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use redeye::bus::streams::StreamCap;
use redeye::bus::{Bus, Credentials, Keys, Topology};
use redeye::config::Config;
use redeye::privacy::{audit, forget};
use redeye::recognition::{CachedResult, FaceResult, Finisher};
use redeye::recognize::gallery;
use redeye::visit::{AnyEvent, VisitKind};
use serde_json::Value as Json;
use support::clips;
use support::config::{Camera, Group, TestConfig};
use support::process::{Process, enroll, run_redeye};
use support::redis::{RedisCluster, RedisServer};
use support::wait_until;

const PREFIX: &str = "pv";
const FRANCK: &str = "franck";

/// Every key of `server` with its whole content (strings, hash fields and values, set and
/// sorted-set members, list items, stream ids and fields) as bytes.
fn dump(server: &RedisServer) -> Vec<(String, Vec<u8>)> {
    let keys: Vec<String> = server.query(redis::cmd("KEYS").arg("*"));
    let mut out = Vec::new();
    for key in keys {
        let kind: String = server.query(redis::cmd("TYPE").arg(&key));
        let parts: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![server.query(redis::cmd("GET").arg(&key))],
            "hash" => server.query(redis::cmd("HGETALL").arg(&key)),
            "set" => server.query(redis::cmd("SMEMBERS").arg(&key)),
            "zset" => server.query(redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1)),
            "list" => server.query(redis::cmd("LRANGE").arg(&key).arg(0).arg(-1)),
            "stream" => {
                let rows: Vec<(String, Vec<Vec<u8>>)> =
                    server.query(redis::cmd("XRANGE").arg(&key).arg("-").arg("+"));
                rows.into_iter().flat_map(|(id, f)| std::iter::once(id.into_bytes()).chain(f)).collect()
            }
            other => panic!("{key} has unexpected type {other}"),
        };
        out.push((key, parts.concat()));
    }
    out
}

/// The keys of `servers` whose name or content holds `needle`.
fn naming(servers: &[&RedisServer], needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for server in servers {
        for (key, content) in dump(server) {
            if contains(key.as_bytes(), needle) || contains(&content, needle) {
                hits.push(key);
            }
        }
    }
    hits
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn visit_events(redis: &RedisServer) -> Vec<AnyEvent> {
    let rows: Vec<(String, HashMap<String, Vec<u8>>)> =
        redis.query(redis::cmd("XRANGE").arg(format!("{PREFIX}:events")).arg("-").arg("+"));
    rows.into_iter().map(|(_, f)| AnyEvent::from_json(&f["event"]).expect("event parses")).collect()
}

fn audit_json(config: &Path) -> (bool, Json) {
    let out = run_redeye(config, &["audit", "--json"]);
    let report: Json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("audit --json: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["ok"].as_bool(), Some(out.status.success()), "{report:#}");
    (out.status.success(), report)
}

/// Franck enrolled from one photo, then a real clip of him through `redeye run` (per-face
/// events on, visitors for known people on) and `identify` of another photo of him: results,
/// track records, events and a visitor name him. `audit` passes on that live store; the faces
/// stream holds no acknowledged entry; after `forget franck` no key's name or content holds his
/// id or his embedding, and the linked visitor is gone.
#[test]
fn forget_leaves_nothing_naming_the_person_after_a_run_and_identify() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let clip = clips::video_clip(&clips::franck_gap());
    let config = TestConfig::new(PREFIX)
        .redis(&redis)
        .set("events", "faces", true)
        .set("visitors", "for_known", true)
        .group(Group::new("lobby").camera(Camera::file("door", &clip).set("fps", 2.0)))
        .write(dir.path());
    enroll(&config, FRANCK, "franck_02045.jpg");
    let embedding: Vec<u8> = redis.query(redis::cmd("GET").arg(format!("{PREFIX}:{{gallery}}:emb:{FRANCK}")));
    assert!(!embedding.is_empty());

    let mut run = Process::redeye(dir.path(), "run", &config, &["run"]);
    let names_franck = |e: &AnyEvent| match e {
        AnyEvent::Visit(v) => v.person.as_ref().is_some_and(|p| p.id == FRANCK),
        AnyEvent::Face(f) => f.person.as_ref().is_some_and(|p| p.id == FRANCK),
    };
    wait_until(Duration::from_secs(90), "Franck arrived and left", || {
        visit_events(&redis)
            .iter()
            .any(|e| matches!(e, AnyEvent::Visit(v) if v.kind == VisitKind::Left && v.person.is_some()))
    });
    // A live store with his data in every family passes the audit.
    let (ok, report) = audit_json(&config);
    assert!(ok, "{report:#}");
    run.terminate(Duration::from_secs(20));

    // Finished entries are deleted when acknowledged: whatever is left in the faces stream is
    // pending or was never delivered (after the group's last delivered id).
    let faces = format!("{PREFIX}:{{lobby}}:faces");
    let groups: Vec<HashMap<String, redis::Value>> =
        redis.query(redis::cmd("XINFO").arg("GROUPS").arg(&faces));
    let last: String = redis::from_redis_value(groups[0]["last-delivered-id"].clone()).unwrap();
    let pending: Vec<(String, String, u64, u64)> =
        redis.query(redis::cmd("XPENDING").arg(&faces).arg("recognizers").arg("-").arg("+").arg(1000));
    let left: Vec<(String, Vec<Vec<u8>>)> = redis.query(redis::cmd("XRANGE").arg(&faces).arg("-").arg("+"));
    let acked: Vec<&String> = left
        .iter()
        .map(|(id, _)| id)
        .filter(|id| !pending.iter().any(|p| &p.0 == *id) && !after(id, &last))
        .collect();
    assert!(acked.is_empty(), "acknowledged entries still in {faces}: {acked:?}");

    // The workers stopped with `run`: recognised in this process.
    let out =
        run_redeye(&config, &["identify", "--local", support::photo("franck_02221.jpg").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"id\":\"franck\""), "{out:?}");

    let before = naming(&[&redis], FRANCK.as_bytes());
    assert!(before.iter().any(|k| k.starts_with("image:")), "a cached result names him: {before:?}");
    assert!(before.iter().any(|k| k.contains(":track:")), "a track record names him: {before:?}");
    assert!(visit_events(&redis).iter().any(names_franck));
    let visitors: Vec<String> = visit_events(&redis)
        .iter()
        .filter_map(|e| match e {
            AnyEvent::Visit(v) if names_franck(e) => v.visitor.clone(),
            _ => None,
        })
        .collect();
    assert!(!visitors.is_empty(), "for_known gives him a visitor");

    let out = run_redeye(&config, &["forget", FRANCK]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    for kind in [
        "gallery: record and embeddings removed",
        "cached results:",
        "track records:",
        "events:",
        "visitors:",
    ] {
        assert!(text.contains(kind), "forget prints `{kind}`: {text}");
    }
    for none in ["cached results: 0", "track records: 0", "events: 0", "visitors: 0"] {
        assert!(!text.contains(none), "{text}");
    }

    let after_forget = naming(&[&redis], FRANCK.as_bytes());
    assert!(after_forget.is_empty(), "still naming {FRANCK}: {after_forget:?}");
    assert!(naming(&[&redis], &embedding).is_empty(), "his embedding is still stored");
    assert!(!visit_events(&redis).iter().any(names_franck));
    for v in &visitors {
        assert!(
            naming(&[&redis], v.as_bytes()).iter().all(|k| !k.contains(":{visitors}:v:")),
            "visitor {v} kept"
        );
        let exists: u64 = redis.query(redis::cmd("EXISTS").arg(format!("{PREFIX}:{{visitors}}:v:{v}")));
        assert_eq!(exists, 0, "visitor {v} is deleted");
    }
    // Forgetting again finds nothing.
    let again = run_redeye(&config, &["forget", FRANCK]);
    assert!(!again.status.success(), "{again:?}");
}

/// Whether stream id `a` comes after `b`.
fn after(a: &str, b: &str) -> bool {
    let parse = |s: &str| {
        let (ms, seq) = s.split_once('-').unwrap();
        (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap())
    };
    parse(a) > parse(b)
}

/// A cached result written without a TTL (as an old version or another tool might), and an
/// events stream entry older than `[retention] events_secs`, each make `audit` fail and say why.
#[test]
fn audit_fails_on_a_biometric_key_without_a_ttl_or_past_its_retention() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new(PREFIX)
        .redis(&redis)
        .group(Group::new("lobby").camera(Camera::unused("door")))
        .write(dir.path());
    let _: () = redis.query(redis::cmd("SET").arg("image:0123").arg("{}").arg("EX").arg(600));
    let (ok, report) = audit_json(&config);
    assert!(ok, "{report:#}");

    let _: () = redis.query(redis::cmd("SET").arg("image:4567").arg(r#"{"faces":[{"person_id":"ann"}]}"#));
    let (ok, report) = audit_json(&config);
    assert!(!ok, "{report:#}");
    let problems = report["problems"].to_string();
    assert!(problems.contains("cache: 1 key(s) without a TTL, e.g. image:4567"), "{problems}");
    assert_eq!(report["problems"].as_array().unwrap().len(), 1, "only the missing TTL: {report:#}");
    let out = run_redeye(&config, &["audit"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("problem: cache: 1 key(s) without a TTL"), "{text}");
    let _: () = redis.query(redis::cmd("DEL").arg("image:4567"));

    let month_ago = redeye::instrument::unix_millis() - 31 * 86_400_000;
    let _: String = redis.query(
        redis::cmd("XADD")
            .arg(format!("{PREFIX}:events"))
            .arg(format!("{month_ago}-0"))
            .arg("event")
            .arg("{}"),
    );
    let (ok, report) = audit_json(&config);
    assert!(!ok, "{report:#}");
    assert!(report["problems"].to_string().contains("retention is 604800 s"), "{report:#}");
}

/// On a 3-master Cluster: results cached under many `image:<md5>` keys (spread over every
/// master), a track index and events naming Ann are all removed by `forget_everywhere`; the
/// audit scans every master (it finds a key without a TTL whichever slot it is on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_and_audit_reach_every_master_of_a_cluster() {
    let cluster = RedisCluster::start(3);
    let config = Config::default();
    let bus = Bus::connect(
        Topology::Cluster { seeds: cluster.seeds() },
        Credentials::none(),
        Keys::from_config(&config),
    )
    .await
    .expect("connect");
    let keys = bus.keys().clone();
    gallery::enroll(&mut bus.shared(), &keys, "Ann", "m", &[vec![0.5; 4]]).await.unwrap();
    let finisher = Finisher::new(bus.clone(), 600, StreamCap { maxlen: 1000, max_age_secs: 3600 });
    let face = |person: Option<&str>| FaceResult {
        bbox: None,
        person_id: person.map(str::to_owned),
        name: person.map(|_| "Ann".to_owned()),
        score: 0.9,
        rejected: None,
    };
    for i in 0..30 {
        let person = if i % 3 == 0 { None } else { Some("ann") };
        let result = CachedResult::for_crop("m", 1, face(person));
        finisher.cache(&mut bus.shared(), &format!("{i:032x}"), &result, &Default::default()).await.unwrap();
        finisher.publish(&serde_json::json!({"person": person}), person, &Default::default()).await.unwrap();
    }
    let servers: Vec<&RedisServer> = cluster.nodes().iter().collect();
    let image_keys_per_node: Vec<usize> =
        servers.iter().map(|s| s.query::<Vec<String>>(redis::cmd("KEYS").arg("image:*")).len()).collect();
    assert!(image_keys_per_node.iter().filter(|n| **n > 0).count() >= 2, "{image_keys_per_node:?}");

    let limits = audit::Limits::from_config(&config);
    let report = audit::audit(&bus, "image", &limits).await.unwrap();
    assert!(report.ok, "{report:#?}");
    let cache = report.families.iter().find(|f| f.family == "cache").unwrap();
    assert_eq!(cache.keys, 30, "every master scanned: {report:#?}");

    gallery::forget(&mut bus.shared(), &keys, "Ann").await.unwrap();
    let gone = forget::forget_everywhere(&bus, "ann", redeye::instrument::unix_millis()).await.unwrap();
    assert_eq!((gone.cached, gone.events), (20, 20), "{gone:?}");
    assert!(naming(&servers, b"ann").is_empty(), "{:?}", naming(&servers, b"ann"));
    let left: usize =
        servers.iter().map(|s| s.query::<Vec<String>>(redis::cmd("KEYS").arg("image:*")).len()).sum();
    assert_eq!(left, 10, "results naming nobody stay");

    // A key without a TTL on whichever master its slot is on.
    let mut conn = bus.shared();
    let _: () = redis::cmd("SET").arg("image:ffff").arg("{}").query_async(&mut conn).await.unwrap();
    let report = audit::audit(&bus, "image", &limits).await.unwrap();
    assert!(!report.ok && report.problems.iter().any(|p| p.contains("image:ffff")), "{report:#?}");
}

/// Events and dead letters are trimmed by age (`[retention]`) when an entry is appended, not
/// only by count: an entry older than the retention is gone after the next append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_dead_letters_are_trimmed_by_age_on_append() {
    use redeye::bus::{CONSUMER_GROUP, events, streams};
    let redis = RedisServer::start();
    let bus = Bus::connect(
        Topology::Single { url: redis.url() },
        Credentials::none(),
        Keys::from_config(&Config::default()),
    )
    .await
    .expect("connect");
    let keys = bus.keys().clone();
    let cap = StreamCap { maxlen: 1000, max_age_secs: 3600 };
    let old = format!("{}-0", redeye::instrument::unix_millis() - 2 * 3_600_000);
    let mut conn = bus.shared();
    let (faces, dead) = (keys.faces("g"), keys.dead("g"));
    for stream in [keys.events_stream(), dead.as_str()] {
        let _: String = redis.query(redis::cmd("XADD").arg(stream).arg(&old).arg("old").arg("1"));
    }
    events::publish(&mut conn, keys.events_channel(), keys.events_stream(), cap, b"{}").await.unwrap();
    streams::ensure_group(&mut conn, &faces, CONSUMER_GROUP).await.unwrap();
    let _: String = redis.query(redis::cmd("XADD").arg(&faces).arg("*").arg("crop").arg("x"));
    let entry = streams::read_group(&mut conn, &faces, CONSUMER_GROUP, "c", 1, 0).await.unwrap().remove(0);
    streams::dead_letter(&mut conn, &faces, CONSUMER_GROUP, &dead, cap, &entry, "test").await.unwrap();
    for stream in [keys.events_stream(), dead.as_str()] {
        let ids: Vec<(String, HashMap<String, String>)> =
            redis.query(redis::cmd("XRANGE").arg(stream).arg("-").arg("+"));
        assert_eq!(ids.len(), 1, "{stream}: {ids:?}");
        assert_ne!(ids[0].0, old, "{stream}: the old entry is trimmed");
    }
    assert_eq!(redis.query::<u64>(redis::cmd("XLEN").arg(&faces)), 0, "acked and deleted");
}

/// With named nodes, results cached on a group's node are indexed there and forgotten there;
/// events on the shared node too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_reaches_every_named_node() {
    let (core, edge) = (RedisServer::start(), RedisServer::start());
    let topology = Topology::Nodes {
        nodes: vec![("core".into(), core.url()), ("edge".into(), edge.url())],
        shared: "core".into(),
        group_node: HashMap::from([("lobby".to_owned(), "edge".to_owned())]),
    };
    let bus = Bus::connect(topology, Credentials::none(), Keys::from_config(&Config::default()))
        .await
        .expect("connect");
    let finisher = Finisher::new(bus.clone(), 600, StreamCap { maxlen: 1000, max_age_secs: 3600 });
    let face = FaceResult {
        bbox: None,
        person_id: Some("ann".into()),
        name: Some("Ann".into()),
        score: 0.9,
        rejected: None,
    };
    let result = CachedResult::for_crop("m", 1, face);
    finisher
        .cache(&mut bus.group("lobby"), &format!("{:032x}", 1), &result, &Default::default())
        .await
        .unwrap();
    finisher.cache(&mut bus.shared(), &format!("{:032x}", 2), &result, &Default::default()).await.unwrap();
    finisher.publish(&serde_json::json!({"person": "ann"}), Some("ann"), &Default::default()).await.unwrap();
    assert!(!naming(&[&edge], b"ann").is_empty() && !naming(&[&core], b"ann").is_empty());
    let gone = forget::forget_everywhere(&bus, "ann", redeye::instrument::unix_millis()).await.unwrap();
    assert_eq!((gone.cached, gone.events), (2, 1), "{gone:?}");
    assert!(naming(&[&core, &edge], b"ann").is_empty(), "{:?}", naming(&[&core, &edge], b"ann"));
}
