//! Log searches, cursor paging, metric series and flows.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use monitoring_common::Severity;

use super::super::write::insert_events;
use super::*;
use crate::storage::{FlowQuery, MetricQuery, Order, StorageError};

#[test]
fn cursor_pages_return_every_record_once_in_both_orders() {
    let db = TestDb::new("paging");
    let store = db.open();
    // 2,500 records with one timestamp, over two days of receipt, two agents and
    // many batches; one batch also written twice (a crash before its record).
    let ts = T0 + 5 * SEC;
    for seq in 0..25_u64 {
        let received = T0 + if seq < 15 { 0 } else { NS_PER_DAY };
        let agent = if seq % 2 == 0 { "a1" } else { "a2" };
        let events = (0..100)
            .map(|i| log(ts, &format!("line {}", seq * 100 + i), None))
            .collect();
        let b = batch(agent, seq, received, events);
        if seq == 3 {
            insert_events(&store.client, &b).unwrap();
        }
        store.commit(&b).unwrap();
    }
    for order in [Order::Asc, Order::Desc] {
        let mut all_keys = Vec::new();
        for limit in [100, 97, 37, 2_500, 3_000] {
            let mut seen = HashSet::new();
            let mut keys = Vec::new();
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
                for r in page.logs {
                    assert!(seen.insert(r.message.clone()), "repeated {}", r.message);
                    keys.push((r.agent_id, r.message));
                }
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
                assert!(pages < 3_000, "paging does not end");
            }
            assert_eq!(seen.len(), 2_500, "{order:?} limit {limit}");
            assert_eq!(
                pages,
                2_500_usize.div_ceil(limit).max(1),
                "{order:?} limit {limit}"
            );
            all_keys.push(keys);
        }
        // The order is the same whatever the page size: stable.
        for keys in &all_keys[1..] {
            assert_eq!(keys, &all_keys[0], "{order:?}");
        }
    }
    let bad = LogQuery {
        limit: 10,
        cursor: Some("nonsense".into()),
        ..LogQuery::default()
    };
    assert!(matches!(
        store.query_logs(&bad),
        Err(StorageError::BadQuery(_))
    ));
    let zero = LogQuery {
        limit: 0,
        ..LogQuery::default()
    };
    assert!(store.query_logs(&zero).unwrap().logs.is_empty());
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
        log(T0 + 4, "User-1 logged in; user12 too", None),
        log(T0 + 5, "Über café naïve ÉCOLE", None),
        log(T0 + 6, "path C:\\temp\\x' it's", None),
    ];
    store.commit(&batch("a1", 1, T0, events)).unwrap();
    let search = |q: &str| {
        let page = store
            .query_logs(&LogQuery {
                text: Some(q.into()),
                ..all_logs()
            })
            .unwrap_or_else(|e| panic!("query {q:?} failed: {e}"));
        page.logs.into_iter().map(|r| r.message).collect::<Vec<_>>()
    };
    assert_eq!(search("error"), ["error: (foo) failed to connect"]);
    assert_eq!(search("error: (foo"), ["error: (foo) failed to connect"]);
    assert_eq!(search("FAILED foo"), ["error: (foo) failed to connect"]);
    assert_eq!(search("conn*").len(), 2);
    assert_eq!(search("->"), ["pointer -> null AND \"quoted\""]);
    assert_eq!(search("\"quoted"), ["pointer -> null AND \"quoted\""]);
    assert_eq!(search("user_1"), ["User-1 logged in; user12 too"]);
    assert!(search("user 12").is_empty());
    assert_eq!(search("user1*"), ["User-1 logged in; user12 too"]);
    assert_eq!(search("über CAFÉ"), ["Über café naïve ÉCOLE"]);
    assert_eq!(search("école"), ["Über café naïve ÉCOLE"]);
    assert!(search("caf").is_empty(), "é is a letter, not a separator");
    assert!(search("na").is_empty());
    assert_eq!(search("temp\\x'"), ["path C:\\temp\\x' it's"]);
    assert_eq!(search("it's"), ["path C:\\temp\\x' it's"]);
    assert_eq!(search(":\\"), ["path C:\\temp\\x' it's"]);
    assert!(search("\\'").is_empty(), "substring of no word characters");
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
        "'",
        ".*",
        "[",
        "$",
        "\0",
    ] {
        search(q);
    }
    assert!(search("missing").is_empty());
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
    store
        .commit(&batch(
            "a2",
            1,
            T0,
            vec![log(T0, "a2 error", Some(Severity::Error))],
        ))
        .unwrap();
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
    let nobody = LogQuery {
        agent: Some("a1' OR '1'='1".into()),
        ..all_logs()
    };
    assert!(messages(nobody).is_empty());
    let newest = logs(
        &store,
        LogQuery {
            limit: 1,
            ..all_logs()
        },
    );
    assert_eq!(newest[0].message, "from syslog", "descending by default");
    let oldest = logs(
        &store,
        LogQuery {
            limit: 2,
            order: Order::Asc,
            ..all_logs()
        },
    );
    // Equal times: the batch key (agent a1 before a2) decides.
    assert_eq!(oldest[0].message, "crit");
    assert_eq!(oldest[1].message, "a2 error");
}

#[test]
fn metric_steps_average_samples_per_bucket() {
    let db = TestDb::new("steps");
    let store = db.open();
    let cpu = |ts, core, v| gauge(ts, "host_cpu_usage_percent", &[("cpu", core)], v);
    let first = vec![
        cpu(T0, "0", 1.0),
        cpu(T0 + 10 * SEC, "0", 3.0),
        cpu(T0, "1", 50.0),
    ];
    store.commit(&batch("a1", 1, T0, first)).unwrap();
    // The bucket's third sample arrives a day later.
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
    assert_eq!(series[0].kind, "gauge");

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
    for hostile in [
        BTreeMap::from([("cpu\"') --".to_string(), "0".to_string())]),
        BTreeMap::from([("cpu".to_string(), "0' OR '1'='1".to_string())]),
        // A key absent from the series does not match an empty value.
        BTreeMap::from([("core".to_string(), String::new())]),
    ] {
        let none = store
            .query_metrics(&MetricQuery {
                labels: hostile,
                ..query.clone()
            })
            .unwrap();
        assert!(none.is_empty());
    }
    // Buckets are stamped at from + k * step, also with an odd `from`.
    let odd = store
        .query_metrics(&MetricQuery {
            from_ns: T0 - 7 * SEC,
            step_ns: Some(20 * SEC),
            ..query.clone()
        })
        .unwrap();
    assert_eq!(
        odd[0].points,
        vec![
            (ms(T0 - 7 * SEC), 2.0),
            (ms(T0 + 13 * SEC), 5.0),
            (ms(T0 + 33 * SEC), 10.0)
        ]
    );
    // A huge range (`from` far in the past) still buckets exactly.
    let wide = store
        .query_metrics(&MetricQuery {
            from_ns: i64::MIN,
            to_ns: i64::MAX,
            step_ns: Some(i64::MAX),
            ..query.clone()
        })
        .unwrap();
    // (ts - MIN) / MAX is 1 for every sample: one bucket, at MIN + MAX = -1 ns.
    assert_eq!(wide[0].points, vec![(-1, 4.75)]);
    let bad_step = MetricQuery {
        step_ns: Some(0),
        ..query.clone()
    };
    assert!(matches!(
        store.query_metrics(&bad_step),
        Err(StorageError::BadQuery(_))
    ));
    let empty_range = MetricQuery { to_ns: T0, ..query };
    assert!(store.query_metrics(&empty_range).unwrap().is_empty());
}

#[test]
fn flows_come_newest_first_with_their_ties_ordered_and_filters_applied() {
    let db = TestDb::new("flows");
    let store = db.open();
    let ip = |d| IpAddr::V4(Ipv4Addr::new(10, 0, 0, d));
    let events = vec![
        flow(T0, ip(2), ip(9), 443, 1),
        flow(T0 + SEC, ip(3), ip(9), 80, 2),
        flow(T0, ip(1), ip(9), 443, 3),
        flow(T0, ip(1), ip(8), 53, 4),
        flow(T0 + 2 * SEC, ip(9), ip(1), 22, 5),
    ];
    store.commit(&batch("b", 1, T0, events)).unwrap();
    store
        .commit(&batch("a", 1, T0, vec![flow(T0, ip(5), ip(6), 443, 6)]))
        .unwrap();
    let bytes = |q: FlowQuery| -> Vec<u64> {
        store
            .query_flows(&q)
            .unwrap()
            .into_iter()
            .map(|f| f.bytes_out)
            .collect()
    };
    let all = FlowQuery {
        limit: 100,
        ..FlowQuery::default()
    };
    assert_eq!(bytes(all.clone()), [5, 2, 6, 4, 3, 1]);
    assert_eq!(
        bytes(FlowQuery {
            limit: 3,
            ..all.clone()
        }),
        [5, 2, 6]
    );
    let by_addr = FlowQuery {
        addr: Some("10.0.0.1".into()),
        ..all.clone()
    };
    assert_eq!(bytes(by_addr), [5, 4, 3]);
    let by_port = FlowQuery {
        port: Some(443),
        agent: Some("b".into()),
        ..all.clone()
    };
    assert_eq!(bytes(by_port), [3, 1]);
    let window = FlowQuery {
        from_ns: Some(T0 + SEC),
        to_ns: Some(T0 + 2 * SEC),
        protocol: Some(6),
        ..all.clone()
    };
    assert_eq!(bytes(window), [2]);
    let udp = FlowQuery {
        protocol: Some(17),
        ..all.clone()
    };
    assert!(bytes(udp).is_empty());
    assert!(
        bytes(FlowQuery {
            limit: 0,
            ..all.clone()
        })
        .is_empty()
    );
    // A batch written twice still gives each flow once, also under a limit.
    let again = batch("a", 1, T0, vec![flow(T0, ip(5), ip(6), 443, 6)]);
    insert_events(&store.client, &again).unwrap();
    insert_events(&store.client, &again).unwrap();
    assert_eq!(bytes(all.clone()), [5, 2, 6, 4, 3, 1]);
    assert_eq!(bytes(FlowQuery { limit: 4, ..all }), [5, 2, 6, 4]);
}
