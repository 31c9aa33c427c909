//! How retry-later answers reach the log. While the collector cannot commit (its
//! store failing or full, its queue full), every batch in the window is answered
//! retry-later about once a second for as long as that lasts; one log line per
//! batch would flood the agent's log during a long outage. The first answer is
//! logged, then at most one line per interval with the count of those not logged,
//! and one line when batches are acknowledged again. The metrics count every resend
//! (`monitoring_agent_transport_resent_batches_total{reason="retry_later"}`).

use std::time::Duration;

use tokio::time::Instant;

/// Least time between two log lines about retry-later answers.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The throttle; owned by the transport task.
#[derive(Debug, Default)]
pub struct RetryLog {
    /// When the current run of retry-later answers began.
    since: Option<Instant>,
    /// When one was last logged.
    logged: Option<Instant>,
    answers: u64,
    suppressed: u64,
}

impl RetryLog {
    /// Records a retry-later answer at `now`; `Some(suppressed)` (answers not
    /// logged since the last line) when this one should be logged.
    pub fn retry(&mut self, now: Instant) -> Option<u64> {
        self.since.get_or_insert(now);
        self.answers += 1;
        match self.logged {
            Some(at) if now.saturating_duration_since(at) < LOG_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.logged = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// Records an acknowledgement at `now`; `Some((answers, duration))` when it ends
    /// a run of retry-later answers.
    pub fn acked(&mut self, now: Instant) -> Option<(u64, Duration)> {
        let since = self.since?;
        let answers = self.answers;
        *self = RetryLog::default();
        Some((answers, now.saturating_duration_since(since)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_answer_then_one_line_per_interval_then_the_end() {
        let mut log = RetryLog::default();
        let t0 = Instant::now();
        assert_eq!(log.acked(t0), None);
        assert_eq!(log.retry(t0), Some(0));
        assert_eq!(log.retry(t0 + Duration::from_secs(1)), None);
        assert_eq!(log.retry(t0 + Duration::from_secs(9)), None);
        assert_eq!(log.retry(t0 + LOG_INTERVAL), Some(2));
        assert_eq!(
            log.acked(t0 + Duration::from_secs(12)),
            Some((4, Duration::from_secs(12)))
        );
        assert_eq!(log.acked(t0 + Duration::from_secs(13)), None);
        assert_eq!(log.retry(t0 + Duration::from_secs(14)), Some(0));
    }
}
