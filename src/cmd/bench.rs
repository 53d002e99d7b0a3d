//! `redeye bench vision`: how fast the vision path is, next to OpenCV's pipeline on the same
//! model files, photos and thread count. The command is the benchmark (no criterion): it is what
//! an operator runs on their own hardware to size a deployment.
//!
//! Independent of `cameras.toml`: the models are the spec defaults under `models/` and ONNX
//! Runtime comes from `ORT_DYLIB_PATH` or `third_party/onnxruntime/`, both relative to the
//! current directory, so run it from the repository root (as `make bench` does).

mod decode;
mod measure;
mod opencv;
mod pipeline;
mod visitors;
mod workers;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use image::RgbImage;

use super::CommonArgs;
use crate::vision::letterbox::Letterbox;
use crate::vision::{
    DetectorSpec, Embedder, FacePipeline, ImageLimits, OnnxEmbedder, QualityGate, RecognizerSpec, Runtime,
    SessionOptions, YuNet, decode_image_file,
};
use measure::{Sample, Stats, measure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, Subcommand)]
pub enum What {
    /// Detections/s, embeddings/s and end-to-end faces/s, side by side with OpenCV.
    Vision(VisionArgs),
    /// Crops/s through one recognition worker against pure inference, Redis commands per
    /// crop, and time-to-name p50/p99 (starts its own redis-server).
    Workers(workers::WorkersArgs),
    /// H.264 decode frames/s against the ffmpeg CLI, and CPU per camera.
    Decode(decode::DecodeArgs),
    /// Matching a track against 1k/10k/100k visitors in memory, the atomic resolve round trip,
    /// and Redis memory per visitor (starts its own redis-server).
    Visitors(visitors::VisitorsArgs),
    /// Live RTSP cameras one machine sustains through `redeye run`, against an OpenCV pipeline
    /// on the same streams, at 2 and 5 sampled fps (starts redis-server and the RTSP server).
    Pipeline(pipeline::PipelineArgs),
}

#[derive(Debug, clap::Args)]
pub struct VisionArgs {
    /// Folder of photos (every .jpg, .jpeg, .png in it).
    #[arg(long, default_value = ".cache/photos")]
    pub photos: PathBuf,
    /// Thread counts to run at: ONNX Runtime intra-op threads, and cv2.setNumThreads for OpenCV.
    /// Repeat or comma-separate; default 1 and 2.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    pub threads: Vec<usize>,
    /// Timed seconds per op (after warm-up).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Benchmark redeye alone, without the OpenCV column.
    #[arg(long)]
    pub no_opencv: bool,
}

const MODELS: &str = "models";
/// MobileFaceNet is measured for batching only: SFace's graph cannot batch. Its licence is
/// unclear (models/README.md), so it is optional: its rows are left out if it is absent.
const MOBILEFACENET: &str = "models/mobilefacenet_192d_dynbatch.onnx";
const MFN_BATCHES: [usize; 4] = [1, 8, 16, 32];

pub fn run(_common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let args = match args.what {
        What::Vision(args) => args,
        What::Workers(args) => return workers::run(args),
        What::Decode(args) => return decode::run(args),
        What::Visitors(args) => return visitors::run(args),
        What::Pipeline(args) => return pipeline::run(args),
    };
    anyhow::ensure!(args.seconds > 0.0 && args.seconds.is_finite(), "--seconds must be positive");
    anyhow::ensure!(args.threads.iter().all(|&t| t >= 1), "--threads must be at least 1");
    // Fail before a minute of measuring, not after.
    if !args.no_opencv
        && let Err(msg) = opencv::check()
    {
        eprintln!("error: {msg}");
        return Ok(ExitCode::FAILURE);
    }
    let rt = Runtime::init(None)?;
    let files = photo_files(&args.photos)?;
    // Decoding is excluded from every timing: photos stand in for frames a camera already decoded.
    let photos =
        files.iter().map(|f| decode_image_file(f, &ImageLimits::default())).collect::<Result<Vec<_>, _>>()?;
    let budget = Duration::from_secs_f64(args.seconds);
    let ort_lib = std::fs::canonicalize(rt.path()).unwrap_or_else(|_| rt.path().to_path_buf());
    println!(
        "redeye bench vision: {} photos from {}, decoded into memory first (decode not timed)\n\
         ONNX Runtime {} (sessions at {} threads share one pool, see src/vision/runtime.rs)\n\
         per op: warm-up, then whole passes over the inputs for >= {} s; rate = items / time in calls; \
         latency per call in ms\n\
         machine: {} CPUs, load average {} at start (other processes on the machine skew the numbers)",
        photos.len(),
        args.photos.display(),
        ort_lib.display(),
        rt.shared_threads(),
        args.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
    );
    let mut summary = Vec::new();
    for &threads in &args.threads {
        let ours = bench_redeye(rt, &photos, threads, budget)?;
        let cv = if args.no_opencv {
            None
        } else {
            Some(opencv::run(threads, args.seconds, Path::new(MODELS), &files)?)
        };
        print!("{}", table(threads, &ours, cv.as_ref()));
        if let Some(cv) = &cv {
            let r = |ours: &[Sample], op: &str| Stats::of(ours).rate / Stats::of(&cv.ops[op]).rate;
            summary.push(format!(
                "{threads} thread(s): detect x{:.2}, embed x{:.2}, end to end x{:.2}",
                r(&ours.detect_photo, "detect_photo"),
                r(&ours.embed_sface, "embed_sface"),
                r(&ours.e2e, "e2e"),
            ));
        }
    }
    println!("\nload average at the end: {}", load_average());
    if !summary.is_empty() {
        println!("redeye / OpenCV throughput (> 1: redeye faster): {}", summary.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

/// The 1-minute load average, to judge whether other work disturbed the run.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().next().unwrap_or("?").to_owned()
}

/// A TCP port free on the loopback now, for a server the benchmark starts.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Every image file in `dir`, sorted (the OpenCV side gets the same list).
fn photo_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let is_image = |p: &Path| {
        let ext = p.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png"))
    };
    let rd = std::fs::read_dir(dir).with_context(|| {
        format!("cannot list {} (run scripts/setup.sh for the test photos)", dir.display())
    })?;
    let mut files: Vec<PathBuf> =
        rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_image(p)).collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no .jpg/.jpeg/.png photos in {}", dir.display());
    Ok(files)
}

/// redeye's samples at one thread count.
struct Redeye {
    detect_frame: Vec<Sample>,
    detect_photo: Vec<Sample>,
    embed_sface: Vec<Sample>,
    /// (batch, samples); empty when the model file is absent.
    mobilefacenet: Vec<(usize, Vec<Sample>)>,
    e2e: Vec<Sample>,
    faces_per_pass: usize,
    /// VmHWM after YuNet + SFace (the pipeline compared with OpenCV), and after MobileFaceNet.
    peak_rss_kib: Option<u64>,
    peak_rss_all_kib: Option<u64>,
}

fn bench_redeye(
    rt: &Runtime,
    photos: &[RgbImage],
    threads: usize,
    budget: Duration,
) -> anyhow::Result<Redeye> {
    measure::reset_peak_rss();
    let opts = SessionOptions { intra_threads: threads, ..SessionOptions::default() };
    let from_root =
        "the models are looked up relative to the current directory: run from the repository root";
    let yunet = YuNet::load(rt, DetectorSpec::default(), &opts).context(from_root)?;
    let sface = OnnxEmbedder::load(rt, RecognizerSpec::default(), &opts).context(from_root)?;
    let mut p = FacePipeline::new(Box::new(yunet), QualityGate::default(), Box::new(sface));

    // Photos already letterboxed to 640x640: detect() on them is YuNet at its native size plus
    // the u8 -> f32 NCHW fill, decode and NMS, the same work as FaceDetectorYN.detect on a
    // 640x640 image.
    let frames: Vec<RgbImage> = photos.iter().map(letterboxed).collect();
    let detect_frame = measure(&frames, budget, |f| p.detector.detect(f).map(|_| 1).map_err(Into::into))?;
    let detect_photo = measure(photos, budget, |f| p.detector.detect(f).map(|_| 1).map_err(Into::into))?;

    // The embedders run on this pipeline's own aligned crops that pass the quality gate.
    let mut crops = Vec::new();
    for photo in photos {
        let faces = p.detect_and_align(photo)?;
        crops.extend(faces.into_iter().filter(|f| f.gate.is_ok()).map(|f| f.crop));
    }
    anyhow::ensure!(!crops.is_empty(), "no face passed the quality gate in the photos");
    let embed_sface = measure(&crops, budget, |c| Ok(p.embedder.embed(std::slice::from_ref(c))?.len()))?;

    // End to end per photo: letterbox, detect, align, gate, embed; items = faces embedded.
    let embedded = |p: &mut FacePipeline, f: &RgbImage| -> anyhow::Result<usize> {
        Ok(p.analyse(f)?.iter().filter(|o| o.embedding().is_some()).count())
    };
    let e2e = measure(photos, budget, |f| embedded(&mut p, f))?;
    let faces_per_pass = photos.iter().map(|f| embedded(&mut p, f)).sum::<anyhow::Result<usize>>()?;
    let peak_rss_kib = measure::peak_rss_kib();
    drop(p);

    let mut mobilefacenet = Vec::new();
    if Path::new(MOBILEFACENET).is_file() {
        for batch in MFN_BATCHES {
            let mut emb = OnnxEmbedder::load(rt, mobilefacenet_spec(batch), &opts)?;
            // Batches made by cycling over the crops, so that every batch is full.
            let n = crops.len().div_ceil(batch);
            let batches: Vec<Vec<RgbImage>> = (0..n)
                .map(|i| (0..batch).map(|j| crops[(i * batch + j) % crops.len()].clone()).collect())
                .collect();
            mobilefacenet.push((batch, measure(&batches, budget, |b| Ok(emb.embed(b)?.len()))?));
        }
    }
    Ok(Redeye {
        detect_frame,
        detect_photo,
        embed_sface,
        mobilefacenet,
        e2e,
        faces_per_pass,
        peak_rss_kib,
        peak_rss_all_kib: measure::peak_rss_kib(),
    })
}

/// The spec from models/README.md, with `max_batch` the batch to measure.
fn mobilefacenet_spec(max_batch: usize) -> RecognizerSpec {
    RecognizerSpec {
        model: MOBILEFACENET.into(),
        id: "mobilefacenet-192d".into(),
        input: "input".into(),
        output: "embeddings".into(),
        mean: 127.5,
        scale: 0.0078125,
        dim: 192,
        max_batch,
        ..RecognizerSpec::default()
    }
}

/// `img` letterboxed to 640x640 as the detector does, back as 8-bit RGB.
fn letterboxed(img: &RgbImage) -> RgbImage {
    let mut lb = Letterbox::new(640);
    lb.fill(img);
    let plane = 640 * 640;
    let t = lb.tensor();
    let px = |c: usize, i: usize| t[c * plane + i].round().clamp(0.0, 255.0) as u8;
    // The tensor's planes are B, G, R.
    RgbImage::from_fn(640, 640, |x, y| {
        let i = (y * 640 + x) as usize;
        image::Rgb([px(2, i), px(1, i), px(0, i)])
    })
}

/// One thread count's rows.
fn table(threads: usize, ours: &Redeye, cv: Option<&opencv::Report>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nthreads = {threads}");
    let _ = writeln!(
        out,
        "{:<38} {:<8} | {:>33} | {:>33} | redeye/",
        "",
        "",
        "redeye rate  mean   p50   p99 ms",
        match cv {
            Some(cv) => format!("OpenCV {} rate  mean   p50   p99 ms", cv.opencv_version),
            None => "OpenCV (--no-opencv)".into(),
        }
    );
    let cell = |s: Option<&[Sample]>| match s {
        Some(s) => {
            let st = Stats::of(s);
            format!("{:>12.1} {:>6.1} {:>5.1} {:>5.1}   ", st.rate, st.mean_ms, st.p50_ms, st.p99_ms)
        }
        None => format!("{:>12}{:21}", "-", ""),
    };
    let mut row = |name: &str, unit: &str, ours: &[Sample], theirs: Option<&str>| {
        let theirs = theirs.and_then(|op| cv.map(|cv| &cv.ops[op][..]));
        let ratio =
            theirs.map_or("-".into(), |t| format!("x{:.2}", Stats::of(ours).rate / Stats::of(t).rate));
        let _ = writeln!(out, "{name:<38} {unit:<8} | {} | {} | {ratio:>7}", cell(Some(ours)), cell(theirs));
    };
    row("detect: YuNet on a 640x640 frame", "frames/s", &ours.detect_frame, Some("detect_frame"));
    row("detect: photo (letterbox+YuNet+NMS)", "frames/s", &ours.detect_photo, Some("detect_photo"));
    row("embed: SFace, batch 1 (fixed)", "faces/s", &ours.embed_sface, Some("embed_sface"));
    for (batch, s) in &ours.mobilefacenet {
        row(&format!("embed: MobileFaceNet, batch {batch}"), "faces/s", s, None);
    }
    let e2e = match cv {
        Some(cv) => format!("end to end ({}/{} faces)", ours.faces_per_pass, cv.faces_per_pass),
        None => format!("end to end ({} faces)", ours.faces_per_pass),
    };
    row(&e2e, "faces/s", &ours.e2e, Some("e2e"));
    let mib = |k: Option<u64>| k.map_or("?".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0));
    let _ = writeln!(
        out,
        "peak RSS: redeye {} (YuNet + SFace), {} with MobileFaceNet; OpenCV {} (Python process)",
        mib(ours.peak_rss_kib),
        mib(ours.peak_rss_all_kib),
        cv.map_or("-".into(), |cv| mib(Some(cv.peak_rss_kib)))
    );
    if let Some((batch, best)) =
        ours.mobilefacenet.iter().map(|(b, s)| (b, Stats::of(s).rate)).max_by(|a, b| a.1.total_cmp(&b.1))
    {
        let _ = writeln!(
            out,
            "best batch: SFace 1 (its graph fixes the batch dimension at 1: input [1,3,112,112]); \
             MobileFaceNet {batch} at {best:.1} faces/s"
        );
    }
    out
}
