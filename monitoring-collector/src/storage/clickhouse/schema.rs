//! The tables of the ClickHouse store, created at start with `IF NOT EXISTS` (so an
//! operator's own tables of the same names, such as Distributed tables over a
//! cluster, are used as they are), and the health check that they are there.
//!
//! Event tables and `batches` are MergeTree tables partitioned by the UTC day of
//! receipt, like the SQLite store's day files: retention drops whole partitions.
//! Every event row carries its batch key `(agent_id, stream_id, sequence, idx)`,
//! which queries use to hide the rows of a batch written twice.
//!
//! `agents` and `metric_names` are small and kept forever; they are
//! ReplacingMergeTree tables whose background merges keep one row per key, while
//! queries aggregate on read (`argMax`, `GROUP BY`) so that the answer is right
//! before a merge too, whichever collector wrote the rows.

use super::client::{ClickhouseError, Client};
use super::sql::{ident, quote};

/// Log events.
pub(crate) const LOGS: &str = "logs";
/// Metric samples.
pub(crate) const METRICS: &str = "metrics";
/// Flow summaries.
pub(crate) const FLOWS: &str = "flows";
/// One row per committed batch: the dedup record.
pub(crate) const BATCHES: &str = "batches";
/// The agent inventory, as facts with a time.
pub(crate) const AGENTS: &str = "agents";
/// The metric-name catalogue.
pub(crate) const METRIC_NAMES: &str = "metric_names";

/// Tables partitioned by day of receipt, which retention drops by partition.
pub(crate) const DAY_TABLES: [&str; 4] = [LOGS, METRICS, FLOWS, BATCHES];
/// Every table of the store.
pub(crate) const ALL_TABLES: [&str; 6] = [LOGS, METRICS, FLOWS, BATCHES, AGENTS, METRIC_NAMES];

/// The batch key columns, shared by every event table.
const BATCH_KEY: &str = "agent_id String, stream_id UInt64, sequence UInt64, idx UInt32";

/// What follows `CREATE TABLE name (` for each table. Sort keys follow the API's
/// queries: logs and flows by time, metrics by series then time, batches by their
/// key (the duplicate check is a point lookup).
fn columns_and_engine(table: &str) -> String {
    match table {
        LOGS => format!(
            "received_date Date, timestamp_ns Int64, {BATCH_KEY}, source String,
             severity Nullable(UInt8), message String, labels String, fields String
             ) ENGINE = MergeTree PARTITION BY received_date
             ORDER BY (timestamp_ns, agent_id, stream_id, sequence, idx)"
        ),
        METRICS => format!(
            "received_date Date, timestamp_ns Int64, {BATCH_KEY}, source String, name String,
             labels String, label_keys Array(String), label_values Array(String),
             kind String, value Float64, detail String
             ) ENGINE = MergeTree PARTITION BY received_date
             ORDER BY (name, agent_id, labels, timestamp_ns, stream_id, sequence, idx)"
        ),
        FLOWS => format!(
            "received_date Date, timestamp_ns Int64, end_ns Int64, {BATCH_KEY}, source String,
             labels String, src_addr String, dst_addr String, src_port UInt16, dst_port UInt16,
             protocol UInt8, bytes_out UInt64, bytes_in UInt64, packets_out UInt64,
             packets_in UInt64, tcp_flags UInt8
             ) ENGINE = MergeTree PARTITION BY received_date
             ORDER BY (timestamp_ns, agent_id, stream_id, sequence, idx)"
        ),
        BATCHES => "received_date Date, agent_id String, stream_id UInt64, sequence UInt64,
             received_ns Int64, event_count UInt32
             ) ENGINE = MergeTree PARTITION BY received_date
             ORDER BY (agent_id, stream_id, sequence)"
            .to_string(),
        // `version` orders `ts` as an unsigned number (the engine wants one), so a
        // merge keeps the latest fact of each kind per agent.
        AGENTS => "agent_id String, fact String, ts Int64, received_ns Int64, version UInt64,
             text String, value Float64
             ) ENGINE = ReplacingMergeTree(version) ORDER BY (agent_id, fact)"
            .to_string(),
        _ => "name String, kind String, first_seen_ns Int64
             ) ENGINE = ReplacingMergeTree ORDER BY name"
            .to_string(),
    }
}

/// `database`.`table`, quoted.
pub(crate) fn qualified(database: &str, table: &str) -> String {
    format!("{}.{}", ident(database), ident(table))
}

/// Creates the database and every table that does not exist yet.
pub(crate) fn create(client: &Client) -> Result<(), ClickhouseError> {
    let database = client.endpoint().database();
    client.execute(&format!(
        "CREATE DATABASE IF NOT EXISTS {}",
        ident(database)
    ))?;
    for table in ALL_TABLES {
        client.execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} ({}",
            qualified(database, table),
            columns_and_engine(table)
        ))?;
    }
    Ok(())
}

/// Checks that the server answers and that every table is there. Returns the
/// missing tables.
pub(crate) fn missing_tables(client: &Client) -> Result<Vec<String>, ClickhouseError> {
    let database = client.endpoint().database();
    let names: Vec<String> = ALL_TABLES.iter().map(|t| quote(t)).collect();
    let answer = client.query(&format!(
        "SELECT name FROM system.tables WHERE database = {} AND name IN ({}) FORMAT RowBinary",
        quote(database),
        names.join(", ")
    ))?;
    let mut reader = super::rowbinary::RowReader::new(&answer);
    let mut present = Vec::new();
    while !reader.at_end() {
        present.push(reader.string()?);
    }
    Ok(ALL_TABLES
        .iter()
        .filter(|t| !present.iter().any(|p| p == *t))
        .map(|t| t.to_string())
        .collect())
}
