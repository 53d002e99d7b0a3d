//! Decoding with libavcodec (ffmpeg-next) on one named OS thread per camera session.
//!
//! The source (RTSP or file) sends [`EncodedFrame`]s over a small bounded channel; the thread
//! decodes every one (P- and B-frames need their references), keeps the frames that fall on the
//! configured sampling rate, converts only those to RGB (swscale, bilinear) and puts them in the
//! camera's newest-frame slot. Decoding never runs inline in an async task: a 1080p H.264 frame
//! takes milliseconds of CPU, which would stall every other task on that runtime worker.
//!
//! # Timestamps
//! Each encoded frame carries its capture wall time, computed by the source (see
//! [`super::rtsp`] and [`super::file`] for how each maps stream time to wall time). It rides
//! through libavcodec as the packet's pts, in microseconds since the UNIX epoch, so frames that
//! come out reordered (B-frames) still carry their own time without a side table. Frame numbers
//! count frames in presentation order per camera, across sessions: a decoded frame's number is
//! the count of frames received with an earlier or equal time, so frames that were never output
//! (skipped in key-frames-only mode, undecodable) still take their number.
//!
//! # Key-frames-only
//! With `key_frames_only`, the codec context's `skip_frame` is `AVDISCARD_NONKEY`: libavcodec
//! parses each non-key packet's headers and returns without reconstructing the picture, so the
//! decode cost is roughly that of the key frames alone (`redeye bench decode` measures it; tests/camera.rs prints it). With a
//! one-second GOP this is about one frame a second per camera at a small fraction of the CPU.
//!
//! libavcodec runs single-threaded here (its default): we scale by cameras, one thread each.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;
use image::RgbImage;
use tokio::sync::{mpsc, oneshot};

use super::frame::Frame;
use super::slot::SlotHandle;
use super::stats::CameraStats;
use crate::instrument::{DropReason, Stage};

/// Encoded frames waiting for the decoder. Small: a live source drops (and resyncs at the next
/// key frame) rather than queueing seconds of video behind a decoder that cannot keep up.
pub const PACKET_QUEUE: usize = 16;

/// Decode errors in a row after which the session is abandoned (and reconnected): about two
/// seconds of video at 25 fps. Isolated errors (a lost packet over UDP) are counted and skipped.
const MAX_ERRORS_IN_A_ROW: u32 = 50;

/// Frames whose time is remembered for numbering; bounds the table if a decoder swallows frames.
const MAX_PENDING: usize = 512;

/// A video codec redeye decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    H265,
}

impl VideoCodec {
    fn id(self) -> ffmpeg::codec::Id {
        match self {
            VideoCodec::H264 => ffmpeg::codec::Id::H264,
            VideoCodec::H265 => ffmpeg::codec::Id::HEVC,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VideoCodec::H264 => "H.264",
            VideoCodec::H265 => "H.265",
        }
    }
}

/// How the decoder learns the stream's parameters.
pub enum CodecSetup {
    /// Annex-B with the parameter sets in-band before each key frame (retina's
    /// `FrameFormat::SIMPLE`, raw `.h264` files): no extradata needed.
    InBand(VideoCodec),
    /// A demuxer's codec parameters (an mp4's avcC/hvcC extradata; packets length-prefixed).
    Parameters(ffmpeg::codec::Parameters),
}

/// One encoded picture (an access unit) on its way to the decoder.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub data: Vec<u8>,
    /// A key frame (IDR / random access point): decodable without earlier frames.
    pub key: bool,
    /// When the picture was captured, in local wall time.
    pub capture_time: SystemTime,
    /// `capture_time` was made up in decode order (a raw stream without timestamps): with
    /// B-frames it belongs to whichever frame comes out next, not to this packet's picture.
    pub decode_order_time: bool,
}

/// What the decoder keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeSettings {
    /// Frames per second handed on; frames between samples are dropped (`sampling`).
    pub fps: f64,
    /// Decode key frames only (`skip_frame = AVDISCARD_NONKEY`).
    pub key_frames_only: bool,
    /// Where in each sampling interval samples fall, a fraction in [0, 1) (`Sampler`).
    pub sample_phase: f64,
}

/// Why a decoder could not start or gave up.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("no {codec} decoder in this FFmpeg build")]
    NoDecoder { codec: String },
    #[error("cannot open the {codec} decoder: {source}")]
    Open { codec: String, source: ffmpeg::Error },
    #[error("{errors} decode errors in a row (last: {last})")]
    Persistent { errors: u32, last: ffmpeg::Error },
    #[error("the decode thread could not be started: {0}")]
    Thread(std::io::Error),
    #[error("the decode thread panicked")]
    Panicked,
}

/// Silences FFmpeg's own logging but for fatal messages: it writes to stderr, outside tracing,
/// once per damaged packet. Decode problems are counted (`decode_error`) and logged at DEBUG.
pub(super) fn init_ffmpeg() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

/// The synchronous decoder: packets in, sampled RGB frames out. [`spawn`] runs one on a thread;
/// tests and benchmarks can drive it directly.
pub struct Decoder {
    camera: Arc<str>,
    dec: ffmpeg::decoder::Video,
    settings: DecodeSettings,
    stats: Arc<CameraStats>,
    /// The next frame number, shared with the camera's later sessions.
    numbers: Arc<AtomicU64>,
    /// pts (µs) → key flag of frames sent but not yet output, for numbering.
    pending: BTreeMap<i64, bool>,
    sampler: Sampler,
    scaler: Option<Scaler>,
    decoded: ffmpeg::frame::Video,
    errors_in_a_row: u32,
    /// The latest packet's time was in decode order (see [`EncodedFrame::decode_order_time`]).
    decode_order_time: bool,
}

impl Decoder {
    /// Opens a decoder. `numbers` holds the camera's next frame number and is advanced as frames
    /// come out.
    pub fn new(
        camera: Arc<str>,
        setup: CodecSetup,
        settings: DecodeSettings,
        stats: Arc<CameraStats>,
        numbers: Arc<AtomicU64>,
    ) -> Result<Decoder, DecodeError> {
        init_ffmpeg();
        let (ctx, name) = match setup {
            CodecSetup::InBand(codec) => {
                let name = codec.as_str().to_string();
                let found = ffmpeg::decoder::find(codec.id())
                    .ok_or(DecodeError::NoDecoder { codec: name.clone() })?;
                (ffmpeg::codec::Context::new_with_codec(found), name)
            }
            CodecSetup::Parameters(p) => {
                let name = format!("{:?}", p.id());
                let ctx = ffmpeg::codec::Context::from_parameters(p)
                    .map_err(|source| DecodeError::Open { codec: name.clone(), source })?;
                (ctx, name)
            }
        };
        let mut d = ctx.decoder();
        if settings.key_frames_only {
            d.skip_frame(ffmpeg::Discard::NonKey);
        }
        d.set_packet_time_base(ffmpeg::Rational::new(1, 1_000_000));
        let dec = d.video().map_err(|source| match source {
            ffmpeg::Error::DecoderNotFound => DecodeError::NoDecoder { codec: name.clone() },
            source => DecodeError::Open { codec: name.clone(), source },
        })?;
        Ok(Decoder {
            camera,
            dec,
            sampler: Sampler::new(settings.fps, settings.sample_phase),
            settings,
            stats,
            numbers,
            pending: BTreeMap::new(),
            scaler: None,
            decoded: ffmpeg::frame::Video::empty(),
            errors_in_a_row: 0,
            decode_order_time: false,
        })
    }

    /// Decodes one encoded frame; each sampled frame that comes out goes to `out`.
    pub fn push(&mut self, pkt: &EncodedFrame, out: &mut dyn FnMut(Frame)) -> Result<(), DecodeError> {
        let pts = micros_since_epoch(pkt.capture_time);
        self.decode_order_time = pkt.decode_order_time;
        self.pending.insert(pts, pkt.key);
        if self.pending.len() > MAX_PENDING {
            self.pending.pop_first();
        }
        if self.settings.key_frames_only && !pkt.key {
            // libavcodec skips it (skip_frame) after parsing its headers, so parameter sets in
            // odd places are still seen; its number is taken by the next key frame.
            self.stats.drop_frame(DropReason::NonKey);
        }
        let mut packet = ffmpeg::Packet::copy(&pkt.data);
        packet.set_pts(Some(pts));
        if pkt.key {
            packet.set_flags(ffmpeg::codec::packet::Flags::KEY);
        }
        let started = Instant::now();
        match self.dec.send_packet(&packet) {
            Ok(()) => {
                self.errors_in_a_row = 0;
                self.drain(out, started);
                if self.settings.key_frames_only && pkt.key {
                    self.flush_key_frame(out);
                }
            }
            Err(e) => {
                self.stats.decode_nanos.fetch_add(nanos(started.elapsed()), Relaxed);
                self.stats.latency.observe(Stage::Decode, started.elapsed());
                self.stats.drop_frame(DropReason::DecodeError);
                self.errors_in_a_row += 1;
                tracing::debug!(camera = %self.camera, error = %e, "Decode error.");
                if self.errors_in_a_row >= MAX_ERRORS_IN_A_ROW {
                    return Err(DecodeError::Persistent { errors: self.errors_in_a_row, last: e });
                }
            }
        }
        Ok(())
    }

    /// In key-frames-only mode, gets the key frame out now. A stream whose SPS announces
    /// B-frames makes libavcodec hold decoded frames in its reorder buffer until as many later
    /// frames have been decoded; the skipped frames never are, so each key frame would come out
    /// one or two GOPs late (`AV_CODEC_FLAG_LOW_DELAY` does not override the SPS). Draining and
    /// flushing after each key frame is cheap, and loses nothing: the next key frame needs no
    /// earlier picture, and the parameter sets stay known.
    fn flush_key_frame(&mut self, out: &mut dyn FnMut(Frame)) {
        if self.dec.send_eof().is_ok() {
            self.drain(out, Instant::now());
        }
        self.dec.flush();
    }

    /// Flushes the frames libavcodec still holds, at the end of a complete stream.
    pub fn finish(&mut self, out: &mut dyn FnMut(Frame)) {
        if self.dec.send_eof().is_ok() {
            self.drain(out, Instant::now());
        }
    }

    /// Receives every frame the decoder has ready. The time from `started` until the last frame
    /// is received counts as decode time; RGB conversion is counted separately.
    fn drain(&mut self, out: &mut dyn FnMut(Frame), started: Instant) {
        let mut decode_time = Duration::ZERO;
        let mut since = started;
        loop {
            let received = self.dec.receive_frame(&mut self.decoded);
            decode_time += since.elapsed();
            match received {
                Ok(()) => self.on_frame(out),
                // EAGAIN: needs more input; Eof: drained after send_eof.
                Err(ffmpeg::Error::Other { errno: ffmpeg::util::error::EAGAIN }) => break,
                Err(ffmpeg::Error::Eof) => break,
                Err(e) => {
                    self.stats.drop_frame(DropReason::DecodeError);
                    tracing::debug!(camera = %self.camera, error = %e, "Decode error on receive.");
                    break;
                }
            }
            since = Instant::now();
        }
        self.stats.decode_nanos.fetch_add(nanos(decode_time), Relaxed);
        self.stats.latency.observe(Stage::Decode, decode_time);
    }

    fn on_frame(&mut self, out: &mut dyn FnMut(Frame)) {
        self.stats.frames_decoded.fetch_add(1, Relaxed);
        self.stats.up.store(true, Relaxed);
        let own = self.decoded.pts().or(self.decoded.timestamp());
        let pts = if self.decode_order_time {
            // Times made up in decode order, evenly spaced: frames come out in presentation
            // order, so each takes the earliest time not yet given out.
            self.pending.first_key_value().map(|(&t, _)| t).or(own)
        } else {
            own
        };
        let pts = pts.unwrap_or_else(|| micros_since_epoch(SystemTime::now()));
        // Every pending frame at or before this one is now behind us: each takes a number.
        let mut passed = 0u64;
        let mut key = self.decoded.is_key();
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > pts {
                break;
            }
            if *entry.key() == pts && !self.decode_order_time {
                key |= *entry.get();
            }
            entry.remove();
            passed += 1;
        }
        let frame_number = self.numbers.fetch_add(passed.max(1), Relaxed) + passed.max(1) - 1;
        if !self.sampler.keep(pts) {
            self.stats.drop_frame(DropReason::Sampling);
            return;
        }
        let started = Instant::now();
        let image = match self.convert_to_rgb() {
            Ok(img) => img,
            Err(e) => {
                self.stats.drop_frame(DropReason::DecodeError);
                tracing::debug!(camera = %self.camera, error = %e, "Cannot convert a frame to RGB.");
                return;
            }
        };
        self.stats.convert_nanos.fetch_add(nanos(started.elapsed()), Relaxed);
        self.stats.frames_sampled.fetch_add(1, Relaxed);
        out(Frame {
            camera: self.camera.clone(),
            frame_number,
            capture_time: UNIX_EPOCH + Duration::from_micros(pts.max(0) as u64),
            key_frame: key,
            image,
        });
    }

    /// The decoded frame as RGB24, same size, bilinear (byte-identical to
    /// `ffmpeg -pix_fmt rgb24 -sws_flags bilinear`).
    fn convert_to_rgb(&mut self) -> Result<RgbImage, ffmpeg::Error> {
        let (w, h, fmt) = (self.decoded.width(), self.decoded.height(), self.decoded.format());
        let stale = self.scaler.as_ref().is_none_or(|s| {
            let i = s.0.input();
            (i.width, i.height, i.format) != (w, h, fmt)
        });
        if stale {
            self.scaler =
                Some(Scaler(scaling::Context::get(fmt, w, h, Pixel::RGB24, w, h, scaling::Flags::BILINEAR)?));
        }
        let scaler = &mut self.scaler.as_mut().expect("scaler just set").0;
        let mut rgb = ffmpeg::frame::Video::empty();
        scaler.run(&self.decoded, &mut rgb)?;
        let stride = rgb.stride(0);
        let row = w as usize * 3;
        let data = rgb.data(0);
        let mut buf = Vec::with_capacity(row * h as usize);
        for y in 0..h as usize {
            buf.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        Ok(RgbImage::from_raw(w, h, buf).expect("buffer sized for the image"))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A swscale context that may move to the decode thread.
struct Scaler(scaling::Context);

// SAFETY: an SwsContext has no thread affinity (no thread-local state, no locks); it is only
// unsafe to use from two threads at once, and a `Scaler` is owned by one `Decoder`, which is
// used by one thread at a time (`&mut self`). ffmpeg-next leaves it !Send only because it holds
// a raw pointer.
unsafe impl Send for Scaler {}

/// Microseconds since the UNIX epoch (negative before it, which only a broken clock gives).
pub fn micros_since_epoch(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// Keeps frames at most `fps` a second, by capture time. Times come from the stream clock (not
/// arrival), so network jitter does not change which frames are kept.
///
/// Capture time is cut into slots of `1/fps` on a grid fixed in wall time and shifted by the
/// camera's phase; the first frame of each slot is kept. Cameras started together would
/// otherwise all sample at the same instants (their first frames), handing detection a burst of
/// one frame per camera every interval and nothing in between: the last frame of a burst waits
/// for all the others, which at 24 cameras on 2 cores was a quarter of a second of
/// time-to-name. With the phases spread, detection sees a steady stream.
#[derive(Debug, Clone)]
struct Sampler {
    interval_us: i64,
    phase_us: i64,
    /// The slot of the last frame kept.
    last_slot: Option<i64>,
}

impl Sampler {
    fn new(fps: f64, phase: f64) -> Sampler {
        let interval_us = if fps > 0.0 { (1e6 / fps).round().max(1.0) as i64 } else { 1 };
        let phase_us = (phase.clamp(0.0, 1.0) * interval_us as f64).round() as i64;
        Sampler { interval_us, phase_us, last_slot: None }
    }

    fn keep(&mut self, t: i64) -> bool {
        // 1 ms of slack absorbs rounding of the stream clock to microseconds.
        const SLACK: i64 = 1_000;
        let slot = (t - self.phase_us + SLACK).div_euclid(self.interval_us);
        match self.last_slot {
            // Later in the same slot, or a little back in time (frames out of order): drop. A
            // jump back by more than two intervals is a new clock (a new stream): keep, go on.
            Some(last) if slot <= last && slot + 2 >= last => false,
            _ => {
                self.last_slot = Some(slot);
                true
            }
        }
    }
}

/// A running decode thread.
pub struct DecoderHandle {
    /// Where the source sends encoded frames. Dropping every sender ends the thread after the
    /// queue drains.
    pub tx: mpsc::Sender<EncodedFrame>,
    done: Option<oneshot::Receiver<Result<(), DecodeError>>>,
}

impl DecoderHandle {
    /// Waits for the thread to exit and says why (cancel-safe). After it has reported once,
    /// returns `Ok(())` at once.
    pub async fn exited(&mut self) -> Result<(), DecodeError> {
        let Some(rx) = self.done.as_mut() else { return Ok(()) };
        let r = rx.await.unwrap_or(Err(DecodeError::Panicked));
        self.done = None;
        r
    }

    /// Closes the input and waits up to `within` for the thread to drain its queue and exit;
    /// `None` if it did not in time (it is left to finish on its own).
    pub async fn close(self, within: Duration) -> Option<Result<(), DecodeError>> {
        let DecoderHandle { tx, done } = self;
        drop(tx);
        let Some(rx) = done else { return Some(Ok(())) };
        let r = tokio::time::timeout(within, rx).await.ok()?;
        Some(r.unwrap_or(Err(DecodeError::Panicked)))
    }
}

/// Starts the decode thread `decode-<camera>`, which puts sampled frames into `slot` until every
/// sender of the handle's `tx` is dropped.
pub fn spawn(decoder: Decoder, slot: SlotHandle) -> Result<DecoderHandle, DecodeError> {
    let (tx, rx) = mpsc::channel(PACKET_QUEUE);
    let (done_tx, done) = oneshot::channel();
    let name = format!("decode-{}", decoder.camera);
    // The camera task's span (camera, group), so the thread's logs carry it too.
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let _span = span.entered();
            let camera = decoder.camera.clone();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(decoder, rx, &slot)));
            let result = result.unwrap_or_else(|_| {
                tracing::error!(%camera, "Decode thread panicked.");
                Err(DecodeError::Panicked)
            });
            let _ = done_tx.send(result);
        })
        .map_err(DecodeError::Thread)?;
    Ok(DecoderHandle { tx, done: Some(done) })
}

fn run(
    mut decoder: Decoder,
    mut rx: mpsc::Receiver<EncodedFrame>,
    slot: &SlotHandle,
) -> Result<(), DecodeError> {
    let mut out = |f: Frame| slot.put(f);
    while let Some(pkt) = rx.blocking_recv() {
        decoder.push(&pkt, &mut out)?;
    }
    // No `finish()`: a session ends mid-stream, and with B-frames the frames still held by the
    // decoder may be missing the B-frames sent after them; flushing would output them with
    // numbers that skip those. One or two frames at a reconnect are not worth it.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(fps: f64, times_ms: impl IntoIterator<Item = i64>) -> Vec<i64> {
        kept_at(fps, 0.0, times_ms)
    }

    fn kept_at(fps: f64, phase: f64, times_ms: impl IntoIterator<Item = i64>) -> Vec<i64> {
        let mut s = Sampler::new(fps, phase);
        times_ms.into_iter().filter(|&t| s.keep(t * 1000)).collect()
    }

    #[test]
    fn samples_25_fps_down_to_2() {
        let k = kept(2.0, (0..50).map(|i| i * 40));
        assert_eq!(k, [0, 520, 1000, 1520]);
    }

    #[test]
    fn keeps_everything_below_the_rate() {
        let all: Vec<i64> = (0..10).map(|i| i * 40).collect();
        assert_eq!(kept(30.0, all.clone()), all);
    }

    #[test]
    fn re_anchors_after_a_gap_and_a_jump_back() {
        // A 10 s gap: the next frame is kept and the grid restarts from it.
        assert_eq!(kept(1.0, [0, 500, 10_000, 10_500, 11_000]), [0, 10_000, 11_000]);
        // The clock jumps back (a new stream): keep and re-anchor rather than wait for it.
        assert_eq!(kept(1.0, [5_000, 6_000, 100, 600, 1_100]), [5_000, 6_000, 100, 1_100]);
    }

    #[test]
    fn the_phase_shifts_the_samples_whenever_the_stream_started() {
        // Two cameras whose streams start 8 ms apart, one at phase 0, one at half an interval.
        let a = kept_at(2.0, 0.0, (0..50).map(|i| 1_000_000 + i * 40));
        let b = kept_at(2.0, 0.5, (0..50).map(|i| 1_000_008 + i * 40));
        assert_eq!(a, [1_000_000, 1_000_520, 1_001_000, 1_001_520]);
        assert_eq!(b, [1_000_008, 1_000_288, 1_000_768, 1_001_288, 1_001_768]);
        // The same camera started 200 ms later samples at the same instants of its grid.
        let c = kept_at(2.0, 0.5, (0..50).map(|i| 1_000_208 + i * 40));
        assert_eq!(c[1..], [1_000_288, 1_000_768, 1_001_288, 1_001_768]);
    }

    #[test]
    fn micros_round_trip() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(micros_since_epoch(t), 1_700_000_000_123_456);
    }
}
