//! `redeye bench workers`: one recognition worker against a real `redis-server` this command
//! starts on a free port. Prints crops/s through the worker next to the pure inference time of
//! the same batches (the worker's overhead), Redis commands per crop, and time-to-name
//! (capture to event) p50/p99 at a fixed offered load below capacity.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use image::RgbImage;
use tokio_util::sync::CancellationToken;

use crate::bus::streams::StreamCap;
use crate::bus::{Bus, Credentials, Keys, Topology, consumer_name, events, streams};
use crate::camera::encode_jpeg;
use crate::instrument::unix_millis;
use crate::recognition::content_key;
use crate::recognize::embed_service::EmbedService;
use crate::recognize::gallery::LiveGallery;
use crate::recognize::worker::{RecognitionWorker, Settings, WorkerStats};
use crate::vision::{
    ARCFACE_TEMPLATE, BBox, Detector, DetectorSpec, Embedder, ImageLimits, OnnxEmbedder, RecognizerSpec,
    Runtime, SessionOptions, YuNet, align_face, decode_image_file,
};
use crate::wire::{Event, FaceEntry};

#[derive(Debug, clap::Args)]
pub struct WorkersArgs {
    /// Folder of photos the crops are made from.
    #[arg(long, default_value = ".cache/photos")]
    pub photos: PathBuf,
    /// Crops pushed through the worker.
    #[arg(long, default_value_t = 400)]
    pub crops: usize,
    /// Entries per XREADGROUP (the worker's batch).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// ONNX Runtime intra-op threads of the worker's session.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Offered load for the time-to-name run, as a fraction of the measured capacity.
    #[arg(long, default_value_t = 0.5)]
    pub load: f64,
}

/// A `redis-server` on a free port, killed on drop. Without persistence it writes nothing.
pub(super) struct Server(Child, pub(super) u16);

impl Server {
    pub(super) fn start() -> anyhow::Result<Server> {
        let port = super::free_port()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server (run `make setup`)")?;
        Ok(Server(child, port))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(args: WorkersArgs) -> anyhow::Result<ExitCode> {
    let rt = Runtime::init(None)?;
    let opts = SessionOptions { intra_threads: args.threads, ..Default::default() };
    let crops = make_crops(rt, &args.photos, args.crops)?;
    let recognizer = RecognizerSpec::default();
    let mut embedder = OnnxEmbedder::load(rt, recognizer.clone(), &opts)?;

    // Pure inference over the same batches the worker will form, after a warm-up run (the
    // first run of a session allocates and tunes).
    embedder.embed(&[crops[0].0.clone()])?;
    let t = Instant::now();
    for chunk in crops.chunks(args.batch) {
        let rgb: Vec<RgbImage> = chunk.iter().map(|(rgb, _)| rgb.clone()).collect();
        embedder.embed(&rgb)?;
    }
    let pure = t.elapsed();

    let server = Server::start()?;
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = tokio.block_on(async {
        let url = format!("redis://127.0.0.1:{}", server.1);
        let bus = connect_retrying(&url).await?;
        let embed = EmbedService::spawn("bench-embed", Box::new(embedder))?;
        let report = through_worker(&bus, embed, &crops, &args, pure).await?;
        let scaling = scaling(rt, &bus, &crops, &args).await?;
        let memory = memory(&bus, &crops).await?;
        anyhow::Ok(format!("{report}\n\n{scaling}\n\n{memory}"))
    })?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// Crops/s and CPU with one worker and with two, each with its own model session (what a second
/// worker process adds), the threads of the machine split between them.
async fn scaling(
    rt: &Runtime,
    bus: &Bus,
    crops: &[(RgbImage, Vec<u8>)],
    args: &WorkersArgs,
) -> anyhow::Result<String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = format!("scaling on {cores} cores ({} crops each run)\n", crops.len());
    for workers in [1usize, 2] {
        let group = format!("scale-{workers}");
        for (i, (_, jpeg)) in crops.iter().enumerate() {
            add(bus, &entry_in(&group, jpeg, i as u64)).await?;
        }
        let threads = (cores / workers).max(1);
        let opts = SessionOptions { intra_threads: threads, ..Default::default() };
        let token = CancellationToken::new();
        let mut handles = Vec::new();
        let before = bus_events(bus).await?;
        let (cpu0, t) = (process_cpu(), Instant::now());
        for w in 0..workers {
            let embedder = OnnxEmbedder::load(rt, RecognizerSpec::default(), &opts)?;
            let embed = EmbedService::spawn(&format!("scale-{w}"), Box::new(embedder))?;
            let worker = RecognitionWorker {
                bus: bus.clone(),
                group: group.clone(),
                consumer: consumer_name(),
                gallery: Arc::new(LiveGallery::new(embed.model_id(), embed.dim(), Default::default())),
                visitors: None,
                embed,
                settings: settings(args.batch),
                stats: Arc::new(WorkerStats::default()),
                health: Default::default(),
                group_ready: Default::default(),
            };
            handles.push(tokio::spawn(worker.run(token.clone())));
        }
        while bus_events(bus).await? < before + crops.len() as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (wall, cpu) = (t.elapsed(), process_cpu() - cpu0);
        token.cancel();
        for h in handles {
            let _ = h.await;
        }
        out += &format!(
            "{workers} worker(s) x {threads} thread(s)   {:>8.1} crops/s   CPU {:.2} cores\n",
            crops.len() as f64 / wall.as_secs_f64(),
            cpu.as_secs_f64() / wall.as_secs_f64()
        );
    }
    Ok(out)
}

async fn bus_events(bus: &Bus) -> anyhow::Result<u64> {
    event_count(bus).await
}

/// CPU time of the whole process (user + system), from /proc/self/stat in clock ticks of
/// 1/100 s (`CLK_TCK` is 100 on Linux x86_64).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the parenthesised command name come state, ppid, ... ; utime and stime are fields
    // 14 and 15 of the whole line, so 12th and 13th here (indices 11 and 12).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

fn settings(batch: usize) -> Settings {
    Settings {
        batch,
        block_ms: 100,
        claim_idle_ms: 60_000,
        max_deliveries: 5,
        cache_ttl_secs: 600,
        dead: StreamCap::count(10_000),
        events: StreamCap::count(1_000_000),
        face_events: true,
        record_ttl_secs: 600,
        vote: crate::visit::VotePolicy::default(),
        publishing: crate::visit::Publishing {
            events: StreamCap::count(1_000_000),
            record_ttl_secs: 600,
            visitor_ttl_secs: 0,
        },
        stale_consumer_ms: 6 * 3_600_000,
    }
}

pub(super) async fn connect_retrying(url: &str) -> anyhow::Result<Bus> {
    let keys = Keys::new("bench", "image", "bench:events");
    for _ in 0..50 {
        if let Ok(bus) =
            Bus::connect(Topology::Single { url: url.to_owned() }, Credentials::none(), keys.clone()).await
        {
            return Ok(bus);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("redis-server on {url} did not answer")
}

/// Aligned crops from the photos' faces, nudged by sub-pixel offsets so each is distinct.
pub(super) fn make_crops(
    rt: &Runtime,
    dir: &std::path::Path,
    n: usize,
) -> anyhow::Result<Vec<(RgbImage, Vec<u8>)>> {
    let spec = DetectorSpec::default();
    let mut detector = YuNet::load(rt, spec, &SessionOptions::default())?;
    let mut faces = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("{} (run `make setup`)", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jpg") {
            let img = decode_image_file(&path, &ImageLimits::default())?;
            if let Some(face) = detector.detect(&img)?.into_iter().next() {
                faces.push((img, face.landmarks));
            }
        }
    }
    anyhow::ensure!(!faces.is_empty(), "no faces in {}", dir.display());
    Ok((0..n)
        .map(|i| {
            let (img, landmarks) = &faces[i % faces.len()];
            let d = 0.1 * (i / faces.len()) as f32;
            let nudged = landmarks.map(|[x, y]| [x + d, y]);
            let rgb = align_face(img, &nudged, 112);
            let jpeg = encode_jpeg(&rgb).expect("in-memory JPEG");
            (rgb, jpeg)
        })
        .collect())
}

fn entry(jpeg: &[u8], frame: u64) -> FaceEntry {
    entry_in("bench", jpeg, frame)
}

fn entry_in(group: &str, jpeg: &[u8], frame: u64) -> FaceEntry {
    FaceEntry {
        md5: content_key(jpeg),
        camera: "bench".into(),
        group: group.into(),
        capture_ts: unix_millis(),
        frame,
        bbox: BBox { x: 0.0, y: 0.0, w: 112.0, h: 112.0 },
        score: 0.9,
        landmarks: ARCFACE_TEMPLATE,
        crop: jpeg.to_vec(),
        crop_size: 112,
        model: RecognizerSpec::default().id,
    }
}

async fn add(bus: &Bus, e: &FaceEntry) -> anyhow::Result<()> {
    let fields = e.to_fields();
    let pairs: Vec<(&str, &[u8])> = fields.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    streams::append_capped(
        &mut bus.group(&e.group),
        &bus.keys().faces(&e.group),
        StreamCap::count(1_000_000),
        &pairs,
    )
    .await?;
    Ok(())
}

async fn event_count(bus: &Bus) -> anyhow::Result<u64> {
    Ok(streams::stream_len(&mut bus.shared(), bus.keys().events_stream()).await?)
}

async fn through_worker(
    bus: &Bus,
    embed: EmbedService,
    crops: &[(RgbImage, Vec<u8>)],
    args: &WorkersArgs,
    pure: Duration,
) -> anyhow::Result<String> {
    let n = crops.len();
    // 1. Capacity: a backlog of n crops, drained by one worker.
    for (i, (_, jpeg)) in crops.iter().enumerate() {
        add(bus, &entry(jpeg, i as u64)).await?;
    }
    let before = command_calls(bus).await?;
    let token = CancellationToken::new();
    let settings = settings(args.batch);
    let worker = RecognitionWorker {
        bus: bus.clone(),
        group: "bench".into(),
        consumer: consumer_name(),
        embed: embed.clone(),
        gallery: Arc::new(LiveGallery::new(embed.model_id(), embed.dim(), Default::default())),
        visitors: None,
        settings,
        stats: Arc::new(WorkerStats::default()),
        health: Default::default(),
        group_ready: Default::default(),
    };
    let handle = tokio::spawn(worker.run(token.clone()));
    let t = Instant::now();
    while event_count(bus).await? < n as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained = t.elapsed();
    let after = command_calls(bus).await?;
    let per_crop = worker_commands(&before, &after) as f64 / n as f64;

    // 2. Time-to-name at a fixed offered load below capacity.
    let capacity = n as f64 / drained.as_secs_f64();
    let rate = capacity * args.load;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let m = n.min(200);
    let start_id = last_event_id(bus).await?;
    let t = Instant::now();
    for (i, (_, jpeg)) in crops.iter().take(m).enumerate() {
        tokio::time::sleep_until((t + interval * i as u32).into()).await;
        add(bus, &entry(jpeg, (n + i) as u64)).await?;
    }
    while event_count(bus).await? < (n + m) as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut ttn: Vec<u64> =
        events::read_range(&mut bus.shared(), bus.keys().events_stream(), &start_id, m + 10)
            .await?
            .iter()
            .filter_map(|e| serde_json::from_slice::<Event>(events::payload(e)?).ok())
            .map(|e| e.event_ts.saturating_sub(e.capture_ts))
            .collect();
    ttn.sort_unstable();
    token.cancel();
    let _ = handle.await;
    let pct = |p: f64| ttn[((ttn.len() - 1) as f64 * p).round() as usize];
    let pure_rate = n as f64 / pure.as_secs_f64();
    Ok(format!(
        "one worker, batch {}, {} ONNX Runtime thread(s), {n} crops\n\
         pure inference (same batches)   {pure_rate:>8.1} crops/s\n\
         through the worker               {capacity:>8.1} crops/s  (overhead {:.1}%)\n\
         Redis commands per crop          {per_crop:>8.2}\n\
         time-to-name at {rate:.1} crops/s ({:.0}% load), {} crops: p50 {} ms, p99 {} ms",
        args.batch,
        args.threads,
        (1.0 - capacity / pure_rate) * 100.0,
        args.load * 100.0,
        ttn.len(),
        pct(0.5),
        pct(0.99)
    ))
}

/// Redis memory per faces stream entry, cached result and event, for sizing a deployment: the
/// `used_memory` delta over as many items as there are crops, on the bench's own server.
async fn memory(bus: &Bus, crops: &[(RgbImage, Vec<u8>)]) -> anyhow::Result<String> {
    let n = crops.len() as i64;
    let per = |before: i64, after: i64| (after - before) as f64 / n as f64;
    let before = used(bus).await?;
    let mut jpeg_bytes = 0;
    for (i, (_, jpeg)) in crops.iter().enumerate() {
        add(bus, &entry_in("memory", jpeg, i as u64)).await?;
        jpeg_bytes += jpeg.len();
    }
    let entries = used(bus).await?;
    let result = crate::recognition::CachedResult::for_crop(
        &RecognizerSpec::default().id,
        1,
        crate::recognition::FaceResult {
            bbox: None,
            person_id: Some("barack-obama".into()),
            name: Some("Barack Obama".into()),
            score: 0.77,
            rejected: None,
        },
    );
    let mut conn = bus.group("memory");
    for (_, jpeg) in crops {
        crate::bus::cache::set_json(&mut conn, &bus.keys().image(&content_key(jpeg)), &result, 86_400)
            .await?;
    }
    let cached = used(bus).await?;
    let stream = format!("{}:memory-events", bus.keys().prefix());
    for (i, (_, jpeg)) in crops.iter().enumerate() {
        let face = entry_in("memory", jpeg, i as u64);
        let event = crate::recognition::face_event(
            &format!("memory:{i}"),
            &face,
            &result.faces[0],
            &result.model,
            false,
        );
        let payload = serde_json::to_vec(&event)?;
        streams::append_capped(
            &mut bus.shared(),
            &stream,
            StreamCap::count(1_000_000),
            &[("event", payload.as_slice())],
        )
        .await?;
    }
    let evented = used(bus).await?;
    Ok(format!(
        "Redis memory per item (used_memory delta over {n} of each; the JPEG crops average {:.0} B)\n\
         faces stream entry               {:>8.0} B\n\
         cached result (image:<md5>)      {:>8.0} B\n\
         event in the events stream       {:>8.0} B",
        jpeg_bytes as f64 / n as f64,
        per(before, entries),
        per(entries, cached),
        per(cached, evented),
    ))
}

/// Redis's `used_memory` (INFO memory), bytes.
pub(super) async fn used(bus: &Bus) -> anyhow::Result<i64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut bus.shared()).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .context("INFO memory has no used_memory")
}

/// Calls per command so far (`INFO commandstats`).
async fn command_calls(bus: &Bus) -> anyhow::Result<HashMap<String, u64>> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut bus.shared()).await?;
    Ok(info
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect())
}

/// Commands sent between two snapshots, leaving out this benchmark's own polling.
fn worker_commands(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> u64 {
    after
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "xlen" | "info"))
        .map(|(name, calls)| calls - before.get(name).copied().unwrap_or(0))
        .sum()
}

async fn last_event_id(bus: &Bus) -> anyhow::Result<String> {
    let last: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XREVRANGE")
        .arg(bus.keys().events_stream())
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut bus.shared())
        .await?;
    Ok(last.into_iter().next().map_or_else(|| "0-0".to_owned(), |(id, _)| id))
}
