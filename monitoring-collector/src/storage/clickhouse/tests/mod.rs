//! Tests of [`ClickhouseStore`] against the real ClickHouse server that
//! `scripts/services.sh start` runs (`MONITORING_TEST_CLICKHOUSE_URL`, default
//! `http://127.0.0.1:58123/`). Each test works in a database of its own, dropped at
//! the end. Without the server they fail, saying how to start it.
//!
//! `quote` checks the quoting function against the server; `write` commits,
//! duplicates, inventory and retention; `read` searches, paging, metrics and flows;
//! `parity` the same data and queries against the SQLite store; `conformance` the
//! shared suite every store passes; `tls` https with an untrusted certificate.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use monitoring_common::event::Labels;
use monitoring_common::{Event, EventKind, FlowEvent, MetricValue, Severity};

use super::client::{Client, Endpoint};
use super::rowbinary::RowReader;
use super::{ClickhouseConfig, ClickhouseStore};
use crate::storage::{IngestBatch, LogQuery, LogRecord, Store};

mod conformance;
mod parity;
mod quote;
mod read;
mod tls;
mod write;

/// 2026-11-28T00:00:00Z, the "today" of these tests.
pub(super) const DAY: i64 = 20_785;
pub(super) const NS_PER_DAY: i64 = 86_400 * SEC;
pub(super) const T0: i64 = DAY * NS_PER_DAY;
pub(super) const SEC: i64 = 1_000_000_000;

/// The server under test.
fn server_url() -> String {
    std::env::var("MONITORING_TEST_CLICKHOUSE_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:58123/".to_string())
}

/// A database of its own for one test, dropped when this is dropped.
pub(super) struct TestDb {
    pub(super) config: ClickhouseConfig,
    pub(super) client: Client,
}

impl TestDb {
    /// Makes a fresh, empty database name for the test `name` and checks that the
    /// server answers.
    pub(super) fn new(name: &str) -> TestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let url = server_url();
        let base = Endpoint::parse(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let database = format!(
            "mon_test_{name}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let endpoint = base.with_database(&database).unwrap();
        let client = Client::new(endpoint.clone(), Duration::from_secs(60), 2);
        if let Err(e) = client.query("SELECT 1 FORMAT RowBinary") {
            panic!(
                "ClickHouse does not answer at {url} ({e}); start the test servers with \
                 `scripts/services.sh start` or set MONITORING_TEST_CLICKHOUSE_URL"
            );
        }
        client
            .execute(&format!("DROP DATABASE IF EXISTS {database}"))
            .unwrap();
        TestDb {
            config: ClickhouseConfig {
                endpoint,
                retention_days: 7,
                timeout: Duration::from_secs(60),
                idle_connections: 4,
            },
            client,
        }
    }

    /// Opens a store on the database, as a collector would (each call is another
    /// collector sharing it).
    pub(super) fn open(&self) -> ClickhouseStore {
        ClickhouseStore::open(&self.config).unwrap()
    }

    /// The first column of every row of `sql` (which must select one `UInt64`).
    pub(super) fn count(&self, sql: &str) -> u64 {
        let database = self.config.endpoint.database();
        let sql = sql.replace("{db}", database);
        let answer = self
            .client
            .query(&format!("{sql} FORMAT RowBinary"))
            .unwrap();
        RowReader::new(&answer).u64().unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let database = self.config.endpoint.database();
        if let Err(e) = self
            .client
            .execute(&format!("DROP DATABASE IF EXISTS {database}"))
        {
            eprintln!("could not drop test database {database}: {e}");
        }
    }
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

pub(super) fn logs(store: &dyn Store, query: LogQuery) -> Vec<LogRecord> {
    store.query_logs(&query).unwrap().logs
}

pub(super) fn all_logs() -> LogQuery {
    LogQuery {
        limit: 10_000,
        ..LogQuery::default()
    }
}

pub(super) fn flow(ts: i64, src: IpAddr, dst: IpAddr, dst_port: u16, bytes_out: u64) -> Event {
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
