//! Erasing a person everywhere but the gallery (the gallery record and embeddings are
//! [`crate::recognize::gallery::forget`]'s): their cached results, track records, events and
//! the visitors linked to their tracks, found through the per-person indexes ([`super::index`]).
//!
//! Image keys carry no hash tag and track records carry their group's, while the indexes carry
//! `{gallery}`: in a Cluster they are on different slots, so each key is deleted by itself (no
//! MULTI across slots). With named nodes every node is visited, since each holds the indexes of
//! the keys it holds.

use std::collections::BTreeSet;

use super::index;
use crate::bus::{Bus, BusError, RedisConn};
use crate::visitor::store;

/// What [`forget_everywhere`] removed, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Cached results (`image:<md5>`) that named the person.
    pub cached: u64,
    /// Track records with a vote for the person.
    pub tracks: u64,
    /// Events stream entries naming the person.
    pub events: u64,
    /// Anonymous visitors linked to a track decided as the person (`[visitors] for_known`).
    pub visitors: Vec<String>,
}

impl Forgotten {
    /// Whether anything at all was removed.
    pub fn is_empty(&self) -> bool {
        self.cached == 0 && self.tracks == 0 && self.events == 0 && self.visitors.is_empty()
    }
}

/// Removes everything the indexes say names `person_id`, then the indexes. Idempotent: run it
/// again after an interruption and it removes what is left.
pub async fn forget_everywhere(bus: &Bus, person_id: &str, now_ms: u64) -> Result<Forgotten, BusError> {
    let keys = bus.keys();
    let mut out = Forgotten::default();
    let mut visitors = BTreeSet::new();
    for mut conn in bus.nodes() {
        let tracks_index = keys.person_tracks(person_id);
        for track in index::members(&mut conn, &tracks_index).await? {
            if let Some(v) = linked_visitor(&mut conn, &track, person_id).await? {
                visitors.insert(v);
            }
            out.tracks += del(&mut conn, &track).await?;
        }
        del(&mut conn, &tracks_index).await?;
        let cached_index = keys.person_cached(person_id);
        for image in index::members(&mut conn, &cached_index).await? {
            out.cached += del(&mut conn, &image).await?;
        }
        del(&mut conn, &cached_index).await?;
    }
    let mut shared = bus.shared();
    let events_index = keys.person_events(person_id);
    let ids = index::members(&mut shared, &events_index).await?;
    let stream = keys.events_stream();
    for chunk in ids.chunks(500) {
        let n: u64 = redis::cmd("XDEL")
            .arg(stream)
            .arg(chunk)
            .query_async(&mut shared)
            .await
            .map_err(|e| shared.error(format!("XDEL {stream}"), e))?;
        out.events += n;
    }
    del(&mut shared, &events_index).await?;
    for v in visitors {
        if store::delete(&mut shared, keys, &v, now_ms).await? {
            out.visitors.push(v);
        }
    }
    Ok(out)
}

/// The visitor of the track record `track` when the track was decided as `person_id` (a
/// visitor for a known person exists only with `[visitors] for_known`). A track that only had
/// a vote for them keeps its visitor: that visitor is whoever the track was decided as.
async fn linked_visitor(
    conn: &mut RedisConn,
    track: &str,
    person_id: &str,
) -> Result<Option<String>, BusError> {
    let (person, visitor): (Option<String>, Option<String>) = redis::cmd("HMGET")
        .arg(track)
        .arg("person")
        .arg("visitor")
        .query_async(conn)
        .await
        .map_err(|e| conn.error(format!("HMGET {track}"), e))?;
    Ok(visitor.filter(|v| !v.is_empty() && person.as_deref() == Some(person_id)))
}

/// Deletes `key`: 1 if it existed.
async fn del(conn: &mut RedisConn, key: &str) -> Result<u64, BusError> {
    redis::cmd("DEL").arg(key).query_async(conn).await.map_err(|e| conn.error(format!("DEL {key}"), e))
}
