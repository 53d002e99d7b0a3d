//! `identify` through the recognition workers: the photo's faces are detected, gated and
//! aligned here (the detector only, no recogniser or gallery), each accepted crop is looked up
//! under its own `image:<md5>` and the others go on the group's faces stream with a `reply`
//! field; the workers answer on the request's reply list ([`crate::recognize::request`]), and
//! the answers make the photo's result.
//!
//! Before sending, it checks that some worker reads the stream: with none, nothing would ever
//! answer, and the operator is told at once what to start (or to use `--local`) instead of
//! after the timeout. A request not answered in time is withdrawn from the stream, so no crop
//! waits there for nobody.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::app;
use crate::bus::{Bus, RedisConn, replies, streams};
use crate::camera::encode_jpeg;
use crate::config::Config;
use crate::instrument::unix_millis;
use crate::recognition::{self, CachedResult, FaceResult, RESULT_SCHEMA};
use crate::recognize::request::{self, REPLY_FIELD};
use crate::vision::{Detector as _, ImageLimits, QualityGate, YuNet, align_face, decode_image_bytes};
use crate::wire::FaceEntry;

/// The `camera` of a request's entries: they come from a photo, not a camera.
const CAMERA: &str = "identify";

/// No worker reads the group's faces stream, or none answered in time: nothing later in the
/// run would be answered either, so `identify` stops with this.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WorkersUnavailable(String);

/// The detector and the connections a run sends its crops with.
pub struct Remote {
    detector: YuNet,
    gate: QualityGate,
    bus: Bus,
    group: String,
    model: String,
    crop_size: u32,
    faces_maxlen: u64,
    liveness_ms: u64,
    timeout: Duration,
    /// A connection of its own for the blocking reads of the reply list.
    replies: RedisConn,
}

/// One face of the photo sent to the workers.
struct Sent {
    /// Which face of the photo (the result's index).
    face: usize,
    md5: String,
    /// Its faces stream entry id, to withdraw it if nobody answers.
    entry_id: String,
    answered: bool,
}

impl Remote {
    pub async fn new(config: &Config, bus: &Bus, group: &str, timeout: Duration) -> anyhow::Result<Remote> {
        let (detector, gate) = app::detector(config)?;
        let replies = bus
            .open_group(group)
            .await
            .with_context(|| format!("opening a connection for group `{group}`'s replies"))?;
        Ok(Remote {
            detector,
            gate,
            bus: bus.clone(),
            group: group.to_owned(),
            model: config.recognizer.id.clone(),
            crop_size: config.recognizer.input_size,
            faces_maxlen: config.redis.faces_stream_maxlen,
            liveness_ms: request::liveness_ms(&config.worker),
            timeout,
            replies,
        })
    }

    /// The photo's result, made with the gallery at `version` where this run answered from the
    /// cache and by the workers' gallery otherwise; and whether all of it was made at one
    /// version (so it may be cached).
    pub async fn identify(
        &mut self,
        photo: &Path,
        bytes: &[u8],
        version: u64,
    ) -> anyhow::Result<(CachedResult, bool)> {
        let img = decode_image_bytes(bytes, &ImageLimits::default())
            .map_err(|reason| anyhow::anyhow!("{}: {reason}", photo.display()))?;
        let detections = self.detector.detect(&img).with_context(|| format!("{}", photo.display()))?;
        let keys = self.bus.keys().clone();
        let mut cache = self.bus.group(&self.group);
        // One per detection, in order; `None` until a worker answers.
        let mut faces: Vec<Option<FaceResult>> = Vec::with_capacity(detections.len());
        let mut versions = Vec::new();
        let mut to_send: Vec<(usize, FaceEntry)> = Vec::new();
        for (i, det) in detections.iter().enumerate() {
            let crop = align_face(&img, &det.landmarks, self.crop_size);
            let bbox = Some(det.bbox);
            if let Err(why) = self.gate.check(det, &crop) {
                let rejected = Some(why.as_str().to_owned());
                faces.push(Some(FaceResult { bbox, person_id: None, name: None, score: 0.0, rejected }));
                continue;
            }
            let jpeg =
                encode_jpeg(&crop).with_context(|| format!("{}: encoding face {i}", photo.display()))?;
            let md5 = recognition::content_key(&jpeg);
            // The crop may have been recognised before (the same photo under another name, or
            // an earlier run that timed out after the workers answered).
            let hit = recognition::lookup(&mut cache, &keys.image(&md5), &self.model, version).await?;
            if let Some(face) = hit.and_then(|h| h.faces.into_iter().next()) {
                versions.push(version);
                faces.push(Some(FaceResult { bbox, ..face }));
                continue;
            }
            faces.push(None);
            let entry = FaceEntry {
                md5,
                camera: CAMERA.to_owned(),
                group: self.group.clone(),
                capture_ts: unix_millis(),
                frame: i as u64,
                bbox: det.bbox,
                score: det.score,
                landmarks: det.landmarks,
                crop: jpeg,
                crop_size: self.crop_size,
                model: self.model.clone(),
            };
            to_send.push((i, entry));
        }
        if !to_send.is_empty() {
            for (face, result) in self.ask(photo, to_send).await? {
                versions.push(result.gallery_version);
                let answer = result.faces.into_iter().next().context("a worker answered with no face")?;
                faces[face] = Some(FaceResult { bbox: Some(detections[face].bbox), ..answer });
            }
        }
        let one_version = versions.first().copied().unwrap_or(version);
        let cacheable = versions.iter().all(|v| *v == one_version);
        let result = CachedResult {
            schema: RESULT_SCHEMA,
            model: self.model.clone(),
            gallery_version: one_version,
            ts: unix_millis(),
            faces: faces.into_iter().collect::<Option<_>>().context("a face was sent and never answered")?,
        };
        Ok((result, cacheable))
    }

    /// Sends the crops to the workers and waits for their answers: (face index, result) each.
    async fn ask(
        &mut self,
        photo: &Path,
        crops: Vec<(usize, FaceEntry)>,
    ) -> anyhow::Result<Vec<(usize, CachedResult)>> {
        let keys = self.bus.keys().clone();
        let stream = keys.faces(&self.group);
        let mut conn = self.bus.group(&self.group);
        let live = request::live_workers(&mut conn, &keys, &self.group, self.liveness_ms).await?;
        if live.is_empty() {
            return Err(WorkersUnavailable(format!(
                "no recognition worker reads group `{}`'s faces stream {stream} (none of its consumers read \
                 in the last {} s): start `redeye recognize` (or `redeye run`) for this group, or use --local \
                 to recognise in this process",
                self.group,
                self.liveness_ms / 1000
            ))
            .into());
        }
        let id = request::new_id();
        let reply_key = keys.reply(&self.group, &id);
        let mut sent = Vec::with_capacity(crops.len());
        for (face, entry) in crops {
            let mut fields = entry.to_fields();
            fields.push((REPLY_FIELD, id.clone().into_bytes()));
            let pairs: Vec<(&str, &[u8])> = fields.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            let added = streams::append_bounded(&mut conn, &stream, self.faces_maxlen, &pairs).await?;
            let Some(entry_id) = added else {
                self.withdraw(&mut conn, &stream, &reply_key, &sent).await;
                return Err(WorkersUnavailable(format!(
                    "group `{}`'s faces stream {stream} is full ({} unfinished entries): the workers are \
                     behind; try again later, start more `redeye recognize`, or use --local",
                    self.group, self.faces_maxlen
                ))
                .into());
            };
            sent.push(Sent { face, md5: entry.md5, entry_id, answered: false });
        }
        let deadline = Instant::now() + self.timeout;
        let mut answers = Vec::with_capacity(sent.len());
        let mut errors = Vec::new();
        while sent.iter().any(|s| !s.answered) {
            let Some(reply) = request::receive(&mut self.replies, &reply_key, deadline).await? else {
                self.withdraw(&mut conn, &stream, &reply_key, &sent).await;
                return Err(WorkersUnavailable(format!(
                    "no answer from the recognition workers of group `{}` within {} s ({} seen reading its \
                     faces stream {stream}): are they running and keeping up? Start `redeye recognize` for \
                     this group, or use --local to recognise in this process",
                    self.group,
                    self.timeout.as_secs_f64(),
                    live.len()
                ))
                .into());
            };
            // Identical crops are identical entries: the first unanswered one takes the answer.
            let Some(s) = sent.iter_mut().find(|s| !s.answered && s.md5 == reply.md5) else { continue };
            s.answered = true;
            match (reply.result, reply.error) {
                (Some(result), _) => answers.push((s.face, result)),
                (None, error) => errors.push(format!(
                    "face {}: {}",
                    s.face,
                    error.unwrap_or_else(|| "answered with nothing".into())
                )),
            }
        }
        if !errors.is_empty() {
            anyhow::bail!("{}: the workers could not recognise {}", photo.display(), errors.join("; "));
        }
        Ok(answers)
    }

    /// Takes back what was sent for a request nobody will wait for: the entries still in the
    /// stream and the reply list. Best effort: what is left expires or is deleted when a worker
    /// finishes it.
    async fn withdraw(&self, conn: &mut RedisConn, stream: &str, reply_key: &str, sent: &[Sent]) {
        let ids: Vec<&str> = sent.iter().filter(|s| !s.answered).map(|s| s.entry_id.as_str()).collect();
        if let Err(err) = streams::delete(conn, stream, &ids).await {
            tracing::warn!(%err, "Could not withdraw the unanswered crops from the faces stream.");
        }
        if let Err(err) = replies::discard(conn, reply_key).await {
            tracing::warn!(%err, "Could not delete the reply list.");
        }
    }
}
