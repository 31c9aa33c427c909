//! The conformance suite every primary store passes: one data set, committed through
//! [`Store::commit`], and the API's queries with the answers they must give.
//!
//! The REST API answers from whichever store is configured, so each store is held to
//! the same expected results here, written out by hand rather than taken from one
//! store, so that the suite also checks the sqlite store it was modelled on.
//! A store's own tests call [`check`] on a fresh, empty store.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use monitoring_common::event::{Fields, Labels};
use monitoring_common::{Event, EventKind, FlowEvent, LogEvent, MetricValue, Severity, Value};

use super::{
    CommitOutcome, FlowQuery, IngestBatch, LogQuery, LogRecord, MetricQuery, Order, Store,
};

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

fn logs_all_and_order(store: &dyn Store) {
    let desc = logs(store, all());
    assert_eq!(desc.len(), 10, "every log once: {:?}", messages(&desc));
    let times: Vec<i64> = desc.iter().map(|r| r.timestamp_ns).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    assert_eq!(desc[0].message, "say \"hi\" to O'Brien; 100% done");
    let asc = logs(
        store,
        LogQuery {
            order: Order::Asc,
            ..all()
        },
    );
    assert_eq!(asc[0].message, "Connection refused by upstream");
    let times: Vec<i64> = asc.iter().map(|r| r.timestamp_ns).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {times:?}"
    );

    let first = &asc[0];
    assert_eq!(first.agent_id, "web");
    assert_eq!(first.source, APP);
    assert_eq!(first.timestamp_ns, at(10));
    assert_eq!(first.severity.as_deref(), Some("error"));
    assert_eq!(first.labels, labels(&[("env", "test")]));
    assert_eq!(
        first.fields.get("offset"),
        Some(&serde_json::json!(10)),
        "fields as JSON"
    );
    let unknown = asc.iter().find(|r| r.source == AUTH && r.agent_id == "web");
    assert_eq!(unknown.and_then(|r| r.severity.clone()), None);
}

fn logs_filters(store: &dyn Store) {
    let by = |query: LogQuery| message_set(&logs(store, query));
    assert_eq!(
        by(LogQuery {
            agent: Some("db".into()),
            ..all()
        }),
        ["connection reset", "session opened for user postgres"]
    );
    assert_eq!(
        by(LogQuery {
            source: Some(AUTH.into()),
            ..all()
        }),
        [
            "Accepted password for root",
            "session opened for user postgres"
        ]
    );
    // Warning or worse; logs without a severity are left out.
    assert_eq!(
        by(LogQuery {
            max_severity_code: Some(Severity::Warning.code()),
            ..all()
        }),
        [
            "Connection refused by upstream",
            "ERROR: disk full -> retrying",
            "connection reset",
            "say \"hi\" to O'Brien; 100% done",
        ]
    );
    // from inclusive, to exclusive.
    assert_eq!(
        by(LogQuery {
            from_ns: Some(at(20)),
            to_ns: Some(at(30)),
            ..all()
        }),
        [
            "login user-1 ok",
            "login user12 ok",
            "login user_1 again",
            "session opened for user postgres"
        ]
    );
    assert!(
        by(LogQuery {
            agent: Some("nobody".into()),
            ..all()
        })
        .is_empty()
    );
    assert!(logs(store, LogQuery { limit: 0, ..all() }).is_empty());
}

fn logs_text(store: &dyn Store) {
    let search = |q: &str| {
        message_set(&logs(
            store,
            LogQuery {
                text: Some(q.into()),
                ..all()
            },
        ))
    };
    // Case-insensitive whole tokens.
    assert_eq!(search("REFUSED"), ["Connection refused by upstream"]);
    assert_eq!(
        search("connection"),
        ["Connection refused by upstream", "connection reset"]
    );
    // Tokens in order, separated only by non-token characters.
    assert_eq!(search("user-1"), ["login user-1 ok", "login user_1 again"]);
    assert_eq!(search("user12"), ["login user12 ok"]);
    // A prefix.
    assert_eq!(
        search("conn*"),
        [
            "Café au lait: connexion établie",
            "Connection refused by upstream",
            "connection reset"
        ]
    );
    // Every word must match.
    assert_eq!(search("login ok"), ["login user-1 ok", "login user12 ok"]);
    assert!(search("login postgres").is_empty());
    // Punctuation is never syntax.
    assert_eq!(
        search("O'Brien; \"hi\""),
        ["say \"hi\" to O'Brien; 100% done"]
    );
    assert_eq!(search("100%"), ["say \"hi\" to O'Brien; 100% done"]);
    // Text without a token is a substring.
    assert_eq!(search("->"), ["ERROR: disk full -> retrying"]);
    assert!(search("=>").is_empty());
    // Letters beyond ASCII.
    assert_eq!(search("établie"), ["Café au lait: connexion établie"]);
}

fn logs_paging(store: &dyn Store) {
    for order in [Order::Desc, Order::Asc] {
        let whole = logs(store, LogQuery { order, ..all() });
        let mut paged = Vec::new();
        let mut cursor = None;
        for _ in 0..20 {
            let page = store
                .query_logs(&LogQuery {
                    limit: 2,
                    cursor: cursor.clone(),
                    order,
                    ..all()
                })
                .expect("page");
            assert!(page.logs.len() <= 2);
            paged.extend(page.logs);
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        assert!(cursor.is_none(), "{order:?}: paging did not end");
        assert_eq!(
            messages(&paged),
            messages(&whole),
            "{order:?}: pages of 2 give the whole list, in order, each once"
        );
    }
    // A page within a filter and a time window.
    let first = store
        .query_logs(&LogQuery {
            agent: Some("web".into()),
            from_ns: Some(at(20)),
            limit: 2,
            order: Order::Asc,
            ..all()
        })
        .expect("first page");
    let rest = store
        .query_logs(&LogQuery {
            agent: Some("web".into()),
            from_ns: Some(at(20)),
            limit: 100,
            order: Order::Asc,
            cursor: first.next_cursor.clone(),
            ..all()
        })
        .expect("rest");
    let mut both = first.logs.clone();
    both.extend(rest.logs);
    assert_eq!(both.len(), 7, "{:?}", messages(&both));
    assert_eq!(rest.next_cursor, None);
    let bad = store.query_logs(&LogQuery {
        cursor: Some("not a cursor".into()),
        ..all()
    });
    assert!(
        matches!(bad, Err(super::StorageError::BadQuery(_))),
        "a bad cursor is a bad query: {bad:?}"
    );
}

fn metric_query(name: &str) -> MetricQuery {
    MetricQuery {
        name: name.into(),
        from_ns: at(0),
        to_ns: at(3600),
        ..MetricQuery::default()
    }
}

fn metric_series(store: &dyn Store) {
    let series = store
        .query_metrics(&metric_query("host_cpu_usage_percent"))
        .expect("metrics");
    let keys: Vec<(&str, Option<&String>)> = series
        .iter()
        .map(|s| (s.agent_id.as_str(), s.labels.get("cpu")))
        .collect();
    assert_eq!(series.len(), 3, "db total, web 0, web total: {keys:?}");
    let web_total = series
        .iter()
        .find(|s| s.agent_id == "web" && s.labels.get("cpu").map(String::as_str) == Some("total"))
        .expect("web total");
    assert_eq!(web_total.kind, "gauge");
    assert_eq!(web_total.name, "host_cpu_usage_percent");
    let want: Vec<(i64, f64)> = (0..6)
        .map(|i| (at(i * 10) / MS, (i + 1) as f64 * 10.0))
        .collect();
    assert_eq!(web_total.points, want, "raw points in ms, oldest first");

    // Filters: agent, labels, time range (to exclusive).
    let filtered = store
        .query_metrics(&MetricQuery {
            agent: Some("web".into()),
            labels: BTreeMap::from([("cpu".to_string(), "0".to_string())]),
            from_ns: at(10),
            to_ns: at(30),
            ..metric_query("host_cpu_usage_percent")
        })
        .expect("filtered");
    assert_eq!(filtered.len(), 1);
    assert_eq!(
        filtered[0].points,
        [(at(10) / MS, 21.0), (at(20) / MS, 31.0)]
    );
    let none = store
        .query_metrics(&MetricQuery {
            labels: BTreeMap::from([("cpu".to_string(), "7".to_string())]),
            ..metric_query("host_cpu_usage_percent")
        })
        .expect("no match");
    assert!(none.is_empty());

    let one = |name: &str| {
        let s = store.query_metrics(&metric_query(name)).expect(name);
        assert_eq!(s.len(), 1, "{name}: one series");
        s.into_iter().next().expect("one")
    };
    let counter = one("requests_total");
    assert_eq!(
        (counter.kind.as_str(), counter.points.as_slice()),
        ("counter", &[(at(30) / MS, 1234.0)][..])
    );
    let histogram = one("latency_seconds");
    assert_eq!(histogram.kind, "histogram");
    assert_eq!(
        histogram.points,
        [(at(30) / MS, 2.5)],
        "histograms give their sum"
    );
    let summary = one("rpc_seconds");
    assert_eq!(
        (summary.kind.as_str(), summary.points.as_slice()),
        ("summary", &[(at(30) / MS, 7.0)][..])
    );
    let temperature = one("temperature");
    assert_eq!(
        temperature.points,
        [(at(36) / MS, 21.5)],
        "a NaN sample has no value"
    );
}

fn metric_steps(store: &dyn Store) {
    let series = store
        .query_metrics(&MetricQuery {
            agent: Some("web".into()),
            labels: BTreeMap::from([("cpu".to_string(), "total".to_string())]),
            from_ns: at(5),
            to_ns: at(65),
            step_ns: Some(20 * SEC),
            ..metric_query("host_cpu_usage_percent")
        })
        .expect("steps");
    assert_eq!(series.len(), 1);
    // Buckets [5,25) [25,45) [45,65): samples 20,30 | 40,50 | 60.
    assert_eq!(
        series[0].points,
        [(at(5) / MS, 25.0), (at(25) / MS, 45.0), (at(45) / MS, 60.0)]
    );
    let bad = store.query_metrics(&MetricQuery {
        step_ns: Some(0),
        ..metric_query("host_cpu_usage_percent")
    });
    assert!(
        matches!(bad, Err(super::StorageError::BadQuery(_))),
        "step 0: {bad:?}"
    );
    let empty = store
        .query_metrics(&MetricQuery {
            from_ns: at(10),
            to_ns: at(10),
            ..metric_query("host_cpu_usage_percent")
        })
        .expect("empty range");
    assert!(empty.is_empty());
}

fn flows(store: &dyn Store) {
    let query = |q: FlowQuery| store.query_flows(&q).expect("flows");
    let all = FlowQuery {
        limit: 100,
        ..FlowQuery::default()
    };
    let every = query(all.clone());
    let keys: Vec<(i64, &str, &str)> = every
        .iter()
        .map(|f| (f.timestamp_ns, f.src_addr.as_str(), f.dst_addr.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            (at(120), "10.0.0.2", "10.0.0.1"),
            (at(110), "::1", "::1"),
            (at(100), "10.0.0.1", "10.0.0.2"),
            (at(100), "10.0.0.1", "10.0.0.3"),
        ],
        "newest first, then by addresses"
    );
    let f = &every[2];
    assert_eq!(
        (f.src_port, f.dst_port, f.protocol, f.bytes_out, f.bytes_in),
        (40000, 443, 6, 5000, 2500)
    );
    assert_eq!((f.packets_out, f.packets_in, f.tcp_flags), (3, 2, 0x12));
    assert_eq!(
        (f.end_ns, f.agent_id.as_str(), f.source.as_str()),
        (at(110), "web", "lo")
    );

    let count = |q: FlowQuery| query(q).len();
    assert_eq!(
        count(FlowQuery {
            addr: Some("10.0.0.2".into()),
            ..all.clone()
        }),
        2
    );
    assert_eq!(
        count(FlowQuery {
            port: Some(443),
            ..all.clone()
        }),
        2
    );
    assert_eq!(
        count(FlowQuery {
            protocol: Some(17),
            ..all.clone()
        }),
        1
    );
    assert_eq!(
        count(FlowQuery {
            agent: Some("db".into()),
            ..all.clone()
        }),
        0
    );
    assert_eq!(
        count(FlowQuery {
            from_ns: Some(at(100)),
            to_ns: Some(at(110)),
            ..all.clone()
        }),
        2
    );
    assert_eq!(count(FlowQuery { limit: 1, ..all }), 1);
}

fn catalogue_and_inventory(store: &dyn Store, received: i64) {
    assert_eq!(
        store.metric_names().expect("names"),
        [
            "host_cpu_usage_percent",
            "host_info",
            "host_memory_usage_percent",
            "latency_seconds",
            "requests_total",
            "rpc_seconds",
            "temperature"
        ]
    );
    let agents = store.agents().expect("agents");
    let ids: Vec<&str> = agents.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["db", "web"]);
    let web = &agents[1];
    assert_eq!(web.hostname.as_deref(), Some("web-1"));
    assert_eq!(web.os.as_deref(), Some("Debian GNU/Linux 12"));
    assert_eq!(web.kernel_version.as_deref(), Some("6.1.0"));
    assert_eq!(
        web.last_seen_ns,
        received + SEC,
        "a resent batch counts as seen"
    );
    assert_eq!(web.cpu_percent, Some(60.0), "the latest total sample");
    assert_eq!(
        web.memory_percent,
        Some(42.5),
        "the latest sample, not the last sent"
    );
    let db = &agents[0];
    assert_eq!(db.last_seen_ns, received + 2);
    assert_eq!((db.hostname.as_deref(), db.cpu_percent), (None, Some(5.0)));
    store.health().expect("a healthy store");
}
