//! The visitor store against a real Redis, on a single node and a 3-master cluster: the atomic
//! resolve (the same new stranger resolved by eight workers at once is one visitor), the cap
//! (the least recently seen evicted, counted, and gone from every worker's index), and delete.
//! The end-to-end behaviour on real video is in `tests/visitors.rs`.

mod support;

use redeye::instrument::{StageHooks, unix_millis};
use redeye::visitor::store::{self, Candidate};
use redeye::visitor::{LiveVisitors, ResolveStatus, Sighting, VisitorSettings};
use support::bus::{Fixture, on_single_and_cluster};

const DIM: usize = 128;

fn settings(max_visitors: u64) -> VisitorSettings {
    VisitorSettings {
        ttl_secs: 3600,
        threshold: 0.5,
        max_visitors,
        embeddings: 5,
        for_known: false,
        model: "sface-2021dec-fp32".into(),
        dim: DIM,
    }
}

/// Unit vector along axis `i`, tilted by `wobble` towards the next axis (a second look at the
/// same face is never identical).
fn face(i: usize, wobble: f32) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    v[i] = 1.0 - wobble;
    v[(i + 1) % DIM] = wobble;
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn sighting<'a>(track: &'a str, embedding: &'a [f32]) -> Sighting<'a> {
    Sighting { track, camera: "door", embedding, jpeg: b"\xff\xd8 jpeg", quality: 50.0 }
}

on_single_and_cluster!(
    eight_workers_creating_one_stranger_at_once_make_one_visitor,
    the_cap_evicts_the_least_recently_seen_and_every_index_drops_them,
    a_deleted_visitor_is_never_matched_again,
);

/// Eight workers whose indexes are all empty (none has seen the others' creations) resolve the
/// same new stranger at the same moment: the script's re-check gives all eight one visitor.
async fn eight_workers_creating_one_stranger_at_once_make_one_visitor(f: Fixture) {
    let s = settings(1000);
    let since = store::log_head(&mut f.bus.shared(), f.keys()).await.unwrap();
    let looks: Vec<Vec<f32>> = (0..8).map(|w| face(0, 0.02 * w as f32)).collect();
    let tracks: Vec<String> = (0..8).map(|w| format!("cam{w}:1:0")).collect();
    let ids: Vec<String> = (0..8).map(|_| redeye::visitor::new_id()).collect();
    let resolves = (0..8).map(|w| {
        let (bus, s, since) = (f.bus.clone(), s.clone(), since.clone());
        let (look, track, id) = (looks[w].clone(), tracks[w].clone(), ids[w].clone());
        tokio::spawn(async move {
            let candidate = Candidate { since: Some(&since), best: None, new_id: &id };
            store::resolve(
                &mut bus.shared(),
                bus.keys(),
                &s,
                &sighting(&track, &look),
                candidate,
                unix_millis(),
            )
            .await
            .unwrap()
        })
    });
    let got: Vec<_> = futures::future::join_all(resolves).await.into_iter().map(Result::unwrap).collect();
    let created: Vec<_> = got.iter().filter(|r| r.status == ResolveStatus::Created).collect();
    assert_eq!(created.len(), 1, "{got:#?}");
    assert!(got.iter().all(|r| r.id == created[0].id), "one id for all: {got:#?}");
    assert!(got.iter().filter(|r| r.status == ResolveStatus::Attached).all(|r| r.score > 0.9), "{got:#?}");
    let (_, stored) = store::counts(&mut f.bus.shared(), f.keys()).await.unwrap();
    assert_eq!(stored, 1);
    let record = store::get(&mut f.bus.shared(), f.keys(), &created[0].id).await.unwrap().unwrap();
    assert_eq!(record.visits, 8, "{record:#?}");
    assert_eq!(record.embedding_count, 5, "the best 5 of 8 looks are kept");
}

/// With room for three, five strangers: the two seen least recently are evicted (keys and all),
/// counted, and a worker's index that had them drops them.
async fn the_cap_evicts_the_least_recently_seen_and_every_index_drops_them(f: Fixture) {
    let live = LiveVisitors::new(settings(3));
    let hooks = StageHooks::default();
    let mut conn = f.bus.shared();
    let mut ids = Vec::new();
    for i in 0..5 {
        let look = face(10 * i, 0.0);
        let track = format!("door:{i}:0");
        let r = live.resolve(&mut conn, f.keys(), &sighting(&track, &look), &hooks).await.unwrap();
        assert_eq!(r.status, ResolveStatus::Created, "{i}: {r:?}");
        ids.push(r.id);
        // Distinct last-seen times.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (evicted, stored) = store::counts(&mut conn, f.keys()).await.unwrap();
    assert_eq!((evicted, stored), (2, 3));
    for gone in &ids[..2] {
        assert!(store::get(&mut conn, f.keys(), gone).await.unwrap().is_none(), "{gone} evicted");
        assert!(
            store::best_shot(&mut conn, f.keys(), gone).await.unwrap().is_none(),
            "{gone}'s shot evicted"
        );
    }
    // The first stranger again: the index followed the log, so he is a new visitor now.
    let look = face(0, 0.01);
    let r = live.resolve(&mut conn, f.keys(), &sighting("door:9:0", &look), &hooks).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Created);
    assert!(!ids.contains(&r.id));
    assert_eq!(live.indexed().await, 3, "the index holds what Redis holds");
}

/// `forget --visitor`: the record and shot are gone, every index drops them, and the same face
/// afterwards is a new visitor.
async fn a_deleted_visitor_is_never_matched_again(f: Fixture) {
    let live = LiveVisitors::new(settings(1000));
    let other = LiveVisitors::new(settings(1000));
    let hooks = StageHooks::default();
    let mut conn = f.bus.shared();
    let look = face(3, 0.0);
    let first = live.resolve(&mut conn, f.keys(), &sighting("door:1:0", &look), &hooks).await.unwrap();
    let again = other.resolve(&mut conn, f.keys(), &sighting("hall:1:0", &look), &hooks).await.unwrap();
    assert_eq!((again.id.as_str(), again.status), (first.id.as_str(), ResolveStatus::Attached));
    assert!(store::delete(&mut conn, f.keys(), &first.id, unix_millis()).await.unwrap());
    assert!(!store::delete(&mut conn, f.keys(), &first.id, unix_millis()).await.unwrap(), "only once");
    let after = other.resolve(&mut conn, f.keys(), &sighting("hall:2:0", &look), &hooks).await.unwrap();
    assert_eq!(after.status, ResolveStatus::Created, "{after:?}");
    assert_ne!(after.id, first.id);
    assert!(store::get(&mut conn, f.keys(), &first.id).await.unwrap().is_none());
}
