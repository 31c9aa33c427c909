//! Log searches, cursor paging, time pruning and metric series.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;

use monitoring_common::Severity;

use super::*;
use crate::storage::{MetricQuery, Order, StorageError};

#[test]
fn cursor_pages_return_every_record_once_in_both_orders() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // 2,500 records with one timestamp, over two day files and many batches.
    let ts = T0 + 5 * SEC;
    for seq in 0..25_u64 {
        let received = T0 + if seq < 15 { 0 } else { NS_PER_DAY };
        let events = (0..100)
            .map(|i| log(ts, &format!("line {}", seq * 100 + i), None))
            .collect();
        store.commit(&batch("a1", seq, received, events)).unwrap();
    }
    for order in [Order::Asc, Order::Desc] {
        for limit in [100, 97, 2_500, 3_000] {
            let mut seen = HashSet::new();
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
                }
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
                assert!(pages < 100, "paging does not end");
            }
            assert_eq!(seen.len(), 2_500, "{order:?} limit {limit}");
            assert_eq!(
                pages,
                2_500_usize.div_ceil(limit).max(1),
                "{order:?} limit {limit}"
            );
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
}

#[test]
fn text_search_matches_words_and_survives_punctuation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let events = vec![
        log(T0, "error: (foo) failed to connect", None),
        log(T0 + 1, "all good", None),
        log(T0 + 2, "pointer -> null AND \"quoted\"", None),
        log(T0 + 3, "connection reset by peer", None),
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
    ] {
        search(q);
    }
    assert!(search("missing").is_empty());
}

#[test]
fn filters_by_severity_agent_source_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
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
fn queries_skip_day_files_outside_the_time_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Day 0 holds events of day 0; day 1 holds events of day 1 and a late one from
    // five days before.
    store
        .commit(&batch("a1", 1, T0, vec![log(T0 + SEC, "day0", None)]))
        .unwrap();
    let late = log(T0 - 5 * NS_PER_DAY, "late", None);
    let day1 = vec![log(T0 + NS_PER_DAY + SEC, "day1", None), late];
    store
        .commit(&batch("a1", 2, T0 + NS_PER_DAY, day1))
        .unwrap();
    let parts = store.partitions.all();
    let reads = || -> Vec<usize> {
        parts
            .iter()
            .map(|p| p.reads.load(Ordering::Relaxed))
            .collect()
    };

    let before = reads();
    let found = logs(
        &store,
        LogQuery {
            from_ns: Some(T0 + NS_PER_DAY),
            ..all_logs()
        },
    );
    assert_eq!(
        found.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(),
        ["day1"]
    );
    let after = reads();
    assert_eq!(after[0], before[0], "day 0 must not be read");
    assert_eq!(after[1], before[1] + 1);

    let found = logs(
        &store,
        LogQuery {
            to_ns: Some(T0 - NS_PER_DAY),
            ..all_logs()
        },
    );
    assert_eq!(
        found.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(),
        ["late"]
    );
    assert_eq!(reads()[0], after[0], "day 0 must not be read");

    // Metric queries prune the same way, and logs do not widen metric bounds.
    let before = reads();
    store
        .query_metrics(&MetricQuery {
            name: "x".into(),
            from_ns: 0,
            to_ns: i64::MAX,
            ..MetricQuery::default()
        })
        .unwrap();
    assert_eq!(reads(), before);
}

#[test]
fn metric_steps_average_samples_per_bucket_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let cpu = |ts, core, v| gauge(ts, "host_cpu_usage_percent", &[("cpu", core)], v);
    let first = vec![
        cpu(T0, "0", 1.0),
        cpu(T0 + 10 * SEC, "0", 3.0),
        cpu(T0, "1", 50.0),
    ];
    store.commit(&batch("a1", 1, T0, first)).unwrap();
    // The bucket's third sample arrives a day later, in another file.
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
    let hostile = BTreeMap::from([("cpu\"') --".to_string(), "0".to_string())]);
    let none = store
        .query_metrics(&MetricQuery {
            labels: hostile,
            ..query.clone()
        })
        .unwrap();
    assert!(none.is_empty());
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
fn text_search_pages_through_a_word_in_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // More matches than the FTS index drives (so the time index does), written
    // newest first so that row order and time order disagree.
    for seq in 0..11_i64 {
        let events = (0..1_000)
            .map(|i| {
                let n = seq * 1_000 + i;
                let rare = if n % 1_000 == 0 { " rare" } else { "" };
                log(
                    T0 + (10 - seq) * 1_000 + i,
                    &format!("common line {n}{rare}"),
                    None,
                )
            })
            .collect();
        store.commit(&batch("a1", seq as u64, T0, events)).unwrap();
    }
    for order in [Order::Desc, Order::Asc] {
        let mut seen = HashSet::new();
        let mut last: Option<i64> = None;
        let mut cursor = None;
        loop {
            let page = store
                .query_logs(&LogQuery {
                    text: Some("common".into()),
                    limit: 3_000,
                    order,
                    cursor: cursor.take(),
                    ..LogQuery::default()
                })
                .unwrap();
            for r in page.logs {
                if let Some(prev) = last {
                    match order {
                        Order::Desc => assert!(r.timestamp_ns <= prev),
                        Order::Asc => assert!(r.timestamp_ns >= prev),
                    }
                }
                last = Some(r.timestamp_ns);
                assert!(seen.insert(r.message));
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen.len(), 11_000, "{order:?}");
    }
    let rare = store
        .query_logs(&LogQuery {
            text: Some("RARE common".into()),
            limit: 100,
            ..LogQuery::default()
        })
        .unwrap();
    assert_eq!(rare.logs.len(), 11);
    assert_eq!(rare.next_cursor, None);
}
