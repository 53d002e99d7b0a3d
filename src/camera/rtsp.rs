//! RTSP sources through retina: DESCRIBE, SETUP (the first H.264/H.265 video stream, TCP
//! interleaved or UDP), PLAY, then depacketized frames to the decode thread.
//!
//! Frames come as Annex-B with the parameter sets before every key frame
//! (`FrameFormat::SIMPLE`), so libavcodec needs no extradata and a decoder can start at any key
//! frame. Everything before a session's first key frame is dropped (`waiting_for_key`).
//!
//! # Timestamps
//! RTP timestamps run on the stream's clock (90 kHz for video) from a random origin, and say
//! nothing about wall time. We anchor the first frame of a session: its RTP time `rtp0` is
//! taken to have been captured at its local receive time `W0` (retina's
//! `PacketContext::received_wall`). A later frame with RTP time `rtp` was then captured at
//! `W0 + (rtp - rtp0) / clock_rate` (retina's `Timestamp::elapsed` already unwraps the 32-bit
//! counter). So the capture times keep the camera's own spacing, free of network jitter, with
//! one constant offset: the first frame's network and buffering delay. Over a long session
//! the camera clock may drift from ours by a few ppm (about 0.1 s a day); each reconnect
//! re-anchors. RTCP sender reports could map RTP to the camera's NTP clock instead, but many
//! cameras' NTP clocks are unset or wrong, so the local clock is the safer reference.
//!
//! One correction: a frame is not captured after it was received. When the computed time runs
//! more than [`MAX_LEAD`] ahead of the receive time (the stream fell behind its own clock: a slow
//! server or a loaded machine), the session re-anchors on that frame. Smaller leads are normal
//! (a P-frame is sent before the B-frames shown ahead of it) and keep the camera's spacing. So
//! time-to-name is never understated by more than `MAX_LEAD`.
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

/// How far a computed capture time may run ahead of the receive time before re-anchoring: well
/// beyond B-frame reordering (2 frames at 25 fps = 80 ms) and scheduling jitter on a loaded
/// machine, so the camera's frame spacing is kept exactly unless the stream really fell behind.
pub const MAX_LEAD: Duration = Duration::from_secs(1);

/// Maps RTP timestamps to capture wall time (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct WallClock {
    /// `(rtp0 as elapsed ticks, W0)`.
    anchor: Option<(i64, SystemTime)>,
}

impl WallClock {
    /// Capture time of a frame with RTP time `ts`, received at `received`.
    pub fn capture_time(&mut self, ts: retina::Timestamp, received: SystemTime) -> SystemTime {
        let (rtp0, w0) = *self.anchor.get_or_insert((ts.elapsed(), received));
        let ticks = i128::from(ts.elapsed() - rtp0);
        let micros = ticks * 1_000_000 / i128::from(ts.clock_rate().get());
        let d = Duration::from_micros(micros.unsigned_abs() as u64);
        // B-frames can precede the anchor in presentation order.
        let t = if micros >= 0 { w0 + d } else { w0 - d };
        if t > received + MAX_LEAD {
            self.anchor = Some((ts.elapsed(), received));
            return received;
        }
        t
    }
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
    let end = loop {
        let item = tokio::select! {
            biased;
            _ = ctx.token.cancelled() => break SessionEnd::Cancelled,
            r = handle.exited() => break SessionEnd::Failed(ctx.decoder_failure(r)),
            item = tokio::time::timeout(stall, demuxed.next()) => item,
        };
        let frame = match item {
            Err(_) => break SessionEnd::Stalled { after: stall },
            Ok(None) => break SessionEnd::EndOfStream,
            Ok(Some(Err(source))) => {
                break SessionEnd::Failed(CameraError::Rtsp { stage: "stream", url, source });
            }
            Ok(Some(Ok(CodecItem::VideoFrame(f)))) => f,
            Ok(Some(Ok(_))) => continue, // RTCP, other media
        };
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

    #[test]
    fn rtp_time_maps_to_wall_time_from_the_first_frame() {
        let rate = NonZeroU32::new(90_000).unwrap();
        let ts = |t: i64| retina::Timestamp::new(t, rate, 1_000).unwrap();
        let w0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut c = WallClock::default();
        assert_eq!(c.capture_time(ts(10_000), w0), w0);
        // 3600 ticks at 90 kHz = 40 ms later, whatever the (jittery) receive time says.
        assert_eq!(c.capture_time(ts(13_600), w0 + Duration::from_secs(5)), w0 + Duration::from_millis(40));
        // A B-frame shown before the anchor.
        assert_eq!(c.capture_time(ts(6_400), w0), w0 - Duration::from_millis(40));
        // A frame whose clock runs ahead of its arrival (the stream fell behind): it was captured
        // no later than it arrived, and the next frames keep their spacing from it.
        let late = w0 + Duration::from_secs(10);
        assert_eq!(c.capture_time(ts(10_000 + 90_000 * 20), late), late);
        assert_eq!(
            c.capture_time(ts(10_000 + 90_000 * 21), late + Duration::from_secs(5)),
            late + Duration::from_secs(1)
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
