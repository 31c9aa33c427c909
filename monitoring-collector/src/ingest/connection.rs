//! One agent's WebSocket connection.
//!
//! The reader takes frames and starts one task per frame, up to
//! `server.max_in_flight_per_connection` at once (the agent keeps a window of
//! unacknowledged batches, and those are committed concurrently); past that it stops
//! reading, which pushes back on the agent through TCP. Acks go through a bounded
//! channel to a single writer task, so the socket has one writer and acks leave in
//! the order batches finish. A bad frame costs that frame an ack, nothing more.
//!
//! On shutdown the reader stops, in-flight batches get `server.shutdown_timeout_secs`
//! to finish and be acknowledged, and the socket is closed with 1001 (going away).
//! Whatever was not acknowledged by then is resent by the agent to the next collector.
//!
//! Liveness: the writer pings every `server.ping_interval_secs`; a connection from
//! which nothing (no frame, no pong) has arrived for `server.idle_timeout_secs` is
//! closed with 1008. The idle clock stands still while the reader is paused for
//! backpressure (the silence is then the collector's doing), and a batch finishing
//! counts as activity. A live agent's WebSocket answers pings by itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use monitoring_common::protocol::Ack;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::agents::AgentSlot;
use super::{IngestState, batch};
use crate::auth::AgentId;
use crate::telemetry::{ack_outcome, close_reason};

/// Close code 1001: the collector is going away.
const GOING_AWAY: u16 = 1001;
/// Close code 1008: policy violation (here: silent past the idle timeout).
const POLICY_VIOLATION: u16 = 1008;

/// How the reader loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The agent closed the connection.
    Peer,
    /// The WebSocket failed: a message over the hard size cap, a protocol violation,
    /// or a broken connection.
    Error,
    /// Nothing arrived for the idle timeout.
    Idle,
    /// The collector is shutting down.
    Shutdown,
}

impl End {
    fn label(self) -> &'static str {
        match self {
            End::Peer => close_reason::PEER,
            End::Error => close_reason::ERROR,
            End::Idle => close_reason::IDLE,
            End::Shutdown => close_reason::SHUTDOWN,
        }
    }
}

/// What the writer task sends.
enum Out {
    Ack(Ack),
    Ping,
}

/// Serves one connection until the agent leaves or the collector shuts down.
#[tracing::instrument(name = "ingest", skip_all, fields(agent_id = %agent, %peer))]
pub(super) async fn serve(
    socket: WebSocket,
    agent: AgentId,
    peer: SocketAddr,
    state: Arc<IngestState>,
    _permit: OwnedSemaphorePermit,
    slot: AgentSlot,
) {
    state.metrics.connections.inc();
    state.metrics.connections_accepted.inc();
    tracing::info!(message = "Agent connected.");
    let shutdown = state.shutdown.child_token();
    let limiter = slot.limiter();
    let (sink, mut stream) = socket.split();
    let (out, out_rx) = mpsc::channel::<Out>(state.max_in_flight + 1);
    let (close_tx, close_rx) = oneshot::channel::<CloseFrame>();
    let mut writer = tokio::spawn(write_out(sink, out_rx, close_rx));
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut ping =
        tokio::time::interval_at(Instant::now() + state.ping_interval, state.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let idle = tokio::time::sleep_until(last_heard + state.idle_timeout);
    tokio::pin!(idle);

    let end = loop {
        let reading = tasks.len() < state.max_in_flight;
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break End::Shutdown,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                last_heard = Instant::now();
                if let Err(error) = joined
                    && error.is_panic()
                {
                    tracing::error!(message = "Batch task panicked; the agent will resend the batch.", %error);
                }
            }
            message = stream.next(), if reading => {
                last_heard = Instant::now();
                let message = match message {
                    None => break End::Peer,
                    Some(Err(error)) => {
                        // Includes a message over the hard cap: not answerable, see mod.rs.
                        tracing::warn!(message = "Ingest connection failed.", %error);
                        break End::Error;
                    }
                    Some(Ok(message)) => message,
                };
                match message {
                    Message::Binary(frame) => {
                        let arrived = Instant::now();
                        state.metrics.frames_received.inc();
                        state.metrics.bytes_received.inc_by(frame.len() as u64);
                        let (state, agent, out) = (Arc::clone(&state), agent.clone(), out.clone());
                        let limiter = limiter.clone();
                        tasks.spawn(async move {
                            let ack = batch::handle(&state, &agent, limiter.as_ref(), frame).await;
                            let outcome = ack_outcome::of(ack.status);
                            // Only fails when the writer has stopped: the agent is gone and
                            // will resend what it did not see acknowledged.
                            if out.send(Out::Ack(ack)).await.is_ok() {
                                state
                                    .metrics
                                    .ack_seconds
                                    .get_or_create(&[("outcome", outcome)])
                                    .observe(arrived.elapsed().as_secs_f64());
                            }
                        });
                    }
                    Message::Text(text) => {
                        state.metrics.frames_received.inc();
                        state.metrics.bytes_received.inc_by(text.len() as u64);
                        let ack = batch::reject_text(&state, &agent);
                        if out.send(Out::Ack(ack)).await.is_err() {
                            break End::Peer;
                        }
                    }
                    Message::Close(_) => break End::Peer,
                    // Pongs are sent by the WebSocket layer itself; either proves
                    // the agent alive, which `last_heard` has recorded.
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            _ = ping.tick() => {
                // A full queue means acks are waiting to go out: the ping can wait.
                drop(out.try_send(Out::Ping));
            }
            () = &mut idle => {
                let now = Instant::now();
                if !reading {
                    // Paused by backpressure: the agent cannot be heard, not its fault.
                    last_heard = now;
                }
                let due = last_heard + state.idle_timeout;
                if due > now {
                    idle.as_mut().reset(due);
                    continue;
                }
                tracing::warn!(
                    message = "Closing idle ingest connection: nothing received, not even a pong.",
                    idle_timeout = ?state.idle_timeout
                );
                break End::Idle;
            }
        }
    };

    let unfinished = match end {
        End::Peer | End::Error | End::Idle => {
            // Nobody is left to read the acks; queued batches still commit in the workers.
            let n = tasks.len();
            tasks.abort_all();
            n
        }
        End::Shutdown => {
            let drained = tokio::time::timeout(state.shutdown_timeout, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::warn!(
                    message = "Shutdown deadline passed with batches still in flight; the agent will resend them.",
                    batches = tasks.len()
                );
            }
            let n = tasks.len();
            tasks.abort_all();
            n
        }
    };
    let close = match end {
        End::Idle => CloseFrame {
            code: POLICY_VIOLATION,
            reason: format!(
                "idle timeout: nothing received for {} s",
                state.idle_timeout.as_secs()
            )
            .into(),
        },
        End::Peer | End::Error | End::Shutdown => CloseFrame {
            code: GOING_AWAY,
            reason: "collector closing the connection".into(),
        },
    };
    // Fails only if the writer already stopped: the agent is gone.
    drop(close_tx.send(close));
    drop(out);
    // The writer sends the acks already queued, then the close frame; bounded because
    // an agent that stopped reading must not hold the collector open.
    let grace = state.shutdown_timeout.max(Duration::from_secs(1));
    if tokio::time::timeout(grace, &mut writer).await.is_err() {
        writer.abort();
    }
    state.metrics.connections.dec();
    state
        .metrics
        .connections_closed
        .get_or_create(&[("reason", end.label())])
        .inc();
    drop(slot);
    tracing::info!(message = "Agent disconnected.", reason = ?end, unacknowledged = unfinished);
}

/// Sends acks and pings until every sender is dropped, then closes the socket with
/// the frame `close` gives.
async fn write_out(
    mut sink: SplitSink<WebSocket, Message>,
    mut out: mpsc::Receiver<Out>,
    close: oneshot::Receiver<CloseFrame>,
) {
    while let Some(next) = out.recv().await {
        let message = match next {
            Out::Ack(ack) => Message::Binary(ack.encode().into()),
            Out::Ping => Message::Ping(Bytes::new()),
        };
        if let Err(error) = sink.send(message).await {
            tracing::debug!(message = "Could not send to the agent; it is gone.", %error);
            return;
        }
    }
    // Sent before the last sender is dropped; a missing frame closes without one.
    let frame = close.await.ok();
    // The peer may already be gone; nothing is lost by not telling it.
    drop(sink.send(Message::Close(frame)).await);
}
