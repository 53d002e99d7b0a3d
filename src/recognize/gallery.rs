//! The enrolled gallery, kept in Redis so that every worker on every machine matches against the
//! same people.
//!
//! Layout (all under the `{gallery}` hash tag, so one Cluster slot holds it and MULTI/EXEC makes
//! enrol and forget atomic):
//! - `<prefix>:{gallery}:people`: hash, person id → JSON [`Person`];
//! - `<prefix>:{gallery}:emb:<id>`: the person's embeddings, packed little-endian f32, `dim` each,
//!   appended to by each enrolment;
//! - `<prefix>:{gallery}:version`: a counter bumped by every change. Cached results carry the
//!   version they were made with; an older one is a miss, so an unknown face is recognised as soon
//!   as that person is enrolled, and a forgotten person is no longer named from the cache.
//!   Workers read it before every batch and reload when it moved, so no announcement is needed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::matcher::{MatchPolicy, Matcher};
use crate::bus::{Keys, RedisConn};

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
    if id.is_empty() { Err(GalleryError::BadName(name.to_owned())) } else { Ok(id) }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Packs embeddings as little-endian f32, back to back.
pub fn pack(embeddings: &[Vec<f32>]) -> Vec<u8> {
    embeddings.iter().flatten().flat_map(|v| v.to_le_bytes()).collect()
}

/// The inverse of [`pack`]; `None` if the length is not a whole number of embeddings.
pub fn unpack(bytes: &[u8], dim: usize) -> Option<Vec<Vec<f32>>> {
    if dim == 0 || !bytes.len().is_multiple_of(dim * 4) {
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
    let id = person_id(name)?;
    let dim = embeddings.first().map_or(0, Vec::len);
    let existing: Option<String> = conn.hget(keys.people(), &id).await?;
    let now = now_secs();
    let person = match existing.map(|json| parse_person(&id, &json)).transpose()? {
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
        },
    };
    let json = serde_json::to_string(&person).expect("a Person serialises");
    let (version,): (u64,) = redis::pipe()
        .atomic()
        .hset(keys.people(), &id, json)
        .ignore()
        .append(keys.embeddings(&id), pack(embeddings))
        .ignore()
        .incr(keys.gallery_version(), 1)
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
        .incr(keys.gallery_version(), 1)
        .query_async(conn)
        .await?;
    if removed == 0 {
        return Ok(None);
    }
    Ok(Some(version))
}

/// The current gallery version (0 when nothing was ever enrolled).
pub async fn version(conn: &mut RedisConn, keys: &Keys) -> Result<u64, GalleryError> {
    let v: Option<u64> = conn.get(keys.gallery_version()).await?;
    Ok(v.unwrap_or(0))
}

/// Everyone enrolled, sorted by id, with their embedding counts.
pub async fn list(conn: &mut RedisConn, keys: &Keys) -> Result<Vec<PersonSummary>, GalleryError> {
    let (_, people) = snapshot(conn, keys).await?;
    Ok(people
        .into_iter()
        .map(|(person, embeddings)| PersonSummary { embeddings: embeddings.len(), person })
        .collect())
}

/// A consistent copy of the gallery: the version, and each person with their embeddings.
/// Reads optimistically and retries if an enrolment landed in between.
pub async fn snapshot(
    conn: &mut RedisConn,
    keys: &Keys,
) -> Result<(u64, Vec<(Person, Vec<Vec<f32>>)>), GalleryError> {
    loop {
        let before = version(conn, keys).await?;
        let raw: Vec<(String, String)> = conn.hgetall(keys.people()).await?;
        let mut people = Vec::with_capacity(raw.len());
        for (id, json) in raw {
            let person = parse_person(&id, &json)?;
            let bytes: Vec<u8> = conn.get(keys.embeddings(&id)).await?;
            let embeddings = unpack(&bytes, person.dim).ok_or_else(|| GalleryError::Corrupt {
                id: id.clone(),
                detail: format!(
                    "{} bytes of embeddings is not a multiple of {} x 4",
                    bytes.len(),
                    person.dim
                ),
            })?;
            people.push((person, embeddings));
        }
        if version(conn, keys).await? == before {
            people.sort_by(|a, b| a.0.id.cmp(&b.0.id));
            return Ok((before, people));
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
) -> Result<(u64, Matcher), GalleryError> {
    let (version, people) = snapshot(conn, keys).await?;
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
    Ok((version, matcher))
}

/// The gallery as a long-running process sees it: a matcher for the current version, reloaded
/// when the version in Redis moves. Checking costs one GET per call, so a worker calls it once
/// per batch: an enrolment is in effect from the next batch on, on every machine.
pub struct LiveGallery {
    model: String,
    dim: usize,
    policy: MatchPolicy,
    current: tokio::sync::Mutex<Option<(u64, Arc<Matcher>)>>,
}

impl LiveGallery {
    pub fn new(model: &str, dim: usize, policy: MatchPolicy) -> LiveGallery {
        LiveGallery { model: model.to_owned(), dim, policy, current: tokio::sync::Mutex::new(None) }
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
        {
            return Ok((*v, m.clone()));
        }
        let (v, matcher) = load_matcher(conn, keys, &self.model, self.dim, self.policy).await?;
        tracing::info!(version = v, people = matcher.people(), "Loaded the gallery.");
        let loaded = (v, Arc::new(matcher));
        *current = Some(loaded.clone());
        Ok(loaded)
    }
}

fn parse_person(id: &str, json: &str) -> Result<Person, GalleryError> {
    serde_json::from_str(json)
        .map_err(|e| GalleryError::Corrupt { id: id.to_owned(), detail: format!("person record: {e}") })
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
    fn pack_round_trips_and_rejects_ragged_bytes() {
        let e = vec![vec![1.0, -2.5, 3.25], vec![0.0, 1e-7, -0.0]];
        assert_eq!(unpack(&pack(&e), 3).unwrap(), e);
        assert!(unpack(&pack(&e)[..10], 3).is_none());
        assert_eq!(unpack(&[], 3).unwrap(), Vec::<Vec<f32>>::new());
    }
}
