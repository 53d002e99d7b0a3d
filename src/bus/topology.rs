//! Where Redis is: [`Topology`] and [`Credentials`], read from `[redis]` and the environment.
//!
//! Credentials never come from `cameras.toml`: the file names environment variables
//! (`username_env`, `password_env`) and the values are inserted into the connection settings
//! here, so a URL printed in a log or an error never carries a password.

use std::collections::HashMap;
use std::fmt;

use crate::config::{Config, DEFAULT_REDIS_URL, REDIS_URL_ENV};

use super::BusError;

/// The shape of the Redis deployment.
#[derive(Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (or one endpoint in front of several).
    Single {
        /// `redis://host:port/db` or `rediss://...`.
        url: String,
    },
    /// Named standalone servers, each camera group pinned to one (the seed article's layout).
    Nodes {
        /// `(name, url)` of every node, in config order.
        nodes: Vec<(String, String)>,
        /// The node holding the gallery and the events.
        shared: String,
        /// Group name to node name.
        group_node: HashMap<String, String>,
    },
    /// A Redis Cluster, reached through any subset of its masters.
    Cluster {
        /// Seed URLs.
        seeds: Vec<String>,
    },
    /// A master found through Redis Sentinel, re-discovered after a failover.
    Sentinel {
        /// The monitored master's name.
        master_name: String,
        /// Sentinel URLs (`redis://host:26379`).
        addresses: Vec<String>,
        /// The sentinels' own password, if they have one.
        sentinel_password: Option<String>,
    },
}

/// The ACL user and password for the data nodes (not the sentinels).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// ACL user name; `None` is the default user.
    pub username: Option<String>,
    /// Password; `None` sends no AUTH.
    pub password: Option<String>,
}

impl Topology {
    /// The topology and credentials `config` describes.
    ///
    /// `REDEYE_REDIS_URL`, when set and non-empty, replaces the configured topology by that one
    /// URL (handy for a one-off run against another server). Credentials are read from the
    /// variables `redis.username_env` and `redis.password_env` name; a named variable that is
    /// unset is an error rather than a silent login as the default user.
    pub fn from_config(config: &Config) -> Result<(Topology, Credentials), BusError> {
        let r = &config.redis;
        let credentials = Credentials {
            username: read_env(r.username_env.as_deref(), "redis.username_env")?,
            password: read_env(r.password_env.as_deref(), "redis.password_env")?,
        };
        if let Some(url) = std::env::var(REDIS_URL_ENV).ok().filter(|u| !u.is_empty()) {
            return Ok((Topology::Single { url }, credentials));
        }
        let topology = if !r.nodes.is_empty() {
            let nodes: Vec<(String, String)> =
                r.nodes.iter().map(|n| (n.name.clone(), n.url.clone())).collect();
            let shared = r.shared_node.clone().unwrap_or_else(|| nodes[0].0.clone());
            let group_node =
                config.groups.iter().filter_map(|g| Some((g.name.clone(), g.node.clone()?))).collect();
            Topology::Nodes { nodes, shared, group_node }
        } else if !r.cluster.is_empty() {
            Topology::Cluster { seeds: r.cluster.clone() }
        } else if let Some(s) = &r.sentinel {
            Topology::Sentinel {
                master_name: s.master_name.clone(),
                addresses: s.addresses.clone(),
                sentinel_password: read_env(s.password_env.as_deref(), "redis.sentinel.password_env")?,
            }
        } else {
            Topology::Single { url: r.url.clone().unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned()) }
        };
        topology.check()?;
        Ok((topology, credentials))
    }

    /// Checks what the type cannot: nodes exist, names resolve, lists are not empty.
    /// [`Bus::connect`](super::Bus::connect) calls it, so hand-built topologies are checked too.
    pub fn check(&self) -> Result<(), BusError> {
        let fail = |msg: String| Err(BusError::Config(msg));
        match self {
            Topology::Single { .. } => Ok(()),
            Topology::Nodes { nodes, shared, group_node } => {
                let known = |name: &str| nodes.iter().any(|(n, _)| n == name);
                if nodes.is_empty() {
                    return fail("named-node topology without nodes".into());
                }
                if !known(shared) {
                    return fail(format!("shared node `{shared}` is not one of the nodes"));
                }
                match group_node.iter().find(|(_, node)| !known(node)) {
                    Some((group, node)) => {
                        fail(format!("group `{group}` is pinned to unknown node `{node}`"))
                    }
                    None => Ok(()),
                }
            }
            Topology::Cluster { seeds } if seeds.is_empty() => fail("Redis Cluster without seed URLs".into()),
            Topology::Sentinel { master_name, addresses, .. }
                if master_name.is_empty() || addresses.is_empty() =>
            {
                fail("Sentinel needs a master name and at least one sentinel address".into())
            }
            _ => Ok(()),
        }
    }

    /// One line for logs, with every URL stripped of credentials.
    pub fn describe(&self) -> String {
        let urls = |list: &[String]| list.iter().map(|u| redact_url(u)).collect::<Vec<_>>().join(", ");
        match self {
            Topology::Single { url } => format!("one node {}", redact_url(url)),
            Topology::Nodes { nodes, shared, .. } => {
                let list: Vec<String> =
                    nodes.iter().map(|(n, u)| format!("{n} = {}", redact_url(u))).collect();
                format!("named nodes {}; gallery and events on {shared}", list.join(", "))
            }
            Topology::Cluster { seeds } => format!("Redis Cluster, seeds {}", urls(seeds)),
            Topology::Sentinel { master_name, addresses, .. } => {
                format!("Sentinel master `{master_name}` via {}", urls(addresses))
            }
        }
    }
}

impl fmt::Debug for Topology {
    /// The description, never a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Credentials {
    /// No user name, no password.
    pub fn none() -> Credentials {
        Credentials::default()
    }
}

impl fmt::Debug for Credentials {
    /// Shows whether a password is set, not the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The value of the environment variable `name` (named by the config key `what`), if any.
fn read_env(name: Option<&str>, what: &str) -> Result<Option<String>, BusError> {
    let Some(name) = name else { return Ok(None) };
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(Some(value)),
        _ => Err(BusError::Config(format!("environment variable `{name}` (named by `{what}`) is not set"))),
    }
}

/// `url` without user name or password, for messages. `REDEYE_REDIS_URL` may legitimately
/// carry a password (it comes from the environment, not the file), so everything that prints a
/// URL goes through here. Text that does not parse is not echoed: it might be a password.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("redis://:hunter2@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact_url("rediss://u:p@h"), "rediss://u:***@h");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(redact_url("not a url p@ss"), "<unparsable URL>");
        let creds = Credentials { username: Some("u".into()), password: Some("secret".into()) };
        assert!(!format!("{creds:?}").contains("secret"));
    }

    #[test]
    fn default_is_single_local_node() {
        // REDEYE_REDIS_URL is read by from_config; the test binary does not set it.
        if std::env::var_os(REDIS_URL_ENV).is_some() {
            return;
        }
        let (topology, creds) = Topology::from_config(&Config::default()).unwrap();
        assert_eq!(topology, Topology::Single { url: DEFAULT_REDIS_URL.into() });
        assert_eq!(creds, Credentials::none());
    }

    #[test]
    fn check_rejects_unknown_nodes() {
        let nodes = vec![("a".to_owned(), "redis://h:1".to_owned())];
        let bad_shared =
            Topology::Nodes { nodes: nodes.clone(), shared: "b".into(), group_node: HashMap::new() };
        assert!(bad_shared.check().is_err());
        let group_node = HashMap::from([("g".to_owned(), "z".to_owned())]);
        let bad_group = Topology::Nodes { nodes, shared: "a".into(), group_node };
        assert!(bad_group.check().unwrap_err().to_string().contains("`z`"));
    }
}
