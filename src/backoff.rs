//! Retry delays for every long-running loop (camera sessions, the ingest hand-off, recognition
//! workers): exponential backoff with full jitter, capped, reset after a healthy period.
//!
//! Full jitter (a uniform delay between zero and the exponential ceiling, as in the AWS
//! architecture blog's "Exponential Backoff and Jitter") spreads the retries of many cameras or
//! workers that failed together (a switch reboot, a Redis failover) instead of having them
//! retry in lockstep.

use std::time::Duration;

use rand::Rng;

/// A backoff policy. The default is a camera's; [`BackoffPolicy::redis`] is the Redis loops'.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    /// Ceiling of the first delay (default 1 s).
    pub initial: Duration,
    /// Largest ceiling (default 30 s).
    pub max: Duration,
    /// A session that delivered frames for this long resets the backoff (default 30 s).
    pub healthy_after: Duration,
}

impl BackoffPolicy {
    /// For a loop that talks to Redis (ingest hand-off, workers): from 100 ms up to 10 s,
    /// reset after a healthy minute.
    pub fn redis() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            healthy_after: Duration::from_secs(60),
        }
    }
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            healthy_after: Duration::from_secs(30),
        }
    }
}

/// The state of one loop's backoff.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    /// Failures since the last reset: the exponent of the ceiling.
    failures: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Backoff {
        Backoff { policy, failures: 0 }
    }

    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The ceiling of the next delay: `initial * 2^failures`, capped at `max`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.policy.initial.saturating_mul(factor).min(self.policy.max)
    }

    /// The delay before the next attempt (uniform in `[0, ceiling]`), and one more failure.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }

    /// [`Backoff::next_delay`] with the thread's random generator.
    pub fn next_random(&mut self) -> Duration {
        self.next_delay(&mut rand::rng())
    }

    /// Back to the first ceiling, after a healthy session.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            healthy_after: Duration::from_secs(1),
        }
    }

    #[test]
    fn ceiling_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(policy());
        let mut rng = StdRng::seed_from_u64(7);
        let mut ceilings = Vec::new();
        for _ in 0..6 {
            ceilings.push(b.ceiling().as_millis());
            let d = b.next_delay(&mut rng);
            assert!(d <= Duration::from_millis(*ceilings.last().unwrap() as u64));
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn delays_are_jittered_over_the_whole_range() {
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<Duration> = (0..200)
            .map(|_| {
                let mut b = Backoff::new(policy());
                b.next_delay(&mut rng)
            })
            .collect();
        let (lo, hi) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
        assert!(*lo < Duration::from_millis(10) && *hi > Duration::from_millis(90), "{lo:?} {hi:?}");
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut b = Backoff::new(policy());
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..100 {
            assert!(b.next_delay(&mut rng) <= Duration::from_secs(1));
        }
    }
}
