//! The composed real-video test clips (tests/support/clips.rs) are what they claim: the size,
//! length, frame rate, GOP and stream layout the other tests rely on, live frames (no frozen
//! stretch), and the faces where the spec puts them, counted by the real YuNet detector.
//!
//! Missing ffmpeg, videos or models is a failure that says to run the setup, never a skip.

mod support;

use std::path::Path;
use std::process::Command;

use image::RgbImage;
use redeye::vision::{Detector, DetectorSpec, Runtime, SessionOptions, YuNet};
use support::clips::{self, VideoClip};
use support::{ort_library, repo};

const SETUP: &str = "run make setup (it installs ffmpeg and fetches the test videos)";

fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): {SETUP}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// `key=value` lines of ffprobe's default writer for each stream of `clip`.
fn streams(clip: &Path) -> Vec<Vec<(String, String)>> {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=index,codec_type,codec_name,width,height,pix_fmt,r_frame_rate,nb_frames,duration,has_b_frames",
            "-of",
            "default=nw=1",
            &clip.to_string_lossy(),
        ],
    );
    let mut streams: Vec<Vec<(String, String)>> = Vec::new();
    for line in String::from_utf8(out).unwrap().lines() {
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("ffprobe line {line:?}"));
        if k == "index" {
            streams.push(Vec::new());
        }
        streams.last_mut().unwrap().push((k.to_owned(), v.to_owned()));
    }
    streams
}

fn field<'a>(stream: &'a [(String, String)], key: &str) -> &'a str {
    &stream.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no {key} in {stream:?}")).1
}

/// Key flag of every video packet, in decode order (which is display order without B-frames).
fn key_flags(clip: &Path) -> Vec<bool> {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=flags",
            "-of",
            "csv=p=0",
            &clip.to_string_lossy(),
        ],
    );
    String::from_utf8(out).unwrap().lines().map(|l| l.starts_with('K')).collect()
}

/// The decoded frame at `seconds` of `clip`, as RGB.
fn frame(clip: &Path, seconds: f32, width: u32, height: u32) -> RgbImage {
    let raw = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-ss",
            &seconds.to_string(),
            "-i",
            &clip.to_string_lossy(),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
    );
    RgbImage::from_raw(width, height, raw)
        .unwrap_or_else(|| panic!("{}: no {width}x{height} frame at {seconds} s", clip.display()))
}

fn detector() -> YuNet {
    let rt = Runtime::init(Some(&ort_library())).unwrap_or_else(|e| panic!("{e}"));
    let spec =
        DetectorSpec { model: repo().join("models/face_detection_yunet_2023mar.onnx"), ..Default::default() };
    YuNet::load(rt, spec, &SessionOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Builds `spec` and checks it, then for each `(seconds, faces)` that the frame there and the
/// one a second later differ and that both hold `faces` faces.
fn check(spec: &VideoClip, faces_at: &[(f32, usize)]) {
    let clip = clips::video_clip(spec);
    let (w, h, frames) = (spec.width, spec.height, spec.frames());
    let streams = streams(&clip);
    assert_eq!(streams.len(), 1, "{}: one video stream, no audio: {streams:?}", clip.display());
    let s = &streams[0];
    assert_eq!(field(s, "codec_type"), "video");
    assert_eq!(field(s, "codec_name"), "h264");
    assert_eq!(field(s, "pix_fmt"), "yuv420p");
    assert_eq!((field(s, "width"), field(s, "height")), (w.to_string().as_str(), h.to_string().as_str()));
    assert_eq!(field(s, "r_frame_rate"), format!("{}/1", clips::FPS));
    assert_eq!(field(s, "has_b_frames"), "0");
    assert_eq!(field(s, "nb_frames"), frames.to_string(), "{}: frames", clip.display());
    let duration: f32 = field(s, "duration").parse().unwrap();
    assert!(
        (duration - spec.seconds()).abs() < 0.05,
        "{}: {duration} s, expected {}",
        clip.display(),
        spec.seconds()
    );

    let keys = key_flags(&clip);
    assert_eq!(keys.len(), frames as usize, "{}: packets", clip.display());
    for (n, &key) in keys.iter().enumerate() {
        assert_eq!(key, n % clips::GOP as usize == 0, "{}: key flag of frame {n}", clip.display());
    }

    let mut detector = detector();
    for &(t, faces) in faces_at {
        let (a, b) = (frame(&clip, t, w, h), frame(&clip, t + 1.0, w, h));
        assert_ne!(
            a.as_raw(),
            b.as_raw(),
            "{}: frames at {t} s and {} s are the same",
            clip.display(),
            t + 1.0
        );
        for (at, img) in [(t, &a), (t + 1.0, &b)] {
            let found = detector.detect(img).unwrap();
            assert_eq!(found.len(), faces, "{}: faces at {at} s: {found:?}", clip.display());
        }
    }
}

#[test]
fn franck_minute() {
    check(&clips::franck_minute(), &[(1.0, 1), (30.0, 1), (58.0, 1)]);
}

#[test]
fn franck_gap() {
    let spec = clips::franck_gap();
    assert_eq!(spec.seconds(), clips::GAP_SECONDS);
    check(
        &spec,
        &[
            (1.0, 1),
            (clips::GAP_LEAVES - 1.5, 1),
            (clips::GAP_LEAVES + 0.5, 0),
            (clips::GAP_RETURNS - 1.5, 0),
            (clips::GAP_RETURNS + 0.5, 1),
            (clips::GAP_SECONDS - 1.5, 1),
        ],
    );
}

#[test]
fn side_by_side() {
    check(&clips::side_by_side(), &[(1.0, 2), (15.0, 2), (28.0, 2)]);
}

#[test]
fn crossing() {
    let spec = clips::crossing();
    assert_eq!(spec.seconds(), clips::CROSSING_SECONDS);
    // Halfway through the crossing the man in front hides Franck.
    let middle = (clips::CROSSING_START + clips::CROSSING_END) / 2.0;
    check(&spec, &[(1.0, 2), (middle - 0.5, 1), (clips::CROSSING_SECONDS - 2.0, 2)]);
}
