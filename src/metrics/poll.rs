//! Gauges that only Redis knows: each group's faces stream length, its consumer group's lag and
//! pending count (`XLEN`, `XINFO GROUPS`), and the gallery size (`HLEN` of the people hash).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Metrics;
use crate::bus::{Bus, BusError, CONSUMER_GROUP, streams};

/// How often [`poll_redis`] asks.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The longest one poll may take; a Redis that does not answer is retried at the next tick.
const POLL_TIMEOUT: Duration = Duration::from_secs(5);

/// Polls the faces streams of `groups` and the gallery every `every` until `token` is
/// cancelled. Spawn it in the task tracker of the command, inside a span. A failing poll is
/// logged once at WARN when Redis stops answering and once at INFO when it is back.
pub async fn poll_redis(
    metrics: Arc<Metrics>,
    bus: Bus,
    groups: Vec<String>,
    every: Duration,
    token: CancellationToken,
) {
    for g in &groups {
        metrics.add_stream_group(g);
    }
    let mut failing = false;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let result = match tokio::time::timeout(POLL_TIMEOUT, poll_once(&metrics, &bus, &groups)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {POLL_TIMEOUT:?}")),
        };
        match (result, failing) {
            (Ok(()), true) => {
                info!("Polling Redis for stream metrics works again.");
                failing = false;
            }
            (Err(error), false) => {
                warn!(%error, "Cannot poll Redis for stream metrics; the gauges keep their last values.");
                failing = true;
            }
            (Err(error), true) => debug!(%error, "Polling Redis still fails."),
            (Ok(()), false) => {}
        }
    }
}

async fn poll_once(metrics: &Metrics, bus: &Bus, groups: &[String]) -> Result<(), BusError> {
    for group in groups {
        let mut conn = bus.group(group);
        let key = bus.keys().faces(group);
        let length = streams::stream_len(&mut conn, &key).await?;
        let info = streams::group_info(&mut conn, &key).await?;
        // No consumer group yet (no worker ever started): nothing is delivered, all is lag.
        let (lag, pending) = match info.iter().find(|g| g.name == CONSUMER_GROUP) {
            Some(g) => (g.lag, g.pending),
            None => (Some(length), 0),
        };
        metrics.set_stream(group, length, lag, pending);
    }
    let mut shared = bus.shared();
    let people = bus.keys().people();
    let n: u64 = redis::cmd("HLEN")
        .arg(&people)
        .query_async(&mut shared)
        .await
        .map_err(|e| shared.error(format!("HLEN {people}"), e))?;
    metrics.set_gallery_people(n);
    let (evicted, stored) = crate::visitor::store::counts(&mut shared, bus.keys()).await?;
    metrics.set_visitors(stored, evicted);
    Ok(())
}
