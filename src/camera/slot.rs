//! Newest-frame slots: one single-value slot per camera, shared by a group's detection threads.
//!
//! Live video cannot wait for inference. A decode thread [`SlotHandle::put`]s each sampled frame
//! into its camera's slot, overwriting (and counting as `replaced`) a frame detection has not
//! taken yet; it never blocks beyond a short mutex. Detection threads [`FrameSlots::take`] the
//! waiting frames round-robin over the cameras, so a busy camera cannot starve the others, and
//! always get the newest frame of each. Memory is bounded: one frame per camera.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::frame::Frame;
use super::stats::CameraStats;
use crate::instrument::DropReason;

/// The slots of one camera group.
#[derive(Debug, Default)]
pub struct FrameSlots {
    inner: Mutex<Inner>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct Inner {
    slots: Vec<Slot>,
    /// Where the next round-robin scan starts.
    cursor: usize,
    /// Frames waiting in all slots.
    waiting: usize,
    closed: bool,
}

#[derive(Debug)]
struct Slot {
    frame: Option<Frame>,
    stats: Arc<CameraStats>,
}

/// What [`FrameSlots::take_timeout`] found.
#[derive(Debug)]
pub enum Take {
    /// A frame and its camera's counters.
    Frame(Frame, Arc<CameraStats>),
    /// Nothing arrived in time.
    TimedOut,
    /// Closed and empty: no frame will come again.
    Closed,
}

impl FrameSlots {
    pub fn new() -> Arc<FrameSlots> {
        Arc::new(FrameSlots::default())
    }

    /// Adds a slot for one camera; its frames drop into `stats` when replaced.
    pub fn register(self: &Arc<Self>, stats: Arc<CameraStats>) -> SlotHandle {
        let mut inner = self.lock();
        inner.slots.push(Slot { frame: None, stats });
        SlotHandle { slots: self.clone(), index: inner.slots.len() - 1 }
    }

    /// The next waiting frame (round-robin over cameras), blocking until one arrives. `None`
    /// once the slots are closed and every waiting frame has been taken.
    pub fn take(&self) -> Option<(Frame, Arc<CameraStats>)> {
        loop {
            match self.take_timeout(Duration::from_secs(3600)) {
                Take::Frame(f, s) => return Some((f, s)),
                Take::Closed => return None,
                Take::TimedOut => {}
            }
        }
    }

    /// [`FrameSlots::take`], giving up after `timeout`.
    pub fn take_timeout(&self, timeout: Duration) -> Take {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        loop {
            if let Some(taken) = inner.pop_next() {
                return Take::Frame(taken.0, taken.1);
            }
            if inner.closed {
                return Take::Closed;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Take::TimedOut;
            }
            inner = self.ready.wait_timeout(inner, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// No more frames will be put: takers drain what is waiting, then get `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Frames waiting now.
    pub fn waiting(&self) -> usize {
        self.lock().waiting
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves consistent data (every update is a
        // single assignment), so keep going rather than poison every camera.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn pop_next(&mut self) -> Option<(Frame, Arc<CameraStats>)> {
        if self.waiting == 0 {
            return None;
        }
        let n = self.slots.len();
        for k in 0..n {
            let i = (self.cursor + k) % n;
            if let Some(frame) = self.slots[i].frame.take() {
                self.waiting -= 1;
                self.cursor = (i + 1) % n;
                let stats = self.slots[i].stats.clone();
                stats.frames_detected.fetch_add(1, Relaxed);
                return Some((frame, stats));
            }
        }
        None
    }
}

/// A camera's handle on its slot.
#[derive(Debug, Clone)]
pub struct SlotHandle {
    slots: Arc<FrameSlots>,
    index: usize,
}

impl SlotHandle {
    /// Puts `frame` in the slot, replacing (and counting) a frame still waiting there.
    pub fn put(&self, frame: Frame) {
        let replaced = {
            let mut inner = self.slots.lock();
            let slot = &mut inner.slots[self.index];
            let old = slot.frame.replace(frame);
            if old.is_some() {
                slot.stats.drop_frame(DropReason::Replaced);
            } else {
                inner.waiting += 1;
            }
            old
        };
        // Free the replaced image outside the lock.
        drop(replaced);
        self.slots.ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn frame(cam: &str, n: u64) -> Frame {
        Frame {
            camera: cam.into(),
            frame_number: n,
            capture_time: SystemTime::now(),
            key_frame: false,
            image: image::RgbImage::new(2, 2),
        }
    }

    fn take_now(s: &FrameSlots) -> Option<(String, u64)> {
        match s.take_timeout(Duration::ZERO) {
            Take::Frame(f, _) => Some((f.camera.to_string(), f.frame_number)),
            _ => None,
        }
    }

    #[test]
    fn newest_frame_wins_and_the_replaced_one_is_counted() {
        let slots = FrameSlots::new();
        let stats = Arc::new(CameraStats::default());
        let h = slots.register(stats.clone());
        h.put(frame("a", 1));
        h.put(frame("a", 2));
        h.put(frame("a", 3));
        assert_eq!(slots.waiting(), 1);
        assert_eq!(take_now(&slots), Some(("a".into(), 3)));
        assert_eq!(take_now(&slots), None);
        assert_eq!(stats.dropped(DropReason::Replaced), 2);
        assert_eq!(stats.frames_detected.load(Relaxed), 1);
    }

    #[test]
    fn cameras_are_served_round_robin() {
        let slots = FrameSlots::new();
        let a = slots.register(Arc::default());
        let b = slots.register(Arc::default());
        let c = slots.register(Arc::default());
        let mut order = Vec::new();
        for n in 0..3 {
            a.put(frame("a", n));
            b.put(frame("b", n));
            c.put(frame("c", n));
            // One take per round: a busy camera `a` must not win every time.
            order.push(take_now(&slots).unwrap().0);
        }
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn close_drains_then_ends_and_wakes_waiters() {
        let slots = FrameSlots::new();
        let h = slots.register(Arc::default());
        let waiter = {
            let slots = slots.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Some((f, _)) = slots.take() {
                    got.push(f.frame_number);
                }
                got
            })
        };
        h.put(frame("a", 7));
        std::thread::sleep(Duration::from_millis(50));
        slots.close();
        assert_eq!(waiter.join().unwrap(), [7]);
        assert!(matches!(slots.take_timeout(Duration::from_millis(1)), Take::Closed));
    }
}
