//! The control server: the agent's own `GET /health` and `GET /metrics`, on
//! `[control] listen` (loopback by default: nothing here is meant for the network).
//!
//! `/health` answers 200 with a JSON document whenever the agent runs; `status` is
//! `"ok"` while connected to the collector and `"degraded"` otherwise, so a liveness
//! probe does not restart an agent that is only waiting out a collector outage.
//! `/metrics` renders the [`Telemetry`] registry in the Prometheus (OpenMetrics) text
//! format.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::buffer::RingBuffer;
use crate::telemetry::Telemetry;
use crate::transport::TransportStatus;

/// What the control server reads from.
#[derive(Debug, Clone)]
pub struct ControlState {
    /// The agent's id.
    pub agent_id: String,
    /// Every metric of the agent.
    pub telemetry: Arc<Telemetry>,
    /// The ring buffer, for its fill level.
    pub buffer: RingBuffer,
    /// The transport's connection state.
    pub transport: Arc<TransportStatus>,
}

/// The `/health` document.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `"ok"` when connected to the collector, else `"degraded"`.
    pub status: &'static str,
    /// The agent's id.
    pub agent_id: String,
    /// The agent's version.
    pub version: &'static str,
    /// The collector connection.
    pub collector: CollectorHealth,
    /// The ring buffer.
    pub buffer: BufferHealth,
}

/// The collector part of `/health`.
#[derive(Debug, Serialize)]
pub struct CollectorHealth {
    /// Whether a connection is open.
    pub connected: bool,
    /// The endpoint connected to (one of `[collector] endpoints`); null when none.
    pub endpoint: Option<String>,
    /// When the last acknowledgement arrived, Unix milliseconds; null if none yet.
    pub last_ack_unix_ms: Option<i64>,
    /// Batches sent and not yet acknowledged.
    pub in_flight_batches: usize,
}

/// The buffer part of `/health`.
#[derive(Debug, Serialize)]
pub struct BufferHealth {
    /// Events buffered now.
    pub events: usize,
    /// Capacity in events.
    pub capacity: usize,
    /// `events / capacity`, 0 to 1.
    pub fill_ratio: f64,
}

impl ControlState {
    /// The health document now.
    pub fn health(&self) -> Health {
        let connected = self.transport.connected();
        let events = self.buffer.len();
        let capacity = self.buffer.capacity();
        Health {
            status: if connected { "ok" } else { "degraded" },
            agent_id: self.agent_id.clone(),
            version: env!("CARGO_PKG_VERSION"),
            collector: CollectorHealth {
                connected,
                endpoint: self.transport.endpoint(),
                last_ack_unix_ms: self.transport.last_ack_unix_ms(),
                in_flight_batches: self.transport.in_flight(),
            },
            buffer: BufferHealth {
                events,
                capacity,
                fill_ratio: events as f64 / capacity.max(1) as f64,
            },
        }
    }
}

/// The control routes.
pub fn router(state: ControlState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(state))
}

async fn health(State(state): State<Arc<ControlState>>) -> Json<Health> {
    Json(state.health())
}

async fn metrics(State(state): State<Arc<ControlState>>) -> Response {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.telemetry.encode(),
    )
        .into_response()
}

/// Serves the control routes on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    state: ControlState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        info!(message = "Control server listening.", %addr);
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::buffer::WhenFull;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_health_and_metrics() {
        let telemetry = Arc::new(Telemetry::new());
        let buffer = RingBuffer::new(100, WhenFull::Block, telemetry.buffer.clone());
        let state = ControlState {
            agent_id: "agent-1".into(),
            telemetry: telemetry.clone(),
            buffer,
            transport: Arc::new(TransportStatus::default()),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, state, shutdown.clone()));

        let health = get(addr, "/health").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        let body = health.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["status"], "degraded");
        assert_eq!(json["agent_id"], "agent-1");
        assert_eq!(json["collector"]["connected"], false);
        assert!(json["collector"]["endpoint"].is_null());
        assert!(json["collector"]["last_ack_unix_ms"].is_null());
        assert_eq!(json["buffer"]["capacity"], 100);

        let metrics = get(addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("monitoring_agent_buffer_capacity_events 100"));
        assert!(metrics.contains("monitoring_agent_file_read_lines_total"));

        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
