//! Camera ingestion against real peers: GStreamer's RTSP server (scripts/rtsp_server.py), real
//! libavcodec decoding of real x264/x265 clips made from the test photos, and real YuNet.
//!
//! Missing GStreamer, ffmpeg, photos or models is a failure that says to run the setup, never a
//! skip. Every test is bounded by [`TEST_TIMEOUT`] and every wait by its own deadline, so a hang
//! fails fast with the cameras' counters in the message.

mod support;

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use md5::{Digest, Md5};
use redeye::camera::{
    BackoffPolicy, CROP_SIZE, CameraSpec, CameraStats, CameraTask, DecodeSettings, Decoder, DetectedFrame,
    DropReason, EncodedFrame, FaceCrop, FaceSink, FileReader, FrameSlots, GroupIngest, GroupOptions,
    GroupSpec, RtspSource, Source, Timeouts, yunet_detectors,
};
use redeye::config::Transport;
use redeye::vision::{DetectorSpec, QualityGate, Runtime, SessionOptions};
use support::clips;
use support::rtsp::RtspServer;
use tokio_util::sync::CancellationToken;

const TEST_TIMEOUT: Duration = Duration::from_secs(90);
/// One frame of the 25 fps clips.
const FRAME: Duration = Duration::from_millis(40);

/// Runs `f` on a fresh multi-threaded runtime, failing if it takes longer than [`TEST_TIMEOUT`].
fn run_test<F: std::future::Future<Output = ()>>(f: F) {
    redeye::telemetry::install_for_tests();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        if tokio::time::timeout(TEST_TIMEOUT, f).await.is_err() {
            panic!("test did not finish within {TEST_TIMEOUT:?}");
        }
    });
}

fn rtsp_camera(name: &str, url: &str, transport: Transport, fps: f64) -> CameraSpec {
    CameraSpec {
        name: name.into(),
        source: Source::Rtsp(RtspSource {
            url: url.parse().unwrap(),
            transport,
            username_env: None,
            password_env: None,
        }),
        fps,
        key_frames_only: false,
        sample_phase: 0.0,
    }
}

fn file_camera(name: &str, path: &Path, fps: f64) -> CameraSpec {
    CameraSpec {
        name: name.into(),
        source: Source::File(path.to_owned()),
        fps,
        key_frames_only: false,
        sample_phase: 0.0,
    }
}

/// Quick reconnects and short stall detection, for tests.
fn test_options() -> GroupOptions {
    GroupOptions {
        backoff: BackoffPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(1),
            healthy_after: Duration::from_secs(30),
        },
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            stall: Duration::from_secs(3),
            ..Timeouts::default()
        },
    }
}

/// A frame as the detection side saw it.
#[derive(Debug, Clone)]
struct Seen {
    camera: String,
    number: u64,
    time: SystemTime,
    /// When the detection side got it.
    arrived: SystemTime,
    key: bool,
    size: (u32, u32),
}

/// Camera tasks feeding one set of slots, with a thread collecting what comes out (standing in
/// for the detection pool, so that tests see every frame's metadata).
struct Running {
    token: CancellationToken,
    slots: Arc<FrameSlots>,
    cameras: Vec<(String, Arc<CameraStats>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    collector: std::thread::JoinHandle<()>,
}

impl Running {
    fn start(specs: Vec<CameraSpec>, options: &GroupOptions) -> Running {
        let token = CancellationToken::new();
        let slots = FrameSlots::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut cameras = Vec::new();
        let mut tasks = Vec::new();
        for spec in specs {
            let stats = Arc::new(CameraStats::default());
            cameras.push((spec.name.to_string(), stats.clone()));
            let task = CameraTask::new(spec, slots.register(stats.clone()), stats)
                .with_backoff(options.backoff.clone())
                .with_timeouts(options.timeouts);
            tasks.push(tokio::spawn(task.run(token.child_token())));
        }
        let collector = {
            let (slots, seen) = (slots.clone(), seen.clone());
            std::thread::spawn(move || {
                while let Some((f, _)) = slots.take() {
                    let size = f.image.dimensions();
                    seen.lock().unwrap().push(Seen {
                        camera: f.camera.to_string(),
                        number: f.frame_number,
                        time: f.capture_time,
                        arrived: SystemTime::now(),
                        key: f.key_frame,
                        size,
                    });
                }
            })
        };
        Running { token, slots, cameras, tasks, seen, collector }
    }

    fn stats(&self, name: &str) -> &Arc<CameraStats> {
        &self.cameras.iter().find(|(n, _)| n == name).expect("camera exists").1
    }

    fn report(&self) -> String {
        self.cameras.iter().map(|(n, s)| format!("\n  {n}: {:?}", s.snapshot())).collect()
    }

    /// Polls `cond` until it holds, panicking with every camera's counters after `within`.
    async fn wait_for(&self, what: &str, within: Duration, cond: impl Fn(&Running) -> bool) {
        let deadline = Instant::now() + within;
        while !cond(self) {
            if Instant::now() > deadline {
                panic!("timed out after {within:?} waiting for {what};{}", self.report());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Cancels, waits for the tasks (TEARDOWN included) and returns every frame seen.
    async fn stop(self) -> Vec<Seen> {
        self.token.cancel();
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(15), t)
                .await
                .expect("camera task stops promptly when cancelled")
                .expect("camera task does not panic");
        }
        self.slots.close();
        self.collector.join().unwrap();
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

fn of<'a>(seen: &'a [Seen], camera: &str) -> Vec<&'a Seen> {
    seen.iter().filter(|s| s.camera == camera).collect()
}

/// Frame numbers rise, capture times rise and are 40 ms apart per frame number (RTP or file time,
/// not arrival time), and key frames are exactly those `is_key` expects. `start` is when the
/// camera task started: the first capture time must be near it.
///
/// An RTSP session's first frames may be squeezed closer (never reordered) until its fastest
/// frame is seen (see `src/camera/rtsp.rs`): from the second key frame on, the spacing is exact.
fn check_timeline(frames: &[&Seen], start: SystemTime, is_key: impl Fn(u64) -> bool) {
    assert!(!frames.is_empty(), "no frames");
    let first = frames[0];
    let lag = first.time.duration_since(start).unwrap_or_default();
    assert!(lag < Duration::from_secs(5), "first capture time {lag:?} after the start");
    let settled = first.number + u64::from(clips::GOP);
    for w in frames.windows(2) {
        let (a, b) = (w[0], w[1]);
        assert!(b.number > a.number, "frame numbers must rise: {a:?} then {b:?}");
        let expected = FRAME * (b.number - a.number) as u32;
        let actual = b.time.duration_since(a.time).unwrap_or_else(|_| panic!("time went back: {a:?} {b:?}"));
        assert!(actual > Duration::ZERO, "{a:?} -> {b:?}: the same capture time");
        if a.number < settled {
            assert!(actual <= expected + Duration::from_millis(2), "{a:?} -> {b:?}: {actual:?} apart");
            continue;
        }
        let err = actual.abs_diff(expected);
        assert!(err <= Duration::from_millis(2), "{a:?} -> {b:?}: {actual:?} apart, expected {expected:?}");
    }
    for f in frames {
        assert_eq!(f.key, is_key(f.number), "key flag of {f:?}");
    }
}

/// Key frames of a clip played from its start: one every GOP.
fn on_gop(n: u64) -> bool {
    n.is_multiple_of(u64::from(clips::GOP))
}

/// Over one transport: an H.264 clip without B-frames, one with B-frames and a 720p one, all
/// received, decoded at their size, on the right timeline.
fn frames_arrive_and_decode(transport: Transport) {
    let (vga, bf, hd) =
        (clips::clip(&clips::vga()), clips::clip(&clips::vga_bframes()), clips::clip(&clips::hd()));
    let server = RtspServer::start(&[("vga", &vga), ("bf", &bf), ("hd", &hd)]);
    run_test(async {
        let start = SystemTime::now();
        let cams = vec![
            rtsp_camera("vga", &server.url("vga"), transport, 25.0),
            rtsp_camera("bf", &server.url("bf"), transport, 25.0),
            rtsp_camera("hd", &server.url("hd"), transport, 25.0),
        ];
        let run = Running::start(cams, &test_options());
        let enough =
            |r: &Running| ["vga", "bf", "hd"].iter().all(|c| r.stats(c).frames_decoded.load(Relaxed) >= 75);
        run.wait_for("75 decoded frames per camera", Duration::from_secs(30), enough).await;
        let report = run.report();
        let snaps: Vec<_> = ["vga", "bf", "hd"].iter().map(|c| run.stats(c).snapshot()).collect();
        let seen = run.stop().await;
        for (cam, snap) in ["vga", "bf", "hd"].iter().zip(&snaps) {
            let size = if *cam == "hd" { (1280, 720) } else { (640, 480) };
            let frames = of(&seen, cam);
            assert!(frames.len() >= 50, "{cam}: only {} frames reached the slot;{report}", frames.len());
            assert!(frames.iter().all(|f| f.size == size), "{cam}: wrong size;{report}");
            check_timeline(&frames, start, on_gop);
            assert_eq!(snap.reconnects, 0, "{cam};{report}");
            for reason in [DropReason::DecodeError, DropReason::Backlog, DropReason::WaitingForKey] {
                assert_eq!(snap.dropped(reason), 0, "{cam}: {reason:?};{report}");
            }
            // Everything received is decoded, but for the few frames in flight at the snapshot.
            assert!(snap.frames_received - snap.frames_decoded <= 5, "{cam};{report}");
            eprintln!(
                "{cam} over {transport:?}: {} frames decoded, {:.2} ms decode + {:.2} ms RGB per frame",
                snap.frames_decoded,
                snap.decode_nanos as f64 / 1e6 / snap.frames_decoded as f64,
                snap.convert_nanos as f64 / 1e6 / snap.frames_sampled.max(1) as f64
            );
        }
    });
}

#[test]
fn rtsp_over_tcp_frames_arrive_and_decode() {
    frames_arrive_and_decode(Transport::Tcp);
}

#[test]
fn rtsp_over_udp_frames_arrive_and_decode() {
    frames_arrive_and_decode(Transport::Udp);
}

#[test]
fn rtsp_h265_decodes() {
    let clip = clips::clip(&clips::vga_h265());
    let server = RtspServer::start(&[("h265", &clip)]);
    run_test(async {
        let start = SystemTime::now();
        let run = Running::start(
            vec![rtsp_camera("h265", &server.url("h265"), Transport::Tcp, 25.0)],
            &test_options(),
        );
        run.wait_for("50 decoded frames", Duration::from_secs(30), |r| {
            r.stats("h265").frames_decoded.load(Relaxed) >= 50
        })
        .await;
        let snap = run.stats("h265").snapshot();
        let seen = run.stop().await;
        let frames = of(&seen, "h265");
        assert!(frames.iter().all(|f| f.size == (640, 480)));
        check_timeline(&frames, start, on_gop);
        assert_eq!(snap.dropped(DropReason::DecodeError), 0, "{snap:?}");
    });
}

/// Sampling keeps about `fps` frames a second and counts the rest.
#[test]
fn sampling_drops_and_counts_frames_between_samples() {
    let clip = clips::clip(&clips::vga());
    let server = RtspServer::start(&[("vga", &clip)]);
    run_test(async {
        let run = Running::start(
            vec![rtsp_camera("cam", &server.url("vga"), Transport::Tcp, 5.0)],
            &test_options(),
        );
        run.wait_for("100 decoded frames", Duration::from_secs(30), |r| {
            r.stats("cam").frames_decoded.load(Relaxed) >= 100
        })
        .await;
        let s = run.stats("cam").snapshot();
        run.stop().await;
        // 25 fps down to 5: one frame in five kept.
        let kept = s.frames_sampled as f64 / s.frames_decoded as f64;
        assert!((0.17..=0.23).contains(&kept), "kept {kept:.3}: {s:?}");
        assert_eq!(s.frames_sampled + s.dropped(DropReason::Sampling), s.frames_decoded, "{s:?}");
    });
}

/// Decodes a whole file synchronously, as fast as possible.
struct Decoded {
    frames: Vec<(u64, bool, (u32, u32))>,
    packets: usize,
    key_packets: usize,
    decode: Duration,
    convert: Duration,
    /// Packets the decoder counted as skipped non-key frames.
    non_key: u64,
}

fn decode_file(path: &Path, key_frames_only: bool) -> Decoded {
    let mut reader = FileReader::open(path).unwrap();
    let stats = Arc::new(CameraStats::default());
    let settings = DecodeSettings { fps: 1000.0, key_frames_only, sample_phase: 0.0 };
    let mut dec =
        Decoder::new("bench".into(), reader.codec_setup(), settings, stats.clone(), Arc::default()).unwrap();
    let base = SystemTime::now();
    let (mut frames, mut packets, mut key_packets) = (Vec::new(), 0, 0);
    let mut out = |f: redeye::camera::Frame| frames.push((f.frame_number, f.key_frame, f.image.dimensions()));
    while let Some(p) = reader.next_packet().unwrap() {
        packets += 1;
        key_packets += usize::from(p.key);
        let capture_time = base + Duration::from_micros(p.pts_us as u64);
        let frame =
            EncodedFrame { data: p.data, key: p.key, capture_time, decode_order_time: p.synthetic_time };
        dec.push(&frame, &mut out).unwrap();
    }
    dec.finish(&mut out);
    Decoded {
        frames,
        packets,
        key_packets,
        decode: Duration::from_nanos(stats.decode_nanos.load(Relaxed)),
        convert: Duration::from_nanos(stats.convert_nanos.load(Relaxed)),
        non_key: stats.dropped(DropReason::NonKey),
    }
}

/// `skip_frame = AVDISCARD_NONKEY` outputs only the key frames, each at its place in the stream,
/// and counts every other packet as skipped. (How much decode time that saves is printed here
/// for information; a benchmark, not this test, is the place to judge it.)
#[test]
fn key_frames_only_outputs_only_the_key_frames_and_counts_the_rest() {
    for spec in [clips::vga(), clips::vga_bframes(), clips::hd()] {
        let clip = clips::clip(&spec);
        let full = decode_file(&clip, false);
        let keys = decode_file(&clip, true);
        assert_eq!(full.frames.len(), full.packets, "{}: every frame decoded", spec.name);
        assert_eq!(keys.frames.len(), keys.key_packets, "{}: only key frames", spec.name);
        assert!(keys.frames.iter().all(|&(n, key, _)| key && on_gop(n)), "{}", spec.name);
        assert!(keys.frames.iter().all(|&(_, _, size)| size == (spec.width, spec.height)));
        let non_key = (keys.packets - keys.key_packets) as u64;
        assert_eq!(keys.non_key, non_key, "{}: every non-key packet counted as skipped", spec.name);
        assert_eq!(full.non_key, 0, "{}: a full decode skips nothing", spec.name);
        let numbers: Vec<u64> = full.frames.iter().map(|f| f.0).collect();
        assert_eq!(
            numbers,
            (0..full.packets as u64).collect::<Vec<_>>(),
            "{}: presentation order",
            spec.name
        );
        let per = |d: Duration, n: usize| d.as_secs_f64() * 1e3 / n as f64;
        eprintln!(
            "{}: full decode {:.2} ms/frame ({} frames, RGB {:.2} ms/frame); key-frames-only {:.2} ms per \
             input frame ({:.1}% of full)",
            spec.name,
            per(full.decode, full.packets),
            full.packets,
            per(full.convert, full.frames.len()),
            per(keys.decode, keys.packets),
            100.0 * keys.decode.as_secs_f64() / full.decode.as_secs_f64()
        );
    }
}

/// A file source replays at native pace and loops, continuing frame numbers and times; both an
/// mp4 (with B-frames) and a raw Annex-B .h264 of it.
#[test]
fn file_source_loops_with_continuing_numbers_and_times() {
    let mp4 = clips::clip(&clips::short());
    let raw = clips::raw_h264(&mp4);
    run_test(async {
        let start = SystemTime::now();
        let keys = CameraSpec { key_frames_only: true, ..file_camera("keys", &mp4, 25.0) };
        let cams = vec![file_camera("mp4", &mp4, 25.0), file_camera("raw", &raw, 25.0), keys];
        let run = Running::start(cams, &test_options());
        // The clip lasts 1.6 s (40 frames): 100 frames means at least two loops.
        run.wait_for("two loops", Duration::from_secs(20), |r| {
            ["mp4", "raw"].iter().all(|c| r.stats(c).frames_decoded.load(Relaxed) >= 100)
        })
        .await;
        let keys = run.stats("keys").snapshot();
        let seen = run.stop().await;
        for cam in ["mp4", "raw"] {
            let frames = of(&seen, cam);
            // Native pace: no frame is handed on ahead of its capture time (give or take the
            // B-frame reordering), where an unpaced replay would hand on 100 frames, 4 s of
            // video, within the milliseconds it takes to decode them.
            let early: Vec<_> =
                frames.iter().filter(|f| f.arrived + Duration::from_millis(200) < f.time).collect();
            assert!(early.is_empty(), "{cam}: frames ahead of their time: {early:?}");
            assert!(frames.iter().any(|f| f.number >= 80), "{cam}: no frame of the third loop");
            // Each loop starts with the file's first key frame, at frame 40.
            check_timeline(&frames, start, |n| on_gop(n % 40));
        }
        // Key frames only: two a loop (frames 0 and 25), numbered in the same stream positions.
        let frames = of(&seen, "keys");
        assert!(frames.len() >= 4 && frames.iter().all(|f| f.key && on_gop(f.number % 40)), "{frames:?}");
        assert!(keys.dropped(DropReason::NonKey) >= keys.frames_decoded * 10, "{keys:?}");
    });
}

/// The RTSP server in `--loop` mode (the demo's and the pipeline benchmark's cameras) replays a
/// clip without end, as a live camera: one session streams through three passes of a 1.6 s clip
/// with B-frames, never reconnecting, its capture times running on 40 ms a frame across the
/// seams (the RTP clock does not jump back) and never after the frame's arrival.
#[test]
fn looping_rtsp_server_streams_like_a_live_camera() {
    let clip = clips::clip(&clips::short());
    let server = RtspServer::start_looping(&[("short", &clip)]);
    run_test(async {
        let start = SystemTime::now();
        let run = Running::start(
            vec![rtsp_camera("live", &server.url("short"), Transport::Tcp, 25.0)],
            &test_options(),
        );
        // 40 frames a pass: 120 frames is three passes, 4.8 s, past the 3 s stall timeout.
        run.wait_for("three passes", Duration::from_secs(30), |r| {
            r.stats("live").frames_decoded.load(Relaxed) >= 120
        })
        .await;
        let stats = run.stats("live").snapshot();
        let seen = run.stop().await;
        assert_eq!(stats.reconnects, 0, "{stats:?}");
        let frames = of(&seen, "live");
        let late: Vec<_> = frames.iter().filter(|f| f.time > f.arrived).collect();
        assert!(late.is_empty(), "stamped after they arrived: {late:?}");
        // The session starts at the first key frame; every pass starts with one.
        check_timeline(&frames, start, |n| on_gop(n % 40));
    });
}

/// Killing the RTSP server mid-stream and starting it again on the same port: both a TCP and a
/// UDP camera reconnect by themselves, count it, and keep their frame numbers rising.
#[test]
fn cameras_reconnect_after_the_server_restarts() {
    let clip = clips::clip(&clips::vga());
    let mut server = RtspServer::start(&[("vga", &clip)]);
    run_test(async {
        let cams = vec![
            rtsp_camera("tcp", &server.url("vga"), Transport::Tcp, 10.0),
            rtsp_camera("udp", &server.url("vga"), Transport::Udp, 10.0),
        ];
        let run = Running::start(cams, &test_options());
        let both = |r: &Running, f: fn(&CameraStats) -> bool| ["tcp", "udp"].iter().all(|c| f(r.stats(c)));
        run.wait_for("streaming", Duration::from_secs(20), |r| {
            both(r, |s| s.frames_decoded.load(Relaxed) >= 25)
        })
        .await;
        server.stop();
        run.wait_for("both sessions to end", Duration::from_secs(15), |r| both(r, |s| !s.up.load(Relaxed)))
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        server.restart();
        let before: Vec<u64> =
            ["tcp", "udp"].iter().map(|c| run.stats(c).frames_decoded.load(Relaxed)).collect();
        run.wait_for("reconnected and streaming again", Duration::from_secs(30), |r| {
            ["tcp", "udp"].iter().zip(&before).all(|(c, b)| {
                let s = r.stats(c);
                s.reconnects.load(Relaxed) >= 1
                    && s.up.load(Relaxed)
                    && s.frames_decoded.load(Relaxed) >= b + 25
            })
        })
        .await;
        let seen = run.stop().await;
        for cam in ["tcp", "udp"] {
            let numbers: Vec<u64> = of(&seen, cam).iter().map(|f| f.number).collect();
            assert!(numbers.windows(2).all(|w| w[1] > w[0]), "{cam}: {numbers:?}");
            assert!(
                numbers.last() > Some(&before[0].min(before[1])),
                "{cam}: numbers continue after the reconnect"
            );
        }
    });
}

/// `MOUNT=FILE@START` (what `bench pipeline` uses to put its cameras out of step) starts each
/// session at the key frame at START seconds of the clip: the first frame received over RTSP is,
/// byte for byte, the clip's frame there once decoded (key frames decode identically).
#[test]
fn looping_rtsp_server_starts_a_mount_where_asked() {
    let clip = clips::clip(&clips::vga());
    let from_two = std::path::PathBuf::from(format!("{}@2", clip.display()));
    let server = RtspServer::start_looping(&[("start", &clip), ("later", &from_two)]);
    // The first frame of an RTSP mount, or frame `n` of the file, as grey pixels.
    let grab = |input: &[&str], n: u32| {
        let out = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error"])
            .args(input)
            .args(["-vf", &format!("select=eq(n\\,{n})"), "-frames:v", "1", "-f", "rawvideo"])
            .args(["-pix_fmt", "gray", "-"])
            .output()
            .expect("ffmpeg (run `make setup`)");
        assert!(
            out.status.success() && out.stdout.len() == 640 * 480,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let file = clip.to_str().unwrap();
    let (frame_0, frame_50) = (grab(&["-i", file], 0), grab(&["-i", file], 50));
    assert_ne!(frame_0, frame_50, "the clip shows another photo at 2 s");
    let rtsp = |mount: &str| grab(&["-rtsp_transport", "tcp", "-i", &server.url(mount)], 0);
    assert!(rtsp("start") == frame_0, "an unshifted mount starts at the clip's first frame");
    assert!(rtsp("later") == frame_50, "@2 starts at the key frame 2 s in (frame 50)");
}

/// A camera whose URL refuses connections retries with a growing, capped delay, while a
/// healthy camera in the same group streams undisturbed.
#[test]
fn refused_camera_backs_off_without_disturbing_a_healthy_one() {
    let clip = clips::clip(&clips::vga());
    let server = RtspServer::start(&[("vga", &clip)]);
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("rtsp://127.0.0.1:{}/nothing", l.local_addr().unwrap().port())
    };
    run_test(async {
        let mut options = test_options();
        options.backoff.initial = Duration::from_millis(100);
        options.backoff.max = Duration::from_millis(1600);
        let cams = vec![
            rtsp_camera("bad", &refused, Transport::Tcp, 5.0),
            rtsp_camera("good", &server.url("vga"), Transport::Tcp, 5.0),
        ];
        let run = Running::start(cams, &options);
        // Follow the backoff ceiling of the failing camera for 6 s.
        let mut ceilings = Vec::new();
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            let c = run.stats("bad").backoff_ceiling_ms.load(Relaxed);
            if ceilings.last() != Some(&c) {
                ceilings.push(c);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (bad, good) = (run.stats("bad").snapshot(), run.stats("good").snapshot());
        run.stop().await;
        // (The first refusal may come before the first look.)
        ceilings.retain(|&c| c != 0);
        // Full jitter can draw a delay of well under the 5 ms sampling period, so a step may
        // pass unseen (CI once missed 400): every ceiling seen is a step of the doubling
        // ladder, they rise, and they reach the cap. `backoff`'s unit tests check each step.
        let ladder = [100, 200, 400, 800, 1600];
        assert!(
            ceilings.iter().all(|c| ladder.contains(c))
                && ceilings.windows(2).all(|w| w[0] < w[1])
                && ceilings.len() >= 3
                && ceilings.last() == Some(&1600),
            "the delay ceiling doubles up to the cap: {ceilings:?}"
        );
        // Refusals are instant: without backoff this would be thousands of attempts. With the
        // ceilings above the expected delays sum to about 1.5 s before the cap, then 0.8 s each.
        assert!((5..=40).contains(&bad.reconnects), "{bad:?}");
        assert!(!bad.up && bad.frames_received == 0, "{bad:?}");
        assert_eq!(good.reconnects, 0, "{good:?}");
        assert!(good.frames_decoded >= 100, "the healthy camera streamed all along: {good:?}");
    });
}

/// A detector that takes its time and finds nothing.
struct SlowDetector(Duration);

impl redeye::vision::Detector for SlowDetector {
    fn detect(
        &mut self,
        _img: &image::RgbImage,
    ) -> Result<Vec<redeye::vision::Detection>, redeye::vision::VisionError> {
        std::thread::sleep(self.0);
        Ok(Vec::new())
    }
}

/// Detection far slower than the cameras: the newest-frame slots drop (and count) the frames it
/// cannot take, while the RTSP readers and decoders keep full pace.
#[test]
fn slow_detection_never_stalls_the_cameras() {
    let clip = clips::clip(&clips::vga());
    let server = RtspServer::start(&[("vga", &clip)]);
    run_test(async {
        let token = CancellationToken::new();
        let cameras = vec![
            rtsp_camera("a", &server.url("vga"), Transport::Tcp, 25.0),
            rtsp_camera("b", &server.url("vga"), Transport::Udp, 25.0),
        ];
        let spec = GroupSpec { name: "g".into(), cameras };
        let detector: Box<dyn redeye::vision::Detector> = Box::new(SlowDetector(Duration::from_millis(250)));
        let sink = Arc::new(Collect::default());
        let group =
            GroupIngest::start(spec, test_options(), vec![detector], QualityGate::default(), sink, &token)
                .unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        let snaps: Vec<_> = group.cameras().iter().map(|(_, s)| s.snapshot()).collect();
        token.cancel();
        tokio::time::timeout(Duration::from_secs(20), group.join()).await.expect("group stops");
        // The readers are not held back: every frame received is decoded, the frames detection
        // cannot take are replaced in the slot (never backlogged), and all are accounted for.
        for s in &snaps {
            assert!(s.frames_received - s.frames_decoded <= 5, "{s:?}");
            assert_eq!(s.dropped(DropReason::Backlog), 0, "{s:?}");
            assert!(s.dropped(DropReason::Replaced) >= 50, "{s:?}");
            // Every sampled frame was either taken by detection, replaced, or is still waiting.
            let accounted = s.frames_detected + s.dropped(DropReason::Replaced);
            assert!(s.frames_sampled - accounted <= 1, "{s:?}");
        }
    });
}

/// The faces the detection stage hands on, collected (frames without faces add nothing).
#[derive(Default)]
struct Collect(Mutex<Vec<FaceCrop>>);

impl FaceSink for Collect {
    fn accept(&self, frame: DetectedFrame) {
        self.0.lock().unwrap().extend(frame.faces);
    }
}

/// Real frames through real YuNet: aligned 112x112 crops, JPEG bytes whose MD5 is the key.
#[test]
fn faces_come_out_of_the_detection_stage() {
    let clip = clips::clip(&clips::vga());
    let server = RtspServer::start(&[("vga", &clip)]);
    let model = support::repo().join("models").join("face_detection_yunet_2023mar.onnx");
    assert!(model.is_file(), "{} is missing: run make setup", model.display());
    let rt = Runtime::init(None).unwrap_or_else(|e| panic!("{e}"));
    let detectors = yunet_detectors(
        rt,
        &DetectorSpec { model, ..DetectorSpec::default() },
        &SessionOptions::default(),
        1,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    run_test(async {
        let start = SystemTime::now();
        let sink = Arc::new(Collect::default());
        let token = CancellationToken::new();
        let spec = GroupSpec {
            name: "lobby".into(),
            cameras: vec![rtsp_camera("door", &server.url("vga"), Transport::Tcp, 4.0)],
        };
        let group =
            GroupIngest::start(spec, test_options(), detectors, QualityGate::default(), sink.clone(), &token)
                .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while group.detect_stats().frames.load(Relaxed) < 20 {
            assert!(Instant::now() < deadline, "detection saw too few frames: {:?}", group.detect_stats());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        token.cancel();
        let cam = group.camera_stats("door").unwrap().clone();
        let stats = group.detect_stats().clone();
        tokio::time::timeout(Duration::from_secs(20), group.join()).await.expect("group stops");
        let crops = std::mem::take(&mut *sink.0.lock().unwrap());
        let frames = stats.frames.load(Relaxed);
        eprintln!(
            "detection: {frames} frames, {} faces, {} accepted, {:.1} ms/frame; camera {:?}",
            stats.faces_detected.load(Relaxed),
            crops.len(),
            stats.detect_nanos.load(Relaxed) as f64 / 1e6 / frames as f64,
            cam.snapshot()
        );
        // One face per slide; most pass the gate (biden.jpg's face is small once scaled).
        assert!(crops.len() as u64 >= frames / 2, "{} crops from {frames} frames", crops.len());
        assert!(crops.len() as u64 <= frames * 2, "{} crops from {frames} frames", crops.len());
        assert_eq!(stats.faces_accepted.load(Relaxed), crops.len() as u64);
        // Every frame that detection took was counted on the camera.
        assert_eq!(cam.frames_detected.load(Relaxed), frames);
        let mut md5s = std::collections::HashSet::new();
        for c in &crops {
            assert_eq!((&*c.camera, &*c.group), ("door", "lobby"));
            let e = c.encode().expect("an encoded crop");
            assert_eq!(e.md5, hex::encode(Md5::digest(&e.jpeg)), "md5 is of exactly the JPEG bytes");
            md5s.insert(e.md5);
            let decoded = image::load_from_memory(&e.jpeg).expect("a valid JPEG").to_rgb8();
            assert_eq!(decoded.dimensions(), (CROP_SIZE, CROP_SIZE));
            assert_eq!(c.crop.dimensions(), (CROP_SIZE, CROP_SIZE));
            assert!(c.score >= 0.65, "{}", c.score);
            assert!(
                c.bbox.x >= 0.0
                    && c.bbox.y >= 0.0
                    && c.bbox.x + c.bbox.w <= 640.0
                    && c.bbox.y + c.bbox.h <= 480.0
            );
            let lag = c.capture_time.duration_since(start).expect("captured after the start");
            assert!(lag < Duration::from_secs(30));
        }
        // Different slides, different faces: the crops are not all one image.
        assert!(md5s.len() >= crops.len() / 2);
    });
}
