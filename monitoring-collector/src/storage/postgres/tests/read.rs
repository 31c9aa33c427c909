//! Log searches, cursor paging, metric series and flows.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use monitoring_common::{FlowEvent, Severity};

use super::*;
use crate::storage::{FlowQuery, MetricQuery, Order, StorageError};

#[test]
fn cursor_pages_return_every_record_once_in_both_orders() {
    let db = TestDb::new("paging");
    let store = db.open();
    // 2,500 records with one timestamp, over two days' partitions and many
    // batches, the later day's written first so that ids and days disagree.
    let ts = T0 + 5 * SEC;
    for seq in 0..25_u64 {
        let received = T0 + if seq < 10 { NS_PER_DAY } else { 0 };
        let events = (0..100)
            .map(|i| log(ts, &format!("line {}", seq * 100 + i), None))
            .collect();
        store.commit(&batch("a1", seq, received, events)).unwrap();
    }
    for order in [Order::Asc, Order::Desc] {
        let mut whole: Option<Vec<String>> = None;
        for limit in [100, 97, 2_500, 3_000, 1] {
            let mut seen = Vec::new();
            let mut cursor = None;
            let mut pages = 0;
            loop {
                let page = store
                    .query_logs(&LogQuery {
                        limit,
                        order,
                        cursor: cursor.take(),
                        ..LogQuery::default()
                    })
                    .unwrap();
                pages += 1;
                assert!(page.logs.len() <= limit);
                seen.extend(page.logs.into_iter().map(|r| r.message));
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
                assert!(pages <= 2_500, "paging does not end");
            }
            let unique: HashSet<&String> = seen.iter().collect();
            assert_eq!(unique.len(), 2_500, "{order:?} limit {limit}");
            assert_eq!(seen.len(), 2_500, "{order:?} limit {limit}: repeats");
            assert_eq!(
                pages,
                2_500_usize.div_ceil(limit),
                "{order:?} limit {limit}"
            );
            // Every page size walks the one same order.
            match &whole {
                None => whole = Some(seen),
                Some(w) => assert_eq!(w, &seen, "{order:?} limit {limit}"),
            }
        }
    }
    for bad in ["nonsense", "p1.1", "p1.x.2", "c1.1.2.3"] {
        let query = LogQuery {
            limit: 10,
            cursor: Some(bad.into()),
            ..LogQuery::default()
        };
        assert!(
            matches!(store.query_logs(&query), Err(StorageError::BadQuery(_))),
            "{bad}"
        );
    }
}

#[test]
fn text_search_matches_words_and_survives_punctuation() {
    let db = TestDb::new("text");
    let store = db.open();
    let events = vec![
        log(T0, "error: (foo) failed to connect", None),
        log(T0 + 1, "all good", None),
        log(T0 + 2, "pointer -> null AND \"quoted\"", None),
        log(T0 + 3, "connection reset by peer", None),
        log(T0 + 4, "ÄRGER über Straße", None),
        log(T0 + 5, "regex chars .* [a] (b) {c} | ^$ \\d", None),
    ];
    store.commit(&batch("a1", 1, T0, events)).unwrap();
    let search = |q: &str| {
        let page = store
            .query_logs(&LogQuery {
                text: Some(q.into()),
                ..all_logs()
            })
            .unwrap_or_else(|e| panic!("query {q:?} failed: {e}"));
        let mut found: Vec<String> = page.logs.into_iter().map(|r| r.message).collect();
        found.sort();
        found
    };
    assert_eq!(search("error"), ["error: (foo) failed to connect"]);
    assert_eq!(search("error: (foo"), ["error: (foo) failed to connect"]);
    assert_eq!(search("FAILED foo"), ["error: (foo) failed to connect"]);
    assert_eq!(search("conn*").len(), 2);
    assert!(search("conn").is_empty(), "whole tokens only");
    assert_eq!(search("->"), ["pointer -> null AND \"quoted\""]);
    assert_eq!(search("\"quoted"), ["pointer -> null AND \"quoted\""]);
    assert_eq!(search("ärger ÜBER"), ["ÄRGER über Straße"]);
    assert_eq!(search("stra*"), ["ÄRGER über Straße"]);
    assert_eq!(search("ber"), Vec::<String>::new(), "ü is a letter");
    assert_eq!(search(".*"), ["regex chars .* [a] (b) {c} | ^$ \\d"]);
    assert_eq!(search("[a] (b)"), ["regex chars .* [a] (b) {c} | ^$ \\d"]);
    for q in [
        "AND",
        "OR NOT",
        "NEAR(a b)",
        "col:umn",
        "*",
        "\"",
        "^x",
        "a\"b",
        "(",
        "{x}",
        "\\",
        "[[:alnum:]]",
        "(?i)x",
        "$1",
        "'; DROP TABLE logs; --",
    ] {
        search(q);
    }
    assert!(search("missing").is_empty());
    assert_eq!(db.count("logs"), 6, "nothing a search says is executed");
}

#[test]
fn a_trigram_index_serves_word_searches() {
    let db = TestDb::new("trigram");
    let store = db.open();
    assert!(store.schema.trigram_index, "the test server allows pg_trgm");
    let mut client = db.client();
    let indexes: Vec<String> = client
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE tablename = 'logs' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        indexes.contains(&"logs_message_trgm".to_string()),
        "{indexes:?}"
    );
    // The search's expression is the index's: with scans that ignore it ruled
    // out, the planner can still answer from it (which it prefers by itself once
    // a table is large and the word rare).
    let events = (0..5_000)
        .map(|i| {
            let rare = if i % 1_000 == 0 { " zyxwv" } else { "" };
            log(T0 + i, &format!("common line {i}{rare}"), None)
        })
        .collect();
    store.commit(&batch("a1", 1, T0, events)).unwrap();
    client
        .batch_execute("ANALYZE logs; SET enable_seqscan = off; SET enable_indexscan = off")
        .unwrap();
    let expr = store.schema.message_expr;
    let plan: Vec<String> = client
        .query(
            &format!(
                "EXPLAIN SELECT id FROM logs WHERE {expr} ~ $1 ORDER BY timestamp_ns DESC, id DESC LIMIT 101"
            ),
            &[&"(^|[^[:alnum:]])zyxwv($|[^[:alnum:]])"],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter()
            .any(|l| l.contains("Index Cond") && l.contains("~")),
        "{}",
        plan.join("\n")
    );
    let found = logs(
        &store,
        LogQuery {
            text: Some("ZYXWV".into()),
            ..all_logs()
        },
    );
    assert_eq!(found.len(), 5);
}

#[test]
fn filters_by_severity_agent_source_and_time() {
    let db = TestDb::new("filters");
    let store = db.open();
    let mut other_source = log(T0 + 4, "from syslog", Some(Severity::Info));
    other_source.source = "journald".into();
    let events = vec![
        log(T0, "crit", Some(Severity::Critical)),
        log(T0 + 1, "warn", Some(Severity::Warning)),
        log(T0 + 2, "info", Some(Severity::Info)),
        log(T0 + 3, "unknown", None),
        other_source,
    ];
    store.commit(&batch("a1", 1, T0, events)).unwrap();
    let a2 = vec![log(T0, "a2 error", Some(Severity::Error))];
    store.commit(&batch("a2", 1, T0, a2)).unwrap();
    let messages = |q: LogQuery| {
        let mut m: Vec<String> = logs(&store, q).into_iter().map(|r| r.message).collect();
        m.sort();
        m
    };
    let warn_or_worse = LogQuery {
        max_severity_code: Some(Severity::Warning.code()),
        ..all_logs()
    };
    assert_eq!(
        messages(warn_or_worse.clone()),
        ["a2 error", "crit", "warn"]
    );
    let a1 = LogQuery {
        agent: Some("a1".into()),
        ..warn_or_worse
    };
    assert_eq!(messages(a1), ["crit", "warn"]);
    let journald = LogQuery {
        source: Some("journald".into()),
        ..all_logs()
    };
    assert_eq!(messages(journald), ["from syslog"]);
    let window = LogQuery {
        from_ns: Some(T0 + 1),
        to_ns: Some(T0 + 3),
        agent: Some("a1".into()),
        ..all_logs()
    };
    assert_eq!(messages(window), ["info", "warn"]);
    let newest = logs(
        &store,
        LogQuery {
            limit: 1,
            ..all_logs()
        },
    );
    assert_eq!(newest[0].message, "from syslog", "descending by default");
}

#[test]
fn metric_steps_average_samples_per_bucket_across_days() {
    let db = TestDb::new("steps");
    let store = db.open();
    let cpu = |ts, core, v| gauge(ts, "host_cpu_usage_percent", &[("cpu", core)], v);
    let first = vec![
        cpu(T0, "0", 1.0),
        cpu(T0 + 10 * SEC, "0", 3.0),
        cpu(T0, "1", 50.0),
    ];
    store.commit(&batch("a1", 1, T0, first)).unwrap();
    // The bucket's third sample arrives a day later, in other partitions.
    let second = vec![
        cpu(T0 + 20 * SEC, "0", 5.0),
        cpu(T0 + 40 * SEC, "0", 10.0),
        cpu(T0 + 41 * SEC, "0", f64::NAN),
    ];
    store
        .commit(&batch("a1", 2, T0 + NS_PER_DAY, second))
        .unwrap();
    let query = MetricQuery {
        name: "host_cpu_usage_percent".into(),
        labels: BTreeMap::from([("cpu".to_string(), "0".to_string())]),
        from_ns: T0,
        to_ns: T0 + 60 * SEC,
        step_ns: Some(30 * SEC),
        ..MetricQuery::default()
    };
    let series = store.query_metrics(&query).unwrap();
    assert_eq!(series.len(), 1, "label filter keeps cpu=0 only");
    let ms = |ns: i64| ns / 1_000_000;
    assert_eq!(
        series[0].points,
        vec![(ms(T0), 3.0), (ms(T0 + 30 * SEC), 10.0)]
    );
    assert_eq!(series[0].labels.get("cpu").map(String::as_str), Some("0"));

    let raw = store
        .query_metrics(&MetricQuery {
            step_ns: None,
            ..query.clone()
        })
        .unwrap();
    assert_eq!(raw[0].points.len(), 4, "NaN samples are skipped");
    let all = store
        .query_metrics(&MetricQuery {
            labels: BTreeMap::new(),
            ..query.clone()
        })
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].points, vec![(ms(T0), 50.0)]);
    for hostile in [("cpu\"') --", "0"), ("cpu", "0\"}"), ("{", "}")] {
        let labels = BTreeMap::from([(hostile.0.to_string(), hostile.1.to_string())]);
        let none = store
            .query_metrics(&MetricQuery {
                labels,
                ..query.clone()
            })
            .unwrap();
        assert!(none.is_empty(), "{hostile:?}");
    }
    // A range wider than a bigint's difference still buckets (in numeric).
    let wide = store
        .query_metrics(&MetricQuery {
            from_ns: i64::MIN,
            to_ns: i64::MAX,
            step_ns: Some(i64::MAX),
            ..query.clone()
        })
        .unwrap();
    assert_eq!(wide[0].points.len(), 1);
    assert!((wide[0].points[0].1 - 19.0 / 4.0).abs() < 1e-9);
    let bad_step = MetricQuery {
        step_ns: Some(0),
        ..query
    };
    assert!(matches!(
        store.query_metrics(&bad_step),
        Err(StorageError::BadQuery(_))
    ));
}

#[test]
fn flows_come_newest_first_and_filter() {
    let db = TestDb::new("flows");
    let store = db.open();
    let flow = |secs: i64, src: &str, dst: &str, sport: u16, dport: u16, protocol: u8| Event {
        timestamp_ns: T0 + secs * SEC,
        source: "lo".into(),
        labels: Labels::from([("iface".to_string(), "lo".to_string())]),
        kind: EventKind::Flow(FlowEvent {
            src_addr: src.parse::<IpAddr>().unwrap(),
            dst_addr: dst.parse::<IpAddr>().unwrap(),
            src_port: sport,
            dst_port: dport,
            protocol,
            end_ns: T0 + (secs + 10) * SEC,
            bytes_out: 100,
            bytes_in: 50,
            packets_out: 2,
            packets_in: 1,
            tcp_flags: 0,
        }),
    };
    let events = vec![
        flow(100, "10.0.0.9", "10.0.0.1", 1, 80, 6),
        flow(100, "10.0.0.10", "10.0.0.1", 1, 80, 6),
    ];
    store.commit(&batch("b", 1, T0, events)).unwrap();
    let more = vec![
        flow(100, "10.0.0.9", "10.0.0.1", 1, 80, 6),
        flow(90, "::1", "::1", 5, 53, 17),
    ];
    store.commit(&batch("a", 1, T0 + NS_PER_DAY, more)).unwrap();
    let all = FlowQuery {
        limit: 100,
        ..FlowQuery::default()
    };
    let keys: Vec<(i64, String, String)> = store
        .query_flows(&all)
        .unwrap()
        .into_iter()
        .map(|f| (f.timestamp_ns, f.agent_id, f.src_addr))
        .collect();
    let at = |s: i64| T0 + s * SEC;
    // Bytewise order: "10.0.0.10" < "10.0.0.9", agents first.
    assert_eq!(
        keys,
        [
            (at(100), "a".into(), "10.0.0.9".into()),
            (at(100), "b".into(), "10.0.0.10".into()),
            (at(100), "b".into(), "10.0.0.9".into()),
            (at(90), "a".into(), "::1".into()),
        ]
    );
    let count = |q: FlowQuery| store.query_flows(&q).unwrap().len();
    assert_eq!(
        count(FlowQuery {
            addr: Some("10.0.0.1".into()),
            ..all.clone()
        }),
        3
    );
    assert_eq!(
        count(FlowQuery {
            port: Some(53),
            ..all.clone()
        }),
        1
    );
    assert_eq!(
        count(FlowQuery {
            protocol: Some(6),
            ..all.clone()
        }),
        3
    );
    assert_eq!(
        count(FlowQuery {
            agent: Some("b".into()),
            ..all.clone()
        }),
        2
    );
    assert_eq!(
        count(FlowQuery {
            from_ns: Some(at(90)),
            to_ns: Some(at(100)),
            ..all.clone()
        }),
        1
    );
    assert_eq!(
        count(FlowQuery {
            limit: 2,
            ..all.clone()
        }),
        2
    );
    assert_eq!(
        count(FlowQuery {
            limit: 0,
            ..all.clone()
        }),
        0
    );
    assert_eq!(
        count(FlowQuery {
            addr: Some("' OR 1=1 --".into()),
            ..all
        }),
        0
    );
}
