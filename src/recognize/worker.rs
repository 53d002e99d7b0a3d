//! A recognition worker: reads one group's faces stream through the `recognizers` consumer
//! group, embeds and matches each crop, caches the result, then either folds it into its
//! track's record and publishes the visit events that decided (a shot of a track), or
//! publishes a per-face event (an untracked crop, or with `[events] faces = true`), then acks.
//! An entry carrying a `reply` field is a client's request (`identify`), not a camera's face:
//! its result is cached and pushed to the request's reply list, and nothing else (no track, no
//! event, no visitor); see [`super::request`].
//!
//! Nothing lost: an entry is acked only after its result is cached, folded, and its events are
//! in the events stream, so a worker that dies mid-batch leaves its entries pending; another worker
//! claims them after `claim_idle_ms` (XAUTOCLAIM) and recognises them again, and the event
//! carries the entry id, so a subscriber can tell the duplicate. An entry that cannot be parsed
//! is dead-lettered at once with the reason; one that keeps failing is dead-lettered after
//! `max_deliveries`. Dead-lettering and acking are one atomic step (see `bus::streams`).
//!
//! # Errors
//! A [`WorkerError`] is retryable (Redis away, a failover: back off with full jitter and read
//! again) or fatal (a gallery enrolled with another model, a model that cannot run, refused
//! credentials): nothing will change without the operator, so [`RecognitionWorker::run`]
//! returns it, and the service puts it on `/ready` instead of retrying forever.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use image::RgbImage;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::embed_service::EmbedService;
use super::gallery::{GalleryError, LiveGallery};
use super::matcher::MatchError;
use super::request::{self, Reply};
use crate::backoff::{Backoff, BackoffPolicy};
use crate::bus::streams::StreamCap;
use crate::bus::{Bus, BusError, CONSUMER_GROUP, RedisConn, StreamEntry, streams};
use crate::config::Config;
use crate::health::Health;
use crate::instrument::{Stage, StageHooks, unix_millis};
use crate::privacy::index;
use crate::recognition::{CachedResult, FaceResult, Finisher, face_event};
use crate::visit::{
    self, FoldStatus, Folded, Publishing, ShotVote, TrackKey, VisitCounts, VisitKind, VotePolicy,
};
use crate::visitor::{LiveVisitors, Sighting, VisitorCounts};
use crate::wire::{FaceEntry, PersonRef};

/// What a worker needs from `cameras.toml`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub batch: usize,
    pub block_ms: u64,
    pub claim_idle_ms: u64,
    pub max_deliveries: u64,
    pub cache_ttl_secs: u64,
    /// Cap of the group's dead letters (`[redis] dead_stream_maxlen`, `[retention] dead_letters_secs`).
    pub dead: StreamCap,
    /// Cap of the events stream (`[redis] events_stream_maxlen`, `[retention] events_secs`).
    pub events: StreamCap,
    /// Publish a per-face event for shots of tracks too (`[events] faces`).
    pub face_events: bool,
    /// TTL of track records, refreshed by every fold.
    pub record_ttl_secs: u64,
    pub vote: VotePolicy,
    /// What publishing visit events needs.
    pub publishing: Publishing,
    /// Consumers idle this long with nothing pending are removed (crashed workers).
    pub stale_consumer_ms: u64,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            batch: config.worker.batch,
            block_ms: config.worker.block_ms,
            claim_idle_ms: config.worker.claim_idle_ms,
            max_deliveries: config.worker.max_deliveries,
            cache_ttl_secs: config.redis.cache_ttl_secs,
            dead: StreamCap {
                maxlen: config.redis.dead_stream_maxlen,
                max_age_secs: config.retention.dead_letters_secs,
            },
            events: Finisher::events_cap(config),
            face_events: config.face_events(),
            record_ttl_secs: config.tracking.record_ttl_secs,
            vote: VotePolicy::default(),
            publishing: Publishing::from_config(config),
            stale_consumer_ms: config.worker.stale_consumer_secs.saturating_mul(1000),
        }
    }
}

/// Counters a worker keeps; the metrics registry reads them.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub known: AtomicU64,
    pub unknown: AtomicU64,
    pub dead_letters: AtomicU64,
    pub claimed: AtomicU64,
    pub errors: AtomicU64,
    /// Malformed records the last gallery load skipped (a gauge).
    pub gallery_malformed: AtomicU64,
    /// Visit events this worker published.
    pub visits: VisitCounts,
    /// Visitors created, returning and attached by this process's workers.
    pub visitors: VisitorCounts,
    /// Embed, match and Redis latencies and time-to-name, once the metrics registry attaches.
    pub latency: StageHooks,
}

/// Why a worker session ended.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The gallery cannot be used by this recogniser (enrolled with another model, corrupt).
    #[error("the gallery cannot be used: {0}")]
    Gallery(GalleryError),
    /// An embedding does not fit the gallery (the recogniser's `dim` is wrong).
    #[error("matching: {0}")]
    Match(#[from] MatchError),
    /// The recogniser failed on a batch of valid crops: the model cannot run.
    #[error("the recogniser failed: {0}")]
    Embed(String),
}

impl WorkerError {
    /// Only Redis being away or failing over is worth retrying; everything else needs the
    /// operator (fix the configuration, re-enrol, replace the model).
    pub fn is_retryable(&self) -> bool {
        matches!(self, WorkerError::Bus(e) if !e.is_fatal())
    }

    fn from_gallery(conn: &RedisConn, err: GalleryError) -> WorkerError {
        match err {
            GalleryError::Redis(r) => WorkerError::Bus(conn.error("loading the gallery", r)),
            other => WorkerError::Gallery(other),
        }
    }
}

/// What a worker folds into a track record: a recognised shot's vote (and how the shot looks
/// to the track's visitor), or a shot that will never be recognised (dead-lettered).
enum Shot<'a> {
    Voted { vote: &'a ShotVote<'a>, sighting: Sighting<'a> },
    Failed { shot_id: &'a str },
}

/// One consumer on one group's faces stream.
pub struct RecognitionWorker {
    pub bus: Bus,
    pub group: String,
    pub consumer: String,
    pub embed: EmbedService,
    pub gallery: Arc<LiveGallery>,
    /// The process's visitor index; `None` with `[visitors] ttl_secs = 0`.
    pub visitors: Option<Arc<LiveVisitors>>,
    pub settings: Settings,
    pub stats: Arc<WorkerStats>,
    /// Where a worker retrying because Redis refuses writes (out of memory) says so, for
    /// `/ready`.
    pub health: Arc<Health>,
    /// Set once the consumer group is known to exist: it is created once per worker, not at
    /// every session (a Redis out of memory refuses XGROUP CREATE), and again only if Redis
    /// says it is gone (NOGROUP: a restart that lost the data).
    pub group_ready: AtomicBool,
}

impl RecognitionWorker {
    /// Another worker with the same consumer name, counters and services (a restart).
    pub fn clone_settings(&self) -> RecognitionWorker {
        RecognitionWorker {
            bus: self.bus.clone(),
            group: self.group.clone(),
            consumer: self.consumer.clone(),
            embed: self.embed.clone(),
            gallery: self.gallery.clone(),
            visitors: self.visitors.clone(),
            settings: self.settings.clone(),
            stats: self.stats.clone(),
            health: self.health.clone(),
            group_ready: AtomicBool::new(false),
        }
    }

    /// The component name on `/ready`.
    fn component(&self) -> String {
        format!("worker {} for group {}", self.consumer, self.group)
    }

    /// Runs until `token` is cancelled, backing off and reconnecting after a retryable error.
    /// Returns a fatal error (the caller reports it on `/ready`); either way, on the way out it
    /// removes its consumer from the group if nothing is pending for it.
    pub async fn run(self, token: CancellationToken) -> Result<(), WorkerError> {
        let mut backoff = Backoff::new(BackoffPolicy::redis());
        let mut outcome = Ok(());
        while !token.is_cancelled() {
            let started = Instant::now();
            match self.run_once(&token).await {
                Ok(()) => break,
                Err(err) if err.is_retryable() => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    if let WorkerError::Bus(bus) = &err {
                        if bus.code() == Some("NOGROUP") {
                            self.group_ready.store(false, Ordering::Relaxed);
                        }
                        if bus.is_out_of_memory() && self.health.degrade(self.component(), bus.to_string()) {
                            tracing::error!(error = %bus, "Redis is out of memory: the worker cannot finish entries.");
                        }
                    }
                    if started.elapsed() >= backoff.policy().healthy_after {
                        backoff.reset();
                    }
                    let wait = backoff.next_random();
                    warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "Worker session failed; retrying.");
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                Err(err) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %err, "Worker stopped: this needs the operator.");
                    outcome = Err(err);
                    break;
                }
            }
        }
        self.leave().await;
        outcome
    }

    /// One connected session: ensure the group, then read batches until cancelled.
    async fn run_once(&self, token: &CancellationToken) -> Result<(), WorkerError> {
        let key = self.bus.keys().faces(&self.group);
        // The blocking read gets a connection of its own, so it does not hold up the
        // SET/XACK/XADD traffic of this or other workers on the shared one.
        let mut reader = self.bus.open_group(&self.group).await?;
        if !self.group_ready.load(Ordering::Relaxed) {
            streams::ensure_group(&mut reader, &key, CONSUMER_GROUP).await?;
            self.group_ready.store(true, Ordering::Relaxed);
        }
        info!(stream = %key, consumer = %self.consumer, "Worker reading.");
        // After a reconnect our own pending entries come first (read from id 0).
        let mut backlog = true;
        let mut last_claim = Instant::now();
        loop {
            if token.is_cancelled() {
                return Ok(());
            }
            let claim_due = last_claim.elapsed() >= Duration::from_millis(self.settings.claim_idle_ms / 2);
            let (entries, redelivered) = if claim_due {
                last_claim = Instant::now();
                let claimed = self.claim(&mut reader, &key).await?;
                self.stats.claimed.fetch_add(claimed.len() as u64, Ordering::Relaxed);
                (claimed, true)
            } else if backlog {
                let own = streams::read_own_pending(
                    &mut reader,
                    &key,
                    CONSUMER_GROUP,
                    &self.consumer,
                    self.settings.batch,
                    "0",
                )
                .await?;
                backlog = !own.is_empty();
                (own, true)
            } else {
                let block = self.settings.block_ms.min(self.settings.claim_idle_ms / 2).max(1);
                let read = streams::read_group(
                    &mut reader,
                    &key,
                    CONSUMER_GROUP,
                    &self.consumer,
                    self.settings.batch,
                    block,
                );
                let entries = tokio::select! {
                    biased;
                    _ = token.cancelled() => return Ok(()),
                    r = read => r?,
                };
                (entries, false)
            };
            if !entries.is_empty() {
                self.process(&key, entries, redelivered).await?;
                if self.health.recover(&self.component()) {
                    info!("Redis takes writes again; the worker goes on.");
                }
            }
        }
    }

    /// Entries idle longer than `claim_idle_ms` in other consumers (dead or stuck), now ours.
    async fn claim(&self, conn: &mut RedisConn, key: &str) -> Result<Vec<StreamEntry>, BusError> {
        let step = streams::autoclaim(
            conn,
            key,
            CONSUMER_GROUP,
            &self.consumer,
            self.settings.claim_idle_ms,
            "0-0",
            self.settings.batch,
        )
        .await?;
        if !step.entries.is_empty() {
            info!(count = step.entries.len(), "Claimed entries from a consumer that stopped.");
        }
        self.remove_stale_consumers(conn, key).await?;
        Ok(step.entries)
    }

    /// Removes consumers of crashed workers: idle longer than `stale_consumer_ms` with nothing
    /// pending (what they had was claimed above, or they never read). A worker that stops
    /// cleanly removes itself ([`RecognitionWorker::leave`]); one killed never does, and the
    /// group would list it forever. XINFO CONSUMERS and XGROUP DELCONSUMER are not atomic, but
    /// a consumer idle for hours that reads between the two only loses its name: its next
    /// XREADGROUP creates it again, and an entry it was just given stays pending under the
    /// group and is claimed like any other.
    async fn remove_stale_consumers(&self, conn: &mut RedisConn, key: &str) -> Result<(), BusError> {
        for c in streams::consumers(conn, key, CONSUMER_GROUP).await? {
            if c.name != self.consumer && c.pending == 0 && c.idle_ms > self.settings.stale_consumer_ms {
                streams::delete_consumer(conn, key, CONSUMER_GROUP, &c.name).await?;
                info!(stale = %c.name, idle_s = c.idle_ms / 1000, "Removed the consumer of a worker that is gone.");
            }
        }
        Ok(())
    }

    /// Recognises a batch and acks it. `redelivered` entries have their delivery counts
    /// checked first: one delivered too often goes to the dead letters.
    async fn process(
        &self,
        key: &str,
        entries: Vec<StreamEntry>,
        redelivered: bool,
    ) -> Result<(), WorkerError> {
        let mut conn = self.bus.group(&self.group);
        let counts = if redelivered {
            let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
            streams::delivery_counts(&mut conn, key, CONSUMER_GROUP, &ids).await?
        } else {
            HashMap::new()
        };
        let mut good: Vec<(StreamEntry, FaceEntry, RgbImage, Option<String>)> =
            Vec::with_capacity(entries.len());
        for entry in entries {
            let deliveries = counts.get(&entry.id).copied().unwrap_or(1);
            if deliveries > self.settings.max_deliveries {
                let reason = format!("delivered {deliveries} times without being recognised");
                self.dead_letter(&mut conn, key, &entry, &reason).await?;
                continue;
            }
            match self.parse(&entry) {
                Ok((face, crop, reply)) => good.push((entry, face, crop, reply)),
                Err(reason) => self.dead_letter(&mut conn, key, &entry, &reason).await?,
            }
        }
        if good.is_empty() {
            return Ok(());
        }
        let mut shared = self.bus.shared();
        let (version, matcher) = self
            .gallery
            .current(&mut shared, self.bus.keys())
            .await
            .map_err(|e| WorkerError::from_gallery(&shared, e))?;
        self.stats.gallery_malformed.store(self.gallery.malformed(), Ordering::Relaxed);
        let crops: Vec<RgbImage> = good.iter().map(|(_, _, c, _)| c.clone()).collect();
        let started = Instant::now();
        let embedded = self.embed.embed(crops).await;
        self.stats.latency.observe(Stage::Embed, started.elapsed());
        // Left pending on failure: another worker (or this one, restarted) recognises them.
        let embeddings = embedded.map_err(|e| WorkerError::Embed(e.to_string()))?;
        let finisher = Finisher::new(self.bus.clone(), self.settings.cache_ttl_secs, self.settings.events);
        let model = self.embed.model_id();
        let mut ids = Vec::with_capacity(good.len());
        for ((entry, face, _, reply), embedding) in good.iter().zip(&embeddings) {
            let started = Instant::now();
            let m = matcher.best(embedding)?;
            self.stats.latency.observe(Stage::Match, started.elapsed());
            let score = if m.score.is_finite() { m.score } else { 0.0 };
            let person = m.person.map(|(id, name)| PersonRef { id, name });
            let known = person.is_some();
            let (person_id, name) = person.clone().map(|p| (p.id, p.name)).unzip();
            let result = CachedResult::for_crop(
                model,
                version,
                FaceResult { bbox: None, person_id, name, score, rejected: None },
            );
            let track = visit::shot_track(entry);
            if let Some(reply) = reply {
                // A client's request: cached like any crop, then answered; not a sighting.
                finisher.cache(&mut conn, &face.md5, &result, &self.stats.latency).await?;
                let answer = Reply { md5: face.md5.clone(), result: Some(result.clone()), error: None };
                request::send(&mut conn, self.bus.keys(), &self.group, reply, &answer).await?;
            } else if self.settings.face_events || track.is_none() {
                // Stream ids are unique per stream only; the group makes them unique everywhere.
                let event_id = format!("{}:{}", self.group, entry.id);
                let event = face_event(&event_id, face, &result.faces[0], model, false);
                finisher.finish(&mut conn, face, &result, &event, &self.stats.latency).await?;
            } else {
                finisher.cache(&mut conn, &face.md5, &result, &self.stats.latency).await?;
            }
            if let Some((track, _)) = track {
                let face_px = face.bbox.w.min(face.bbox.h);
                let sighting = Sighting {
                    track,
                    camera: &face.camera,
                    embedding,
                    jpeg: &face.crop,
                    quality: face_px * face.score.max(0.0),
                };
                let vote = ShotVote {
                    shot_id: &entry.id,
                    person: person.as_ref(),
                    score,
                    face_px,
                    md5: &face.md5,
                    bbox: face.bbox,
                    capture_ts: face.capture_ts,
                    model,
                };
                self.fold(&mut conn, track, Shot::Voted { vote: &vote, sighting }).await?;
            }
            let counter = if known { &self.stats.known } else { &self.stats.unknown };
            counter.fetch_add(1, Ordering::Relaxed);
            debug!(id = %entry.id, camera = %face.camera, ?person, score, "Recognised.");
            ids.push(entry.id.as_str());
        }
        let started = Instant::now();
        streams::ack(&mut conn, key, CONSUMER_GROUP, &ids).await?;
        self.stats.latency.observe(Stage::RedisXack, started.elapsed());
        Ok(())
    }

    /// The entry's fields, its decoded crop and the request it answers (a client's entry), or
    /// why it is poison.
    fn parse(&self, entry: &StreamEntry) -> Result<(FaceEntry, RgbImage, Option<String>), String> {
        if entry.fields.is_empty() {
            return Err("entry was trimmed from the stream before it was recognised".into());
        }
        let face = crate::recognition::read_entry(&entry.fields).map_err(|e| e.to_string())?;
        let reply = request::reply_id(entry)?.map(str::to_owned);
        // A shot votes in its track; a request is answered and not a sighting. Both at once
        // would leave the track waiting for a fold that never comes.
        if reply.is_some() && visit::shot_track(entry).is_some() {
            return Err(format!("an entry of a track cannot carry `{}`", request::REPLY_FIELD));
        }
        // An entry names the stream it belongs in and the model it was cropped for; one that
        // does not match was written by something else (or misrouted): recognising it would
        // publish an event under the wrong group, or cache an answer by the wrong model.
        if face.group != self.group {
            return Err(format!("entry of group `{}` in group `{}`'s stream", face.group, self.group));
        }
        let model = self.embed.model_id();
        if face.model != model {
            return Err(format!("entry for model `{}`, this recogniser is `{model}`", face.model));
        }
        let size = self.embed.input_size();
        if face.crop_size != size {
            return Err(format!("crop_size is {}, this recogniser takes {size}", face.crop_size));
        }
        // The header first: a crop claiming 8000x8000 pixels is refused before any is decoded.
        let jpeg =
            || image::ImageReader::with_format(std::io::Cursor::new(&face.crop), image::ImageFormat::Jpeg);
        let (w, h) = jpeg().into_dimensions().map_err(|e| format!("crop is not a JPEG: {e}"))?;
        if (w, h) != (size, size) {
            return Err(format!("crop is {w}x{h}, expected {size}x{size}"));
        }
        let crop = jpeg().decode().map_err(|e| format!("crop is not a JPEG: {e}"))?.to_rgb8();
        if crop.dimensions() != (size, size) {
            return Err(format!("crop is {}x{}, expected {size}x{size}", crop.width(), crop.height()));
        }
        Ok((face, crop, reply))
    }

    /// Folds a shot's vote (or a failed shot) into its track's record, then publishes what that
    /// decided. Idempotent per shot: a redelivered shot votes once and publishes only what is
    /// not yet published.
    async fn fold(&self, conn: &mut RedisConn, track: &str, shot: Shot<'_>) -> Result<(), BusError> {
        let keys = self.bus.keys();
        let record = TrackKey::new(keys, &self.group, track);
        let (now, ttl) = (unix_millis(), self.settings.record_ttl_secs);
        let started = Instant::now();
        let folded = match &shot {
            Shot::Voted { vote, .. } => {
                // A vote names the person in the record: note it first (see `crate::privacy`).
                if let Some(person) = vote.person {
                    index::note_track(conn, keys, &person.id, &record.key, ttl).await?;
                }
                visit::fold(conn, &record, vote, &self.settings.vote, now, ttl).await?
            }
            Shot::Failed { shot_id } => visit::fold_failed(conn, &record, shot_id, now, ttl).await?,
        };
        self.stats.latency.observe(Stage::RedisFold, started.elapsed());
        if folded.status == FoldStatus::NoRecord {
            // Expired (a shot older than the record TTL, after an outage) or never sent.
            warn!(track, "The shot's track record is gone; its vote is not counted.");
            return Ok(());
        }
        let folded = match (&shot, &self.visitors) {
            (Shot::Voted { vote, sighting }, Some(visitors)) => {
                self.visitor(visitors, conn, &record, folded, vote, sighting).await?
            }
            _ => folded,
        };
        let mut shared = self.bus.shared();
        let published =
            visit::publish_unpublished(&mut shared, conn, keys, &folded, &self.settings.publishing).await?;
        for a in &published {
            info!(track, kind = a.kind.as_str(), person = ?a.person.as_ref().map(|p| &p.name), "Visit event.");
        }
        self.stats.visits.count_all(&published, &self.stats.latency);
        Ok(())
    }

    /// The track's anonymous visitor, before its announcements are published: when this fold
    /// decided an identity that gets one (an unknown, or anyone with `for_known`) and the track
    /// has none yet, it is resolved (matched, or created atomically) and written into the
    /// record and its unpublished announcements; when the track has one, this shot is added to
    /// it (embedding, best shot, camera). Returns the fold with the visitor in it.
    async fn visitor(
        &self,
        visitors: &LiveVisitors,
        conn: &mut RedisConn,
        record: &TrackKey,
        folded: Folded,
        vote: &ShotVote<'_>,
        sighting: &Sighting<'_>,
    ) -> Result<Folded, BusError> {
        let for_known = visitors.settings().for_known;
        let unpublished: Vec<&str> =
            folded.announcements.iter().filter(|a| !a.published).map(|a| a.name.as_str()).collect();
        let decides = folded.announcements.iter().any(|a| {
            !a.published && a.kind != VisitKind::Left && a.decided && (a.person.is_none() || for_known)
        });
        let mut shared = self.bus.shared();
        let keys = self.bus.keys();
        let ttl = self.settings.record_ttl_secs;
        let visitor = match &folded.visitor {
            None if decides => {
                let r = visitors.resolve(&mut shared, keys, sighting, &self.stats.latency).await?;
                self.stats.visitors.count(r.status);
                info!(track = %record.track, visitor = %r.id, status = ?r.status, score = r.score, "Visitor resolved.");
                r.id
            }
            None => return Ok(folded),
            Some(v) => {
                if vote.person.is_none() || for_known {
                    visitors.add(&mut shared, keys, v, sighting).await?;
                }
                if unpublished.is_empty() {
                    return Ok(folded);
                }
                v.clone()
            }
        };
        let with_visitor = visit::set_visitor(conn, record, &visitor, for_known, &unpublished, ttl).await?;
        Ok(Folded { status: folded.status, ..with_visitor })
    }

    /// Moves a poison or undeliverable entry to the dead letters. A shot of a track is folded
    /// as failed first, so its track still ends; on a crash between the two, the redelivered
    /// entry folds again (a no-op) and is dead-lettered.
    async fn dead_letter(
        &self,
        conn: &mut RedisConn,
        key: &str,
        entry: &StreamEntry,
        reason: &str,
    ) -> Result<(), BusError> {
        if let Some((track, _)) = visit::shot_track(entry) {
            self.fold(conn, track, Shot::Failed { shot_id: &entry.id }).await?;
        }
        let dead = self.bus.keys().dead(&self.group);
        streams::dead_letter(conn, key, CONSUMER_GROUP, &dead, self.settings.dead, entry, reason).await?;
        self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
        warn!(id = %entry.id, %reason, "Dead-lettered a stream entry.");
        // A client waiting for this entry hears why now rather than at its timeout.
        if let Ok(Some(reply)) = request::reply_id(entry) {
            let md5 = entry.get_str("md5").unwrap_or_default().to_owned();
            let answer = Reply { md5, result: None, error: Some(format!("dead-lettered: {reason}")) };
            request::send(conn, self.bus.keys(), &self.group, reply, &answer).await?;
        }
        Ok(())
    }

    /// Deletes this consumer from the group, unless entries are still pending for it (those
    /// must stay claimable; deleting the consumer would drop them from the pending list).
    async fn leave(&self) {
        let key = self.bus.keys().faces(&self.group);
        let mut conn = self.bus.group(&self.group);
        match streams::pending_for(&mut conn, &key, CONSUMER_GROUP, &self.consumer).await {
            Ok(0) => {
                if let Err(err) =
                    streams::delete_consumer(&mut conn, &key, CONSUMER_GROUP, &self.consumer).await
                {
                    warn!(error = %err, "Could not remove the consumer on shutdown.");
                }
            }
            Ok(n) => info!(pending = n, "Leaving the consumer in place: entries are still pending for it."),
            Err(err) => warn!(error = %err, "Could not check pending entries on shutdown."),
        }
    }
}
