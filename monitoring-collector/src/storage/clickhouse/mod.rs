//! The ClickHouse store: the primary store past one machine. Any number of
//! collectors may write to one database; none keeps state that another needs.
//!
//! Speaks ClickHouse's HTTP interface (checked against 18.16, the oldest server
//! supported: no query parameters, no TTL, no JSON functions), so it needs no
//! client library beyond a blocking HTTP client.
//!
//! - `client`: `[storage] url`, requests, errors;
//! - `sql`: the one quoting function and number literals;
//! - `rowbinary`: the format of inserts and answers;
//! - `schema`: tables (MergeTree partitioned by day of receipt) and health;
//! - `write`: commits and the duplicate check;
//! - `query` / `metrics` / `flows`: log search with cursors, metric series, flows;
//! - `inventory`: agents and metric names;
//! - `retention`: dropping day partitions.

mod client;
mod flows;
mod inventory;
mod metrics;
mod query;
mod retention;
mod rowbinary;
mod schema;
mod sql;
mod write;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::time::Duration;

pub use client::{Endpoint, UrlError};

use self::client::{ClickhouseError, Client};
use self::inventory::Inventory;
use super::in_flight::InFlight;
use super::inventory::InventoryUpdate;
use super::{
    AgentRecord, CommitOutcome, FlowQuery, FlowRecord, IngestBatch, LogPage, LogQuery, MetricQuery,
    Series, StorageError, Store,
};
use crate::storage::config::StorageConfig;

/// Settings of the ClickHouse store, taken from `[storage]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickhouseConfig {
    /// `storage.url`: the HTTP interface and database.
    pub endpoint: Endpoint,
    /// `storage.retention_days`; `0` keeps everything.
    pub retention_days: u32,
    /// `storage.timeout_ms`: the longest any request may take.
    pub timeout: Duration,
    /// `storage.read_pool_size`: idle connections kept to the server.
    pub idle_connections: usize,
}

impl ClickhouseConfig {
    /// The store's settings in `[storage]`; fails if `url` is missing or unusable.
    pub fn from_storage(config: &StorageConfig) -> Result<ClickhouseConfig, UrlError> {
        let url = config.url.as_deref().unwrap_or_default();
        Ok(ClickhouseConfig {
            endpoint: Endpoint::parse(url)?,
            retention_days: config.retention_days,
            timeout: Duration::from_millis(config.timeout_ms),
            idle_connections: config.read_pool_size.max(1),
        })
    }
}

/// Maps a ClickHouse failure to [`StorageError::Database`].
fn db(context: &'static str) -> impl FnOnce(ClickhouseError) -> StorageError {
    move |source| StorageError::Database {
        context,
        source: Box::new(source),
    }
}

/// The ClickHouse store. Cheap to share behind an `Arc`; every method may be called
/// from any thread and blocks until ClickHouse answers (within `timeout_ms`).
#[derive(Debug)]
pub struct ClickhouseStore {
    client: Client,
    retention_days: u32,
    in_flight: InFlight,
    inventory: Inventory,
}

impl ClickhouseStore {
    /// Connects and creates the database and tables that do not exist yet. Does not
    /// apply retention: call [`Store::enforce_retention`].
    pub fn open(config: &ClickhouseConfig) -> Result<ClickhouseStore, StorageError> {
        let client = Client::new(
            config.endpoint.clone(),
            config.timeout,
            config.idle_connections,
        );
        schema::create(&client).map_err(db("creating the ClickHouse schema"))?;
        tracing::info!(
            message = "Opened ClickHouse store.",
            server = %config.endpoint.server(),
            database = %config.endpoint.database(),
            retention_days = config.retention_days,
        );
        Ok(ClickhouseStore {
            client,
            retention_days: config.retention_days,
            in_flight: InFlight::default(),
            inventory: Inventory::default(),
        })
    }
}

impl Store for ClickhouseStore {
    fn commit(&self, batch: &IngestBatch) -> Result<CommitOutcome, StorageError> {
        let _claim = self.in_flight.enter(batch);
        let outcome = write::commit(&self.client, batch).map_err(|e| StorageError::Database {
            context: "committing a batch",
            source: Box::new(e),
        })?;
        let update = match outcome {
            CommitOutcome::Committed => InventoryUpdate::from_batch(batch),
            CommitOutcome::Duplicate => InventoryUpdate::default(),
        };
        // The events are stored; an inventory failure must not make the agent
        // resend them, so it is only logged (the next batch repairs it).
        if let Err(error) = self.inventory.apply(
            &self.client,
            &batch.agent_id,
            batch.received_ns,
            outcome == CommitOutcome::Committed,
            &update,
        ) {
            tracing::warn!(
                message = "Failed to update the agent inventory.",
                %error,
                agent_id = %batch.agent_id,
            );
        }
        Ok(outcome)
    }

    fn query_logs(&self, query: &LogQuery) -> Result<LogPage, StorageError> {
        query::query_logs(&self.client, query)
    }

    fn query_metrics(&self, query: &MetricQuery) -> Result<Vec<Series>, StorageError> {
        metrics::query_metrics(&self.client, query)
    }

    fn query_flows(&self, query: &FlowQuery) -> Result<Vec<FlowRecord>, StorageError> {
        flows::query_flows(&self.client, query)
    }

    fn metric_names(&self) -> Result<Vec<String>, StorageError> {
        inventory::metric_names(&self.client).map_err(db("listing metric names"))
    }

    fn agents(&self) -> Result<Vec<AgentRecord>, StorageError> {
        inventory::agents(&self.client).map_err(db("listing agents"))
    }

    fn health(&self) -> Result<(), StorageError> {
        let missing =
            schema::missing_tables(&self.client).map_err(db("checking the store's tables"))?;
        if missing.is_empty() {
            return Ok(());
        }
        Err(StorageError::Database {
            context: "checking the store's tables",
            source: format!(
                "tables missing in database {}: {}",
                self.client.endpoint().database(),
                missing.join(", ")
            )
            .into(),
        })
    }

    fn enforce_retention(&self, now_ns: i64) -> Result<usize, StorageError> {
        retention::drop_expired(&self.client, self.retention_days, now_ns)
            .map_err(db("dropping expired partitions"))
    }
}
