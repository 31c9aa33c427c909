//! The `/ingest` WebSocket endpoint: agents' frames in, acknowledgements out.
//!
//! The listener ([`listener`]) bounds the time from accept to the upgrade request.
//! An upgrade request is authenticated ([`crate::auth`]) and counted against
//! `server.max_connections_per_agent` and `server.max_connections` before the
//! WebSocket exists; refusals are JSON errors (401, 429, 503). Each connection then
//! reads binary messages, one frame each, and answers every one with an
//! [`Ack`](monitoring_common::protocol::Ack) (`connection`, which also pings and
//! closes idle connections); what a single frame gets is decided in `batch`, which
//! charges the agent's rate budget ([`rate_limit`], shared through `agents`). A
//! failing store is logged once per interval, not once per batch (`store_failures`).
//!
//! Message sizes: a WebSocket message up to [`ServerConfig::hard_message_cap`] (twice
//! `server.limits.max_frame_bytes` plus 1 MiB) is read and, if over the frame limit,
//! politely rejected; a larger one makes the WebSocket layer close the connection,
//! because reading it would cost unbounded memory and its sender is not following the
//! protocol.
//!
//! Memory per connection: each WebSocket reads through a buffer of
//! [`READ_BUFFER_BYTES`], not tungstenite's 128 KiB default, which is zero-filled
//! (so resident) on a connection's first read: with the default, 1,000 idle agents
//! held 140 MiB of the collector (measured with the swarm load tool,
//! `benches/src/swarm`).

mod agents;
mod batch;
mod connection;
pub mod listener;
pub mod rate_limit;
pub(crate) mod store_failures;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use monitoring_common::protocol::{INGEST_PATH, Limits};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::ServerConfig;
use crate::processor::ProcessorHandle;
use crate::telemetry::{Metrics, refuse_reason};
use crate::tls::PeerInfo;
use agents::Agents;
pub use rate_limit::RateLimitConfig;
use store_failures::StoreFailures;

/// Read buffer of each agent connection. A frame larger than this is still read
/// whole (the buffer grows to the frame's declared length); only each read call is
/// smaller: a 1 MiB frame takes 64 reads instead of 8, a negligible cost beside
/// decoding it.
pub const READ_BUFFER_BYTES: usize = 16 * 1024;

/// What every ingest connection shares.
pub struct IngestState {
    auth: Authenticator,
    processor: ProcessorHandle,
    metrics: Metrics,
    limits: Limits,
    hard_cap: usize,
    max_in_flight: usize,
    shutdown_timeout: Duration,
    ping_interval: Duration,
    idle_timeout: Duration,
    connections: Arc<Semaphore>,
    agents: Arc<Agents>,
    store_failures: StoreFailures,
    /// Failures of required sinks, throttled and answered like the store's.
    sink_failures: StoreFailures,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl IngestState {
    /// Shared state for the ingest endpoint. Connections are spawned on `tracker` and
    /// wind down when `shutdown` is cancelled, within `server.shutdown_timeout_secs`.
    pub fn new(
        server: &ServerConfig,
        auth: Authenticator,
        processor: ProcessorHandle,
        metrics: Metrics,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> IngestState {
        IngestState {
            auth,
            processor,
            metrics,
            limits: server.limits,
            hard_cap: server.hard_message_cap(),
            max_in_flight: server.max_in_flight_per_connection,
            shutdown_timeout: Duration::from_secs(server.shutdown_timeout_secs),
            ping_interval: Duration::from_secs(server.ping_interval_secs),
            idle_timeout: Duration::from_secs(server.idle_timeout_secs),
            connections: Arc::new(Semaphore::new(server.max_connections)),
            agents: Agents::new(server.max_connections_per_agent, server.rate_limit),
            store_failures: StoreFailures::default(),
            sink_failures: StoreFailures::default(),
            shutdown,
            tracker,
        }
    }
}

/// The ingest routes; serve with [`listener::serve`] (the handler needs
/// `ConnectInfo<PeerInfo>`).
pub fn router(state: Arc<IngestState>) -> Router {
    Router::new()
        .route(INGEST_PATH, get(upgrade))
        .fallback(|| async {
            json_error(
                StatusCode::NOT_FOUND,
                format!("agents connect to {INGEST_PATH}"),
            )
        })
        .with_state(state)
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

async fn upgrade(
    State(state): State<Arc<IngestState>>,
    ConnectInfo(info): ConnectInfo<PeerInfo>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let peer: SocketAddr = info.addr;
    let refuse = |reason: &'static str| {
        state
            .metrics
            .connections_refused
            .get_or_create(&[("reason", reason)])
            .inc();
    };
    // Authentication comes first so that an unauthenticated peer learns nothing else.
    // With mutual TLS, the verified client certificate's identity must match too.
    let agent = match state
        .auth
        .authenticate(&headers, info.client_identity.as_deref())
    {
        Ok(agent) => agent,
        Err(error) => {
            refuse(error.reason());
            tracing::warn!(message = "Refused ingest connection.", %error, %peer);
            return json_error(StatusCode::UNAUTHORIZED, error.to_string());
        }
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return json_error(
                rejection.status(),
                format!("{INGEST_PATH} is a WebSocket endpoint: {rejection}"),
            );
        }
    };
    if state.shutdown.is_cancelled() {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "collector is shutting down",
        );
    }
    // Before the total limit: one agent's surplus connections must not take places
    // from other agents. The slot is released when the connection ends, however.
    let Some(slot) = state.agents.try_acquire(&agent) else {
        refuse(refuse_reason::AGENT_LIMIT);
        let max = state.agents.max_per_agent();
        tracing::warn!(message = "Refused ingest connection: too many connections of this agent.", agent_id = %agent, %peer, max);
        return json_error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "agent {agent} already has {max} open connections (server.max_connections_per_agent); close one or retry later"
            ),
        );
    };
    let Ok(permit) = Arc::clone(&state.connections).try_acquire_owned() else {
        refuse(refuse_reason::LIMIT);
        tracing::warn!(message = "Refused ingest connection: too many connections.", agent_id = %agent, %peer);
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections; retry later",
        );
    };
    let cap = state.hard_cap;
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(cap)
        .max_frame_size(cap)
        .on_failed_upgrade(move |error| {
            tracing::warn!(message = "WebSocket upgrade failed.", %error, %peer);
        })
        .on_upgrade(move |socket| {
            let tracker = state.tracker.clone();
            tracker.track_future(connection::serve(socket, agent, peer, state, permit, slot))
        })
}
