//! The result cache: `image:<md5>` keys holding JSON with a TTL.
//!
//! The seed article pickled results; we store JSON, because unpickling (or any
//! self-describing binary format that instantiates types) data read from a shared store runs
//! whatever someone with write access put there.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{BusError, RedisConn};

/// The value at `key`, or `None` when it is missing or expired.
pub async fn get(conn: &mut RedisConn, key: &str) -> Result<Option<Vec<u8>>, BusError> {
    redis::cmd("GET").arg(key).query_async(conn).await.map_err(|e| conn.error(format!("GET {key}"), e))
}

/// Stores `value` at `key` for `ttl_secs` seconds. A TTL of 0 is refused: every cached result
/// is biometric data and must expire.
pub async fn set_ex(conn: &mut RedisConn, key: &str, value: &[u8], ttl_secs: u64) -> Result<(), BusError> {
    if ttl_secs == 0 {
        return Err(BusError::Config(format!("cache TTL for {key} must be at least 1 s")));
    }
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("EX")
        .arg(ttl_secs)
        .query_async::<()>(conn)
        .await
        .map_err(|e| conn.error(format!("SET {key} EX {ttl_secs}"), e))
}

/// Seconds left before `key` expires: `None` when the key does not exist, `Some(None)` when
/// it has no expiry (which a cache key never should).
pub async fn ttl(conn: &mut RedisConn, key: &str) -> Result<Option<Option<u64>>, BusError> {
    let secs: i64 = redis::cmd("TTL")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(|e| conn.error(format!("TTL {key}"), e))?;
    Ok(match secs {
        -2 => None,
        s if s < 0 => Some(None),
        s => Some(Some(s as u64)),
    })
}

/// The JSON value at `key`, decoded. A value that does not decode is an error (not a miss), so
/// a format change between versions is noticed; callers may treat it as a miss and overwrite.
pub async fn get_json<T: DeserializeOwned>(conn: &mut RedisConn, key: &str) -> Result<Option<T>, BusError> {
    let Some(bytes) = get(conn, key).await? else { return Ok(None) };
    serde_json::from_slice(&bytes).map(Some).map_err(|source| BusError::Json {
        target: conn.target().to_owned(),
        key: key.to_owned(),
        source,
    })
}

/// Stores `value` as JSON at `key` for `ttl_secs` seconds.
pub async fn set_json<T: Serialize + ?Sized>(
    conn: &mut RedisConn,
    key: &str,
    value: &T,
    ttl_secs: u64,
) -> Result<(), BusError> {
    let bytes = serde_json::to_vec(value).map_err(|source| BusError::Json {
        target: conn.target().to_owned(),
        key: key.to_owned(),
        source,
    })?;
    set_ex(conn, key, &bytes, ttl_secs).await
}
