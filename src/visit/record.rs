//! The track record in Redis and the calls that change it: [`send_shot`] (ingest hands off a
//! shot), [`fold`] / [`fold_failed`] (a worker finished one), [`end_track`] (ingest lost the
//! track), [`mark_published`] (an announcement is in the events stream).
//!
//! Each call is one Lua script, so it is atomic, and each script touches only keys tagged
//! `{<group>}` (the faces stream and the track record), so it runs on one node of a Cluster.
//! The record's layout is documented at the top of `track.lua`.

use std::sync::LazyLock;

use redis::{Script, Value};
use serde::{Deserialize, Serialize};

use crate::bus::{BusError, Keys, RedisConn};
use crate::vision::BBox;
use crate::wire::PersonRef;

/// What happened to the track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VisitKind {
    /// The track's identity was decided for the first time.
    Arrived,
    /// The decided identity changed (unknown to a person, or one person to another).
    Updated,
    /// The track ended and every shot of it was folded.
    Left,
}

impl VisitKind {
    /// Every kind, in declaration order (the index of each is `kind as usize`).
    pub const ALL: [VisitKind; 3] = [VisitKind::Arrived, VisitKind::Updated, VisitKind::Left];

    pub fn as_str(self) -> &'static str {
        match self {
            VisitKind::Arrived => "arrived",
            VisitKind::Updated => "updated",
            VisitKind::Left => "left",
        }
    }
}

/// The faces stream field naming the shot's track.
pub const TRACK_FIELD: &str = "track";
/// The faces stream field holding the track's first sighting, Unix ms.
pub const FIRST_SEEN_FIELD: &str = "first_seen";

static TRACK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("track.lua")));

/// XADD the shot and count it in the record, in one step: a shot cannot be in the stream without
/// being counted (its track would announce `left` before it is folded), nor counted without
/// being in the stream (the track would never be complete). A stream holding `maxlen`
/// unfinished entries refuses the shot (nil) and the record is left alone: trimming would lose
/// shots no worker has finished (see `bus::streams`).
static SEND_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
        local args = {'XADD', KEYS[1], '*'}
        for i = 6, #ARGV do args[#args + 1] = ARGV[i] end
        local id = redis.call(unpack(args))
        redis.call('HINCRBY', KEYS[2], 'sent', 1)
        redis.call('HSETNX', KEYS[2], 'camera', ARGV[3])
        redis.call('HSETNX', KEYS[2], 'group', ARGV[4])
        redis.call('HSETNX', KEYS[2], 'first_seen', ARGV[5])
        redis.call('EXPIRE', KEYS[2], ARGV[2])
        return id
        ",
    )
});

/// One track's record: its key and what the announcements need to name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackKey {
    /// The camera group (the hash tag).
    pub group: String,
    /// The track id, `<camera>:<first_seen ms>:<n>`.
    pub track: String,
    /// `<prefix>:{<group>}:track:<track>`.
    pub key: String,
}

impl TrackKey {
    pub fn new(keys: &Keys, group: &str, track: &str) -> TrackKey {
        TrackKey { group: group.to_owned(), track: track.to_owned(), key: keys.track(group, track) }
    }
}

/// A shot handed off by ingest.
#[derive(Debug, Clone, Copy)]
pub struct NewShot<'a> {
    pub group: &'a str,
    pub camera: &'a str,
    /// The track id, `<camera>:<first_seen ms>:<n>`.
    pub track: &'a str,
    /// First sighting of the track, Unix ms.
    pub first_seen: u64,
    /// The faces stream fields (`FaceEntry::to_fields`); `track` and `first_seen` are added.
    pub fields: &'a [(&'a str, &'a [u8])],
}

/// What a worker found in one shot.
#[derive(Debug, Clone, Copy)]
pub struct ShotVote<'a> {
    /// The faces stream entry id: the shot's identity for idempotency.
    pub shot_id: &'a str,
    /// The matched person, `None` for unknown.
    pub person: Option<&'a PersonRef>,
    /// Cosine similarity of the best match (also when unknown).
    pub score: f32,
    /// min(w, h) of the face in the frame, px.
    pub face_px: f32,
    pub md5: &'a str,
    pub bbox: BBox,
    /// Capture time of the shot's frame, Unix ms.
    pub capture_ts: u64,
    /// Recogniser id.
    pub model: &'a str,
}

/// How much each shot counts, and how hard a decided identity is to change.
///
/// A shot's weight is `size_factor * w`, where `size_factor = clamp(face_px / full_weight_px,
/// min_size_factor, 1)` and `w` is the match score for a match, `unknown_weight` for an
/// unknown. Totals are kept per candidate (each person, and `unknown`) in integer thousandths.
/// The leader is the candidate with the highest total; an exact tie at the top abstains. The
/// first leader is announced (`arrived`); later, the identity changes (`updated`) from
/// unknown to a person who leads, or from person A to person B when B's total exceeds A's by
/// more than `switch_margin`. A decided person never falls back to unknown.
///
/// As in Frigate's face recognition, big faces count more than small ones; unlike Frigate,
/// unknowns vote too, so a track of only doubtful shots is announced as unknown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VotePolicy {
    /// Face size (px) from which a shot counts fully. Default 112, the SFace input size.
    pub full_weight_px: f32,
    /// The smallest size factor, for the tiniest faces the quality gate lets through. Default 0.25.
    pub min_size_factor: f32,
    /// What an unknown shot weighs at full size. Default 0.7: a strong match (score > 0.7)
    /// outweighs one unknown of the same size, and so do two ordinary ones (above SFace's
    /// 0.363 threshold).
    pub unknown_weight: f32,
    /// How much more total weight person B needs than the decided person A to replace A.
    /// Default 0.5 (about one more clear, full-size match).
    pub switch_margin: f32,
}

impl Default for VotePolicy {
    fn default() -> Self {
        VotePolicy { full_weight_px: 112.0, min_size_factor: 0.25, unknown_weight: 0.7, switch_margin: 0.5 }
    }
}

/// How a call to the record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldStatus {
    /// The call changed the record.
    Done,
    /// Already done for this shot (or, for [`end_track`], this track): nothing changed, and the
    /// announcements are those the first call made.
    Duplicate,
    /// No record: it expired, or no shot of the track was ever sent. Nothing was written.
    NoRecord,
}

/// What a call to the record decided to announce.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded {
    pub status: FoldStatus,
    /// The track's anonymous visitor, once a worker resolved it ([`set_visitor`]).
    pub visitor: Option<String>,
    /// In order; publish those not yet `published`, then [`mark_published`] each.
    pub announcements: Vec<Announcement>,
}

/// A visit event the record decided on, as stored in the record (`ann:<name>`) when it was
/// made, so a redelivered shot gets exactly the announcement the first fold made.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    pub kind: VisitKind,
    /// `arrived`, `updated:<n>` (n = 1, 2, ...) or `left`: the event id's suffix and the
    /// name [`mark_published`] takes.
    pub name: String,
    pub track: String,
    pub camera: String,
    pub group: String,
    /// First sighting of the track, Unix ms.
    pub first_seen: u64,
    /// When the announcement was made, Unix ms.
    pub event_ts: u64,
    /// Whether the track had a decided identity (an unknown counts as decided).
    pub decided: bool,
    /// The decided person; `None` for unknown or undecided.
    pub person: Option<PersonRef>,
    /// The deciding shot's match score, md5, bbox, and the recogniser (when decided).
    pub score: Option<f32>,
    pub md5: Option<String>,
    pub bbox: Option<BBox>,
    pub model: Option<String>,
    /// The track's anonymous visitor: for an unknown, or for a person with `[visitors]
    /// for_known`.
    pub visitor: Option<String>,
    /// For `left`: last sighting (ms), frames the face was seen in, and shots folded.
    pub last_seen: Option<u64>,
    pub faces_seen: Option<u64>,
    pub shots: Option<u64>,
    /// Already marked published in the record.
    pub published: bool,
}

/// Appends a shot to `group`'s faces stream with `track` and `first_seen` fields, and counts it
/// in the track record (created if needed, TTL refreshed), atomically. Returns the stream entry
/// id, or `None` when the stream already holds `maxlen` unfinished entries (nothing changed).
pub async fn send_shot(
    conn: &mut RedisConn,
    keys: &Keys,
    shot: &NewShot<'_>,
    maxlen: u64,
    ttl_secs: u64,
) -> Result<Option<String>, BusError> {
    let faces = keys.faces(shot.group);
    let record = keys.track(shot.group, shot.track);
    let mut inv = SEND_SCRIPT.key(&faces);
    inv.key(&record).arg(maxlen).arg(ttl_secs.max(1)).arg(shot.camera).arg(shot.group).arg(shot.first_seen);
    for (name, value) in shot.fields {
        if *name != TRACK_FIELD && *name != FIRST_SEEN_FIELD {
            inv.arg(*name).arg(*value);
        }
    }
    inv.arg(TRACK_FIELD).arg(shot.track).arg(FIRST_SEEN_FIELD).arg(shot.first_seen);
    let op = || format!("send shot {faces} ({record})");
    let id: Value = inv.invoke_async(conn).await.map_err(|e| conn.error(op(), e))?;
    match id {
        Value::Nil => Ok(None),
        Value::BulkString(b) => {
            String::from_utf8(b).map(Some).map_err(|_| BusError::reply(conn.target(), op(), "id not UTF-8"))
        }
        Value::SimpleString(s) => Ok(Some(s)),
        other => Err(BusError::reply(conn.target(), op(), format!("expected an id, got {other:?}"))),
    }
}

/// Folds a recognised shot into its track: its vote, and the decision (see [`VotePolicy`]).
/// Idempotent per `shot.shot_id`: folding it again changes nothing and returns what it
/// announced the first time, with the published flags as they are now.
pub async fn fold(
    conn: &mut RedisConn,
    track: &TrackKey,
    shot: &ShotVote<'_>,
    policy: &VotePolicy,
    now_ms: u64,
    ttl_secs: u64,
) -> Result<Folded, BusError> {
    let (pid, pname) = shot.person.map_or(("", ""), |p| (p.id.as_str(), p.name.as_str()));
    let bbox = serde_json::to_string(&shot.bbox).expect("a BBox serialises");
    let finite = |x: f32, or: f32| if x.is_finite() { x } else { or };
    let mut inv = invocation(track, "fold", now_ms, ttl_secs);
    inv.arg(shot.shot_id)
        .arg(pid)
        .arg(pname)
        .arg(finite(shot.score, 0.0))
        .arg(finite(shot.face_px, 0.0))
        .arg(shot.md5)
        .arg(bbox)
        .arg(shot.capture_ts)
        .arg(shot.model)
        .arg(finite(policy.full_weight_px, 112.0).max(1.0))
        .arg(finite(policy.min_size_factor, 0.0).clamp(0.0, 1.0))
        .arg(finite(policy.unknown_weight, 0.0).max(0.0))
        .arg(finite(policy.switch_margin, 0.0).max(0.0));
    run(conn, track, &inv, || format!("fold shot {} into {}", shot.shot_id, track.key)).await
}

/// Counts a shot that will never be recognised (dead-lettered) as folded, without a vote, so
/// its track can still end. Idempotent per `shot_id`. A track whose shots all failed gets no
/// `arrived`, and its `left` has no person and `decided: false`.
pub async fn fold_failed(
    conn: &mut RedisConn,
    track: &TrackKey,
    shot_id: &str,
    now_ms: u64,
    ttl_secs: u64,
) -> Result<Folded, BusError> {
    let mut inv = invocation(track, "failed", now_ms, ttl_secs);
    inv.arg(shot_id);
    run(conn, track, &inv, || format!("fold failed shot {shot_id} into {}", track.key)).await
}

/// Marks the track ended (ingest has not seen it for `max_age`). Returns `left` when every
/// shot sent has been folded; otherwise the fold of the last outstanding shot returns it.
/// Idempotent: calling it again changes nothing and returns `left` if it was announced.
pub async fn end_track(
    conn: &mut RedisConn,
    track: &TrackKey,
    last_seen: u64,
    faces_seen: u64,
    now_ms: u64,
    ttl_secs: u64,
) -> Result<Folded, BusError> {
    let mut inv = invocation(track, "end", now_ms, ttl_secs);
    inv.arg(last_seen).arg(faces_seen);
    run(conn, track, &inv, || format!("end track {}", track.key)).await
}

/// Gives the track its anonymous visitor (the first one set wins: a second call returns the
/// first visitor in [`Folded::visitor`]) and puts it in the announcements `names` that are not
/// published yet, unless they name a person and `for_known` is false.
pub async fn set_visitor(
    conn: &mut RedisConn,
    track: &TrackKey,
    visitor: &str,
    for_known: bool,
    names: &[&str],
    ttl_secs: u64,
) -> Result<Folded, BusError> {
    let mut inv = invocation(track, "visitor", 0, ttl_secs);
    inv.arg(visitor).arg(if for_known { "1" } else { "0" });
    for name in names {
        inv.arg(*name);
    }
    run(conn, track, &inv, || format!("set visitor {visitor} of {}", track.key)).await
}

/// Records that announcement `name` (`arrived`, `updated:<n>`, `left`) is in the events
/// stream, so a redelivered shot does not publish it again. False when the record or the
/// announcement is gone (expired).
pub async fn mark_published(
    conn: &mut RedisConn,
    track: &TrackKey,
    name: &str,
    ttl_secs: u64,
) -> Result<bool, BusError> {
    let mut inv = invocation(track, "published", 0, ttl_secs);
    inv.arg(name);
    let folded = run(conn, track, &inv, || format!("mark {name} published in {}", track.key)).await?;
    Ok(folded.status == FoldStatus::Done)
}

fn invocation<'a>(track: &TrackKey, op: &str, now_ms: u64, ttl_secs: u64) -> redis::ScriptInvocation<'a> {
    let mut inv = TRACK_SCRIPT.key(&track.key);
    inv.arg(op).arg(now_ms).arg(ttl_secs.max(1)).arg(&track.track).arg(&track.group);
    inv
}

async fn run(
    conn: &mut RedisConn,
    track: &TrackKey,
    inv: &redis::ScriptInvocation<'_>,
    op: impl Fn() -> String,
) -> Result<Folded, BusError> {
    let value: Value = inv.invoke_async(conn).await.map_err(|e| conn.error(op(), e))?;
    decode(value).map_err(|detail| match detail {
        Decode::Shape(d) => BusError::reply(conn.target(), op(), d),
        Decode::Json(source) => {
            BusError::Json { target: conn.target().to_owned(), key: track.key.clone(), source }
        }
    })
}

enum Decode {
    Shape(String),
    Json(serde_json::Error),
}

/// The script's reply: `[status, visitor, json, published, json, published, ...]` (only the
/// status when the record is missing).
fn decode(value: Value) -> Result<Folded, Decode> {
    let Value::Array(items) = value else {
        return Err(Decode::Shape(format!("expected an array, got {value:?}")));
    };
    let mut items = items.into_iter();
    let status = match items.next().map(text) {
        Some(Ok(s)) if s == "ok" => FoldStatus::Done,
        Some(Ok(s)) if s == "duplicate" => FoldStatus::Duplicate,
        Some(Ok(s)) if s == "missing" => FoldStatus::NoRecord,
        other => return Err(Decode::Shape(format!("unexpected status {other:?}"))),
    };
    let visitor = items.next().map(text).transpose().map_err(Decode::Shape)?.filter(|v| !v.is_empty());
    let mut announcements = Vec::new();
    while let Some(json) = items.next() {
        let json = text(json).map_err(Decode::Shape)?;
        let published = matches!(items.next(), Some(Value::Int(1)));
        let raw: Raw = serde_json::from_str(&json).map_err(Decode::Json)?;
        announcements.push(raw.into_announcement(published).map_err(Decode::Shape)?);
    }
    Ok(Folded { status, visitor, announcements })
}

fn text(value: Value) -> Result<String, String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b).map_err(|_| "expected UTF-8 text".to_owned()),
        Value::SimpleString(s) => Ok(s),
        other => Err(format!("expected a string, got {other:?}")),
    }
}

/// An announcement as the script encodes it: every value a string (Lua numbers would lose
/// precision in `cjson`), optional ones absent.
#[derive(Deserialize)]
struct Raw {
    kind: String,
    name: String,
    track: String,
    camera: String,
    group: String,
    first_seen: String,
    event_ts: String,
    decided: String,
    person: Option<String>,
    person_name: Option<String>,
    score: Option<String>,
    md5: Option<String>,
    bbox: Option<String>,
    model: Option<String>,
    visitor: Option<String>,
    last_seen: Option<String>,
    faces_seen: Option<String>,
    shots: Option<String>,
}

impl Raw {
    fn into_announcement(self, published: bool) -> Result<Announcement, String> {
        fn num<T: std::str::FromStr>(field: &str, s: &str) -> Result<T, String> {
            s.parse().map_err(|_| format!("announcement field `{field}` is not a number: {s:?}"))
        }
        let opt_num =
            |field: &str, s: &Option<String>| s.as_deref().map(|s| num::<u64>(field, s)).transpose();
        let kind = match self.kind.as_str() {
            "arrived" => VisitKind::Arrived,
            "updated" => VisitKind::Updated,
            "left" => VisitKind::Left,
            other => return Err(format!("unknown announcement kind {other:?}")),
        };
        let person = match (self.person, self.person_name) {
            (Some(id), Some(name)) if !id.is_empty() => Some(PersonRef { id, name }),
            _ => None,
        };
        let bbox = match self.bbox.as_deref() {
            Some(s) if !s.is_empty() => {
                Some(serde_json::from_str(s).map_err(|e| format!("announcement bbox: {e}"))?)
            }
            _ => None,
        };
        Ok(Announcement {
            kind,
            name: self.name,
            track: self.track,
            camera: self.camera,
            group: self.group,
            first_seen: num("first_seen", &self.first_seen)?,
            event_ts: num("event_ts", &self.event_ts)?,
            decided: self.decided == "1",
            person,
            score: self.score.as_deref().map(|s| num::<f32>("score", s)).transpose()?,
            md5: self.md5.filter(|s| !s.is_empty()),
            bbox,
            model: self.model.filter(|s| !s.is_empty()),
            visitor: self.visitor.filter(|s| !s.is_empty()),
            last_seen: opt_num("last_seen", &self.last_seen)?,
            faces_seen: opt_num("faces_seen", &self.faces_seen)?,
            shots: opt_num("shots", &self.shots)?,
            published,
        })
    }
}
