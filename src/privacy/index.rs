//! The per-person indexes: sets of the keys and event ids that name a person (key names in
//! [`crate::bus::Keys`]: `person_cached`, `person_tracks`, `person_events`).
//!
//! Each set lives on the node that holds its members (image keys and track records live on
//! the group's node with named nodes; events on the shared node), and its TTL is refreshed on
//! every add to at least the TTL of what it points at, so the index never outlives its use by
//! much and never forgets a member that still exists.

use crate::bus::{BusError, Keys, RedisConn};

/// Notes that the cached result at `image_key` names `person_id`. `ttl_secs` is the cache TTL.
pub async fn note_cached(
    conn: &mut RedisConn,
    keys: &Keys,
    person_id: &str,
    image_key: &str,
    ttl_secs: u64,
) -> Result<(), BusError> {
    note(conn, &keys.person_cached(person_id), image_key, ttl_secs).await
}

/// Notes that the track record at `track_key` holds a vote for `person_id`. `ttl_secs` is the
/// record TTL; the index keeps twice that, since ingest refreshes a live track's record
/// without a fold (a long visit), and the index must not expire before the record.
pub async fn note_track(
    conn: &mut RedisConn,
    keys: &Keys,
    person_id: &str,
    track_key: &str,
    ttl_secs: u64,
) -> Result<(), BusError> {
    note(conn, &keys.person_tracks(person_id), track_key, ttl_secs.saturating_mul(2)).await
}

/// Notes that events stream entry `stream_id` names `person_id`. `ttl_secs` is the events'
/// retention (`[retention] events_secs`).
pub async fn note_event(
    conn: &mut RedisConn,
    keys: &Keys,
    person_id: &str,
    stream_id: &str,
    ttl_secs: u64,
) -> Result<(), BusError> {
    note(conn, &keys.person_events(person_id), stream_id, ttl_secs).await
}

/// Every member of the index `key` on `conn` (empty when it does not exist).
pub async fn members(conn: &mut RedisConn, key: &str) -> Result<Vec<String>, BusError> {
    redis::cmd("SMEMBERS")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(|e| conn.error(format!("SMEMBERS {key}"), e))
}

/// SADD and EXPIRE in one MULTI (one key, so one slot in a Cluster): an index is never left
/// without a TTL.
async fn note(conn: &mut RedisConn, index: &str, member: &str, ttl_secs: u64) -> Result<(), BusError> {
    redis::pipe()
        .atomic()
        .sadd(index, member)
        .ignore()
        .expire(index, ttl_secs.max(1) as i64)
        .ignore()
        .query_async::<()>(conn)
        .await
        .map_err(|e| conn.error(format!("SADD {index}"), e))
}
