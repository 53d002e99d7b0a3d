//! The visitor records in Redis and the calls that read and change them.
//!
//! Every change is one call of `visitor.lua` (its header documents the record), so it is
//! atomic; reads are plain commands. Every key is under the `{visitors}` hash tag: one slot of a
//! Cluster, the shared node of named nodes.

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::{Script, Value};
use serde::Serialize;

use super::{Resolution, ResolveStatus, Sighting, VisitorSettings};
use crate::bus::{BusError, Keys, RedisConn};
use crate::recognize::gallery::{pack, unpack};

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("visitor.lua")));

/// Longest the change log gets (approximately); a worker further behind reloads its index.
pub const LOG_MAXLEN: u64 = 10_000;
/// Tracks remembered per visitor; older finished ones are dropped (the counts stay).
const MAX_TRACKS_PER_VISITOR: u32 = 64;

/// One visitor as stored, for listing, showing and enrolling.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VisitorRecord {
    pub id: String,
    /// Recogniser of the embeddings.
    pub model: String,
    /// First and last sighting, Unix ms.
    pub first_seen: u64,
    pub last_seen: u64,
    /// Tracks (visits) of this visitor, and how many of them came after an earlier one left.
    pub visits: u64,
    pub returns: u64,
    /// Quality of the best shot (face size x detector score).
    pub best_quality: f32,
    /// Best similarity a later track matched this visitor with (0 if never matched).
    pub best_match: f32,
    /// Cameras the visitor was seen at, with the last sighting there (Unix ms), by name.
    pub cameras: Vec<(String, u64)>,
    /// Embeddings held, unit length, best shots'.
    #[serde(skip)]
    pub embeddings: Vec<Vec<f32>>,
    /// How many embeddings are held.
    pub embedding_count: usize,
}

/// A change in the visitor log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The log entry id.
    pub log_id: String,
    pub id: String,
    /// The record was created or changed (reload it), rather than removed.
    pub changed: bool,
}

fn invocation<'a>(keys: &Keys, op: &str, now_ms: u64, ttl_secs: u64) -> redis::ScriptInvocation<'a> {
    let mut inv = SCRIPT.key(keys.visitors_index());
    inv.key(keys.visitors_log())
        .key(keys.visitors_evicted())
        .arg(op)
        .arg(now_ms)
        .arg(ttl_secs.max(1))
        .arg(keys.visitors_base())
        .arg(LOG_MAXLEN);
    inv
}

/// The arguments `resolve` and `add` share (ARGV[6..16] of the script).
fn sighting_args(
    inv: &mut redis::ScriptInvocation<'_>,
    id: &str,
    s: &Sighting<'_>,
    settings: &VisitorSettings,
) {
    inv.arg(id)
        .arg(s.track)
        .arg(s.camera)
        .arg(if s.quality.is_finite() { s.quality } else { 0.0 })
        .arg(pack(std::slice::from_ref(&s.embedding.to_vec())))
        .arg(s.embedding.len())
        .arg(settings.embeddings)
        .arg(s.jpeg)
        .arg(&settings.model)
        .arg(settings.max_visitors)
        .arg(MAX_TRACKS_PER_VISITOR);
}

/// What the caller of [`resolve`] knows: the log id its index is current to, its best match
/// there (already above the threshold), and the id to create if nobody matches.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub since: Option<&'a str>,
    pub best: Option<(&'a str, f32)>,
    pub new_id: &'a str,
}

/// Gives the track of `sighting` a visitor: `candidate.best` if it still exists, or a visitor
/// created or changed since `candidate.since` that matches better and above the threshold;
/// otherwise a new visitor `candidate.new_id`. Atomic, so two callers with the same new stranger
/// end with one visitor. `sighting.embedding` must be unit length.
pub async fn resolve(
    conn: &mut RedisConn,
    keys: &Keys,
    settings: &VisitorSettings,
    sighting: &Sighting<'_>,
    candidate: Candidate<'_>,
    now_ms: u64,
) -> Result<Resolution, BusError> {
    let mut inv = invocation(keys, "resolve", now_ms, settings.ttl_secs);
    sighting_args(&mut inv, candidate.new_id, sighting, settings);
    let (cid, cscore) = candidate.best.unwrap_or(("", -2.0));
    inv.arg(candidate.since.unwrap_or("")).arg(cid).arg(cscore).arg(settings.threshold);
    let op = || format!("resolve the visitor of track {}", sighting.track);
    let reply: Value = inv.invoke_async(conn).await.map_err(|e| conn.error(op(), e))?;
    decode_resolution(reply).map_err(|d| BusError::reply(conn.target(), op(), d))
}

/// Adds a later shot of a track to its visitor `id` (embedding, best shot, camera). `None` when
/// the visitor is gone (expired, forgotten, evicted).
pub async fn add(
    conn: &mut RedisConn,
    keys: &Keys,
    settings: &VisitorSettings,
    id: &str,
    sighting: &Sighting<'_>,
    now_ms: u64,
) -> Result<Option<Resolution>, BusError> {
    let mut inv = invocation(keys, "add", now_ms, settings.ttl_secs);
    sighting_args(&mut inv, id, sighting, settings);
    let op = || format!("add a shot of track {} to visitor {id}", sighting.track);
    let reply: Value = inv.invoke_async(conn).await.map_err(|e| conn.error(op(), e))?;
    let r = decode_resolution(reply).map_err(|d| BusError::reply(conn.target(), op(), d))?;
    Ok((r.status != ResolveStatus::Missing).then_some(r))
}

/// Marks `track` of visitor `id` as left at `last_seen` (idempotent), so that the visitor's
/// next track counts as a return. False when the visitor (or the track in it) is gone.
pub async fn mark_left(
    conn: &mut RedisConn,
    keys: &Keys,
    id: &str,
    track: &str,
    last_seen: u64,
    now_ms: u64,
    ttl_secs: u64,
) -> Result<bool, BusError> {
    let mut inv = invocation(keys, "left", now_ms, ttl_secs);
    inv.arg(id).arg(track).arg(last_seen);
    let n: i64 =
        inv.invoke_async(conn).await.map_err(|e| conn.error(format!("mark visitor {id} left"), e))?;
    Ok(n == 1)
}

/// Deletes visitor `id` everywhere (record, best shot, index) and tells the workers. Returns
/// whether it existed.
pub async fn delete(conn: &mut RedisConn, keys: &Keys, id: &str, now_ms: u64) -> Result<bool, BusError> {
    let inv = {
        let mut inv = invocation(keys, "delete", now_ms, 1);
        inv.arg(id);
        inv
    };
    let n: i64 = inv.invoke_async(conn).await.map_err(|e| conn.error(format!("delete visitor {id}"), e))?;
    Ok(n == 1)
}

/// Visitor `id` as stored, or `None` when it does not exist (never did, expired, or deleted).
pub async fn get(conn: &mut RedisConn, keys: &Keys, id: &str) -> Result<Option<VisitorRecord>, BusError> {
    let key = keys.visitor(id);
    let fields: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
        .arg(&key)
        .query_async(conn)
        .await
        .map_err(|e| conn.error(format!("HGETALL {key}"), e))?;
    if fields.is_empty() {
        return Ok(None);
    }
    parse_record(id, &fields).map(Some).map_err(|d| BusError::reply(conn.target(), format!("read {key}"), d))
}

/// Every visitor in the index, most recently seen first, that still has a record.
pub async fn list(conn: &mut RedisConn, keys: &Keys) -> Result<Vec<VisitorRecord>, BusError> {
    let index = keys.visitors_index();
    let ids: Vec<String> = redis::cmd("ZREVRANGE")
        .arg(&index)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await
        .map_err(|e| conn.error(format!("ZREVRANGE {index}"), e))?;
    load_many(conn, keys, &ids).await
}

/// The records of `ids` that exist, in order, fetched in pipelined chunks.
pub async fn load_many(
    conn: &mut RedisConn,
    keys: &Keys,
    ids: &[String],
) -> Result<Vec<VisitorRecord>, BusError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(512) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("HGETALL").arg(keys.visitor(id));
        }
        let rows: Vec<HashMap<String, Vec<u8>>> =
            pipe.query_async(conn).await.map_err(|e| conn.error("HGETALL of visitors", e))?;
        for (id, fields) in chunk.iter().zip(rows) {
            if fields.is_empty() {
                continue;
            }
            match parse_record(id, &fields) {
                Ok(r) => out.push(r),
                // One bad record must not hide the others; it expires with its TTL.
                Err(detail) => tracing::warn!(visitor = %id, %detail, "Skipping a malformed visitor record."),
            }
        }
    }
    Ok(out)
}

/// The JPEG of visitor `id`'s best shot, if it is still stored.
pub async fn best_shot(conn: &mut RedisConn, keys: &Keys, id: &str) -> Result<Option<Vec<u8>>, BusError> {
    let key = keys.visitor_shot(id);
    redis::cmd("GET").arg(&key).query_async(conn).await.map_err(|e| conn.error(format!("GET {key}"), e))
}

/// Visitors evicted by the cap so far, and visitors in the index.
pub async fn counts(conn: &mut RedisConn, keys: &Keys) -> Result<(u64, u64), BusError> {
    let (evicted, stored): (Option<u64>, u64) = redis::pipe()
        .get(keys.visitors_evicted())
        .zcard(keys.visitors_index())
        .query_async(conn)
        .await
        .map_err(|e| conn.error("visitor counts", e))?;
    Ok((evicted.unwrap_or(0), stored))
}

/// The id of the newest log entry ("0-0" when the log is empty): an index loaded after reading
/// it is current to at least that entry.
pub async fn log_head(conn: &mut RedisConn, keys: &Keys) -> Result<String, BusError> {
    let log = keys.visitors_log();
    let rows: Vec<(String, HashMap<String, String>)> = redis::cmd("XREVRANGE")
        .arg(&log)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await
        .map_err(|e| conn.error(format!("XREVRANGE {log}"), e))?;
    Ok(rows.into_iter().next().map_or_else(|| "0-0".to_owned(), |(id, _)| id))
}

/// Up to `count` changes after log entry `after`, and whether the log was trimmed past `after`
/// (entries the caller never saw are gone: it must reload).
pub async fn changes_since(
    conn: &mut RedisConn,
    keys: &Keys,
    after: &str,
    count: usize,
) -> Result<(Vec<Change>, bool), BusError> {
    let log = keys.visitors_log();
    type Rows = Vec<(String, HashMap<String, String>)>;
    let (first, rows): (Rows, Rows) = redis::pipe()
        .cmd("XRANGE")
        .arg(&log)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .cmd("XRANGE")
        .arg(&log)
        .arg(format!("({after}"))
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await
        .map_err(|e| conn.error(format!("XRANGE {log}"), e))?;
    let trimmed = first.first().is_some_and(|(oldest, _)| stream_id_after(oldest, after)) && after != "0-0";
    let changes = rows
        .into_iter()
        .filter_map(|(log_id, f)| {
            let id = f.get("id")?.clone();
            let changed = matches!(f.get("op").map(String::as_str), Some("created" | "updated"));
            Some(Change { log_id, id, changed })
        })
        .collect();
    Ok((changes, trimmed))
}

/// Whether stream id `a` comes after `b` (ids are `<ms>-<seq>`).
fn stream_id_after(a: &str, b: &str) -> bool {
    let parse = |s: &str| {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        (ms.parse::<u64>().unwrap_or(0), seq.parse::<u64>().unwrap_or(0))
    };
    parse(a) > parse(b)
}

fn decode_resolution(reply: Value) -> Result<Resolution, String> {
    let Value::Array(items) = reply else {
        return Err(format!("expected an array, got {reply:?}"));
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| "not UTF-8".to_owned()),
        Value::SimpleString(s) => Ok(s.clone()),
        other => Err(format!("expected a string, got {other:?}")),
    };
    let [id, status, score] = items.as_slice() else {
        return Err(format!("expected [id, status, score], got {items:?}"));
    };
    let status = match text(status)?.as_str() {
        "created" => ResolveStatus::Created,
        "attached" => ResolveStatus::Attached,
        "returning" => ResolveStatus::Returning,
        "same" => ResolveStatus::SameTrack,
        "missing" => ResolveStatus::Missing,
        other => return Err(format!("unknown status {other:?}")),
    };
    let score = text(score)?.parse::<f32>().map_err(|e| format!("score: {e}"))?;
    Ok(Resolution { id: text(id)?, status, score })
}

fn parse_record(id: &str, f: &HashMap<String, Vec<u8>>) -> Result<VisitorRecord, String> {
    let text = |name: &str| -> Result<&str, String> {
        let raw = f.get(name).ok_or_else(|| format!("missing field `{name}`"))?;
        std::str::from_utf8(raw).map_err(|_| format!("field `{name}` is not UTF-8"))
    };
    fn num<T: std::str::FromStr>(name: &str, s: &str) -> Result<T, String> {
        s.parse().map_err(|_| format!("field `{name}` is not a number: {s:?}"))
    }
    let dim: usize = num("dim", text("dim")?)?;
    if !(1..=4096).contains(&dim) {
        return Err(format!("field `dim` is {dim}, not a plausible embedding length"));
    }
    let n: usize = num("n", text("n")?)?;
    let mut embeddings = Vec::new();
    for i in 0..n.min(64) {
        let Some(bytes) = f.get(&format!("e:{i}")) else { continue };
        match unpack(bytes, dim).as_deref() {
            Some([e]) => embeddings.push(e.clone()),
            _ => return Err(format!("embedding e:{i} is {} bytes, not {} x 4", bytes.len(), dim)),
        }
    }
    let mut cameras: Vec<(String, u64)> = f
        .iter()
        .filter_map(|(k, v)| {
            let camera = k.strip_prefix("c:")?;
            Some((camera.to_owned(), std::str::from_utf8(v).ok()?.parse().ok()?))
        })
        .collect();
    cameras.sort();
    // Absent (an older record) reads as 0.
    let float = |name: &str| -> Result<f32, String> {
        if f.contains_key(name) { num(name, text(name)?) } else { Ok(0.0) }
    };
    Ok(VisitorRecord {
        id: id.to_owned(),
        model: text("model")?.to_owned(),
        first_seen: num("first_seen", text("first_seen")?)?,
        last_seen: num("last_seen", text("last_seen")?)?,
        visits: num("visits", text("visits")?)?,
        returns: num("returns", text("returns")?)?,
        best_quality: float("best_q")?,
        best_match: float("best_match")?,
        cameras,
        embedding_count: embeddings.len(),
        embeddings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_compare_by_time_then_sequence() {
        assert!(stream_id_after("5-0", "4-9"));
        assert!(stream_id_after("5-2", "5-1"));
        assert!(!stream_id_after("5-1", "5-1"));
        assert!(!stream_id_after("10-0", "100-0"));
    }

    #[test]
    fn a_record_needs_plausible_numbers() {
        let mut f: HashMap<String, Vec<u8>> = [
            ("model", "m"),
            ("dim", "2"),
            ("n", "1"),
            ("first_seen", "1"),
            ("last_seen", "2"),
            ("visits", "1"),
            ("returns", "0"),
            ("best_q", "40.5"),
            ("c:door", "2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
        f.insert("e:0".into(), pack(&[vec![0.6, 0.8]]));
        let r = parse_record("v-x", &f).unwrap();
        assert_eq!(
            (r.embedding_count, r.cameras.clone(), r.best_quality),
            (1, vec![("door".into(), 2)], 40.5)
        );
        f.insert("e:0".into(), vec![1, 2, 3]);
        assert!(parse_record("v-x", &f).unwrap_err().contains("e:0"));
        f.insert("dim".into(), b"4611686018427387904".to_vec());
        assert!(parse_record("v-x", &f).unwrap_err().contains("dim"));
    }
}
