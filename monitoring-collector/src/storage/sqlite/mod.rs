//! The embedded SQLite store, the collector's default backend: no server to run.
//!
//! Layout of `[storage] path`:
//! - `events-YYYY-MM-DD.db`, one per UTC day of *receipt*: logs (with an FTS5 index
//!   over messages), metric samples, flows, the dedup records of the batches they
//!   came in, and per-kind min/max event times. Retention deletes whole files.
//! - `main.db`: the agent inventory and the metric-name catalogue.
//!
//! Every file is in WAL mode: one writer connection per file behind a mutex (SQLite
//! has one writer) and pooled read connections, so queries never wait for a commit.
//! Day files commit with `synchronous = FULL`, one transaction per batch, which is
//! what makes an acknowledgement after [`Store::commit`] mean "on disk".
//!
//! - `config`: the `[storage]` keys ([`SqliteConfig`]);
//! - `schema`: tables, pragmas and connection pools;
//! - `partition`: day files, their bounds and retention;
//! - `write`: the commit path and deduplication;
//! - `query` / `metrics` / `flows`: log search with cursors, metric series, flows;
//! - `inventory`: `main.db`.

mod config;
mod error;
mod flows;
mod inventory;
mod metrics;
pub(crate) mod partition;
mod query;
mod schema;
mod write;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use config::SqliteConfig;

use self::error::io_at;
use self::inventory::MainDb;
use self::partition::{NS_PER_DAY, Partitions, day_of};
use self::write::{holds_batch, write_batch};
use super::in_flight::InFlight;
use super::inventory::InventoryUpdate;
use super::{
    AgentRecord, CommitOutcome, FlowQuery, FlowRecord, IngestBatch, LogPage, LogQuery, MetricQuery,
    Series, StorageError, Store,
};

/// The SQLite store. Cheap to share behind an `Arc`; every method may be called
/// from any thread, and blocks only on SQLite itself.
pub struct SqliteStore {
    dir: PathBuf,
    retention_days: u32,
    partitions: Partitions,
    main: MainDb,
    in_flight: InFlight,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("dir", &self.dir)
            .field("retention_days", &self.retention_days)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store in `config.path`, creating the directory, `main.db` and the
    /// schema as needed, and finding the day files already there. Does not apply
    /// retention: call [`Store::enforce_retention`] (at start and then periodically).
    pub fn open(config: &SqliteConfig) -> Result<SqliteStore, StorageError> {
        let dir = config.path.clone();
        std::fs::create_dir_all(&dir).map_err(io_at("creating data directory", &dir))?;
        let busy = Duration::from_millis(config.busy_timeout_ms);
        let pool = config.read_pool_size.max(1);
        let main = MainDb::open(&dir, busy, pool)?;
        let partitions = Partitions::load(&dir, busy, pool)?;
        tracing::info!(
            message = "Opened SQLite store.",
            path = %dir.display(),
            partitions = partitions.all().len(),
            retention_days = config.retention_days,
        );
        Ok(SqliteStore {
            dir,
            retention_days: config.retention_days,
            partitions,
            main,
            in_flight: InFlight::default(),
        })
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Stores `batch` unless some day file already records it.
    fn commit_events(&self, batch: &IngestBatch) -> Result<CommitOutcome, StorageError> {
        let day = day_of(batch.received_ns);
        loop {
            // The target file checks inside its transaction; the others (a resend
            // after midnight, or after a clock step) are checked here first.
            for partition in self.partitions.all() {
                if partition.day != day
                    && partition.may_hold_stream(&batch.agent_id, batch.stream_id)
                    && holds_batch(&partition, batch)?
                {
                    return Ok(CommitOutcome::Duplicate);
                }
            }
            let partition = self.partitions.get_or_create(day)?;
            if let Some(outcome) =
                partition.with_writer(|conn| write_batch(conn, &partition, batch))?
            {
                return Ok(outcome);
            }
            // Retired by retention between lookup and lock: go again with a new file.
        }
    }
}

impl Store for SqliteStore {
    fn commit(&self, batch: &IngestBatch) -> Result<CommitOutcome, StorageError> {
        let _claim = self.in_flight.enter(batch);
        let outcome = self.commit_events(batch)?;
        let update = match outcome {
            CommitOutcome::Committed => InventoryUpdate::from_batch(batch),
            CommitOutcome::Duplicate => InventoryUpdate::default(),
        };
        // The events are durable; an inventory failure must not make the agent
        // resend them, so it is only logged (the next batch repairs it).
        if let Err(error) = self.main.apply(&batch.agent_id, batch.received_ns, &update) {
            tracing::warn!(
                message = "Failed to update the agent inventory.",
                %error,
                agent_id = %batch.agent_id,
            );
        }
        Ok(outcome)
    }

    fn query_logs(&self, query: &LogQuery) -> Result<LogPage, StorageError> {
        query::query_logs(self.partitions.all(), query)
    }

    fn query_metrics(&self, query: &MetricQuery) -> Result<Vec<Series>, StorageError> {
        metrics::query_metrics(self.partitions.all(), query)
    }

    fn query_flows(&self, query: &FlowQuery) -> Result<Vec<FlowRecord>, StorageError> {
        flows::query_flows(self.partitions.all(), query)
    }

    fn metric_names(&self) -> Result<Vec<String>, StorageError> {
        self.main.metric_names()
    }

    fn agents(&self) -> Result<Vec<AgentRecord>, StorageError> {
        self.main.agents()
    }

    fn health(&self) -> Result<(), StorageError> {
        self.main.health(monitoring_common::event::now_ns())
    }

    fn enforce_retention(&self, now_ns: i64) -> Result<usize, StorageError> {
        if self.retention_days == 0 {
            return Ok(0);
        }
        // A day file goes once the whole of its day is older than the retention
        // period, so at least `retention_days` of data always remain.
        let keep_ns = i64::from(self.retention_days).saturating_mul(NS_PER_DAY);
        let first_kept_day = day_of(now_ns.saturating_sub(keep_ns));
        Ok(self.partitions.drop_before(first_kept_day)?.len())
    }
}
