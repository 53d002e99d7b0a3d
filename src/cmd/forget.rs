//! `redeye forget NAME`: remove a person everywhere (gallery, cached results, track records,
//! events, linked visitors; see [`crate::privacy`]); `redeye forget --visitor v-...`: delete an
//! anonymous visitor everywhere.

use std::process::ExitCode;

use super::CommonArgs;
use crate::app;
use crate::instrument::unix_millis;
use crate::privacy::forget;
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
    let id = gallery::person_id(&name)?;
    let bus = app::connect(&config).await?;
    // The gallery first: once the version moves on, no cached result naming them answers, and
    // no worker names them in anything new.
    let version = gallery::forget(&mut bus.shared(), bus.keys(), &name).await?;
    // Then everything else naming them, also when they are no longer enrolled: a forget that
    // was interrupted is finished by running it again.
    let rest = forget::forget_everywhere(&bus, &id, unix_millis()).await?;
    if version.is_none() && rest.is_empty() {
        eprintln!("nobody called {} is enrolled or named anywhere (see `redeye gallery`)", printable(&name));
        return Ok(ExitCode::FAILURE);
    }
    println!("forgot {}", printable(&id));
    match version {
        Some(v) => println!("  gallery: record and embeddings removed; gallery version {v}"),
        None => println!("  gallery: not enrolled (already forgotten)"),
    }
    println!("  cached results: {} removed", rest.cached);
    println!("  track records: {} removed", rest.tracks);
    println!("  events: {} removed from {}", rest.events, printable(bus.keys().events_stream()));
    println!(
        "  visitors: {} removed{}",
        rest.visitors.len(),
        if rest.visitors.is_empty() { String::new() } else { format!(" ({})", rest.visitors.join(", ")) }
    );
    Ok(ExitCode::SUCCESS)
}
