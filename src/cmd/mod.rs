//! Subcommands. Each module has an `Args` (clap) and a `run`; the long-running roles are
//! assembled in [`crate::service`], so these only parse arguments and call it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod audit;
pub mod bench;
pub mod check_config;
pub mod enroll;
pub mod forget;
pub mod gallery;
pub mod identify;
pub mod ingest;
pub mod recognize;
pub mod run;
pub mod subscribe;
pub mod visitors;

/// Options of the long-running roles (`run`, `ingest`, `recognize`).
#[derive(Debug, Clone, clap::Args)]
pub struct RoleArgs {
    /// A group to work on (repeat for several; default: every group).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Serve /metrics, /live and /ready here instead of `[admin] listen` (port 0: any free port).
    #[arg(long)]
    pub admin_listen: Option<std::net::SocketAddr>,
}

impl RoleArgs {
    /// The [`crate::service::Roles`] these options and the command ask for.
    fn roles(self, ingest: bool, recognize: bool, workers: Option<usize>) -> crate::service::Roles {
        crate::service::Roles {
            ingest,
            recognize,
            groups: self.groups,
            workers,
            admin_listen: self.admin_listen,
        }
    }
}

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
    /// Report every family of redeye keys in Redis and check it against the retention.
    Audit(audit::Args),
    /// Benchmark the vision path (`bench vision`), next to OpenCV's pipeline.
    Bench(bench::Args),
    /// Parse and validate the configuration, then print a summary (or every error).
    CheckConfig(check_config::Args),
    /// Add a person to the gallery from photos of them, or everyone of a folder of folders (--dir).
    Enroll(enroll::Args),
    /// Remove a person everywhere: gallery, cached results, track records, events, visitors.
    Forget(forget::Args),
    /// List the enrolled people.
    Gallery(gallery::Args),
    /// Recognise the faces in photos: from the Redis cache when seen before, else by the workers.
    Identify(identify::Args),
    /// Pull cameras, detect faces, and hand the crops to Redis.
    Ingest(ingest::Args),
    /// Ingest and recognition workers in one process (the default deployment).
    Run(run::Args),
    /// Run recognition workers on the groups' faces streams.
    Recognize(recognize::Args),
    /// Print recognition events as JSON lines (live, or replayed with --from then live).
    Subscribe(subscribe::Args),
    /// List the anonymous visitors remembered now, or show one's best shot.
    Visitors(visitors::Args),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Audit(args) => block_on(audit::run(&self.common, args)),
            Command::Bench(args) => bench::run(&self.common, args),
            Command::CheckConfig(args) => check_config::run(&self.common, args),
            Command::Enroll(args) => block_on(enroll::run(&self.common, args)),
            Command::Forget(args) => block_on(forget::run(&self.common, args)),
            Command::Gallery(args) => block_on(gallery::run(&self.common, args)),
            Command::Identify(args) => block_on(identify::run(&self.common, args)),
            Command::Ingest(args) => block_on(ingest::run(&self.common, args)),
            Command::Run(args) => block_on(run::run(&self.common, args)),
            Command::Recognize(args) => block_on(recognize::run(&self.common, args)),
            Command::Subscribe(args) => block_on(subscribe::run(&self.common, args)),
            Command::Visitors(args) => block_on(visitors::run(&self.common, args)),
        }
    }
}

/// Runs an async command on a multi-threaded runtime (only the commands that talk to Redis
/// or serve need one).
fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(f: F) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(f)
}
