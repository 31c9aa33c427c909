//! The write path: one immediate transaction per batch holding its events, their
//! full-text index entries, its dedup record and the widened time bounds, committed
//! with a full fsync.
//!
//! The dedup record lives in the same file and transaction as the events, so after
//! a crash a batch is either wholly stored and recorded or neither. A batch resent
//! after midnight lands in a new day file, so older files are checked first; an
//! in-flight set (`storage::in_flight`) keeps two workers from committing the same batch at once into two
//! different files.

use monitoring_common::{EventKind, MetricValue};
use rusqlite::{Connection, TransactionBehavior, params};

use super::error::{StorageResult, db_at, json};
use super::partition::{Bounds, Kind, Partition};
use crate::storage::{CommitOutcome, IngestBatch};

const INSERT_BATCH: &str = "INSERT OR IGNORE INTO batches
    (agent_id, stream_id, sequence, received_ns, event_count) VALUES (?1, ?2, ?3, ?4, ?5)";
const FIND_BATCH: &str =
    "SELECT 1 FROM batches WHERE agent_id = ?1 AND stream_id = ?2 AND sequence = ?3";
const INSERT_LOG: &str = "INSERT INTO logs
    (timestamp_ns, agent_id, source, severity, message, labels, fields)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
/// Indexes the messages of the rows from `?1` on: the rows this transaction added,
/// since the writer holds the file and new rowids grow. One statement per batch,
/// because FTS5 flushes its pending terms to a new segment at every statement
/// boundary inside a transaction (a per-row trigger costs 4-5 times as much).
const INDEX_LOGS: &str =
    "INSERT INTO logs_fts (rowid, message) SELECT id, message FROM logs WHERE id >= ?1";
/// Merges up to `?1` pages of the full-text index's segments, only where a level has
/// collected enough of them (FTS5's `usermerge`, 4) or a merge is under way.
const MERGE_FTS: &str = "INSERT INTO logs_fts (logs_fts, rank) VALUES ('merge', ?1)";
const INSERT_METRIC: &str = "INSERT INTO metrics
    (timestamp_ns, agent_id, source, name, labels, kind, value, detail)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
const INSERT_FLOW: &str = "INSERT INTO flows
    (timestamp_ns, end_ns, agent_id, source, labels, src_addr, dst_addr, src_port, dst_port,
     protocol, bytes_out, bytes_in, packets_out, packets_in, tcp_flags)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";
const UPSERT_META: &str = "INSERT INTO meta (kind, min_ts, max_ts) VALUES (?1, ?2, ?3)
    ON CONFLICT (kind) DO UPDATE SET
        min_ts = min(min_ts, excluded.min_ts), max_ts = max(max_ts, excluded.max_ts)";

/// Stream ids and sequences are stored bit for bit as SQLite's signed integers.
fn as_sql(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

/// Counters past `i64::MAX` cannot be stored in SQLite; they saturate.
fn saturate(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Whether `partition` already holds `batch` (read connection; committed data only).
pub(crate) fn holds_batch(partition: &Partition, batch: &IngestBatch) -> StorageResult<bool> {
    partition.with_reader(|conn| {
        let mut stmt = conn
            .prepare_cached(FIND_BATCH)
            .map_err(db_at("checking for a duplicate batch", &partition.path))?;
        stmt.exists(params![
            &*batch.agent_id,
            as_sql(batch.stream_id),
            as_sql(batch.sequence)
        ])
        .map_err(db_at("checking for a duplicate batch", &partition.path))
    })
}

/// Writes `batch` into `partition` in one transaction, or finds it already there.
pub(crate) fn write_batch(
    conn: &mut Connection,
    partition: &Partition,
    batch: &IngestBatch,
) -> StorageResult<CommitOutcome> {
    let path = &partition.path;
    let err = |context| db_at(context, path);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err("beginning a transaction"))?;
    let inserted = tx
        .prepare_cached(INSERT_BATCH)
        .and_then(|mut s| {
            s.execute(params![
                &*batch.agent_id,
                as_sql(batch.stream_id),
                as_sql(batch.sequence),
                batch.received_ns,
                saturate(batch.events.len() as u64)
            ])
        })
        .map_err(err("recording a batch"))?;
    if inserted == 0 {
        // Dropping the transaction rolls it back; nothing was written.
        return Ok(CommitOutcome::Duplicate);
    }
    partition.note_stream(&batch.agent_id, batch.stream_id);
    let Inserted {
        bounds,
        first_log,
        message_bytes,
    } = insert_events(&tx, batch).map_err(|e| match e {
        InsertError::Sql(e) => err("storing events")(e),
        InsertError::Json(e) => json("encoding labels or fields")(e),
    })?;
    if let Some(first) = first_log {
        tx.prepare_cached(INDEX_LOGS)
            .and_then(|mut s| s.execute([first]))
            .map_err(err("indexing log messages"))?;
        tx.prepare_cached(MERGE_FTS)
            .and_then(|mut s| s.execute([merge_budget(message_bytes)]))
            .map_err(err("merging the full-text index"))?;
    }
    {
        let mut meta = tx
            .prepare_cached(UPSERT_META)
            .map_err(err("updating bounds"))?;
        for kind in [Kind::Log, Kind::Metric, Kind::Flow] {
            if let Some((min, max)) = bounds[kind as usize] {
                meta.execute(params![kind.as_str(), min, max])
                    .map_err(err("updating bounds"))?;
            }
        }
    }
    partition.widen(&bounds);
    tx.commit().map_err(err("committing a batch"))?;
    Ok(CommitOutcome::Committed)
}

enum InsertError {
    Sql(rusqlite::Error),
    Json(serde_json::Error),
}

impl From<rusqlite::Error> for InsertError {
    fn from(e: rusqlite::Error) -> Self {
        InsertError::Sql(e)
    }
}

impl From<serde_json::Error> for InsertError {
    fn from(e: serde_json::Error) -> Self {
        InsertError::Json(e)
    }
}

/// Pages of full-text index merging done with a batch whose log messages hold
/// `message_bytes`: about one page per KiB indexed, which keeps the number of
/// segments where FTS5's automerge keeps it (measured from 10 to 3,000 lines a batch)
/// while spreading the work evenly over commits; at least 16, so that small batches
/// finish a merge they started.
fn merge_budget(message_bytes: usize) -> i64 {
    i64::try_from(message_bytes / 1024).map_or(i64::MAX, |pages| pages.max(16))
}

/// What [`insert_events`] wrote.
struct Inserted {
    /// Time bounds of the events, per kind.
    bounds: Bounds,
    /// Rowid of the first log row, if any log was stored.
    first_log: Option<i64>,
    /// Bytes of the log messages stored.
    message_bytes: usize,
}

/// Inserts the events with cached statements.
fn insert_events(conn: &Connection, batch: &IngestBatch) -> Result<Inserted, InsertError> {
    let mut bounds: Bounds = [None; 3];
    let mut first_log = None;
    let mut message_bytes = 0;
    let mut logs = conn.prepare_cached(INSERT_LOG)?;
    let mut metrics = conn.prepare_cached(INSERT_METRIC)?;
    let mut flows = conn.prepare_cached(INSERT_FLOW)?;
    let agent = &*batch.agent_id;
    for event in &batch.events {
        let ts = event.timestamp_ns;
        let labels = serde_json::to_string(&event.labels)?;
        let kind = match &event.kind {
            EventKind::Log(log) => {
                let fields = serde_json::to_string(&log.fields)?;
                logs.execute(params![
                    ts,
                    agent,
                    event.source,
                    log.severity.map(|s| s.code()),
                    log.message,
                    labels,
                    fields
                ])?;
                first_log.get_or_insert_with(|| conn.last_insert_rowid());
                message_bytes += log.message.len();
                Kind::Log
            }
            EventKind::Metric(metric) => {
                let detail = match &metric.value {
                    MetricValue::Histogram { .. } | MetricValue::Summary { .. } => {
                        Some(serde_json::to_string(&metric.value)?)
                    }
                    MetricValue::Gauge { .. } | MetricValue::Counter { .. } => None,
                };
                // NaN is stored as NULL by SQLite; queries skip it.
                metrics.execute(params![
                    ts,
                    agent,
                    event.source,
                    metric.name,
                    labels,
                    metric.value.kind_name(),
                    metric.value.scalar(),
                    detail
                ])?;
                Kind::Metric
            }
            EventKind::Flow(flow) => {
                flows.execute(params![
                    ts,
                    flow.end_ns,
                    agent,
                    event.source,
                    labels,
                    flow.src_addr.to_string(),
                    flow.dst_addr.to_string(),
                    flow.src_port,
                    flow.dst_port,
                    flow.protocol,
                    saturate(flow.bytes_out),
                    saturate(flow.bytes_in),
                    saturate(flow.packets_out),
                    saturate(flow.packets_in),
                    flow.tcp_flags
                ])?;
                Kind::Flow
            }
        };
        let slot = &mut bounds[kind as usize];
        *slot = Some(match *slot {
            Some((lo, hi)) => (lo.min(ts), hi.max(ts)),
            None => (ts, ts),
        });
    }
    Ok(Inserted {
        bounds,
        first_log,
        message_bytes,
    })
}
