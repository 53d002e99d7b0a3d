//! Typed stream primitives: capped append, consumer groups, claiming, dead letters, metrics.
//!
//! Every function takes the [`RedisConn`] holding the stream (for a group's faces stream,
//! `bus.group(name)`), and returns errors that name the command, the key and the target.
//!
//! A faces stream holds only unfinished work: [`ack`] and [`dead_letter`] delete the entry in
//! the same atomic step that acknowledges it, so the stream's length is what no worker has
//! finished, and [`append_bounded`] refuses a new entry at the cap instead of trimming (`MAXLEN`
//! would silently drop crops nobody recognised). Streams of finished things (events, dead
//! letters) are capped with [`append_capped`].

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::{Script, Value};

use super::conn::RESPONSE_TIMEOUT;
use super::reply::{self, StreamEntry};
use super::{BusError, RedisConn};

/// How long a stream of finished things (events, dead letters) keeps its entries: at most about
/// `maxlen` of them, and none older than `max_age_secs` (0: no age limit). Stream entries have
/// no TTL of their own, so both are applied each time an entry is appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCap {
    pub maxlen: u64,
    pub max_age_secs: u64,
}

impl StreamCap {
    /// A cap by count only.
    pub const fn count(maxlen: u64) -> StreamCap {
        StreamCap { maxlen, max_age_secs: 0 }
    }

    /// The `MINID` that trims entries older than `max_age_secs` at `now_ms` (a stream id is
    /// `<ms>-<seq>`, so an auto id's time part is when it was appended); `0` for no age limit.
    pub fn min_id(&self, now_ms: u64) -> String {
        match self.max_age_secs {
            0 => "0".to_owned(),
            age => format!("{}-0", now_ms.saturating_sub(age.saturating_mul(1000))),
        }
    }
}

/// Appends one entry to `key`, trimming the stream to about `cap.maxlen` entries and to those
/// appended within `cap.max_age_secs`, and returns the new entry's id. `MAXLEN ~` trims whole
/// radix-tree nodes only, which is much cheaper than an exact cap; the length may exceed
/// `maxlen` by up to one node (100 entries by default). The age trim is exact (`MINID`, not
/// `MINID ~`): retention is a promise, and only the few expired entries are removed each time.
pub async fn append_capped(
    conn: &mut RedisConn,
    key: &str,
    cap: StreamCap,
    fields: &[(&str, &[u8])],
) -> Result<String, BusError> {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key).arg("MAXLEN").arg("~").arg(cap.maxlen).arg("*");
    for (name, value) in fields {
        cmd.arg(*name).arg(*value);
    }
    let op = || format!("XADD {key}");
    let mut pipe = redis::pipe();
    pipe.add_command(cmd);
    if cap.max_age_secs > 0 {
        // One key, so one node even in a Cluster: both go in one round trip.
        pipe.cmd("XTRIM").arg(key).arg("MINID").arg(cap.min_id(crate::instrument::unix_millis())).ignore();
    }
    let (id,): (Value,) = pipe.query_async(conn).await.map_err(|e| conn.error(op(), e))?;
    reply::string(id).map_err(|d| BusError::reply(conn.target(), op(), d))
}

/// Appends one entry to `key` unless the stream already holds `maxlen` entries: the length
/// check and the XADD are one script, so concurrent appenders cannot overshoot. Returns the new
/// entry's id, or `None` when the stream is full (the caller counts the drop).
pub async fn append_bounded(
    conn: &mut RedisConn,
    key: &str,
    maxlen: u64,
    fields: &[(&str, &[u8])],
) -> Result<Option<String>, BusError> {
    static SCRIPT: LazyLock<Script> = LazyLock::new(|| {
        Script::new(
            r"
            if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
            local args = {'XADD', KEYS[1], '*'}
            for i = 2, #ARGV do args[#args + 1] = ARGV[i] end
            return redis.call(unpack(args))
            ",
        )
    });
    let mut invocation = SCRIPT.key(key);
    invocation.arg(maxlen);
    for (name, value) in fields {
        invocation.arg(*name).arg(*value);
    }
    let op = || format!("XADD {key} (at most {maxlen} entries)");
    let id: Value = invocation.invoke_async(conn).await.map_err(|e| conn.error(op(), e))?;
    match id {
        Value::Nil => Ok(None),
        id => reply::string(id).map(Some).map_err(|d| BusError::reply(conn.target(), op(), d)),
    }
}

/// Creates consumer group `group` on `key` (and the stream, if missing), starting from the
/// beginning so entries appended before the first worker started are not skipped. Returns
/// false when the group already existed, which is the normal case after the first start.
pub async fn ensure_group(conn: &mut RedisConn, key: &str, group: &str) -> Result<bool, BusError> {
    let result = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async::<()>(conn)
        .await;
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(false),
        Err(e) => {
            // A Redis out of memory refuses XGROUP CREATE even when the group exists (the
            // command may write): ask whether it exists (a read) before calling it a failure.
            let err = conn.error(format!("XGROUP CREATE {key} {group}"), e);
            match group_info(conn, key).await {
                Ok(groups) if groups.iter().any(|g| g.name == group) => Ok(false),
                _ => Err(err),
            }
        }
    }
}

/// Reads up to `count` entries never delivered to any consumer of `group` (`>`), waiting up to
/// `block_ms` for the first one; `block_ms = 0` returns at once (unlike `BLOCK 0`, which waits
/// forever). An empty list means nothing arrived in time.
///
/// The connection stays busy while the read blocks: use a connection of its own per worker.
pub async fn read_group(
    conn: &mut RedisConn,
    key: &str,
    group: &str,
    consumer: &str,
    count: usize,
    block_ms: u64,
) -> Result<Vec<StreamEntry>, BusError> {
    // The reply timeout would cut a long block short and look like a dead server.
    let limit = RESPONSE_TIMEOUT.as_millis() as u64 / 2;
    if block_ms > limit {
        return Err(BusError::Config(format!("XREADGROUP block time {block_ms} ms exceeds {limit} ms")));
    }
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP").arg(group).arg(consumer).arg("COUNT").arg(count.max(1));
    if block_ms > 0 {
        cmd.arg("BLOCK").arg(block_ms);
    }
    cmd.arg("STREAMS").arg(key).arg(">");
    let op = || format!("XREADGROUP {key} {group}");
    let value: Value = cmd.query_async(conn).await.map_err(|e| conn.error(op(), e))?;
    reply::read_reply(value).map_err(|d| BusError::reply(conn.target(), op(), d))
}

/// Acknowledges `ids` in `group` and deletes them from the stream, in one atomic step (a
/// script): they leave the pending list for good, and the stream keeps only unfinished work.
/// Returns how many were pending.
pub async fn ack<S: AsRef<str>>(
    conn: &mut RedisConn,
    key: &str,
    group: &str,
    ids: &[S],
) -> Result<u64, BusError> {
    static SCRIPT: LazyLock<Script> = LazyLock::new(|| {
        Script::new(
            r"
            local acked = redis.call('XACK', KEYS[1], unpack(ARGV))
            table.remove(ARGV, 1)
            redis.call('XDEL', KEYS[1], unpack(ARGV))
            return acked
            ",
        )
    });
    if ids.is_empty() {
        return Ok(0);
    }
    let mut invocation = SCRIPT.key(key);
    invocation.arg(group);
    for id in ids {
        invocation.arg(id.as_ref());
    }
    invocation.invoke_async(conn).await.map_err(|e| conn.error(format!("XACK+XDEL {key} {group}"), e))
}

/// Deletes `ids` from the stream without acknowledging them: a client withdrawing requests
/// nobody answered. One still pending in a group stays in its pending list until a worker
/// acks or claims it (XAUTOCLAIM then reports it deleted). Returns how many were deleted.
pub async fn delete<S: AsRef<str>>(conn: &mut RedisConn, key: &str, ids: &[S]) -> Result<u64, BusError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let mut cmd = redis::cmd("XDEL");
    cmd.arg(key);
    for id in ids {
        cmd.arg(id.as_ref());
    }
    cmd.query_async(conn).await.map_err(|e| conn.error(format!("XDEL {key}"), e))
}

/// One `XAUTOCLAIM` step.
#[derive(Debug, Clone, Default)]
pub struct AutoClaim {
    /// Where the next step starts; `0-0` once the whole pending list has been scanned.
    pub next_start: String,
    /// Entries now owned by the claiming consumer (their delivery count went up by one).
    pub entries: Vec<StreamEntry>,
    /// Pending ids whose entries were trimmed away; Redis already dropped them from the
    /// pending list, so they need no ack.
    pub deleted: Vec<String>,
}

/// Transfers to `consumer` up to `count` entries that have been pending in `group` for at
/// least `min_idle_ms` (their consumer died or hangs), scanning from `start` (`0-0` first,
/// then the returned `next_start`).
pub async fn autoclaim(
    conn: &mut RedisConn,
    key: &str,
    group: &str,
    consumer: &str,
    min_idle_ms: u64,
    start: &str,
    count: usize,
) -> Result<AutoClaim, BusError> {
    let op = || format!("XAUTOCLAIM {key} {group}");
    let value: Value = redis::cmd("XAUTOCLAIM")
        .arg(key)
        .arg(group)
        .arg(consumer)
        .arg(min_idle_ms)
        .arg(start)
        .arg("COUNT")
        .arg(count.max(1))
        .query_async(conn)
        .await
        .map_err(|e| conn.error(op(), e))?;
    let decode = || -> reply::Shape<AutoClaim> {
        let mut parts = reply::list(value)?.into_iter();
        let next_start = reply::string(parts.next().ok_or("missing next start id")?)?;
        let entries = reply::entries(parts.next().ok_or("missing entries")?)?;
        // Redis 6.2 has no third element; 7.0 lists the trimmed ids there.
        let deleted = match parts.next() {
            Some(ids) => reply::list(ids)?.into_iter().map(reply::string).collect::<reply::Shape<_>>()?,
            None => Vec::new(),
        };
        Ok(AutoClaim { next_start, entries, deleted })
    };
    decode().map_err(|d| BusError::reply(conn.target(), op(), d))
}

/// How many times each of `ids` has been delivered in `group` (`XPENDING` extended form, one
/// exact-range query per id, pipelined). Ids that are not pending are absent from the map.
pub async fn delivery_counts<S: AsRef<str>>(
    conn: &mut RedisConn,
    key: &str,
    group: &str,
    ids: &[S],
) -> Result<HashMap<String, u64>, BusError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut pipe = redis::pipe();
    for id in ids {
        let id = id.as_ref();
        pipe.cmd("XPENDING").arg(key).arg(group).arg(id).arg(id).arg(1);
    }
    let op = || format!("XPENDING {key} {group}");
    let replies: Vec<Value> = pipe.query_async(conn).await.map_err(|e| conn.error(op(), e))?;
    let decode = || -> reply::Shape<HashMap<String, u64>> {
        let mut counts = HashMap::new();
        for reply_for_id in replies {
            // Each row: [id, consumer, idle ms, deliveries].
            for row in reply::list(reply_for_id)? {
                let mut cols = reply::list(row)?.into_iter();
                let id = reply::string(cols.next().ok_or("missing id")?)?;
                let deliveries = reply::int(cols.nth(2).ok_or("missing delivery count")?)?;
                counts.insert(id, deliveries.max(0) as u64);
            }
        }
        Ok(counts)
    };
    decode().map_err(|d| BusError::reply(conn.target(), op(), d))
}

/// Appends to `dead_key` (capped by `cap`, see [`append_capped`]) the original fields of `entry`, plus
/// `reason` and `original_id`, and acknowledges and deletes `entry` in `group` on
/// `source_key`, in one atomic step. Returns the dead-letter id.
///
/// Atomic so a crash cannot lose the entry (acked, never dead-lettered) or duplicate it
/// (dead-lettered, still pending, dead-lettered again). Both keys must share a hash tag
/// (`{<group>}`) so that a Cluster keeps them on one node.
pub async fn dead_letter(
    conn: &mut RedisConn,
    source_key: &str,
    group: &str,
    dead_key: &str,
    cap: StreamCap,
    entry: &StreamEntry,
    reason: &str,
) -> Result<String, BusError> {
    // The original fields go first so `reason` and `original_id` win if an entry happened to
    // carry fields of those names.
    static SCRIPT: LazyLock<Script> = LazyLock::new(|| {
        Script::new(
            r"
            local args = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*'}
            for i = 6, #ARGV do args[#args + 1] = ARGV[i] end
            args[#args + 1] = 'reason'
            args[#args + 1] = ARGV[4]
            args[#args + 1] = 'original_id'
            args[#args + 1] = ARGV[3]
            local id = redis.call(unpack(args))
            redis.call('XACK', KEYS[1], ARGV[2], ARGV[3])
            redis.call('XDEL', KEYS[1], ARGV[3])
            if ARGV[5] ~= '0' then redis.call('XTRIM', KEYS[2], 'MINID', ARGV[5]) end
            return id
            ",
        )
    });
    let mut invocation = SCRIPT.key(source_key);
    let min_id = cap.min_id(crate::instrument::unix_millis());
    invocation.key(dead_key).arg(cap.maxlen).arg(group).arg(&entry.id).arg(reason).arg(min_id);
    for (name, value) in entry.field_pairs() {
        invocation.arg(name).arg(value);
    }
    let op = || format!("dead-letter {source_key} {} -> {dead_key}", entry.id);
    let id: Value = invocation.invoke_async(conn).await.map_err(|e| conn.error(op(), e))?;
    reply::string(id).map_err(|d| BusError::reply(conn.target(), op(), d))
}

/// The number of entries in the stream (0 when it does not exist).
pub async fn stream_len(conn: &mut RedisConn, key: &str) -> Result<u64, BusError> {
    redis::cmd("XLEN").arg(key).query_async(conn).await.map_err(|e| conn.error(format!("XLEN {key}"), e))
}

/// A consumer group's state, from `XINFO GROUPS`, for the lag and pending metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// Consumers that ever read in this group (dead ones included until deleted).
    pub consumers: u64,
    /// Entries delivered and not yet acknowledged.
    pub pending: u64,
    /// The last id delivered to any consumer.
    pub last_delivered_id: String,
    /// Entries delivered so far (Redis 7+; `None` when unknown).
    pub entries_read: Option<u64>,
    /// Entries not yet delivered (Redis 7+; `None` when Redis cannot tell, e.g. after
    /// trimming past undelivered entries).
    pub lag: Option<u64>,
}

/// The consumer groups of `key`; empty when the stream does not exist yet.
pub async fn group_info(conn: &mut RedisConn, key: &str) -> Result<Vec<GroupInfo>, BusError> {
    let op = || format!("XINFO GROUPS {key}");
    let value: Value = match redis::cmd("XINFO").arg("GROUPS").arg(key).query_async(conn).await {
        Ok(v) => v,
        Err(e) if e.detail().is_some_and(|d| d.contains("no such key")) => return Ok(Vec::new()),
        Err(e) => return Err(conn.error(op(), e)),
    };
    let decode = || -> reply::Shape<Vec<GroupInfo>> {
        let mut groups = Vec::new();
        for group in reply::list(value)? {
            let mut info = GroupInfo::default();
            for (k, v) in reply::pairs(group)? {
                let opt = |v: Value| -> reply::Shape<Option<u64>> {
                    if v == Value::Nil { Ok(None) } else { Ok(Some(reply::int(v)?.max(0) as u64)) }
                };
                match reply::string(k)?.as_str() {
                    "name" => info.name = reply::string(v)?,
                    "consumers" => info.consumers = opt(v)?.unwrap_or(0),
                    "pending" => info.pending = opt(v)?.unwrap_or(0),
                    "last-delivered-id" => info.last_delivered_id = reply::string(v)?,
                    "entries-read" => info.entries_read = opt(v)?,
                    "lag" => info.lag = opt(v)?,
                    _ => {} // newer servers may add fields
                }
            }
            groups.push(info);
        }
        Ok(groups)
    };
    decode().map_err(|d| BusError::reply(conn.target(), op(), d))
}

/// One consumer of a group, from `XINFO CONSUMERS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    pub name: String,
    /// Entries delivered to it and not acknowledged.
    pub pending: u64,
    /// Milliseconds since it last read (or claimed).
    pub idle_ms: u64,
}

/// The consumers of `group` on `key` (empty if the stream or the group does not exist).
pub async fn consumers(conn: &mut RedisConn, key: &str, group: &str) -> Result<Vec<ConsumerInfo>, BusError> {
    let op = || format!("XINFO CONSUMERS {key} {group}");
    let value: Value = match redis::cmd("XINFO").arg("CONSUMERS").arg(key).arg(group).query_async(conn).await
    {
        Ok(v) => v,
        Err(e) if e.code() == Some("NOGROUP") || e.detail().is_some_and(|d| d.contains("no such key")) => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(conn.error(op(), e)),
    };
    let decode = || -> reply::Shape<Vec<ConsumerInfo>> {
        let mut out = Vec::new();
        for consumer in reply::list(value)? {
            let mut info = ConsumerInfo { name: String::new(), pending: 0, idle_ms: 0 };
            for (k, v) in reply::pairs(consumer)? {
                match reply::string(k)?.as_str() {
                    "name" => info.name = reply::string(v)?,
                    "pending" => info.pending = reply::int(v)?.max(0) as u64,
                    "idle" => info.idle_ms = reply::int(v)?.max(0) as u64,
                    _ => {} // `inactive` (7.2) and later fields
                }
            }
            out.push(info);
        }
        Ok(out)
    };
    decode().map_err(|d| BusError::reply(conn.target(), op(), d))
}

/// This consumer's own pending entries from `start` on (`XREADGROUP ... STREAMS key <start>`,
/// no blocking): what it read before a reconnect and never acked.
pub async fn read_own_pending(
    conn: &mut RedisConn,
    key: &str,
    group: &str,
    consumer: &str,
    count: usize,
    start: &str,
) -> Result<Vec<StreamEntry>, BusError> {
    let op = || format!("XREADGROUP {key} {group} {start}");
    let value: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(count.max(1))
        .arg("STREAMS")
        .arg(key)
        .arg(start)
        .query_async(conn)
        .await
        .map_err(|e| conn.error(op(), e))?;
    reply::read_reply(value).map_err(|d| BusError::reply(conn.target(), op(), d))
}

/// How many entries are pending for `consumer` in `group` (0 if the stream or group is gone).
pub async fn pending_for(
    conn: &mut RedisConn,
    key: &str,
    group: &str,
    consumer: &str,
) -> Result<u64, BusError> {
    let op = || format!("XPENDING {key} {group} {consumer}");
    let rows: Value = match redis::cmd("XPENDING")
        .arg(key)
        .arg(group)
        .arg("-")
        .arg("+")
        .arg(1_000_000)
        .arg(consumer)
        .query_async(conn)
        .await
    {
        Ok(v) => v,
        Err(e) if e.code() == Some("NOGROUP") => return Ok(0),
        Err(e) => return Err(conn.error(op(), e)),
    };
    reply::list(rows).map(|r| r.len() as u64).map_err(|d| BusError::reply(conn.target(), op(), d))
}

/// Removes `consumer` from `group`. Only call it when [`pending_for`] is 0: Redis drops the
/// consumer's pending entries with it, and nobody could claim them any more.
pub async fn delete_consumer(
    conn: &mut RedisConn,
    key: &str,
    group: &str,
    consumer: &str,
) -> Result<(), BusError> {
    redis::cmd("XGROUP")
        .arg("DELCONSUMER")
        .arg(key)
        .arg(group)
        .arg(consumer)
        .query_async::<i64>(conn)
        .await
        .map(|_| ())
        .map_err(|e| conn.error(format!("XGROUP DELCONSUMER {key} {group} {consumer}"), e))
}
