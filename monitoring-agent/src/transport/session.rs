//! One connection's life: resend what the window holds, take new batches while it
//! has room, match acknowledgements, ping when quiet, and end with the reason the
//! connection failed (which [`super::failover`] turns into the next endpoint).

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use monitoring_common::protocol::Ack;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::failover::Leave;
use super::window::AckOutcome;
use super::{End, IDLE_TIMEOUT, PING_INTERVAL, SEND_TIMEOUT, Sink, Source, Transport, WsStream};
use crate::telemetry::DropReason;

impl Transport {
    /// Delivers over `ws` until the connection fails, everything is delivered, or the
    /// shutdown deadline passes.
    pub(super) async fn session(&mut self, ws: WsStream, expired: &CancellationToken) -> End {
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
                            return End::disconnected(Leave::Closed, format!("the collector closed the connection{why}"));
                        }
                        Some(Ok(Message::Text(text))) => {
                            warn!(message = "Ignoring a text message from the collector.", length = text.len());
                        }
                        Some(Ok(_)) => {}
                        Some(Err(error)) => return End::disconnected(Leave::Dropped, error.to_string()),
                        None => return End::disconnected(Leave::Dropped, "the connection was closed"),
                    }
                }
                batch = self.input.recv(), if can_take => match batch {
                    Some(batch) => self.window.push(batch),
                    None => self.input_open = false,
                },
                () = sleep_until_opt(next_retry) => {}
                _ = ping.tick() => {
                    if last_heard.elapsed() >= IDLE_TIMEOUT {
                        return End::disconnected(Leave::Idle, format!("nothing heard from the collector for {IDLE_TIMEOUT:?}"));
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
        self.status
            .idle
            .set(n == 0 && self.status.connected.load(Ordering::Relaxed));
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
            Ok(Err(error)) => Err(End::disconnected(Leave::Dropped, error.to_string())),
            Err(_) => Err(End::disconnected(Leave::Dropped, format!("a frame took more than {SEND_TIMEOUT:?} to send"))),
        },
    }
}
