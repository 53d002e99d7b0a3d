//! The enrolled gallery, kept in Redis so that every worker on every machine matches against the
//! same people.
//!
//! Layout (all under the `{gallery}` hash tag, so one Cluster slot holds it and MULTI/EXEC makes
//! enrol and forget atomic):
//! - `<prefix>:{gallery}:people`: hash, person id → JSON [`Person`];
//! - `<prefix>:{gallery}:emb:<id>`: the person's embeddings, packed little-endian f32, `dim` each,
//!   appended to by each enrolment;
//! - `<prefix>:{gallery}:version`: a counter bumped by a random step by every change. Cached
//!   results carry the version they were made with; any other one is a miss, so an unknown face is
//!   recognised as soon as that person is enrolled, and a forgotten person is no longer named from
//!   the cache, even after the counter went back (a restore) and was bumped again.
//!   Workers read it before every batch and reload when it moved, so no announcement is needed.
//!
//! Anything read back is checked before it is used: the store is shared, and a record written by
//! hand, by another version or by a bug must not stop recognition. A malformed person record or
//! embeddings value is skipped with its key (see [`Snapshot::malformed`]) and the rest of the
//! gallery keeps working; a version that is not a counter reads as [`UNKNOWN_VERSION`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::matcher::{MatchPolicy, Matcher};
use crate::bus::{Keys, RedisConn};
use crate::terminal::printable;

/// Longest embedding accepted from a person record; a bigger `dim` is corruption.
pub use crate::vision::MAX_EMBEDDING_DIM as MAX_DIM;

/// The gallery version when `<prefix>:{gallery}:version` holds something that is not a counter
/// (INCR cannot reach it, so no cached result is ever made with it: see
/// [`crate::recognition::CachedResult::is_fresh`]). A gallery at this version is reloaded for
/// every batch, since its changes cannot be seen.
pub const UNKNOWN_VERSION: u64 = u64::MAX;

/// One enrolled person, as stored in the people hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// Stable id derived from the name ([`person_id`]); the key of everything about the person.
    pub id: String,
    /// The name as given to `enroll`.
    pub name: String,
    /// Recogniser id the embeddings were made with; other models' embeddings are never compared.
    pub model: String,
    /// Embedding length.
    pub dim: usize,
    /// Unix time of the first enrolment, in seconds.
    pub created: u64,
    /// Unix time of the last enrolment, in seconds.
    pub updated: u64,
    /// Anonymous visitors this person was enrolled from (`enroll --visitor`): the link from
    /// the `visitor` of their earlier visit events to this person.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_visitors: Vec<String>,
}

/// A person with how many embeddings they have, for listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersonSummary {
    #[serde(flatten)]
    pub person: Person,
    pub embeddings: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("`{0}` gives an empty person id: use letters or digits in the name")]
    BadName(String),
    #[error("the name `{name}` is refused: {why}")]
    NameRefused { name: String, why: String },
    #[error(
        "{name} is enrolled with model `{enrolled}`, this recogniser is `{current}`: \
         `redeye forget {name}` first, then enrol again"
    )]
    ModelMismatch { name: String, enrolled: String, current: String },
    #[error(
        "every one of the {people} people in the gallery is enrolled with another model ({enrolled}), \
         this recogniser is `{current}`: set [recognizer] to the model they were enrolled with, or \
         forget and enrol them again"
    )]
    WrongModel { people: usize, enrolled: String, current: String },
    #[error("the gallery holds malformed data for `{id}`: {detail}")]
    Corrupt { id: String, detail: String },
}

/// Longest accepted name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// Refuses a name that is too long or holds control characters (newlines, escape sequences,
/// bidi overrides): names are printed on terminals and in events. The error shows the name
/// escaped.
pub fn check_name(name: &str) -> Result<(), GalleryError> {
    let refuse = |why: String| GalleryError::NameRefused { name: printable(name).into_owned(), why };
    let chars = name.trim().chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(refuse(format!("{chars} characters, at most {MAX_NAME_CHARS}")));
    }
    if name.chars().any(crate::terminal::is_unsafe) {
        return Err(refuse("it holds control characters (newline, escape, bidi override...)".into()));
    }
    Ok(())
}

/// A person's id: the name lowercased, runs of anything but letters and digits turned into one
/// `-`. "Barack  Obama" and "barack-obama" are the same person.
pub fn person_id(name: &str) -> Result<String, GalleryError> {
    let mut id = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            id.push(c);
        } else if !id.is_empty() && !id.ends_with('-') {
            id.push('-');
        }
    }
    while id.ends_with('-') {
        id.pop();
    }
    if id.is_empty() { Err(GalleryError::BadName(printable(name).into_owned())) } else { Ok(id) }
}

/// How far enrol and forget move the version: a random step, not 1. Freshness is equality
/// (see `recognition::CachedResult::is_fresh`), and a counter restored from a backup, or one
/// that lost INCRs in a failover, then bumped by 1 again would meet the version results were
/// cached with before, naming a forgotten person. A random step of up to 2^32 makes that a one
/// in four billion chance, and still leaves 2^31 changes before the counter could overflow.
fn version_step() -> u64 {
    rand::random_range(1..=u64::from(u32::MAX))
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Packs embeddings as little-endian f32, back to back.
pub fn pack(embeddings: &[Vec<f32>]) -> Vec<u8> {
    embeddings.iter().flatten().flat_map(|v| v.to_le_bytes()).collect()
}

/// The inverse of [`pack`]; `None` if `dim` is 0 or the length is not a whole number of
/// embeddings.
pub fn unpack(bytes: &[u8], dim: usize) -> Option<Vec<Vec<f32>>> {
    let row = dim.checked_mul(4).filter(|&r| r > 0)?;
    if !bytes.len().is_multiple_of(row) {
        return None;
    }
    let values: Vec<f32> =
        bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Some(values.chunks(dim).map(<[f32]>::to_vec).collect())
}

/// Adds `embeddings` to the person called `name` (creating them), atomically, and announces the
/// new gallery version. Returns the person and the new version.
pub async fn enroll(
    conn: &mut RedisConn,
    keys: &Keys,
    name: &str,
    model: &str,
    embeddings: &[Vec<f32>],
) -> Result<(Person, u64), GalleryError> {
    enroll_from(conn, keys, name, model, embeddings, None).await
}

/// [`enroll`], recording that the embeddings are anonymous visitor `visitor`'s (when given).
pub async fn enroll_from(
    conn: &mut RedisConn,
    keys: &Keys,
    name: &str,
    model: &str,
    embeddings: &[Vec<f32>],
    visitor: Option<&str>,
) -> Result<(Person, u64), GalleryError> {
    check_name(name)?;
    let id = person_id(name)?;
    let dim = embeddings.first().map_or(0, Vec::len);
    let existing: Option<Vec<u8>> = conn.hget(keys.people(), &id).await?;
    let now = now_secs();
    let existing = existing
        .map(|json| parse_person(&id, &json))
        .transpose()
        .map_err(|detail| GalleryError::Corrupt { id: id.clone(), detail })?;
    let mut person = match existing {
        Some(old) if old.model != model => {
            return Err(GalleryError::ModelMismatch {
                name: old.name,
                enrolled: old.model,
                current: model.to_owned(),
            });
        }
        Some(old) => Person { name: name.trim().to_owned(), updated: now, ..old },
        None => Person {
            id: id.clone(),
            name: name.trim().to_owned(),
            model: model.to_owned(),
            dim,
            created: now,
            updated: now,
            from_visitors: Vec::new(),
        },
    };
    if let Some(v) = visitor.filter(|v| !person.from_visitors.iter().any(|f| f == v)) {
        person.from_visitors.push(v.to_owned());
    }
    let json = serde_json::to_string(&person).expect("a Person serialises");
    let (version,): (u64,) = redis::pipe()
        .atomic()
        .hset(keys.people(), &id, json)
        .ignore()
        .append(keys.embeddings(&id), pack(embeddings))
        .ignore()
        .incr(keys.gallery_version(), version_step())
        .query_async(conn)
        .await?;
    Ok((person, version))
}

/// Removes the person called `name` (or with that id) everywhere in the gallery. Returns the new
/// version, or `None` if nobody by that name is enrolled.
pub async fn forget(conn: &mut RedisConn, keys: &Keys, name: &str) -> Result<Option<u64>, GalleryError> {
    let id = person_id(name)?;
    let (removed, _, version): (u64, u64, u64) = redis::pipe()
        .atomic()
        .hdel(keys.people(), &id)
        .del(keys.embeddings(&id))
        .incr(keys.gallery_version(), version_step())
        .query_async(conn)
        .await?;
    if removed == 0 {
        return Ok(None);
    }
    Ok(Some(version))
}

/// The current gallery version (0 when nothing was ever enrolled; [`UNKNOWN_VERSION`], logged
/// once per process, when the key holds something other than a counter).
pub async fn version(conn: &mut RedisConn, keys: &Keys) -> Result<u64, GalleryError> {
    let raw: Option<Vec<u8>> = conn.get(keys.gallery_version()).await?;
    let Some(raw) = raw else { return Ok(0) };
    match std::str::from_utf8(&raw).ok().and_then(|s| s.parse::<u64>().ok()) {
        Some(v) if v != UNKNOWN_VERSION => Ok(v),
        _ => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    key = %keys.gallery_version(), value = %String::from_utf8_lossy(&raw),
                    "The gallery version is not a counter: no cached result is used until \
                     `enroll` or `forget` works again (delete the key to reset it)."
                );
            });
            Ok(UNKNOWN_VERSION)
        }
    }
}

/// Everyone enrolled, sorted by id, with their embedding counts, and the records skipped as
/// malformed.
pub async fn list(
    conn: &mut RedisConn,
    keys: &Keys,
) -> Result<(Vec<PersonSummary>, Vec<Malformed>), GalleryError> {
    let snap = snapshot(conn, keys).await?;
    let people = snap
        .people
        .into_iter()
        .map(|(person, embeddings)| PersonSummary { embeddings: embeddings.len(), person })
        .collect();
    Ok((people, snap.malformed))
}

/// A record of the gallery that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Malformed {
    /// The Redis key (and hash field) holding it.
    pub key: String,
    pub detail: String,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", printable(&self.key), printable(&self.detail))
    }
}

/// A consistent copy of the gallery.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: u64,
    /// Each usable person with their embeddings, sorted by id.
    pub people: Vec<(Person, Vec<Vec<f32>>)>,
    /// Records left out because they cannot be read.
    pub malformed: Vec<Malformed>,
}

/// A consistent copy of the gallery: the version, and each person with their embeddings.
/// Reads optimistically and retries if an enrolment landed in between. Malformed records are
/// left out and listed, never an error: one bad record must not hide everyone else.
pub async fn snapshot(conn: &mut RedisConn, keys: &Keys) -> Result<Snapshot, GalleryError> {
    loop {
        let before = version(conn, keys).await?;
        let raw: Vec<(String, Vec<u8>)> = conn.hgetall(keys.people()).await?;
        let mut people = Vec::with_capacity(raw.len());
        let mut malformed = Vec::new();
        if before == UNKNOWN_VERSION {
            let detail = "the version is not a counter".to_owned();
            malformed.push(Malformed { key: keys.gallery_version(), detail });
        }
        for (id, json) in raw {
            let person = match parse_person(&id, &json) {
                Ok(p) => p,
                Err(detail) => {
                    malformed.push(Malformed { key: format!("{} {id}", keys.people()), detail });
                    continue;
                }
            };
            let bytes: Vec<u8> = conn.get(keys.embeddings(&id)).await?;
            match unpack(&bytes, person.dim) {
                Some(embeddings) => people.push((person, embeddings)),
                None => malformed.push(Malformed {
                    key: keys.embeddings(&id),
                    detail: format!(
                        "{} bytes of embeddings is not a whole number of {}-d f32 embeddings",
                        bytes.len(),
                        person.dim
                    ),
                }),
            }
        }
        if version(conn, keys).await? == before {
            people.sort_by(|a, b| a.0.id.cmp(&b.0.id));
            return Ok(Snapshot { version: before, people, malformed });
        }
    }
}

/// A matcher over the gallery for the recogniser `model` of dimension `dim`. People enrolled
/// with another model are left out with a warning (their embeddings do not compare).
pub async fn load_matcher(
    conn: &mut RedisConn,
    keys: &Keys,
    model: &str,
    dim: usize,
    policy: MatchPolicy,
) -> Result<(Snapshot, Matcher), GalleryError> {
    let mut snap = snapshot(conn, keys).await?;
    let people = std::mem::take(&mut snap.people);
    // A gallery wholly enrolled with another model cannot name anyone: that is a configuration
    // error to stop on, not a gallery of strangers. A few such people (a migration under way)
    // are left out with a warning.
    if !people.is_empty() && people.iter().all(|(p, _)| p.model != model || p.dim != dim) {
        let mut enrolled: Vec<String> =
            people.iter().map(|(p, _)| format!("{} ({}-d)", p.model, p.dim)).collect();
        enrolled.sort();
        enrolled.dedup();
        return Err(GalleryError::WrongModel {
            people: people.len(),
            enrolled: enrolled.join(", "),
            current: format!("{model} ({dim}-d)"),
        });
    }
    let mut matcher = Matcher::new(dim, policy);
    for (person, embeddings) in people {
        if person.model != model || person.dim != dim {
            tracing::warn!(
                person = %person.id, enrolled = %person.model, current = model,
                "Person enrolled with another model is left out of matching; enrol them again."
            );
            continue;
        }
        for e in &embeddings {
            matcher
                .add(&person.id, &person.name, e)
                .map_err(|err| GalleryError::Corrupt { id: person.id.clone(), detail: err.to_string() })?;
        }
    }
    Ok((snap, matcher))
}

/// The gallery as a long-running process sees it: a matcher for the current version, reloaded
/// when the version in Redis moves. Checking costs one GET per call, so a worker calls it once
/// per batch: an enrolment is in effect from the next batch on, on every machine.
pub struct LiveGallery {
    model: String,
    dim: usize,
    policy: MatchPolicy,
    current: tokio::sync::Mutex<Option<(u64, Arc<Matcher>)>>,
    /// Malformed records in the last load, for the `redeye_gallery_malformed_records` gauge.
    malformed: AtomicU64,
    /// Malformed records already logged: each is logged once, not at every reload.
    logged: Mutex<HashSet<Malformed>>,
}

impl LiveGallery {
    pub fn new(model: &str, dim: usize, policy: MatchPolicy) -> LiveGallery {
        LiveGallery {
            model: model.to_owned(),
            dim,
            policy,
            current: tokio::sync::Mutex::new(None),
            malformed: AtomicU64::new(0),
            logged: Mutex::new(HashSet::new()),
        }
    }

    /// How many records the last load skipped as malformed.
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    /// The current version and its matcher, reloading if another process changed the gallery.
    pub async fn current(
        &self,
        conn: &mut RedisConn,
        keys: &Keys,
    ) -> Result<(u64, Arc<Matcher>), GalleryError> {
        let latest = version(conn, keys).await?;
        // One reload at a time: the lock is held across it, so concurrent callers wait for
        // the new matcher instead of each loading their own.
        let mut current = self.current.lock().await;
        if let Some((v, m)) = current.as_ref()
            && *v == latest
            && latest != UNKNOWN_VERSION
        {
            return Ok((*v, m.clone()));
        }
        let (snap, matcher) = load_matcher(conn, keys, &self.model, self.dim, self.policy).await?;
        self.malformed.store(snap.malformed.len() as u64, Ordering::Relaxed);
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        for bad in &snap.malformed {
            if logged.insert(bad.clone()) {
                tracing::warn!(key = %printable(&bad.key), detail = %printable(&bad.detail), "Skipped a malformed gallery record.");
            }
        }
        drop(logged);
        let v = snap.version;
        if v != UNKNOWN_VERSION || current.is_none() {
            tracing::info!(version = v, people = matcher.people(), "Loaded the gallery.");
        }
        let loaded = (v, Arc::new(matcher));
        *current = Some(loaded.clone());
        Ok(loaded)
    }
}

/// A person record, checked: JSON of the right shape, the id of its hash field, and a `dim`
/// in 1..=[`MAX_DIM`]. The error is why not.
fn parse_person(id: &str, json: &[u8]) -> Result<Person, String> {
    let person: Person = serde_json::from_slice(json).map_err(|e| format!("person record: {e}"))?;
    if person.id != id {
        return Err(format!("person record names id `{}`", person.id));
    }
    if !(1..=MAX_DIM).contains(&person.dim) {
        return Err(format!("dim {} is outside 1..={MAX_DIM}", person.dim));
    }
    Ok(person)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_slugs_of_names() {
        assert_eq!(person_id("Barack  Obama").unwrap(), "barack-obama");
        assert_eq!(person_id(" barack-obama ").unwrap(), "barack-obama");
        assert_eq!(person_id("Zoë O'Neil!").unwrap(), "zoë-o-neil");
        assert!(person_id(" -- ").is_err());
    }

    #[test]
    fn names_with_controls_or_too_long_are_refused() {
        assert!(check_name("Zoë O'Neil").is_ok());
        assert!(check_name("a\u{1b}[2Jb").is_err());
        assert!(check_name("two\nlines").is_err());
        assert!(check_name(&"x".repeat(129)).is_err());
        let err = check_name("a\u{1b}b").unwrap_err().to_string();
        assert!(!err.contains('\u{1b}') && err.contains("\\u{1b}"), "{err}");
    }

    #[test]
    fn pack_round_trips_and_rejects_ragged_bytes() {
        let e = vec![vec![1.0, -2.5, 3.25], vec![0.0, 1e-7, -0.0]];
        assert_eq!(unpack(&pack(&e), 3).unwrap(), e);
        assert!(unpack(&pack(&e)[..10], 3).is_none());
        assert_eq!(unpack(&[], 3).unwrap(), Vec::<Vec<f32>>::new());
        assert!(unpack(&[0; 8], 0).is_none());
        assert!(unpack(&[0; 8], usize::MAX / 2).is_none(), "dim * 4 overflows");
    }

    #[test]
    fn person_records_are_checked() {
        let good = br#"{"id":"ada","name":"Ada","model":"m","dim":128,"created":1,"updated":1}"#;
        assert_eq!(parse_person("ada", good).unwrap().dim, 128);
        let huge =
            br#"{"id":"ada","name":"Ada","model":"m","dim":4611686018427387904,"created":1,"updated":1}"#;
        assert!(parse_person("ada", huge).unwrap_err().contains("dim"));
        assert!(parse_person("bob", good).unwrap_err().contains("`ada`"));
        assert!(parse_person("ada", b"notjson").is_err());
    }
}
