//! The track record against real Redis, on one server and on a 3-master Cluster (each scenario
//! runs on both): shots sent and folded, the weighted vote, one `arrived` per track whatever
//! the concurrency or redeliveries, `left` exactly once, published flags, TTLs.

mod support;

use redeye::bus::{RedisConn, events};
use redeye::vision::BBox;
use redeye::visit::{
    self, Announcement, AnyEvent, FoldStatus, Folded, NewShot, ShotVote, TrackKey, VisitEvent, VisitKind,
    VotePolicy,
};
use redeye::wire::PersonRef;
use support::bus::{Fixture, on_single_and_cluster};

const TTL: u64 = 600;
const PUBLISHING: visit::Publishing = visit::Publishing {
    events: redeye::bus::streams::StreamCap::count(1000),
    record_ttl_secs: TTL,
    visitor_ttl_secs: 3600,
};
const FIRST_SEEN: u64 = 1_700_000_000_000;
const GROUP: &str = "lobby";

impl Fixture {
    fn conn(&self) -> RedisConn {
        self.bus.group(GROUP)
    }

    /// A fresh track id on camera `door`, unique within the test.
    fn track(&self, n: u32) -> TrackKey {
        TrackKey::new(self.keys(), GROUP, &format!("door:{FIRST_SEEN}:{n}"))
    }

    /// Sends `n` shots of `track`; returns their stream ids.
    async fn send(&self, track: &TrackKey, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..n {
            let md5 = format!("{i:032x}");
            let fields: [(&str, &[u8]); 2] = [("md5", md5.as_bytes()), ("crop", b"\xff\xd8 jpeg")];
            let shot = NewShot {
                group: GROUP,
                camera: "door",
                track: &track.track,
                first_seen: FIRST_SEEN,
                fields: &fields,
            };
            ids.push(
                visit::send_shot(&mut self.conn(), self.keys(), &shot, 10_000, TTL)
                    .await
                    .expect("send_shot")
                    .expect("the stream has room"),
            );
        }
        ids
    }

    async fn hget(&self, track: &TrackKey, field: &str) -> Option<String> {
        redis::cmd("HGET").arg(&track.key).arg(field).query_async(&mut self.conn()).await.expect("HGET")
    }

    async fn ttl(&self, key: &str) -> i64 {
        redis::cmd("TTL").arg(key).query_async(&mut self.conn()).await.expect("TTL")
    }

    /// The record has a TTL, at most [`TTL`].
    async fn assert_expires(&self, track: &TrackKey) {
        let ttl = self.ttl(&track.key).await;
        assert!(ttl > 0 && ttl <= TTL as i64, "{} has TTL {ttl}", track.key);
    }
}

on_single_and_cluster!(
    send_shot_counts_and_tags,
    send_shot_refuses_a_full_stream,
    fold_is_idempotent_per_shot,
    concurrent_folds_arrive_once,
    unknown_then_two_matches_updates,
    exact_tie_abstains,
    switching_person_needs_the_margin,
    left_once_when_ended_before_last_fold,
    left_once_when_ended_after_last_fold,
    failed_shots_still_leave,
    end_and_last_fold_race,
    no_record_is_not_recreated,
);

fn person(id: &str) -> PersonRef {
    PersonRef { id: id.into(), name: id.to_uppercase() }
}

/// A full-size (112 px) shot of `person` (`None`: unknown) with `score`.
fn vote<'a>(shot_id: &'a str, person: Option<&'a PersonRef>, score: f32) -> ShotVote<'a> {
    ShotVote {
        shot_id,
        person,
        score,
        face_px: 112.0,
        md5: "0123456789abcdef0123456789abcdef",
        bbox: BBox { x: 10.0, y: 20.0, w: 112.0, h: 130.0 },
        capture_ts: FIRST_SEEN + 40,
        model: "sface",
    }
}

async fn fold(f: &Fixture, track: &TrackKey, v: &ShotVote<'_>, policy: &VotePolicy) -> Folded {
    visit::fold(&mut f.conn(), track, v, policy, FIRST_SEEN + 100, TTL).await.expect("fold")
}

fn names(folded: &Folded) -> Vec<&str> {
    folded.announcements.iter().map(|a| a.name.as_str()).collect()
}

fn only(folded: &Folded) -> &Announcement {
    assert_eq!(folded.announcements.len(), 1, "{folded:?}");
    &folded.announcements[0]
}

async fn send_shot_counts_and_tags(f: Fixture) {
    let track = f.track(1);
    let ids = f.send(&track, 2).await;
    let faces = f.keys().faces(GROUP);
    if let Some(cluster) = &f.cluster {
        // One slot for the stream and the record: the send script would fail with CROSSSLOT.
        assert_eq!(cluster.node_for_key(&faces), cluster.node_for_key(&track.key));
    }
    let entries = events::read_range(&mut f.conn(), &faces, "0-0", 10).await.expect("XRANGE");
    assert_eq!(entries.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ids);
    assert_eq!(visit::shot_track(&entries[0]), Some((track.track.as_str(), FIRST_SEEN)));
    assert_eq!(entries[1].get("md5"), Some(format!("{:032x}", 1).as_bytes()));
    assert_eq!(f.hget(&track, "sent").await.as_deref(), Some("2"));
    assert_eq!(f.hget(&track, "camera").await.as_deref(), Some("door"));
    assert_eq!(f.hget(&track, "group").await.as_deref(), Some(GROUP));
    assert_eq!(f.hget(&track, "first_seen").await, Some(FIRST_SEEN.to_string()));
    f.assert_expires(&track).await;
}

/// At the cap the shot is refused and its record untouched, so the track still completes; an
/// acknowledged entry is deleted, which makes room again.
async fn send_shot_refuses_a_full_stream(f: Fixture) {
    let track = f.track(1);
    let faces = f.keys().faces(GROUP);
    let fields: [(&str, &[u8]); 1] = [("md5", b"0")];
    let shot = NewShot {
        group: GROUP,
        camera: "door",
        track: &track.track,
        first_seen: FIRST_SEEN,
        fields: &fields,
    };
    let send =
        || async { visit::send_shot(&mut f.conn(), f.keys(), &shot, 2, TTL).await.expect("send_shot") };
    let first = send().await.expect("room for the first");
    assert!(send().await.is_some(), "room for the second");
    assert_eq!(send().await, None, "the third is refused");
    assert_eq!(f.hget(&track, "sent").await.as_deref(), Some("2"), "the refused shot is not counted");
    let mut conn = f.conn();
    redeye::bus::streams::ensure_group(&mut conn, &faces, redeye::bus::CONSUMER_GROUP).await.unwrap();
    let read = redeye::bus::streams::read_group(&mut conn, &faces, redeye::bus::CONSUMER_GROUP, "c", 1, 0)
        .await
        .unwrap();
    assert_eq!(read[0].id, first);
    redeye::bus::streams::ack(&mut conn, &faces, redeye::bus::CONSUMER_GROUP, &[&first]).await.unwrap();
    assert_eq!(redeye::bus::streams::stream_len(&mut conn, &faces).await.unwrap(), 1, "acked is deleted");
    assert!(send().await.is_some(), "room again");
}

async fn fold_is_idempotent_per_shot(f: Fixture) {
    let track = f.track(2);
    let ids = f.send(&track, 2).await;
    let ada = person("ada");
    let policy = VotePolicy::default();

    let first = fold(&f, &track, &vote(&ids[0], Some(&ada), 0.8), &policy).await;
    assert_eq!(first.status, FoldStatus::Done);
    let arrived = only(&first);
    assert_eq!((arrived.kind, arrived.name.as_str()), (VisitKind::Arrived, "arrived"));
    assert_eq!(arrived.person.as_ref(), Some(&ada));
    assert_eq!((arrived.score, arrived.published), (Some(0.8), false));
    assert_eq!(arrived.bbox, Some(vote("", None, 0.0).bbox));
    f.assert_expires(&track).await;

    // Redelivered before it was published: same announcement, no second vote.
    let again = fold(&f, &track, &vote(&ids[0], Some(&ada), 0.8), &policy).await;
    assert_eq!(again.status, FoldStatus::Duplicate);
    assert_eq!(again.announcements, first.announcements);
    assert_eq!(f.hget(&track, "folded").await.as_deref(), Some("1"));
    assert_eq!(f.hget(&track, "vote:p:ada").await.as_deref(), Some("800"));

    // Published (events stream + channel, then the flag): a redelivery sees `published`.
    let (mut shared, mut group) = (f.bus.shared(), f.conn());
    let n = visit::publish_unpublished(&mut shared, &mut group, f.keys(), &again, &PUBLISHING)
        .await
        .unwrap()
        .len();
    assert_eq!(n, 1);
    let third = fold(&f, &track, &vote(&ids[0], Some(&ada), 0.8), &policy).await;
    assert_eq!(third.status, FoldStatus::Duplicate);
    assert!(only(&third).published);
    let n = visit::publish_unpublished(&mut shared, &mut group, f.keys(), &third, &PUBLISHING)
        .await
        .unwrap()
        .len();
    assert_eq!(n, 0, "a published announcement is not published again");
    let stream = events::read_range(&mut shared, f.keys().events_stream(), "0-0", 10).await.unwrap();
    assert_eq!(stream.len(), 1);
    let AnyEvent::Visit(event) = AnyEvent::from_json(events::payload(&stream[0]).unwrap()).unwrap() else {
        panic!("not a visit event")
    };
    assert_eq!(event, VisitEvent::from_announcement(arrived));
    assert_eq!(event.id, format!("{}:arrived", track.track));

    // Another shot of the same person: counted, nothing new to announce; the TTL is refreshed.
    let _: () = redis::cmd("EXPIRE").arg(&track.key).arg(5).query_async(&mut f.conn()).await.unwrap();
    let other = fold(&f, &track, &vote(&ids[1], Some(&ada), 0.7), &policy).await;
    assert_eq!((other.status, other.announcements.len()), (FoldStatus::Done, 0));
    assert_eq!(f.hget(&track, "vote:p:ada").await.as_deref(), Some("1500"));
    assert!(f.ttl(&track.key).await > 5, "every write refreshes the TTL");
}

async fn concurrent_folds_arrive_once(f: Fixture) {
    let track = f.track(3);
    let ids = f.send(&track, 8).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, id) in ids.into_iter().enumerate() {
        // A connection per task, as separate workers would have.
        let mut conn = f.bus.open_group(GROUP).await.expect("open");
        let track = track.clone();
        tasks.spawn(async move {
            let who = person(if i % 2 == 0 { "ada" } else { "bob" });
            let v = vote(&id, Some(&who), 0.6);
            visit::fold(&mut conn, &track, &v, &VotePolicy::default(), FIRST_SEEN + 100, TTL)
                .await
                .expect("fold")
        });
    }
    let mut arrived = 0;
    while let Some(folded) = tasks.join_next().await {
        let folded = folded.expect("task");
        assert_eq!(folded.status, FoldStatus::Done);
        arrived += folded.announcements.iter().filter(|a| a.kind == VisitKind::Arrived).count();
    }
    assert_eq!(arrived, 1, "exactly one arrived");
    assert_eq!(f.hget(&track, "folded").await.as_deref(), Some("8"));
    f.assert_expires(&track).await;
}

async fn unknown_then_two_matches_updates(f: Fixture) {
    let track = f.track(4);
    let ids = f.send(&track, 3).await;
    let ada = person("ada");
    let policy = VotePolicy::default();

    let first = fold(&f, &track, &vote(&ids[0], None, 0.2), &policy).await;
    let arrived = only(&first);
    assert_eq!((arrived.kind, arrived.person.as_ref(), arrived.decided), (VisitKind::Arrived, None, true));
    let event = VisitEvent::from_announcement(arrived);
    assert_eq!(serde_json::to_value(&event).unwrap()["person"], serde_json::Value::Null);

    // 0.5 < 0.7: one ordinary match does not outweigh an unknown...
    let second = fold(&f, &track, &vote(&ids[1], Some(&ada), 0.5), &policy).await;
    assert_eq!(names(&second), Vec::<&str>::new());
    // ...two do.
    let third = fold(&f, &track, &vote(&ids[2], Some(&ada), 0.5), &policy).await;
    let updated = only(&third);
    assert_eq!((updated.kind, updated.name.as_str()), (VisitKind::Updated, "updated:1"));
    assert_eq!(updated.person.as_ref(), Some(&ada));
    assert_eq!(VisitEvent::from_announcement(updated).id, format!("{}:updated:1", track.track));
    assert_eq!(f.hget(&track, "person").await.as_deref(), Some("ada"));
}

async fn exact_tie_abstains(f: Fixture) {
    let track = f.track(5);
    let ids = f.send(&track, 3).await;
    let ada = person("ada");
    let policy = VotePolicy::default();
    assert_eq!(names(&fold(&f, &track, &vote(&ids[0], None, 0.1), &policy).await), ["arrived"]);
    // 0.7 at full size is exactly the unknown's 0.7: a tie, no change.
    assert_eq!(names(&fold(&f, &track, &vote(&ids[1], Some(&ada), 0.7), &policy).await), Vec::<&str>::new());
    assert_eq!(f.hget(&track, "person").await.as_deref(), Some(""));
    assert_eq!(names(&fold(&f, &track, &vote(&ids[2], Some(&ada), 0.1), &policy).await), ["updated:1"]);

    // Between people with no margin at all, a tie still abstains.
    let track = f.track(6);
    let ids = f.send(&track, 3).await;
    let (ada, bob) = (person("ada"), person("bob"));
    let policy = VotePolicy { switch_margin: 0.0, ..VotePolicy::default() };
    assert_eq!(names(&fold(&f, &track, &vote(&ids[0], Some(&ada), 0.6), &policy).await), ["arrived"]);
    assert_eq!(names(&fold(&f, &track, &vote(&ids[1], Some(&bob), 0.6), &policy).await), Vec::<&str>::new());
    let third = fold(&f, &track, &vote(&ids[2], Some(&bob), 0.01), &policy).await;
    assert_eq!(only(&third).person.as_ref(), Some(&bob));
}

async fn switching_person_needs_the_margin(f: Fixture) {
    let track = f.track(7);
    let ids = f.send(&track, 5).await;
    let (ada, bob) = (person("ada"), person("bob"));
    let policy = VotePolicy::default(); // margin 0.5
    assert_eq!(names(&fold(&f, &track, &vote(&ids[0], Some(&ada), 0.8), &policy).await), ["arrived"]);
    assert!(fold(&f, &track, &vote(&ids[1], Some(&bob), 0.6), &policy).await.announcements.is_empty());
    // bob 1.2 vs ada 0.8: ahead, but by less than the margin.
    assert!(fold(&f, &track, &vote(&ids[2], Some(&bob), 0.6), &policy).await.announcements.is_empty());
    assert_eq!(f.hget(&track, "person").await.as_deref(), Some("ada"));
    // bob 1.8 vs 0.8.
    let fourth = fold(&f, &track, &vote(&ids[3], Some(&bob), 0.6), &policy).await;
    assert_eq!((only(&fourth).name.as_str(), only(&fourth).person.as_ref()), ("updated:1", Some(&bob)));
    assert_eq!(f.hget(&track, "vote:p:bob").await.as_deref(), Some("1800"));
    // A small face counts less (a 28 px shot weighs 0.25 of a 112 px one), and unknown shots
    // never take a decided person back.
    let small = ShotVote { face_px: 28.0, ..vote(&ids[4], None, 0.1) };
    assert!(fold(&f, &track, &small, &policy).await.announcements.is_empty());
    assert_eq!(f.hget(&track, "vote:unknown").await.as_deref(), Some("175"));
    assert_eq!(f.hget(&track, "person").await.as_deref(), Some("bob"));
}

async fn left_once_when_ended_before_last_fold(f: Fixture) {
    let track = f.track(8);
    let ids = f.send(&track, 3).await;
    let ada = person("ada");
    let policy = VotePolicy::default();
    fold(&f, &track, &vote(&ids[0], Some(&ada), 0.8), &policy).await;
    fold(&f, &track, &vote(&ids[1], Some(&ada), 0.8), &policy).await;

    let last_seen = FIRST_SEEN + 9_500;
    let ended =
        visit::end_track(&mut f.conn(), &track, last_seen, 57, FIRST_SEEN + 12_000, TTL).await.unwrap();
    assert_eq!((ended.status, ended.announcements.len()), (FoldStatus::Done, 0), "a shot is outstanding");
    f.assert_expires(&track).await;

    let last = fold(&f, &track, &vote(&ids[2], Some(&ada), 0.8), &policy).await;
    let left = only(&last);
    assert_eq!((left.kind, left.person.as_ref(), left.decided), (VisitKind::Left, Some(&ada), true));
    let event = VisitEvent::from_announcement(left);
    assert_eq!(event.id, format!("{}:left", track.track));
    assert_eq!(event.dwell_ms, Some(9_500));
    assert_eq!(
        (event.last_seen, event.faces_seen, event.shots, event.decided),
        (Some(last_seen), Some(57), Some(3), Some(true))
    );

    // Neither a second end nor a redelivered last shot announces another `left`.
    let again =
        visit::end_track(&mut f.conn(), &track, last_seen, 57, FIRST_SEEN + 13_000, TTL).await.unwrap();
    assert_eq!(again.status, FoldStatus::Duplicate);
    assert_eq!(again.announcements, last.announcements);
    let redelivered = fold(&f, &track, &vote(&ids[2], Some(&ada), 0.8), &policy).await;
    assert_eq!(redelivered.announcements, last.announcements);
    let earlier = fold(&f, &track, &vote(&ids[1], Some(&ada), 0.8), &policy).await;
    assert_eq!((earlier.status, earlier.announcements.len()), (FoldStatus::Duplicate, 0));
    f.assert_expires(&track).await;
}

async fn left_once_when_ended_after_last_fold(f: Fixture) {
    let track = f.track(9);
    let ids = f.send(&track, 2).await;
    let policy = VotePolicy::default();
    assert_eq!(names(&fold(&f, &track, &vote(&ids[0], None, 0.3), &policy).await), ["arrived"]);
    assert!(fold(&f, &track, &vote(&ids[1], None, 0.3), &policy).await.announcements.is_empty());

    let last_seen = FIRST_SEEN + 4_000;
    let ended =
        visit::end_track(&mut f.conn(), &track, last_seen, 12, FIRST_SEEN + 6_000, TTL).await.unwrap();
    let left = only(&ended);
    assert_eq!((left.kind, left.person.as_ref(), left.decided), (VisitKind::Left, None, true));
    assert_eq!(left.event_ts, FIRST_SEEN + 6_000);
    assert_eq!(VisitEvent::from_announcement(left).dwell_ms, Some(4_000));

    let mut group = f.conn();
    assert!(visit::mark_published(&mut group, &track, "left", TTL).await.unwrap());
    let again =
        visit::end_track(&mut f.conn(), &track, last_seen, 12, FIRST_SEEN + 7_000, TTL).await.unwrap();
    assert_eq!(again.status, FoldStatus::Duplicate);
    assert!(only(&again).published);
    assert_eq!(only(&again).event_ts, FIRST_SEEN + 6_000, "the stored announcement, not a new one");
    // A late fold of a shot never seen counts, but announces nothing more.
    let late =
        visit::fold(&mut f.conn(), &track, &vote("9-9", None, 0.3), &policy, FIRST_SEEN, TTL).await.unwrap();
    assert_eq!((late.status, late.announcements.len()), (FoldStatus::Done, 0));
    f.assert_expires(&track).await;
}

async fn failed_shots_still_leave(f: Fixture) {
    // Every shot dead-lettered: no arrived, a left without identity.
    let track = f.track(10);
    let ids = f.send(&track, 2).await;
    let now = FIRST_SEEN + 5_000;
    let failed = visit::fold_failed(&mut f.conn(), &track, &ids[0], now, TTL).await.unwrap();
    assert_eq!((failed.status, failed.announcements.len()), (FoldStatus::Done, 0));
    let ended = visit::end_track(&mut f.conn(), &track, FIRST_SEEN + 2_000, 5, now, TTL).await.unwrap();
    assert!(ended.announcements.is_empty());
    let failed = visit::fold_failed(&mut f.conn(), &track, &ids[1], now, TTL).await.unwrap();
    let left = only(&failed);
    assert_eq!(
        (left.kind, left.decided, left.person.as_ref(), left.score),
        (VisitKind::Left, false, None, None)
    );
    let json = serde_json::to_value(VisitEvent::from_announcement(left)).unwrap();
    assert_eq!((json["decided"].clone(), json["person"].clone()), (false.into(), serde_json::Value::Null));
    assert!(json.get("score").is_none() && json.get("md5").is_none(), "{json}");
    let again = visit::fold_failed(&mut f.conn(), &track, &ids[1], now, TTL).await.unwrap();
    assert_eq!(
        (again.status, again.announcements.clone()),
        (FoldStatus::Duplicate, failed.announcements.clone())
    );
    assert_eq!(f.hget(&track, "folded").await.as_deref(), Some("2"));
    f.assert_expires(&track).await;

    // One good shot, one failed: the left carries the identity.
    let track = f.track(11);
    let ids = f.send(&track, 2).await;
    let ada = person("ada");
    fold(&f, &track, &vote(&ids[0], Some(&ada), 0.9), &VotePolicy::default()).await;
    visit::end_track(&mut f.conn(), &track, FIRST_SEEN + 2_000, 5, now, TTL).await.unwrap();
    let failed = visit::fold_failed(&mut f.conn(), &track, &ids[1], now, TTL).await.unwrap();
    let left = only(&failed);
    assert_eq!((left.kind, left.decided, left.person.as_ref()), (VisitKind::Left, true, Some(&ada)));
    assert_eq!(left.shots, Some(2));
}

async fn end_and_last_fold_race(f: Fixture) {
    // Ingest ends the track while a worker folds its last shot, on separate connections:
    // whichever runs second announces `left`, and only one of them does.
    let (ada, policy) = (person("ada"), VotePolicy::default());
    for n in 0..20 {
        let track = f.track(100 + n);
        let ids = f.send(&track, 2).await;
        fold(&f, &track, &vote(&ids[0], Some(&ada), 0.9), &policy).await;
        let (mut ingest, mut worker) =
            (f.bus.open_group(GROUP).await.unwrap(), f.bus.open_group(GROUP).await.unwrap());
        let end = visit::end_track(&mut ingest, &track, FIRST_SEEN + 1_000, 9, FIRST_SEEN + 2_000, TTL);
        let last = vote(&ids[1], Some(&ada), 0.9);
        let last = visit::fold(&mut worker, &track, &last, &policy, FIRST_SEEN + 2_000, TTL);
        let (ended, folded) = tokio::join!(end, last);
        let lefts = [ended.unwrap(), folded.unwrap()]
            .iter()
            .flat_map(|f| f.announcements.iter().filter(|a| a.kind == VisitKind::Left).cloned())
            .count();
        assert_eq!(lefts, 1, "track {n}");
    }
}

async fn no_record_is_not_recreated(f: Fixture) {
    let track = f.track(12);
    let folded = fold(&f, &track, &vote("1-0", None, 0.3), &VotePolicy::default()).await;
    assert_eq!((folded.status, folded.announcements.len()), (FoldStatus::NoRecord, 0));
    let ended = visit::end_track(&mut f.conn(), &track, FIRST_SEEN, 1, FIRST_SEEN, TTL).await.unwrap();
    assert_eq!(ended.status, FoldStatus::NoRecord);
    assert!(!visit::mark_published(&mut f.conn(), &track, "arrived", TTL).await.unwrap());
    let exists: i64 = redis::cmd("EXISTS").arg(&track.key).query_async(&mut f.conn()).await.unwrap();
    assert_eq!(exists, 0);
}
