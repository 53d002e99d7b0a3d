//! The Redis hand-off of ingest, per detected frame.
//!
//! With tracking (the default), each camera's tracker (`tracks`) decides which faces are shots
//! of which track; a shot is appended to the group's faces stream together with its track's
//! record ([`visit::send_shot`]), everything else is counted and dropped. A track that ends is
//! closed in its record ([`visit::end_track`]), which announces `left` once every shot of it is
//! folded. Without tracking, each accepted crop is looked up under `image:<md5>`: a fresh cached
//! result becomes a per-face event at once (`cached: true`), anything else is appended to the
//! faces stream.
//!
//! [`RedisSink`] runs on the detection threads and blocks them while Redis is slow or away: a
//! shot or crop accepted here is never dropped for a retryable error. Detection then falls
//! behind, and the cameras' newest-frame slots drop older frames (counted as `replaced`) while
//! the RTSP readers keep reading. A fatal error (refused credentials or permissions) stops the
//! hand-off: it is recorded in [`Health`] for `/ready`, and later crops are counted as lost.

mod tracks;

pub use tracks::{TrackStats, Trackers};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::backoff::{Backoff, BackoffPolicy};
use crate::bus::{Bus, BusError, streams};
use crate::camera::{DetectedFrame, FaceCrop, FaceSink};
use crate::config::GroupConfig;
use crate::health::Health;
use crate::instrument::{Stage, StageHooks, millis_of, unix_millis};
use crate::recognition::{self, Finisher, face_event};
use crate::recognize::gallery;
use crate::visit::{self, NewShot, TrackKey, VisitCounts};
use crate::wire::FaceEntry;
use tracks::{Ended, Shot};

/// The hand-off's name on `/ready`.
const HAND_OFF: &str = "ingest hand-off to Redis";

/// How often ended tracks of cameras that stopped sending frames are looked for.
const EXPIRY_INTERVAL: Duration = Duration::from_millis(250);

/// Counters of the hand-off; the metrics module reads them.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Crops answered from a fresh cached result (an event was published).
    pub cache_hits: AtomicU64,
    /// Crops without a fresh result, appended to a faces stream (without tracking).
    pub cache_misses: AtomicU64,
    /// Hand-offs that failed and were retried (each retry counts once).
    pub retries: AtomicU64,
    /// Crops never handed off: the hand-off stopped on a fatal error, shutdown came first, or
    /// (a bug) the crop could not be encoded.
    pub lost: AtomicU64,
    /// Crops and shots refused because their faces stream held `faces_stream_maxlen`
    /// unfinished entries (workers fell behind).
    pub stream_full: AtomicU64,
    /// Visit events ingest published (`left` of tracks whose shots were all folded already).
    pub visits: VisitCounts,
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
    record_ttl_secs: u64,
    /// What publishing a `left` needs.
    publishing: visit::Publishing,
    /// `None` without tracking: every accepted crop is handed off.
    trackers: Option<Trackers>,
    finisher: Finisher,
    stats: Arc<SinkStats>,
    health: Arc<Health>,
    /// Set once a fatal error stopped the hand-off.
    stopped: AtomicBool,
    /// Set while a faces stream refuses crops (full), so the warning is written once per spell.
    full: AtomicBool,
    /// Cancelled on shutdown: a crop that still cannot be handed off then is counted as lost
    /// instead of blocking the shutdown forever.
    token: CancellationToken,
}

/// What [`RedisSink::hand_off`] did with a crop.
enum HandOff {
    Cached,
    Enqueued,
    /// The faces stream holds `faces_stream_maxlen` unfinished entries: the crop is dropped.
    StreamFull,
}

impl RedisSink {
    /// The hand-off of the cameras of `groups` (a tracker for each, with tracking on).
    pub fn new(
        bus: Bus,
        config: &crate::config::Config,
        groups: &[&GroupConfig],
        health: Arc<Health>,
        token: CancellationToken,
    ) -> RedisSink {
        let finisher = Finisher::new(bus.clone(), config.redis.cache_ttl_secs, Finisher::events_cap(config));
        let cameras: Vec<(Arc<str>, Arc<str>)> = groups
            .iter()
            .flat_map(|g| g.cameras.iter().map(|c| (Arc::from(g.name.as_str()), Arc::from(c.name.as_str()))))
            .collect();
        RedisSink {
            bus,
            runtime: Handle::current(),
            model: config.recognizer.id.clone(),
            crop_size: crate::camera::CROP_SIZE,
            faces_maxlen: config.redis.faces_stream_maxlen,
            record_ttl_secs: config.tracking.record_ttl_secs,
            publishing: visit::Publishing::from_config(config),
            trackers: config.tracking.enabled.then(|| Trackers::new(&config.tracking, &cameras)),
            finisher,
            stats: Arc::new(SinkStats::default()),
            health,
            stopped: AtomicBool::new(false),
            full: AtomicBool::new(false),
            token,
        }
    }

    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }

    /// The per-camera trackers, `None` without tracking.
    pub fn trackers(&self) -> Option<&Trackers> {
        self.trackers.as_ref()
    }

    /// The faces stream entry of a crop handed off, encoded here (JPEG, MD5) rather than on
    /// detection: most accepted faces are never sent. `None` (counted as lost) when the crop
    /// cannot be encoded, which for an in-memory RGB image would be a bug.
    fn entry(&self, crop: FaceCrop) -> Option<FaceEntry> {
        let encoded = match crop.encode() {
            Ok(e) => e,
            Err(e) => {
                self.stats.lost.fetch_add(1, Relaxed);
                warn!(camera = %crop.camera, error = %e, "Cannot encode a face crop; not handed off.");
                return None;
            }
        };
        Some(FaceEntry {
            md5: encoded.md5,
            camera: crop.camera.to_string(),
            group: crop.group.to_string(),
            capture_ts: millis_of(crop.capture_time),
            frame: crop.frame_number,
            bbox: crop.bbox,
            score: crop.score,
            landmarks: crop.landmarks,
            crop: encoded.jpeg,
            crop_size: self.crop_size,
            model: self.model.clone(),
        })
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
            let person = event.person.as_ref().map(|p| p.id.as_str());
            self.finisher.publish(&event, person, &self.stats.latency).await?;
            self.stats.latency.observe_time_to_name(entry.capture_ts);
            debug!(camera = %entry.camera, md5 = %entry.md5, "Answered from the cache.");
            return Ok(HandOff::Cached);
        }
        let fields = entry.to_fields();
        let pairs: Vec<(&str, &[u8])> = fields.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let started = Instant::now();
        let added =
            streams::append_bounded(&mut group_conn, &keys.faces(&entry.group), self.faces_maxlen, &pairs)
                .await?;
        self.stats.latency.observe(Stage::RedisXadd, started.elapsed());
        Ok(if added.is_some() { HandOff::Enqueued } else { HandOff::StreamFull })
    }

    /// Appends a shot to the faces stream and counts it in its track's record, in one step.
    /// False when the stream is full (the shot is dropped, its record untouched).
    async fn send_shot(&self, entry: &FaceEntry, shot: &Shot) -> Result<bool, BusError> {
        let fields = entry.to_fields();
        let pairs: Vec<(&str, &[u8])> = fields.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let new = NewShot {
            group: &entry.group,
            camera: &entry.camera,
            track: &shot.track,
            first_seen: shot.first_seen,
            fields: &pairs,
        };
        let mut conn = self.bus.group(&entry.group);
        let started = Instant::now();
        let id = visit::send_shot(&mut conn, self.bus.keys(), &new, self.faces_maxlen, self.record_ttl_secs)
            .await?;
        self.stats.latency.observe(Stage::RedisXadd, started.elapsed());
        Ok(id.is_some())
    }

    /// Counts a crop or shot refused by a full faces stream. Warns when the stream fills (and
    /// says when it takes crops again, in [`RedisSink::accepted`]), not for every crop.
    fn stream_full(&self, group: &str, what: &str) {
        self.stats.stream_full.fetch_add(1, Relaxed);
        if !self.full.swap(true, Relaxed) {
            warn!(
                group,
                what,
                maxlen = self.faces_maxlen,
                "The faces stream is full of unfinished work (workers are behind or stopped): \
                 dropping new crops, counted in redeye_ingest_crops_dropped_total."
            );
        }
    }

    /// A crop or shot reached the faces stream: if it was full before, say it takes crops again.
    fn accepted(&self) {
        if self.full.swap(false, Relaxed) {
            tracing::info!("The faces stream takes crops again.");
        }
    }

    /// Closes an ended track's record and publishes `left` if that completed it (otherwise the
    /// worker folding its last shot will).
    async fn close(&self, ended: &Ended) -> Result<(), BusError> {
        let keys = self.bus.keys();
        let track = TrackKey::new(keys, &ended.group, &ended.track.id);
        let mut group_conn = self.bus.group(&ended.group);
        let t = &ended.track;
        let folded = visit::end_track(
            &mut group_conn,
            &track,
            t.last_seen_ms,
            t.faces_seen,
            unix_millis(),
            self.record_ttl_secs,
        )
        .await?;
        let mut shared = self.bus.shared();
        let published =
            visit::publish_unpublished(&mut shared, &mut group_conn, keys, &folded, &self.publishing).await?;
        self.stats.visits.count_all(&published, &self.stats.latency);
        debug!(track = %t.id, dwell_ms = t.last_seen_ms.saturating_sub(t.first_seen_ms), "Track ended.");
        Ok(())
    }

    /// Runs `op` (about `subject`: a camera, or a track) until it succeeds, backing off between
    /// retryable failures. `None` when it cannot succeed: the hand-off stopped on a fatal error
    /// (reported on `/ready`), or shutdown came first; the caller counts what was lost.
    // A plain closure returning a future rather than an `AsyncFn`: the compiler cannot yet prove
    // the latter's futures `Send` for the spawned expiry task.
    async fn persist<T, F, Fut>(&self, subject: &str, what: &str, mut op: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, BusError>>,
    {
        if self.stopped.load(Relaxed) {
            return None;
        }
        let mut backoff = Backoff::new(BackoffPolicy::redis());
        loop {
            match op().await {
                Ok(value) => {
                    if self.health.recover(HAND_OFF) {
                        tracing::info!("Redis takes writes again; the hand-off goes on.");
                    }
                    return Some(value);
                }
                Err(err) if self.token.is_cancelled() => {
                    warn!(subject, what, error = %err, "Shutting down: not handed off.");
                    return None;
                }
                Err(err) if err.is_fatal() => {
                    if !self.stopped.swap(true, Relaxed) {
                        error!(subject, what, error = %err, "Ingest hand-off stopped: this needs the operator.");
                        self.health.fail(HAND_OFF, err.to_string());
                    }
                    return None;
                }
                Err(err) => {
                    self.stats.retries.fetch_add(1, Relaxed);
                    if err.is_out_of_memory() && self.health.degrade(HAND_OFF, err.to_string()) {
                        error!(subject, what, error = %err, "Redis is out of memory: crops wait in ingest.");
                    }
                    let failures = backoff.failures();
                    if failures == 0 || failures % 10 == 9 {
                        warn!(subject, what, error = %err, attempt = failures + 1, "Redis hand-off failed; retrying.");
                    }
                    tokio::time::sleep(backoff.next_random()).await;
                }
            }
        }
    }

    /// Without tracking: the crop's cached result, or the faces stream.
    async fn hand_off_untracked(&self, crop: FaceCrop) {
        let Some(entry) = self.entry(crop) else { return };
        match self.persist(&entry.camera, "face crop", || self.hand_off(&entry)).await {
            Some(HandOff::Cached) => _ = self.stats.cache_hits.fetch_add(1, Relaxed),
            Some(HandOff::Enqueued) => {
                self.stats.cache_misses.fetch_add(1, Relaxed);
                self.accepted();
            }
            Some(HandOff::StreamFull) => self.stream_full(&entry.group, "face crop"),
            None => self.lose(&entry.camera, &entry.md5, "face crop"),
        }
    }

    /// With tracking: the frame through its camera's tracker, then its shots and ended tracks.
    async fn hand_off_tracked(&self, trackers: &Trackers, frame: DetectedFrame) {
        let plan = trackers.update(&frame);
        let mut faces: Vec<Option<FaceCrop>> = frame.faces.into_iter().map(Some).collect();
        for shot in &plan.shots {
            let Some(crop) = faces.get_mut(shot.index).and_then(Option::take) else { continue };
            let Some(entry) = self.entry(crop) else { continue };
            match self.persist(&entry.camera, "shot", || self.send_shot(&entry, shot)).await {
                Some(true) => {
                    if let Some(stats) = &plan.stats {
                        stats.shots_sent.fetch_add(1, Relaxed);
                    }
                    self.accepted();
                }
                Some(false) => self.stream_full(&entry.group, "shot"),
                None => self.lose(&entry.camera, &entry.md5, "shot"),
            }
        }
        self.close_all(&plan.ended).await;
    }

    async fn close_all(&self, ended: &[Ended]) {
        for e in ended {
            if self.persist(&e.track.id, "end of track", || self.close(e)).await.is_none() {
                self.stats.lost.fetch_add(1, Relaxed);
                warn!(track = %e.track.id, "Track end not recorded: its record expires without `left`.");
            }
        }
    }

    /// Ends the tracks of cameras that stopped sending frames, and keeps the records of live
    /// tracks from expiring, until `token` is cancelled. Then [`RedisSink::finish`].
    pub async fn run_expiry(&self, token: CancellationToken) {
        let Some(trackers) = &self.trackers else { return };
        let refresh_every = Duration::from_secs((self.record_ttl_secs / 4).max(1));
        let mut last_refresh = Instant::now();
        let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.close_all(&trackers.expire_idle(unix_millis())).await;
            if last_refresh.elapsed() >= refresh_every {
                last_refresh = Instant::now();
                self.refresh_records(trackers).await;
            }
        }
    }

    /// A long visit sends its few shots early, then only frames: refresh its record's TTL so it
    /// lives until the track ends. Best effort: a failure is retried at the next refresh.
    async fn refresh_records(&self, trackers: &Trackers) {
        for (group, track) in trackers.with_record() {
            let key = TrackKey::new(self.bus.keys(), &group, &track);
            let mut conn = self.bus.group(&group);
            if let Err(err) = visit::touch(&mut conn, &key, self.record_ttl_secs).await {
                debug!(track, error = %err, "Could not refresh a track record's TTL.");
            }
        }
    }

    /// After the last frame (shutdown): ends every live track, so each visit gets its `left`.
    pub async fn finish(&self) {
        if let Some(trackers) = &self.trackers {
            self.close_all(&trackers.end_all()).await;
        }
    }

    fn lose(&self, camera: &str, md5: &str, what: &str) {
        self.stats.lost.fetch_add(1, Relaxed);
        debug!(camera, md5, what, "Not handed off.");
    }
}

impl FaceSink for RedisSink {
    /// Blocks the detection thread until the frame's shots (or crops) are handed off.
    fn accept(&self, frame: DetectedFrame) {
        match &self.trackers {
            Some(trackers) => self.runtime.block_on(self.hand_off_tracked(trackers, frame)),
            None => {
                for crop in frame.faces {
                    self.runtime.block_on(self.hand_off_untracked(crop));
                }
            }
        }
    }
}
