//! `redeye audit`: what a live store holds, family by family, checked against the configured
//! retention. Every biometric artefact (a face crop, an embedding outside the gallery, a result
//! or event naming someone) must have a TTL or a cap and be no older than its retention.
//!
//! The enrolled gallery is kept on purpose until `forget` (enrolment is consent), so it is
//! reported but has no limit. Counting scans every node ([`RedisConn::scan_keys`]): run it
//! from a shell now and then, not in a loop.

use std::collections::{BTreeMap, HashSet};

use futures::StreamExt as _;
use serde::Serialize;

use crate::bus::streams::StreamCap;
use crate::bus::{Bus, BusError, Keys, RedisConn};
use crate::config::Config;
use crate::instrument::unix_millis;
use crate::recognize::request::REPLY_TTL_SECS;

/// Keys measured with `MEMORY USAGE` per family; the family's memory is extrapolated from them.
const MEMORY_SAMPLE: usize = 100;
/// Commands in flight at once (on multiplexed connections, so these are pipelined).
const CONCURRENCY: usize = 64;
/// Tolerance on TTLs and ages: clocks, and a TTL set a moment ago.
const SLACK_SECS: u64 = 60;
/// `MAXLEN ~` may leave up to one radix-tree node (100 entries by default) over the cap.
const APPROX_TRIM_SLACK: u64 = 100;

/// The configured limits the store is checked against.
#[derive(Debug, Clone)]
pub struct Limits {
    pub cache_ttl_secs: u64,
    pub record_ttl_secs: u64,
    pub visitor_ttl_secs: u64,
    pub faces_maxlen: u64,
    pub dead: StreamCap,
    pub events: StreamCap,
}

impl Limits {
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            cache_ttl_secs: config.redis.cache_ttl_secs,
            record_ttl_secs: config.tracking.record_ttl_secs,
            visitor_ttl_secs: config.visitors.ttl_secs,
            faces_maxlen: config.redis.faces_stream_maxlen,
            dead: StreamCap {
                maxlen: config.redis.dead_stream_maxlen,
                max_age_secs: config.retention.dead_letters_secs,
            },
            events: StreamCap {
                maxlen: config.redis.events_stream_maxlen,
                max_age_secs: config.retention.events_secs,
            },
        }
    }
}

/// A family of redeye keys, as the README's retention table lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Gallery,
    PersonIndexes,
    Cache,
    Faces,
    DeadLetters,
    Events,
    Tracks,
    Replies,
    Visitors,
    VisitorBookkeeping,
    Other,
}

/// How a family must be bounded.
enum Rule {
    /// Every key expires within this many seconds (`what` names the setting).
    Ttl { secs: u64, what: &'static str },
    /// Each stream holds at most `maxlen` entries (`approx`: trimmed with `MAXLEN ~`) and none
    /// older than `max_age_secs` (0: no age limit).
    Stream { maxlen: u64, approx: bool, max_age_secs: u64, what: &'static str },
    /// Kept on purpose, or not biometric: reported only.
    Report(&'static str),
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Gallery => "gallery",
            Kind::PersonIndexes => "person indexes",
            Kind::Cache => "cache",
            Kind::Faces => "faces streams",
            Kind::DeadLetters => "dead letters",
            Kind::Events => "events",
            Kind::Tracks => "tracks",
            Kind::Replies => "identify replies",
            Kind::Visitors => "visitors",
            Kind::VisitorBookkeeping => "visitor index and log",
            Kind::Other => "other",
        }
    }

    fn rule(self, l: &Limits) -> Rule {
        match self {
            Kind::Gallery => Rule::Report("kept until `redeye forget` (enrolment is consent)"),
            // The longest any index keeps (see `privacy::index`).
            Kind::PersonIndexes => Rule::Ttl {
                secs: l.cache_ttl_secs.max(l.record_ttl_secs * 2).max(l.events.max_age_secs),
                what: "the TTL of what they index",
            },
            Kind::Cache => Rule::Ttl { secs: l.cache_ttl_secs, what: "[redis] cache_ttl_secs" },
            Kind::Faces => Rule::Stream {
                maxlen: l.faces_maxlen,
                approx: false,
                max_age_secs: 0,
                what: "[redis] faces_stream_maxlen; entries are deleted when acknowledged",
            },
            Kind::DeadLetters => Rule::Stream {
                maxlen: l.dead.maxlen,
                approx: true,
                max_age_secs: l.dead.max_age_secs,
                what: "[redis] dead_stream_maxlen, [retention] dead_letters_secs",
            },
            Kind::Events => Rule::Stream {
                maxlen: l.events.maxlen,
                approx: true,
                max_age_secs: l.events.max_age_secs,
                what: "[redis] events_stream_maxlen, [retention] events_secs",
            },
            Kind::Tracks => Rule::Ttl { secs: l.record_ttl_secs, what: "[tracking] record_ttl_secs" },
            Kind::Replies => Rule::Ttl { secs: REPLY_TTL_SECS, what: "fixed; deleted once read" },
            Kind::Visitors => Rule::Ttl { secs: l.visitor_ttl_secs, what: "[visitors] ttl_secs" },
            Kind::VisitorBookkeeping => {
                Rule::Report("ids and times only; swept and capped by the visitor script")
            }
            Kind::Other => Rule::Report("not a redeye key this version knows"),
        }
    }

    /// The family of `key`, from the key layout of [`Keys`].
    fn of(key: &str, keys: &Keys, image_prefix: &str) -> Kind {
        let prefix = keys.prefix();
        if key == keys.events_stream() {
            return Kind::Events;
        }
        if key.strip_prefix(image_prefix).is_some_and(|r| r.starts_with(':')) {
            return Kind::Cache;
        }
        if let Some(rest) = key.strip_prefix(&format!("{prefix}:{{gallery}}:")) {
            let index = ["cached:", "tracks:", "events:"].iter().any(|p| rest.starts_with(p));
            return if index { Kind::PersonIndexes } else { Kind::Gallery };
        }
        if let Some(rest) = key.strip_prefix(&keys.visitors_base()) {
            let record = rest.starts_with("v:") || rest.starts_with("shot:");
            return if record { Kind::Visitors } else { Kind::VisitorBookkeeping };
        }
        if let Some(rest) = key.strip_prefix(&format!("{prefix}:{{")) {
            match rest.split_once("}:").map(|(_, r)| r) {
                Some("faces") => return Kind::Faces,
                Some("dead") => return Kind::DeadLetters,
                Some(r) if r.starts_with("track:") => return Kind::Tracks,
                Some(r) if r.starts_with("reply:") => return Kind::Replies,
                _ => {}
            }
        }
        Kind::Other
    }
}

/// One family's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Family {
    pub family: &'static str,
    /// Keys found.
    pub keys: u64,
    /// Stream entries, summed over the family's streams (streams only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// Memory in bytes: `MEMORY USAGE` of up to 100 keys, extrapolated to all of them.
    pub memory_bytes: u64,
    /// How many keys `memory_bytes` was measured on.
    pub memory_sampled: u64,
    /// Age of the oldest item in seconds: a stream's oldest entry, or for keys with a TTL the
    /// configured TTL minus the shortest TTL left (the time since the oldest write).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_secs: Option<u64>,
    /// Longest TTL left, in seconds (keys with a TTL only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_max_secs: Option<u64>,
    /// Keys without a TTL.
    pub without_ttl: u64,
    /// The TTL or cap this family must respect, and where it is configured.
    pub limit: String,
}

/// The whole audit.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when nothing biometric lacks a TTL or cap or is older than its retention.
    pub ok: bool,
    pub families: Vec<Family>,
    /// Why `ok` is false, one line each.
    pub problems: Vec<String>,
}

/// Scans every node of `bus` and checks each family against `limits`.
pub async fn audit(bus: &Bus, image_prefix: &str, limits: &Limits) -> Result<Report, BusError> {
    let keys = bus.keys();
    let mut patterns =
        vec![format!("{}:*", glob_escape(keys.prefix())), format!("{}:*", glob_escape(image_prefix))];
    patterns.push(glob_escape(keys.events_stream()));
    let mut by_kind: BTreeMap<Kind, Vec<(RedisConn, String)>> = BTreeMap::new();
    for mut conn in bus.nodes() {
        let mut seen = HashSet::new();
        for pattern in &patterns {
            for key in conn.scan_keys(pattern).await? {
                if seen.insert(key.clone()) {
                    by_kind.entry(Kind::of(&key, keys, image_prefix)).or_default().push((conn.clone(), key));
                }
            }
        }
    }
    let now_ms = unix_millis();
    let mut report = Report { ok: true, families: Vec::new(), problems: Vec::new() };
    for (kind, found) in by_kind {
        let family = measure(kind, &found, limits, now_ms, &mut report.problems).await?;
        report.families.push(family);
    }
    report.ok = report.problems.is_empty();
    Ok(report)
}

/// Measures one family's keys and adds a line to `problems` for each limit they break.
async fn measure(
    kind: Kind,
    found: &[(RedisConn, String)],
    limits: &Limits,
    now_ms: u64,
    problems: &mut Vec<String>,
) -> Result<Family, BusError> {
    let name = kind.name();
    let sampled: Vec<u64> = futures::stream::iter(found.iter().take(MEMORY_SAMPLE))
        .map(|(conn, key)| memory_usage(conn.clone(), key))
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let memory_bytes = if sampled.is_empty() {
        0
    } else {
        sampled.iter().sum::<u64>() * found.len() as u64 / sampled.len() as u64
    };
    let mut family = Family {
        family: name,
        keys: found.len() as u64,
        entries: None,
        memory_bytes,
        memory_sampled: sampled.len() as u64,
        oldest_secs: None,
        ttl_max_secs: None,
        without_ttl: 0,
        limit: String::new(),
    };
    let ttls: Vec<(&str, i64)> =
        futures::stream::iter(found)
            .map(|(conn, key)| async move {
                Ok::<_, BusError>((key.as_str(), ttl_secs(conn.clone(), key).await?))
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
    let without: Vec<&str> = ttls.iter().filter(|(_, t)| *t < 0).map(|(k, _)| *k).collect();
    family.without_ttl = without.len() as u64;
    let ttl_max = ttls.iter().map(|(_, t)| *t).filter(|t| *t >= 0).max();
    family.ttl_max_secs = ttl_max.map(|t| t as u64);
    match kind.rule(limits) {
        Rule::Report(why) => family.limit = why.to_owned(),
        Rule::Ttl { secs, what } => {
            family.limit = format!("TTL at most {secs} s ({what})");
            let ttl_min = ttls.iter().map(|(_, t)| *t).filter(|t| *t >= 0).min();
            family.oldest_secs = ttl_min.map(|t| secs.saturating_sub(t as u64));
            if let Some(first) = without.first() {
                problems.push(format!("{name}: {} key(s) without a TTL, e.g. {first}", without.len()));
            }
            // -1 (no TTL) is reported above, not as a long TTL.
            let long: Vec<&(&str, i64)> =
                ttls.iter().filter(|(_, t)| *t >= 0 && *t as u64 > secs + SLACK_SECS).collect();
            if let Some((key, t)) = long.first() {
                problems.push(format!(
                    "{name}: {} key(s) with a TTL longer than {secs} s ({what}), e.g. {key} ({t} s left)",
                    long.len()
                ));
            }
        }
        Rule::Stream { maxlen, approx, max_age_secs, what } => {
            family.limit = match max_age_secs {
                0 => format!("at most {maxlen} entries ({what})"),
                age => format!("at most ~{maxlen} entries and {age} s ({what})"),
            };
            let mut entries = 0;
            let mut oldest: Option<u64> = None;
            for (conn, key) in found {
                let (len, first_ms) = stream_extent(conn.clone(), key).await?;
                entries += len;
                let age = first_ms.map(|ms| now_ms.saturating_sub(ms) / 1000);
                oldest = oldest.max(age);
                let cap = if approx { maxlen + APPROX_TRIM_SLACK } else { maxlen };
                if len > cap {
                    problems.push(format!("{name}: {key} holds {len} entries, more than {maxlen} ({what})"));
                }
                if let Some(age) = age.filter(|a| max_age_secs > 0 && *a > max_age_secs + SLACK_SECS) {
                    problems.push(format!(
                        "{name}: the oldest entry of {key} is {age} s old, retention is {max_age_secs} s ({what}); \
                         streams are trimmed by age when an entry is appended"
                    ));
                }
            }
            family.entries = Some(entries);
            family.oldest_secs = oldest;
            // A stream needs no TTL: its cap is its bound.
            family.without_ttl = 0;
        }
    }
    Ok(family)
}

/// `MEMORY USAGE key` in bytes (0 when the key vanished meanwhile).
async fn memory_usage(mut conn: RedisConn, key: &str) -> Result<u64, BusError> {
    let n: Option<u64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .query_async(&mut conn)
        .await
        .map_err(|e| conn.error(format!("MEMORY USAGE {key}"), e))?;
    Ok(n.unwrap_or(0))
}

/// `TTL key`: seconds left, -1 without a TTL, -2 gone.
async fn ttl_secs(mut conn: RedisConn, key: &str) -> Result<i64, BusError> {
    let t: i64 = redis::cmd("TTL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .map_err(|e| conn.error(format!("TTL {key}"), e))?;
    // A key that vanished between SCAN and TTL is not missing a TTL.
    Ok(if t == -2 { 0 } else { t })
}

/// A stream's length and its oldest entry's time (ms, from the id).
async fn stream_extent(mut conn: RedisConn, key: &str) -> Result<(u64, Option<u64>), BusError> {
    let (len, first): (u64, Vec<(String, redis::Value)>) = redis::pipe()
        .cmd("XLEN")
        .arg(key)
        .cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .map_err(|e| conn.error(format!("XLEN/XRANGE {key}"), e))?;
    let ms = first.first().and_then(|(id, _)| id.split('-').next()?.parse().ok());
    Ok((len, ms))
}

/// `s` with glob characters escaped, for `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fall_in_their_families() {
        let keys = Keys::new("redeye", "image", "redeye:events");
        let of = |k: &str| Kind::of(k, &keys, "image");
        assert_eq!(of("image:abc"), Kind::Cache);
        assert_eq!(of("redeye:events"), Kind::Events);
        assert_eq!(of("redeye:{gallery}:people"), Kind::Gallery);
        assert_eq!(of("redeye:{gallery}:emb:ann"), Kind::Gallery);
        assert_eq!(of("redeye:{gallery}:cached:ann"), Kind::PersonIndexes);
        assert_eq!(of("redeye:{gallery}:events:ann"), Kind::PersonIndexes);
        assert_eq!(of("redeye:{lobby}:faces"), Kind::Faces);
        assert_eq!(of("redeye:{lobby}:dead"), Kind::DeadLetters);
        assert_eq!(of("redeye:{lobby}:track:door:1:2"), Kind::Tracks);
        assert_eq!(of("redeye:{lobby}:reply:42-abc"), Kind::Replies);
        assert_eq!(of("redeye:{visitors}:v:v-1"), Kind::Visitors);
        assert_eq!(of("redeye:{visitors}:shot:v-1"), Kind::Visitors);
        assert_eq!(of("redeye:{visitors}:index"), Kind::VisitorBookkeeping);
        assert_eq!(of("redeye:whatever"), Kind::Other);
        assert_eq!(glob_escape("a*b[c]"), "a\\*b\\[c\\]");
    }
}
