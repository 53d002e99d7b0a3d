//! `redeye gallery`: list the enrolled people.

use std::process::ExitCode;

use super::CommonArgs;
use crate::app;
use crate::recognize::gallery;
use crate::terminal::printable;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// One JSON object per person instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let config = app::load_config(&common.config)?;
    let bus = app::connect(&config).await?;
    let mut conn = bus.shared();
    let version = gallery::version(&mut conn, bus.keys()).await?;
    let (people, malformed) = gallery::list(&mut conn, bus.keys()).await?;
    for bad in &malformed {
        eprintln!("skipped a malformed record: {bad}");
    }
    if args.json {
        for p in &people {
            println!("{}", serde_json::to_string(p)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} people, gallery version {version}", people.len());
    for p in &people {
        let from = if p.person.from_visitors.is_empty() {
            String::new()
        } else {
            format!("  from visitor {}", printable(&p.person.from_visitors.join(", ")))
        };
        println!(
            "  {:<24} {:<24} {:>3} embedding(s)  {}{from}",
            printable(&p.person.id),
            printable(&p.person.name),
            p.embeddings,
            printable(&p.person.model)
        );
    }
    Ok(ExitCode::SUCCESS)
}
