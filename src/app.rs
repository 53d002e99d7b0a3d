//! Building the long-lived parts from a [`Config`]: the Redis bus and the face pipeline. The
//! commands and roles call these, so every one of them connects and loads models the same way.

use anyhow::Context as _;

use crate::backoff::{Backoff, BackoffPolicy};
use crate::bus::{Bus, Keys, Topology};
use crate::config::Config;
use crate::vision::{FacePipeline, OnnxEmbedder, QualityGate, Runtime, SessionOptions, YuNet};

/// Loads and validates the configuration file named on the command line.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

/// Connects like [`connect`], but waits for a Redis that is not up yet (a long-running role
/// started before its Redis, or both restarted together): retries with the backoff a lost
/// connection uses, logs the cause once, and returns `None` if `stop` completes first. A
/// configuration or credential error still fails at once.
pub async fn connect_patiently(
    config: &Config,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Option<Bus>> {
    let mut stop = std::pin::pin!(stop);
    let mut backoff = Backoff::new(BackoffPolicy::redis());
    loop {
        let (topology, credentials) = Topology::from_config(config)?;
        let description = topology.describe();
        match Bus::connect(topology, credentials, Keys::from_config(config)).await {
            Ok(bus) => {
                if backoff.failures() > 0 {
                    tracing::info!(redis = %description, "Connected to Redis.");
                }
                return Ok(Some(bus));
            }
            Err(err) if err.is_retryable() => {
                let wait = backoff.next_random();
                if backoff.failures() == 1 {
                    tracing::warn!(redis = %description, error = %err, "Redis is not reachable; retrying with backoff until it is.");
                } else {
                    tracing::debug!(error = %err, retry_in_ms = wait.as_millis() as u64, "Redis still not reachable.");
                }
                tokio::select! {
                    _ = &mut stop => return Ok(None),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(err) => return Err(err).with_context(|| format!("connecting to Redis ({description})")),
        }
    }
}

/// Connects to the configured Redis topology (or `REDEYE_REDIS_URL`).
pub async fn connect(config: &Config) -> anyhow::Result<Bus> {
    let (topology, credentials) = Topology::from_config(config)?;
    let description = topology.describe();
    Bus::connect(topology, credentials, Keys::from_config(config))
        .await
        .with_context(|| format!("connecting to Redis ({description})"))
}

/// ONNX Runtime session settings from `[runtime]`: `intra_threads = 0` means one per core.
pub fn session_options(config: &Config) -> SessionOptions {
    let threads = match config.runtime.intra_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    SessionOptions { intra_threads: threads, ..SessionOptions::default() }
}

/// Detector, quality gate and recogniser as configured, for one thread.
pub fn face_pipeline(config: &Config) -> anyhow::Result<FacePipeline> {
    let runtime = Runtime::init(Some(&config.runtime.onnxruntime))?;
    let opts = session_options(config);
    let detector = YuNet::load(runtime, config.detector.clone(), &opts)?;
    let embedder = OnnxEmbedder::load(runtime, config.recognizer.clone(), &opts)?;
    Ok(FacePipeline::new(Box::new(detector), QualityGate::new(config.quality.clone()), Box::new(embedder)))
}

/// The detector and quality gate as configured, without the recogniser: for a client that
/// has the recognition workers embed its crops (`identify`).
pub fn detector(config: &Config) -> anyhow::Result<(YuNet, QualityGate)> {
    let runtime = Runtime::init(Some(&config.runtime.onnxruntime))?;
    let detector = YuNet::load(runtime, config.detector.clone(), &session_options(config))?;
    Ok((detector, QualityGate::new(config.quality.clone())))
}

/// Completes on the first SIGINT or SIGTERM, for a graceful shutdown; a second signal exits at
/// once (an operator who presses Ctrl-C twice means it). The shutdown a role runs with.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    let token = shutdown_token();
    async move { token.cancelled().await }
}

/// A token cancelled by the first SIGINT or SIGTERM (see [`shutdown_signal`]).
pub fn shutdown_token() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(%err, "Cannot listen for SIGTERM; only Ctrl-C stops gracefully.");
                let _ = tokio::signal::ctrl_c().await;
                cancel.cancel();
                return;
            }
        };
        for count in 0.. {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if count == 0 {
                tracing::info!("Shutting down; signal again to exit at once.");
                cancel.cancel();
            } else {
                std::process::exit(130);
            }
        }
    });
    token
}

/// The configured groups named on the command line (all of them when none are named).
pub fn select_groups<'a>(
    config: &'a Config,
    names: &[String],
) -> anyhow::Result<Vec<&'a crate::config::GroupConfig>> {
    if names.is_empty() {
        return Ok(config.groups.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            config.groups.iter().find(|g| &g.name == n).with_context(|| {
                let known: Vec<&str> = config.groups.iter().map(|g| g.name.as_str()).collect();
                format!("no group `{n}` in {} (groups: {})", config.source.display(), known.join(", "))
            })
        })
        .collect()
}
