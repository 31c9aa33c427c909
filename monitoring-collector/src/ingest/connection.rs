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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use monitoring_common::protocol::Ack;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinSet;

use super::{IngestState, batch};
use crate::auth::AgentId;

/// Close code 1001: the collector is going away.
const GOING_AWAY: u16 = 1001;

/// How the reader loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The agent closed the connection or it broke.
    Peer,
    /// The collector is shutting down.
    Shutdown,
}

/// Serves one connection until the agent leaves or the collector shuts down.
#[tracing::instrument(name = "ingest", skip_all, fields(agent_id = %agent, %peer))]
pub(super) async fn serve(
    socket: WebSocket,
    agent: AgentId,
    peer: SocketAddr,
    state: Arc<IngestState>,
    _permit: OwnedSemaphorePermit,
) {
    state.metrics.connections.inc();
    state.metrics.connections_accepted.inc();
    tracing::info!(message = "Agent connected.");
    let shutdown = state.shutdown.child_token();
    let (sink, mut stream) = socket.split();
    let (acks, ack_rx) = mpsc::channel::<Ack>(state.max_in_flight + 1);
    let mut writer = tokio::spawn(write_acks(sink, ack_rx));
    let mut tasks: JoinSet<()> = JoinSet::new();

    let end = loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break End::Shutdown,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(error) = joined
                    && error.is_panic()
                {
                    tracing::error!(message = "Batch task panicked; the agent will resend the batch.", %error);
                }
            }
            message = stream.next(), if tasks.len() < state.max_in_flight => {
                let message = match message {
                    None => break End::Peer,
                    Some(Err(error)) => {
                        // Includes a message over the hard cap: not answerable, see mod.rs.
                        tracing::warn!(message = "Ingest connection failed.", %error);
                        break End::Peer;
                    }
                    Some(Ok(message)) => message,
                };
                match message {
                    Message::Binary(frame) => {
                        state.metrics.frames_received.inc();
                        state.metrics.bytes_received.inc_by(frame.len() as u64);
                        let (state, agent, acks) = (Arc::clone(&state), agent.clone(), acks.clone());
                        tasks.spawn(async move {
                            let ack = batch::handle(&state, &agent, frame).await;
                            // Only fails when the writer has stopped: the agent is gone and
                            // will resend what it did not see acknowledged.
                            drop(acks.send(ack).await);
                        });
                    }
                    Message::Text(text) => {
                        state.metrics.frames_received.inc();
                        state.metrics.bytes_received.inc_by(text.len() as u64);
                        let ack = batch::reject_text(&state, &agent);
                        if acks.send(ack).await.is_err() {
                            break End::Peer;
                        }
                    }
                    Message::Close(_) => break End::Peer,
                    // Pongs are sent by the WebSocket layer itself.
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
        }
    };

    let unfinished = match end {
        End::Peer => {
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
    drop(acks);
    // The writer sends the acks already queued, then the close frame; bounded because
    // an agent that stopped reading must not hold the collector open.
    let grace = state.shutdown_timeout.max(Duration::from_secs(1));
    if tokio::time::timeout(grace, &mut writer).await.is_err() {
        writer.abort();
    }
    state.metrics.connections.dec();
    tracing::info!(message = "Agent disconnected.", reason = ?end, unacknowledged = unfinished);
}

/// Sends acks until every sender is dropped, then closes the socket.
async fn write_acks(mut sink: SplitSink<WebSocket, Message>, mut acks: mpsc::Receiver<Ack>) {
    while let Some(ack) = acks.recv().await {
        if let Err(error) = sink.send(Message::Binary(ack.encode().into())).await {
            tracing::debug!(message = "Could not send acknowledgement; the agent is gone.", %error);
            return;
        }
    }
    let close = Message::Close(Some(CloseFrame {
        code: GOING_AWAY,
        reason: "collector closing the connection".into(),
    }));
    // The peer may already be gone; nothing is lost by not telling it.
    drop(sink.send(close).await);
}
