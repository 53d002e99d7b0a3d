//! The collector that turns the pipeline's atomic counters into metric families at scrape time.
//!
//! Cameras, detection pools, workers and the ingest sink keep relaxed atomics on their hot
//! paths; this reads them when `/metrics` is scraped, so exporting them costs nothing per frame.
//! A family is only emitted once something of its kind is registered: an `ingest` process has
//! no recognitions, a `recognize` process no cameras.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use prometheus::core::Desc;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::camera::{CameraStats, DetectStats};
use crate::ingest::{SinkStats, TrackStats};
use crate::instrument::{DropReason, RejectReason};
use crate::recognize::worker::WorkerStats;
use crate::track;
use crate::visit::{VisitCounts, VisitKind};

/// A family this collector emits.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
}

const CAMERA: &[&str] = &["camera", "group"];
const CAMERA_REASON: &[&str] = &["camera", "group", "reason"];

const CAMERA_UP: Family = Family {
    name: "redeye_camera_up",
    help: "1 while the camera's session delivers decoded frames, 0 while it connects or backs off.",
    kind: MetricType::GAUGE,
    labels: CAMERA,
};
const FRAMES_RECEIVED: Family = Family {
    name: "redeye_camera_frames_received_total",
    help: "Encoded frames received from the camera (including frames dropped later).",
    kind: MetricType::COUNTER,
    labels: CAMERA,
};
const FRAMES_DECODED: Family = Family {
    name: "redeye_camera_frames_decoded_total",
    help: "Frames that came out of the decoder.",
    kind: MetricType::COUNTER,
    labels: CAMERA,
};
const FRAMES_SAMPLED: Family = Family {
    name: "redeye_camera_frames_sampled_total",
    help: "Decoded frames kept by sampling and offered to detection.",
    kind: MetricType::COUNTER,
    labels: CAMERA,
};
const FRAMES_DETECTED: Family = Family {
    name: "redeye_camera_frames_detected_total",
    help: "Frames the detection stage took from the camera's newest-frame slot.",
    kind: MetricType::COUNTER,
    labels: CAMERA,
};
const FRAMES_DROPPED: Family = Family {
    name: "redeye_camera_frames_dropped_total",
    help: "Frames dropped on purpose, by reason (sampling, replaced, decode_error, backlog, waiting_for_key, non_key).",
    kind: MetricType::COUNTER,
    labels: CAMERA_REASON,
};
const RECONNECTS: Family = Family {
    name: "redeye_camera_reconnects_total",
    help: "Camera sessions started after the first one (each failed attempt counts).",
    kind: MetricType::COUNTER,
    labels: CAMERA,
};
const DECODE_ERRORS: Family = Family {
    name: "redeye_camera_decode_errors_total",
    help: "Packets libavcodec refused or frames that could not be converted to RGB.",
    kind: MetricType::COUNTER,
    labels: CAMERA,
};
const FACES_DETECTED: Family = Family {
    name: "redeye_faces_detected_total",
    help: "Faces the detector found in the camera's frames, before the quality gate.",
    kind: MetricType::COUNTER,
    labels: CAMERA,
};
const FACES_REJECTED: Family = Family {
    name: "redeye_faces_rejected_total",
    help: "Faces the quality gate stopped, by reason (too_small, low_score, blurry).",
    kind: MetricType::COUNTER,
    labels: &["group", "reason"],
};
const DETECT_FRAMES: Family = Family {
    name: "redeye_detect_frames_total",
    help: "Frames run through the group's detector.",
    kind: MetricType::COUNTER,
    labels: &["group"],
};
const FACES_ACCEPTED: Family = Family {
    name: "redeye_faces_accepted_total",
    help: "Faces that passed the quality gate, aligned and hashed.",
    kind: MetricType::COUNTER,
    labels: &["group"],
};
const DETECT_ERRORS: Family = Family {
    name: "redeye_detect_errors_total",
    help: "Frames the detector failed on (logged and skipped), or crops that could not be encoded.",
    kind: MetricType::COUNTER,
    labels: &["group"],
};
const RECOGNITIONS: Family = Family {
    name: "redeye_recognitions_total",
    help: "Faces stream entries recognised by this process's workers, by outcome (known, unknown, dead_letter).",
    kind: MetricType::COUNTER,
    labels: &["outcome"],
};
const CLAIMED: Family = Family {
    name: "redeye_worker_claimed_entries_total",
    help: "Entries taken over from stopped or stuck consumers (XAUTOCLAIM).",
    kind: MetricType::COUNTER,
    labels: &[],
};
const WORKER_ERRORS: Family = Family {
    name: "redeye_worker_errors_total",
    help: "Worker sessions that ended in a Redis error and were retried.",
    kind: MetricType::COUNTER,
    labels: &[],
};
const GALLERY_MALFORMED: Family = Family {
    name: "redeye_gallery_malformed_records",
    help: "Gallery records the workers' last load skipped as malformed (logged once each with its key).",
    kind: MetricType::GAUGE,
    labels: &[],
};
const CACHE_HITS: Family = Family {
    name: "redeye_cache_hits_total",
    help: "Face crops answered from a fresh image:<md5> result.",
    kind: MetricType::COUNTER,
    labels: &[],
};
const CACHE_MISSES: Family = Family {
    name: "redeye_cache_misses_total",
    help: "Face crops with no fresh cached result, sent to the faces stream.",
    kind: MetricType::COUNTER,
    labels: &[],
};

const INGEST_RETRIES: Family = Family {
    name: "redeye_ingest_retries_total",
    help: "Hand-offs of a crop to Redis that failed and were retried.",
    kind: MetricType::COUNTER,
    labels: &[],
};
const INGEST_LOST: Family = Family {
    name: "redeye_ingest_crops_lost_total",
    help: "Crops never handed off: the hand-off stopped on a fatal error, or shutdown came first.",
    kind: MetricType::COUNTER,
    labels: &[],
};

const INGEST_DROPPED: Family = Family {
    name: "redeye_ingest_crops_dropped_total",
    help: "Crops or shots ingest refused to hand off, by reason (stream_full: the faces stream holds faces_stream_maxlen unfinished entries).",
    kind: MetricType::COUNTER,
    labels: &["reason"],
};

const TRACKS_STARTED: Family = Family {
    name: "redeye_tracks_started_total",
    help: "Face tracks confirmed (seen in min_hits frames): visits begun.",
    kind: MetricType::COUNTER,
    labels: CAMERA,
};
const TRACKS_ENDED: Family = Family {
    name: "redeye_tracks_ended_total",
    help: "Confirmed face tracks that ended (unseen for max_age_ms, or shutdown).",
    kind: MetricType::COUNTER,
    labels: CAMERA,
};
const SHOTS_SENT: Family = Family {
    name: "redeye_shots_sent_total",
    help: "Best shots of tracks handed off to recognition.",
    kind: MetricType::COUNTER,
    labels: CAMERA,
};
const FACES_TRACKED: Family = Family {
    name: "redeye_faces_tracked_dropped_total",
    help: "Accepted faces the tracker did not send, by reason (tentative, not_better, too_soon, max_shots, out_of_order).",
    kind: MetricType::COUNTER,
    labels: CAMERA_REASON,
};
const VISIT_EVENTS: Family = Family {
    name: "redeye_visit_events_total",
    help: "Visit events published by this process, by kind (arrived, updated, left).",
    kind: MetricType::COUNTER,
    labels: &["kind"],
};

const VISITORS_NEW: Family = Family {
    name: "redeye_visitors_new_total",
    help: "Anonymous visitors created: tracks decided unknown that matched no recent visitor.",
    kind: MetricType::COUNTER,
    labels: &[],
};
const VISITORS_RETURNING: Family = Family {
    name: "redeye_visitors_returning_total",
    help: "Tracks that took an existing visitor's id after one of that visitor's tracks had left.",
    kind: MetricType::COUNTER,
    labels: &[],
};
const VISITORS_ATTACHED: Family = Family {
    name: "redeye_visitors_attached_total",
    help: "Tracks that took an existing visitor's id while none of theirs had left (seen at once on another camera).",
    kind: MetricType::COUNTER,
    labels: &[],
};

const ALL: [&Family; 30] = [
    &CAMERA_UP,
    &FRAMES_RECEIVED,
    &FRAMES_DECODED,
    &FRAMES_SAMPLED,
    &FRAMES_DETECTED,
    &FRAMES_DROPPED,
    &RECONNECTS,
    &DECODE_ERRORS,
    &FACES_DETECTED,
    &FACES_REJECTED,
    &DETECT_FRAMES,
    &FACES_ACCEPTED,
    &DETECT_ERRORS,
    &RECOGNITIONS,
    &CLAIMED,
    &WORKER_ERRORS,
    &GALLERY_MALFORMED,
    &CACHE_HITS,
    &CACHE_MISSES,
    &INGEST_RETRIES,
    &INGEST_LOST,
    &INGEST_DROPPED,
    &TRACKS_STARTED,
    &TRACKS_ENDED,
    &SHOTS_SENT,
    &FACES_TRACKED,
    &VISIT_EVENTS,
    &VISITORS_NEW,
    &VISITORS_RETURNING,
    &VISITORS_ATTACHED,
];

/// What has been registered.
#[derive(Default)]
struct Registered {
    /// `(group, camera)` -> counters, in registration order.
    cameras: Vec<(String, String, Arc<CameraStats>)>,
    detect: Vec<(String, Arc<DetectStats>)>,
    workers: Vec<Arc<WorkerStats>>,
    sinks: Vec<Arc<SinkStats>>,
    /// `(group, camera)` -> tracking counters.
    tracks: Vec<(String, String, Arc<TrackStats>)>,
}

/// The registered sources and the descriptors of the families they become.
pub(super) struct Sources {
    registered: Mutex<Registered>,
    descs: Vec<Desc>,
}

impl Sources {
    pub(super) fn new() -> Sources {
        let descs = ALL
            .iter()
            .map(|f| {
                let labels = f.labels.iter().map(|l| l.to_string()).collect();
                Desc::new(f.name.into(), f.help.into(), labels, HashMap::new()).expect("valid descriptor")
            })
            .collect();
        Sources { registered: Mutex::default(), descs }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registered> {
        // The data is a list of Arcs; a panic elsewhere cannot leave it half-updated.
        self.registered.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn add_camera(&self, group: &str, camera: &str, stats: Arc<CameraStats>) {
        let mut r = self.lock();
        r.cameras.retain(|(g, c, _)| !(g == group && c == camera));
        r.cameras.push((group.to_owned(), camera.to_owned(), stats));
    }

    pub(super) fn add_detect(&self, group: &str, stats: Arc<DetectStats>) {
        let mut r = self.lock();
        r.detect.retain(|(g, _)| g != group);
        r.detect.push((group.to_owned(), stats));
    }

    pub(super) fn add_workers(&self, stats: Arc<WorkerStats>) {
        self.lock().workers.push(stats);
    }

    pub(super) fn add_sink(&self, stats: Arc<SinkStats>) {
        self.lock().sinks.push(stats);
    }

    pub(super) fn add_tracks(&self, cameras: Vec<(String, String, Arc<TrackStats>)>) {
        let mut r = self.lock();
        for (group, camera, stats) in cameras {
            r.tracks.retain(|(g, c, _)| !(*g == group && *c == camera));
            r.tracks.push((group, camera, stats));
        }
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let r = self.lock();
        let mut out = Vec::new();
        let mut family = |f: &Family, metrics: Vec<Metric>| {
            if !metrics.is_empty() {
                let mut mf = MetricFamily::default();
                mf.set_name(f.name.to_owned());
                mf.set_help(f.help.to_owned());
                mf.set_field_type(f.kind);
                mf.set_metric(metrics);
                out.push(mf);
            }
        };

        let per_camera = |f: &Family, value: &dyn Fn(&CameraStats) -> u64| -> Vec<Metric> {
            r.cameras
                .iter()
                .map(|(g, c, s)| metric(f.kind, &[("camera", c), ("group", g)], value(s) as f64))
                .collect()
        };
        family(&CAMERA_UP, per_camera(&CAMERA_UP, &|s| u64::from(s.up.load(Relaxed))));
        family(&FRAMES_RECEIVED, per_camera(&FRAMES_RECEIVED, &|s| s.frames_received.load(Relaxed)));
        family(&FRAMES_DECODED, per_camera(&FRAMES_DECODED, &|s| s.frames_decoded.load(Relaxed)));
        family(&FRAMES_SAMPLED, per_camera(&FRAMES_SAMPLED, &|s| s.frames_sampled.load(Relaxed)));
        family(&FRAMES_DETECTED, per_camera(&FRAMES_DETECTED, &|s| s.frames_detected.load(Relaxed)));
        family(&RECONNECTS, per_camera(&RECONNECTS, &|s| s.reconnects.load(Relaxed)));
        family(&DECODE_ERRORS, per_camera(&DECODE_ERRORS, &|s| s.dropped(DropReason::DecodeError)));
        let dropped = r
            .cameras
            .iter()
            .flat_map(|(g, c, s)| {
                DropReason::ALL.iter().map(move |&reason| {
                    let labels = [("camera", c.as_str()), ("group", g.as_str()), ("reason", reason.as_str())];
                    metric(MetricType::COUNTER, &labels, s.dropped(reason) as f64)
                })
            })
            .collect();
        family(&FRAMES_DROPPED, dropped);

        family(&FACES_DETECTED, per_camera(&FACES_DETECTED, &|s| s.faces_detected.load(Relaxed)));
        let rejected = r
            .detect
            .iter()
            .flat_map(|(g, s)| {
                RejectReason::ALL.iter().map(move |&reason| {
                    metric(
                        MetricType::COUNTER,
                        &[("group", g), ("reason", reason.as_str())],
                        s.rejected(reason) as f64,
                    )
                })
            })
            .collect();
        family(&FACES_REJECTED, rejected);
        let per_group = |value: &dyn Fn(&DetectStats) -> u64| -> Vec<Metric> {
            r.detect
                .iter()
                .map(|(g, s)| metric(MetricType::COUNTER, &[("group", g)], value(s) as f64))
                .collect()
        };
        family(&DETECT_FRAMES, per_group(&|s| s.frames.load(Relaxed)));
        family(&FACES_ACCEPTED, per_group(&|s| s.faces_accepted.load(Relaxed)));
        family(&DETECT_ERRORS, per_group(&|s| s.errors.load(Relaxed)));

        if !r.workers.is_empty() {
            let sum = |a: fn(&WorkerStats) -> &AtomicU64| -> f64 {
                r.workers.iter().map(|w| a(w).load(Relaxed)).sum::<u64>() as f64
            };
            let outcomes = [
                ("known", sum(|w| &w.known)),
                ("unknown", sum(|w| &w.unknown)),
                ("dead_letter", sum(|w| &w.dead_letters)),
            ];
            let recognitions = outcomes
                .iter()
                .map(|(outcome, v)| metric(MetricType::COUNTER, &[("outcome", outcome)], *v))
                .collect();
            family(&RECOGNITIONS, recognitions);
            family(&CLAIMED, vec![metric(MetricType::COUNTER, &[], sum(|w| &w.claimed))]);
            family(&WORKER_ERRORS, vec![metric(MetricType::COUNTER, &[], sum(|w| &w.errors))]);
            family(&VISITORS_NEW, vec![metric(MetricType::COUNTER, &[], sum(|w| &w.visitors.created))]);
            family(
                &VISITORS_RETURNING,
                vec![metric(MetricType::COUNTER, &[], sum(|w| &w.visitors.returning))],
            );
            family(&VISITORS_ATTACHED, vec![metric(MetricType::COUNTER, &[], sum(|w| &w.visitors.attached))]);
            // Every worker of a process shares one gallery: the largest count is the truth.
            let malformed = r.workers.iter().map(|w| w.gallery_malformed.load(Relaxed)).max().unwrap_or(0);
            family(&GALLERY_MALFORMED, vec![metric(MetricType::GAUGE, &[], malformed as f64)]);
        }

        if !r.sinks.is_empty() {
            let sum = |a: fn(&SinkStats) -> &AtomicU64| -> f64 {
                r.sinks.iter().map(|s| a(s).load(Relaxed)).sum::<u64>() as f64
            };
            family(&CACHE_HITS, vec![metric(MetricType::COUNTER, &[], sum(|s| &s.cache_hits))]);
            family(&CACHE_MISSES, vec![metric(MetricType::COUNTER, &[], sum(|s| &s.cache_misses))]);
            family(&INGEST_RETRIES, vec![metric(MetricType::COUNTER, &[], sum(|s| &s.retries))]);
            family(&INGEST_LOST, vec![metric(MetricType::COUNTER, &[], sum(|s| &s.lost))]);
            let dropped =
                vec![metric(MetricType::COUNTER, &[("reason", "stream_full")], sum(|s| &s.stream_full))];
            family(&INGEST_DROPPED, dropped);
        }

        let per_tracked = |value: &dyn Fn(&TrackStats) -> u64| -> Vec<Metric> {
            r.tracks
                .iter()
                .map(|(g, c, s)| metric(MetricType::COUNTER, &[("camera", c), ("group", g)], value(s) as f64))
                .collect()
        };
        family(&TRACKS_STARTED, per_tracked(&|s| s.started.load(Relaxed)));
        family(&TRACKS_ENDED, per_tracked(&|s| s.ended.load(Relaxed)));
        family(&SHOTS_SENT, per_tracked(&|s| s.shots_sent.load(Relaxed)));
        let tracked = r
            .tracks
            .iter()
            .flat_map(|(g, c, s)| {
                track::DropReason::ALL.iter().map(move |&reason| {
                    let labels = [("camera", c.as_str()), ("group", g.as_str()), ("reason", reason.as_str())];
                    metric(MetricType::COUNTER, &labels, s.dropped(reason) as f64)
                })
            })
            .collect();
        family(&FACES_TRACKED, tracked);

        // Workers publish arrivals, updates and most departures; ingest the departures of
        // tracks whose shots were all folded when they ended. Either may run alone.
        let counts: Vec<&VisitCounts> =
            r.workers.iter().map(|w| &w.visits).chain(r.sinks.iter().map(|s| &s.visits)).collect();
        if !counts.is_empty() && (!r.tracks.is_empty() || !r.workers.is_empty()) {
            let visits = VisitKind::ALL
                .iter()
                .map(|&kind| {
                    let total: u64 = counts.iter().map(|c| c.get(kind)).sum();
                    metric(MetricType::COUNTER, &[("kind", kind.as_str())], total as f64)
                })
                .collect();
            family(&VISIT_EVENTS, visits);
        }
        out
    }
}

/// One sample with its labels, as a counter or a gauge.
fn metric(kind: MetricType, labels: &[(&str, &str)], value: f64) -> Metric {
    let pairs = labels
        .iter()
        .map(|(name, value)| {
            let mut p = LabelPair::default();
            p.set_name((*name).to_owned());
            p.set_value((*value).to_owned());
            p
        })
        .collect();
    let mut m = Metric::from_label(pairs);
    match kind {
        MetricType::GAUGE => {
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        _ => {
            let mut c = Counter::default();
            c.set_value(value);
            m.set_counter(c);
        }
    }
    m
}

/// [`Sources`] as a registrable collector (the registry takes ownership of a box).
pub(super) struct Collector(pub(super) Arc<Sources>);

impl prometheus::core::Collector for Collector {
    fn desc(&self) -> Vec<&Desc> {
        self.0.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}
