//! What the collector does about a run of store failures (a full disk, a locked or
//! broken database), which fail every batch of every agent:
//!
//! - **The log**: one line per failed batch would flood it, while the operator needs
//!   one line that says what is wrong, a reminder while it lasts, and one line when
//!   it is over. The metrics still count every failure
//!   (`monitoring_ingest_batches_retried_total{reason="store"}`).
//! - **The retry delay** asked of agents grows with the outage: as long as it has
//!   lasted so far, from [`MIN_RETRY`] to [`MAX_RETRY`]. Each resend costs a decode
//!   and a commit attempt, so a fixed second would have every agent's window of
//!   batches cost that every second for as long as a disk stays full; growing with
//!   the outage, the delays double from one resend to the next, like a backoff, and
//!   a short hiccup still costs only a second.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Least time between two log lines about failing commits.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// The retry delay asked at the start of an outage.
pub(crate) const MIN_RETRY: Duration = Duration::from_secs(1);
/// The longest retry delay asked: what an outage may add to the delivery delay
/// after it ends.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(10);

/// What to do about one more failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Log it, with the number of failures since the last line that were not.
    pub(crate) log: Option<u64>,
    /// The retry delay to ask of the agent.
    pub(crate) retry_after: Duration,
}

/// What to log when a commit succeeds after failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Batches that failed since the first failure.
    pub(crate) failures: u64,
    /// Time since the first failure.
    pub(crate) after: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// When the current run of failures began.
    since: Option<Instant>,
    /// When a failure was last logged.
    logged: Option<Instant>,
    failures: u64,
    suppressed: u64,
}

/// The log throttle shared by every connection.
#[derive(Debug, Default)]
pub(crate) struct StoreFailures {
    /// Whether a run of failures is in progress: successes check only this.
    failing: AtomicBool,
    state: Mutex<State>,
}

impl StoreFailures {
    /// Records a failed commit at `now`.
    pub(crate) fn failure(&self, now: Instant) -> Failure {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.failing.store(true, Ordering::Release);
        let since = *s.since.get_or_insert(now);
        s.failures += 1;
        let log = match s.logged {
            Some(at) if now.saturating_duration_since(at) < LOG_INTERVAL => {
                s.suppressed += 1;
                None
            }
            _ => {
                s.logged = Some(now);
                Some(std::mem::take(&mut s.suppressed))
            }
        };
        Failure {
            log,
            retry_after: now
                .saturating_duration_since(since)
                .clamp(MIN_RETRY, MAX_RETRY),
        }
    }

    /// Records a successful commit at `now`; `Some` when it ends a run of failures.
    pub(crate) fn success(&self, now: Instant) -> Option<Recovered> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.failing.swap(false, Ordering::AcqRel) {
            return None;
        }
        let state = std::mem::take(&mut *s);
        Some(Recovered {
            failures: state.failures,
            after: state
                .since
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_failure_then_one_line_per_interval_then_the_recovery() {
        let f = StoreFailures::default();
        let t0 = Instant::now();
        let log = |at| f.failure(at).log;
        assert_eq!(f.success(t0), None, "no failure, nothing to report");
        assert_eq!(log(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(log(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(log(t0 + LOG_INTERVAL), Some(5));
        assert_eq!(log(t0 + LOG_INTERVAL + Duration::from_secs(1)), None);
        assert_eq!(
            f.success(t0 + Duration::from_secs(30)),
            Some(Recovered {
                failures: 8,
                after: Duration::from_secs(30)
            })
        );
        assert_eq!(f.success(t0 + Duration::from_secs(31)), None);
        // A new outage is logged at once, its count from zero.
        let t1 = t0 + Duration::from_secs(32);
        assert_eq!(log(t1), Some(0));
        assert_eq!(
            f.success(t1 + Duration::from_secs(2)),
            Some(Recovered {
                failures: 1,
                after: Duration::from_secs(2)
            })
        );
    }

    #[test]
    fn the_retry_delay_grows_with_the_outage_and_starts_over_after_it() {
        let f = StoreFailures::default();
        let t0 = Instant::now();
        let delay = |at| f.failure(at).retry_after;
        assert_eq!(delay(t0), MIN_RETRY);
        assert_eq!(delay(t0 + Duration::from_millis(500)), MIN_RETRY);
        assert_eq!(delay(t0 + Duration::from_secs(4)), Duration::from_secs(4));
        assert_eq!(delay(t0 + Duration::from_secs(3600)), MAX_RETRY);
        assert!(f.success(t0 + Duration::from_secs(3601)).is_some());
        assert_eq!(delay(t0 + Duration::from_secs(3602)), MIN_RETRY);
    }
}
