//! End-to-end tests of [`SqliteStore`] against real SQLite files in a temp dir:
//! `write` for commits, deduplication, retention and the inventory; `read` for
//! searches, paging, pruning and metric series.

use std::path::Path;
use std::sync::Arc;

use monitoring_common::event::Labels;
use monitoring_common::{Event, EventKind, MetricValue, Severity};

use super::SqliteConfig;
use super::SqliteStore;
use super::partition::{NS_PER_DAY, file_name};
use crate::storage::{IngestBatch, LogQuery, LogRecord, Store};

mod read;
mod write;

/// 2026-11-28T00:00:00Z, the "today" of these tests.
pub(super) const DAY: i64 = 20_785;
pub(super) const T0: i64 = DAY * NS_PER_DAY;
pub(super) const SEC: i64 = 1_000_000_000;

pub(super) fn config(dir: &Path) -> SqliteConfig {
    SqliteConfig {
        path: dir.to_path_buf(),
        ..SqliteConfig::default()
    }
}

pub(super) fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(&config(dir)).unwrap()
}

pub(super) fn batch(agent: &str, seq: u64, received_ns: i64, events: Vec<Event>) -> IngestBatch {
    IngestBatch {
        agent_id: Arc::from(agent),
        stream_id: 7,
        sequence: seq,
        received_ns,
        events,
    }
}

pub(super) fn log(ts: i64, message: &str, severity: Option<Severity>) -> Event {
    let mut event = Event::log(ts, "/var/log/app.log", message);
    if let EventKind::Log(l) = &mut event.kind {
        l.severity = severity;
    }
    event
}

pub(super) fn gauge(ts: i64, name: &str, labels: &[(&str, &str)], value: f64) -> Event {
    let labels: Labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Event::metric(ts, "host", name, labels, MetricValue::Gauge { value })
}

pub(super) fn logs(store: &SqliteStore, query: LogQuery) -> Vec<LogRecord> {
    store.query_logs(&query).unwrap().logs
}

pub(super) fn all_logs() -> LogQuery {
    LogQuery {
        limit: 10_000,
        ..LogQuery::default()
    }
}

pub(super) fn count_rows(dir: &Path, day: i64, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(dir.join(file_name(day))).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    crate::storage::conformance::check(&open(dir.path()));
}
