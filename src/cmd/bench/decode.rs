//! `redeye bench decode`: H.264 decode speed of the camera path (ffmpeg-next through
//! [`crate::camera::Decoder`]) against the `ffmpeg` CLI decoding the same clip with the same
//! thread count (`-threads 1 -benchmark -f null`), and the CPU one camera costs.
//!
//! Clips are made from the test photos with the ffmpeg CLI (a slideshow with a little temporal
//! noise, so P-frames carry real residuals; 25 fps, a key frame every 2 s, B-frames like most
//! cameras) and cached in `.cache/bench`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Context as _;

use crate::camera::decode::CodecSetup;
use crate::camera::{CameraStats, DecodeSettings, Decoder, EncodedFrame, FileReader};

#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// Folder of photos the clips are made from.
    #[arg(long, default_value = ".cache/photos")]
    pub photos: PathBuf,
    /// Length of each clip in seconds.
    #[arg(long, default_value_t = 12)]
    pub seconds: u32,
}

const FPS: u32 = 25;

pub fn run(args: DecodeArgs) -> anyhow::Result<ExitCode> {
    println!(
        "H.264 decode, one thread, {}-second clips at {FPS} fps (frames/s; higher is better)",
        args.seconds
    );
    println!(
        "{:<7} {:>14} {:>16} {:>14} {:>8}",
        "clip", "redeye decode", "redeye + RGB", "ffmpeg CLI", "ratio"
    );
    let mut cpu_clip = None;
    for (name, w, h) in [("720p", 1280, 720), ("1080p", 1920, 1080)] {
        let clip = make_clip(&args.photos, name, w, h, args.seconds)?;
        // fps 0.01: every frame is decoded, almost none converted to RGB.
        let decode_only =
            decode(&clip, DecodeSettings { fps: 0.01, key_frames_only: false, sample_phase: 0.0 })?;
        let with_rgb =
            decode(&clip, DecodeSettings { fps: 60.0, key_frames_only: false, sample_phase: 0.0 })?;
        let cli = ffmpeg_cli(&clip)?;
        println!(
            "{name:<7} {:>14.0} {:>16.0} {:>14.0} {:>7.2}x",
            decode_only.fps(),
            with_rgb.fps(),
            cli,
            decode_only.fps() / cli
        );
        cpu_clip.get_or_insert(clip);
    }
    let clip = cpu_clip.expect("two clips");
    let video = f64::from(args.seconds);
    println!("\nCPU per 720p camera at 25 fps (share of one core; decode + RGB of the sampled frames)");
    for (label, settings) in [
        ("every frame to RGB", DecodeSettings { fps: 25.0, key_frames_only: false, sample_phase: 0.0 }),
        ("sampled at 2 fps", DecodeSettings { fps: 2.0, key_frames_only: false, sample_phase: 0.0 }),
        ("key frames only", DecodeSettings { fps: 2.0, key_frames_only: true, sample_phase: 0.0 }),
    ] {
        let r = decode(&clip, settings)?;
        println!(
            "{label:<20} {:>6.1}% of a core ({} frames out)",
            r.cpu.as_secs_f64() / video * 100.0,
            r.out
        );
    }
    Ok(ExitCode::SUCCESS)
}

struct Decoded {
    decoded: u64,
    out: u64,
    wall: Duration,
    cpu: Duration,
}

impl Decoded {
    fn fps(&self) -> f64 {
        self.decoded as f64 / self.wall.as_secs_f64()
    }
}

/// Decodes the whole clip on this thread; the demuxing is not timed.
fn decode(clip: &Path, settings: DecodeSettings) -> anyhow::Result<Decoded> {
    let mut reader = FileReader::open(clip)?;
    let mut packets = Vec::new();
    while let Some(p) = reader.next_packet()? {
        packets.push(EncodedFrame {
            data: p.data,
            key: p.key,
            capture_time: UNIX_EPOCH + Duration::from_micros(p.pts_us.max(0) as u64),
            decode_order_time: p.synthetic_time,
        });
    }
    let stats = Arc::new(CameraStats::default());
    let setup: CodecSetup = reader.codec_setup();
    let mut decoder =
        Decoder::new("bench".into(), setup, settings, stats.clone(), Arc::new(AtomicU64::new(0)))?;
    let mut out = 0u64;
    let (cpu0, t) = (thread_cpu(), Instant::now());
    for p in &packets {
        decoder.push(p, &mut |_frame| out += 1)?;
    }
    decoder.finish(&mut |_frame| out += 1);
    Ok(Decoded {
        decoded: stats.frames_decoded.load(Relaxed),
        out,
        wall: t.elapsed(),
        cpu: thread_cpu() - cpu0,
    })
}

/// CPU time of the calling thread (the decoder runs on it: libavcodec with one thread).
fn thread_cpu() -> Duration {
    // First field of schedstat: nanoseconds this thread spent on a CPU.
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(text.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Frames/s of `ffmpeg -threads 1` decoding `clip` to nothing, from its `-benchmark` line.
fn ffmpeg_cli(clip: &Path) -> anyhow::Result<f64> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-benchmark", "-threads", "1", "-i"])
        .arg(clip)
        .args(["-f", "null", "-"])
        .output()
        .context("running ffmpeg (run `make setup`)")?;
    let err = String::from_utf8_lossy(&out.stderr);
    let rtime = err
        .lines()
        .find_map(|l| l.split("rtime=").nth(1))
        .and_then(|v| v.trim_end_matches('s').trim().parse::<f64>().ok())
        .with_context(|| format!("no rtime in ffmpeg's output:\n{err}"))?;
    let frames = err
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("frame=").or_else(|| l.split("frame=").nth(1)))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    anyhow::ensure!(frames > 0.0, "ffmpeg decoded no frames:\n{err}");
    Ok(frames / rtime)
}

fn make_clip(photos: &Path, name: &str, w: u32, h: u32, seconds: u32) -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(".cache/bench");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(format!("{name}-{seconds}s.mp4"));
    if out.is_file() {
        return Ok(out);
    }
    let faces = ["obama.jpg", "cage.jpg", "franck_01829.jpg", "biden.jpg"];
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"]);
    let per = seconds as f32 / faces.len() as f32;
    let mut graph = String::new();
    for (i, f) in faces.iter().enumerate() {
        cmd.args(["-loop", "1", "-framerate", &FPS.to_string(), "-t", &per.to_string(), "-i"])
            .arg(photos.join(f));
        graph += &format!(
            "[{i}:v]scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[v{i}];"
        );
    }
    for i in 0..faces.len() {
        graph += &format!("[v{i}]");
    }
    graph += &format!("concat=n={}:v=1:a=0,noise=alls=8:allf=t[out]", faces.len());
    let status = cmd
        .args(["-filter_complex", &graph, "-map", "[out]", "-c:v", "libx264", "-preset", "veryfast"])
        .args(["-g", "50", "-bf", "2", "-sc_threshold", "0"])
        .arg(&out)
        .status()
        .context("running ffmpeg (run `make setup`)")?;
    anyhow::ensure!(status.success(), "ffmpeg could not make {}", out.display());
    Ok(out)
}
