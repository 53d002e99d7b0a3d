//! RTSP sources through retina: DESCRIBE, SETUP (the first H.264/H.265 video stream, TCP
//! interleaved or UDP), PLAY, then depacketized frames to the decode thread.
//!
//! Frames come as Annex-B with the parameter sets before every key frame
//! (`FrameFormat::SIMPLE`), so libavcodec needs no extradata and a decoder can start at any key
//! frame. Everything before a session's first key frame is dropped (`waiting_for_key`).
//!
//! # Timestamps
//! RTP timestamps run on the stream's clock (90 kHz for video) from a random origin, and say
//! nothing about wall time. A frame with RTP time `rtp` (unwrapped by retina's
//! `Timestamp::elapsed`) was captured at `C0 + rtp / clock_rate` for some unknown `C0`, and
//! received at `R = C0 + rtp / clock_rate + delay`, where `delay >= 0` is what encoding, the
//! network and buffering took. So every frame gives an upper bound on `C0`: `R - rtp / rate`.
//! [`WallClock`] keeps the smallest bound seen (the frame that came through fastest) and stamps
//! each frame `C0 + rtp / rate`: the camera's own frame spacing, exactly, and never after the
//! frame's arrival. The one offset left is the fastest frame's delay, which is as close to the
//! true capture time as the local clock can tell without trusting the camera's clock.
//!
//! Anchoring on the first frame instead (what this did before) puts every later frame off by
//! however late the first one came: a server that sends the first frame after a pause for its
//! preroll makes every frame look captured after it arrived, and time-to-name reads near zero or
//! below it.
//!
//! The camera's clock may jump: a server restarting its stream, a camera that resets its RTP
//! clock. A jump forward (or a server sending faster than real time to catch up) gives a smaller
//! bound, taken at once. A jump backward makes every later bound larger; a few late frames do too (a loaded
//! machine), but not for long. So once every frame for [`REANCHOR_AFTER`] has come more than
//! [`JUMP`] later than the kept bound says, the clock re-anchors on the smallest bound of those
//! frames. Over a long session the camera clock drifts from ours by a few ppm (about 0.1 s a
//! day); each reconnect starts afresh. RTCP sender reports could map RTP to the camera's NTP clock
//! instead, but many cameras' NTP clocks are unset or wrong, so the local clock is the safer
//! reference.
//!
//! # Teardown
//! Dropping a playing session makes retina send TEARDOWN in the background; its progress is
//! tracked by the camera's `SessionGroup`, which `CameraTask::run` awaits on shutdown.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use retina::client::{Credentials, PlayOptions, Session, SessionGroup, SessionOptions, SetupOptions};
use retina::codec::{CodecItem, FrameFormat};
use tokio::sync::mpsc::error::TrySendError;
use url::Url;

use super::decode::{CodecSetup, EncodedFrame, VideoCodec};
use super::{CameraError, KeyGate, SessionCtx, SessionEnd};
use crate::config::Transport;

/// Where and how to reach an RTSP camera.
#[derive(Debug, Clone)]
pub struct RtspSource {
    /// Without credentials.
    pub url: Url,
    pub transport: Transport,
    /// Environment variable holding the user name, if any.
    pub username_env: Option<String>,
    /// Environment variable holding the password, if any.
    pub password_env: Option<String>,
}

impl RtspSource {
    /// Reads the credentials from the environment now (so a rotated secret is picked up at the
    /// next reconnect). A named variable that is unset is an error, not "no credentials".
    fn credentials(&self) -> Result<Option<Credentials>, CameraError> {
        let read = |var: &Option<String>, field: &'static str| -> Result<Option<String>, CameraError> {
            match var {
                None => Ok(None),
                Some(v) => std::env::var(v)
                    .map(Some)
                    .map_err(|_| CameraError::MissingCredential { var: v.clone(), field }),
            }
        };
        let user = read(&self.username_env, "username_env")?;
        let pass = read(&self.password_env, "password_env")?;
        Ok(match (user, pass) {
            (None, None) => None,
            (u, p) => Some(Credentials { username: u.unwrap_or_default(), password: p.unwrap_or_default() }),
        })
    }
}

/// `url` without user name or password, for logs and errors.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// A frame this much later than the kept bound says is late, or the camera's clock went back:
/// well beyond network jitter and B-frame reordering (2 frames at 25 fps = 80 ms).
pub const JUMP: Duration = Duration::from_secs(1);

/// How long (in the camera's time) every frame must be late by more than [`JUMP`] before the
/// clock is taken to have gone back and re-anchors.
pub const REANCHOR_AFTER: Duration = Duration::from_secs(3);

/// Maps RTP timestamps to capture wall time (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct WallClock {
    /// The smallest `R - rtp / rate` seen, as microseconds since the Unix epoch: the estimate of
    /// `C0`.
    origin: Option<i128>,
    /// Frames late by more than [`JUMP`] since this RTP time (µs), and their smallest bound.
    late_since: Option<(i128, i128)>,
    /// `(rtp, capture time)` in µs of the last [`RECENT`] frames, to keep capture times in
    /// presentation order while the origin drops (see [`WallClock::capture_time`]).
    recent: std::collections::VecDeque<(i128, i128)>,
}

/// Frames remembered to order capture times: more than any B-frame reordering (a few frames).
const RECENT: usize = 16;

impl WallClock {
    /// Capture time of a frame with RTP time `ts`, received at `received`.
    ///
    /// When a fast frame lowers the origin, the frames stamped before it were stamped late, and a
    /// frame shown after one of them (a B-frame sent behind a later reference, or simply the next
    /// frame) could come out earlier than it. Capture times must follow presentation order (frame
    /// numbers, sampling and the trackers rely on it), so such a frame is stamped just after the
    /// latest frame it is shown after. This only squeezes the frames of the first moments of a
    /// session, until the fastest frame is seen; from then on the spacing is the camera's.
    pub fn capture_time(&mut self, ts: retina::Timestamp, received: SystemTime) -> SystemTime {
        let rtp = i128::from(ts.elapsed()) * 1_000_000 / i128::from(ts.clock_rate().get());
        let bound = i128::from(super::decode::micros_since_epoch(received)) - rtp;
        let origin = match self.origin {
            Some(o) if bound < o => {
                self.late_since = None;
                bound
            }
            Some(o) if bound - o > JUMP.as_micros() as i128 => {
                let (since, smallest) = self.late_since.get_or_insert((rtp, bound));
                *smallest = (*smallest).min(bound);
                if rtp - *since >= REANCHOR_AFTER.as_micros() as i128 {
                    // The clock went back: what came before is no guide to order any more.
                    let smallest = *smallest;
                    self.late_since = None;
                    self.recent.clear();
                    smallest
                } else {
                    o
                }
            }
            Some(o) => {
                self.late_since = None;
                o
            }
            None => bound,
        };
        self.origin = Some(origin);
        let shown_after = self.recent.iter().filter(|(r, _)| *r < rtp).map(|(_, t)| *t).max();
        let t = match shown_after {
            Some(before) if origin + rtp <= before => before + 1,
            _ => origin + rtp,
        };
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((rtp, t));
        from_micros_since_epoch(t)
    }
}

fn from_micros_since_epoch(us: i128) -> SystemTime {
    let d = Duration::from_micros(us.unsigned_abs() as u64);
    if us >= 0 { SystemTime::UNIX_EPOCH + d } else { SystemTime::UNIX_EPOCH - d }
}

/// Whether the previous session's server had live555's stale-TCP-session bug: then new
/// sessions must wait for the old ones' TEARDOWN or expiry (retina issue #17).
#[derive(Debug, Default)]
pub(super) struct StaleState {
    pub live555_bug: bool,
}

/// One RTSP session: connect, play, hand frames to the decoder until cancelled or broken.
pub(super) async fn run(
    ctx: &SessionCtx,
    src: &RtspSource,
    group: &Arc<SessionGroup>,
    stale: &mut StaleState,
) -> SessionEnd {
    let url = redact(&src.url);
    if stale.live555_bug {
        let status = group.stale_sessions();
        if status.num_sessions > 0 {
            tracing::info!(sessions = status.num_sessions, "Waiting for stale live555 sessions to end.");
            tokio::select! {
                biased;
                _ = ctx.token.cancelled() => return SessionEnd::Cancelled,
                _ = group.await_stale_sessions(&status) => {}
            }
        }
    }
    let creds = match src.credentials() {
        Ok(c) => c,
        Err(e) => return SessionEnd::Failed(e),
    };
    let options = SessionOptions::default()
        .creds(creds)
        .session_group(group.clone())
        .user_agent(format!("redeye/{}", env!("CARGO_PKG_VERSION")));
    let connect = ctx.timeouts.connect;
    // Every step is bounded: an unreachable host or a server that accepts and never answers
    // must not hold the camera forever.
    let setup = async {
        let describe = tokio::time::timeout(connect, Session::describe(src.url.clone(), options)).await;
        let mut session = step("DESCRIBE", &url, connect, describe)?;
        stale.live555_bug = session.tool().is_some_and(|t| t.has_live555_tcp_bug());
        let (index, codec) = pick_video(session.streams(), &url)?;
        let transport = match src.transport {
            Transport::Tcp => retina::client::Transport::Tcp(Default::default()),
            Transport::Udp => retina::client::Transport::Udp(Default::default()),
        };
        let opts = SetupOptions::default().transport(transport).frame_format(FrameFormat::SIMPLE);
        step("SETUP", &url, connect, tokio::time::timeout(connect, session.setup(index, opts)).await)?;
        let play = tokio::time::timeout(connect, session.play(PlayOptions::default())).await;
        let playing = step("PLAY", &url, connect, play)?;
        let demuxed = playing.demuxed().map_err(|source| CameraError::Rtsp {
            stage: "PLAY",
            url: url.clone(),
            source,
        })?;
        Ok::<_, CameraError>((demuxed, codec))
    };
    let (mut demuxed, codec) = tokio::select! {
        biased;
        _ = ctx.token.cancelled() => return SessionEnd::Cancelled,
        r = setup => match r {
            Ok(v) => v,
            Err(e) => return SessionEnd::Failed(e),
        },
    };
    let mut handle = match ctx.spawn_decoder(CodecSetup::InBand(codec)) {
        Ok(h) => h,
        Err(e) => return SessionEnd::Failed(e.into()),
    };
    tracing::info!(url = %url, codec = codec.as_str(), transport = ?src.transport, "Playing.");
    let mut clock = WallClock::default();
    let mut gate = KeyGate::default();
    let stall = ctx.timeouts.stall;
    // The stall deadline runs from the last *video frame*, not the last item: a server whose
    // video ended (GStreamer's at the end of a clip, a camera whose encoder froze) can keep the
    // session alive with RTCP sender reports every 5 s or so, and a timeout per item never fired.
    let mut last_video = tokio::time::Instant::now();
    let mut other_items = 0u64;
    let end = loop {
        let item = tokio::select! {
            biased;
            _ = ctx.token.cancelled() => break SessionEnd::Cancelled,
            r = handle.exited() => break SessionEnd::Failed(ctx.decoder_failure(r)),
            item = tokio::time::timeout_at(last_video + stall, demuxed.next()) => item,
        };
        let frame = match item {
            Err(_) => break SessionEnd::Stalled { after: stall, other_items },
            Ok(None) => break SessionEnd::EndOfStream,
            Ok(Some(Err(source))) => {
                break SessionEnd::Failed(CameraError::Rtsp { stage: "stream", url, source });
            }
            Ok(Some(Ok(CodecItem::VideoFrame(f)))) => f,
            Ok(Some(Ok(other))) => {
                // RTCP, other media.
                tracing::trace!(item = item_kind(&other), "Non-video item.");
                other_items += 1;
                continue;
            }
        };
        last_video = tokio::time::Instant::now();
        other_items = 0;
        ctx.stats.frames_received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = frame.is_random_access_point();
        if frame.loss() > 0 {
            tracing::debug!(lost = frame.loss(), "RTP packets lost before this frame.");
        }
        let capture_time = clock.capture_time(frame.timestamp(), frame.start_ctx().received_wall().into());
        if !gate.admit(key, &ctx.stats) {
            continue;
        }
        let encoded = EncodedFrame { data: frame.into_data(), key, capture_time, decode_order_time: false };
        // Never wait for the decoder: a reader that stops reading makes the server drop us.
        match handle.tx.try_send(encoded) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                ctx.stats.drop_frame(super::DropReason::Backlog);
                gate.resync();
            }
            Err(TrySendError::Closed(_)) => {
                let r = handle.exited().await;
                break SessionEnd::Failed(ctx.decoder_failure(r));
            }
        }
    };
    // Dropping the session starts TEARDOWN; dropping the sender lets the decoder drain and stop.
    drop(demuxed);
    ctx.close_decoder(handle).await;
    end
}

fn item_kind(item: &CodecItem) -> &'static str {
    match item {
        CodecItem::VideoFrame(_) => "video",
        CodecItem::AudioFrame(_) => "audio",
        CodecItem::MessageFrame(_) => "message",
        CodecItem::Rtcp(_) => "rtcp",
        _ => "other",
    }
}

/// The outcome of one bounded RTSP request.
fn step<T>(
    stage: &'static str,
    url: &str,
    after: Duration,
    r: Result<Result<T, retina::Error>, tokio::time::error::Elapsed>,
) -> Result<T, CameraError> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(CameraError::Rtsp { stage, url: url.to_string(), source }),
        Err(_) => Err(CameraError::Timeout { stage, url: url.to_string(), after }),
    }
}

/// The first video stream redeye can decode, and its codec.
fn pick_video(streams: &[retina::client::Stream], url: &str) -> Result<(usize, VideoCodec), CameraError> {
    let mut found = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        found.push(format!("{}/{}", s.media(), s.encoding_name()));
        if s.media() != "video" {
            continue;
        }
        match s.encoding_name() {
            "h264" => return Ok((i, VideoCodec::H264)),
            "h265" => return Ok((i, VideoCodec::H265)),
            _ => {}
        }
    }
    Err(CameraError::NoVideo { url: url.to_string(), found: found.join(", ") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn at(w0: SystemTime, ms: i64) -> SystemTime {
        if ms >= 0 { w0 + Duration::from_millis(ms as u64) } else { w0 - Duration::from_millis(-ms as u64) }
    }

    #[test]
    fn capture_times_keep_the_camera_spacing_from_the_fastest_frame() {
        let rate = NonZeroU32::new(90_000).unwrap();
        let ts = |ms: i64| retina::Timestamp::new(10_000 + ms * 90, rate, 1_000).unwrap();
        let w0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let us = Duration::from_micros(1);
        let mut c = WallClock::default();
        // The first frame came 300 ms late (a server's preroll): anchored on it for now.
        assert_eq!(c.capture_time(ts(0), at(w0, 300)), at(w0, 300));
        // The next ones come 20 ms after capture: the origin drops to theirs, but they were shown
        // after the first frame, so until the camera's time passes its stamp they are squeezed
        // just behind it, in order.
        assert_eq!(c.capture_time(ts(40), at(w0, 60)), at(w0, 300) + us);
        assert_eq!(c.capture_time(ts(80), at(w0, 100)), at(w0, 300) + 2 * us);
        // From then on every frame is stamped from the fastest one, whatever jitter its own
        // arrival had.
        assert_eq!(c.capture_time(ts(320), at(w0, 340)), at(w0, 340));
        assert_eq!(c.capture_time(ts(360), at(w0, 420)), at(w0, 380));
        // A B-frame shown before the frame sent ahead of it.
        assert_eq!(c.capture_time(ts(340), at(w0, 425)), at(w0, 360));
        // Nothing is ever stamped after it arrived.
        for (rtp, rx) in [(400, 430), (440, 460), (480, 500)] {
            assert!(c.capture_time(ts(rtp), at(w0, rx)) <= at(w0, rx));
        }
    }

    #[test]
    fn capture_times_follow_presentation_order_while_the_origin_drops() {
        let rate = NonZeroU32::new(90_000).unwrap();
        let ts = |ms: i64| retina::Timestamp::new(10_000 + ms * 90, rate, 1_000).unwrap();
        let w0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut c = WallClock::default();
        // Decode order I0 P3 B1 B2: the key frame 100 ms late, the rest on time behind it.
        let i0 = c.capture_time(ts(0), at(w0, 100));
        let p3 = c.capture_time(ts(120), at(w0, 125));
        let b1 = c.capture_time(ts(40), at(w0, 130));
        let b2 = c.capture_time(ts(80), at(w0, 135));
        assert_eq!(p3, at(w0, 125), "P3 lowers the origin to 5 ms");
        assert!(i0 < b1 && b1 < b2 && b2 < p3, "{i0:?} {b1:?} {b2:?} {p3:?}");
        // From then on, the camera's spacing exactly.
        assert_eq!(c.capture_time(ts(240), at(w0, 250)), at(w0, 245));
        assert_eq!(c.capture_time(ts(160), at(w0, 252)), at(w0, 165));
    }

    #[test]
    fn capture_times_follow_the_camera_clock_when_it_jumps() {
        let rate = NonZeroU32::new(90_000).unwrap();
        let ts = |ms: i64| retina::Timestamp::new(1_000_000 + ms * 90, rate, 1_000).unwrap();
        let w0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut c = WallClock::default();
        assert_eq!(c.capture_time(ts(0), at(w0, 20)), at(w0, 20));
        // Forward by 60 s: the new bound is smaller, taken at once.
        assert_eq!(c.capture_time(ts(60_040), at(w0, 60)), at(w0, 60));
        assert_eq!(c.capture_time(ts(60_080), at(w0, 100)), at(w0, 100));
        // Back by 10 s: frames look 10 s late. A short stretch of late frames is not taken for a
        // jump: they keep the old origin (so they are stamped before they arrived)...
        assert!(c.capture_time(ts(50_120), at(w0, 140)) < at(w0, 140));
        // ...until it lasts REANCHOR_AFTER, then the clock re-anchors on the late frames.
        let mut last = SystemTime::UNIX_EPOCH;
        for i in 1..=80 {
            last = c.capture_time(ts(50_120 + i * 40), at(w0, 140 + i * 40));
        }
        assert_eq!(last, at(w0, 140 + 80 * 40));
        // A single late frame afterwards (a loaded machine) keeps the spacing.
        assert_eq!(
            c.capture_time(ts(50_120 + 81 * 40), at(w0, 140 + 81 * 40 + 1_500)),
            at(w0, 140 + 81 * 40)
        );
    }

    #[test]
    fn urls_are_logged_without_credentials() {
        let u = Url::parse("rtsp://admin:hunter2@10.0.0.5:554/stream1").unwrap();
        assert_eq!(redact(&u), "rtsp://10.0.0.5:554/stream1");
    }

    #[test]
    fn missing_credential_variable_is_an_error() {
        let src = RtspSource {
            url: Url::parse("rtsp://h/p").unwrap(),
            transport: Transport::Tcp,
            username_env: Some("REDEYE_TEST_SURELY_UNSET_USER".into()),
            password_env: None,
        };
        let e = src.credentials().unwrap_err().to_string();
        assert!(e.contains("REDEYE_TEST_SURELY_UNSET_USER") && e.contains("username_env"), "{e}");
    }
}
