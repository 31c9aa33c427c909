//! Fan-out sinks: where events go besides the primary store (`[[storage.sinks]]`).
//!
//! A sink is one module behind the small [`Sink`] trait; adding one touches a line of
//! [`build`] and no other sink. Around them:
//!
//! - [`config`]: the `[[storage.sinks]]` table and its validation;
//! - [`route`]: which events a sink takes (`kinds`, `min_severity`);
//! - [`fanout`]: what the processor workers call after the primary store's commit:
//!   required sinks written in the worker, with retries, before the batch is
//!   acknowledged; best-effort sinks offered the batch through their own bounded
//!   queue (`queue`), drained by a thread of their own;
//! - [`ndjson`]: the one event shape of the `file` and `console` sinks;
//! - the sinks: [`file`](mod@file), [`console`], [`blackhole`], [`remote_write`], and
//!   [`StoreSink`] for `postgres` and `clickhouse` (another store written as a sink).
//!
//! Sinks are blocking (file and network I/O on OS threads, never on the async
//! executor) and shared: a required sink is written by every worker at once, so
//! implementations lock what they must themselves.

pub mod blackhole;
pub mod config;
pub mod console;
pub mod fanout;
pub mod file;
pub mod ndjson;
mod queue;
pub mod remote_write;
pub mod route;

#[cfg(test)]
mod config_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use config::{RouteKind, SinkConfig, SinkType};
pub use fanout::{FanOut, SinkFailure, Sinks};

use super::{IngestBatch, StorageError, Store};

/// A destination for events besides the primary store.
pub trait Sink: Send + Sync + 'static {
    /// Writes `batches` (already routed: each holds only events this sink takes, and
    /// none is empty). Blocking. When it returns `Ok` the events are accepted; a
    /// required file sink has also synced them to disk.
    fn write(&self, batches: &[Arc<IngestBatch>]) -> Result<(), SinkError>;
    /// A cheap check that the sink can take writes (for `/ready`): the last write's
    /// failure, a directory that vanished, the store's own check.
    fn health(&self) -> Result<(), SinkError>;
    /// Makes what was written durable and finishes background work (compression of
    /// rotated files), at shutdown.
    fn flush(&self) -> Result<(), SinkError>;
}

/// Why a sink write failed, and whether trying again can help
/// ([`SinkError::is_retryable`]).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// File system trouble (a directory gone, a full disk, a closed stdout).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The peer could not be reached, or did not answer in time.
    #[error("cannot reach {url}: {message}")]
    Transport {
        /// The endpoint (without credentials).
        url: String,
        /// The cause, with its chain.
        message: String,
    },
    /// The peer answered with an error that may pass (5xx, 429).
    #[error("{url} answered {status}: {body}")]
    Status {
        /// The endpoint (without credentials).
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The peer refused the data for good (a 4xx, out-of-order samples): sending
    /// it again would be refused again, so it is dropped and counted.
    #[error("{url} refused the data ({status}): {body}")]
    Rejected {
        /// The endpoint (without credentials).
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The data cannot be encoded for the sink (never better on a retry).
    #[error("cannot encode the data: {0}")]
    Encode(String),
    /// A store used as a sink failed.
    #[error(transparent)]
    Store(#[from] StorageError),
    /// The last write failed (from [`Sink::health`]).
    #[error("last write failed: {0}")]
    Unhealthy(String),
}

impl SinkError {
    /// Whether sending the same data again can succeed. `false` means: drop it and
    /// count it, never loop.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, SinkError::Rejected { .. } | SinkError::Encode(_))
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> SinkError {
        SinkError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Why the sinks could not be built at start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The sink could not be set up (a file that cannot be opened, a bad URL).
    #[error("storage.sinks[{index}] ({name}): {message}")]
    Setup {
        /// Position in `[[storage.sinks]]`.
        index: usize,
        /// The sink's name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// A best-effort sink's thread could not start.
    #[error("cannot start the thread of sink {name}: {source}")]
    Spawn {
        /// The sink's name.
        name: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Builds the sink one `[[storage.sinks]]` table describes (number `index`). Does
/// the I/O (opens files, makes HTTP clients): call it off the async executor.
pub fn build(index: usize, config: &SinkConfig) -> Result<Arc<dyn Sink>, BuildError> {
    let setup = |message: String| BuildError::Setup {
        index,
        name: config.name().to_string(),
        message,
    };
    Ok(match config.kind {
        SinkType::File => Arc::new(file::FileSink::open(config).map_err(|e| setup(e.to_string()))?),
        SinkType::Console => Arc::new(console::ConsoleSink::stdout()),
        SinkType::Blackhole => Arc::new(blackhole::BlackholeSink::default()),
        SinkType::PrometheusRemoteWrite => {
            Arc::new(remote_write::RemoteWriteSink::new(config).map_err(setup)?)
        }
        SinkType::Postgres | SinkType::Clickhouse => {
            Arc::new(StoreSink::new(open_store(index, config)?))
        }
    })
}

/// Opens the store a `postgres` or `clickhouse` sink writes to, with that primary
/// store's schema; if its server does not answer yet, the sink fails its writes
/// until it does ([`crate::storage::deferred`]).
fn open_store(index: usize, config: &SinkConfig) -> Result<Arc<dyn Store>, BuildError> {
    let setup = |message: String| BuildError::Setup {
        index,
        name: config.name().to_string(),
        message,
    };
    let storage = config
        .store_config()
        .ok_or_else(|| setup("not a store sink".into()))?;
    crate::storage::deferred::open_or_defer(&storage).map_err(|e| setup(e.to_string()))
}

/// Another [`Store`] written as a sink (`postgres`, `clickhouse`): each batch is
/// committed, so a batch written twice (a resend, a retry) is stored once.
pub struct StoreSink {
    store: Arc<dyn Store>,
}

impl StoreSink {
    /// A sink that commits to `store`.
    pub fn new(store: Arc<dyn Store>) -> StoreSink {
        StoreSink { store }
    }
}

impl Sink for StoreSink {
    fn write(&self, batches: &[Arc<IngestBatch>]) -> Result<(), SinkError> {
        for batch in batches {
            self.store.commit(batch)?;
        }
        Ok(())
    }

    fn health(&self) -> Result<(), SinkError> {
        Ok(self.store.health()?)
    }

    fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
