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
//! - On any connection error the transport reconnects with exponential backoff and
//!   full jitter (100 ms doubling to 30 s) and resends every unfinished batch in order,
//!   with its original stream id and sequence: the collector removes duplicates.
//!   Nothing is ever given up because a connection failed (LESSONS 7, 9), including
//!   authentication failures, which are logged at ERROR and retried.
//! - Shutdown: once `drain` is cancelled the transport keeps delivering until the
//!   batcher has closed its channel and every batch is finished, or until
//!   `shutdown_timeout` has passed; what is left unacknowledged is reported, and its
//!   events are read again after a restart because their checkpoints did not move.

pub mod connect;
pub mod retry_log;
pub mod tls;
pub mod window;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use monitoring_common::protocol::Ack;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub use connect::{Backoff, ConnectError, Endpoint, WsStream};
use retry_log::RetryLog;
use window::{AckOutcome, Window};

use crate::pipeline::Batch;
use crate::telemetry::{DropReason, TransportMetrics};

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
    /// Where and as whom.
    pub endpoint: Endpoint,
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
}

impl TransportStatus {
    /// Whether a connection to the collector is open.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// When the last positive acknowledgement arrived (Unix ms), if any did.
    pub fn last_ack_unix_ms(&self) -> Option<i64> {
        Some(self.last_ack_unix_ms.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    /// Batches sent and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
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
    /// The connection failed; reconnect.
    Disconnected(String),
}

type Sink = SplitSink<WsStream, Message>;
type Source = SplitStream<WsStream>;

struct Transport {
    config: TransportConfig,
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
    let mut t = Transport {
        window: Window::new(config.max_in_flight),
        config,
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
            let attempt = tokio::select! {
                biased;
                () = expired.cancelled() => return End::Deadline,
                r = connect::connect(&self.config.endpoint) => r,
            };
            match attempt {
                Ok(ws) => {
                    self.metrics
                        .connects
                        .get_or_create(&[("result", "ok")])
                        .inc();
                    info!(
                        message = "Connected to the collector.",
                        endpoint = %self.config.endpoint.url,
                        unacknowledged = self.window.len(),
                    );
                    let started = Instant::now();
                    self.heard_ack = false;
                    self.set_connected(true);
                    let end = self.session(ws, expired).await;
                    self.set_connected(false);
                    match end {
                        End::Disconnected(error) => {
                            self.metrics.disconnects.inc();
                            warn!(
                                message = "Lost the connection to the collector; unacknowledged batches will be resent.",
                                %error,
                                unacknowledged = self.window.len(),
                            );
                            if self.heard_ack || started.elapsed() >= HEALTHY_AFTER {
                                backoff.reset();
                            }
                        }
                        end => return end,
                    }
                }
                Err(error) => {
                    self.metrics
                        .connects
                        .get_or_create(&[("result", "error")])
                        .inc();
                    if error.is_auth() {
                        error!(message = "The collector refused this agent's credentials; retrying.", %error);
                    } else {
                        warn!(message = "Failed to connect to the collector; retrying.", %error);
                    }
                }
            }
            let delay = backoff.next_delay();
            debug!(
                message = "Waiting before reconnecting.",
                delay_ms = delay.as_millis() as u64
            );
            tokio::select! {
                biased;
                () = expired.cancelled() => return End::Deadline,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn set_connected(&self, up: bool) {
        self.status.connected.store(up, Ordering::Relaxed);
        self.metrics.connected.set(i64::from(up));
    }

    async fn session(&mut self, ws: WsStream, expired: &CancellationToken) -> End {
        let (mut sink, mut source): (Sink, Source) = ws.split();
        self.window.reset_for_reconnect();
        if let Err(end) = self.send_due(&mut sink, expired).await {
            return end;
        }
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        let mut last_heard = Instant::now();
        loop {
            if self.finished() {
                // Best effort: the collector has everything, a lost close frame harms nothing.
                let close = sink.send(Message::Close(None));
                if let Ok(Err(error)) = tokio::time::timeout(Duration::from_secs(1), close).await {
                    debug!(message = "Failed to close the connection cleanly.", %error);
                }
                return End::Finished;
            }
            let next_retry = self.window.next_retry();
            let can_take = self.input_open && self.window.has_room();
            tokio::select! {
                biased;
                () = expired.cancelled() => return End::Deadline,
                message = source.next() => {
                    last_heard = Instant::now();
                    match message {
                        Some(Ok(Message::Binary(bytes))) => self.on_ack_message(&bytes),
                        Some(Ok(Message::Close(frame))) => {
                            let why = frame.map_or_else(String::new, |f| format!(": {} {}", f.code, f.reason));
                            return End::Disconnected(format!("the collector closed the connection{why}"));
                        }
                        Some(Ok(Message::Text(text))) => {
                            warn!(message = "Ignoring a text message from the collector.", length = text.len());
                        }
                        Some(Ok(_)) => {}
                        Some(Err(error)) => return End::Disconnected(error.to_string()),
                        None => return End::Disconnected("the connection was closed".into()),
                    }
                }
                batch = self.input.recv(), if can_take => match batch {
                    Some(batch) => self.window.push(batch),
                    None => self.input_open = false,
                },
                () = sleep_until_opt(next_retry) => {}
                _ = ping.tick() => {
                    if last_heard.elapsed() >= IDLE_TIMEOUT {
                        return End::Disconnected(format!("nothing heard from the collector for {IDLE_TIMEOUT:?}"));
                    }
                    if let Err(end) = send_with_deadline(&mut sink, Message::Ping(Bytes::new()), expired).await {
                        return end;
                    }
                }
            }
            if let Err(end) = self.send_due(&mut sink, expired).await {
                return end;
            }
        }
    }

    /// Writes every batch that is due, in order.
    async fn send_due(&mut self, sink: &mut Sink, expired: &CancellationToken) -> Result<(), End> {
        for due in self.window.due(Instant::now()) {
            let Some(batch) = self.window.batch(due.stream_id, due.sequence) else {
                continue;
            };
            let frame = batch.frame.clone();
            let events = u64::from(batch.event_count);
            let sources = batch.sources;
            let bytes = frame.len() as u64;
            send_with_deadline(sink, Message::Binary(frame), expired).await?;
            self.window
                .mark_sent(due.stream_id, due.sequence, Instant::now());
            let m = &self.metrics;
            m.sent_batches.inc();
            m.sent_events.inc_by(events);
            m.sent_by_source.add_counts(&sources);
            m.sent_bytes.inc_by(bytes);
            if let Some(resend) = due.resend {
                m.resent_batches
                    .get_or_create(&[("reason", resend.as_str())])
                    .inc();
                debug!(
                    message = "Resent batch.",
                    sequence = due.sequence,
                    reason = resend.as_str()
                );
            }
        }
        self.update_in_flight();
        Ok(())
    }

    fn update_in_flight(&self) {
        let n = self.window.len();
        self.status.in_flight.store(n, Ordering::Relaxed);
        self.metrics
            .in_flight_batches
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    fn on_ack_message(&mut self, bytes: &[u8]) {
        let ack = match Ack::decode(bytes) {
            Ok(ack) => ack,
            Err(error) => {
                warn!(message = "Ignoring a malformed acknowledgement.", %error);
                return;
            }
        };
        let m = &self.metrics;
        match self.window.on_ack(&ack, Instant::now()) {
            AckOutcome::Committed {
                events,
                sources,
                latency,
            } => {
                self.heard_ack = true;
                m.acked_batches.inc();
                m.acked_events.inc_by(u64::from(events));
                m.acked_by_source.add_counts(&sources);
                if let Some(latency) = latency {
                    m.ack_latency_seconds.observe(latency.as_secs_f64());
                }
                self.status.last_ack_unix_ms.store(
                    monitoring_common::event::now_ns() / 1_000_000,
                    Ordering::Relaxed,
                );
                if let Some((answers, after)) = self.retry_log.acked(Instant::now()) {
                    info!(
                        message = "The collector acknowledges batches again.",
                        retry_later_answers = answers,
                        after_secs = after.as_secs(),
                    );
                }
            }
            AckOutcome::RetryScheduled { sequence, reason } => {
                self.heard_ack = true;
                if let Some(suppressed) = self.retry_log.retry(Instant::now()) {
                    info!(
                        message = "The collector asked to resend a batch later.",
                        sequence,
                        retry_after_ms = ack.retry_after_ms,
                        %reason,
                        suppressed,
                    );
                }
            }
            AckOutcome::Rejected {
                sequence,
                events,
                sources,
                reason,
            } => {
                self.heard_ack = true;
                m.rejected_batches.inc();
                m.dropped.add_counts(DropReason::Rejected, &sources);
                error!(
                    message = "The collector rejected a batch; its events are dropped.",
                    sequence,
                    events,
                    %reason,
                );
            }
            AckOutcome::Unknown => {
                debug!(
                    message = "Ignoring an acknowledgement for no batch in flight.",
                    stream_id = ack.stream_id,
                    sequence = ack.sequence,
                );
            }
        }
        self.window.release_done();
        self.update_in_flight();
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

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn send_with_deadline(
    sink: &mut Sink,
    message: Message,
    expired: &CancellationToken,
) -> Result<(), End> {
    tokio::select! {
        biased;
        () = expired.cancelled() => Err(End::Deadline),
        r = tokio::time::timeout(SEND_TIMEOUT, sink.send(message)) => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(End::Disconnected(error.to_string())),
            Err(_) => Err(End::Disconnected(format!("a frame took more than {SEND_TIMEOUT:?} to send"))),
        },
    }
}
