//! `redeye bench visitors`: what matching a track against the recent visitors costs, with 1k,
//! 10k and 100k visitors in the in-memory index, next to the obvious way to hold them (a map of
//! visitor id to its embeddings, each compared with its norms, as a first version would); then,
//! against a real `redis-server` this command starts, the atomic resolve script's round trip and
//! the Redis memory each visitor takes.
//!
//! The index holds random unit vectors: matching cost depends on the count and length of the
//! embeddings, not on what they show. The memory run stores real aligned face crops as the best
//! shots.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use super::workers::{Server, connect_retrying, make_crops, used};
use crate::instrument::{StageHooks, unix_millis};
use crate::vision::{RecognizerSpec, Runtime};
use crate::visitor::{LiveVisitors, Sighting, VisitorIndex, VisitorSettings, store};

#[derive(Debug, clap::Args)]
pub struct VisitorsArgs {
    /// Visitor counts in the index. Repeat or comma-separate; default 1000, 10000, 100000.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000usize, 10_000, 100_000])]
    pub sizes: Vec<usize>,
    /// Embeddings per visitor (`[visitors] embeddings` is at most this many).
    #[arg(long, default_value_t = 5)]
    pub embeddings: usize,
    /// Timed queries per size.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Visitors created in Redis for the memory and round-trip figures.
    #[arg(long, default_value_t = 1000)]
    pub stored: usize,
    /// Folder of photos the best-shot crops are made from.
    #[arg(long, default_value = ".cache/photos")]
    pub photos: PathBuf,
}

const DIM: usize = 128;

pub fn run(args: VisitorsArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.embeddings >= 1 && args.queries >= 1,
        "--embeddings and --queries must be at least 1"
    );
    let mut rng = StdRng::seed_from_u64(7);
    println!(
        "Matching one track against N visitors x {} embeddings of {DIM} floats, {} queries (p50 / p99 per query)",
        args.embeddings, args.queries
    );
    println!("  {:>8}  {:>22}  {:>22}  {:>7}", "visitors", "redeye index", "map of Vec<Vec<f32>>", "ratio");
    for &n in &args.sizes {
        let visitors: Vec<(String, Vec<Vec<f32>>)> = (0..n)
            .map(|i| (format!("v-{i:012}"), (0..args.embeddings).map(|_| unit(&mut rng)).collect()))
            .collect();
        let mut index = VisitorIndex::new(DIM);
        let mut naive: HashMap<String, Vec<Vec<f32>>> = HashMap::with_capacity(n);
        for (id, e) in &visitors {
            index.upsert(id, 0, e);
            naive.insert(id.clone(), e.clone());
        }
        let probes: Vec<Vec<f32>> = (0..args.queries).map(|_| unit(&mut rng)).collect();
        let ours = time_each(&probes, |p| index.best(p).map(|(_, s)| s));
        let peer = time_each(&probes, |p| naive_best(&naive, p));
        println!(
            "  {n:>8}  {:>22}  {:>22}  {:>6.1}x",
            format!("{} / {}", fmt(ours.0), fmt(ours.1)),
            format!("{} / {}", fmt(peer.0), fmt(peer.1)),
            peer.0.as_secs_f64() / ours.0.as_secs_f64().max(1e-12)
        );
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(in_redis(&args))?;
    Ok(ExitCode::SUCCESS)
}

/// Creates `args.stored` visitors through the resolve script (each with `args.embeddings`
/// shots), timing the script, then reports the Redis memory per visitor.
async fn in_redis(args: &VisitorsArgs) -> anyhow::Result<()> {
    let rt = Runtime::init(None)?;
    let crops = make_crops(rt, &args.photos, 64)?;
    let server = Server::start()?;
    let bus = connect_retrying(&format!("redis://127.0.0.1:{}", server.1)).await?;
    let settings = VisitorSettings {
        ttl_secs: 86_400,
        threshold: 0.5,
        max_visitors: 10_000_000,
        embeddings: args.embeddings,
        for_known: false,
        model: RecognizerSpec::default().id,
        dim: DIM,
    };
    let live = LiveVisitors::new(settings.clone());
    let mut conn = bus.shared();
    let keys = bus.keys();
    let before = used(&bus).await?;
    let hooks = StageHooks::default();
    let mut rng = StdRng::seed_from_u64(11);
    let mut resolve_times = Vec::with_capacity(args.stored);
    let mut jpeg_bytes = 0;
    for i in 0..args.stored {
        let track = format!("bench:{i}:0");
        let jpeg = &crops[i % crops.len()].1;
        jpeg_bytes += jpeg.len();
        let first = unit(&mut rng);
        let sighting = Sighting { track: &track, camera: "bench", embedding: &first, jpeg, quality: 100.0 };
        let started = Instant::now();
        let r = live.resolve(&mut conn, keys, &sighting, &hooks).await?;
        resolve_times.push(started.elapsed());
        for q in 1..args.embeddings {
            let e = unit(&mut rng);
            let s = Sighting { embedding: &e, quality: 100.0 + q as f32, ..sighting };
            store::add(&mut conn, keys, &settings, &r.id, &s, unix_millis()).await?;
        }
    }
    let after = used(&bus).await?;
    let (_, stored) = store::counts(&mut conn, keys).await?;
    anyhow::ensure!(stored == args.stored as u64, "{stored} visitors stored of {} created", args.stored);
    resolve_times.sort();
    let pct = |p: f64| resolve_times[((resolve_times.len() - 1) as f64 * p).round() as usize];
    println!(
        "Resolve (index catch-up, match, then the atomic script over loopback), {} new visitors: p50 {} p99 {}",
        args.stored,
        fmt(pct(0.5)),
        fmt(pct(0.99))
    );
    println!(
        "Redis memory per visitor ({} embeddings, a best-shot JPEG of {:.0} B on average, index and log entries): {:.0} B (used_memory delta over {})",
        args.embeddings,
        jpeg_bytes as f64 / args.stored as f64,
        (after - before) as f64 / args.stored as f64,
        args.stored
    );
    drop(server);
    Ok(())
}

/// The obvious implementation: every visitor's embeddings, each compared as a cosine with its
/// norms computed on the fly.
fn naive_best(visitors: &HashMap<String, Vec<Vec<f32>>>, probe: &[f32]) -> Option<f32> {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let pn = norm(probe);
    visitors
        .values()
        .flat_map(|es| es.iter())
        .map(|e| e.iter().zip(probe).map(|(a, b)| a * b).sum::<f32>() / (norm(e) * pn))
        .fold(None, |best: Option<f32>, s| Some(best.map_or(s, |b| b.max(s))))
}

/// p50 and p99 of `f` over the probes (after one warm-up pass).
fn time_each(probes: &[Vec<f32>], mut f: impl FnMut(&[f32]) -> Option<f32>) -> (Duration, Duration) {
    let mut sink = 0.0f32;
    for p in probes.iter().take(5) {
        sink += f(p).unwrap_or(0.0);
    }
    let mut times: Vec<Duration> = probes
        .iter()
        .map(|p| {
            let t = Instant::now();
            sink += f(p).unwrap_or(0.0);
            t.elapsed()
        })
        .collect();
    std::hint::black_box(sink);
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    (pct(0.5), pct(0.99))
}

fn unit(rng: &mut StdRng) -> Vec<f32> {
    let mut v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}
