//! A tiny collector for the agent's integration tests: a real WebSocket server on
//! 127.0.0.1:0 that decodes every frame with monitoring-common and lets the test
//! decide, frame by frame, what to answer (ok, retry-later, rejected, nothing) or to
//! cut the connection.

// Shared by several test crates; tests may unwrap; the handshake callback's error
// type is tungstenite's.
#![allow(dead_code, clippy::unwrap_used, clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use monitoring_common::protocol::frame::decode_frame;
use monitoring_common::protocol::{Ack, Frame, Limits};
use monitoring_common::{EventKind, protocol::AGENT_ID_HEADER};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

pub mod pipeline;

/// What the test tells one connection to do.
#[derive(Debug)]
pub enum Command {
    /// Send this acknowledgement.
    Send(Ack),
    /// Drop the connection without a close frame.
    Disconnect,
}

/// One frame received, with the means to answer it.
#[derive(Debug)]
pub struct Received {
    /// Which connection (0, 1, ... in order of arrival).
    pub conn: usize,
    /// The decoded frame.
    pub frame: Frame,
    tx: mpsc::UnboundedSender<Command>,
}

impl Received {
    /// Stream id and sequence.
    pub fn id(&self) -> (u64, u64) {
        (self.frame.header.stream_id, self.frame.header.sequence)
    }

    /// The sequence.
    pub fn seq(&self) -> u64 {
        self.frame.header.sequence
    }

    /// Acknowledge as committed.
    pub fn ok(&self) {
        let (s, q) = self.id();
        self.send(Ack::ok(s, q));
    }

    /// Ask for a resend after `ms`.
    pub fn retry_later(&self, ms: u32) {
        let (s, q) = self.id();
        self.send(Ack::retry_later(s, q, ms, "busy"));
    }

    /// Refuse for good.
    pub fn reject(&self, reason: &str) {
        let (s, q) = self.id();
        self.send(Ack::rejected(s, q, reason));
    }

    /// Send any acknowledgement on this frame's connection.
    pub fn send(&self, ack: Ack) {
        self.tx.send(Command::Send(ack)).ok();
    }

    /// Cut this frame's connection.
    pub fn disconnect(&self) {
        self.tx.send(Command::Disconnect).ok();
    }

    /// The names of the metric samples in the frame.
    pub fn metric_names(&self) -> Vec<String> {
        self.frame
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Metric(m) => Some(m.name.clone()),
                _ => None,
            })
            .collect()
    }

    /// The log messages in the frame.
    pub fn messages(&self) -> Vec<String> {
        self.frame
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Log(l) => Some(l.message.clone()),
                _ => None,
            })
            .collect()
    }
}

/// What the upgrade request of a connection carried.
#[derive(Debug, Clone)]
pub struct Connected {
    /// Which connection.
    pub conn: usize,
    /// Request path and query.
    pub uri: String,
    /// The Authorization header.
    pub authorization: Option<String>,
    /// The agent id header.
    pub agent_id: Option<String>,
}

/// The test collector.
pub struct TestCollector {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Every frame received, in order.
    pub frames: mpsc::UnboundedReceiver<Received>,
    /// Every connection accepted.
    pub connections: mpsc::UnboundedReceiver<Connected>,
}

impl TestCollector {
    /// Starts a collector on 127.0.0.1:0.
    pub async fn start() -> TestCollector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let (conn_tx, connections) = mpsc::unbounded_channel();
        let counter = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let conn = counter.fetch_add(1, Ordering::SeqCst);
                let (frames_tx, conn_tx) = (frames_tx.clone(), conn_tx.clone());
                tokio::spawn(async move {
                    let mut info = None;
                    let callback = |req: &Request, resp: Response| {
                        let header = |name: &str| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string)
                        };
                        info = Some(Connected {
                            conn,
                            uri: req.uri().to_string(),
                            authorization: header("authorization"),
                            agent_id: header(AGENT_ID_HEADER),
                        });
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                    else {
                        return;
                    };
                    if let Some(info) = info {
                        conn_tx.send(info).ok();
                    }
                    let (tx, mut rx) = mpsc::unbounded_channel();
                    loop {
                        tokio::select! {
                            msg = ws.next() => match msg {
                                Some(Ok(Message::Binary(bytes))) => {
                                    let frame = decode_frame(&bytes, &Limits::default())
                                        .expect("the agent sent an invalid frame");
                                    frames_tx.send(Received { conn, frame, tx: tx.clone() }).ok();
                                }
                                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                                Some(Ok(_)) => {}
                            },
                            cmd = rx.recv() => match cmd {
                                Some(Command::Send(ack)) => {
                                    if ws.send(Message::Binary(ack.encode().into())).await.is_err() {
                                        return;
                                    }
                                }
                                Some(Command::Disconnect) | None => return,
                            },
                        }
                    }
                });
            }
        });
        TestCollector {
            addr,
            frames,
            connections,
        }
    }

    /// The ingest URL.
    pub fn url(&self) -> String {
        format!("ws://{}/ingest", self.addr)
    }

    /// The next frame, or a panic after `secs` seconds.
    pub async fn next_frame(&mut self, secs: u64) -> Received {
        tokio::time::timeout(Duration::from_secs(secs), self.frames.recv())
            .await
            .expect("no frame arrived in time")
            .expect("collector stopped")
    }

    /// Asserts that no frame arrives within `ms` milliseconds.
    pub async fn expect_no_frame(&mut self, ms: u64) {
        if let Ok(Some(f)) =
            tokio::time::timeout(Duration::from_millis(ms), self.frames.recv()).await
        {
            panic!("unexpected frame {:?} on connection {}", f.id(), f.conn);
        }
    }

    /// The next connection, or a panic after `secs` seconds.
    pub async fn next_connection(&mut self, secs: u64) -> Connected {
        tokio::time::timeout(Duration::from_secs(secs), self.connections.recv())
            .await
            .expect("no connection in time")
            .expect("collector stopped")
    }
}

/// Polls `f` every 10 ms until it is true, or panics after `secs` seconds.
pub async fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
