//! A [`Bus`] on a fresh single server or a fresh 3-master cluster, for scenarios that must hold
//! on both (`on_single_and_cluster!`). Test files add their own methods to [`Fixture`].

use redeye::bus::{Bus, Credentials, Keys, Topology};
use redeye::config::Config;

use super::redis::{RedisCluster, RedisServer};

pub struct Fixture {
    pub bus: Bus,
    /// Kept alive for the test.
    _single: Option<RedisServer>,
    pub cluster: Option<RedisCluster>,
}

impl Fixture {
    pub async fn single() -> Fixture {
        let server = RedisServer::start();
        let bus = connect(Topology::Single { url: server.url() }).await;
        Fixture { bus, _single: Some(server), cluster: None }
    }

    pub async fn cluster() -> Fixture {
        let cluster = RedisCluster::start(3);
        let bus = connect(Topology::Cluster { seeds: cluster.seeds() }).await;
        Fixture { bus, _single: None, cluster: Some(cluster) }
    }

    pub fn keys(&self) -> &Keys {
        self.bus.keys()
    }
}

/// A bus with the default key names.
pub async fn connect(topology: Topology) -> Bus {
    Bus::connect(topology, Credentials::none(), Keys::from_config(&Config::default())).await.expect("connect")
}

/// Runs each scenario `async fn <scenario>(Fixture)` as `<scenario>::single` and
/// `<scenario>::cluster`.
#[allow(unused_macros)] // Not every test binary runs scenarios.
macro_rules! on_single_and_cluster {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn single() {
                super::$scenario($crate::support::bus::Fixture::single().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn cluster() {
                super::$scenario($crate::support::bus::Fixture::cluster().await).await
            }
        }
    )*};
}
#[allow(unused_imports)] // Not every test binary runs scenarios.
pub(crate) use on_single_and_cluster;
