//! The transport: a WebSocket client that delivers batches to the collector and turns
//! its acknowledgements into checkpoint progress.
//!
//! - At most `max_in_flight` batches are unacknowledged at a time ([`window`]); when
//!   the window is full the transport stops taking batches, which stops the batcher,
//!   fills the buffer and pauses the sources: backpressure end to end.
//! - Acknowledgements are matched by (stream, sequence). `ok` finishes a batch (its
//!   events count as acknowledged, per source); `retry_later` resends it after the
//!   delay asked (logged at most once per interval, [`retry_log`]); `rejected` is
//!   logged at ERROR, counted as dropped (reason `rejected`, per source) and finishes
//!   the batch, so one poison batch cannot stall the agent. Marks are applied only
//!   from the front of the window, so a
//!   checkpoint moves only when everything before it is acknowledged.
//! - On any connection error the transport reconnects and resends every unfinished
//!   batch in order, with its original stream id and sequence: the collector removes
//!   duplicates. With several endpoints (`[collector] endpoints`) it moves to the next
//!   one at once and waits (exponential backoff with full jitter, 100 ms doubling to
//!   30 s) only after every endpoint failed in a row ([`failover`]); with one, every
//!   failure waits. Nothing is ever given up because a connection failed (LESSONS 7,
//!   9), including authentication failures, which are logged at ERROR and retried.
//! - Shutdown: once `drain` is cancelled the transport keeps delivering until the
//!   batcher has closed its channel and every batch is finished, or until
//!   `shutdown_timeout` has passed; what is left unacknowledged is reported, and its
//!   events are read again after a restart because their checkpoints did not move.

pub mod connect;
pub mod failover;
pub mod retry_log;
mod session;
pub mod tls;
pub mod window;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub use connect::{Backoff, ConnectError, Endpoint, WsStream};
use failover::{Leave, Rotation, Target};
use retry_log::RetryLog;
use window::Window;

use crate::pipeline::{Batch, DeliveryIdle};
use crate::telemetry::TransportMetrics;

/// First reconnect delay ceiling; doubles per failed attempt.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Largest reconnect delay ceiling.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A ping is sent this often, so a dead peer is noticed without traffic.
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// With nothing at all heard for this long the connection is taken as dead.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest one frame may take to be written before the connection is taken as dead.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection that lived this long was healthy: the next failure starts backoff over.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// How the transport connects and delivers.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Where and as whom, in order of preference (`[collector] endpoint` or
    /// `endpoints`); the transport fails over between them ([`failover`]).
    pub endpoints: Vec<Endpoint>,
    /// Most batches unacknowledged at once.
    pub max_in_flight: usize,
    /// How long to keep delivering after `drain` is cancelled.
    pub shutdown_timeout: Duration,
}

/// What the control server reports about the transport.
#[derive(Debug, Default)]
pub struct TransportStatus {
    connected: AtomicBool,
    last_ack_unix_ms: AtomicI64,
    in_flight: AtomicUsize,
    endpoint: Mutex<Option<String>>,
    idle: Arc<DeliveryIdle>,
}

impl TransportStatus {
    /// Whether a connection to the collector is open.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The URL of the endpoint connected to now, if any.
    pub fn endpoint(&self) -> Option<String> {
        self.endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
    /// When the last positive acknowledgement arrived (Unix ms), if any did.
    pub fn last_ack_unix_ms(&self) -> Option<i64> {
        Some(self.last_ack_unix_ms.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    /// Batches sent and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Connected with nothing unacknowledged: the batcher's cue to send at once.
    pub fn delivery_idle(&self) -> Arc<DeliveryIdle> {
        self.idle.clone()
    }
}

/// What was still undelivered when the transport returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DrainReport {
    /// Batches not acknowledged (in the window or never taken from the batcher).
    pub unacked_batches: usize,
    /// Events in them.
    pub unacked_events: u64,
}

/// How a connection ended.
enum End {
    /// Everything was delivered and the batcher is done.
    Finished,
    /// The shutdown deadline passed.
    Deadline,
    /// The connection failed; reconnect (to the next endpoint, if there are several).
    Disconnected {
        /// Why, as a label value.
        reason: Leave,
        /// Why, for the log.
        error: String,
    },
}

impl End {
    fn disconnected(reason: Leave, error: impl Into<String>) -> End {
        End::Disconnected {
            reason,
            error: error.into(),
        }
    }
}

type Sink = SplitSink<WsStream, Message>;
type Source = SplitStream<WsStream>;

struct Transport {
    /// The configured endpoints, in order.
    targets: Vec<Target>,
    /// Which one is used now, and how many failed in a row.
    rotation: Rotation,
    input: mpsc::Receiver<Batch>,
    input_open: bool,
    window: Window,
    status: Arc<TransportStatus>,
    metrics: TransportMetrics,
    /// Whether the current connection has had an acknowledgement.
    heard_ack: bool,
    /// Throttles the log lines about retry-later answers.
    retry_log: RetryLog,
}

/// Runs the transport until every batch is delivered after the batcher closed its
/// channel, or until `shutdown_timeout` after `drain` is cancelled.
pub async fn run(
    config: TransportConfig,
    input: mpsc::Receiver<Batch>,
    drain: CancellationToken,
    status: Arc<TransportStatus>,
    metrics: TransportMetrics,
) -> DrainReport {
    // The deadline runs from the drain signal, not from when the channel closes.
    let expired = CancellationToken::new();
    let timer = {
        let expired = expired.clone();
        let timeout = config.shutdown_timeout;
        tokio::spawn(async move {
            drain.cancelled().await;
            tokio::time::sleep(timeout).await;
            expired.cancel();
        })
    };
    let targets: Vec<Target> = config
        .endpoints
        .into_iter()
        .map(|endpoint| Target {
            series: metrics.endpoints.series(&endpoint.url),
            endpoint,
            log: RetryLog::default(),
        })
        .collect();
    let mut t = Transport {
        window: Window::new(config.max_in_flight),
        rotation: Rotation::new(targets.len()),
        targets,
        input,
        input_open: true,
        status,
        metrics,
        heard_ack: false,
        retry_log: RetryLog::default(),
    };
    let end = t.run(&expired).await;
    timer.abort();
    t.report(end)
}

impl Transport {
    fn finished(&self) -> bool {
        !self.input_open && self.window.is_empty()
    }

    async fn run(&mut self, expired: &CancellationToken) -> End {
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_CAP);
        loop {
            if self.finished() {
                return End::Finished;
            }
            let index = self.rotation.current();
            let Some(endpoint) = self.targets.get(index).map(|t| t.endpoint.clone()) else {
                // Validation forbids an empty list; never spin on one.
                error!(message = "No collector endpoint is configured; nothing can be delivered.");
                expired.cancelled().await;
                return End::Deadline;
            };
            let attempt = tokio::select! {
                biased;
                () = expired.cancelled() => return End::Deadline,
                r = connect::connect(&endpoint) => r,
            };
            let (reason, error, connected) = match attempt {
                Ok(ws) => {
                    self.on_connected(index);
                    let started = Instant::now();
                    self.heard_ack = false;
                    let end = self.session(ws, expired).await;
                    self.set_connected(None);
                    match end {
                        End::Disconnected { reason, error } => {
                            self.metrics.disconnects.inc();
                            if self.heard_ack || started.elapsed() >= HEALTHY_AFTER {
                                backoff.reset();
                                self.rotation.healthy();
                            }
                            (reason, error, true)
                        }
                        end => return end,
                    }
                }
                Err(error) => {
                    self.metrics
                        .connects
                        .get_or_create(&[("result", "error")])
                        .inc();
                    if let Some(t) = self.targets.get(index) {
                        t.series.connects_error.inc();
                    }
                    (Leave::of(&error), error.to_string(), false)
                }
            };
            let round_failed = self.rotation.failed();
            let delay = round_failed.then(|| backoff.next_delay());
            self.on_left(index, reason, &error, connected, delay);
            if let Some(delay) = delay {
                tokio::select! {
                    biased;
                    () = expired.cancelled() => return End::Deadline,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }

    fn on_connected(&mut self, index: usize) {
        self.metrics
            .connects
            .get_or_create(&[("result", "ok")])
            .inc();
        let unacknowledged = self.window.len();
        let Some(t) = self.targets.get_mut(index) else {
            return;
        };
        t.series.connects_ok.inc();
        let (failed_attempts, after_secs) = t
            .log
            .acked(Instant::now())
            .map_or((0, 0), |(n, d)| (n, d.as_secs()));
        info!(
            message = "Connected to the collector.",
            endpoint = %t.endpoint.url,
            index,
            unacknowledged,
            failed_attempts,
            after_secs,
        );
        self.set_connected(Some(index));
    }

    /// Counts and logs (throttled per endpoint) leaving endpoint `index`; `delay` is
    /// the backoff before the next attempt, when a whole round has failed.
    fn on_left(
        &mut self,
        index: usize,
        reason: Leave,
        error: &str,
        connected: bool,
        delay: Option<Duration>,
    ) {
        let next = self
            .targets
            .get(self.rotation.current())
            .map_or_else(String::new, |t| t.endpoint.url.clone());
        let unacknowledged = self.window.len();
        let Some(t) = self.targets.get_mut(index) else {
            return;
        };
        self.metrics
            .endpoints
            .failed(&t.endpoint.url, reason.as_str());
        let Some(suppressed) = t.log.retry(Instant::now()) else {
            return;
        };
        let endpoint = &t.endpoint.url;
        let wait_ms = delay.map(|d| d.as_millis() as u64);
        let auth = reason == Leave::Auth;
        let reason = reason.as_str();
        if connected {
            warn!(
                message = "Lost the connection to the collector; unacknowledged batches will be resent.",
                endpoint = %endpoint,
                reason,
                %error,
                unacknowledged,
                next_endpoint = %next,
                wait_ms,
                suppressed,
            );
        } else if auth {
            error!(
                message = "The collector refused this agent's credentials; trying again.",
                endpoint = %endpoint,
                %error,
                next_endpoint = %next,
                wait_ms,
                suppressed,
            );
        } else {
            warn!(
                message = "Failed to connect to the collector.",
                endpoint = %endpoint,
                reason,
                %error,
                next_endpoint = %next,
                wait_ms,
                suppressed,
            );
        }
        if let Some(delay) = delay {
            debug!(
                message = "Every collector endpoint failed; waiting before the next round.",
                delay_ms = delay.as_millis() as u64,
            );
        }
    }

    fn set_connected(&self, index: Option<usize>) {
        self.status
            .connected
            .store(index.is_some(), Ordering::Relaxed);
        self.status
            .idle
            .set(index.is_some() && self.window.is_empty());
        self.metrics.connected.set(i64::from(index.is_some()));
        let mut url = None;
        for (i, t) in self.targets.iter().enumerate() {
            let here = Some(i) == index;
            t.series.connected.set(i64::from(here));
            if here {
                url = Some(t.endpoint.url.clone());
            }
        }
        *self
            .status
            .endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = url;
    }

    fn report(mut self, end: End) -> DrainReport {
        let mut report = DrainReport {
            unacked_batches: self.window.len(),
            unacked_events: self.window.pending_events(),
        };
        while let Ok(batch) = self.input.try_recv() {
            report.unacked_batches += 1;
            report.unacked_events += u64::from(batch.event_count);
        }
        self.status.in_flight.store(0, Ordering::Relaxed);
        match end {
            End::Deadline if report.unacked_batches > 0 => warn!(
                message = "Shutdown deadline passed before every batch was acknowledged; their events will be read again after a restart.",
                batches = report.unacked_batches,
                events = report.unacked_events,
            ),
            _ => info!(message = "Transport finished: every batch was acknowledged."),
        }
        report
    }
}
