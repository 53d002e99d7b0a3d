//! `redeye audit`: every family of redeye keys in the configured Redis (count, memory, oldest
//! item, TTL or cap), checked against the retention (see [`crate::privacy::audit`]). Exits 1,
//! saying why, when anything biometric has no TTL or cap or is older than its retention.

use std::process::ExitCode;

use super::CommonArgs;
use crate::app;
use crate::privacy::audit::{self, Limits, Report};
use crate::terminal::printable;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the report as one JSON object (`ok`, `families`, `problems`).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let config = app::load_config(&common.config)?;
    let bus = app::connect(&config).await?;
    let report = audit::audit(&bus, &config.redis.image_key_prefix, &Limits::from_config(&config)).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_text(&report, bus.describe());
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn print_text(report: &Report, target: &str) {
    println!("audit of {}", printable(target));
    println!(
        "{:<22} {:>8} {:>9} {:>11} {:>11} {:>10} {:>9}  limit",
        "family", "keys", "entries", "memory", "oldest", "ttl max", "no ttl"
    );
    let secs = |s: Option<u64>| s.map_or("-".to_owned(), |s| format!("{s} s"));
    for f in &report.families {
        println!(
            "{:<22} {:>8} {:>9} {:>11} {:>11} {:>10} {:>9}  {}",
            f.family,
            f.keys,
            f.entries.map_or("-".to_owned(), |e| e.to_string()),
            format!("{} B", f.memory_bytes),
            secs(f.oldest_secs),
            secs(f.ttl_max_secs),
            f.without_ttl,
            f.limit
        );
    }
    if report.ok {
        println!("ok: every biometric artefact has a TTL or cap and is within its retention");
    } else {
        for p in &report.problems {
            println!("problem: {}", printable(p));
        }
    }
}
