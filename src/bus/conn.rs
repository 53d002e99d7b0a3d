//! [`RedisConn`]: one cheap-to-clone, reconnecting handle per Redis target, whatever the
//! deployment (one node, a Cluster, or a master behind Sentinel).
//!
//! All three are multiplexed: clones share one socket (per node), and concurrent commands are
//! pipelined on it. That is why clones are cheap and why a blocking `XREADGROUP` on one clone
//! delays the others on the same node: give a blocking reader its own connection.

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, TlsMode, Value};

use super::error::suggests_failover;
use super::topology::redact_url;
use super::{BusError, Credentials};

/// Longest wait for a TCP (and TLS) connection to be set up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for a reply. `XREADGROUP ... BLOCK` holds its reply back on purpose, so every
/// block time must stay well below this (see [`super::streams::read_group`]).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to the Redis that holds some keys. Implements [`ConnectionLike`], so any
/// `redis` command, pipeline or script runs on it; the helpers in [`super::streams`],
/// [`super::cache`] and [`super::events`] add typed replies and error context.
#[derive(Clone)]
pub struct RedisConn {
    link: Link,
    /// Node name and URL without credentials, for error messages.
    target: Arc<str>,
}

#[derive(Clone)]
enum Link {
    /// One server; reconnects by itself (with backoff) after the socket drops.
    Node(ConnectionManager),
    /// A Cluster; follows MOVED/ASK and refreshes the slot map itself.
    Cluster(ClusterConnection),
    /// The current master named by Sentinel; looked up again when it stops answering.
    Sentinel(Arc<SentinelLink>),
}

impl RedisConn {
    /// Which Redis this is, without credentials (for messages).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Wraps a client error from `op` with this connection's target.
    pub fn error(&self, op: impl Into<String>, err: redis::RedisError) -> BusError {
        BusError::from_redis(&self.target, op, err)
    }

    /// `PING` (on a Cluster: every master). Ok means the target answers commands.
    pub async fn ping(&mut self) -> Result<(), BusError> {
        redis::cmd("PING").query_async::<()>(self).await.map_err(|e| self.error("PING", e))
    }

    /// Connects to one server, reconnecting by itself later. Returns the client too, for
    /// opening a dedicated pub/sub connection to the same server.
    pub(crate) async fn node(target: String, info: ConnectionInfo) -> Result<(RedisConn, Client), BusError> {
        let client = Client::open(info).map_err(|e| BusError::from_redis(&target, "open", e))?;
        let manager = manager(&client).await.map_err(|e| BusError::from_redis(&target, "connect", e))?;
        Ok((RedisConn { link: Link::Node(manager), target: target.into() }, client))
    }

    /// Connects to a Cluster through its seeds (all with the same credentials and TLS mode).
    pub(crate) async fn cluster(target: String, seeds: Vec<ConnectionInfo>) -> Result<RedisConn, BusError> {
        let conn = ClusterClientBuilder::new(seeds)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .build()
            .map_err(|e| BusError::from_redis(&target, "open", e))?
            .get_async_connection()
            .await
            .map_err(|e| BusError::from_redis(&target, "connect", e))?;
        Ok(RedisConn { link: Link::Cluster(conn), target: target.into() })
    }

    /// Asks the sentinels for the master and connects to it.
    pub(crate) async fn sentinel(
        target: String,
        master_name: &str,
        sentinels: Vec<ConnectionInfo>,
        credentials: &Credentials,
    ) -> Result<RedisConn, BusError> {
        // The data nodes' TLS mode is not announced by Sentinel; assume it matches the
        // sentinels' (both rediss:// or both redis://), the usual deployment.
        let tls = sentinels.iter().any(|s| matches!(s.addr(), redis::ConnectionAddr::TcpTls { .. }));
        let mut node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(with_credentials(Default::default(), credentials));
        if tls {
            node = node.set_tls_mode(TlsMode::Secure);
        }
        let mut client =
            SentinelClient::build(sentinels, master_name, Some(node), SentinelServerType::Master)
                .map_err(|e| BusError::from_redis(&target, "open sentinel client", e))?;
        let (manager, master) =
            discover(&mut client).await.map_err(|e| BusError::from_redis(&target, "discover master", e))?;
        let link = SentinelLink {
            sentinel: tokio::sync::Mutex::new(client),
            current: Mutex::new(Current { generation: 0, manager, master, stale: false }),
        };
        Ok(RedisConn { link: Link::Sentinel(Arc::new(link)), target: target.into() })
    }

    /// Every key matching the glob `pattern` (`SCAN MATCH`), on every master of a Cluster (a
    /// plain `SCAN` on a Cluster connection would visit one random node). Not atomic: keys
    /// written or deleted meanwhile may or may not be listed. For `audit`, never on a hot path.
    pub async fn scan_keys(&mut self, pattern: &str) -> Result<Vec<String>, BusError> {
        let op = || format!("SCAN MATCH {pattern}");
        let Link::Cluster(cluster) = &self.link else {
            let conn = self.clone();
            return scan_loop(pattern, |cmd| {
                let mut conn = conn.clone();
                async move { cmd.query_async::<Value>(&mut conn).await }
            })
            .await
            .map_err(|e| self.error(op(), e));
        };
        let mut cluster = cluster.clone();
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut cluster)
            .await
            .map_err(|e| self.error("CLUSTER NODES", e))?;
        let mut keys = Vec::new();
        for (host, port) in cluster_masters(&nodes) {
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
            let found = scan_loop(pattern, |cmd| {
                let mut c = cluster.clone();
                let route = route.clone();
                async move { c.route_command(cmd, route).await }
            })
            .await
            .map_err(|e| self.error(op(), e))?;
            keys.extend(found);
        }
        Ok(keys)
    }

    /// A client for the server behind this connection, for a dedicated pub/sub connection
    /// (Sentinel: the master as last discovered). `None` for a Cluster.
    pub(crate) fn sentinel_master(&self) -> Option<Client> {
        match &self.link {
            Link::Sentinel(link) => Some(link.current.lock().expect("sentinel state").master.clone()),
            _ => None,
        }
    }
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RedisConn").field(&self.target).finish()
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.link {
            Link::Node(m) => m.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
            Link::Sentinel(link) => {
                let link = link.clone();
                Box::pin(async move {
                    link.before().await;
                    let (generation, mut manager) = link.snapshot();
                    let result = manager.req_packed_command(cmd).await;
                    link.after(generation, result.as_ref().err()).await;
                    result
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.link {
            Link::Node(m) => m.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Sentinel(link) => {
                let link = link.clone();
                Box::pin(async move {
                    link.before().await;
                    let (generation, mut manager) = link.snapshot();
                    let result = manager.req_packed_commands(pipeline, offset, count).await;
                    link.after(generation, result.as_ref().err()).await;
                    result
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Node(m) => m.get_db(),
            Link::Cluster(c) => c.get_db(),
            Link::Sentinel(link) => link.snapshot().1.get_db(),
        }
    }
}

/// `SCAN 0 MATCH pattern COUNT 1000` until the cursor comes back to 0, each step sent by `send`.
async fn scan_loop<F, Fut>(pattern: &str, send: F) -> redis::RedisResult<Vec<String>>
where
    F: Fn(Cmd) -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<Value>>,
{
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
        let (next, batch): (u64, Vec<String>) = redis::from_redis_value(send(cmd).await?)?;
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            return Ok(keys);
        }
    }
}

/// `(host, port)` of every master `CLUSTER NODES` lists as up (`ip:port@cport[,hostname] flags`).
fn cluster_masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let addr = fields.nth(1)?;
            let flags = fields.next()?;
            if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                return None;
            }
            let addr = addr.split(['@', ',']).next()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// The master behind Sentinel, replaced when it stops behaving like the master.
struct SentinelLink {
    /// Asks the sentinels; a mutex because lookups take `&mut` (they cache connections).
    sentinel: tokio::sync::Mutex<SentinelClient>,
    current: Mutex<Current>,
}

struct Current {
    /// Bumped at each master lookup (whatever its outcome), so that many callers failing at
    /// once look up once.
    generation: u64,
    manager: ConnectionManager,
    master: Client,
    /// The last lookup failed: `manager` is the master that stopped answering.
    stale: bool,
}

impl SentinelLink {
    fn snapshot(&self) -> (u64, ConnectionManager) {
        let current = self.current.lock().expect("sentinel state");
        (current.generation, current.manager.clone())
    }

    /// Before a command: if the last lookup found no master (the sentinels were still electing
    /// one), look again first rather than send the command to the master known to be gone.
    /// Without this, the first command after a failover always failed (and its caller backed
    /// off once more) before the switch: in tests/distributed.rs, work resumed 5.0-5.5 s after
    /// the master was SIGKILLed instead of 4.1-4.3 s (the sentinels take 2.4 s to promote).
    async fn before(&self) {
        let (generation, stale) = {
            let current = self.current.lock().expect("sentinel state");
            (current.generation, current.stale)
        };
        if stale {
            self.look_up(generation).await;
        }
    }

    /// After a failed command: if the error says the master may have moved (socket gone,
    /// READONLY from a demoted master), ask the sentinels again and switch. The failed command
    /// is not retried here (it may not be idempotent): its error reaches the caller as
    /// retryable, and the caller's retry goes to the new master.
    async fn after(&self, generation: u64, err: Option<&redis::RedisError>) {
        if err.is_some_and(suggests_failover) {
            self.look_up(generation).await;
        }
    }

    /// Asks the sentinels for the master and switches to it, unless another caller looked up
    /// since `generation` (while we waited for the lock).
    async fn look_up(&self, generation: u64) {
        let mut sentinel = self.sentinel.lock().await;
        if self.current.lock().expect("sentinel state").generation != generation {
            return;
        }
        let found = discover(&mut sentinel).await;
        let mut current = self.current.lock().expect("sentinel state");
        current.generation = generation + 1;
        match found {
            Ok((manager, master)) => {
                tracing::info!(master = %master.get_connection_info().addr(), "Switched to the master named by Sentinel.");
                (current.manager, current.master, current.stale) = (manager, master, false);
            }
            // The sentinels may not have elected a new master yet: the next command asks again.
            Err(err) => {
                current.stale = true;
                tracing::warn!(%err, "Sentinel master lookup failed.");
            }
        }
    }
}

async fn discover(sentinel: &mut SentinelClient) -> redis::RedisResult<(ConnectionManager, Client)> {
    let master = sentinel.async_get_client().await?;
    let manager = manager(&master).await?;
    Ok((manager, master))
}

/// A reconnecting connection to one server with our timeouts. Few, quick retries: callers
/// own the backoff policy, and startup should fail fast on a wrong address.
async fn manager(client: &Client) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_with_config(client.clone(), config).await
}

/// Parses `url` and adds the credentials (which never live in URLs from the config). A
/// credential in `REDEYE_REDIS_URL` itself is kept unless the environment names another.
pub(crate) fn connection_info(url: &str, credentials: &Credentials) -> Result<ConnectionInfo, BusError> {
    install_crypto_provider();
    let info = url
        .into_connection_info()
        .map_err(|e| BusError::Config(format!("invalid Redis URL {}: {e}", redact_url(url))))?;
    let redis = with_credentials(info.redis_settings().clone(), credentials);
    Ok(info.set_redis_settings(redis))
}

fn with_credentials(
    mut redis: redis::RedisConnectionInfo,
    credentials: &Credentials,
) -> redis::RedisConnectionInfo {
    if let Some(user) = &credentials.username {
        redis = redis.set_username(user);
    }
    if let Some(password) = &credentials.password {
        redis = redis.set_password(password);
    }
    redis
}

/// rustls needs a process-wide crypto provider before the first TLS handshake, and panics
/// without one. redis-rs enables rustls without choosing a provider, so we enable `ring` in
/// Cargo.toml and install it here, once, before any connection is built. If the application
/// installed a provider first, that one stays.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::cluster_masters;

    #[test]
    fn cluster_nodes_lists_up_masters_only() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001,node-b master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7002@17002 slave a1 0 0 1 connected
d4 127.0.0.1:7003@17003 master,fail - 0 0 3 disconnected
e5 [::1]:7004@17004 master - 0 0 4 connected 10923-16383
";
        assert_eq!(
            cluster_masters(nodes),
            vec![("127.0.0.1".into(), 7000), ("127.0.0.1".into(), 7001), ("::1".into(), 7004)]
        );
    }
}
