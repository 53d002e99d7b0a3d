//! The recognize role: recognition workers on the faces streams of some groups, supervised so
//! that a worker that stops on a fatal error, or panics, is reported on `/ready`.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::app;
use crate::bus::{Bus, consumer_name};
use crate::config::Config;
use crate::health::Health;
use crate::recognize::embed_service::EmbedService;
use crate::recognize::gallery::LiveGallery;
use crate::recognize::worker::{RecognitionWorker, Settings, WorkerStats};
use crate::vision::{OnnxEmbedder, Runtime};
use crate::visitor::{LiveVisitors, VisitorSettings};

/// Spawns `workers` x groups worker tasks into `tracker`. Each worker thread owns one embedding
/// session shared by its group tasks; returns the counters of all of them. A worker that
/// returns a fatal error or panics records it in `health`.
pub fn spawn_workers(
    config: &Config,
    bus: &Bus,
    groups: &[String],
    workers: Option<usize>,
    tracker: &TaskTracker,
    token: &CancellationToken,
    health: &Arc<Health>,
) -> anyhow::Result<Arc<WorkerStats>> {
    let groups = app::select_groups(config, groups)?;
    let workers = workers.unwrap_or(config.worker.workers).max(1);
    let runtime = Runtime::init(Some(&config.runtime.onnxruntime))?;
    let gallery =
        Arc::new(LiveGallery::new(&config.recognizer.id, config.recognizer.dim, config.match_policy()));
    let visitors =
        config.visitors.enabled().then(|| Arc::new(LiveVisitors::new(VisitorSettings::from_config(config))));
    let stats = Arc::new(WorkerStats::default());
    let settings = Settings::from_config(config);
    for w in 0..workers {
        let embedder = OnnxEmbedder::load(runtime, config.recognizer.clone(), &app::session_options(config))?;
        let embed = EmbedService::spawn(&format!("embed-{w}"), Box::new(embedder))?;
        for group in &groups {
            let worker = RecognitionWorker {
                bus: bus.clone(),
                group: group.name.clone(),
                consumer: consumer_name(),
                embed: embed.clone(),
                gallery: gallery.clone(),
                visitors: visitors.clone(),
                settings: settings.clone(),
                stats: stats.clone(),
            };
            let span = tracing::error_span!("worker", group = %group.name, consumer = %worker.consumer);
            let component = format!("worker {} for group {}", worker.consumer, group.name);
            let health = health.clone();
            let run = AssertUnwindSafe(worker.run(token.clone())).catch_unwind();
            tracker.spawn(
                async move {
                    match run.await {
                        Ok(Ok(())) => {}
                        Ok(Err(fatal)) => health.fail(component, fatal.to_string()),
                        Err(_) => {
                            tracing::error!("The worker panicked.");
                            health.fail(component, "the worker panicked (see the log)");
                        }
                    }
                }
                .instrument(span),
            );
        }
    }
    tracing::info!(workers, groups = groups.len(), "Recognition workers started.");
    Ok(stats)
}
