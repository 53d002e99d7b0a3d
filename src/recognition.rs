//! The recognition result contract, in one place: the content key of a crop or a file, the
//! result cached under `image:<md5>` and when it may answer, the event a recognised face
//! becomes, and "finishing" a face (cache the result, publish the event, observe time-to-name).
//!
//! Ingest (a cache hit), the workers (a recognition) and `identify` (a photo) all go through
//! here; none of them computes a key, judges freshness or writes an event on its own.
//!
//! The cached result is JSON, never a language-specific serialisation: the seed article pickled
//! its results, and unpickling data from a shared store runs code.

use std::time::Instant;

use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};

use crate::bus::streams::StreamCap;
use crate::bus::{Bus, BusError, RedisConn, cache, events};
use crate::instrument::{Stage, StageHooks, unix_millis};
use crate::privacy::index;
use crate::recognize::gallery::UNKNOWN_VERSION;
use crate::vision::BBox;
use crate::wire::{EVENT_SCHEMA, EntryError, Event, FaceEntry, PersonRef};

/// Version of the cached result's JSON shape; bump it when a field changes meaning.
pub const RESULT_SCHEMA: u32 = 1;

/// The content key of an image: the lower-case hex MD5 of exactly these bytes (a crop's JPEG,
/// or a photo file). `image:<content_key>` is where its result is cached.
pub fn content_key(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// A faces stream entry from its fields, refused unless `md5` is the content key of `crop`
/// (a consumer re-hashes what it received: the crop is the identity).
pub fn read_entry(fields: &std::collections::HashMap<String, Vec<u8>>) -> Result<FaceEntry, EntryError> {
    let entry = FaceEntry::from_fields(fields)?;
    let actual = content_key(&entry.crop);
    if actual != entry.md5 {
        return Err(EntryError::Md5Mismatch { claimed: entry.md5, actual });
    }
    Ok(entry)
}

/// The cached answer for one image: a worker's for one face crop (one face, no box: the crop
/// is the face), or `identify`'s for a whole photo (one entry per face, with boxes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedResult {
    pub schema: u32,
    /// Recogniser id the answer was made with.
    pub model: String,
    /// Gallery version the answer was matched against (see [`CachedResult::is_fresh`]).
    pub gallery_version: u64,
    /// Unix time in milliseconds when the answer was made.
    pub ts: u64,
    pub faces: Vec<FaceResult>,
}

/// The answer for one face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceResult {
    /// Where the face is in the image (`None` for a crop, which is the face).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<BBox>,
    /// The recognised person's id, or `None` for unknown.
    pub person_id: Option<String>,
    /// The recognised person's name, or `None` for unknown.
    pub name: Option<String>,
    /// Cosine similarity of the best match (also when unknown).
    pub score: f32,
    /// Why the face was not recognised at all (a quality-gate rejection), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
}

impl FaceResult {
    /// The recognised person, or `None` for unknown.
    pub fn person(&self) -> Option<PersonRef> {
        match (&self.person_id, &self.name) {
            (Some(id), Some(name)) => Some(PersonRef { id: id.clone(), name: name.clone() }),
            _ => None,
        }
    }
}

impl CachedResult {
    /// A result for one face crop, made now against gallery `version`.
    pub fn for_crop(model: &str, version: u64, face: FaceResult) -> CachedResult {
        CachedResult {
            schema: RESULT_SCHEMA,
            model: model.to_owned(),
            gallery_version: version,
            ts: unix_millis(),
            faces: vec![face],
        }
    }

    /// Whether this entry may answer for `model` at gallery `version`: same schema, same model,
    /// and made with exactly this gallery version. Equality, not `>=`: a version counter that
    /// went backwards (a restore, a failover that lost INCRs) must not let a result that names
    /// a forgotten person answer again. Nothing is fresh at [`UNKNOWN_VERSION`] (a version key
    /// that is not a counter cannot tell what changed).
    pub fn is_fresh(&self, model: &str, version: u64) -> bool {
        self.schema == RESULT_SCHEMA
            && self.model == model
            && self.gallery_version == version
            && version != UNKNOWN_VERSION
    }
}

/// The cached result under `key` if it may answer for `model` at gallery `version`; a missing,
/// stale or unreadable entry is `None`.
pub async fn lookup(
    conn: &mut RedisConn,
    key: &str,
    model: &str,
    version: u64,
) -> Result<Option<CachedResult>, BusError> {
    Ok(read_cached(conn, key).await?.filter(|r| r.is_fresh(model, version)))
}

/// The cached result under `key`, fresh or not (for a caller that learns the gallery version
/// in parallel and then asks [`CachedResult::is_fresh`]). An unreadable entry is `None`, and
/// logged: it will be overwritten.
pub async fn read_cached(conn: &mut RedisConn, key: &str) -> Result<Option<CachedResult>, BusError> {
    let Some(bytes) = cache::get(conn, key).await? else { return Ok(None) };
    match serde_json::from_slice::<CachedResult>(&bytes) {
        Ok(r) => Ok(Some(r)),
        Err(e) => {
            tracing::warn!(%key, error = %e, "Unreadable cached result; recognising again.");
            Ok(None)
        }
    }
}

/// The per-face event (schema 1) for one recognised (or cached) face.
pub fn face_event(id: &str, face: &FaceEntry, result: &FaceResult, model: &str, cached: bool) -> Event {
    Event {
        schema: EVENT_SCHEMA,
        id: id.to_owned(),
        camera: face.camera.clone(),
        group: face.group.clone(),
        capture_ts: face.capture_ts,
        event_ts: unix_millis(),
        frame: face.frame,
        md5: face.md5.clone(),
        person: result.person(),
        score: result.score,
        bbox: face.bbox,
        cached,
        model: model.to_owned(),
    }
}

/// Finishes faces: caches results under `image:<md5>` and publishes events on the events
/// channel and stream, observing the Redis stages and time-to-name on the caller's hooks.
/// Whatever it writes that names a person is noted in that person's index
/// ([`crate::privacy::index`]), so `forget` can find it.
#[derive(Clone)]
pub struct Finisher {
    bus: Bus,
    cache_ttl_secs: u64,
    events: StreamCap,
}

impl Finisher {
    /// `events` caps the events stream (`[redis] events_stream_maxlen`, `[retention] events_secs`).
    pub fn new(bus: Bus, cache_ttl_secs: u64, events: StreamCap) -> Finisher {
        Finisher { bus, cache_ttl_secs, events }
    }

    /// The events stream's cap from `config`.
    pub fn events_cap(config: &crate::config::Config) -> StreamCap {
        StreamCap { maxlen: config.redis.events_stream_maxlen, max_age_secs: config.retention.events_secs }
    }

    /// Caches `result` for the image `md5` on `conn` (the group's node; `identify`: the shared
    /// one), with the TTL, after noting the key in the index of each person it names.
    pub async fn cache(
        &self,
        conn: &mut RedisConn,
        md5: &str,
        result: &CachedResult,
        hooks: &StageHooks,
    ) -> Result<(), BusError> {
        let keys = self.bus.keys();
        let key = keys.image(md5);
        let started = Instant::now();
        for person in result.faces.iter().filter_map(|f| f.person_id.as_deref()) {
            index::note_cached(conn, keys, person, &key, self.cache_ttl_secs).await?;
        }
        cache::set_json(conn, &key, result, self.cache_ttl_secs).await?;
        hooks.observe(Stage::RedisSet, started.elapsed());
        Ok(())
    }

    /// Appends `event` (any serialisable event) to the events stream, then publishes it; an
    /// event naming `person` (an id) is noted in their index.
    pub async fn publish<E: Serialize>(
        &self,
        event: &E,
        person: Option<&str>,
        hooks: &StageHooks,
    ) -> Result<(), BusError> {
        let payload = serde_json::to_vec(event).expect("an event serialises");
        let keys = self.bus.keys();
        let mut shared = self.bus.shared();
        let started = Instant::now();
        let id =
            events::publish(&mut shared, keys.events_channel(), keys.events_stream(), self.events, &payload)
                .await?;
        hooks.observe(Stage::RedisPublish, started.elapsed());
        if let Some(person) = person {
            index::note_event(&mut shared, keys, person, &id, self.events.max_age_secs).await?;
        }
        Ok(())
    }

    /// A recognised face's whole ending: cache its result, then publish its event and record
    /// its time-to-name (capture to event).
    pub async fn finish(
        &self,
        conn: &mut RedisConn,
        face: &FaceEntry,
        result: &CachedResult,
        event: &Event,
        hooks: &StageHooks,
    ) -> Result<(), BusError> {
        self.cache(conn, &face.md5, result, hooks).await?;
        self.publish(event, event.person.as_ref().map(|p| p.id.as_str()), hooks).await?;
        hooks.observe_time_to_name(face.capture_ts);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(model: &str, version: u64) -> CachedResult {
        CachedResult {
            schema: RESULT_SCHEMA,
            model: model.into(),
            gallery_version: version,
            ts: 1,
            faces: vec![],
        }
    }

    #[test]
    fn only_the_same_model_and_gallery_version_is_fresh() {
        assert!(result("sface", 3).is_fresh("sface", 3));
        assert!(!result("sface", 2).is_fresh("sface", 3));
        assert!(!result("sface", 4).is_fresh("sface", 3), "a version from before a restore");
        assert!(!result("mobilefacenet", 3).is_fresh("sface", 3));
        assert!(!result("sface", UNKNOWN_VERSION).is_fresh("sface", UNKNOWN_VERSION));
    }

    #[test]
    fn json_round_trips_and_omits_empty_fields() {
        let mut r = result("sface", 1);
        r.faces.push(FaceResult { bbox: None, person_id: None, name: None, score: 0.1, rejected: None });
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("bbox") && !json.contains("rejected"), "{json}");
        assert_eq!(serde_json::from_str::<CachedResult>(&json).unwrap(), r);
    }

    #[test]
    fn an_entry_whose_crop_is_not_its_key_is_refused() {
        let crop = b"\xff\xd8 a crop".to_vec();
        let entry = FaceEntry {
            md5: content_key(&crop),
            camera: "door".into(),
            group: "lobby".into(),
            capture_ts: 1,
            frame: 2,
            bbox: BBox { x: 1.0, y: 2.0, w: 30.0, h: 40.0 },
            score: 0.9,
            landmarks: [[0.0; 2]; 5],
            crop,
            crop_size: 112,
            model: "sface".into(),
        };
        let mut fields: std::collections::HashMap<String, Vec<u8>> =
            entry.to_fields().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        assert_eq!(read_entry(&fields).unwrap(), entry);
        fields.insert("crop".into(), b"other bytes".to_vec());
        assert!(matches!(read_entry(&fields), Err(EntryError::Md5Mismatch { .. })));
    }

    #[test]
    fn content_key_is_lower_hex_md5() {
        assert_eq!(content_key(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }
}
