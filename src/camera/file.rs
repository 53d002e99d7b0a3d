//! File sources (`file://` URLs): an mp4 or a raw Annex-B `.h264`/`.h265`, demuxed with
//! libavformat and replayed at native pace, looping forever, as if it were a live camera.
//!
//! # Timestamps
//! A replay starts at wall time `W0` (and monotonic instant `I0`). A packet whose presentation
//! time is `pts` seconds after the file's first timestamp, in loop `k` of a file lasting `D`
//! seconds, is captured at `W0 + k*D + pts` and sent to the decoder at `I0 + k*D + dts` (decode
//! order, so B-frames arrive before the frames that show them). Each loop therefore continues
//! the times, and the decoder's frame numbers, where the previous one stopped. Raw streams carry
//! no timestamps; they get one frame duration (from the stream's frame rate, else 25 fps) per
//! packet, in decode order, and the decoder hands those times out in presentation order.
//!
//! The demuxer runs on its own thread (`file-<camera>`): libavformat reads are blocking file
//! I/O. It sleeps to each packet's due time in short steps so that cancellation is prompt.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use ffmpeg_next as ffmpeg;
use tokio::sync::{mpsc, oneshot};

use super::decode::{CodecSetup, EncodedFrame};
use super::{CameraError, KeyGate, SessionCtx, SessionEnd};

/// Longest single sleep while pacing, so that a cancellation is noticed within this time.
const PACING_STEP: Duration = Duration::from_millis(50);

/// One video packet of a file, with its times relative to the file's first timestamp.
#[derive(Debug, Clone)]
pub struct FilePacket {
    pub data: Vec<u8>,
    pub key: bool,
    /// Presentation time, µs.
    pub pts_us: i64,
    /// Decode time, µs (≤ `pts_us`).
    pub dts_us: i64,
    pub duration_us: i64,
    /// The file gave no time for this packet; `pts_us` and `dts_us` count frame durations in
    /// decode order.
    pub synthetic_time: bool,
}

/// A demuxer over the best video stream of a file.
pub struct FileReader {
    path: PathBuf,
    input: ffmpeg::format::context::Input,
    stream: usize,
    time_base: ffmpeg::Rational,
    frame_us: i64,
    /// The first timestamp seen (µs, unrebased), which becomes time zero.
    origin: Option<i64>,
    /// Time of the next packet when the file gives none (raw streams).
    next_synthetic: i64,
}

impl FileReader {
    /// Opens `path` and picks its best video stream.
    pub fn open(path: &Path) -> Result<FileReader, CameraError> {
        let fail = |stage: &'static str| {
            move |source: ffmpeg::Error| CameraError::File { path: path.to_owned(), stage, source }
        };
        super::decode::init_ffmpeg();
        let input = ffmpeg::format::input(path).map_err(fail("open"))?;
        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| fail("find a video stream")(ffmpeg::Error::StreamNotFound))?;
        let rate = stream.avg_frame_rate();
        let frame_us = if rate.numerator() > 0 && rate.denominator() > 0 {
            1_000_000 * i64::from(rate.denominator()) / i64::from(rate.numerator())
        } else {
            40_000
        };
        let (index, time_base) = (stream.index(), stream.time_base());
        Ok(FileReader {
            path: path.to_owned(),
            input,
            stream: index,
            time_base,
            frame_us: frame_us.max(1),
            origin: None,
            next_synthetic: 0,
        })
    }

    /// How the decoder is set up for this file (its codec parameters, with any extradata).
    pub fn codec_setup(&self) -> CodecSetup {
        let stream = self.input.stream(self.stream).expect("stream index from best()");
        CodecSetup::Parameters(stream.parameters().clone())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next video packet, or `None` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<FilePacket>, CameraError> {
        loop {
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => return Ok(None),
                Err(source) => {
                    return Err(CameraError::File { path: self.path.clone(), stage: "read", source });
                }
            }
            if packet.stream() != self.stream {
                continue;
            }
            let Some(data) = packet.data() else { continue };
            let us = |ts: i64| self.to_us(ts);
            let duration_us = if packet.duration() > 0 { us(packet.duration()) } else { self.frame_us };
            let (pts, dts, synthetic_time) = match (packet.pts(), packet.dts()) {
                (Some(p), d) => (us(p), d.map(us).unwrap_or(us(p)), false),
                (None, Some(d)) => (us(d), us(d), false),
                (None, None) => (self.next_synthetic, self.next_synthetic, true),
            };
            let origin = *self.origin.get_or_insert(pts.min(dts));
            self.next_synthetic = dts + duration_us;
            return Ok(Some(FilePacket {
                data: data.to_vec(),
                key: packet.is_key(),
                pts_us: pts - origin,
                dts_us: dts - origin,
                duration_us,
                synthetic_time,
            }));
        }
    }

    fn to_us(&self, ts: i64) -> i64 {
        let (num, den) = (i128::from(self.time_base.numerator()), i128::from(self.time_base.denominator()));
        if den == 0 {
            return ts;
        }
        (i128::from(ts) * 1_000_000 * num / den) as i64
    }
}

/// One replay session of a file camera: runs until cancelled, or until the file or the decoder
/// fails. Never ends on its own otherwise (the file loops).
pub(super) async fn run(ctx: &SessionCtx, path: &Path) -> SessionEnd {
    let opened = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || FileReader::open(&path)).await
    };
    let reader = match opened {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return SessionEnd::Failed(e),
        Err(join) => return SessionEnd::Failed(CameraError::Internal(format!("file probe task: {join}"))),
    };
    let mut handle = match ctx.spawn_decoder(reader.codec_setup()) {
        Ok(h) => h,
        Err(e) => return SessionEnd::Failed(e.into()),
    };
    tracing::info!(path = %path.display(), "Replaying file.");
    let (done_tx, mut replay_done) = oneshot::channel();
    let spawned = {
        let (ctx, tx) = (ctx.clone(), handle.tx.clone());
        let span = tracing::Span::current();
        std::thread::Builder::new().name(format!("file-{}", ctx.camera)).spawn(move || {
            let _span = span.entered();
            let _ = done_tx.send(replay(reader, &ctx, tx));
        })
    };
    if let Err(e) = spawned {
        ctx.close_decoder(handle).await;
        return SessionEnd::Failed(CameraError::Internal(format!("cannot start the file thread: {e}")));
    }
    // The replay thread watches the token itself and ends within one pacing step.
    let end = tokio::select! {
        biased;
        r = &mut replay_done => {
            r.unwrap_or_else(|_| SessionEnd::Failed(CameraError::Internal("file thread panicked".into())))
        }
        r = handle.exited() => {
            // The decoder died; the replay notices its closed channel and stops.
            let _ = (&mut replay_done).await;
            SessionEnd::Failed(ctx.decoder_failure(r))
        }
    };
    ctx.close_decoder(handle).await;
    end
}

/// The replay loop, on the file thread.
fn replay(mut reader: FileReader, ctx: &SessionCtx, tx: mpsc::Sender<EncodedFrame>) -> SessionEnd {
    let start_wall = SystemTime::now();
    let start = Instant::now();
    let mut gate = KeyGate::default();
    // Offset of the current loop (µs): the summed durations of the previous loops.
    let mut loop_offset: i64 = 0;
    loop {
        // The loop's presentation span: from its first to past its last frame.
        let (mut first_us, mut end_us) = (i64::MAX, i64::MIN);
        let mut packets = 0u64;
        loop {
            if ctx.token.is_cancelled() {
                return SessionEnd::Cancelled;
            }
            let p = match reader.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => return SessionEnd::Failed(e),
            };
            packets += 1;
            first_us = first_us.min(p.pts_us);
            end_us = end_us.max(p.pts_us + p.duration_us);
            let due = start + micros(loop_offset + p.dts_us);
            if !sleep_until(due, ctx) {
                return SessionEnd::Cancelled;
            }
            ctx.stats.frames_received.fetch_add(1, Relaxed);
            if !gate.admit(p.key, &ctx.stats) {
                continue;
            }
            let frame = EncodedFrame {
                data: p.data,
                key: p.key,
                capture_time: start_wall + micros(loop_offset + p.pts_us),
                decode_order_time: p.synthetic_time,
            };
            // A file can wait for its decoder (no live data is lost by blocking here).
            if tx.blocking_send(frame).is_err() {
                return SessionEnd::Failed(CameraError::Internal("decoder stopped".into()));
            }
        }
        if packets == 0 {
            return SessionEnd::Failed(CameraError::EmptyFile { path: reader.path().to_owned() });
        }
        loop_offset += end_us - first_us;
        tracing::debug!(loop_offset_ms = loop_offset / 1000, "Looping the file.");
        let path = reader.path().to_owned();
        // The next loop starts at the file's first key frame, which the decoder takes as is.
        reader = match FileReader::open(&path) {
            Ok(r) => r,
            Err(e) => return SessionEnd::Failed(e),
        };
    }
}

/// Sleeps until `due` in short steps; false if cancelled meanwhile.
fn sleep_until(due: Instant, ctx: &SessionCtx) -> bool {
    loop {
        if ctx.token.is_cancelled() {
            return false;
        }
        let left = due.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(PACING_STEP));
    }
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(us.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let e = FileReader::open(Path::new("/nonexistent/redeye/clip.mp4")).err().expect("no such file");
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/redeye/clip.mp4") && msg.contains("open"), "{msg}");
    }
}
