//! Recognition on request: a client with no recogniser of its own (`redeye identify`) puts its
//! face crops on a group's faces stream with a `reply` field, and the worker that recognises
//! one pushes the answer to the reply list that field names, where the client waits.
//!
//! Such an entry is not a camera's: the worker recognises it and caches the result under
//! `image:<md5>` like any other crop, but folds it into no track, publishes no event and gives
//! nobody a visitor id: a photo someone asked about is not a sighting.
//!
//! The reply list is `<prefix>:{<group>}:reply:<id>` ([`crate::bus::Keys::reply`]). The entry
//! carries only the id, and the worker builds the key from it, so an entry cannot make a worker
//! write anywhere else. Answers name people: each push sets a short TTL ([`REPLY_TTL_SECS`]),
//! and the client's `BLPOP` empties the list, which deletes it, as it reads.
//!
//! Whether a worker is there at all is read from the consumer group (`XINFO CONSUMERS`): a
//! worker reads its stream at least every `block_ms` while idle, so a consumer idle much longer
//! than that belongs to a worker that is gone (a crashed worker's consumer stays listed for
//! hours, see `stale_consumer_secs`).

use std::time::Instant;

use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::bus::streams::{self, ConsumerInfo};
use crate::bus::{BusError, CONSUMER_GROUP, Keys, RedisConn, StreamEntry, replies};
use crate::config::WorkerConfig;
use crate::recognition::CachedResult;

/// The faces stream field naming the request an entry belongs to.
pub const REPLY_FIELD: &str = "reply";

/// How long an answer waits in its reply list for a client that stopped waiting. The client
/// reads it within milliseconds when it waits; this only bounds what an abandoned request
/// leaves behind.
pub const REPLY_TTL_SECS: u64 = 60;

/// Longest request id, in characters.
const MAX_ID_CHARS: usize = 64;

/// Added to a worker's longest quiet spell between two reads (its block time) before its
/// consumer is taken for gone: a busy worker is embedding a batch, not reading.
const LIVENESS_SLACK_MS: u64 = 10_000;

/// A fresh request id: the client's pid and 16 random characters (letters and digits).
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let tail: String = (0..16).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("{}-{tail}", std::process::id())
}

/// The request id of a faces stream entry: `None` for a camera's entry, an error (the entry is
/// poison) when the field is there but not an id.
pub fn reply_id(entry: &StreamEntry) -> Result<Option<&str>, String> {
    let Some(raw) = entry.get(REPLY_FIELD) else { return Ok(None) };
    let id = std::str::from_utf8(raw).map_err(|_| format!("field `{REPLY_FIELD}` is not UTF-8"))?;
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_CHARS
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid {
        return Err(format!("field `{REPLY_FIELD}` must be 1 to {MAX_ID_CHARS} letters, digits or dashes"));
    }
    Ok(Some(id))
}

/// One answer on a reply list: the result for one crop, or why it was not recognised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The crop's content key (the entry's `md5`): which face of the request this answers.
    pub md5: String,
    /// The result, as cached under `image:<md5>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<CachedResult>,
    /// Why the entry will not be recognised (it was dead-lettered with this reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Pushes `reply` to request `id`'s reply list on the group's node.
pub async fn send(
    conn: &mut RedisConn,
    keys: &Keys,
    group: &str,
    id: &str,
    reply: &Reply,
) -> Result<(), BusError> {
    let payload = serde_json::to_vec(reply).expect("a reply serialises");
    replies::push(conn, &keys.reply(group, id), &payload, REPLY_TTL_SECS).await
}

/// The next answer on the reply list `key`, waiting until `deadline`; `None` when none came.
/// `conn` is blocked meanwhile: give it a connection of its own.
pub async fn receive(conn: &mut RedisConn, key: &str, deadline: Instant) -> Result<Option<Reply>, BusError> {
    let Some(bytes) = replies::pop(conn, key, deadline).await? else { return Ok(None) };
    serde_json::from_slice(&bytes).map(Some).map_err(|source| BusError::Json {
        target: conn.target().to_owned(),
        key: key.to_owned(),
        source,
    })
}

/// How long a worker's consumer may go without reading before it is taken for gone: its
/// longest idle wait (`block_ms`, capped by `claim_idle_ms / 2` as the worker does) plus slack.
pub fn liveness_ms(worker: &WorkerConfig) -> u64 {
    worker.block_ms.min(worker.claim_idle_ms / 2) + LIVENESS_SLACK_MS
}

/// The workers reading `group`'s faces stream now: its consumers that read within `within_ms`.
pub async fn live_workers(
    conn: &mut RedisConn,
    keys: &Keys,
    group: &str,
    within_ms: u64,
) -> Result<Vec<ConsumerInfo>, BusError> {
    let consumers = streams::consumers(conn, &keys.faces(group), CONSUMER_GROUP).await?;
    Ok(consumers.into_iter().filter(|c| c.idle_ms <= within_ms).collect())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn entry(reply: Option<&[u8]>) -> StreamEntry {
        let mut fields = HashMap::new();
        if let Some(r) = reply {
            fields.insert(REPLY_FIELD.to_owned(), r.to_vec());
        }
        StreamEntry { id: "1-0".into(), fields }
    }

    #[test]
    fn only_plain_ids_are_reply_ids() {
        assert_eq!(reply_id(&entry(None)), Ok(None));
        let id = new_id();
        assert_eq!(reply_id(&entry(Some(id.as_bytes()))), Ok(Some(id.as_str())));
        let bad: [&[u8]; 5] = [b"", b"a:b", b"x}y", b"\xff", &[b'a'; 65]];
        for bad in bad {
            assert!(reply_id(&entry(Some(bad))).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_differ() {
        assert_ne!(new_id(), new_id());
    }
}
