//! Fatal faults of the long-running loops, for `/ready` to report.
//!
//! A loop that meets an error nothing but the operator can fix (a gallery enrolled with another
//! model, a model that cannot run, refused credentials, a worker task that panicked) stops and
//! records it here, with what stopped and why. `/ready` then answers 503 with every fault, so
//! an orchestrator takes the process out of rotation and the operator reads the reason; the
//! log has the same line at ERROR. A leaf: the loops that report and the admin server that
//! reads know each other only through it.
//!
//! A loop can also be *degraded* for a while without stopping: Redis refusing writes for lack of
//! memory is retried, and `/ready` answers 503 with the reason until the loop recovers.

use std::sync::Mutex;

/// One fault: what stopped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What stopped, e.g. `worker for group entrance`.
    pub component: String,
    /// The error, written for the operator.
    pub reason: String,
    /// Stopped for good (a fault), or retrying (a degradation).
    pub stopped: bool,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.stopped { "stopped" } else { "is retrying" };
        write!(f, "{} {state}: {}", self.component, self.reason)
    }
}

/// The faults of this process so far (they are never cleared: the process must be restarted
/// once the cause is fixed).
#[derive(Debug, Default)]
pub struct Health {
    faults: Mutex<Vec<Fault>>,
    /// Current degradations, one per component; cleared by [`Health::recover`].
    degraded: Mutex<Vec<Fault>>,
}

impl Health {
    /// Records that `component` stopped for `reason` (a second fault of the same component and
    /// reason is not repeated).
    pub fn fail(&self, component: impl Into<String>, reason: impl Into<String>) {
        let fault = Fault { component: component.into(), reason: reason.into(), stopped: true };
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        if !faults.contains(&fault) {
            faults.push(fault);
        }
    }

    /// Every fault so far, oldest first.
    pub fn faults(&self) -> Vec<Fault> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records that `component` is not working for `reason` and retries; replaces its previous
    /// reason. Returns true if it was not degraded before (log the first time only).
    pub fn degrade(&self, component: impl Into<String>, reason: impl Into<String>) -> bool {
        let fault = Fault { component: component.into(), reason: reason.into(), stopped: false };
        let mut degraded = self.degraded.lock().unwrap_or_else(|e| e.into_inner());
        let new = !degraded.iter().any(|f| f.component == fault.component);
        degraded.retain(|f| f.component != fault.component);
        degraded.push(fault);
        new
    }

    /// `component` works again. Returns true if it was degraded.
    pub fn recover(&self, component: &str) -> bool {
        let mut degraded = self.degraded.lock().unwrap_or_else(|e| e.into_inner());
        let before = degraded.len();
        degraded.retain(|f| f.component != component);
        degraded.len() != before
    }

    /// Every fault, then every current degradation: what `/ready` reports.
    pub fn problems(&self) -> Vec<Fault> {
        let mut all = self.faults();
        all.extend(self.degraded.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned());
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_kept_once_each() {
        let h = Health::default();
        h.fail("worker for group g", "the gallery cannot be used");
        h.fail("worker for group g", "the gallery cannot be used");
        h.fail("ingest", "permission refused");
        let f = h.faults();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].to_string(), "worker for group g stopped: the gallery cannot be used");
    }

    #[test]
    fn degradations_come_and_go() {
        let h = Health::default();
        assert!(h.degrade("ingest", "out of memory"));
        assert!(!h.degrade("ingest", "out of memory again"));
        assert_eq!(h.problems().len(), 1);
        assert!(h.recover("ingest"));
        assert!(!h.recover("ingest"));
        assert!(h.problems().is_empty());
    }
}
