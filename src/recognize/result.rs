//! The recognition result cached under `image:<md5>`.
//!
//! One JSON shape for both producers: a worker caching the answer for one face crop (one face,
//! no box: the crop is the face) and `identify` caching the answer for a whole photo (one entry per
//! face, with boxes). JSON, never a language-specific serialisation: the seed article pickled its
//! results, and unpickling data from a shared store runs code.

use serde::{Deserialize, Serialize};

use crate::vision::BBox;

/// Version of this JSON shape; bump it when a field changes meaning.
pub const RESULT_SCHEMA: u32 = 1;

/// The cached answer for one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedResult {
    pub schema: u32,
    /// Recogniser id the answer was made with.
    pub model: String,
    /// Gallery version the answer was matched against. An older version than the gallery's
    /// current one makes the entry a miss.
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

impl CachedResult {
    /// Whether this entry may answer for `model` at gallery `version`.
    pub fn is_fresh(&self, model: &str, version: u64) -> bool {
        self.schema == RESULT_SCHEMA && self.model == model && self.gallery_version >= version
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
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
    fn older_gallery_or_other_model_is_stale() {
        assert!(result("sface", 3).is_fresh("sface", 3));
        assert!(!result("sface", 2).is_fresh("sface", 3));
        assert!(!result("mobilefacenet", 3).is_fresh("sface", 3));
    }

    #[test]
    fn json_round_trips_and_omits_empty_fields() {
        let mut r = result("sface", 1);
        r.faces.push(FaceResult { bbox: None, person_id: None, name: None, score: 0.1, rejected: None });
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("bbox") && !json.contains("rejected"), "{json}");
        assert_eq!(serde_json::from_str::<CachedResult>(&json).unwrap(), r);
    }
}
