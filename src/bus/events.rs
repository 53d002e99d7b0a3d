//! Recognition events: published live on a channel and kept in a capped stream for replay.
//!
//! Pub/sub is fire-and-forget: a subscriber that is away misses messages. So every event is
//! also appended to a stream of the same name; a subscriber that reconnects reads the stream
//! from the last id it saw ([`read_range`]) and then follows the channel again. Events carry
//! their own id (the faces entry id), so one seen twice across the switch can be dropped.

use redis::Value;

use super::reply::{self, StreamEntry};
use super::streams::StreamCap;
use super::{BusError, RedisConn, streams};

/// The stream field holding an event's JSON.
pub const EVENT_FIELD: &str = "event";

/// Appends `payload` (the event JSON) to `stream_key`, capped by `cap` (count and age), then
/// publishes it on `channel`. Returns the stream id.
///
/// Two commands, not a transaction: on a Cluster the stream and the channel hash to different
/// slots (PUBLISH reaches every node anyway). The stream goes first, so whoever receives the
/// live message can already find it in the stream.
pub async fn publish(
    conn: &mut RedisConn,
    channel: &str,
    stream_key: &str,
    cap: StreamCap,
    payload: &[u8],
) -> Result<String, BusError> {
    let id = streams::append_capped(conn, stream_key, cap, &[(EVENT_FIELD, payload)]).await?;
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async::<i64>(conn)
        .await
        .map_err(|e| conn.error(format!("PUBLISH {channel}"), e))?;
    Ok(id)
}

/// Up to `count` entries of `stream_key` after `after_id` (exclusive), oldest first. Start
/// with `0-0` for everything still kept; continue with the last id returned.
pub async fn read_range(
    conn: &mut RedisConn,
    stream_key: &str,
    after_id: &str,
    count: usize,
) -> Result<Vec<StreamEntry>, BusError> {
    // `(` makes the start exclusive (Redis 6.2+), so the last entry seen is not read again.
    let start = format!("({after_id}");
    let op = || format!("XRANGE {stream_key} {start}");
    let value: Value = redis::cmd("XRANGE")
        .arg(stream_key)
        .arg(&start)
        .arg("+")
        .arg("COUNT")
        .arg(count.max(1))
        .query_async(conn)
        .await
        .map_err(|e| conn.error(op(), e))?;
    reply::entries(value).map_err(|d| BusError::reply(conn.target(), op(), d))
}

/// Entries of `stream_key` after `after_id`, waiting up to `block_ms` for the first one
/// (`XREAD BLOCK`). An empty list means nothing arrived in time. Blocks its connection: give it
/// one of its own ([`super::Bus::open_shared`]).
pub async fn follow(
    conn: &mut RedisConn,
    stream_key: &str,
    after_id: &str,
    count: usize,
    block_ms: u64,
) -> Result<Vec<StreamEntry>, BusError> {
    let op = || format!("XREAD {stream_key} {after_id}");
    let value: Value = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(count.max(1))
        .arg("BLOCK")
        .arg(block_ms)
        .arg("STREAMS")
        .arg(stream_key)
        .arg(after_id)
        .query_async(conn)
        .await
        .map_err(|e| conn.error(op(), e))?;
    reply::read_reply(value).map_err(|d| BusError::reply(conn.target(), op(), d))
}

/// The event JSON of an entry read by [`read_range`] or [`follow`].
pub fn payload(entry: &StreamEntry) -> Option<&[u8]> {
    entry.get(EVENT_FIELD)
}
