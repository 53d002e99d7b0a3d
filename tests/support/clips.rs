//! Test video clips made from the registry face photos with the `ffmpeg` CLI.
//!
//! A clip is a slideshow: each photo scaled and padded to the frame size, shown for a while,
//! with a little temporal noise so that every frame differs (static slides would make the
//! P-frames nearly free to decode, which hides decode costs). Clips are cached in
//! `.cache/clips/` under a name that carries a hash of the photos' bytes and of the ffmpeg
//! arguments, so a change to either makes a new clip and a stale one is never reused. Tests run
//! in parallel processes, so a clip is written to a temporary name and renamed into place.

use std::path::{Path, PathBuf};
use std::process::Command;

use md5::{Digest, Md5};

const SETUP: &str = "run make setup (it installs ffmpeg and fetches the test photos)";

/// Video codec of a clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
}

/// What a clip looks like.
#[derive(Debug, Clone)]
pub struct ClipSpec {
    /// Prefix of the file name. Keep `h265` in it for H.265 clips: the RTSP test server picks
    /// its payloader from the file name.
    pub name: &'static str,
    /// Photos from the test photo directory, in slideshow order.
    pub photos: &'static [&'static str],
    pub width: u32,
    pub height: u32,
    /// Seconds each photo is shown.
    pub seconds_per_photo: f32,
    /// B-frames between references (`-bf`); 0 for none.
    pub b_frames: u32,
    pub codec: Codec,
}

/// The slideshow photos: several people, one face each.
pub const FACES: &[&str] =
    &["obama.jpg", "biden.jpg", "cage.jpg", "franck_01829.jpg", "franck_02888.jpg", "franck_04000.jpg"];

/// Frames per second of every clip.
pub const FPS: u32 = 25;
/// Frames per GOP: one key frame a second, exactly (no scene-cut key frames).
pub const GOP: u32 = 25;

/// 640x480 H.264 without B-frames.
pub fn vga() -> ClipSpec {
    ClipSpec {
        name: "faces-vga",
        photos: FACES,
        width: 640,
        height: 480,
        seconds_per_photo: 1.6,
        b_frames: 0,
        codec: Codec::H264,
    }
}

/// 640x480 H.264 with two B-frames between references.
pub fn vga_bframes() -> ClipSpec {
    ClipSpec { name: "faces-vga-bf2", b_frames: 2, ..vga() }
}

/// 1280x720 H.264 without B-frames.
pub fn hd() -> ClipSpec {
    ClipSpec { name: "faces-hd", width: 1280, height: 720, ..vga() }
}

/// A 1.6 s 640x480 H.264 clip with B-frames (two photos), for looping file sources.
pub fn short() -> ClipSpec {
    ClipSpec {
        name: "faces-short-bf2",
        photos: &["obama.jpg", "cage.jpg"],
        seconds_per_photo: 0.8,
        b_frames: 2,
        ..vga()
    }
}

/// 640x480 H.265 without B-frames.
pub fn vga_h265() -> ClipSpec {
    ClipSpec { name: "faces-vga-h265", codec: Codec::H265, ..vga() }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The photo directory (`REDEYE_PHOTOS_DIR`, default `.cache/photos`).
pub fn photos_dir() -> PathBuf {
    std::env::var_os("REDEYE_PHOTOS_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join(".cache/photos"))
}

fn clips_dir() -> PathBuf {
    let dir = repo().join(".cache/clips");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// The mp4 for `spec`, made on first use and cached by content.
pub fn clip(spec: &ClipSpec) -> PathBuf {
    let photos: Vec<PathBuf> = spec.photos.iter().map(|p| photos_dir().join(p)).collect();
    let args = ffmpeg_args(spec, &photos);
    let mut hash = Md5::new();
    for p in &photos {
        let bytes = std::fs::read(p)
            .unwrap_or_else(|e| panic!("test photo {} is missing ({e}): {SETUP}", p.display()));
        hash.update(&bytes);
    }
    // Photo paths are hashed by content above; the arguments without them define the encoding.
    for a in args.iter().filter(|a| !photos.iter().any(|p| Path::new(a) == p)) {
        hash.update(a.as_bytes());
        hash.update([0]);
    }
    let key = hex::encode(hash.finalize());
    let out = clips_dir().join(format!("{}-{}.mp4", spec.name, &key[..12]));
    if !out.is_file() {
        make(&args, &out);
    }
    out
}

/// The same stream as raw Annex-B H.264 (`.h264`), for file sources without a container.
pub fn raw_h264(mp4: &Path) -> PathBuf {
    let out = mp4.with_extension("h264");
    if !out.is_file() {
        let args: Vec<String> =
            ["-i", &mp4.to_string_lossy(), "-c:v", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "h264"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        make(&args, &out);
    }
    out
}

fn ffmpeg_args(spec: &ClipSpec, photos: &[PathBuf]) -> Vec<String> {
    let (w, h) = (spec.width, spec.height);
    let mut args: Vec<String> = vec!["-hide_banner".into(), "-loglevel".into(), "error".into(), "-y".into()];
    for p in photos {
        args.extend(
            ["-loop", "1", "-framerate", &FPS.to_string(), "-t", &spec.seconds_per_photo.to_string()]
                .map(String::from),
        );
        args.extend(["-i".to_string(), p.to_string_lossy().into_owned()]);
    }
    let mut graph = String::new();
    for i in 0..photos.len() {
        graph += &format!(
            "[{i}:v]scale={w}:{h}:force_original_aspect_ratio=decrease,\
             pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[v{i}];"
        );
    }
    for i in 0..photos.len() {
        graph += &format!("[v{i}]");
    }
    graph += &format!("concat=n={}:v=1:a=0,noise=alls=6:allf=t[out]", photos.len());
    let encoder = match spec.codec {
        Codec::H264 => vec!["-c:v", "libx264", "-sc_threshold", "0"],
        // x265 takes scene-cut and logging settings through its own parameter string.
        Codec::H265 => {
            vec!["-c:v", "libx265", "-x265-params", "scenecut=0:log-level=error", "-tag:v", "hvc1"]
        }
    };
    args.extend([
        "-filter_complex".to_string(),
        graph,
        "-map".into(),
        "[out]".into(),
        "-r".into(),
        FPS.to_string(),
    ]);
    args.extend(encoder.into_iter().map(String::from));
    args.extend(
        [
            "-preset",
            "veryfast",
            "-g",
            &GOP.to_string(),
            "-keyint_min",
            &GOP.to_string(),
            "-bf",
            &spec.b_frames.to_string(),
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
        ]
        .map(String::from),
    );
    args
}

/// Runs ffmpeg with `args` writing to a temporary file next to `out`, then renames it into place.
fn make(args: &[String], out: &Path) {
    let tmp = out.with_file_name(format!(
        ".{}.{}.tmp.{}",
        out.file_name().unwrap().to_string_lossy(),
        std::process::id(),
        out.extension().unwrap().to_string_lossy()
    ));
    let result = Command::new("ffmpeg").args(args).arg(&tmp).output();
    let output = result.unwrap_or_else(|e| panic!("cannot run ffmpeg ({e}): {SETUP}"));
    if !output.status.success() {
        let _ = std::fs::remove_file(&tmp);
        panic!(
            "ffmpeg failed making {} ({}): {}\nargs: {args:?}",
            out.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::rename(&tmp, out).unwrap_or_else(|e| panic!("cannot rename {} into place: {e}", tmp.display()));
}
