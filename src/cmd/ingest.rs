//! `redeye ingest`: pull the cameras of some or all groups, detect faces and hand the crops to
//! Redis (cache hits become events, misses go to the groups' faces streams).

use std::process::ExitCode;

use super::{CommonArgs, RoleArgs};
use crate::{app, service};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub role: RoleArgs,
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let roles = args.role.roles(true, false, None);
    service::run(app::load_config(&common.config)?, roles, app::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
