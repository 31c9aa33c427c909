//! Builders shared by the stores' own tests and the generic checks of [`super::reads`]
//! and [`super::writes`]: a fixed "today", batches, log, gauge and flow events.

use std::net::IpAddr;
use std::sync::Arc;

use monitoring_common::event::Labels;
use monitoring_common::{Event, EventKind, FlowEvent, MetricValue, Severity};

use crate::storage::{FlowQuery, FlowRecord, IngestBatch, LogQuery, LogRecord, Store};

/// 2026-11-28 as days since the epoch, the "today" of these tests.
pub(crate) const DAY: i64 = 20_785;
pub(crate) const SEC: i64 = 1_000_000_000;
pub(crate) const NS_PER_DAY: i64 = 86_400 * SEC;
/// 2026-11-28T00:00:00Z.
pub(crate) const T0: i64 = DAY * NS_PER_DAY;

/// A batch of stream 7.
pub(crate) fn batch(agent: &str, seq: u64, received_ns: i64, events: Vec<Event>) -> IngestBatch {
    IngestBatch {
        agent_id: Arc::from(agent),
        stream_id: 7,
        sequence: seq,
        received_ns,
        events,
    }
}

/// A line of `/var/log/app.log`.
pub(crate) fn log(ts: i64, message: &str, severity: Option<Severity>) -> Event {
    let mut event = Event::log(ts, "/var/log/app.log", message);
    if let EventKind::Log(l) = &mut event.kind {
        l.severity = severity;
    }
    event
}

/// A gauge sample of source `host`.
pub(crate) fn gauge(ts: i64, name: &str, labels: &[(&str, &str)], value: f64) -> Event {
    let labels: Labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Event::metric(ts, "host", name, labels, MetricValue::Gauge { value })
}

/// A TCP flow of one second on `eth0` from port 40000.
pub(crate) fn flow(ts: i64, src: IpAddr, dst: IpAddr, dst_port: u16, bytes_out: u64) -> Event {
    Event {
        timestamp_ns: ts,
        source: "eth0".into(),
        labels: Labels::new(),
        kind: EventKind::Flow(FlowEvent {
            src_addr: src,
            dst_addr: dst,
            src_port: 40_000,
            dst_port,
            protocol: 6,
            end_ns: ts + SEC,
            bytes_out,
            bytes_in: 10,
            packets_out: 1,
            packets_in: 2,
            tcp_flags: 0x12,
        }),
    }
}

/// The records of `query`, which must succeed.
pub(crate) fn logs(store: &dyn Store, query: LogQuery) -> Vec<LogRecord> {
    store.query_logs(&query).unwrap().logs
}

/// Every log (up to 100,000), newest first.
pub(crate) fn all_logs() -> LogQuery {
    LogQuery {
        limit: 100_000,
        ..LogQuery::default()
    }
}

/// The newest `limit` flows of every agent.
pub(crate) fn flows(store: &dyn Store, limit: usize) -> Vec<FlowRecord> {
    let query = FlowQuery {
        limit,
        ..FlowQuery::default()
    };
    store.query_flows(&query).unwrap()
}
