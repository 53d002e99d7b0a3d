//! `redeye run`: ingest and recognition workers in one process, the default deployment.

use std::net::SocketAddr;
use std::process::ExitCode;

use tokio_util::task::TaskTracker;

use super::CommonArgs;
use crate::admin::Admin;
use crate::app;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A group to run (repeat for several; default: every group).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Worker threads (default: `worker.workers`).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Serve /metrics, /live and /ready here instead of `[admin] listen` (port 0: any free port).
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let config = app::load_config(&common.config)?;
    let admin = Admin::start(args.admin_listen.unwrap_or(config.admin.listen))?;
    let bus = app::connect(&config).await?;
    admin.readiness.set_bus(bus.clone());
    let token = app::shutdown_token();
    let workers = TaskTracker::new();
    let stats = super::recognize::spawn_workers(&config, &bus, &args.groups, args.workers, &workers, &token)?;
    admin.metrics.add_workers(stats);
    let ingest = super::ingest::start(&config, &bus, &args.groups, &token)?;
    ingest.register_metrics(&admin.metrics);
    admin.readiness.set_models_loaded();
    admin.poll_redis(&bus, ingest.group_names(), &workers, &token);
    workers.close();
    token.cancelled().await;
    admin.readiness.set_draining();
    // Sources first, so the workers can finish what ingest handed over.
    super::ingest::stop(ingest).await;
    if tokio::time::timeout(app::SHUTDOWN_GRACE, workers.wait()).await.is_err() {
        tracing::warn!("Workers did not stop within the grace period.");
    }
    admin.stop().await;
    Ok(ExitCode::SUCCESS)
}
