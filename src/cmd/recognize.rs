//! `redeye recognize`: recognition workers for the faces streams of some or all groups.

use std::process::ExitCode;

use super::{CommonArgs, RoleArgs};
use crate::{app, service};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub role: RoleArgs,
    /// Worker threads in this process, each with its own model session (default: `worker.workers`).
    #[arg(long)]
    pub workers: Option<usize>,
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let roles = args.role.roles(false, true, args.workers);
    service::run(app::load_config(&common.config)?, roles, app::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
