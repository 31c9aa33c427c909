//! Storage: the trait every store implements and the query types the API uses.
//!
//! A store is written to by processor workers ([`Store::commit`]) and read by the
//! REST API. Calls are blocking (SQLite is): async callers use `spawn_blocking` or
//! dedicated worker threads. `commit` returns only once the batch is durable, and is
//! idempotent per `(agent_id, stream_id, sequence)`, which is what lets the
//! collector acknowledge only after commit and still drop resent duplicates.

pub mod clickhouse;
pub mod config;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod conformance;
pub mod deferred;
mod in_flight;
pub mod inventory;
pub mod none;
pub mod postgres;
pub mod sinks;
pub mod sqlite;
pub mod text;

use std::collections::BTreeMap;
use std::sync::Arc;

use monitoring_common::Event;
use serde::Serialize;

/// A decoded batch from an authenticated agent, ready to store.
#[derive(Debug, Clone)]
pub struct IngestBatch {
    /// The authenticated agent (never taken from the payload).
    pub agent_id: Arc<str>,
    /// Stream of the batch (one run of the agent's sender).
    pub stream_id: u64,
    /// Sequence of the batch in its stream.
    pub sequence: u64,
    /// When the collector received it, ns since the epoch.
    pub received_ns: i64,
    /// The events.
    pub events: Vec<Event>,
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Stored now.
    Committed,
    /// Stored before; nothing written.
    Duplicate,
}

/// Storage failures. Any error from `commit` makes the collector answer retry-later.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database reported an error.
    #[error("database error in {context}: {source}")]
    Database {
        /// What was being done.
        context: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// File system trouble (creating the data directory, a partition file).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A query that cannot be answered as asked (bad cursor...). Maps to HTTP 400.
    #[error("{0}")]
    BadQuery(String),
    /// The store is not open yet: its database server was down at start and the
    /// collector keeps trying ([`deferred`]). Maps to HTTP 503.
    #[error("the {backend} store is not open yet (retrying): {last_error}")]
    Unavailable {
        /// `postgres` or `clickhouse`.
        backend: &'static str,
        /// Why the last attempt failed.
        last_error: String,
    },
}

/// Sort order of log results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Newest first (the default).
    #[default]
    Desc,
    /// Oldest first.
    Asc,
}

/// `GET /api/v1/logs` as a query.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Full-text query over messages (FTS syntax of the store; words are ANDed).
    pub text: Option<String>,
    /// Only this agent.
    pub agent: Option<String>,
    /// Only this source (exact match).
    pub source: Option<String>,
    /// Only events at least this severe (code: 0 emergency .. 8 trace).
    pub max_severity_code: Option<u8>,
    /// From this time, ns, inclusive.
    pub from_ns: Option<i64>,
    /// To this time, ns, exclusive.
    pub to_ns: Option<i64>,
    /// At most this many (already clamped by the API).
    pub limit: usize,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Sort order by time.
    pub order: Order,
}

/// One stored log event as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogRecord {
    /// Event time, ns since the epoch.
    pub timestamp_ns: i64,
    /// The agent that sent it.
    pub agent_id: String,
    /// Its source (file path...).
    pub source: String,
    /// Severity name, when known.
    pub severity: Option<String>,
    /// The message.
    pub message: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Structured fields, as JSON.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// A page of log results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogPage {
    /// The records, in the requested order.
    pub logs: Vec<LogRecord>,
    /// Pass as `cursor` to get the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/metrics` as a query.
#[derive(Debug, Clone, Default)]
pub struct MetricQuery {
    /// Metric name (exact).
    pub name: String,
    /// Only this agent.
    pub agent: Option<String>,
    /// Only series whose labels include all of these.
    pub labels: BTreeMap<String, String>,
    /// From this time, ns, inclusive.
    pub from_ns: i64,
    /// To this time, ns, exclusive.
    pub to_ns: i64,
    /// Bucket width in ns: each series gets at most one point per step, the average
    /// of the samples in it, stamped at the bucket start. `None`: raw samples.
    pub step_ns: Option<i64>,
}

/// One series in a metric query result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Metric name.
    pub name: String,
    /// The agent.
    pub agent_id: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// gauge, counter, histogram or summary.
    pub kind: String,
    /// `(timestamp ms, value)` points, oldest first. Histograms and summaries give their sum.
    pub points: Vec<(i64, f64)>,
}

/// An agent in the inventory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRecord {
    /// Agent id.
    pub id: String,
    /// Host name, from the agent's `host_info` metric.
    pub hostname: Option<String>,
    /// Operating system name and version.
    pub os: Option<String>,
    /// Kernel version.
    pub kernel_version: Option<String>,
    /// Last batch received, ns since the epoch.
    pub last_seen_ns: i64,
    /// Latest `host_cpu_usage_percent{cpu="total"}`.
    pub cpu_percent: Option<f64>,
    /// Latest `host_memory_usage_percent`.
    pub memory_percent: Option<f64>,
}

/// `GET /api/v1/flows` as a query. Results are newest first, ties broken by
/// `(agent_id, src_addr, dst_addr, src_port, dst_port, protocol)` ascending, so every
/// store returns the same list.
#[derive(Debug, Clone, Default)]
pub struct FlowQuery {
    /// Only this agent.
    pub agent: Option<String>,
    /// Only flows with this address on either side (text as stored: `127.0.0.1`, `::1`).
    pub addr: Option<String>,
    /// Only flows with this port on either side.
    pub port: Option<u16>,
    /// Only this IP protocol number.
    pub protocol: Option<u8>,
    /// From this time (interval start), ns, inclusive.
    pub from_ns: Option<i64>,
    /// To this time (interval start), ns, exclusive.
    pub to_ns: Option<i64>,
    /// At most this many (already clamped by the API).
    pub limit: usize,
}

/// One stored flow summary (one flow over one capture interval).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowRecord {
    /// Start of the interval, ns since the epoch.
    pub timestamp_ns: i64,
    /// End of the interval, ns since the epoch.
    pub end_ns: i64,
    /// The agent that captured it.
    pub agent_id: String,
    /// The capture source (interface or savefile).
    pub source: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Address of the side that opened the flow.
    pub src_addr: String,
    /// The other side.
    pub dst_addr: String,
    /// Source port (0 without ports).
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// IP protocol number.
    pub protocol: u8,
    /// Bytes from source to destination.
    pub bytes_out: u64,
    /// Bytes from destination to source.
    pub bytes_in: u64,
    /// Packets from source to destination.
    pub packets_out: u64,
    /// Packets from destination to source.
    pub packets_in: u64,
    /// Union of the TCP flags seen.
    pub tcp_flags: u8,
}

/// A storage backend.
pub trait Store: Send + Sync + 'static {
    /// Durably stores a batch, or recognises it as already stored. Atomic: after a
    /// crash the batch is either wholly stored (and recorded as such) or absent.
    fn commit(&self, batch: &IngestBatch) -> Result<CommitOutcome, StorageError>;
    /// Searches logs.
    fn query_logs(&self, query: &LogQuery) -> Result<LogPage, StorageError>;
    /// Reads metric series.
    fn query_metrics(&self, query: &MetricQuery) -> Result<Vec<Series>, StorageError>;
    /// Flow summaries, in the order [`FlowQuery`] describes.
    fn query_flows(&self, query: &FlowQuery) -> Result<Vec<FlowRecord>, StorageError>;
    /// Known metric names, sorted.
    fn metric_names(&self) -> Result<Vec<String>, StorageError>;
    /// The agent inventory, sorted by id.
    fn agents(&self) -> Result<Vec<AgentRecord>, StorageError>;
    /// Cheap check that the store can be written (for `/ready`).
    fn health(&self) -> Result<(), StorageError>;
    /// Deletes data older than the retention period; returns partitions dropped.
    fn enforce_retention(&self, now_ns: i64) -> Result<usize, StorageError>;
}

/// Opens the store `config` describes, creating its schema as needed. Blocking
/// (files, a database server): call it off the async executor.
pub fn open(config: &config::StorageConfig) -> Result<Arc<dyn Store>, StorageError> {
    use config::StorageBackend;
    match config.backend {
        StorageBackend::Sqlite => Ok(Arc::new(sqlite::SqliteStore::open(&config.sqlite())?)),
        StorageBackend::Clickhouse => {
            let ch = clickhouse::ClickhouseConfig::from_storage(config).map_err(|e| {
                StorageError::Database {
                    context: "reading storage.url",
                    source: Box::new(e),
                }
            })?;
            Ok(Arc::new(clickhouse::ClickhouseStore::open(&ch)?))
        }
        StorageBackend::Postgres => Ok(Arc::new(postgres::PostgresStore::open(
            &postgres::PostgresConfig::from_storage(config),
        )?)),
        StorageBackend::None => Ok(Arc::new(none::NoStore::default())),
    }
}
