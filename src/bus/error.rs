//! [`BusError`]: what went wrong talking to Redis, and whether trying again can help.
//!
//! Callers branch on [`BusError::is_retryable`] (back off and retry: a node restarting, a
//! failover, a cluster resharding) versus [`BusError::is_fatal`] (stop and tell the operator:
//! wrong password, bad URL, untrusted certificate). Every variant names the Redis target
//! (node name and URL without credentials) and the operation, so a log line is enough to debug.

use std::io;

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// An error from the Redis bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The Redis part of the configuration cannot work (no nodes, undefined node, unset
    /// credential variable, unknown group...). Fatal.
    #[error("Redis configuration: {0}")]
    Config(String),

    /// The server refused our credentials or the ACL user lacks a permission. Fatal.
    #[error(
        "Redis {target}: {op}: authentication or permission refused (check `redis.username_env` and \
         `redis.password_env`)"
    )]
    Auth {
        /// Which Redis (node name and URL without credentials).
        target: String,
        /// What we were doing.
        op: String,
        /// The client's error.
        #[source]
        source: RedisError,
    },

    /// The client cannot even try: invalid URL, TLS certificate not trusted, protocol not
    /// supported. Fatal.
    #[error("Redis {target}: {op}: client setup failed")]
    Setup {
        /// Which Redis.
        target: String,
        /// What we were doing.
        op: String,
        /// The client's error.
        #[source]
        source: RedisError,
    },

    /// The node is unreachable, restarting, loading its data, failing over or resharding.
    /// Retryable, with backoff. The message carries the client's text (a log line written with
    /// `%err` shows only this message, not the source chain).
    #[error("Redis {target}: {op}: unavailable: {error}")]
    Unavailable {
        /// Which Redis.
        target: String,
        /// What we were doing.
        op: String,
        /// The client's error.
        error: RedisError,
    },

    /// The server refuses writes because it is at `maxmemory` with no eviction ("OOM command
    /// not allowed"). Retryable: memory may be freed (workers catching up delete entries, keys
    /// expire); meanwhile `/ready` says so (see `crate::health`).
    #[error(
        "Redis {target}: {op}: out of memory, writes refused ({error}): raise maxmemory, or lower \
         the stream caps and cache_ttl_secs"
    )]
    OutOfMemory {
        /// Which Redis.
        target: String,
        /// What we were doing.
        op: String,
        /// The server's error.
        error: RedisError,
    },

    /// The server rejected the command itself (wrong type, missing consumer group, syntax).
    /// Retrying the same command will not help; the caller decides (e.g. recreate the group).
    #[error("Redis {target}: {op} failed: {error}")]
    Command {
        /// Which Redis.
        target: String,
        /// What we were doing.
        op: String,
        /// The server's error.
        error: RedisError,
    },

    /// The reply did not have the shape this code expects (a different server version?).
    #[error("Redis {target}: {op}: unexpected reply: {detail}")]
    Reply {
        /// Which Redis.
        target: String,
        /// What we were doing.
        op: String,
        /// What was wrong with it.
        detail: String,
    },

    /// A pub/sub connection closed; subscribe again (and replay the events stream for the gap).
    /// Retryable.
    #[error("Redis {target}: pub/sub connection closed")]
    Disconnected {
        /// Which Redis.
        target: String,
    },

    /// A cached value is not the JSON we expect (written by another version, or corrupt).
    #[error("Redis {target}: `{key}` does not hold the expected JSON")]
    Json {
        /// Which Redis.
        target: String,
        /// The key holding the value.
        key: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

impl BusError {
    /// Classifies a client error raised by `op` against `target`.
    pub fn from_redis(target: &str, op: impl Into<String>, source: RedisError) -> BusError {
        let (target, op) = (target.to_owned(), op.into());
        match classify(&source) {
            Class::Auth => BusError::Auth { target, op, source },
            Class::Setup => BusError::Setup { target, op, source },
            Class::Unavailable => BusError::Unavailable { target, op, error: source },
            Class::OutOfMemory => BusError::OutOfMemory { target, op, error: source },
            Class::Command => BusError::Command { target, op, error: source },
        }
    }

    /// A reply of an unexpected shape.
    pub(crate) fn reply(target: &str, op: impl Into<String>, detail: impl Into<String>) -> BusError {
        BusError::Reply { target: target.to_owned(), op: op.into(), detail: detail.into() }
    }

    /// Trying again later (with backoff) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BusError::Unavailable { .. } | BusError::OutOfMemory { .. } | BusError::Disconnected { .. }
        )
    }

    /// Redis refuses writes for lack of memory.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, BusError::OutOfMemory { .. })
    }

    /// Nothing will change without the operator: stop and report.
    pub fn is_fatal(&self) -> bool {
        matches!(self, BusError::Config(_) | BusError::Auth { .. } | BusError::Setup { .. })
    }

    /// The server's error code (`NOGROUP`, `WRONGTYPE`, `BUSYGROUP`...), when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            BusError::Auth { source, .. } | BusError::Setup { source, .. } => source.code(),
            BusError::Unavailable { error, .. }
            | BusError::OutOfMemory { error, .. }
            | BusError::Command { error, .. } => error.code(),
            _ => None,
        }
    }
}

enum Class {
    Auth,
    Setup,
    Unavailable,
    OutOfMemory,
    Command,
}

fn classify(err: &RedisError) -> Class {
    // Servers answer a missing or wrong password with codes redis-rs does not name
    // (NOAUTH before AUTH, WRONGPASS for AUTH itself), so check the code as well as the kind.
    if matches!(err.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM")) {
        return Class::Auth;
    }
    // An error raised inside a script keeps the command's code (Redis 7).
    if err.code() == Some("OOM") {
        return Class::OutOfMemory;
    }
    match err.kind() {
        ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm) => Class::Auth,
        ErrorKind::InvalidClientConfig | ErrorKind::EmptySentinelList | ErrorKind::RESP3NotSupported => {
            Class::Setup
        }
        ErrorKind::Io if is_tls_rejection(err) => Class::Setup,
        // Connection-level trouble, and everything a failover or resharding says while it runs.
        // READONLY: we wrote to a master that was just demoted; the new master takes writes.
        ErrorKind::Io
        | ErrorKind::Parse
        | ErrorKind::ClusterConnectionNotFound
        | ErrorKind::MasterNameNotFoundBySentinel
        | ErrorKind::NoValidReplicasFoundBySentinel
        | ErrorKind::Server(
            ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::BusyLoading
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => Class::Unavailable,
        _ => Class::Command,
    }
}

/// rustls reports an untrusted or mismatched certificate as an `InvalidData` I/O error; that
/// is a configuration problem, and retrying would only hammer the server with handshakes.
fn is_tls_rejection(err: &RedisError) -> bool {
    use std::error::Error;
    // redis-rs keeps the I/O error behind an `Arc<dyn Error>`, and `io::Error::source` skips
    // its own payload, so the rustls error is found by unwrapping both by hand.
    let Some(source) = err.source() else { return false };
    let io = source
        .downcast_ref::<std::sync::Arc<dyn Error + Send + Sync>>()
        .and_then(|arc| arc.downcast_ref::<io::Error>())
        .or_else(|| source.downcast_ref::<io::Error>());
    io.and_then(|io| io.get_ref()).is_some_and(|inner| inner.is::<rustls::Error>())
}

/// Whether a connection-level error means the current master may have moved (Sentinel).
pub(crate) fn suggests_failover(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_timeout()
        || matches!(err.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_kind_and_code() {
        let io = RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(BusError::from_redis("t", "PING", io).is_retryable());

        let auth = RedisError::from((ErrorKind::AuthenticationFailed, "Password authentication failed"));
        let err = BusError::from_redis("node a (redis://h:1)", "connect", auth);
        assert!(err.is_fatal() && !err.is_retryable());
        assert!(err.to_string().contains("node a (redis://h:1)"), "{err}");

        let loading = RedisError::from((ServerErrorKind::BusyLoading.into(), "loading"));
        assert!(BusError::from_redis("t", "GET", loading).is_retryable());

        let config = RedisError::from((ErrorKind::InvalidClientConfig, "bad"));
        assert!(BusError::from_redis("t", "connect", config).is_fatal());
    }
}
