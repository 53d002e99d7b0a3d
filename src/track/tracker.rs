//! The per-camera tracker: track lifecycle, association per frame, and expiry.

use super::assign::{match_iou, match_nearby};
use super::kalman::BoxFilter;
use super::quality::quality;
use super::shots::{ShotPolicy, Shots};
use super::{Action, DropReason, EndedTrack, FaceDecision, FrameOutcome, Observation};
use crate::config::TrackingConfig;
use crate::vision::BBox;

/// A face seen once can have moved at most this many face sizes per second to be paired by
/// distance in the second stage (a brisk walk across the frame at 5 m is about 8).
const NEARBY_SPEED: f32 = 8.0;
/// ... and never more than this many face sizes, however long the gap.
const NEARBY_MAX_JUMP: f32 = 4.0;

/// The face tracker of one camera. Not shared: one per camera, driven by its frames.
#[derive(Debug)]
pub struct Tracker {
    camera: String,
    min_hits: u64,
    max_age_ms: u64,
    iou: f32,
    policy: ShotPolicy,
    tracks: Vec<Track>,
    /// Newest frame time seen; frames older than it are late.
    newest_ms: Option<u64>,
    /// Tracks created so far, the `n` of the ids.
    created: u64,
}

#[derive(Debug)]
struct Track {
    id: String,
    first_seen_ms: u64,
    last_seen_ms: u64,
    /// The time the filter has been predicted to.
    state_ms: u64,
    filter: BoxFilter,
    /// The last observed box, for late frames.
    last_box: BBox,
    hits: u64,
    confirmed: bool,
    shots: Shots,
}

impl Track {
    fn ended(&self) -> EndedTrack {
        EndedTrack {
            id: self.id.clone(),
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
            faces_seen: self.hits,
            shots_sent: self.shots.sent,
            confirmed: self.confirmed,
        }
    }
}

impl Tracker {
    pub fn new(camera: &str, config: &TrackingConfig) -> Tracker {
        Tracker {
            camera: camera.to_owned(),
            min_hits: u64::from(config.min_hits.max(1)),
            max_age_ms: config.max_age_ms,
            iou: config.iou,
            policy: ShotPolicy {
                max_shots: config.max_shots,
                min_interval_ms: config.min_interval_ms,
                quality_margin: config.quality_margin,
                refresh_ms: config.refresh_ms,
            },
            tracks: Vec::new(),
            newest_ms: None,
            created: 0,
        }
    }

    /// One sampled frame's accepted faces (possibly none), at capture time `ts_ms` (Unix ms).
    pub fn update(&mut self, ts_ms: u64, faces: &[Observation]) -> FrameOutcome {
        let mut out = FrameOutcome::default();
        if let Some(newest) = self.newest_ms {
            if ts_ms.saturating_add(self.max_age_ms) < newest {
                // The clock stepped back: start over rather than call every frame late.
                out.ended = self.end_all();
            } else if ts_ms < newest {
                return self.update_late(ts_ms, faces);
            }
        }
        self.newest_ms = Some(ts_ms);
        out.ended.extend(self.expire(ts_ms));

        for t in &mut self.tracks {
            t.filter.predict(ts_ms.saturating_sub(t.state_ms) as f64 / 1000.0);
            t.state_ms = ts_ms;
        }
        let predicted: Vec<BBox> = self.tracks.iter().map(|t| t.filter.bbox()).collect();
        let boxes: Vec<BBox> = faces.iter().map(|f| f.bbox).collect();
        let mut pairs = match_iou(&predicted, &boxes, self.iou);
        self.match_last_observed(&boxes, &mut pairs);
        self.match_once_seen(ts_ms, &boxes, &mut pairs);

        let mut decisions: Vec<Option<FaceDecision>> = vec![None; faces.len()];
        for (t, d) in pairs {
            let track = &mut self.tracks[t];
            track.filter.update(&faces[d].bbox);
            decisions[d] = Some(self.sighting(t, ts_ms, &faces[d], &mut out.started));
        }
        for (d, face) in faces.iter().enumerate() {
            if decisions[d].is_none() {
                let t = self.start_track(ts_ms, face);
                decisions[d] = Some(self.sighting(t, ts_ms, face, &mut out.started));
            }
        }
        out.faces = decisions.into_iter().flatten().collect();
        out
    }

    /// Ends tracks unseen for max_age at `now_ms` (called by a timer when a camera sends no frames).
    pub fn expire(&mut self, now_ms: u64) -> Vec<EndedTrack> {
        let max_age = self.max_age_ms;
        let (gone, live): (Vec<Track>, Vec<Track>) = std::mem::take(&mut self.tracks)
            .into_iter()
            .partition(|t| now_ms.saturating_sub(t.last_seen_ms) > max_age);
        self.tracks = live;
        gone.iter().map(Track::ended).collect()
    }

    /// Ends every live track (shutdown).
    pub fn end_all(&mut self) -> Vec<EndedTrack> {
        self.newest_ms = None;
        self.tracks.drain(..).map(|t| t.ended()).collect()
    }

    /// Live tracks, tentative or confirmed.
    pub fn live(&self) -> usize {
        self.tracks.len()
    }

    /// Ids of the live tracks that have sent a shot, so have a record in Redis.
    pub fn with_record(&self) -> impl Iterator<Item = &str> {
        self.tracks.iter().filter(|t| t.shots.sent > 0).map(|t| t.id.as_str())
    }

    /// The tracks and detections `pairs` leaves unmatched, tracks those `want` accepts.
    fn leftovers(
        &self,
        boxes: &[BBox],
        pairs: &[(usize, usize)],
        want: impl Fn(&Track) -> bool,
    ) -> (Vec<usize>, Vec<usize>) {
        let (mut used_t, mut used_d) = (vec![false; self.tracks.len()], vec![false; boxes.len()]);
        for &(t, d) in pairs {
            used_t[t] = true;
            used_d[d] = true;
        }
        let tracks = (0..self.tracks.len()).filter(|&t| !used_t[t] && want(&self.tracks[t])).collect();
        (tracks, (0..boxes.len()).filter(|&d| !used_d[d]).collect())
    }

    /// At 2 sampled frames a second, a head that turns back (a nod, a glance) leaves the
    /// constant-velocity prediction half a second of motion off, and the face no longer overlaps
    /// it: pair the leftovers by IoU with each track's last *observed* box instead, rather than
    /// split the visit (observation-centric recovery, as in OC-SORT, Cao et al. 2023).
    fn match_last_observed(&self, boxes: &[BBox], pairs: &mut Vec<(usize, usize)>) {
        let (tracks, dets) = self.leftovers(boxes, pairs, |_| true);
        if tracks.is_empty() || dets.is_empty() {
            return;
        }
        let last: Vec<BBox> = tracks.iter().map(|&t| self.tracks[t].last_box).collect();
        let det_boxes: Vec<BBox> = dets.iter().map(|&d| boxes[d]).collect();
        pairs.extend(match_iou(&last, &det_boxes, self.iou).into_iter().map(|(t, d)| (tracks[t], dets[d])));
    }

    /// Tracks seen only once have no velocity yet, so a fast face may not overlap its prediction:
    /// pair the leftovers by distance (see [`match_nearby`]).
    fn match_once_seen(&self, ts_ms: u64, boxes: &[BBox], pairs: &mut Vec<(usize, usize)>) {
        let (tracks, dets) = self.leftovers(boxes, pairs, |t| t.hits == 1);
        if tracks.is_empty() || dets.is_empty() {
            return;
        }
        let max_jumps: Vec<f32> = tracks
            .iter()
            .map(|&t| {
                let gap_s = ts_ms.saturating_sub(self.tracks[t].last_seen_ms) as f32 / 1000.0;
                (NEARBY_SPEED * gap_s).min(NEARBY_MAX_JUMP)
            })
            .collect();
        let track_boxes: Vec<BBox> = tracks.iter().map(|&t| self.tracks[t].last_box).collect();
        let det_boxes: Vec<BBox> = dets.iter().map(|&d| boxes[d]).collect();
        pairs.extend(
            match_nearby(&track_boxes, &max_jumps, &det_boxes).into_iter().map(|(t, d)| (tracks[t], dets[d])),
        );
    }

    fn start_track(&mut self, ts_ms: u64, face: &Observation) -> usize {
        let id = format!("{}:{ts_ms}:{}", self.camera, self.created);
        self.created += 1;
        self.tracks.push(Track {
            id,
            first_seen_ms: ts_ms,
            last_seen_ms: ts_ms,
            state_ms: ts_ms,
            filter: BoxFilter::new(&face.bbox),
            last_box: face.bbox,
            // `sighting` counts this first one.
            hits: 0,
            confirmed: false,
            shots: Shots::default(),
        });
        self.tracks.len() - 1
    }

    /// Records that track `t` was seen at `ts_ms` (the filter is already updated) and decides
    /// about the face.
    fn sighting(
        &mut self,
        t: usize,
        ts_ms: u64,
        face: &Observation,
        started: &mut Vec<String>,
    ) -> FaceDecision {
        let track = &mut self.tracks[t];
        track.hits += 1;
        // A late frame's face does not replace the newer box late frames are matched against.
        if ts_ms >= track.last_seen_ms {
            track.last_seen_ms = ts_ms;
            track.last_box = face.bbox;
        }
        if !track.confirmed && track.hits >= self.min_hits {
            track.confirmed = true;
            started.push(track.id.clone());
        }
        let q = quality(face);
        let action = if track.confirmed {
            track.shots.decide(&self.policy, ts_ms, q)
        } else {
            Action::Drop(DropReason::Tentative)
        };
        FaceDecision { track: Some(track.id.clone()), first_seen_ms: track.first_seen_ms, quality: q, action }
    }

    /// A frame older than the newest: matched against last observed boxes, filters untouched, no
    /// track created or expired (see the module doc).
    fn update_late(&mut self, ts_ms: u64, faces: &[Observation]) -> FrameOutcome {
        let mut out = FrameOutcome::default();
        let last: Vec<BBox> = self.tracks.iter().map(|t| t.last_box).collect();
        let boxes: Vec<BBox> = faces.iter().map(|f| f.bbox).collect();
        let mut decisions: Vec<Option<FaceDecision>> = vec![None; faces.len()];
        for (t, d) in match_iou(&last, &boxes, self.iou) {
            decisions[d] = Some(self.sighting(t, ts_ms, &faces[d], &mut out.started));
        }
        out.faces = decisions
            .into_iter()
            .zip(faces)
            .map(|(decision, face)| {
                decision.unwrap_or_else(|| FaceDecision {
                    track: None,
                    first_seen_ms: ts_ms,
                    quality: quality(face),
                    action: Action::Drop(DropReason::OutOfOrder),
                })
            })
            .collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::ARCFACE_TEMPLATE;

    /// A frontal face of side `side` with its top-left corner at (x, y).
    fn face(x: f32, y: f32, side: f32) -> Observation {
        let k = side / 112.0;
        let landmarks = ARCFACE_TEMPLATE.map(|[lx, ly]| [x + lx * k, y + ly * k]);
        Observation { bbox: BBox { x, y, w: side, h: side }, score: 0.9, landmarks, sharpness: 300.0 }
    }

    fn config() -> TrackingConfig {
        TrackingConfig::default()
    }

    fn id(out: &FrameOutcome, i: usize) -> String {
        out.faces[i].track.clone().expect("tracked")
    }

    /// Deterministic jitter in [-3, 3] pixels.
    fn jitter(i: u64) -> f32 {
        ((i.wrapping_mul(2_654_435_761) % 7) as f32) - 3.0
    }

    #[test]
    fn the_tracker_is_send() {
        fn send<T: Send>() {}
        send::<Tracker>();
    }

    #[test]
    fn one_face_moving_steadily_keeps_one_id() {
        let mut t = Tracker::new("door", &config());
        let first = t.update(1_000, &[face(100.0, 200.0, 90.0)]);
        let track = id(&first, 0);
        assert_eq!(track, "door:1000:0");
        assert_eq!(first.faces[0].action, Action::Drop(DropReason::Tentative));
        for i in 1..40u64 {
            let out = t.update(1_000 + 500 * i, &[face(100.0 + 20.0 * i as f32, 200.0 + jitter(i), 90.0)]);
            assert_eq!(id(&out, 0), track, "frame {i}");
            assert_eq!(out.faces[0].first_seen_ms, 1_000);
            assert!(out.ended.is_empty());
            assert_eq!(out.started.is_empty(), i != 1, "confirmed at the second frame only");
        }
        assert_eq!(t.live(), 1);
    }

    #[test]
    fn a_face_that_turns_back_keeps_its_id() {
        let mut t = Tracker::new("door", &config());
        // Moving right 60 px a frame (120 px/s at 2 fps), then back by 30 px: the prediction is
        // at x = 240, which the 100 px face at 150 barely overlaps; its last box at 180 does.
        let xs = [0.0, 60.0, 120.0, 180.0, 150.0, 120.0];
        let track = id(&t.update(0, &[face(xs[0], 100.0, 100.0)]), 0);
        for (i, &x) in xs.iter().enumerate().skip(1) {
            let out = t.update(500 * i as u64, &[face(x, 100.0, 100.0)]);
            assert_eq!(id(&out, 0), track, "frame {i} at x = {x}");
        }
        assert_eq!(t.live(), 1);
    }

    #[test]
    fn two_faces_side_by_side_keep_two_ids_for_50_frames() {
        let mut t = Tracker::new("door", &config());
        let out = t.update(0, &[face(100.0, 100.0, 100.0), face(230.0, 100.0, 100.0)]);
        let (a, b) = (id(&out, 0), id(&out, 1));
        assert_ne!(a, b);
        for i in 1..50u64 {
            let fa = face(100.0 + jitter(i), 100.0 + jitter(i + 1), 100.0);
            let fb = face(230.0 + jitter(i + 2), 100.0 + jitter(i + 3), 100.0 + jitter(i + 4));
            // The detector's order is arbitrary; the ids must not depend on it.
            let (faces, swap) = if i % 2 == 0 { ([fa, fb], false) } else { ([fb, fa], true) };
            let out = t.update(500 * i, &faces);
            let (got_a, got_b) = if swap { (id(&out, 1), id(&out, 0)) } else { (id(&out, 0), id(&out, 1)) };
            assert_eq!((got_a, got_b), (a.clone(), b.clone()), "frame {i}");
        }
        assert_eq!(t.live(), 2);
    }

    #[test]
    fn two_faces_crossing_keep_their_identities() {
        let mut t = Tracker::new("hall", &config());
        // A walks right and B left at 30 px per frame; they pass each other at frame 5, one a
        // little behind the other, and have swapped sides by frame 10.
        let at = |i: u64| {
            (face(100.0 + 30.0 * i as f32, 100.0, 100.0), face(400.0 - 30.0 * i as f32, 108.0, 100.0))
        };
        let (fa, fb) = at(0);
        let out = t.update(0, &[fa, fb]);
        let (a, b) = (id(&out, 0), id(&out, 1));
        for i in 1..=14u64 {
            let (fa, fb) = at(i);
            let out = t.update(500 * i, &[fb, fa]);
            assert_eq!(id(&out, 1), a, "A at frame {i}");
            assert_eq!(id(&out, 0), b, "B at frame {i}");
        }
        assert_eq!(t.live(), 2);
    }

    #[test]
    fn a_fast_face_at_two_fps_is_still_one_track() {
        // 80 px face moving 200 px per frame: no overlap between consecutive boxes.
        let mut t = Tracker::new("hall", &config());
        let out = t.update(0, &[face(0.0, 300.0, 80.0)]);
        let track = id(&out, 0);
        for i in 1..6u64 {
            let out = t.update(500 * i, &[face(200.0 * i as f32, 300.0, 80.0)]);
            assert_eq!(id(&out, 0), track, "frame {i}");
        }
    }

    #[test]
    fn a_face_back_after_max_age_is_a_new_track_and_the_old_one_ends() {
        let mut t = Tracker::new("door", &config());
        let first = id(&t.update(10_000, &[face(100.0, 100.0, 100.0)]), 0);
        for ts in [10_500, 11_000, 11_500, 12_000] {
            assert_eq!(id(&t.update(ts, &[face(100.0, 100.0, 100.0)]), 0), first);
        }
        // 1.5 s away is within max_age (2 s): same track.
        assert_eq!(id(&t.update(13_500, &[face(100.0, 100.0, 100.0)]), 0), first);
        // 2.5 s away is not.
        let out = t.update(16_000, &[face(100.0, 100.0, 100.0)]);
        let second = id(&out, 0);
        assert_ne!(second, first);
        assert_eq!(second, "door:16000:1");
        assert_eq!(
            out.ended,
            vec![EndedTrack {
                id: first,
                first_seen_ms: 10_000,
                last_seen_ms: 13_500,
                faces_seen: 6,
                shots_sent: 1,
                confirmed: true,
            }]
        );
        assert_eq!(out.faces[0].action, Action::Drop(DropReason::Tentative));
        assert_eq!(t.live(), 1);
    }

    #[test]
    fn tentative_tracks_send_nothing_and_unconfirmed_ones_end_unconfirmed() {
        let mut t = Tracker::new("door", &TrackingConfig { min_hits: 3, ..config() });
        for ts in [0, 500] {
            let out = t.update(ts, &[face(100.0, 100.0, 100.0)]);
            assert_eq!(out.faces[0].action, Action::Drop(DropReason::Tentative));
            assert!(out.started.is_empty());
        }
        let ended = t.expire(3_000);
        assert_eq!(ended.len(), 1);
        assert!(!ended[0].confirmed);
        assert_eq!((ended[0].faces_seen, ended[0].shots_sent), (2, 0));
        assert_eq!(t.live(), 0);

        // The third sighting confirms and sends at once.
        for ts in [10_000, 10_500] {
            t.update(ts, &[face(100.0, 100.0, 100.0)]);
        }
        let out = t.update(11_000, &[face(100.0, 100.0, 100.0)]);
        assert_eq!(out.started, vec![id(&out, 0)]);
        assert_eq!(out.faces[0].action, Action::Send { first: true });
    }

    #[test]
    fn min_hits_one_sends_the_very_first_face() {
        let mut t = Tracker::new("door", &TrackingConfig { min_hits: 1, ..config() });
        let out = t.update(0, &[face(100.0, 100.0, 100.0)]);
        assert_eq!(out.started.len(), 1);
        assert_eq!(out.faces[0].action, Action::Send { first: true });
    }

    /// One face over a visit of `secs` seconds at 4 fps, `at(ts)` its observation; the actions.
    fn visit(config: &TrackingConfig, secs: u64, at: impl Fn(u64) -> Observation) -> Vec<(u64, Action)> {
        let mut t = Tracker::new("door", config);
        (0..secs * 4)
            .map(|i| {
                let ts = 250 * i;
                (ts, t.update(ts, &[at(ts)]).faces[0].action)
            })
            .collect()
    }

    fn sends(actions: &[(u64, Action)]) -> Vec<u64> {
        actions.iter().filter(|(_, a)| matches!(a, Action::Send { .. })).map(|(ts, _)| *ts).collect()
    }

    #[test]
    fn shots_first_at_once_then_refresh_and_max_shots() {
        // Constant quality: the first at confirmation, then one refresh every 10 s.
        let actions = visit(&config(), 30, |_| face(100.0, 100.0, 100.0));
        assert_eq!(sends(&actions), vec![250, 10_250, 20_250]);
        assert_eq!(actions[1].1, Action::Send { first: true });
        assert_eq!(actions[2].1, Action::Drop(DropReason::NotBetter));
        assert_eq!(actions[41].1, Action::Send { first: false });
        // With max_shots 2 the third is refused.
        let capped = visit(&TrackingConfig { max_shots: 2, ..config() }, 30, |_| face(100.0, 100.0, 100.0));
        assert_eq!(sends(&capped), vec![250, 10_250]);
        assert!(capped.iter().any(|(ts, a)| *ts == 20_250 && *a == Action::Drop(DropReason::MaxShots)));
    }

    #[test]
    fn shots_a_face_coming_closer_sends_better_ones_but_not_too_often() {
        // Over 4 s the face grows from 32 to 128 px and sharpens from 30 to 600: every frame is
        // better than the last, by more than 15% a second until near the end.
        let actions = visit(&config(), 4, |ts| {
            let k = ts as f32 / 4000.0;
            Observation { sharpness: 30.0 * 20f32.powf(k), ..face(100.0, 100.0, 32.0 * 4f32.powf(k)) }
        });
        let sent = sends(&actions);
        assert_eq!(sent[0], 250);
        assert!(sent.len() >= 3, "{actions:?}");
        assert!(sent.windows(2).all(|w| w[1] - w[0] >= 1000), "{sent:?}");
        assert!(actions.iter().any(|(_, a)| *a == Action::Drop(DropReason::TooSoon)), "{actions:?}");
        // Once the face is near its best, 15% better is out of reach.
        assert_eq!(actions.last().unwrap().1, Action::Drop(DropReason::NotBetter));
    }

    #[test]
    fn expire_ends_tracks_without_frames() {
        let mut t = Tracker::new("door", &config());
        t.update(0, &[face(100.0, 100.0, 100.0), face(400.0, 100.0, 100.0)]);
        t.update(500, &[face(100.0, 100.0, 100.0)]);
        assert!(t.expire(2_000).is_empty(), "unseen 2000 ms is not more than max_age");
        let ended = t.expire(2_001);
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].last_seen_ms, ended[0].confirmed), (0, false));
        assert_eq!(t.live(), 1);
        let ended = t.expire(2_501);
        assert_eq!((ended[0].last_seen_ms, ended[0].faces_seen, ended[0].confirmed), (500, 2, true));
        assert_eq!(t.live(), 0);
        // end_all on an empty tracker, and after new frames.
        assert!(t.end_all().is_empty());
        t.update(9_000, &[face(100.0, 100.0, 100.0)]);
        assert_eq!(t.end_all().len(), 1);
        assert_eq!(t.live(), 0);
    }

    #[test]
    fn a_late_frame_joins_known_tracks_and_leaves_the_filters_alone() {
        let mut t = Tracker::new("door", &config());
        let track = id(&t.update(1_000, &[face(100.0, 100.0, 100.0)]), 0);
        t.update(2_000, &[face(120.0, 100.0, 100.0)]);
        // The frame of 1500 arrives after the one of 2000, with a stranger elsewhere.
        let late = t.update(1_500, &[face(110.0, 100.0, 100.0), face(600.0, 100.0, 100.0)]);
        assert_eq!(id(&late, 0), track);
        assert_eq!(late.faces[1].track, None);
        assert_eq!(late.faces[1].action, Action::Drop(DropReason::OutOfOrder));
        assert_eq!(late.faces[1].first_seen_ms, 1_500);
        assert!(late.ended.is_empty() && late.started.is_empty());
        assert_eq!(t.live(), 1);
        // In order again: same track, and its motion was not disturbed.
        for (i, ts) in [2_500u64, 3_000, 3_500].into_iter().enumerate() {
            let x = 140.0 + 20.0 * i as f32;
            assert_eq!(id(&t.update(ts, &[face(x, 100.0, 100.0)]), 0), track);
        }
        let ended = t.end_all();
        assert_eq!((ended[0].first_seen_ms, ended[0].last_seen_ms, ended[0].faces_seen), (1_000, 3_500, 6));
    }

    #[test]
    fn a_late_frame_does_not_expire_or_panic_even_with_no_tracks() {
        let mut t = Tracker::new("door", &config());
        t.update(5_000, &[]);
        let out = t.update(4_000, &[face(0.0, 0.0, 50.0)]);
        assert_eq!(out.faces[0].action, Action::Drop(DropReason::OutOfOrder));
        assert_eq!(t.live(), 0);
    }

    #[test]
    fn a_clock_step_back_ends_every_track_and_restarts() {
        let mut t = Tracker::new("door", &config());
        let old = id(&t.update(1_000_000, &[face(100.0, 100.0, 100.0)]), 0);
        let out = t.update(10_000, &[face(100.0, 100.0, 100.0)]);
        assert_eq!(out.ended.len(), 1);
        assert_eq!(out.ended[0].id, old);
        assert_eq!(id(&out, 0), "door:10000:1");
        assert_eq!(id(&t.update(10_500, &[face(100.0, 100.0, 100.0)]), 0), "door:10000:1");
    }

    #[test]
    fn random_faces_and_jittered_timestamps_never_corrupt_state() {
        // A crowd of faces appearing and vanishing, frames arriving up to 300 ms out of order.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut t = Tracker::new("crowd", &config());
        let mut ids = std::collections::HashSet::new();
        let mut ended = 0;
        for i in 0..400u64 {
            let ts = 10_000 + 250 * i + next(300);
            let faces: Vec<Observation> = (0..next(6))
                .map(|_| face(next(1800) as f32, next(1000) as f32, 32.0 + next(200) as f32))
                .collect();
            let out = t.update(ts, &faces);
            assert_eq!(out.faces.len(), faces.len());
            for d in &out.faces {
                assert!((0.0..=1.0).contains(&d.quality));
                if let Some(id) = &d.track {
                    assert!(id.starts_with("crowd:"));
                    ids.insert(id.clone());
                }
            }
            ended += out.ended.len();
            assert!(t.live() <= ids.len());
        }
        ended += t.end_all().len();
        assert_eq!(ended, ids.len(), "every track ends exactly once");
    }
}
