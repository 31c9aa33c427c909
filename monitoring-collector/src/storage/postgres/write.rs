//! The commit path: one transaction per batch holding its dedup record, its events
//! (binary `COPY` into the partitioned tables) and the inventory it changes.
//!
//! The dedup record goes first: `INSERT ... ON CONFLICT DO NOTHING` on the primary
//! key of `batches` either inserts it, or finds it committed (a duplicate: roll
//! back), or waits for another transaction inserting the same key (another
//! collector committing the same resent batch at the same moment) and then does
//! one of the two. So exactly one commit of a batch stores it, with no in-process
//! coordination, and the batch and its record are durable together at `COMMIT`
//! (`synchronous_commit = on`).

use monitoring_common::{EventKind, MetricValue};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{Json, Type};
use postgres::{Client, Transaction};

use super::inventory::{UPSERT_AGENT, agent_params, insert_names};
use super::pool::Conn;
use super::values::{as_sql, fields, labels, saturate, text};
use crate::storage::inventory::InventoryUpdate;
use crate::storage::{CommitOutcome, IngestBatch};

const INSERT_BATCH: &str = "INSERT INTO batches
    (agent_id, stream_id, sequence, received_ns, event_count) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (agent_id, stream_id, sequence) DO NOTHING";

const COPY_LOGS: &str = "COPY logs
    (received_ns, timestamp_ns, agent_id, source, severity, message, labels, fields)
    FROM STDIN (FORMAT binary)";
const LOG_TYPES: [Type; 8] = [
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::INT2,
    Type::TEXT,
    Type::JSONB,
    Type::JSONB,
];

const COPY_METRICS: &str = "COPY metrics
    (received_ns, timestamp_ns, agent_id, source, name, labels, kind, value, detail)
    FROM STDIN (FORMAT binary)";
const METRIC_TYPES: [Type; 9] = [
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::TEXT,
    Type::FLOAT8,
    Type::JSONB,
];

const COPY_FLOWS: &str = "COPY flows
    (received_ns, timestamp_ns, end_ns, agent_id, source, labels, src_addr, dst_addr,
     src_port, dst_port, protocol, bytes_out, bytes_in, packets_out, packets_in, tcp_flags)
    FROM STDIN (FORMAT binary)";
const FLOW_TYPES: [Type; 16] = [
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::TEXT,
    Type::TEXT,
    Type::INT4,
    Type::INT4,
    Type::INT2,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT2,
];

/// Commits `batch` with `update` (its inventory changes) and `new_names` (metric
/// names not known to be catalogued yet, sorted), or finds it committed before.
pub(crate) fn commit(
    conn: &mut Conn,
    batch: &IngestBatch,
    update: &InventoryUpdate<'_>,
    new_names: &[(String, &'static str)],
) -> Result<CommitOutcome, postgres::Error> {
    let insert_batch = conn.prepare(INSERT_BATCH)?;
    let upsert_agent = conn.prepare(UPSERT_AGENT)?;
    let agent = text(&batch.agent_id);
    let mut tx = conn.client.transaction()?;
    let count = saturate(batch.events.len() as u64);
    let inserted = tx.execute(
        &insert_batch,
        &[
            &agent,
            &as_sql(batch.stream_id),
            &as_sql(batch.sequence),
            &batch.received_ns,
            &count,
        ],
    )?;
    if inserted == 0 {
        tx.rollback()?;
        seen(&mut conn.client, &upsert_agent, &agent, batch.received_ns);
        return Ok(CommitOutcome::Duplicate);
    }
    copy_events(&mut tx, batch, &agent)?;
    tx.execute(
        &upsert_agent,
        &agent_params(&agent, batch.received_ns, update).refs(),
    )?;
    if !new_names.is_empty() {
        insert_names(&mut tx, new_names, batch.received_ns)?;
    }
    tx.commit()?;
    Ok(CommitOutcome::Committed)
}

/// A duplicate still shows the agent is alive (as in the sqlite store). Only
/// logged on failure: the batch itself is safely stored.
fn seen(client: &mut Client, upsert: &postgres::Statement, agent: &str, received_ns: i64) {
    let params = agent_params(agent, received_ns, &InventoryUpdate::default());
    if let Err(error) = client.execute(upsert, &params.refs()) {
        tracing::warn!(
            message = "Failed to update the agent inventory.",
            error = %super::error::chain(&error),
            agent_id = %agent,
        );
    }
}

/// Copies the events into the three tables (in the fixed table order), each with
/// one `COPY` if the batch has any of its kind.
fn copy_events(
    tx: &mut Transaction<'_>,
    batch: &IngestBatch,
    agent: &str,
) -> Result<(), postgres::Error> {
    let received = batch.received_ns;
    let of_kind = |want: fn(&EventKind) -> bool| batch.events.iter().filter(move |e| want(&e.kind));
    let is_log = |k: &EventKind| matches!(k, EventKind::Log(_));
    let is_metric = |k: &EventKind| matches!(k, EventKind::Metric(_));
    let is_flow = |k: &EventKind| matches!(k, EventKind::Flow(_));

    if of_kind(is_log).next().is_some() {
        let mut writer = BinaryCopyInWriter::new(tx.copy_in(COPY_LOGS)?, &LOG_TYPES);
        for event in of_kind(is_log) {
            let EventKind::Log(log) = &event.kind else {
                continue;
            };
            let severity = log.severity.map(|s| i16::from(s.code()));
            writer.write(&[
                &received,
                &event.timestamp_ns,
                &agent,
                &text(&event.source),
                &severity,
                &text(&log.message),
                &Json(labels(&event.labels)),
                &Json(fields(&log.fields)),
            ])?;
        }
        writer.finish()?;
    }
    if of_kind(is_metric).next().is_some() {
        let mut writer = BinaryCopyInWriter::new(tx.copy_in(COPY_METRICS)?, &METRIC_TYPES);
        for event in of_kind(is_metric) {
            let EventKind::Metric(metric) = &event.kind else {
                continue;
            };
            let value = metric.value.scalar();
            // NaN is no value (NULL), as in the sqlite store; queries skip it.
            let value = (!value.is_nan()).then_some(value);
            let detail = match &metric.value {
                MetricValue::Histogram { .. } | MetricValue::Summary { .. } => {
                    Some(Json(&metric.value))
                }
                MetricValue::Gauge { .. } | MetricValue::Counter { .. } => None,
            };
            writer.write(&[
                &received,
                &event.timestamp_ns,
                &agent,
                &text(&event.source),
                &text(&metric.name),
                &Json(labels(&event.labels)),
                &metric.value.kind_name(),
                &value,
                &detail,
            ])?;
        }
        writer.finish()?;
    }
    if of_kind(is_flow).next().is_some() {
        let mut writer = BinaryCopyInWriter::new(tx.copy_in(COPY_FLOWS)?, &FLOW_TYPES);
        for event in of_kind(is_flow) {
            let EventKind::Flow(flow) = &event.kind else {
                continue;
            };
            writer.write(&[
                &received,
                &event.timestamp_ns,
                &flow.end_ns,
                &agent,
                &text(&event.source),
                &Json(labels(&event.labels)),
                &flow.src_addr.to_string(),
                &flow.dst_addr.to_string(),
                &i32::from(flow.src_port),
                &i32::from(flow.dst_port),
                &i16::from(flow.protocol),
                &saturate(flow.bytes_out),
                &saturate(flow.bytes_in),
                &saturate(flow.packets_out),
                &saturate(flow.packets_in),
                &i16::from(flow.tcp_flags),
            ])?;
        }
        writer.finish()?;
    }
    Ok(())
}
