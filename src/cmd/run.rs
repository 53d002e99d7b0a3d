//! `redeye run`: ingest and recognition workers in one process, the default deployment.

use std::process::ExitCode;

use tokio_util::task::TaskTracker;

use super::CommonArgs;
use crate::app;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A group to run (repeat for several; default: every group).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Worker threads (default: `worker.workers`).
    #[arg(long)]
    pub workers: Option<usize>,
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let config = app::load_config(&common.config)?;
    let bus = app::connect(&config).await?;
    let token = app::shutdown_token();
    let workers = TaskTracker::new();
    super::recognize::spawn_workers(&config, &bus, &args.groups, args.workers, &workers, &token)?;
    workers.close();
    let ingest = super::ingest::start(&config, &bus, &args.groups, &token)?;
    token.cancelled().await;
    // Sources first, so the workers can finish what ingest handed over.
    super::ingest::stop(ingest).await;
    if tokio::time::timeout(app::SHUTDOWN_GRACE, workers.wait()).await.is_err() {
        tracing::warn!("Workers did not stop within the grace period.");
    }
    Ok(ExitCode::SUCCESS)
}
