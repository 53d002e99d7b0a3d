//! `redeye forget NAME`: remove a person from the gallery.

use std::process::ExitCode;

use super::CommonArgs;
use crate::app;
use crate::recognize::gallery;
use crate::terminal::printable;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The person's name or id.
    pub name: String,
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let config = app::load_config(&common.config)?;
    let bus = app::connect(&config).await?;
    match gallery::forget(&mut bus.shared(), bus.keys(), &args.name).await? {
        Some(version) => {
            println!("forgot {}; gallery version {version}", gallery::person_id(&args.name)?);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("nobody called {} is enrolled (see `redeye gallery`)", printable(&args.name));
            Ok(ExitCode::FAILURE)
        }
    }
}
