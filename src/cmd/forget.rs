//! `redeye forget NAME`: remove a person from the gallery; `redeye forget --visitor v-...`:
//! delete an anonymous visitor everywhere.

use std::process::ExitCode;

use super::CommonArgs;
use crate::app;
use crate::instrument::unix_millis;
use crate::recognize::gallery;
use crate::terminal::printable;
use crate::visitor::store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The person's name or id.
    #[arg(required_unless_present = "visitor", conflicts_with = "visitor")]
    pub name: Option<String>,
    /// An anonymous visitor's id (`v-...`): their record, embeddings and best shot are deleted.
    #[arg(long)]
    pub visitor: Option<String>,
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let config = app::load_config(&common.config)?;
    if let Some(id) = &args.visitor {
        super::visitors::check_id(id)?;
        let bus = app::connect(&config).await?;
        if store::delete(&mut bus.shared(), bus.keys(), id, unix_millis()).await? {
            println!("forgot visitor {id}: record, embeddings and best shot deleted");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("{}", super::visitors::not_found(id, config.visitors.ttl_secs));
        return Ok(ExitCode::FAILURE);
    }
    let name = args.name.unwrap_or_default();
    let bus = app::connect(&config).await?;
    match gallery::forget(&mut bus.shared(), bus.keys(), &name).await? {
        Some(version) => {
            println!("forgot {}; gallery version {version}", gallery::person_id(&name)?);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("nobody called {} is enrolled (see `redeye gallery`)", printable(&name));
            Ok(ExitCode::FAILURE)
        }
    }
}
