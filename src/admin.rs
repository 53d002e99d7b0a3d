//! The admin HTTP server on `[admin] listen` (default `127.0.0.1:9464`):
//!
//! - `GET /metrics`: the Prometheus text exposition of [`Metrics`].
//! - `GET /live`: 200 while the process runs (a supervisor restarts it when this stops answering).
//! - `GET /ready`: 200 when this process can do its job: Redis answers `PING` on every node,
//!   the models are loaded and no loop has stopped on a fatal fault ([`Health`]); otherwise 503
//!   with the reason in the body. A load balancer or an
//!   orchestrator takes the process out of rotation on 503, without restarting it.
//!
//! Every command that runs for long starts it first, before connecting to Redis or loading
//! models, so `/live` answers at once and `/ready` says what it is still waiting for.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::bus::Bus;
use crate::health::Health;
use crate::metrics::{self, Metrics};

/// `/ready` gives Redis this long to answer `PING` before it reports it unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/ready` checks. The command fills it in as it starts and stops.
#[derive(Default)]
pub struct Readiness {
    bus: OnceLock<Bus>,
    models_loaded: AtomicBool,
    draining: AtomicBool,
    health: Arc<Health>,
}

impl Readiness {
    pub fn new() -> Arc<Readiness> {
        Arc::new(Readiness::default())
    }

    /// Connected: from now on `/ready` pings this bus.
    pub fn set_bus(&self, bus: Bus) {
        let _ = self.bus.set(bus);
    }

    /// Every model this process needs is loaded.
    pub fn set_models_loaded(&self) {
        self.models_loaded.store(true, Relaxed);
    }

    /// Where the loops of this process record fatal faults; each one makes `/ready` fail.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Shutting down: not ready any more, whatever Redis says.
    pub fn set_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    /// Ok when ready, or why not.
    pub async fn check(&self) -> Result<(), String> {
        if self.draining.load(Relaxed) {
            return Err("shutting down".into());
        }
        let faults = self.health.problems();
        if !faults.is_empty() {
            return Err(faults.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "));
        }
        let Some(bus) = self.bus.get() else {
            return Err("not connected to Redis yet".into());
        };
        if !self.models_loaded.load(Relaxed) {
            return Err("models are still loading".into());
        }
        match tokio::time::timeout(PING_TIMEOUT, bus.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("Redis ({}) did not answer PING within {PING_TIMEOUT:?}", bus.describe())),
        }
    }
}

/// The admin side of a long-running command (`recognize`, `ingest`, `run`): its metrics, its
/// readiness and the server, started before anything else and stopped after everything else.
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    token: CancellationToken,
    server: JoinHandle<()>,
}

impl Admin {
    /// A fresh registry and readiness, served on `listen` (see [`serve`]).
    pub fn start(listen: SocketAddr) -> anyhow::Result<Admin> {
        let metrics = Arc::new(Metrics::new());
        let readiness = Readiness::new();
        let token = CancellationToken::new();
        let server = serve(listen, metrics.clone(), readiness.clone(), token.clone())?;
        Ok(Admin { metrics, readiness, token, server })
    }

    /// Polls the faces streams of `groups` and the gallery for their gauges, on `tracker`,
    /// until `token` is cancelled.
    pub fn poll_redis(
        &self,
        bus: &Bus,
        groups: Vec<String>,
        tracker: &TaskTracker,
        token: &CancellationToken,
    ) {
        let task = metrics::poll_redis(
            self.metrics.clone(),
            bus.clone(),
            groups,
            metrics::POLL_INTERVAL,
            token.clone(),
        );
        tracker.spawn(task.instrument(tracing::error_span!("metrics_poll")));
    }

    /// Stops the server; call it last, so `/metrics` answers during the shutdown.
    pub async fn stop(self) {
        self.readiness.set_draining();
        self.token.cancel();
        if tokio::time::timeout(Duration::from_secs(2), self.server).await.is_err() {
            tracing::debug!("The admin server did not stop within 2 s.");
        }
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

/// Binds `listen` now (so a port in use fails the command at startup) and serves the admin
/// endpoints on a task until `token` is cancelled. Must be called within a tokio runtime.
///
/// Give it a token of its own, cancelled after the rest of the process has stopped, so that
/// `/metrics` still answers while the workers drain (and `/ready` says "shutting down").
pub fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    token: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("binding the admin address {listen} ([admin] listen)"))?;
    listener.set_nonblocking(true).context("admin listener")?;
    let listener = tokio::net::TcpListener::from_std(listener).context("admin listener")?;
    let addr = listener.local_addr().unwrap_or(listen);
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready_handler))
        .with_state(AppState { metrics, readiness });
    tracing::info!(%addr, "Admin server listening (/metrics, /live, /ready).");
    Ok(tokio::spawn(async move {
        let shutdown = async move { token.cancelled().await };
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(%error, "The admin server stopped.");
        }
    }))
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    // Gathering reads atomics and a few locks: cheap enough to do on the runtime.
    let body = state.metrics.render();
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response()
}

async fn ready_handler(State(state): State<AppState>) -> Response {
    match state.readiness.check().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")).into_response(),
    }
}
