//! The Redis hand-off of ingest: each accepted face crop is looked up under `image:<md5>`; a fresh
//! cached result becomes an event at once (`cached: true`), anything else is appended to the
//! group's faces stream for the workers.
//!
//! [`RedisSink`] runs on the detection threads and blocks them while Redis is slow or away: a
//! crop accepted here is never dropped for a retryable error. Detection then falls behind, and
//! the cameras' newest-frame slots drop older frames (counted as `replaced`) while the RTSP
//! readers keep reading. A fatal error (refused credentials or permissions) stops the hand-off:
//! it is recorded in [`Health`] for `/ready`, and later crops are counted as lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::backoff::{Backoff, BackoffPolicy};
use crate::bus::{Bus, BusError, streams};
use crate::camera::{FaceCrop, FaceSink};
use crate::health::Health;
use crate::instrument::{Stage, StageHooks, millis_of};
use crate::recognition::{self, Finisher, face_event};
use crate::recognize::gallery;
use crate::wire::FaceEntry;

/// Counters of the hand-off; the metrics module reads them.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Crops answered from a fresh cached result (an event was published).
    pub cache_hits: AtomicU64,
    /// Crops without a fresh result, appended to a faces stream.
    pub cache_misses: AtomicU64,
    /// Hand-offs that failed and were retried (each retry counts once).
    pub retries: AtomicU64,
    /// Crops never handed off: the hand-off stopped on a fatal error, or shutdown came first.
    pub lost: AtomicU64,
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
    finisher: Finisher,
    stats: Arc<SinkStats>,
    health: Arc<Health>,
    /// Set once a fatal error stopped the hand-off.
    stopped: AtomicBool,
    /// Cancelled on shutdown: a crop that still cannot be handed off then is counted as lost
    /// instead of blocking the shutdown forever.
    token: CancellationToken,
}

/// What [`RedisSink::hand_off`] did with a crop.
enum HandOff {
    Cached,
    Enqueued,
}

impl RedisSink {
    pub fn new(
        bus: Bus,
        config: &crate::config::Config,
        health: Arc<Health>,
        token: CancellationToken,
    ) -> RedisSink {
        let finisher =
            Finisher::new(bus.clone(), config.redis.cache_ttl_secs, config.redis.events_stream_maxlen);
        RedisSink {
            bus,
            runtime: Handle::current(),
            model: config.recognizer.id.clone(),
            crop_size: crate::camera::CROP_SIZE,
            faces_maxlen: config.redis.faces_stream_maxlen,
            finisher,
            stats: Arc::new(SinkStats::default()),
            health,
            stopped: AtomicBool::new(false),
            token,
        }
    }

    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }

    fn entry(&self, crop: FaceCrop) -> FaceEntry {
        FaceEntry {
            md5: crop.md5,
            camera: crop.camera.to_string(),
            group: crop.group.to_string(),
            capture_ts: millis_of(crop.capture_time),
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
    async fn hand_off(&self, entry: &FaceEntry) -> Result<HandOff, BusError> {
        let keys = self.bus.keys();
        let mut group_conn = self.bus.group(&entry.group);
        let mut shared = self.bus.shared();
        // The cached result and the gallery version live on different nodes (or slots): ask
        // both at once. A result from another gallery version is a miss, so a face that was
        // unknown is recognised as soon as that person is enrolled.
        let image_key = keys.image(&entry.md5);
        let started = Instant::now();
        let (cached, version) = tokio::join!(
            recognition::read_cached(&mut group_conn, &image_key),
            gallery::version(&mut shared, keys)
        );
        self.stats.latency.observe(Stage::RedisGet, started.elapsed());
        let version = version.map_err(|e| match e {
            gallery::GalleryError::Redis(r) => shared.error("GET gallery version", r),
            other => BusError::Config(other.to_string()),
        })?;
        let fresh = cached?.filter(|r| r.is_fresh(&self.model, version) && r.faces.len() == 1);
        if let Some(result) = fresh {
            let id = format!("cache:{}:{}:{}", entry.camera, entry.frame, entry.md5);
            let event = face_event(&id, entry, &result.faces[0], &result.model, true);
            self.finisher.publish(&event, &self.stats.latency).await?;
            self.stats.latency.observe_time_to_name(entry.capture_ts);
            debug!(camera = %entry.camera, md5 = %entry.md5, "Answered from the cache.");
            return Ok(HandOff::Cached);
        }
        let fields = entry.to_fields();
        let pairs: Vec<(&str, &[u8])> = fields.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let started = Instant::now();
        streams::append_capped(&mut group_conn, &keys.faces(&entry.group), self.faces_maxlen, &pairs).await?;
        self.stats.latency.observe(Stage::RedisXadd, started.elapsed());
        Ok(HandOff::Enqueued)
    }

    fn lose(&self, entry: &FaceEntry, why: &str) {
        self.stats.lost.fetch_add(1, Relaxed);
        debug!(camera = %entry.camera, md5 = %entry.md5, why, "Face crop not handed off.");
    }
}

impl FaceSink for RedisSink {
    /// Blocks the detection thread until the crop is handed off, retrying with backoff.
    fn accept(&self, crop: FaceCrop) {
        let entry = self.entry(crop);
        if self.stopped.load(Relaxed) {
            return self.lose(&entry, "the hand-off stopped on a fatal error");
        }
        let mut backoff = Backoff::new(BackoffPolicy::redis());
        loop {
            match self.runtime.block_on(self.hand_off(&entry)) {
                Ok(HandOff::Cached) => {
                    self.stats.cache_hits.fetch_add(1, Relaxed);
                    return;
                }
                Ok(HandOff::Enqueued) => {
                    self.stats.cache_misses.fetch_add(1, Relaxed);
                    return;
                }
                Err(err) if self.token.is_cancelled() => {
                    warn!(camera = %entry.camera, error = %err, "Shutting down: face crop not handed off.");
                    return self.lose(&entry, "shutting down");
                }
                Err(err) if err.is_fatal() => {
                    if !self.stopped.swap(true, Relaxed) {
                        error!(camera = %entry.camera, error = %err, "Ingest hand-off stopped: this needs the operator.");
                        self.health.fail("ingest hand-off to Redis", err.to_string());
                    }
                    return self.lose(&entry, "fatal error");
                }
                Err(err) => {
                    self.stats.retries.fetch_add(1, Relaxed);
                    let failures = backoff.failures();
                    if failures == 0 || failures % 10 == 9 {
                        warn!(camera = %entry.camera, error = %err, attempt = failures + 1, "Redis hand-off failed; retrying.");
                    }
                    std::thread::sleep(backoff.next_random());
                }
            }
        }
    }
}
