//! The agent's delivery path without its sources: ring buffer → batcher → transport,
//! against one or several collector URLs, for the transport tests.

use std::sync::Arc;
use std::time::Duration;

use monitoring_agent::buffer::{RingBuffer, WhenFull};
use monitoring_agent::pipeline::{BatcherConfig, Body, Envelope, Source, SourceProgress, batcher};
use monitoring_agent::telemetry::Telemetry;
use monitoring_agent::transport::{self, DrainReport, Endpoint, TransportConfig, TransportStatus};
use monitoring_common::Event;
use monitoring_common::protocol::Codec;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Buffer → batcher → transport, with handles on each.
pub struct Pipeline {
    pub buffer: RingBuffer,
    pub telemetry: Arc<Telemetry>,
    pub status: Arc<TransportStatus>,
    pub drain: CancellationToken,
    pub batcher: JoinHandle<()>,
    pub transport: JoinHandle<DrainReport>,
}

/// How [`start`] builds the pipeline.
pub struct Options {
    pub max_batch_events: usize,
    pub max_batch_bytes: usize,
    pub flush_interval: Duration,
    pub codec: Codec,
    pub max_in_flight: usize,
    pub shutdown_timeout: Duration,
    pub token: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_batch_events: 1,
            max_batch_bytes: 1 << 20,
            flush_interval: Duration::from_secs(60),
            codec: Codec::Lz4,
            max_in_flight: 8,
            shutdown_timeout: Duration::from_secs(5),
            token: None,
        }
    }
}

/// A pipeline delivering to `url`.
pub fn start(url: String, o: Options) -> Pipeline {
    start_many(vec![url], o)
}

/// A pipeline delivering to `urls`, failing over between them in order.
pub fn start_many(urls: Vec<String>, o: Options) -> Pipeline {
    let telemetry = Arc::new(Telemetry::new());
    let buffer = RingBuffer::new(1000, WhenFull::Block, telemetry.buffer.clone());
    let status = Arc::new(TransportStatus::default());
    let drain = CancellationToken::new();
    let (tx, rx) = mpsc::channel(2);
    let batcher = tokio::spawn(batcher::run(
        buffer.clone(),
        BatcherConfig {
            max_batch_events: o.max_batch_events,
            max_batch_bytes: o.max_batch_bytes,
            flush_interval: o.flush_interval,
            codec: o.codec,
            compression_level: None,
            stream_id: 0xA11CE,
            first_sequence: 1,
        },
        tx,
        telemetry.batcher.clone(),
        status.delivery_idle(),
    ));
    let transport = tokio::spawn(transport::run(
        TransportConfig {
            endpoints: urls
                .into_iter()
                .map(|url| Endpoint {
                    url,
                    agent_id: "test-agent".into(),
                    auth_token: o.token.clone(),
                    connect_timeout: Duration::from_secs(5),
                    tls: Default::default(),
                })
                .collect(),
            max_in_flight: o.max_in_flight,
            shutdown_timeout: o.shutdown_timeout,
        },
        rx,
        drain.clone(),
        status.clone(),
        telemetry.transport.clone(),
    ));
    Pipeline {
        buffer,
        telemetry,
        status,
        drain,
        batcher,
        transport,
    }
}

impl Pipeline {
    /// Sends an event whose acknowledgement moves `progress` to `offset`.
    pub async fn send_tracked(&self, progress: &Arc<SourceProgress>, offset: u64) {
        self.buffer
            .send(Envelope {
                source: Source::File,
                body: Body::Event(Box::new(Event::log(
                    offset as i64,
                    "/var/log/test.log",
                    format!("line at {offset}"),
                ))),
                ack: Some((progress.clone(), offset)),
            })
            .await
            .unwrap();
    }

    /// Sends an untracked log event.
    pub async fn send_log(&self, message: &str) {
        self.buffer
            .send(Envelope::untracked(
                Source::File,
                Event::log(1, "test", message),
            ))
            .await
            .unwrap();
    }

    /// Drains: closes the buffer, waits for the batcher and the transport.
    pub async fn finish(self) -> DrainReport {
        self.drain.cancel();
        self.buffer.close();
        self.batcher.await.unwrap();
        self.transport.await.unwrap()
    }
}
