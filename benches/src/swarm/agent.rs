//! One simulated agent: a task that speaks the ingest protocol as monitoring-agent
//! does, with none of its collectors.
//!
//! It opens the WebSocket to `/ingest` with its own `x-monitoring-agent-id`, picks a
//! random stream id, and sends a batch every `batch_interval` (its first one at a
//! random point of the interval, so that a thousand agents do not send in step),
//! keeping at most `max_in_flight` batches unacknowledged. Acknowledgements are
//! matched by (stream, sequence): `ok` finishes a batch and records its latency,
//! `retry-later` resends it unchanged after the delay asked, `rejected` drops it.
//! A dropped connection is counted and reopened after a jittered backoff, and every
//! unacknowledged batch is resent with its stream and sequence, as the real
//! transport does. The agent pings every 20 s and answers the collector's pings.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use monitoring_common::protocol::{AGENT_ID_HEADER, Ack, AckStatus};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::SwarmOptions;
use super::stats::{Counters, Histogram, Reasons};
use super::templates::Templates;

/// As monitoring-agent's transport: a ping this often when nothing else is sent.
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// As monitoring-agent: the largest message accepted from the collector.
const MAX_INCOMING_MESSAGE: usize = 128 * 1024;
/// Read buffer of each simulated agent's socket. Acks are 26 bytes; tungstenite's
/// 128 KiB default, zero-filled on every read, would make the load tool itself
/// hold 128 MiB for a thousand agents. It changes nothing on the wire.
const READ_BUFFER: usize = 4 * 1024;
/// Reconnect delays: full jitter below a ceiling doubling from this...
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// ...up to this (monitoring-agent goes to 30 s; a benchmark run is shorter).
const BACKOFF_CAP: Duration = Duration::from_secs(5);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What all agents of a run share.
pub(super) struct Shared {
    pub opts: SwarmOptions,
    pub templates: Templates,
    pub counters: Counters,
    pub latency: Histogram,
    /// Why batches were not accepted.
    pub reasons: Reasons,
    /// Bounds the handshakes in progress at once.
    pub connect_permits: Semaphore,
    /// Agents that have connected at least once.
    pub ever_connected: AtomicUsize,
    /// Connections open now.
    pub live: AtomicUsize,
    /// Woken on every first connection.
    pub connected_notify: Notify,
    /// End of the hold: no new batches; finish the window, then close.
    pub stop: CancellationToken,
    /// End of the drain: close now, whatever is unacknowledged.
    pub abort: CancellationToken,
}

/// How one agent's run went.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// When its first connection was established.
    pub first_connected: Option<Instant>,
    /// When a connection of it first ended before the run did.
    pub first_drop: Option<Instant>,
    /// Batches still unacknowledged at the end.
    pub unacked: usize,
    /// The last connection or session error, for the report.
    pub last_error: Option<String>,
}

/// A batch of the window.
struct InFlight {
    sequence: u64,
    events: u32,
    /// When it was last written; `None` while it waits to be (re)sent.
    sent_at: Option<Instant>,
    /// Not to be resent before this (retry-later).
    not_before: Option<Instant>,
    /// Written at least once already.
    resend: bool,
}

/// How a session ended.
enum End {
    /// Stopped and drained, or aborted: the agent is done.
    Done,
    /// The connection failed; reconnect.
    Dropped(String),
}

/// Runs agent number `index` until `shared.abort`, or until it is stopped and has
/// nothing left unacknowledged.
pub(super) async fn run(index: usize, shared: Arc<Shared>) -> Outcome {
    let mut agent = Agent {
        id: format!("{}{index:04}", shared.opts.id_prefix),
        stream_id: rand::random(),
        next_sequence: 0,
        window: VecDeque::new(),
        shared,
    };
    let mut outcome = Outcome::default();
    let mut attempt = 0u32;
    loop {
        let s = Arc::clone(&agent.shared);
        if s.abort.is_cancelled() || (s.stop.is_cancelled() && agent.window.is_empty()) {
            break;
        }
        let connected = tokio::select! {
            () = s.abort.cancelled() => break,
            c = agent.connect() => c,
        };
        let end = match connected {
            Ok(ws) => {
                attempt = 0;
                if outcome.first_connected.is_none() {
                    outcome.first_connected = Some(Instant::now());
                    s.ever_connected.fetch_add(1, Ordering::Relaxed);
                    s.connected_notify.notify_one();
                }
                s.live.fetch_add(1, Ordering::Relaxed);
                let end = agent.session(ws).await;
                s.live.fetch_sub(1, Ordering::Relaxed);
                match end {
                    End::Done => break,
                    End::Dropped(error) => {
                        Counters::add(&s.counters.disconnects, 1);
                        outcome.first_drop.get_or_insert_with(Instant::now);
                        error
                    }
                }
            }
            Err(error) => {
                Counters::add(&s.counters.connect_failures, 1);
                error
            }
        };
        outcome.last_error = Some(end);
        let ceiling = BACKOFF_BASE
            .saturating_mul(1 << attempt.min(10))
            .min(BACKOFF_CAP);
        attempt += 1;
        let wait = ceiling.mul_f64(rand::random::<f64>());
        tokio::select! {
            () = s.abort.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    outcome.unacked = agent.window.len();
    outcome
}

struct Agent {
    id: String,
    stream_id: u64,
    next_sequence: u64,
    window: VecDeque<InFlight>,
    shared: Arc<Shared>,
}

impl Agent {
    /// Opens the WebSocket as monitoring-agent does (its id in the upgrade header,
    /// Nagle off), within the connect timeout and a handshake permit.
    async fn connect(&self) -> Result<Ws, String> {
        let s = &self.shared;
        let _permit = s
            .connect_permits
            .acquire()
            .await
            .map_err(|_| "connect permits closed".to_string())?;
        let mut request = s
            .opts
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("bad collector URL {}: {e}", s.opts.url))?;
        let id = HeaderValue::from_str(&self.id).map_err(|e| format!("bad agent id: {e}"))?;
        request.headers_mut().insert(AGENT_ID_HEADER, id);
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_message_size(Some(MAX_INCOMING_MESSAGE))
            .max_frame_size(Some(MAX_INCOMING_MESSAGE));
        let attempt = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        match tokio::time::timeout(s.opts.connect_timeout, attempt).await {
            Err(_) => Err(format!(
                "connect timed out after {:?}",
                s.opts.connect_timeout
            )),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                let body = response
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                Err(format!("refused with HTTP {}: {body}", response.status()))
            }
            Ok(Err(error)) => Err(format!("cannot connect: {error}")),
            Ok(Ok((ws, _response))) => Ok(ws),
        }
    }

    /// Delivers over `ws` until stopped and drained, aborted, or the connection fails.
    async fn session(&mut self, ws: Ws) -> End {
        let s = Arc::clone(&self.shared);
        let (mut sink, mut source) = ws.split();
        // Everything unacknowledged is resent on the new connection.
        for b in &mut self.window {
            if b.sent_at.take().is_some() {
                b.not_before = None;
            }
        }
        let interval = s.opts.batch_interval;
        let phase = interval.mul_f64(rand::random::<f64>());
        let mut tick = tokio::time::interval_at(Instant::now() + phase, interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        loop {
            if let Err(error) = self.send_due(&mut sink).await {
                return End::Dropped(error);
            }
            if s.stop.is_cancelled() && self.window.is_empty() {
                // As the real agent: the collector has everything.
                close(&mut sink).await;
                return End::Done;
            }
            let room = self.window.len() < s.opts.max_in_flight;
            let next_retry = self.window.iter().filter_map(|b| b.not_before).min();
            tokio::select! {
                biased;
                () = s.abort.cancelled() => {
                    // A clean close even with batches unacknowledged, so that the
                    // collector logs a departure, not a failed connection.
                    close(&mut sink).await;
                    return End::Done;
                }
                message = source.next() => match message {
                    Some(Ok(Message::Binary(bytes))) => self.on_ack(&bytes),
                    Some(Ok(Message::Close(frame))) => {
                        let why = frame.map_or_else(String::new, |f| format!(": {} {}", f.code, f.reason));
                        return End::Dropped(format!("the collector closed the connection{why}"));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return End::Dropped(error.to_string()),
                    None => return End::Dropped("the connection was closed".into()),
                },
                () = s.stop.cancelled(), if self.window.is_empty() => {}
                _ = tick.tick(), if room && !s.stop.is_cancelled() => {
                    let sequence = self.next_sequence;
                    self.next_sequence += 1;
                    self.window.push_back(InFlight {
                        sequence,
                        events: 0,
                        sent_at: None,
                        not_before: None,
                        resend: false,
                    });
                }
                () = sleep_until_opt(next_retry) => {}
                _ = ping.tick() => {
                    if let Err(error) = sink.send(Message::Ping(Bytes::new())).await {
                        return End::Dropped(error.to_string());
                    }
                }
            }
        }
    }

    /// Writes every batch that waits and is due, oldest first.
    async fn send_due(&mut self, sink: &mut SplitSink<Ws, Message>) -> Result<(), String> {
        let s = &self.shared;
        let now = Instant::now();
        for b in &mut self.window {
            if b.sent_at.is_some() || b.not_before.is_some_and(|t| t > now) {
                continue;
            }
            let frame = s.templates.frame(s.opts.codec, self.stream_id, b.sequence);
            b.events = frame.events;
            sink.send(Message::Binary(frame.bytes.into()))
                .await
                .map_err(|e| e.to_string())?;
            b.sent_at = Some(Instant::now());
            b.not_before = None;
            let c = &s.counters;
            Counters::add(&c.batches_sent, 1);
            Counters::add(&c.events_sent, u64::from(frame.events));
            if b.resend {
                Counters::add(&c.batches_resent, 1);
            }
            b.resend = true;
        }
        Ok(())
    }

    fn on_ack(&mut self, bytes: &[u8]) {
        let c = &self.shared.counters;
        let Ok(ack) = Ack::decode(bytes) else {
            Counters::add(&c.unexpected_acks, 1);
            return;
        };
        let found = self.window.iter().position(|b| {
            ack.stream_id == self.stream_id && b.sequence == ack.sequence && b.sent_at.is_some()
        });
        let Some(i) = found else {
            Counters::add(&c.unexpected_acks, 1);
            return;
        };
        match ack.status {
            AckStatus::Ok => {
                if let Some(b) = self.window.remove(i) {
                    if let Some(sent) = b.sent_at {
                        self.shared.latency.record(sent.elapsed());
                    }
                    Counters::add(&c.batches_acked, 1);
                    Counters::add(&c.events_acked, u64::from(b.events));
                }
            }
            AckStatus::RetryLater => {
                Counters::add(&c.retry_later, 1);
                self.shared.reasons.add("retry-later", &ack.reason);
                let b = &mut self.window[i];
                b.sent_at = None;
                b.not_before =
                    Some(Instant::now() + Duration::from_millis(u64::from(ack.retry_after_ms)));
            }
            AckStatus::Rejected => {
                self.shared.reasons.add("rejected", &ack.reason);
                if let Some(b) = self.window.remove(i) {
                    Counters::add(&c.batches_rejected, 1);
                    Counters::add(&c.events_rejected, u64::from(b.events));
                }
            }
        }
    }
}

/// Sends a close frame, best effort: a lost one harms nothing.
async fn close(sink: &mut SplitSink<Ws, Message>) {
    let close = sink.send(Message::Close(None));
    drop(tokio::time::timeout(Duration::from_secs(1), close).await);
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
