//! Generic read checks that every store's own tests run on a fresh store: cursor
//! paging over equal timestamps, text search, log filters, metric steps and flows.
//! Each asserts what all stores must do; what one store does beyond that (an order
//! among equal times, its own cursor format) stays in that store's tests.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use monitoring_common::Severity;

use super::fixtures::{NS_PER_DAY, SEC, T0, all_logs, batch, flow, gauge, log, logs};
use crate::storage::{FlowQuery, IngestBatch, LogQuery, MetricQuery, Order, StorageError, Store};

/// Commits 2,500 logs with one timestamp in 25 batches of two agents, received on two
/// days (the later day's first, so that insertion order and days disagree), calling
/// `before_commit` with each batch first (to write some twice, say). Then pages
/// through them in both orders at several page sizes and at `extra_limits` too:
/// every record comes once, the page count is exact and every page size walks the
/// one same order. (`&[1]` walks pages of one record: 5,000 queries, which a store
/// that answers over HTTP may leave out for time.)
pub(crate) fn cursor_pages_over_equal_timestamps(
    store: &dyn Store,
    before_commit: &dyn Fn(&IngestBatch),
    extra_limits: &[usize],
) {
    let ts = T0 + 5 * SEC;
    for seq in 0..25_u64 {
        let received = T0 + if seq < 10 { NS_PER_DAY } else { 0 };
        let agent = if seq % 2 == 0 { "a1" } else { "a2" };
        let events = (0..100)
            .map(|i| log(ts, &format!("line {}", seq * 100 + i), None))
            .collect();
        let b = batch(agent, seq, received, events);
        before_commit(&b);
        store.commit(&b).unwrap();
    }
    for order in [Order::Asc, Order::Desc] {
        let mut whole: Option<Vec<(String, String)>> = None;
        for &limit in [100, 97, 37, 2_500, 3_000].iter().chain(extra_limits) {
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
                assert!(pages <= 2_500, "paging does not end");
            }
            assert_eq!(seen.len(), 2_500, "{order:?} limit {limit}");
            assert_eq!(keys.len(), 2_500, "{order:?} limit {limit}: repeats");
            assert_eq!(
                pages,
                2_500_usize.div_ceil(limit).max(1),
                "{order:?} limit {limit}"
            );
            match &whole {
                None => whole = Some(keys),
                Some(w) => assert_eq!(w, &keys, "{order:?} limit {limit}: unstable order"),
            }
        }
    }
    assert_bad_cursors(store, &["nonsense", "p1.x.2", "c1.1", "k1.x"]);
    let zero = LogQuery {
        limit: 0,
        ..LogQuery::default()
    };
    assert!(store.query_logs(&zero).unwrap().logs.is_empty());
}

/// Each of `cursors` is refused as a bad query.
pub(crate) fn assert_bad_cursors(store: &dyn Store, cursors: &[&str]) {
    for bad in cursors {
        let query = LogQuery {
            limit: 10,
            cursor: Some(bad.to_string()),
            ..LogQuery::default()
        };
        assert!(
            matches!(store.query_logs(&query), Err(StorageError::BadQuery(_))),
            "{bad}"
        );
    }
}

/// Word searches: case, prefixes, punctuation that is never syntax, letters beyond
/// ASCII, text without words as a substring, and hostile queries that must run and
/// change nothing.
pub(crate) fn text_search_matches_words_and_survives_punctuation(store: &dyn Store) {
    let messages = [
        "error: (foo) failed to connect",
        "all good",
        "pointer -> null AND \"quoted\"",
        "connection reset by peer",
        "ÄRGER über Straße",
        "regex chars .* [a] (b) {c} | ^$ \\d",
        "User-1 logged in; user12 too",
        "Über café naïve ÉCOLE",
        "path C:\\temp\\x' it's",
    ];
    let events = (0_i64..)
        .zip(messages)
        .map(|(i, m)| log(T0 + i, m, None))
        .collect();
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
    let error = ["error: (foo) failed to connect"];
    assert_eq!(search("error"), error);
    assert_eq!(search("error: (foo"), error);
    assert_eq!(search("FAILED foo"), error);
    assert_eq!(search("conn*").len(), 2);
    assert!(search("conn").is_empty(), "whole tokens only");
    assert_eq!(search("->"), ["pointer -> null AND \"quoted\""]);
    assert_eq!(search("\"quoted"), ["pointer -> null AND \"quoted\""]);
    assert_eq!(search("ärger ÜBER"), ["ÄRGER über Straße"]);
    assert_eq!(search("stra*"), ["ÄRGER über Straße"]);
    assert!(search("ber").is_empty(), "ü is a letter");
    let regex = ["regex chars .* [a] (b) {c} | ^$ \\d"];
    assert_eq!(search(".*"), regex);
    assert_eq!(search("[a] (b)"), regex);
    let user = ["User-1 logged in; user12 too"];
    assert_eq!(search("user_1"), user);
    assert!(search("user 12").is_empty());
    assert_eq!(search("user1*"), user);
    assert_eq!(search("über CAFÉ"), ["Über café naïve ÉCOLE"]);
    assert_eq!(search("école"), ["Über café naïve ÉCOLE"]);
    assert!(search("caf").is_empty(), "é is a letter, not a separator");
    assert!(search("na").is_empty());
    let path = ["path C:\\temp\\x' it's"];
    assert_eq!(search("temp\\x'"), path);
    assert_eq!(search("it's"), path);
    assert_eq!(search(":\\"), path);
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
        "[",
        "$",
        "\0",
        "[[:alnum:]]",
        "(?i)x",
        "$1",
        "'; DROP TABLE logs; --",
    ] {
        search(q);
    }
    assert!(search("missing").is_empty());
    assert_eq!(
        logs(store, all_logs()).len(),
        messages.len(),
        "nothing a search says is executed"
    );
}

/// Severity, agent, source and time filters over two agents' logs (all at `T0` and
/// just after, two of them at `T0` exactly).
pub(crate) fn filters_by_severity_agent_source_and_time(store: &dyn Store) {
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
        let mut m: Vec<String> = logs(store, q).into_iter().map(|r| r.message).collect();
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
        store,
        LogQuery {
            limit: 1,
            ..all_logs()
        },
    );
    assert_eq!(newest[0].message, "from syslog", "descending by default");
    let oldest = messages(LogQuery {
        limit: 2,
        order: Order::Asc,
        ..all_logs()
    });
    assert_eq!(oldest, ["a2 error", "crit"], "the two at T0, in some order");
}

/// Stepped averages of one label set's samples, some of which arrive a day later,
/// with buckets stamped at `from + k * step`, NaN samples skipped, hostile label
/// filters matching nothing and ranges up to the whole of `i64`.
pub(crate) fn metric_steps_average_samples_per_bucket(store: &dyn Store) {
    let cpu = |ts, core, v| gauge(ts, "host_cpu_usage_percent", &[("cpu", core)], v);
    let first = vec![
        cpu(T0, "0", 1.0),
        cpu(T0 + 10 * SEC, "0", 3.0),
        cpu(T0, "1", 50.0),
    ];
    store.commit(&batch("a1", 1, T0, first)).unwrap();
    // The bucket's third sample arrives a day later (another file or partition).
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
        ("cpu\"') --", "0"),
        ("cpu", "0\"}"),
        ("{", "}"),
        ("cpu", "0' OR '1'='1"),
        // A key absent from the series does not match an empty value.
        ("core", ""),
    ] {
        let labels = BTreeMap::from([(hostile.0.to_string(), hostile.1.to_string())]);
        let none = store
            .query_metrics(&MetricQuery {
                labels,
                ..query.clone()
            })
            .unwrap();
        assert!(none.is_empty(), "{hostile:?}");
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

/// After [`metric_steps_average_samples_per_bucket`] on the same store: a range
/// wider than an `i64` difference still buckets exactly.
pub(crate) fn metric_steps_over_the_whole_i64_range(store: &dyn Store) {
    let query = MetricQuery {
        name: "host_cpu_usage_percent".into(),
        labels: BTreeMap::from([("cpu".to_string(), "0".to_string())]),
        ..MetricQuery::default()
    };
    // (ts - MIN) / MAX is 1 for every sample, one bucket at MIN + MAX = -1 ns.
    let wide = store
        .query_metrics(&MetricQuery {
            from_ns: i64::MIN,
            to_ns: i64::MAX,
            step_ns: Some(i64::MAX),
            ..query
        })
        .unwrap();
    assert_eq!(wide[0].points.len(), 1);
    assert!((wide[0].points[0].1 - 19.0 / 4.0).abs() < 1e-9);
    assert_eq!(wide[0].points[0].0, -1, "{:?}", wide[0].points);
}

/// The flows two agents sent in one day's batches, for [`flows_in_order_and_filtered`]
/// (the last one is agent `a`'s batch 1; the rest are agent `b`'s).
pub(crate) fn flow_batches() -> [IngestBatch; 2] {
    let ip = |d| IpAddr::V4(Ipv4Addr::new(10, 0, 0, d));
    let events = vec![
        flow(T0, ip(2), ip(9), 443, 1),
        flow(T0 + SEC, ip(3), ip(9), 80, 2),
        flow(T0, ip(1), ip(9), 443, 3),
        flow(T0, ip(1), ip(8), 53, 4),
        flow(T0 + 2 * SEC, ip(9), ip(1), 22, 5),
    ];
    let a = vec![flow(T0, ip(5), ip(6), 443, 6)];
    [batch("b", 1, T0, events), batch("a", 1, T0, a)]
}

/// The bytes of each flow `query` finds, in the order found.
pub(crate) fn flow_bytes(store: &dyn Store, query: &FlowQuery) -> Vec<u64> {
    let flows = store.query_flows(query).unwrap();
    flows.into_iter().map(|f| f.bytes_out).collect()
}

/// Flows come newest first, equal times by agent, then source, then destination
/// address (as text, bytewise), under every filter and limit.
pub(crate) fn flows_in_order_and_filtered(store: &dyn Store) {
    for b in flow_batches() {
        store.commit(&b).unwrap();
    }
    let bytes = |q: FlowQuery| flow_bytes(store, &q);
    let all = FlowQuery {
        limit: 100,
        ..FlowQuery::default()
    };
    assert_eq!(bytes(all.clone()), [5, 2, 6, 4, 3, 1]);
    let first3 = FlowQuery {
        limit: 3,
        ..all.clone()
    };
    assert_eq!(bytes(first3), [5, 2, 6]);
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
    let none = FlowQuery {
        limit: 0,
        ..all.clone()
    };
    assert!(bytes(none).is_empty());
    let hostile = FlowQuery {
        addr: Some("' OR 1=1 --".into()),
        ..all.clone()
    };
    assert!(bytes(hostile).is_empty());

    // Received on another day, with a tie that sorts "10.0.0.10" before "10.0.0.9".
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let mut udp = flow(T0 - 10 * SEC, ip("::1"), ip("::1"), 53, 7);
    if let monitoring_common::EventKind::Flow(f) = &mut udp.kind {
        f.protocol = 17;
    }
    let later = vec![
        flow(T0 + 2 * SEC, ip("10.0.0.9"), ip("10.0.0.2"), 80, 8),
        flow(T0 + 2 * SEC, ip("10.0.0.10"), ip("10.0.0.1"), 80, 9),
        udp,
    ];
    store
        .commit(&batch("b", 2, T0 + NS_PER_DAY, later))
        .unwrap();
    assert_eq!(bytes(all.clone()), [9, 5, 8, 2, 6, 4, 3, 1, 7]);
    let udp = FlowQuery {
        protocol: Some(17),
        port: Some(53),
        ..all.clone()
    };
    assert_eq!(bytes(udp), [7]);
    let window = FlowQuery {
        from_ns: Some(T0 - 10 * SEC),
        to_ns: Some(T0),
        ..all
    };
    assert_eq!(bytes(window), [7]);
}
