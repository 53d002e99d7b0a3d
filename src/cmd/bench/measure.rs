//! Timing protocol and statistics shared by the redeye side and (by the same rules, in Python)
//! scripts/opencv_bench.py, so that the two columns of the table are comparable.

use std::time::{Duration, Instant};

/// One timed call: milliseconds, and how many items (frames, faces) it processed.
pub type Sample = (f64, usize);

/// Warms `op` up, then times whole passes over `inputs` until `budget` has elapsed.
///
/// Warm-up is at least 3 calls and min(0.5 s, budget / 4): ONNX Runtime plans memory and the
/// letterbox computes its taps on first use, which is not what a long-running camera pays.
/// Whole passes (rather than stopping mid-way) keep every input equally represented, so photos
/// of different sizes do not bias the mean by where the clock ran out.
pub fn measure<T>(
    inputs: &[T],
    budget: Duration,
    mut op: impl FnMut(&T) -> anyhow::Result<usize>,
) -> anyhow::Result<Vec<Sample>> {
    anyhow::ensure!(!inputs.is_empty(), "nothing to measure");
    let warm_until = Instant::now() + (budget / 4).min(Duration::from_millis(500));
    let mut i = 0;
    while i < 3 || Instant::now() < warm_until {
        op(&inputs[i % inputs.len()])?;
        i += 1;
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.is_empty() || start.elapsed() < budget {
        for x in inputs {
            let t0 = Instant::now();
            let items = op(x)?;
            samples.push((t0.elapsed().as_secs_f64() * 1e3, items));
        }
    }
    Ok(samples)
}

/// Throughput and per-call latency of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Items per second: all items over all the time spent in calls.
    pub rate: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Nearest rank: the smallest value of `sorted` with at least `p` of the values at or below it;
/// `None` when empty.
pub fn nearest_rank<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

impl Stats {
    pub fn of(samples: &[Sample]) -> Stats {
        let total_ms: f64 = samples.iter().map(|s| s.0).sum();
        let items: usize = samples.iter().map(|s| s.1).sum();
        let mut ms: Vec<f64> = samples.iter().map(|s| s.0).collect();
        ms.sort_by(f64::total_cmp);
        let pct = |p: f64| nearest_rank(&ms, p).unwrap_or(f64::NAN);
        Stats {
            rate: if total_ms > 0.0 { items as f64 * 1e3 / total_ms } else { f64::NAN },
            mean_ms: total_ms / samples.len().max(1) as f64,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
        }
    }
}

/// Peak resident set size of this process in KiB (`VmHWM` in /proc/self/status), if readable.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets `VmHWM` to the current RSS (Linux >= 4.0), so that each thread count reports its own
/// peak rather than the largest so far. Best effort: without it the peak is the process's.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_of_integers() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(nearest_rank(&v, 0.5), Some(50));
        assert_eq!(nearest_rank(&v, 0.99), Some(99));
        assert_eq!(nearest_rank(&[7], 0.99), Some(7));
        assert_eq!(nearest_rank(&[1, 2, 900, 1200], 0.99), Some(1200));
        assert_eq!(nearest_rank::<u64>(&[], 0.5), None);
    }

    #[test]
    fn stats_use_nearest_rank_and_total_rate() {
        let samples: Vec<Sample> = (1..=100).map(|i| (f64::from(i), 2)).collect();
        let s = Stats::of(&samples);
        assert_eq!((s.p50_ms, s.p99_ms), (50.0, 99.0));
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
        // 200 items in 5050 ms.
        assert!((s.rate - 200.0 / 5.05).abs() < 1e-9);
        assert_eq!(Stats::of(&[(4.0, 1)]).p99_ms, 4.0);
    }

    #[test]
    fn measure_warms_up_then_runs_whole_passes() {
        let mut calls = 0;
        let samples = measure(&[1, 2, 3], Duration::ZERO, |&x| {
            calls += 1;
            Ok(x)
        })
        .unwrap();
        assert_eq!(samples.iter().map(|s| s.1).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(calls, 6);
    }

    #[test]
    fn peak_rss_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_kib().is_some_and(|k| k > 0));
        }
    }
}
