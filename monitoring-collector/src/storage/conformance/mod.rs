//! The conformance suite every primary store passes: one data set, committed through
//! [`Store::commit`], and the API's queries with the answers they must give.
//!
//! The REST API answers from whichever store is configured, so each store is held to
//! the same expected results here, written out by hand rather than taken from one
//! store, so that the suite also checks the sqlite store it was modelled on.
//! A store's own tests call [`check`] on a fresh, empty store.
//!
//! Besides that one data set, [`reads`] and [`writes`] hold the checks that each
//! store's own tests once repeated (paging over equal timestamps, text search,
//! filters, metric steps, flows, round trips, duplicates, retention, the
//! inventory), each over `&dyn Store` with hooks where the setup differs, and
//! [`fixtures`] the event builders those tests share.

use std::net::IpAddr;
use std::sync::Arc;

use monitoring_common::event::{Fields, Labels};
use monitoring_common::{Event, EventKind, FlowEvent, LogEvent, MetricValue, Severity, Value};

use super::{CommitOutcome, IngestBatch, LogQuery, LogRecord, Store};
use queries::{
    catalogue_and_inventory, flows, logs_all_and_order, logs_filters, logs_paging, logs_text,
    metric_series, metric_steps,
};

/// Declares one `#[test]` for each `name: check` pair: `with_fresh(name, check)`
/// makes a fresh, empty store, runs `check` (a generic check of [`reads`] or
/// [`writes`], or a closure calling one) on it and cleans up. For the tests that
/// are a generic check and nothing more.
macro_rules! store_tests {
    ($with_fresh:path; $($name:ident: $check:expr),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                $with_fresh(stringify!($name), &$check);
            }
        )+
    };
}
pub(crate) use store_tests;

pub(crate) mod fixtures;
mod queries;
pub(crate) mod reads;
pub(crate) mod writes;

/// 2026-11-28T00:00:00Z: event times are offsets from it.
const T0: i64 = 20_785 * 86_400 * SEC;
const SEC: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
const APP: &str = "/var/log/app.log";
const AUTH: &str = "/var/log/auth.log";

/// Runs every check against `store`, which must be empty. Panics with the failing
/// check's name.
pub(crate) fn check(store: &dyn Store) {
    let received = monitoring_common::event::now_ns();
    for batch in data(received) {
        assert_eq!(
            store.commit(&batch).expect("commit"),
            CommitOutcome::Committed,
            "first commit of batch {}",
            batch.sequence
        );
    }
    // A resent batch is recognised and changes nothing.
    let again = &data(received + SEC)[0];
    assert_eq!(
        store.commit(again).expect("recommit"),
        CommitOutcome::Duplicate,
        "resent batch"
    );
    logs_all_and_order(store);
    logs_filters(store);
    logs_text(store);
    logs_paging(store);
    metric_series(store);
    metric_steps(store);
    flows(store);
    catalogue_and_inventory(store, received);
}

fn at(secs: i64) -> i64 {
    T0 + secs * SEC
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn log(secs: i64, source: &str, message: &str, severity: Option<Severity>) -> Event {
    let mut fields = Fields::new();
    fields.insert("offset".into(), Value::Int(secs));
    Event {
        timestamp_ns: at(secs),
        source: source.into(),
        labels: labels(&[("env", "test")]),
        kind: EventKind::Log(LogEvent {
            message: message.into(),
            severity,
            fields,
        }),
    }
}

fn metric(secs: i64, name: &str, pairs: &[(&str, &str)], value: MetricValue) -> Event {
    Event::metric(at(secs), "host", name, labels(pairs), value)
}

fn gauge(secs: i64, name: &str, pairs: &[(&str, &str)], value: f64) -> Event {
    metric(secs, name, pairs, MetricValue::Gauge { value })
}

fn flow(secs: i64, src: &str, dst: &str, ports: (u16, u16), protocol: u8, bytes: u64) -> Event {
    let addr = |s: &str| s.parse::<IpAddr>().expect("test address");
    Event {
        timestamp_ns: at(secs),
        source: "lo".into(),
        labels: Labels::new(),
        kind: EventKind::Flow(FlowEvent {
            src_addr: addr(src),
            dst_addr: addr(dst),
            src_port: ports.0,
            dst_port: ports.1,
            protocol,
            end_ns: at(secs + 10),
            bytes_out: bytes,
            bytes_in: bytes / 2,
            packets_out: 3,
            packets_in: 2,
            tcp_flags: if protocol == 6 { 0x12 } else { 0 },
        }),
    }
}

fn batch(agent: &str, sequence: u64, received_ns: i64, events: Vec<Event>) -> IngestBatch {
    IngestBatch {
        agent_id: Arc::from(agent),
        stream_id: u64::MAX - 1, // past i64::MAX: stored by bit pattern
        sequence,
        received_ns,
        events,
    }
}

/// The data set: two agents, logs (three sharing one timestamp), metrics of every
/// kind, the inventory's metrics, and flows.
fn data(received: i64) -> Vec<IngestBatch> {
    use Severity::*;
    let web = vec![
        log(10, APP, "Connection refused by upstream", Some(Error)),
        log(20, APP, "login user-1 ok", Some(Info)),
        log(20, APP, "login user_1 again", Some(Info)),
        log(20, APP, "login user12 ok", Some(Notice)),
        log(30, AUTH, "Accepted password for root", None),
        log(40, APP, "ERROR: disk full -> retrying", Some(Critical)),
        log(50, APP, "Café au lait: connexion établie", Some(Debug)),
        log(60, APP, "say \"hi\" to O'Brien; 100% done", Some(Warning)),
    ];
    let db = vec![
        log(15, APP, "connection reset", Some(Warning)),
        log(25, AUTH, "session opened for user postgres", Some(Info)),
    ];
    let mut metrics = Vec::new();
    for (i, v) in [10.0, 20.0, 30.0, 40.0, 50.0, 60.0].into_iter().enumerate() {
        let secs = i64::try_from(i).expect("small") * 10;
        metrics.push(gauge(
            secs,
            "host_cpu_usage_percent",
            &[("cpu", "total")],
            v,
        ));
        metrics.push(gauge(
            secs,
            "host_cpu_usage_percent",
            &[("cpu", "0")],
            v + 1.0,
        ));
    }
    metrics.push(gauge(55, "host_memory_usage_percent", &[], 42.5));
    metrics.push(gauge(5, "host_memory_usage_percent", &[], 99.0)); // older: not latest
    metrics.push(gauge(
        0,
        "host_info",
        &[
            ("hostname", "web-1"),
            ("os", "Debian GNU/Linux"),
            ("os_version", "12"),
            ("kernel_version", "6.1.0"),
            ("arch", "x86_64"),
        ],
        1.0,
    ));
    metrics.push(metric(
        30,
        "requests_total",
        &[("code", "200")],
        MetricValue::Counter { value: 1234.0 },
    ));
    metrics.push(metric(
        30,
        "latency_seconds",
        &[],
        MetricValue::Histogram {
            count: 4,
            sum: 2.5,
            buckets: vec![(0.1, 1), (1.0, 3), (f64::INFINITY, 4)],
        },
    ));
    metrics.push(metric(
        30,
        "rpc_seconds",
        &[],
        MetricValue::Summary {
            count: 10,
            sum: 7.0,
            quantiles: vec![(0.5, 0.6), (0.99, 1.9)],
        },
    ));
    metrics.push(gauge(35, "temperature", &[("zone", "a")], f64::NAN)); // no value: skipped
    metrics.push(gauge(36, "temperature", &[("zone", "a")], 21.5));
    let db_metrics = vec![gauge(
        10,
        "host_cpu_usage_percent",
        &[("cpu", "total")],
        5.0,
    )];
    let flows = vec![
        flow(100, "10.0.0.1", "10.0.0.2", (40000, 443), 6, 5000),
        flow(100, "10.0.0.1", "10.0.0.3", (40001, 53), 17, 80),
        flow(110, "::1", "::1", (50000, 8080), 6, 1200),
        flow(120, "10.0.0.2", "10.0.0.1", (443, 40002), 6, 700),
    ];
    vec![
        batch("web", 1, received, web),
        batch("web", 2, received, metrics),
        batch("web", 3, received, flows),
        batch("db", 1, received + 1, db),
        batch("db", 2, received + 2, db_metrics),
    ]
}

fn logs(store: &dyn Store, query: LogQuery) -> Vec<LogRecord> {
    store.query_logs(&query).expect("log query").logs
}

fn all() -> LogQuery {
    LogQuery {
        limit: 1000,
        ..LogQuery::default()
    }
}

fn messages(records: &[LogRecord]) -> Vec<&str> {
    records.iter().map(|r| r.message.as_str()).collect()
}

/// Messages sorted, for comparisons where equal timestamps leave the order open.
fn message_set(records: &[LogRecord]) -> Vec<String> {
    let mut m: Vec<String> = records.iter().map(|r| r.message.clone()).collect();
    m.sort();
    m
}
