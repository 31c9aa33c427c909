//! The PostgreSQL store: the primary store for several collectors sharing one
//! database, queryable by the REST API of any of them.
//!
//! Events go to `logs`, `metrics` and `flows`, partitioned by the UTC day a batch
//! was received; a batch commits in one transaction with its dedup record (so two
//! collectors committing the same resent batch store it once) and the inventory it
//! changes. Retention drops whole day partitions. The client is the blocking
//! `postgres` crate, which fits the blocking [`Store`] trait (called from processor
//! threads and `spawn_blocking`), behind a small pool that replaces broken
//! connections, so a PostgreSQL restart costs retries, not a collector restart.
//!
//! - `config`: the `[storage]` keys it reads ([`PostgresConfig`]);
//! - `pool`: connections, their session settings, reconnection;
//! - `tls`: TLS to the server (rustls), as the URL's `sslmode` asks;
//! - `schema` / `partition`: tables, indexes, daily partitions and retention;
//! - `write`: the commit path (binary `COPY`) and deduplication;
//! - `query` / `metrics` / `flows`: log search with cursors, metric series, flows;
//! - `inventory`: agents, metric names, the health row;
//! - `values` / `error`: parameters and text conversion; errors.

mod config;
mod error;
mod flows;
mod inventory;
mod metrics;
mod partition;
mod pool;
mod query;
mod schema;
mod tls;
mod values;
mod write;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub use config::PostgresConfig;

use monitoring_common::event::now_ns;
use postgres::error::SqlState;

use self::error::doing;
use self::inventory::KnownNames;
use self::partition::Partitions;
use self::pool::Pool;
use self::schema::Schema;
use super::inventory::InventoryUpdate;
use super::sqlite::partition::{NS_PER_DAY, day_of};
use super::{
    AgentRecord, CommitOutcome, FlowQuery, FlowRecord, IngestBatch, LogPage, LogQuery, MetricQuery,
    Series, StorageError, Store,
};

/// Dedup records deleted per statement by retention.
const DEDUP_DELETE_CHUNK: i64 = 20_000;

/// The PostgreSQL store. Share it behind an `Arc`; every method may be called from
/// any thread and blocks on the database (never from an async task: use
/// `spawn_blocking`).
pub struct PostgresStore {
    pool: Pool,
    schema: Schema,
    partitions: Partitions,
    names: KnownNames,
    retention_days: u32,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.pool.target())
            .field("retention_days", &self.retention_days)
            .finish_non_exhaustive()
    }
}

/// A settings problem found before connecting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadSettings(String);

impl PostgresStore {
    /// Connects, creates the schema (under an advisory lock, so collectors may
    /// start together) and today's and tomorrow's partitions. Does not apply
    /// retention: call [`Store::enforce_retention`] (at start and then periodically).
    pub fn open(config: &PostgresConfig) -> Result<PostgresStore, StorageError> {
        let problems = config.validate();
        if !problems.is_empty() {
            let text: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect();
            return Err(StorageError::Database {
                context: "checking the [storage] settings",
                source: Box::new(BadSettings(text.join("; "))),
            });
        }
        let (client_config, target) = config
            .client_config()
            .map_err(doing("reading storage.url"))?;
        let tls =
            tls::PgTls::new(config.tls_ca.as_deref()).map_err(|source| StorageError::Database {
                context: "setting up TLS to PostgreSQL",
                source: Box::new(source),
            })?;
        let pool = Pool::new(
            client_config,
            target,
            tls,
            config.pool_size,
            config.timeout(),
        );
        let (schema, partitions) = pool
            .run(|conn| {
                let schema = schema::create(&mut conn.client, config.text_index)?;
                let partitions = Partitions::load(&mut conn.client)?;
                Ok((schema, partitions))
            })
            .map_err(doing("creating the schema"))?;
        let today = day_of(now_ns());
        pool.run(|conn| partitions.ensure(&mut conn.client, &[today, today + 1]))
            .map_err(doing("creating partitions"))?;
        tracing::info!(
            message = "Opened PostgreSQL store.",
            server = %pool.target(),
            partition_days = partitions.known().len(),
            trigram_index = schema.trigram_index,
            retention_days = config.retention_days,
        );
        Ok(PostgresStore {
            pool,
            schema,
            partitions,
            names: KnownNames::default(),
            retention_days: config.retention_days,
        })
    }
}

impl Store for PostgresStore {
    fn commit(&self, batch: &IngestBatch) -> Result<CommitOutcome, StorageError> {
        let day = day_of(batch.received_ns);
        let update = InventoryUpdate::from_batch(batch);
        let new_names = self.names.unknown(&update);
        let attempt = || {
            self.pool.run(|conn| {
                self.partitions.ensure(&mut conn.client, &[day])?;
                write::commit(conn, batch, &update, &new_names)
            })
        };
        let outcome = match attempt() {
            // "No partition for the row": another collector dropped the day (its
            // retention, or our clock is far behind). Make it again, once.
            Err(e) if e.code() == Some(&SqlState::CHECK_VIOLATION) => {
                self.partitions.forget(day);
                attempt()
            }
            other => other,
        }
        .map_err(doing("committing a batch"))?;
        self.names.learn(new_names);
        Ok(outcome)
    }

    fn query_logs(&self, query: &LogQuery) -> Result<LogPage, StorageError> {
        let cursor = query
            .cursor
            .as_deref()
            .map(query::Key::decode)
            .transpose()?;
        self.pool
            .run(|conn| query::query_logs(conn, self.schema.message_expr, query, cursor))
            .map_err(doing("searching logs"))
    }

    fn query_metrics(&self, query: &MetricQuery) -> Result<Vec<Series>, StorageError> {
        if !metrics::check(query)? {
            return Ok(Vec::new());
        }
        self.pool
            .run(|conn| metrics::query_metrics(conn, query))
            .map_err(doing("reading metrics"))
    }

    fn query_flows(&self, query: &FlowQuery) -> Result<Vec<FlowRecord>, StorageError> {
        self.pool
            .run(|conn| flows::query_flows(conn, query))
            .map_err(doing("reading flows"))
    }

    fn metric_names(&self) -> Result<Vec<String>, StorageError> {
        self.pool
            .run(inventory::metric_names)
            .map_err(doing("listing metric names"))
    }

    fn agents(&self) -> Result<Vec<AgentRecord>, StorageError> {
        self.pool
            .run(inventory::agents)
            .map_err(doing("listing agents"))
    }

    fn health(&self) -> Result<(), StorageError> {
        self.pool
            .run(|conn| inventory::health(conn, now_ns()))
            .map_err(doing("checking that the store can write"))
    }

    fn enforce_retention(&self, now_ns: i64) -> Result<usize, StorageError> {
        // Each pass also makes sure today's and tomorrow's partitions exist, so
        // that the first commits after midnight do not wait for DDL.
        let today = day_of(now_ns);
        self.pool
            .run(|conn| {
                self.partitions
                    .ensure(&mut conn.client, &[today, today.saturating_add(1)])
            })
            .map_err(doing("creating partitions"))?;
        if self.retention_days == 0 {
            return Ok(0);
        }
        // A day goes once the whole of it is older than the retention period, so
        // at least `retention_days` of data always remain (as in the sqlite store).
        let keep_ns = i64::from(self.retention_days).saturating_mul(NS_PER_DAY);
        let first_kept_day = day_of(now_ns.saturating_sub(keep_ns));
        let dropped = self
            .pool
            .run(|conn| {
                self.partitions
                    .drop_before(&mut conn.client, first_kept_day)
            })
            .map_err(doing("dropping partitions past retention"))?;
        let cut = first_kept_day.saturating_mul(NS_PER_DAY);
        // In chunks, each its own statement: a busy day's records (millions of
        // rows) in one DELETE could outlast the statement timeout every time.
        loop {
            let deleted = self
                .pool
                .run(|conn| {
                    conn.client.execute(
                        "DELETE FROM batches WHERE ctid = ANY (ARRAY(
                             SELECT ctid FROM batches WHERE received_ns < $1 LIMIT $2))",
                        &[&cut, &DEDUP_DELETE_CHUNK],
                    )
                })
                .map_err(doing("deleting dedup records past retention"))?;
            if deleted < DEDUP_DELETE_CHUNK.unsigned_abs() {
                break;
            }
        }
        Ok(dropped.len())
    }
}
