//! Visits: each face track's identity, decided once in Redis, and its `arrived` / `updated` /
//! `left` events (schema 2).
//!
//! Ingest tracks faces per camera and sends a few shots per track ([`send_shot`]); any worker
//! may recognise any shot and folds its result into the track record ([`fold`]), a small hash
//! `<prefix>:{<group>}:track:<track>` with a TTL refreshed on every write. The record holds the
//! weighted vote ([`VotePolicy`]) and decides; since every change is one Lua script, two workers
//! finishing shots of one track at once are serialised and only one of them gets `arrived`.
//!
//! Exactly-once decisions, at-least-once events:
//! - A fold is idempotent per shot (the faces stream entry id): a redelivered shot votes once,
//!   and its fold returns the announcements the first fold made, each with `published`.
//! - The worker publishes an announcement ([`publish`]: XADD to the events stream, PUBLISH,
//!   then [`mark_published`]) before it acks the shot. If it dies after publishing and before
//!   marking, the redelivered shot publishes again under the same event id: subscribers drop
//!   the duplicate. That window is one round trip.
//! - `left` comes from whichever call completes the track: [`end_track`] when every shot is
//!   already folded, else the fold (or [`fold_failed`]) of the last outstanding shot.
//!
//! Not covered: a `left` returned to an ingest that dies before publishing it is only published
//! if `end_track` is called again (it is idempotent); a shot trimmed from the faces stream
//! before a worker read it names no track, so its track never completes and never gets `left`
//! (its record expires with the TTL).

pub mod event;
mod record;

pub use event::{AnyEvent, VISIT_SCHEMA, VisitEvent, VisitKind};
pub use record::{
    Announcement, FIRST_SEEN_FIELD, FoldStatus, Folded, NewShot, ShotVote, TRACK_FIELD, TrackKey, VotePolicy,
    end_track, fold, fold_failed, mark_published, send_shot, set_visitor,
};

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::bus::streams::StreamCap;
use crate::bus::{BusError, Keys, RedisConn, StreamEntry, events};
use crate::instrument::{StageHooks, unix_millis};
use crate::privacy::index;

/// Visit events published, by kind; the metrics module reads them.
#[derive(Debug, Default)]
pub struct VisitCounts([AtomicU64; VisitKind::ALL.len()]);

impl VisitCounts {
    /// Counts each published announcement, and records an `arrived`'s time-to-name (first
    /// sighting to now) in `hooks`.
    pub fn count_all(&self, published: &[&Announcement], hooks: &StageHooks) {
        for a in published {
            self.0[a.kind as usize].fetch_add(1, Relaxed);
            if a.kind == VisitKind::Arrived {
                hooks.observe_visit_time_to_name(a.first_seen);
            }
        }
    }

    pub fn get(&self, kind: VisitKind) -> u64 {
        self.0[kind as usize].load(Relaxed)
    }
}

/// What publishing a visit event needs from `cameras.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publishing {
    /// Cap of the events stream (`[redis] events_stream_maxlen`, `[retention] events_secs`).
    pub events: StreamCap,
    /// TTL of track records (`[tracking] record_ttl_secs`).
    pub record_ttl_secs: u64,
    /// TTL of visitor records (`[visitors] ttl_secs`), refreshed by a `left`.
    pub visitor_ttl_secs: u64,
}

impl Publishing {
    pub fn from_config(config: &crate::config::Config) -> Publishing {
        Publishing {
            events: StreamCap {
                maxlen: config.redis.events_stream_maxlen,
                max_age_secs: config.retention.events_secs,
            },
            record_ttl_secs: config.tracking.record_ttl_secs,
            visitor_ttl_secs: config.visitors.ttl_secs,
        }
    }
}

/// Publishes `announcement` as a [`VisitEvent`] (events stream, then channel, on `shared`)
/// and marks it published in its track record (on `group_conn`). A `left` of a track with a
/// visitor also marks that visit of the visitor finished, so their next one counts as a
/// return. Returns the events stream id.
pub async fn publish(
    shared: &mut RedisConn,
    group_conn: &mut RedisConn,
    keys: &Keys,
    announcement: &Announcement,
    settings: &Publishing,
) -> Result<String, BusError> {
    let event = VisitEvent::from_announcement(announcement);
    let payload = serde_json::to_vec(&event).expect("a VisitEvent serialises");
    let id = events::publish(shared, keys.events_channel(), keys.events_stream(), settings.events, &payload)
        .await?;
    // Noted after the append: the id is only known now (see `crate::privacy`).
    if let Some(person) = &announcement.person {
        index::note_event(shared, keys, &person.id, &id, settings.events.max_age_secs).await?;
    }
    if let (VisitKind::Left, Some(visitor)) = (announcement.kind, &announcement.visitor) {
        let last_seen = announcement.last_seen.unwrap_or(announcement.event_ts);
        let ttl = settings.visitor_ttl_secs;
        crate::visitor::store::mark_left(
            shared,
            keys,
            visitor,
            &announcement.track,
            last_seen,
            unix_millis(),
            ttl,
        )
        .await?;
    }
    let track = TrackKey::new(keys, &announcement.group, &announcement.track);
    mark_published(group_conn, &track, &announcement.name, settings.record_ttl_secs).await?;
    Ok(id)
}

/// [`publish`]es every announcement of `folded` not yet published, in order. Returns those.
pub async fn publish_unpublished<'a>(
    shared: &mut RedisConn,
    group_conn: &mut RedisConn,
    keys: &Keys,
    folded: &'a Folded,
    settings: &Publishing,
) -> Result<Vec<&'a Announcement>, BusError> {
    let mut published = Vec::new();
    for a in folded.announcements.iter().filter(|a| !a.published) {
        publish(shared, group_conn, keys, a, settings).await?;
        published.push(a);
    }
    Ok(published)
}

/// Refreshes the TTL of a live track's record (ingest does this for long visits).
pub async fn touch(conn: &mut RedisConn, track: &TrackKey, ttl_secs: u64) -> Result<(), BusError> {
    let _: i64 = redis::cmd("EXPIRE")
        .arg(&track.key)
        .arg(ttl_secs.max(1))
        .query_async(conn)
        .await
        .map_err(|e| conn.error(format!("EXPIRE {}", track.key), e))?;
    Ok(())
}

/// The track id and first sighting of a faces stream entry sent by [`send_shot`]; `None` for an
/// entry without them (a crop sent without tracking, or trimmed away).
pub fn shot_track(entry: &StreamEntry) -> Option<(&str, u64)> {
    let track = entry.get_str(TRACK_FIELD).filter(|t| !t.is_empty())?;
    let first_seen = entry.get_str(FIRST_SEEN_FIELD)?.parse().ok()?;
    Some((track, first_seen))
}
