//! The long-running roles, assembled from a configuration: `run` (ingest and recognition
//! workers in one process), `ingest` and `recognize`. One lifecycle for all of them, with an
//! injectable shutdown (as mini-redis's `server::run(listener, shutdown)`), so the commands in
//! `cmd/` only parse arguments and tests can run a role in-process and stop it.
//!
//! The order, on the way up: the admin server (so `/live` answers at once and `/ready` says
//! what it is waiting for), Redis, the workers, the cameras, then `/ready` turns 200. On the way
//! down: `/ready` says "shutting down", the cameras stop first (TEARDOWN), so the workers can
//! finish what ingest handed over, then the workers, within [`SHUTDOWN_GRACE`], then the admin
//! server. A loop that stops on a fatal fault records it in [`crate::health::Health`] and
//! `/ready` reports it; the rest of the process goes on.

pub mod ingest;
pub mod recognize;

use std::future::Future;

use futures::FutureExt as _;
use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::Admin;
use crate::app;
use crate::config::Config;

/// How long a graceful shutdown may take before the process exits anyway.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Which parts of the pipeline this process runs.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    /// Cameras, detection and the Redis hand-off.
    pub ingest: bool,
    /// Recognition workers.
    pub recognize: bool,
    /// The groups to work on (empty: every group).
    pub groups: Vec<String>,
    /// Worker threads (default: `[worker] workers`).
    pub workers: Option<usize>,
    /// Serve the admin endpoints here instead of `[admin] listen`.
    pub admin_listen: Option<SocketAddr>,
}

/// Runs `roles` until `shutdown` completes, then stops them in order.
pub async fn run(config: Config, roles: Roles, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let admin = Admin::start(roles.admin_listen.unwrap_or(config.admin.listen))?;
    // Until Redis answers, /ready says "not connected to Redis yet"; a shutdown meanwhile ends
    // the wait (shared with the run below, so a signal is never lost).
    let shutdown = shutdown.shared();
    let Some(bus) = app::connect_patiently(&config, shutdown.clone()).await? else {
        admin.stop().await;
        return Ok(());
    };
    admin.readiness.set_bus(bus.clone());
    let health = admin.readiness.health().clone();
    let token = CancellationToken::new();
    let workers = TaskTracker::new();
    if roles.recognize {
        let stats =
            recognize::spawn_workers(&config, &bus, &roles.groups, roles.workers, &workers, &token, &health)?;
        admin.metrics.add_workers(stats);
    }
    let ingest = if roles.ingest {
        let running = ingest::start(&config, &bus, &roles.groups, &health, &token)?;
        running.register_metrics(&admin.metrics);
        Some(running)
    } else {
        None
    };
    admin.readiness.set_models_loaded();
    let groups = app::select_groups(&config, &roles.groups)?.iter().map(|g| g.name.clone()).collect();
    admin.poll_redis(&bus, groups, &workers, &token);
    workers.close();

    shutdown.await;
    token.cancel();
    admin.readiness.set_draining();
    if let Some(ingest) = ingest {
        ingest::stop(ingest).await;
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, workers.wait()).await.is_err() {
        tracing::warn!("Workers did not stop within the grace period.");
    }
    admin.stop().await;
    Ok(())
}
