//! `redeye visitors`: the anonymous visitors remembered now; `redeye visitors show v-...`: the
//! best shot of one, written to a JPEG file so an operator can see whom they are naming.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::CommonArgs;
use crate::app;
use crate::visitor::{self, VisitorRecord, store};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    /// One JSON object per visitor instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Write a visitor's best shot (the aligned face crop, JPEG) to a file.
    Show {
        /// The visitor id, `v-...`.
        id: String,
        /// Where to write it (default `<id>.jpg` in the current directory).
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let config = app::load_config(&common.config)?;
    if let Some(Action::Show { id, out }) = &args.action {
        check_id(id)?;
        let bus = app::connect(&config).await?;
        let mut conn = bus.shared();
        let Some(jpeg) = store::best_shot(&mut conn, bus.keys(), id).await? else {
            anyhow::bail!("{}", not_found(id, config.visitors.ttl_secs));
        };
        let out = out.clone().unwrap_or_else(|| PathBuf::from(format!("{id}.jpg")));
        std::fs::write(&out, &jpeg).with_context(|| format!("writing {}", out.display()))?;
        println!("wrote the best shot of {id} to {} ({} bytes)", out.display(), jpeg.len());
        return Ok(ExitCode::SUCCESS);
    }
    let bus = app::connect(&config).await?;
    let mut conn = bus.shared();
    let visitors = store::list(&mut conn, bus.keys()).await?;
    if args.json {
        for v in &visitors {
            println!("{}", serde_json::to_string(v)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (evicted, _) = store::counts(&mut conn, bus.keys()).await?;
    println!(
        "{} visitor(s) remembered for {} s after they were last seen ({evicted} evicted by the cap so far)",
        visitors.len(),
        config.visitors.ttl_secs
    );
    if !visitors.is_empty() {
        println!(
            "  {:<16} {:<24} {:<24} {:>6} {:>7} {:>5}  cameras",
            "visitor", "first seen (UTC)", "last seen (UTC)", "visits", "returns", "best"
        );
    }
    for v in &visitors {
        println!("{}", row(v));
    }
    Ok(ExitCode::SUCCESS)
}

/// A clear error for something that is not a visitor id.
pub fn check_id(id: &str) -> anyhow::Result<()> {
    if visitor::is_id(id) {
        Ok(())
    } else {
        anyhow::bail!("{:?} is not a visitor id: they look like v-0123456789ab (see `redeye visitors`)", id)
    }
}

/// The error for a visitor id that is not (or no longer) stored.
pub fn not_found(id: &str, ttl_secs: u64) -> String {
    format!(
        "no visitor {id}: never seen, or expired ({ttl_secs} s after the last sighting), evicted or forgotten \
         (see `redeye visitors`)"
    )
}

fn row(v: &VisitorRecord) -> String {
    let cameras: Vec<&str> = v.cameras.iter().map(|(c, _)| c.as_str()).collect();
    format!(
        "  {:<16} {:<24} {:<24} {:>6} {:>7} {:>5.2}  {}",
        v.id,
        utc(v.first_seen),
        utc(v.last_seen),
        v.visits,
        v.returns,
        v.best_match,
        crate::terminal::printable(&cameras.join(","))
    )
}

/// RFC 3339, UTC, to the second.
fn utc(ms: u64) -> String {
    jiff::Timestamp::from_second((ms / 1000) as i64).map_or_else(|_| ms.to_string(), |t| t.to_string())
}
