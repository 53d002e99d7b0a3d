//! `redeye run`: ingest and recognition workers in one process, the default deployment.

use std::process::ExitCode;

use super::{CommonArgs, RoleArgs};
use crate::{app, service};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub role: RoleArgs,
    /// Worker threads (default: `worker.workers`).
    #[arg(long)]
    pub workers: Option<usize>,
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let roles = args.role.roles(true, true, args.workers);
    service::run(app::load_config(&common.config)?, roles, app::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
