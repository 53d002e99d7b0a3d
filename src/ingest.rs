//! The Redis hand-off of ingest: each accepted face crop is looked up under `image:<md5>`; a fresh
//! cached result becomes an event at once (`cached: true`), anything else is appended to the
//! group's faces stream for the workers.
//!
//! [`RedisSink`] runs on the detection threads and blocks them while Redis is slow or away: a
//! crop accepted here is never dropped. Detection then falls behind, and the cameras' newest-frame
//! slots drop older frames (counted as `replaced`) while the RTSP readers keep reading.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, UNIX_EPOCH};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::bus::{Bus, BusError, cache, events, streams};
use crate::camera::{FaceCrop, FaceSink};
use crate::metrics::{Stage, StageHooks};
use crate::recognize::gallery;
use crate::recognize::result::CachedResult;
use crate::recognize::worker::event_for;
use crate::wire::FaceEntry;

/// Counters of the hand-off; the metrics module reads them.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Crops appended to a faces stream.
    pub enqueued: AtomicU64,
    /// Redis errors retried (each retry counts once).
    pub retries: AtomicU64,
    /// GET, XADD and event latencies and time-to-name of cache hits, once metrics attach.
    pub latency: StageHooks,
}

/// Looks crops up in the cache and enqueues the misses.
pub struct RedisSink {
    bus: Bus,
    runtime: Handle,
    /// Recogniser id: a cached result by another model is a miss; stored with each entry.
    model: String,
    crop_size: u32,
    faces_maxlen: u64,
    events_maxlen: u64,
    stats: Arc<SinkStats>,
    /// Cancelled on shutdown: a crop that still cannot be handed off then is logged as lost
    /// instead of blocking the shutdown forever.
    token: CancellationToken,
}

impl RedisSink {
    pub fn new(bus: Bus, config: &crate::config::Config, token: CancellationToken) -> RedisSink {
        RedisSink {
            bus,
            runtime: Handle::current(),
            model: config.recognizer.id.clone(),
            crop_size: crate::camera::CROP_SIZE,
            faces_maxlen: config.redis.faces_stream_maxlen,
            events_maxlen: config.redis.events_stream_maxlen,
            stats: Arc::new(SinkStats::default()),
            token,
        }
    }

    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }

    fn entry(&self, crop: FaceCrop) -> FaceEntry {
        // Capture times before 1970 do not happen; 0 marks a clock that is badly off.
        let capture_ts = crop.capture_time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        FaceEntry {
            md5: crop.md5,
            camera: crop.camera.to_string(),
            group: crop.group.to_string(),
            capture_ts,
            frame: crop.frame_number,
            bbox: crop.bbox,
            score: crop.score,
            landmarks: crop.landmarks,
            crop: crop.jpeg,
            crop_size: self.crop_size,
            model: self.model.clone(),
        }
    }

    /// One attempt: cache lookup, then an event or an XADD.
    async fn hand_off(&self, entry: &FaceEntry) -> Result<(), BusError> {
        let keys = self.bus.keys();
        let mut group_conn = self.bus.group(&entry.group);
        let mut shared = self.bus.shared();
        // The cached result and the gallery version live on different nodes (or slots): ask
        // both at once. A result from an older gallery is a miss, so a face that was unknown
        // is recognised as soon as that person is enrolled.
        let image_key = keys.image(&entry.md5);
        let started = Instant::now();
        let (cached, version) =
            tokio::join!(cache::get(&mut group_conn, &image_key), gallery::version(&mut shared, keys));
        self.stats.latency.observe(Stage::RedisGet, started.elapsed());
        let version = version.map_err(|e| match e {
            gallery::GalleryError::Redis(r) => shared.error("GET gallery version", r),
            other => BusError::Config(other.to_string()),
        })?;
        let fresh = cached?
            .and_then(|bytes| serde_json::from_slice::<CachedResult>(&bytes).ok())
            .filter(|r| r.is_fresh(&self.model, version) && r.faces.len() == 1);
        match fresh {
            Some(result) => {
                self.stats.cache_hits.fetch_add(1, Relaxed);
                let id = format!("cache:{}:{}:{}", entry.camera, entry.frame, entry.md5);
                let event = event_for(&id, entry, &result.faces[0], &result.model, true);
                let payload = serde_json::to_vec(&event).expect("an Event serialises");
                let started = Instant::now();
                events::publish(
                    &mut shared,
                    keys.events_channel(),
                    keys.events_stream(),
                    self.events_maxlen,
                    &payload,
                )
                .await?;
                self.stats.latency.observe(Stage::RedisPublish, started.elapsed());
                self.stats.latency.observe_time_to_name(entry.capture_ts);
                debug!(camera = %entry.camera, md5 = %entry.md5, "Answered from the cache.");
            }
            None => {
                self.stats.cache_misses.fetch_add(1, Relaxed);
                let fields = entry.to_fields();
                let pairs: Vec<(&str, &[u8])> = fields.iter().map(|(k, v)| (*k, v.as_slice())).collect();
                let started = Instant::now();
                streams::append_capped(&mut group_conn, &keys.faces(&entry.group), self.faces_maxlen, &pairs)
                    .await?;
                self.stats.latency.observe(Stage::RedisXadd, started.elapsed());
                self.stats.enqueued.fetch_add(1, Relaxed);
            }
        }
        Ok(())
    }
}

impl FaceSink for RedisSink {
    /// Blocks the detection thread until the crop is handed off, retrying with backoff.
    fn accept(&self, crop: FaceCrop) {
        let entry = self.entry(crop);
        let mut attempt = 0u32;
        loop {
            match self.runtime.block_on(self.hand_off(&entry)) {
                Ok(()) => return,
                Err(err) if self.token.is_cancelled() => {
                    warn!(camera = %entry.camera, md5 = %entry.md5, error = %err, "Shutting down: face crop not handed off.");
                    return;
                }
                Err(err) => {
                    self.stats.retries.fetch_add(1, Relaxed);
                    attempt = attempt.saturating_add(1);
                    let cap = 100u64.saturating_mul(1 << attempt.min(7)).min(10_000);
                    let wait = Duration::from_millis(rand::random_range(cap / 2..=cap));
                    if attempt == 1 || attempt % 10 == 0 {
                        warn!(camera = %entry.camera, error = %err, attempt, "Redis hand-off failed; retrying.");
                    }
                    std::thread::sleep(wait);
                }
            }
        }
    }
}
