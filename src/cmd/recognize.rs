//! `redeye recognize`: recognition workers for the faces streams of some or all groups.

use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::{CommonArgs, Role, RoleArgs};
use crate::app;
use crate::bus::{Bus, consumer_name};
use crate::config::Config;
use crate::recognize::embed_service::EmbedService;
use crate::recognize::gallery::LiveGallery;
use crate::recognize::worker::{Settings, Worker, WorkerStats};
use crate::vision::{OnnxEmbedder, Runtime};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub role: RoleArgs,
    /// Worker threads in this process, each with its own model session (default: `worker.workers`).
    #[arg(long)]
    pub workers: Option<usize>,
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let Role { config, admin, bus, token } = Role::start(common, &args.role).await?;
    let tracker = TaskTracker::new();
    let stats = spawn_workers(&config, &bus, &args.role.groups, args.workers, &tracker, &token)?;
    admin.metrics.add_workers(stats);
    admin.readiness.set_models_loaded();
    let groups = app::select_groups(&config, &args.role.groups)?.iter().map(|g| g.name.clone()).collect();
    admin.poll_redis(&bus, groups, &tracker, &token);
    tracker.close();
    token.cancelled().await;
    admin.readiness.set_draining();
    if tokio::time::timeout(app::SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("Workers did not stop within the grace period.");
    }
    admin.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// Spawns `workers` x groups worker tasks into `tracker`. Each worker thread owns one embedding
/// session shared by its group tasks; returns the counters of all of them.
pub fn spawn_workers(
    config: &Config,
    bus: &Bus,
    groups: &[String],
    workers: Option<usize>,
    tracker: &TaskTracker,
    token: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Arc<WorkerStats>> {
    let groups = app::select_groups(config, groups)?;
    let workers = workers.unwrap_or(config.worker.workers).max(1);
    let runtime = Runtime::init(Some(&config.runtime.onnxruntime))?;
    let gallery =
        Arc::new(LiveGallery::new(&config.recognizer.id, config.recognizer.dim, config.match_policy()));
    let stats = Arc::new(WorkerStats::default());
    let settings = Settings::from_config(config);
    for w in 0..workers {
        let embedder = OnnxEmbedder::load(runtime, config.recognizer.clone(), &app::session_options(config))?;
        let embed = EmbedService::spawn(&format!("embed-{w}"), Box::new(embedder))?;
        for group in &groups {
            let worker = Worker {
                bus: bus.clone(),
                group: group.name.clone(),
                consumer: consumer_name(),
                embed: embed.clone(),
                gallery: gallery.clone(),
                settings: settings.clone(),
                stats: stats.clone(),
            };
            let span = tracing::error_span!("worker", group = %group.name, consumer = %worker.consumer);
            tracker.spawn(worker.run(token.clone()).instrument(span));
        }
    }
    tracing::info!(workers, groups = groups.len(), "Recognition workers started.");
    Ok(stats)
}
