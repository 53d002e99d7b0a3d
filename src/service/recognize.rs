//! The recognize role: recognition workers on the faces streams of some groups, supervised so
//! that a worker that stops on a fatal error, or panics, is reported on `/ready`. A worker that
//! panicked is a bug: `/ready` stays down so the operator looks, and the worker is started
//! again after a backoff (same consumer, so it first reads what it left pending), so its group
//! is not left without recognition meanwhile.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::app;
use crate::backoff::{Backoff, BackoffPolicy};
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
                health: health.clone(),
                group_ready: Default::default(),
            };
            let span = tracing::error_span!("worker", group = %group.name, consumer = %worker.consumer);
            tracker.spawn(supervise(worker, token.clone(), health.clone()).instrument(span));
        }
    }
    tracing::info!(workers, groups = groups.len(), "Recognition workers started.");
    Ok(stats)
}

/// Runs `worker` until it ends: a fatal error is recorded in `health` and ends it; a panic is
/// recorded too, then a copy of the worker starts again after a backoff.
async fn supervise(worker: RecognitionWorker, token: CancellationToken, health: Arc<Health>) {
    let component = format!("worker {} for group {}", worker.consumer, worker.group);
    let mut backoff = Backoff::new(BackoffPolicy::redis());
    loop {
        let run = AssertUnwindSafe(worker.clone_settings().run(token.clone())).catch_unwind();
        match run.await {
            Ok(Ok(())) => return,
            Ok(Err(fatal)) => {
                // A stopped worker is a fault; a degradation it had must not outlive it.
                health.recover(&component);
                return health.fail(component, fatal.to_string());
            }
            Err(_) => {
                let wait = backoff.next_random();
                tracing::error!(
                    restart_in_ms = wait.as_millis() as u64,
                    "The worker panicked; restarting it."
                );
                health.fail(component.clone(), "the worker panicked (see the log); it was restarted");
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}
