//! Reply lists: one process pushes an answer, another waits for it (`LPUSH` / `BLPOP`).
//!
//! Used by requests that travel through a faces stream and need an answer back (see
//! [`crate::recognize::request`]). A list rather than pub/sub: an answer pushed before the
//! client started waiting is not lost. Every push sets the key's TTL in the same transaction,
//! so an answer nobody reads expires; a list that is read empty is deleted by Redis itself.

use std::time::{Duration, Instant};

use redis::Value;

use super::conn::RESPONSE_TIMEOUT;
use super::{BusError, RedisConn, reply};

/// Pushes `payload` onto the list `key` and (re)sets its TTL to `ttl_secs`, in one MULTI/EXEC
/// (one key: one slot, also in a Cluster).
pub async fn push(conn: &mut RedisConn, key: &str, payload: &[u8], ttl_secs: u64) -> Result<(), BusError> {
    if ttl_secs == 0 {
        return Err(BusError::Config(format!("the TTL of reply list {key} must be at least 1 s")));
    }
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("LPUSH").arg(key).arg(payload).ignore().cmd("EXPIRE").arg(key).arg(ttl_secs).ignore();
    pipe.query_async::<()>(conn).await.map_err(|e| conn.error(format!("LPUSH+EXPIRE {key}"), e))
}

/// The oldest value of the list `key`, waiting until `deadline` for one (`BLPOP`); `None` when
/// nothing came in time. Blocks the connection: use one of its own.
pub async fn pop(conn: &mut RedisConn, key: &str, deadline: Instant) -> Result<Option<Vec<u8>>, BusError> {
    // The reply timeout would cut a long block short and look like a dead server: wait in
    // steps well below it.
    let step = RESPONSE_TIMEOUT / 2;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(1) {
            return Ok(None);
        }
        // BLPOP takes seconds (fractions since Redis 6); 0 would wait forever.
        let wait = left.min(step).as_secs_f64().max(0.001);
        let op = || format!("BLPOP {key}");
        let value: Value = redis::cmd("BLPOP")
            .arg(key)
            .arg(format!("{wait:.3}"))
            .query_async(conn)
            .await
            .map_err(|e| conn.error(op(), e))?;
        if value == Value::Nil {
            continue;
        }
        // [key, value]
        let decode = || -> reply::Shape<Vec<u8>> {
            let mut parts = reply::list(value)?.into_iter();
            let _key = parts.next().ok_or("missing key")?;
            reply::bytes(parts.next().ok_or("missing value")?)
        };
        return decode().map(Some).map_err(|d| BusError::reply(conn.target(), op(), d));
    }
}

/// Deletes the list `key` (a client that stopped waiting: answers still coming expire).
pub async fn discard(conn: &mut RedisConn, key: &str) -> Result<(), BusError> {
    redis::cmd("DEL")
        .arg(key)
        .query_async::<i64>(conn)
        .await
        .map(|_| ())
        .map_err(|e| conn.error(format!("DEL {key}"), e))
}
