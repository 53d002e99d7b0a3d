//! Subcommands. Each module has an `Args` (clap) and a `run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod check_config;

/// Options every subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// The configuration file.
    #[arg(short = 'c', long = "config", default_value = "cameras.toml", global = true)]
    pub config: PathBuf,
}

#[derive(Debug, Parser)]
#[command(
    name = "redeye",
    version,
    about = "Face recognition across many cameras, with Redis as the backbone"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and validate the configuration, then print a summary (or every error).
    CheckConfig(check_config::Args),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::CheckConfig(args) => check_config::run(&self.common, args),
        }
    }
}
