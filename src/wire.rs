//! What crosses Redis between processes: the faces stream entry (ingest → workers) and the
//! recognition event (ingest or workers → subscribers). The cached result, the content key and
//! how an event is made live in [`crate::recognition`].
//!
//! Both carry a schema version. A reader refuses an entry it cannot fully understand: for the
//! faces stream that makes it a poison entry, dead-lettered with the reason.

use serde::{Deserialize, Serialize};

use crate::vision::BBox;

/// Version of the faces stream entry's fields.
pub const FACE_SCHEMA: u32 = 1;
/// Version of the event JSON.
pub const EVENT_SCHEMA: u32 = 1;

/// One face crop on `<prefix>:{<group>}:faces`. Every field is a stream field; `crop` holds
/// exactly the bytes whose MD5 is `md5`.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceEntry {
    pub md5: String,
    pub camera: String,
    pub group: String,
    /// Capture wall time of the frame, Unix milliseconds.
    pub capture_ts: u64,
    /// Frame number within the camera's session.
    pub frame: u64,
    pub bbox: BBox,
    /// Detector score.
    pub score: f32,
    pub landmarks: [[f32; 2]; 5],
    /// The aligned crop, JPEG-encoded, `crop_size` square.
    pub crop: Vec<u8>,
    pub crop_size: u32,
    /// Recogniser id the crop was aligned for (its input size).
    pub model: String,
}

/// Why a stream entry cannot be used; becomes the dead letter's `reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}` is malformed: {detail}")]
    Malformed { field: &'static str, detail: String },
    #[error("schema {0} is not understood (this build reads schema {FACE_SCHEMA})")]
    Schema(u32),
    #[error("md5 {claimed} does not match the crop bytes ({actual})")]
    Md5Mismatch { claimed: String, actual: String },
}

impl FaceEntry {
    /// The stream fields, in a stable order.
    pub fn to_fields(&self) -> Vec<(&'static str, Vec<u8>)> {
        // Plain data: serialising cannot fail.
        let bbox = serde_json::to_vec(&self.bbox).expect("a BBox serialises");
        let landmarks = serde_json::to_vec(&self.landmarks).expect("landmarks serialise");
        vec![
            ("schema", FACE_SCHEMA.to_string().into_bytes()),
            ("md5", self.md5.clone().into_bytes()),
            ("camera", self.camera.clone().into_bytes()),
            ("group", self.group.clone().into_bytes()),
            ("capture_ts", self.capture_ts.to_string().into_bytes()),
            ("frame", self.frame.to_string().into_bytes()),
            ("bbox", bbox),
            ("score", self.score.to_string().into_bytes()),
            ("landmarks", landmarks),
            ("crop_size", self.crop_size.to_string().into_bytes()),
            ("model", self.model.clone().into_bytes()),
            ("crop", self.crop.clone()),
        ]
    }

    /// Parses stream fields, checking every field. That `md5` is the content key of `crop` is
    /// checked by [`crate::recognition::read_entry`], which owns the content key.
    pub fn from_fields(fields: &std::collections::HashMap<String, Vec<u8>>) -> Result<FaceEntry, EntryError> {
        let raw = |name: &'static str| fields.get(name).ok_or(EntryError::Missing(name));
        let text = |name: &'static str| -> Result<&str, EntryError> {
            std::str::from_utf8(raw(name)?)
                .map_err(|e| EntryError::Malformed { field: name, detail: e.to_string() })
        };
        fn parse<T: std::str::FromStr>(name: &'static str, s: &str) -> Result<T, EntryError>
        where
            T::Err: std::fmt::Display,
        {
            s.parse().map_err(|e: T::Err| EntryError::Malformed { field: name, detail: e.to_string() })
        }
        fn json<T: serde::de::DeserializeOwned>(name: &'static str, s: &str) -> Result<T, EntryError> {
            serde_json::from_str(s).map_err(|e| EntryError::Malformed { field: name, detail: e.to_string() })
        }
        let schema: u32 = parse("schema", text("schema")?)?;
        if schema != FACE_SCHEMA {
            return Err(EntryError::Schema(schema));
        }
        let entry = FaceEntry {
            md5: text("md5")?.to_owned(),
            camera: text("camera")?.to_owned(),
            group: text("group")?.to_owned(),
            capture_ts: parse("capture_ts", text("capture_ts")?)?,
            frame: parse("frame", text("frame")?)?,
            bbox: json("bbox", text("bbox")?)?,
            score: parse("score", text("score")?)?,
            landmarks: json("landmarks", text("landmarks")?)?,
            crop_size: parse("crop_size", text("crop_size")?)?,
            model: text("model")?.to_owned(),
            crop: raw("crop")?.clone(),
        };
        Ok(entry)
    }
}

/// A recognised (or unknown) face, published on `<prefix>:events` and appended to the events
/// stream of the same name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub schema: u32,
    /// `<group>:<faces stream entry id>` for a recognition by a worker, so a redelivered entry
    /// after a crash gives the same id; `cache:<camera>:<frame>:<md5>` for a cache hit at ingest.
    pub id: String,
    pub camera: String,
    pub group: String,
    /// Capture wall time of the frame, Unix milliseconds.
    pub capture_ts: u64,
    /// When the event was made, Unix milliseconds.
    pub event_ts: u64,
    pub frame: u64,
    pub md5: String,
    /// The recognised person, or `None` for unknown.
    pub person: Option<PersonRef>,
    /// Cosine similarity of the best match (also when unknown).
    pub score: f32,
    pub bbox: BBox,
    /// Answered from `image:<md5>` without recognition.
    pub cached: bool,
    /// Recogniser id.
    pub model: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PersonRef {
    pub id: String,
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> FaceEntry {
        let crop = b"\xff\xd8 not really a jpeg".to_vec();
        FaceEntry {
            md5: "8b1a9953c4611296a827abf8c47804d7".into(),
            camera: "door".into(),
            group: "lobby".into(),
            capture_ts: 1_700_000_000_123,
            frame: 42,
            bbox: BBox { x: 1.5, y: 2.0, w: 30.0, h: 40.0 },
            score: 0.93,
            landmarks: [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]],
            crop,
            crop_size: 112,
            model: "sface-2021dec-fp32".into(),
        }
    }

    fn fields(e: &FaceEntry) -> std::collections::HashMap<String, Vec<u8>> {
        e.to_fields().into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    #[test]
    fn entry_round_trips() {
        let e = entry();
        assert_eq!(FaceEntry::from_fields(&fields(&e)).unwrap(), e);
    }

    #[test]
    fn poison_entries_say_why() {
        let mut f = fields(&entry());
        f.remove("camera");
        assert_eq!(FaceEntry::from_fields(&f), Err(EntryError::Missing("camera")));
        let mut f = fields(&entry());
        f.insert("bbox".into(), b"[1,2".to_vec());
        assert!(matches!(FaceEntry::from_fields(&f), Err(EntryError::Malformed { field: "bbox", .. })));
        let mut f = fields(&entry());
        f.insert("schema".into(), b"9".to_vec());
        assert_eq!(FaceEntry::from_fields(&f), Err(EntryError::Schema(9)));
    }
}
