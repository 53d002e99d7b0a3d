//! `redeye run`: ingest and recognition workers in one process, the default deployment.

use std::process::ExitCode;

use tokio_util::task::TaskTracker;

use super::{CommonArgs, Role, RoleArgs};
use crate::app;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub role: RoleArgs,
    /// Worker threads (default: `worker.workers`).
    #[arg(long)]
    pub workers: Option<usize>,
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let Role { config, admin, bus, token } = Role::start(common, &args.role).await?;
    let workers = TaskTracker::new();
    let stats =
        super::recognize::spawn_workers(&config, &bus, &args.role.groups, args.workers, &workers, &token)?;
    admin.metrics.add_workers(stats);
    let ingest = super::ingest::start(&config, &bus, &args.role.groups, &token)?;
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
