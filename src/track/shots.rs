//! The best-shot policy: which of a track's faces go to recognition.
//!
//! The first shot goes at once, because time-to-name is what a user sees; later ones only when
//! clearly better (a face turning towards the camera, walking closer) or when a refresh is due,
//! so that a stranger enrolled during the visit is recognised before leaving. Caps on the count
//! and the rate bound the work a long visit can cause.

use super::{Action, DropReason};

/// The policy's settings, taken from `[tracking]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ShotPolicy {
    pub max_shots: u32,
    pub min_interval_ms: u64,
    pub quality_margin: f32,
    pub refresh_ms: u64,
}

/// What one track has sent so far.
#[derive(Debug, Clone, Default)]
pub(super) struct Shots {
    pub sent: u32,
    /// Best quality sent so far.
    best: f32,
    /// Capture time of the last shot sent.
    last_ms: Option<u64>,
}

impl Shots {
    /// Decides about one face of a confirmed track seen at `ts_ms`, and records a send.
    pub(super) fn decide(&mut self, policy: &ShotPolicy, ts_ms: u64, quality: f32) -> Action {
        let Some(last) = self.last_ms else {
            self.record(ts_ms, quality);
            return Action::Send { first: true };
        };
        if self.sent >= policy.max_shots {
            return Action::Drop(DropReason::MaxShots);
        }
        // A frame older than the last shot (out of order) is never a refresh.
        let refresh_due = ts_ms.saturating_sub(last) >= policy.refresh_ms;
        let better = quality > self.best * (1.0 + policy.quality_margin);
        if !(better || refresh_due) {
            return Action::Drop(DropReason::NotBetter);
        }
        if ts_ms.abs_diff(last) < policy.min_interval_ms {
            return Action::Drop(DropReason::TooSoon);
        }
        self.record(ts_ms, quality);
        Action::Send { first: false }
    }

    fn record(&mut self, ts_ms: u64, quality: f32) {
        self.sent += 1;
        self.best = self.best.max(quality);
        self.last_ms = Some(self.last_ms.map_or(ts_ms, |l| l.max(ts_ms)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: ShotPolicy =
        ShotPolicy { max_shots: 3, min_interval_ms: 1000, quality_margin: 0.15, refresh_ms: 10_000 };

    fn send(first: bool) -> Action {
        Action::Send { first }
    }
    fn drop(reason: DropReason) -> Action {
        Action::Drop(reason)
    }

    #[test]
    fn first_at_once_then_only_clearly_better_and_not_too_soon() {
        let mut s = Shots::default();
        assert_eq!(s.decide(&POLICY, 0, 0.5), send(true));
        // Better by 10%: not enough.
        assert_eq!(s.decide(&POLICY, 1500, 0.55), drop(DropReason::NotBetter));
        // Better by 20%, but only 500 ms after the first.
        assert_eq!(s.decide(&POLICY, 500, 0.6), drop(DropReason::TooSoon));
        assert_eq!(s.decide(&POLICY, 1000, 0.6), send(false));
        // The bar rises with the best sent: 0.6 * 1.15 = 0.69.
        assert_eq!(s.decide(&POLICY, 3000, 0.68), drop(DropReason::NotBetter));
        assert_eq!(s.decide(&POLICY, 3000, 0.7), send(false));
        assert_eq!(s.sent, 3);
    }

    #[test]
    fn max_shots_caps_even_a_better_face_and_a_refresh() {
        let mut s = Shots::default();
        let mut q = 0.1;
        for (i, ts) in [0, 2000, 4000].into_iter().enumerate() {
            assert_eq!(s.decide(&POLICY, ts, q), send(i == 0));
            q *= 2.0;
        }
        assert_eq!(s.decide(&POLICY, 6000, 1.0), drop(DropReason::MaxShots));
        assert_eq!(s.decide(&POLICY, 60_000, 1.0), drop(DropReason::MaxShots));
    }

    #[test]
    fn a_refresh_sends_a_worse_face_and_keeps_the_best() {
        let mut s = Shots::default();
        assert_eq!(s.decide(&POLICY, 0, 0.8), send(true));
        assert_eq!(s.decide(&POLICY, 9_999, 0.5), drop(DropReason::NotBetter));
        assert_eq!(s.decide(&POLICY, 10_000, 0.5), send(false));
        // The best is still 0.8: 0.85 is not 15% better.
        assert_eq!(s.decide(&POLICY, 12_000, 0.85), drop(DropReason::NotBetter));
        assert_eq!(s.decide(&POLICY, 20_000, 0.3), send(false));
    }

    #[test]
    fn an_older_frame_is_not_a_refresh_and_respects_the_interval_backwards() {
        let mut s = Shots::default();
        assert_eq!(s.decide(&POLICY, 50_000, 0.5), send(true));
        assert_eq!(s.decide(&POLICY, 39_000, 0.5), drop(DropReason::NotBetter));
        assert_eq!(s.decide(&POLICY, 49_800, 0.9), drop(DropReason::TooSoon));
        // Far enough back and better: sent; the last-shot time does not move backwards.
        assert_eq!(s.decide(&POLICY, 48_000, 0.9), send(false));
        assert_eq!(s.decide(&POLICY, 60_000, 0.1), send(false));
    }
}
