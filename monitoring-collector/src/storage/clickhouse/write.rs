//! The commit path: a batch already recorded in `batches` is a duplicate; otherwise
//! its events go in (one RowBinary insert per event table), then its record.
//!
//! ClickHouse has no transactions, so the order is what keeps the guarantee: the
//! record is written only after every event row is, so a recorded batch is wholly
//! stored. A crash between the two, or two collectors committing one batch at once,
//! leaves rows written twice; they share their batch key and the queries show each
//! once. Within one process an in-flight set keeps two workers from writing the same
//! batch at once, so that duplicates need a crash or a second collector.

use monitoring_common::{EventKind, MetricValue};

use super::client::{ClickhouseError, Client};
use super::rowbinary::{RowReader, RowWriter};
use super::schema::{BATCHES, FLOWS, LOGS, METRICS, qualified};
use super::sql::{quote, uint};
use crate::storage::{CommitOutcome, IngestBatch};

pub(crate) const LOG_COLUMNS: &str = "received_date, timestamp_ns, agent_id, stream_id, sequence, \
     idx, source, severity, message, labels, fields";
pub(crate) const METRIC_COLUMNS: &str = "received_date, timestamp_ns, agent_id, stream_id, \
     sequence, idx, source, name, labels, label_keys, label_values, kind, value, detail";
pub(crate) const FLOW_COLUMNS: &str = "received_date, timestamp_ns, end_ns, agent_id, stream_id, \
     sequence, idx, source, labels, src_addr, dst_addr, src_port, dst_port, protocol, \
     bytes_out, bytes_in, packets_out, packets_in, tcp_flags";
const BATCH_COLUMNS: &str =
    "received_date, agent_id, stream_id, sequence, received_ns, event_count";

/// Nanoseconds in a day.
pub(crate) const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// The UTC day number (days since 1970-01-01) of a time in ns.
pub(crate) fn day_of(ns: i64) -> i64 {
    ns.div_euclid(NS_PER_DAY)
}

/// The `Date` of a receipt time. ClickHouse dates run from 1970 to 2149; a clock
/// outside that range is clamped rather than failing every commit.
fn received_date(received_ns: i64) -> u16 {
    u16::try_from(day_of(received_ns).max(0)).unwrap_or(u16::MAX)
}

/// Failure of a commit before or while writing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// ClickHouse failed.
    #[error(transparent)]
    Clickhouse(#[from] ClickhouseError),
    /// Labels or fields could not be encoded.
    #[error("encoding labels or fields: {0}")]
    Json(#[from] serde_json::Error),
}

/// Whether `batches` records `batch`.
pub(crate) fn is_recorded(client: &Client, batch: &IngestBatch) -> Result<bool, ClickhouseError> {
    let database = client.endpoint().database();
    let answer = client.query(&format!(
        "SELECT count() FROM {} WHERE agent_id = {} AND stream_id = {} AND sequence = {} \
         FORMAT RowBinary",
        qualified(database, BATCHES),
        quote(&batch.agent_id),
        uint(batch.stream_id),
        uint(batch.sequence),
    ))?;
    Ok(RowReader::new(&answer).u64()? > 0)
}

/// Stores `batch` unless it is recorded already.
pub(crate) fn commit(client: &Client, batch: &IngestBatch) -> Result<CommitOutcome, WriteError> {
    if is_recorded(client, batch)? {
        return Ok(CommitOutcome::Duplicate);
    }
    insert_events(client, batch)?;
    record(client, batch)?;
    Ok(CommitOutcome::Committed)
}

/// Writes the batch's record: from now on it is a duplicate.
pub(crate) fn record(client: &Client, batch: &IngestBatch) -> Result<(), ClickhouseError> {
    let mut row = RowWriter::default();
    row.u16(received_date(batch.received_ns));
    row.str(&batch.agent_id);
    row.u64(batch.stream_id);
    row.u64(batch.sequence);
    row.i64(batch.received_ns);
    row.u32(u32::try_from(batch.events.len()).unwrap_or(u32::MAX));
    row.end_row();
    let table = qualified(client.endpoint().database(), BATCHES);
    client.insert(&table, BATCH_COLUMNS, row.bytes())
}

/// The rows of one batch, per table.
#[derive(Default)]
pub(crate) struct EncodedBatch {
    pub(crate) logs: RowWriter,
    pub(crate) metrics: RowWriter,
    pub(crate) flows: RowWriter,
}

/// Encodes the events of `batch` as RowBinary rows of the event tables.
pub(crate) fn encode(batch: &IngestBatch) -> Result<EncodedBatch, serde_json::Error> {
    let mut out = EncodedBatch::default();
    let date = received_date(batch.received_ns);
    let agent = &*batch.agent_id;
    for (idx, event) in batch.events.iter().enumerate() {
        // Batches are far smaller than 2^32 events (the protocol caps them).
        let idx = u32::try_from(idx).unwrap_or(u32::MAX);
        let labels = serde_json::to_string(&event.labels)?;
        let key = |w: &mut RowWriter| {
            w.str(agent);
            w.u64(batch.stream_id);
            w.u64(batch.sequence);
            w.u32(idx);
        };
        match &event.kind {
            EventKind::Log(log) => {
                let w = &mut out.logs;
                w.u16(date);
                w.i64(event.timestamp_ns);
                key(w);
                w.str(&event.source);
                w.nullable_u8(log.severity.map(|s| s.code()));
                w.str(&log.message);
                w.str(&labels);
                w.str(&serde_json::to_string(&log.fields)?);
                w.end_row();
            }
            EventKind::Metric(metric) => {
                let detail = match &metric.value {
                    MetricValue::Histogram { .. } | MetricValue::Summary { .. } => {
                        serde_json::to_string(&metric.value)?
                    }
                    MetricValue::Gauge { .. } | MetricValue::Counter { .. } => String::new(),
                };
                let w = &mut out.metrics;
                w.u16(date);
                w.i64(event.timestamp_ns);
                key(w);
                w.str(&event.source);
                w.str(&metric.name);
                w.str(&labels);
                w.str_array(event.labels.keys().map(String::as_str));
                w.str_array(event.labels.values().map(String::as_str));
                w.str(metric.value.kind_name());
                // NaN is stored as it is; queries skip it, as SQLite's NULL is skipped.
                w.f64(metric.value.scalar());
                w.str(&detail);
                w.end_row();
            }
            EventKind::Flow(flow) => {
                let w = &mut out.flows;
                w.u16(date);
                w.i64(event.timestamp_ns);
                w.i64(flow.end_ns);
                key(w);
                w.str(&event.source);
                w.str(&labels);
                w.str(&flow.src_addr.to_string());
                w.str(&flow.dst_addr.to_string());
                w.u16(flow.src_port);
                w.u16(flow.dst_port);
                w.u8(flow.protocol);
                w.u64(flow.bytes_out);
                w.u64(flow.bytes_in);
                w.u64(flow.packets_out);
                w.u64(flow.packets_in);
                w.u8(flow.tcp_flags);
                w.end_row();
            }
        }
    }
    Ok(out)
}

/// Inserts the events of `batch` without recording it (also what a crash between
/// the two steps leaves behind, which the tests simulate with it).
pub(crate) fn insert_events(client: &Client, batch: &IngestBatch) -> Result<(), WriteError> {
    let encoded = encode(batch)?;
    let database = client.endpoint().database();
    for (table, columns, rows) in [
        (LOGS, LOG_COLUMNS, &encoded.logs),
        (METRICS, METRIC_COLUMNS, &encoded.metrics),
        (FLOWS, FLOW_COLUMNS, &encoded.flows),
    ] {
        if rows.rows() > 0 {
            client.insert(&qualified(database, table), columns, rows.bytes())?;
        }
    }
    Ok(())
}
