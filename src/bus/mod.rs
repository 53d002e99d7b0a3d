//! Redis: topology and connections, key names, capped streams, the result cache, events.
//! Everything that crosses a process boundary goes through here.
//!
//! - [`Topology`] and [`Credentials`] say where Redis is ([`Topology::from_config`]).
//! - [`Bus`] holds the connections: [`Bus::group`] for a camera group's faces stream, dead
//!   letters and result cache; [`Bus::shared`] for the gallery and the events.
//! - [`Keys`] names every key, stream and channel (the Redis contract in the README).
//! - [`streams`], [`cache`], [`events`] and [`replies`] are typed helpers over a [`RedisConn`].
//!
//! With named nodes each group's keys live on its own node; with one server, Sentinel or a
//! Cluster everything goes through one (cluster-aware) connection, and the `{<group>}` hash
//! tags keep each group's keys together in one Cluster slot.

pub mod cache;
mod conn;
mod error;
pub mod events;
mod keys;
mod pubsub;
pub mod replies;
mod reply;
pub mod streams;
mod topology;

use std::collections::HashMap;
use std::sync::Arc;

use redis::ConnectionInfo;

pub use conn::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT, RedisConn, install_crypto_provider};
pub use error::BusError;
pub use keys::{CONSUMER_GROUP, Keys, consumer_name};
pub use pubsub::{Message, Subscription};
pub use reply::StreamEntry;
pub use topology::{Credentials, Topology, redact_url};

/// The connections to Redis for the whole process. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Bus(Arc<Inner>);

struct Inner {
    keys: Keys,
    description: String,
    /// Gallery and events (and, except with named nodes, everything else).
    shared: Target,
    /// With named nodes: each pinned group's node. `None` otherwise (every group on `shared`).
    groups: Option<HashMap<String, Target>>,
    /// Every distinct target, for [`Bus::ping`].
    all: Vec<Target>,
}

/// One Redis target: its shared connection, and how to open another one.
#[derive(Clone)]
struct Target {
    conn: RedisConn,
    opener: Arc<Opener>,
}

/// What it takes to connect to a target again (a dedicated connection, a subscription).
enum Opener {
    Node { target: String, info: ConnectionInfo },
    Cluster { target: String, seeds: Vec<ConnectionInfo> },
    Sentinel { target: String, master_name: String, sentinels: Vec<ConnectionInfo>, credentials: Credentials },
}

impl Opener {
    async fn open(&self) -> Result<RedisConn, BusError> {
        match self {
            Opener::Node { target, info } => Ok(RedisConn::node(target.clone(), info.clone()).await?.0),
            Opener::Cluster { target, seeds } => RedisConn::cluster(target.clone(), seeds.clone()).await,
            Opener::Sentinel { target, master_name, sentinels, credentials } => {
                RedisConn::sentinel(target.clone(), master_name, sentinels.clone(), credentials).await
            }
        }
    }

    async fn target(self) -> Result<Target, BusError> {
        Ok(Target { conn: self.open().await?, opener: Arc::new(self) })
    }
}

impl Bus {
    /// Connects to every node of `topology` with `credentials`. Fails fast: a wrong address or
    /// password is reported now, not at the first command. Afterwards connections recover by
    /// themselves (a restarted node, a Cluster resharding, a Sentinel failover), while the
    /// commands that failed meanwhile return retryable errors.
    pub async fn connect(topology: Topology, credentials: Credentials, keys: Keys) -> Result<Bus, BusError> {
        topology.check()?;
        let credentials = &credentials;
        let description = topology.describe();
        let (shared, groups, all) = match &topology {
            Topology::Single { url } => {
                let shared = node_opener(redact_url(url), url, credentials)?.target().await?;
                (shared.clone(), None, vec![shared])
            }
            Topology::Nodes { nodes, shared, group_node } => {
                let openers = nodes
                    .iter()
                    .map(|(name, url)| {
                        node_opener(format!("node {name} ({})", redact_url(url)), url, credentials)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let targets = futures::future::try_join_all(openers.into_iter().map(Opener::target)).await?;
                let by_name: HashMap<&str, &Target> =
                    nodes.iter().map(|(name, _)| name.as_str()).zip(targets.iter()).collect();
                let groups =
                    group_node.iter().map(|(g, n)| (g.clone(), by_name[n.as_str()].clone())).collect();
                (by_name[shared.as_str()].clone(), Some(groups), targets)
            }
            Topology::Cluster { seeds } => {
                let target = format!(
                    "cluster ({})",
                    seeds.iter().map(|s| redact_url(s)).collect::<Vec<_>>().join(", ")
                );
                let seeds =
                    seeds.iter().map(|s| conn::connection_info(s, credentials)).collect::<Result<_, _>>()?;
                let shared = Opener::Cluster { target, seeds }.target().await?;
                (shared.clone(), None, vec![shared])
            }
            Topology::Sentinel { master_name, addresses, sentinel_password } => {
                let sentinel_creds = Credentials { username: None, password: sentinel_password.clone() };
                let sentinels = addresses
                    .iter()
                    .map(|a| conn::connection_info(a, &sentinel_creds))
                    .collect::<Result<_, _>>()?;
                let list: Vec<String> = addresses.iter().map(|a| redact_url(a)).collect();
                let target = format!("Sentinel master {master_name} (via {})", list.join(", "));
                let opener = Opener::Sentinel {
                    target,
                    master_name: master_name.clone(),
                    sentinels,
                    credentials: credentials.clone(),
                };
                let shared = opener.target().await?;
                (shared.clone(), None, vec![shared])
            }
        };
        let bus = Bus(Arc::new(Inner { keys, description, shared, groups, all }));
        // Connections are set up without a command, and a missing password only shows at the
        // first one (NOAUTH): ask now, so misconfiguration fails here.
        bus.ping().await?;
        Ok(bus)
    }

    /// The key, stream and channel names.
    pub fn keys(&self) -> &Keys {
        &self.0.keys
    }

    /// The topology in one line, without credentials.
    pub fn describe(&self) -> &str {
        &self.0.description
    }

    /// The connection holding `group`'s faces stream, dead letters and result cache.
    ///
    /// With named nodes, a group not pinned to any node (validation prevents that for
    /// configured groups) gets the shared node, with a warning; [`Bus::try_group`] refuses.
    pub fn group(&self, group: &str) -> RedisConn {
        self.try_group(group).unwrap_or_else(|err| {
            tracing::warn!(%err, "Using the shared node.");
            self.shared()
        })
    }

    /// [`Bus::group`], but an unpinned group under named nodes is an error.
    pub fn try_group(&self, group: &str) -> Result<RedisConn, BusError> {
        Ok(self.group_target(group)?.conn.clone())
    }

    /// A new connection of its own to `group`'s node, for a blocking `XREADGROUP`: Redis
    /// answers one connection's commands in order, so a blocked read would hold back every
    /// other command sent on a shared connection.
    pub async fn open_group(&self, group: &str) -> Result<RedisConn, BusError> {
        self.group_target(group)?.opener.open().await
    }

    /// A new connection of its own to the shared node, for a blocking `XREAD` on the events
    /// stream (see [`Bus::open_group`] for why).
    pub async fn open_shared(&self) -> Result<RedisConn, BusError> {
        self.0.shared.opener.open().await
    }

    /// The connection holding the gallery and the events.
    pub fn shared(&self) -> RedisConn {
        self.0.shared.conn.clone()
    }

    /// Subscribes to `channels` on a dedicated connection to the shared node. On a Cluster,
    /// `PUBLISH` reaches every node, so the first seed that answers will do.
    pub async fn subscribe(&self, channels: &[&str]) -> Result<Subscription, BusError> {
        let servers: Vec<(String, ConnectionInfo)> = match &*self.0.shared.opener {
            Opener::Node { target, info } => vec![(target.clone(), info.clone())],
            Opener::Cluster { seeds, .. } => {
                seeds.iter().map(|s| (format!("cluster node {}", s.addr()), s.clone())).collect()
            }
            Opener::Sentinel { target, .. } => {
                let master = self.0.shared.conn.sentinel_master().expect("a Sentinel target has a master");
                vec![(target.clone(), master.get_connection_info().clone())]
            }
        };
        pubsub::subscribe(&servers, channels).await
    }

    /// A connection to every distinct target: each named node, or the one (cluster-aware)
    /// connection of a single server, a Cluster or Sentinel. For work that must reach keys
    /// wherever they live (`forget`, `audit`).
    pub fn nodes(&self) -> Vec<RedisConn> {
        self.0.all.iter().map(|t| t.conn.clone()).collect()
    }

    /// Pings every node (on a Cluster, every master): Ok when all answer. For `/ready`.
    pub async fn ping(&self) -> Result<(), BusError> {
        let pings = self.0.all.iter().map(|t| async move { t.conn.clone().ping().await });
        futures::future::try_join_all(pings).await.map(|_| ())
    }

    fn group_target(&self, group: &str) -> Result<&Target, BusError> {
        let Some(groups) = &self.0.groups else { return Ok(&self.0.shared) };
        groups.get(group).ok_or_else(|| {
            BusError::Config(format!(
                "group `{group}` is not pinned to a Redis node (`node = ...` in its [[group]])"
            ))
        })
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Bus").field(&self.0.description).finish()
    }
}

fn node_opener(target: String, url: &str, credentials: &Credentials) -> Result<Opener, BusError> {
    Ok(Opener::Node { target, info: conn::connection_info(url, credentials)? })
}
