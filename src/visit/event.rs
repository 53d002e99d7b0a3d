//! Visit events (schema 2): `arrived`, `updated`, `left`, one set per face track, published on
//! `<prefix>:events` next to the per-face events (schema 1, [`crate::wire::Event`]).
//!
//! A subscriber tells them apart by `schema` (and only visit events have `kind`);
//! [`AnyEvent::from_json`] does it. The id is stable (`<track>:arrived`, `<track>:updated:<n>`,
//! `<track>:left`), so an event published twice (a worker died between publishing and marking
//! it published) is recognised as a duplicate.

use serde::{Deserialize, Serialize};

use super::record::Announcement;
pub use super::record::VisitKind;
use crate::vision::BBox;
use crate::wire::{Event, PersonRef};

/// Version of the visit event JSON.
pub const VISIT_SCHEMA: u32 = 2;

/// One visit event. Absent fields are left out of the JSON, except `person`, which is `null`
/// for an unknown (or, on `left`, undecided) face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitEvent {
    /// Always [`VISIT_SCHEMA`].
    pub schema: u32,
    pub kind: VisitKind,
    /// `<track>:arrived`, `<track>:updated:<n>` or `<track>:left`.
    pub id: String,
    /// `<camera>:<first_seen ms>:<n>`.
    pub track: String,
    pub camera: String,
    pub group: String,
    /// First sighting of the track, Unix ms.
    pub first_seen: u64,
    /// When the record decided this, Unix ms (the same on a re-publish).
    pub event_ts: u64,
    /// The decided person, or `null`.
    pub person: Option<PersonRef>,
    /// Match score of the deciding shot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// MD5 of the deciding shot's crop (its result is cached under `image:<md5>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// The deciding shot's box in its frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<BBox>,
    /// Recogniser id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The anonymous visitor id (`v-...`) of an unknown face, the same on every camera and
    /// visit while the visitor is remembered; `null` for a person (unless `[visitors]
    /// for_known`), before it is resolved, or with visitors off.
    #[serde(default)]
    pub visitor: Option<String>,
    /// `left` only: last sighting, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<u64>,
    /// `left` only: `last_seen - first_seen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dwell_ms: Option<u64>,
    /// `left` only: frames the face was detected in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faces_seen: Option<u64>,
    /// `left` only: shots folded (recognised or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shots: Option<u64>,
    /// `left` only: whether an identity (a person or unknown) was ever decided; false when
    /// every shot failed, and then there was no `arrived`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<bool>,
}

impl VisitEvent {
    /// The event for an announcement of the track record.
    pub fn from_announcement(a: &Announcement) -> VisitEvent {
        let left = a.kind == VisitKind::Left;
        VisitEvent {
            schema: VISIT_SCHEMA,
            kind: a.kind,
            id: format!("{}:{}", a.track, a.name),
            track: a.track.clone(),
            camera: a.camera.clone(),
            group: a.group.clone(),
            first_seen: a.first_seen,
            event_ts: a.event_ts,
            person: a.person.clone(),
            score: a.score,
            md5: a.md5.clone(),
            bbox: a.bbox,
            model: a.model.clone(),
            visitor: a.visitor.clone(),
            last_seen: a.last_seen.filter(|_| left),
            dwell_ms: a.last_seen.filter(|_| left).map(|last| last.saturating_sub(a.first_seen)),
            faces_seen: a.faces_seen.filter(|_| left),
            shots: a.shots.filter(|_| left),
            decided: left.then_some(a.decided),
        }
    }
}

/// Either kind of event found on `<prefix>:events`.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyEvent {
    /// Schema 1: one recognised face.
    Face(Event),
    /// Schema 2: a track's arrival, update or departure.
    Visit(VisitEvent),
}

impl AnyEvent {
    /// Parses an event by its `schema`.
    pub fn from_json(bytes: &[u8]) -> Result<AnyEvent, serde_json::Error> {
        #[derive(Deserialize)]
        struct Schema {
            schema: u32,
        }
        match serde_json::from_slice::<Schema>(bytes)?.schema {
            VISIT_SCHEMA => Ok(AnyEvent::Visit(serde_json::from_slice(bytes)?)),
            _ => Ok(AnyEvent::Face(serde_json::from_slice(bytes)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn announcement(kind: VisitKind, name: &str) -> Announcement {
        Announcement {
            kind,
            name: name.into(),
            track: "door:1700000000000:7".into(),
            camera: "door".into(),
            group: "lobby".into(),
            first_seen: 1_700_000_000_000,
            event_ts: 1_700_000_000_420,
            decided: true,
            person: Some(PersonRef { id: "ada".into(), name: "Ada".into() }),
            score: Some(0.75),
            md5: Some("61116d913a4d9c5c429af51fa88ace6f".into()),
            bbox: Some(BBox { x: 1.5, y: 2.0, w: 30.0, h: 40.0 }),
            model: Some("sface".into()),
            visitor: None,
            last_seen: None,
            faces_seen: None,
            shots: None,
            published: false,
        }
    }

    #[test]
    fn arrived_json() {
        let event = VisitEvent::from_announcement(&announcement(VisitKind::Arrived, "arrived"));
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(
            value,
            json!({
                "schema": 2, "kind": "arrived", "id": "door:1700000000000:7:arrived",
                "track": "door:1700000000000:7", "camera": "door", "group": "lobby",
                "first_seen": 1_700_000_000_000u64, "event_ts": 1_700_000_000_420u64,
                "person": {"id": "ada", "name": "Ada"}, "score": 0.75,
                "md5": "61116d913a4d9c5c429af51fa88ace6f",
                "bbox": {"x": 1.5, "y": 2.0, "w": 30.0, "h": 40.0}, "model": "sface",
                "visitor": null
            })
        );
        let back: VisitEvent = serde_json::from_value(value).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn updated_has_a_sequence() {
        let event = VisitEvent::from_announcement(&announcement(VisitKind::Updated, "updated:2"));
        assert_eq!(event.id, "door:1700000000000:7:updated:2");
        assert_eq!(serde_json::to_value(&event).unwrap()["kind"], "updated");
    }

    #[test]
    fn left_json_without_decision() {
        let mut a = announcement(VisitKind::Left, "left");
        (a.decided, a.person, a.score, a.md5, a.bbox, a.model) = (false, None, None, None, None, None);
        (a.last_seen, a.faces_seen, a.shots) = (Some(1_700_000_009_000), Some(40), Some(3));
        a.visitor = Some("v-0123456789ab".into());
        let value = serde_json::to_value(VisitEvent::from_announcement(&a)).unwrap();
        assert_eq!(
            value,
            json!({
                "schema": 2, "kind": "left", "id": "door:1700000000000:7:left",
                "track": "door:1700000000000:7", "camera": "door", "group": "lobby",
                "first_seen": 1_700_000_000_000u64, "event_ts": 1_700_000_000_420u64,
                "person": null, "visitor": "v-0123456789ab", "last_seen": 1_700_000_009_000u64, "dwell_ms": 9000,
                "faces_seen": 40, "shots": 3, "decided": false
            })
        );
    }

    #[test]
    fn subscribers_tell_the_schemas_apart() {
        let visit = VisitEvent::from_announcement(&announcement(VisitKind::Arrived, "arrived"));
        let bytes = serde_json::to_vec(&visit).unwrap();
        assert_eq!(AnyEvent::from_json(&bytes).unwrap(), AnyEvent::Visit(visit));
        let face = Event {
            schema: crate::wire::EVENT_SCHEMA,
            id: "lobby:1-0".into(),
            camera: "door".into(),
            group: "lobby".into(),
            capture_ts: 1,
            event_ts: 2,
            frame: 3,
            md5: "m".into(),
            person: None,
            score: 0.1,
            bbox: BBox { x: 0.0, y: 0.0, w: 1.0, h: 1.0 },
            cached: false,
            model: "sface".into(),
        };
        let bytes = serde_json::to_vec(&face).unwrap();
        assert_eq!(AnyEvent::from_json(&bytes).unwrap(), AnyEvent::Face(face));
    }
}
