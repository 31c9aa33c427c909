//! Which collector endpoint to connect to next, and when to wait first.
//!
//! With `[collector] endpoints` the agent connects to the first one and stays with
//! whichever endpoint works. A failure (the connection refused, timed out, a TLS or
//! authentication failure, a connection dropped, closed or silent for too long) moves
//! it to the next endpoint in the list at once, wrapping around; only when every
//! endpoint has failed in a row does it wait, with the exponential backoff and jitter
//! of [`super::Backoff`]. A connection that proved healthy (an acknowledgement heard,
//! or open for `HEALTHY_AFTER`) resets the backoff and starts a new round, so losing a
//! good collector costs no wait when another one answers. With a single endpoint this
//! is the plain reconnect loop: every failure is a full round.
//!
//! The agent does not move back to an earlier endpoint on its own while the current
//! one works: a move resends the window to another collector (stored twice when the
//! collectors keep separate stores) and buys nothing when they share a store. It
//! moves again only when its collector fails; a restart begins with the first.
//!
//! Each endpoint has its own log throttle ([`RetryLog`]: the first failure is logged,
//! then at most one line per interval with the count of those not logged) and its own
//! series (`monitoring_agent_collector_*{endpoint}`).

use super::connect::{ConnectError, Endpoint};
use super::retry_log::RetryLog;
use crate::telemetry::EndpointSeries;

/// Why the agent left an endpoint: the `reason` label of
/// `monitoring_agent_collector_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// The upgrade was answered 401 or 403: the credentials were refused.
    Auth,
    /// The upgrade was answered with another HTTP status.
    Http,
    /// Connecting took longer than `connect_timeout_secs`.
    Timeout,
    /// The TLS handshake failed (or the TLS files could not be loaded).
    Tls,
    /// TCP or WebSocket failure while connecting (refused, reset, unreachable).
    Connect,
    /// The URL or a header value is unusable; only a new configuration helps.
    Invalid,
    /// The collector closed the connection (a close frame, as on its shutdown).
    Closed,
    /// The connection broke: reset, end of stream, or a write failed or stalled.
    Dropped,
    /// Nothing was heard from the collector for the idle timeout.
    Idle,
}

impl Leave {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Leave::Auth => "auth",
            Leave::Http => "http",
            Leave::Timeout => "timeout",
            Leave::Tls => "tls",
            Leave::Connect => "connect",
            Leave::Invalid => "invalid",
            Leave::Closed => "closed",
            Leave::Dropped => "dropped",
            Leave::Idle => "idle",
        }
    }

    /// Why a connection attempt failed.
    pub fn of(error: &ConnectError) -> Leave {
        match error {
            ConnectError::InvalidEndpoint { .. } | ConnectError::InvalidHeader { .. } => {
                Leave::Invalid
            }
            ConnectError::Timeout { .. } => Leave::Timeout,
            ConnectError::Refused { .. } if error.is_auth() => Leave::Auth,
            ConnectError::Refused { .. } => Leave::Http,
            ConnectError::Tls { .. } => Leave::Tls,
            ConnectError::Io { .. } => Leave::Connect,
        }
    }
}

/// The place in the list of endpoints, and how many failed in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    len: usize,
    current: usize,
    failed_in_a_row: usize,
}

impl Rotation {
    /// A rotation over `len` endpoints (at least 1), starting with the first.
    pub fn new(len: usize) -> Rotation {
        Rotation {
            len: len.max(1),
            current: 0,
            failed_in_a_row: 0,
        }
    }

    /// The index of the endpoint to use now.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The current endpoint failed: moves to the next one. `true` when every
    /// endpoint has now failed in a row, and the transport must back off before the
    /// next attempt (a new round begins).
    pub fn failed(&mut self) -> bool {
        self.current = (self.current + 1) % self.len;
        self.failed_in_a_row += 1;
        if self.failed_in_a_row >= self.len {
            self.failed_in_a_row = 0;
            true
        } else {
            false
        }
    }

    /// The current connection proved healthy: its failure, when it comes, begins a
    /// new round.
    pub fn healthy(&mut self) {
        self.failed_in_a_row = 0;
    }
}

/// One configured endpoint with its series and its log throttle.
pub(super) struct Target {
    /// Where and as whom.
    pub endpoint: Endpoint,
    /// Its `monitoring_agent_collector_*` handles.
    pub series: EndpointSeries,
    /// Throttles the log lines about its failures.
    pub log: RetryLog,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_on_at_once_and_backs_off_only_after_a_full_round() {
        let mut r = Rotation::new(3);
        assert_eq!(r.current(), 0);
        assert!(!r.failed(), "first failure: try the next one at once");
        assert_eq!(r.current(), 1);
        assert!(!r.failed());
        assert_eq!(r.current(), 2);
        assert!(r.failed(), "all three failed: back off");
        assert_eq!(r.current(), 0);
        // The next round starts where the last one ended.
        assert!(!r.failed());
        assert_eq!(r.current(), 1);
    }

    #[test]
    fn a_healthy_connection_starts_a_new_round() {
        let mut r = Rotation::new(2);
        assert!(!r.failed());
        assert_eq!(r.current(), 1);
        // Endpoint 1 worked for a while, then failed: endpoint 0 is tried at once.
        r.healthy();
        assert!(!r.failed());
        assert_eq!(r.current(), 0);
        // And when 0 fails too, the round is complete.
        assert!(r.failed());
        assert_eq!(r.current(), 1);
    }

    #[test]
    fn one_endpoint_backs_off_after_every_failure() {
        let mut r = Rotation::new(1);
        assert!(r.failed());
        r.healthy();
        assert!(r.failed());
        assert_eq!(r.current(), 0);
        // An empty list behaves as one endpoint rather than dividing by zero.
        assert_eq!(Rotation::new(0), Rotation::new(1));
    }

    #[test]
    fn connect_errors_map_to_their_reason() {
        let refused = |status| ConnectError::Refused {
            url: "ws://a/ingest".into(),
            agent_id: "a1".into(),
            status,
        };
        assert_eq!(Leave::of(&refused(401)), Leave::Auth);
        assert_eq!(Leave::of(&refused(403)), Leave::Auth);
        assert_eq!(Leave::of(&refused(503)), Leave::Http);
        let timeout = ConnectError::Timeout {
            url: "ws://a/ingest".into(),
            timeout: std::time::Duration::from_secs(1),
        };
        assert_eq!(Leave::of(&timeout).as_str(), "timeout");
    }
}
