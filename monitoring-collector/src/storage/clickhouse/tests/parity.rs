//! The same batches in the SQLite store and in ClickHouse give the same answers to
//! the same queries: the SQLite store's semantics are the contract. Timestamps are
//! distinct where an order depends on them, since the two stores break ties
//! between equal times differently (row id there, batch key here).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use monitoring_common::event::Labels;
use monitoring_common::{Event, MetricValue, Severity};

use super::*;
use crate::storage::sqlite::{SqliteConfig, SqliteStore};
use crate::storage::{FlowQuery, MetricQuery, Order};

/// A small deterministic generator (no seed to manage, same data every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

const WORDS: [&str; 14] = [
    "error",
    "Error:",
    "connect",
    "connection",
    "user-1",
    "user12",
    "Über",
    "café",
    "->",
    "(foo)",
    "it's",
    "C:\\tmp",
    "disk",
    "ÉCOLE",
];

fn batches() -> Vec<IngestBatch> {
    let mut rng = Lcg(42);
    let mut out = Vec::new();
    for seq in 0..12_u64 {
        let agent = ["web-1", "db-1", "web-2"][(seq % 3) as usize];
        let received = T0 + if seq < 8 { 0 } else { NS_PER_DAY } + seq as i64;
        let mut events = Vec::new();
        for i in 0..40_i64 {
            let ts = T0 + (seq as i64 * 40 + i) * 1_000_003 + rng.next(1_000) as i64;
            let words: Vec<&str> = (0..1 + rng.next(5))
                .map(|_| WORDS[rng.next(WORDS.len() as u64) as usize])
                .collect();
            let severity = Severity::from_code(rng.next(10) as u8);
            let mut e = log(ts, &words.join(" "), severity);
            if rng.next(3) == 0 {
                e.source = "journald".into();
            }
            e.labels
                .insert("env".into(), ["prod", "dev"][i as usize % 2].into());
            events.push(e);
        }
        for i in 0..30_i64 {
            let ts = T0 + (seq as i64 * 30 + i) * 2 * SEC;
            let core = ["0", "1", "total"][rng.next(3) as usize];
            let value = match rng.next(20) {
                0 => f64::NAN,
                v => v as f64 / 2.0,
            };
            events.push(gauge(ts, "host_cpu_usage_percent", &[("cpu", core)], value));
            if i % 10 == 0 {
                let labels: Labels = [("le".to_string(), "x".to_string())].into();
                events.push(Event::metric(
                    ts,
                    "scrape",
                    "req_seconds",
                    labels,
                    MetricValue::Histogram {
                        count: 2,
                        sum: i as f64,
                        buckets: vec![(0.5, 1), (1.0, 2)],
                    },
                ));
            }
        }
        if seq % 4 == 0 {
            events.push(gauge(
                T0 + seq as i64 * SEC,
                "host_info",
                &[("hostname", agent), ("os", "Debian"), ("os_version", "12")],
                1.0,
            ));
            events.push(gauge(
                T0 + seq as i64 * SEC,
                "host_memory_usage_percent",
                &[],
                seq as f64,
            ));
        }
        for i in 0..10_u8 {
            let ip = |d: u8| IpAddr::V4(Ipv4Addr::new(10, 0, d, i));
            let ts = T0 + (seq as i64 * 10 + i64::from(i)) * SEC;
            let port = [443, 80, 53][rng.next(3) as usize];
            events.push(flow(
                ts,
                ip(rng.next(3) as u8),
                ip(9),
                port,
                rng.next(1_000),
            ));
        }
        out.push(IngestBatch {
            agent_id: agent.into(),
            stream_id: 1,
            sequence: seq,
            received_ns: received,
            events,
        });
    }
    out
}

fn log_queries() -> Vec<LogQuery> {
    let mut queries = Vec::new();
    let texts = [
        None,
        Some("error"),
        Some("ERROR connect*"),
        Some("user_1"),
        Some("user1*"),
        Some("über"),
        Some("café"),
        Some("caf"),
        Some("->"),
        Some("(foo"),
        Some("it's"),
        Some(":\\"),
        Some("école disk"),
        Some("nothing"),
    ];
    for text in texts {
        for order in [Order::Desc, Order::Asc] {
            queries.push(LogQuery {
                text: text.map(String::from),
                order,
                limit: 10_000,
                ..LogQuery::default()
            });
        }
    }
    let base = LogQuery {
        limit: 10_000,
        ..LogQuery::default()
    };
    queries.push(LogQuery {
        agent: Some("web-2".into()),
        max_severity_code: Some(4),
        ..base.clone()
    });
    queries.push(LogQuery {
        source: Some("journald".into()),
        from_ns: Some(T0 + 100_000_000),
        to_ns: Some(T0 + 300_000_000),
        ..base.clone()
    });
    queries.push(LogQuery {
        text: Some("error".into()),
        limit: 7,
        order: Order::Asc,
        ..base
    });
    queries
}

/// Every record of a query, following the cursors, in the order given.
fn all_pages(store: &dyn Store, query: &LogQuery, limit: usize) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query_logs(&LogQuery {
                limit,
                cursor: cursor.take(),
                ..query.clone()
            })
            .unwrap();
        out.extend(page.logs);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[test]
fn answers_match_the_sqlite_store() {
    let db = TestDb::new("parity");
    let clickhouse = db.open();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&SqliteConfig {
        path: dir.path().to_path_buf(),
        ..SqliteConfig::default()
    })
    .unwrap();
    for b in batches() {
        let a = sqlite.commit(&b).unwrap();
        assert_eq!(clickhouse.commit(&b).unwrap(), a);
    }
    for query in log_queries() {
        let expected = sqlite.query_logs(&query).unwrap();
        let got = clickhouse.query_logs(&query).unwrap();
        assert_eq!(got.logs, expected.logs, "{query:?}");
        assert_eq!(
            got.next_cursor.is_some(),
            expected.next_cursor.is_some(),
            "{query:?}"
        );
        let paged = all_pages(&clickhouse, &query, 13);
        assert_eq!(paged, all_pages(&sqlite, &query, 13), "{query:?} paged");
    }
    let names = ["host_cpu_usage_percent", "req_seconds", "host_info", "none"];
    for name in names {
        for step in [
            None,
            Some(SEC),
            Some(7 * SEC),
            Some(60 * SEC),
            Some(NS_PER_DAY),
        ] {
            for (agent, labels) in [
                (None, BTreeMap::new()),
                (Some("web-1"), BTreeMap::new()),
                (None, BTreeMap::from([("cpu".into(), "total".into())])),
                (None, BTreeMap::from([("cpu".into(), "9".into())])),
            ] {
                let query = MetricQuery {
                    name: name.into(),
                    agent: agent.map(String::from),
                    labels,
                    from_ns: T0 - 3 * SEC,
                    to_ns: T0 + 500 * SEC,
                    step_ns: step,
                };
                assert_eq!(
                    clickhouse.query_metrics(&query).unwrap(),
                    sqlite.query_metrics(&query).unwrap(),
                    "{query:?}"
                );
            }
        }
    }
    let flows = FlowQuery {
        limit: 1_000,
        ..FlowQuery::default()
    };
    for query in [
        flows.clone(),
        FlowQuery {
            limit: 17,
            ..flows.clone()
        },
        FlowQuery {
            addr: Some("10.0.1.3".into()),
            ..flows.clone()
        },
        FlowQuery {
            port: Some(53),
            agent: Some("db-1".into()),
            ..flows.clone()
        },
        FlowQuery {
            from_ns: Some(T0 + 10 * SEC),
            to_ns: Some(T0 + 40 * SEC),
            protocol: Some(6),
            ..flows
        },
    ] {
        assert_eq!(
            clickhouse.query_flows(&query).unwrap(),
            sqlite.query_flows(&query).unwrap(),
            "{query:?}"
        );
    }
    assert_eq!(clickhouse.agents().unwrap(), sqlite.agents().unwrap());
    assert_eq!(
        clickhouse.metric_names().unwrap(),
        sqlite.metric_names().unwrap()
    );
}
