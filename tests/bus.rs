//! The Redis bus against real servers: every primitive on one server and on a 3-master Redis
//! Cluster (the same scenario function runs on both), plus the named-nodes layout, Sentinel,
//! configuration from the environment, TLS and reconnection.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use redeye::bus::{
    self, Bus, BusError, CONSUMER_GROUP, Credentials, Keys, RedisConn, StreamEntry, Topology, cache, events,
    streams::{self, StreamCap},
};
use redeye::config::{Config, GroupConfig, NodeConfig, REDIS_URL_ENV};
use serde::{Deserialize, Serialize};
use support::redis::{RedisCluster, RedisServer};

/// A bus over a fresh deployment; the servers live as long as the fixture.
struct Fixture {
    bus: Bus,
    deployment: Deployment,
}

enum Deployment {
    /// The server is only kept alive.
    Single {
        _server: RedisServer,
    },
    Cluster(RedisCluster),
}

impl Fixture {
    async fn single() -> Fixture {
        let server = RedisServer::start();
        let bus = connect(Topology::Single { url: server.url() }).await;
        Fixture { bus, deployment: Deployment::Single { _server: server } }
    }

    /// A 3-master cluster. The seeds are listed starting with a node that does not own the
    /// events channel's slot, so the subscription (first seed) and the publishes (routed by
    /// the channel's slot) are on different nodes.
    async fn cluster() -> Fixture {
        let cluster = RedisCluster::start(3);
        let first = cluster.node_not_for_key(default_keys().events_channel());
        let mut seeds = cluster.seeds();
        seeds.rotate_left(first);
        let bus = connect(Topology::Cluster { seeds }).await;
        Fixture { bus, deployment: Deployment::Cluster(cluster) }
    }

    fn keys(&self) -> &Keys {
        self.bus.keys()
    }
}

/// The DESIGN.md defaults: prefix `redeye`, `image:<md5>`, events on `redeye:events`.
fn default_keys() -> Keys {
    Keys::from_config(&Config::default())
}

async fn connect(topology: Topology) -> Bus {
    Bus::connect(topology, Credentials::none(), default_keys()).await.expect("connect")
}

/// Runs each scenario as two tests, `<scenario>::single` and `<scenario>::cluster`.
macro_rules! on_single_and_cluster {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn single() {
                super::$scenario(super::Fixture::single().await).await
            }
            #[tokio::test]
            async fn cluster() {
                super::$scenario(super::Fixture::cluster().await).await
            }
        }
    )*};
}

on_single_and_cluster!(
    capped_append,
    group_read_and_ack,
    claim_from_dead_consumer,
    dead_letter_keeps_fields,
    cache_with_ttl,
    publish_and_subscribe,
    events_replay,
);

/// Every byte value, as a stand-in for JPEG crop bytes.
fn binary() -> Vec<u8> {
    (0..=255u8).collect()
}

fn crop_fields(i: usize) -> Vec<(String, Vec<u8>)> {
    vec![("md5".into(), format!("{i:032x}").into_bytes()), ("crop".into(), binary())]
}

async fn append(conn: &mut RedisConn, key: &str, fields: &[(String, Vec<u8>)]) -> String {
    let pairs: Vec<(&str, &[u8])> = fields.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    streams::append_capped(conn, key, StreamCap::count(10_000), &pairs).await.expect("XADD")
}

async fn pending(conn: &mut RedisConn, key: &str) -> u64 {
    let groups = streams::group_info(conn, key).await.expect("XINFO GROUPS");
    groups.iter().find(|g| g.name == CONSUMER_GROUP).expect("our group").pending
}

async fn capped_append(f: Fixture) {
    let key = f.keys().faces("cap");
    let mut conn = f.bus.group("cap");
    let mut last = String::new();
    for i in 0..5000u32 {
        let id = streams::append_capped(&mut conn, &key, StreamCap::count(100), &[("n", &i.to_le_bytes())])
            .await
            .unwrap();
        assert!(id_key(&id) > id_key(&last), "ids increase: {last} then {id}");
        last = id;
    }
    // `MAXLEN ~` trims whole nodes (100 entries each by default): at least the cap is kept,
    // and at most about one node more.
    let len = streams::stream_len(&mut conn, &key).await.unwrap();
    assert!((100..=200).contains(&len), "length {len} after 5000 appends capped at ~100");
    let kept = events::read_range(&mut conn, &key, "0-0", 1000).await.unwrap();
    assert_eq!(kept.last().unwrap().id, last, "the newest entries are the ones kept");
}

/// `<ms>-<seq>` as numbers, for ordering.
fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or(("0", "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

async fn group_read_and_ack(f: Fixture) {
    let key = f.keys().faces("lobby");
    let mut conn = f.bus.group("lobby");
    assert!(streams::ensure_group(&mut conn, &key, CONSUMER_GROUP).await.unwrap(), "created");
    assert!(!streams::ensure_group(&mut conn, &key, CONSUMER_GROUP).await.unwrap(), "BUSYGROUP is fine");

    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(append(&mut conn, &key, &crop_fields(i)).await);
    }
    // A blocking read gets a connection of its own.
    let mut reader = f.bus.open_group("lobby").await.unwrap();
    let consumer = bus::consumer_name();
    let got = streams::read_group(&mut reader, &key, CONSUMER_GROUP, &consumer, 10, 500).await.unwrap();
    assert_eq!(got.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ids);
    assert_eq!(got[1].get("crop"), Some(&binary()[..]), "binary fields survive");
    assert_eq!(got[1].get_str("md5"), Some(format!("{:032x}", 1).as_str()));

    let info = streams::group_info(&mut conn, &key).await.unwrap();
    assert_eq!((info[0].pending, info[0].lag), (3, Some(0)), "{info:?}");
    assert_eq!(streams::ack(&mut conn, &key, CONSUMER_GROUP, &ids).await.unwrap(), 3);
    assert_eq!(pending(&mut conn, &key).await, 0);

    let started = Instant::now();
    let none = streams::read_group(&mut reader, &key, CONSUMER_GROUP, &consumer, 10, 200).await.unwrap();
    assert!(none.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(150), "the read blocked");
    assert!(streams::group_info(&mut conn, &f.keys().faces("nobody")).await.unwrap().is_empty());
}

async fn claim_from_dead_consumer(f: Fixture) {
    let key = f.keys().faces("dock");
    let mut conn = f.bus.group("dock");
    streams::ensure_group(&mut conn, &key, CONSUMER_GROUP).await.unwrap();
    let ids =
        vec![append(&mut conn, &key, &crop_fields(1)).await, append(&mut conn, &key, &crop_fields(2)).await];

    let (a, b) = (bus::consumer_name(), bus::consumer_name());
    let read = streams::read_group(&mut conn, &key, CONSUMER_GROUP, &a, 10, 0).await.unwrap();
    assert_eq!(read.len(), 2);
    // A dies without acking. Nothing is idle for 60 s yet...
    let early = streams::autoclaim(&mut conn, &key, CONSUMER_GROUP, &b, 60_000, "0-0", 10).await.unwrap();
    assert!(early.entries.is_empty());
    tokio::time::sleep(Duration::from_millis(60)).await;
    // ...but everything is idle for 50 ms.
    let claimed = streams::autoclaim(&mut conn, &key, CONSUMER_GROUP, &b, 50, "0-0", 10).await.unwrap();
    assert_eq!(claimed.entries, read, "B gets A's entries, fields included");
    assert_eq!(claimed.next_start, "0-0", "the whole pending list was scanned");
    assert!(claimed.deleted.is_empty());

    let counts = streams::delivery_counts(&mut conn, &key, CONSUMER_GROUP, &ids).await.unwrap();
    assert_eq!(counts, ids.iter().map(|id| (id.clone(), 2)).collect::<HashMap<_, _>>());
    streams::ack(&mut conn, &key, CONSUMER_GROUP, &ids).await.unwrap();
    let after = streams::delivery_counts(&mut conn, &key, CONSUMER_GROUP, &ids).await.unwrap();
    assert!(after.is_empty(), "acked entries are no longer pending: {after:?}");
}

async fn dead_letter_keeps_fields(f: Fixture) {
    let (key, dead) = (f.keys().faces("gate"), f.keys().dead("gate"));
    let mut conn = f.bus.group("gate");
    streams::ensure_group(&mut conn, &key, CONSUMER_GROUP).await.unwrap();
    let fields = crop_fields(7);
    let id = append(&mut conn, &key, &fields).await;
    let consumer = bus::consumer_name();
    let entry =
        streams::read_group(&mut conn, &key, CONSUMER_GROUP, &consumer, 1, 0).await.unwrap().remove(0);

    let reason = "embed: not a JPEG";
    streams::dead_letter(&mut conn, &key, CONSUMER_GROUP, &dead, StreamCap::count(1000), &entry, reason)
        .await
        .unwrap();
    assert_eq!(pending(&mut conn, &key).await, 0, "the source entry is acked");
    let letters = events::read_range(&mut conn, &dead, "0-0", 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    for (name, value) in &fields {
        assert_eq!(letter.get(name), Some(value.as_slice()), "field {name}");
    }
    assert_eq!(letter.get_str("reason"), Some(reason));
    assert_eq!(letter.get_str("original_id"), Some(id.as_str()));
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Result_ {
    person_id: Option<String>,
    score: f32,
    gallery_version: u64,
}

async fn cache_with_ttl(f: Fixture) {
    let keys = f.keys().clone();
    // Image keys have no hash tag and spread over the cluster; any group connection reaches
    // them (with named nodes, the group's node).
    let mut conn = f.bus.group("lobby");
    for i in 0..20 {
        let key = keys.image(&format!("{i:032x}"));
        cache::set_ex(&mut conn, &key, &binary(), 60).await.unwrap();
        assert_eq!(cache::get(&mut conn, &key).await.unwrap(), Some(binary()));
        let ttl = cache::ttl(&mut conn, &key).await.unwrap().flatten().expect("has a TTL");
        assert!((1..=60).contains(&ttl), "ttl {ttl}");
    }
    let json_key = keys.image("aa");
    let value = Result_ { person_id: Some("p1".into()), score: 0.5, gallery_version: 3 };
    cache::set_json(&mut conn, &json_key, &value, 60).await.unwrap();
    assert_eq!(cache::get_json::<Result_>(&mut conn, &json_key).await.unwrap(), Some(value));
    let err = cache::get_json::<Vec<u32>>(&mut conn, &json_key).await.unwrap_err();
    assert!(matches!(err, BusError::Json { .. }), "{err}");
    assert_eq!(cache::get(&mut conn, &keys.image("missing")).await.unwrap(), None);
    assert!(cache::set_ex(&mut conn, &json_key, b"x", 0).await.unwrap_err().is_fatal(), "TTL 0 refused");

    let short = keys.image("short");
    cache::set_ex(&mut conn, &short, b"x", 1).await.unwrap();
    let set_at = Instant::now();
    while cache::get(&mut conn, &short).await.unwrap().is_some() {
        assert!(set_at.elapsed() < Duration::from_secs(3), "a 1 s TTL expires");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(set_at.elapsed() >= Duration::from_millis(500), "not before its time");
}

async fn publish_and_subscribe(f: Fixture) {
    let keys = f.keys().clone();
    let channel = keys.events_channel();
    let other = format!("{}:other-channel", keys.prefix());
    let mut sub = f.bus.subscribe(&[channel, &other]).await.unwrap();
    if let Deployment::Cluster(cluster) = &f.deployment {
        // Prove the point of the test: the subscriber is on another node than the one the
        // bus publishes to (the channel's slot owner).
        let listening: Vec<usize> = (0..3)
            .filter(|&i| {
                let reply: Vec<(String, i64)> =
                    cluster.nodes()[i].query(redis::cmd("PUBSUB").arg("NUMSUB").arg(channel));
                reply[0].1 > 0
            })
            .collect();
        assert_eq!(listening.len(), 1, "one subscribed node");
        assert_ne!(listening[0], cluster.node_for_key(channel), "subscriber not on the publishing node");
    }
    let mut shared = f.bus.shared();
    let payload = br#"{"v":1,"id":"1-0","person":null}"#;
    events::publish(&mut shared, channel, keys.events_stream(), StreamCap::count(1000), payload)
        .await
        .unwrap();
    let msg = next(&mut sub).await;
    assert_eq!((msg.channel.as_str(), msg.payload.as_slice()), (channel, &payload[..]));

    // Published straight to each node: every one reaches the subscriber.
    if let Deployment::Cluster(cluster) = &f.deployment {
        for (i, node) in cluster.nodes().iter().enumerate() {
            let _: i64 = node.query(redis::cmd("PUBLISH").arg(&other).arg(i));
            let msg = next(&mut sub).await;
            assert_eq!((msg.channel, msg.payload), (other.clone(), i.to_string().into_bytes()));
        }
    }
}

async fn next(sub: &mut bus::Subscription) -> bus::Message {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a message within 5 s")
        .expect("the subscription is open")
        .expect("no error")
}

async fn events_replay(f: Fixture) {
    let keys = f.keys().clone();
    let mut shared = f.bus.shared();
    let mut ids = Vec::new();
    for i in 0..5 {
        let payload = format!(r#"{{"v":1,"n":{i}}}"#);
        ids.push(
            events::publish(
                &mut shared,
                keys.events_channel(),
                keys.events_stream(),
                StreamCap::count(1000),
                payload.as_bytes(),
            )
            .await
            .unwrap(),
        );
    }
    let first = events::read_range(&mut shared, keys.events_stream(), "0-0", 2).await.unwrap();
    assert_eq!(first.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), &ids[..2]);
    let rest = events::read_range(&mut shared, keys.events_stream(), &first[1].id, 10).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), &ids[2..], "exclusive start");
    assert_eq!(events::payload(&rest[2]), Some(&br#"{"v":1,"n":4}"#[..]));
    assert!(events::read_range(&mut shared, keys.events_stream(), &ids[4], 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn group_keys_share_a_slot_on_the_cluster() {
    let f = Fixture::cluster().await;
    let Deployment::Cluster(cluster) = &f.deployment else { unreachable!() };
    let keys = f.keys().clone();
    let slot = |key: &str| -> i64 { cluster.nodes()[0].query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)) };
    let mut nodes_used = HashSet::new();
    for g in 0..12 {
        let group = format!("group{g}");
        let (faces, dead) = (keys.faces(&group), keys.dead(&group));
        assert_eq!(slot(&faces), slot(&dead), "{faces} and {dead}");
        // Write both through the bus: they land on one node, the one that serves the slot.
        let mut conn = f.bus.group(&group);
        append(&mut conn, &faces, &crop_fields(g)).await;
        append(&mut conn, &dead, &crop_fields(g)).await;
        let node = cluster.node_for_key(&faces);
        let exists: i64 = cluster.nodes()[node].query(redis::cmd("EXISTS").arg(&faces).arg(&dead));
        assert_eq!(exists, 2);
        nodes_used.insert(node);
    }
    assert!(nodes_used.len() > 1, "groups spread over the masters");
    let gallery = [keys.people(), keys.embeddings("p1"), keys.gallery_version()];
    assert!(gallery.iter().all(|k| slot(k) == slot(&gallery[0])), "the gallery is one slot");
}

#[tokio::test]
async fn named_nodes_pin_each_group() {
    let (a, b) = (RedisServer::start(), RedisServer::start());
    let mut config = Config::default();
    config.redis.nodes =
        vec![NodeConfig { name: "a".into(), url: a.url() }, NodeConfig { name: "b".into(), url: b.url() }];
    config.redis.shared_node = Some("b".into());
    config.groups = vec![group("A", "a"), group("B", "b")];
    let (topology, credentials) = Topology::from_config(&config).unwrap();
    let bus = Bus::connect(topology, credentials, Keys::from_config(&config)).await.unwrap();
    bus.ping().await.unwrap();
    let keys = bus.keys().clone();

    append(&mut bus.group("A"), &keys.faces("A"), &crop_fields(1)).await;
    append(&mut bus.open_group("B").await.unwrap(), &keys.faces("B"), &crop_fields(2)).await;
    let _: () = redis::cmd("HSET")
        .arg(keys.people())
        .arg("p1")
        .arg("{}")
        .query_async(&mut bus.shared())
        .await
        .unwrap();

    let exists = |server: &RedisServer, key: &str| -> bool { server.query(redis::cmd("EXISTS").arg(key)) };
    assert!(exists(&a, &keys.faces("A")) && !exists(&b, &keys.faces("A")), "group A only on node a");
    assert!(exists(&b, &keys.faces("B")) && !exists(&a, &keys.faces("B")), "group B only on node b");
    assert!(exists(&b, &keys.people()) && !exists(&a, &keys.people()), "gallery on the shared node");
    assert!(bus.try_group("C").unwrap_err().is_fatal(), "an unpinned group has no node");

    // Without `shared_node`, the first node is shared.
    config.redis.shared_node = None;
    let (topology, _) = Topology::from_config(&config).unwrap();
    assert!(matches!(topology, Topology::Nodes { ref shared, .. } if shared == "a"), "{topology:?}");
}

fn group(name: &str, node: &str) -> GroupConfig {
    toml::from_str(&format!("name = \"{name}\"\nnode = \"{node}\"")).unwrap()
}

#[tokio::test]
async fn config_env_url_and_password() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
    // Unique names: environment variables are process-wide (nextest gives each test a process).
    let pw_var = "REDEYE_TEST_BUS_PASSWORD_7f3a";
    let mut config = Config::default();
    config.redis.url = Some("redis://192.0.2.1:6379".into()); // unreachable: must be overridden
    config.redis.password_env = Some(pw_var.into());

    let err = Topology::from_config(&config).unwrap_err();
    assert!(err.is_fatal() && err.to_string().contains(pw_var), "unset password variable: {err}");

    // SAFETY: this test's process runs no other threads that read the environment.
    unsafe {
        std::env::set_var(pw_var, "s3cret");
        std::env::set_var(REDIS_URL_ENV, server.url());
    }
    let (topology, credentials) = Topology::from_config(&config).unwrap();
    assert_eq!(topology, Topology::Single { url: server.url() });
    assert_eq!(credentials.password.as_deref(), Some("s3cret"));
    assert!(!format!("{credentials:?}").contains("s3cret"));
    let bus = Bus::connect(topology.clone(), credentials, default_keys()).await.unwrap();
    bus.ping().await.unwrap();

    let wrong = Credentials { username: None, password: Some("nope".into()) };
    let err =
        Bus::connect(topology.clone(), wrong, default_keys()).await.expect_err("wrong password refused");
    assert!(err.is_fatal() && !err.is_retryable(), "{err:?}");
    assert!(!chain(&err).contains("nope"), "{}", chain(&err));
    let err =
        Bus::connect(topology, Credentials::none(), default_keys()).await.expect_err("no password refused");
    assert!(err.is_fatal(), "{err:?}");

    // An empty override is no override.
    unsafe { std::env::set_var(REDIS_URL_ENV, "") };
    let (topology, _) = Topology::from_config(&config).unwrap();
    assert_eq!(topology, Topology::Single { url: "redis://192.0.2.1:6379".into() });
}

#[tokio::test]
async fn unreachable_is_retryable_and_reconnects() {
    let mut server = RedisServer::start();
    let bus = connect(Topology::Single { url: server.url() }).await;
    let mut conn = bus.shared();
    cache::set_ex(&mut conn, "k", b"v", 60).await.unwrap();
    server.stop();
    let err = cache::get(&mut conn, "k").await.unwrap_err();
    assert!(err.is_retryable() && !err.is_fatal(), "{err:?}");
    assert!(err.to_string().contains(&server.url()), "names the node: {err}");
    server.restart();
    // The data is gone (no persistence), but the same connection works again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cache::get(&mut conn, "k").await {
            Ok(v) => break assert_eq!(v, None),
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("no reconnection: {e}"),
        }
    }
}

#[tokio::test]
async fn sentinel_finds_the_master() {
    let master = RedisServer::start();
    let sentinel = RedisServer::start_sentinel(&master, "mymaster");
    let topology = Topology::Sentinel {
        master_name: "mymaster".into(),
        addresses: vec![sentinel.url()],
        sentinel_password: None,
    };
    let bus = connect(topology).await;
    let keys = bus.keys().clone();
    let mut conn = bus.group("lobby");
    let id = append(&mut conn, &keys.faces("lobby"), &crop_fields(1)).await;
    let on_master: Vec<StreamEntry> = {
        let mut direct =
            Bus::connect(Topology::Single { url: master.url() }, Credentials::none(), keys.clone())
                .await
                .unwrap()
                .shared();
        events::read_range(&mut direct, &keys.faces("lobby"), "0-0", 10).await.unwrap()
    };
    assert_eq!(on_master[0].id, id, "written to the master");
    let mut sub = bus.subscribe(&[keys.events_channel()]).await.unwrap();
    events::publish(
        &mut bus.shared(),
        keys.events_channel(),
        keys.events_stream(),
        StreamCap::count(100),
        b"{}",
    )
    .await
    .unwrap();
    assert_eq!(next(&mut sub).await.payload, b"{}");
}

#[tokio::test]
async fn tls_with_untrusted_certificate_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (apt openssl) makes the test certificate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tls_port = support::free_port().to_string();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let _server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        cert,
        "--tls-key-file",
        key,
        "--tls-ca-cert-file",
        cert,
        "--tls-auth-clients",
        "no",
    ]);
    // The handshake runs (rustls has its crypto provider) and rejects the self-signed
    // certificate: a configuration problem, not a reason to retry.
    let url = format!("rediss://localhost:{tls_port}");
    let err = Bus::connect(Topology::Single { url }, Credentials::none(), default_keys())
        .await
        .expect_err("untrusted");
    assert!(err.is_fatal(), "{err:?}");
    assert!(chain(&err).contains("certificate"), "{}", chain(&err));
}

/// The error and its sources, as `main` prints them.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text = format!("{text}: {e}");
        source = e.source();
    }
    text
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Bus>();
    check::<RedisConn>();
}
