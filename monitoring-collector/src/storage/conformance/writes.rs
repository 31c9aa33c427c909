//! Generic write checks that every store's own tests run: a round trip of every
//! event kind, duplicates across restarts and days, retention by whole days and the
//! agent inventory. Hooks let a store look behind itself (its files, partitions or
//! tables) at the moment that matters; what only one store does stays in its tests.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use monitoring_common::event::{Fields, Labels};
use monitoring_common::{Event, EventKind, FlowEvent, MetricValue, Severity, Value};

use super::fixtures::{DAY, NS_PER_DAY, SEC, T0, all_logs, batch, flow, flows, gauge, log, logs};
use crate::storage::{CommitOutcome, IngestBatch, MetricQuery, Store};

/// The message of [`round_trip`]'s log: quotes, a backslash and a letter beyond ASCII.
pub(crate) const ROUND_TRIP_MESSAGE: &str = "disk full on /dev/sda1 'é' \\";

/// The batch [`round_trip`] commits: agent `a1`, stream `u64::MAX - 3`, sequence
/// `u64::MAX` (both past `i64::MAX`), four events: a log, a gauge, a histogram and a
/// flow from 10.0.0.1 to ::1 with every counter at its top.
pub(crate) fn round_trip_batch() -> IngestBatch {
    let mut line = log(T0 + SEC, ROUND_TRIP_MESSAGE, Some(Severity::Error));
    line.labels.insert("env".into(), "prod".into());
    if let EventKind::Log(l) = &mut line.kind {
        l.fields = Fields::from([
            ("offset".to_string(), Value::Int(42)),
            ("ratio".to_string(), Value::Float(0.1)),
            ("big".to_string(), Value::Float(1e300)),
            ("ok".to_string(), Value::Bool(true)),
            ("none".to_string(), Value::Null),
            ("user".to_string(), Value::Str("o'neil".into())),
        ]);
    }
    let histogram = Event::metric(
        T0 + SEC,
        "scrape",
        "req_seconds",
        Labels::new(),
        MetricValue::Histogram {
            count: 2,
            sum: 0.5,
            buckets: vec![(0.1, 1), (1.0, 2), (f64::INFINITY, 2)],
        },
    );
    let flow = Event {
        timestamp_ns: T0,
        source: "eth0".into(),
        labels: Labels::new(),
        kind: EventKind::Flow(FlowEvent {
            src_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst_addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            src_port: 65_535,
            dst_port: 443,
            protocol: 255,
            end_ns: T0 + SEC,
            bytes_out: u64::MAX,
            bytes_in: 10,
            packets_out: 1,
            packets_in: 2,
            tcp_flags: 0xff,
        }),
    };
    let events = vec![
        line,
        gauge(T0 + SEC, "load1", &[("cpu", "total")], 0.75),
        histogram,
        flow,
    ];
    let mut b = batch("a1", u64::MAX, T0 + 2 * SEC, events);
    b.stream_id = u64::MAX - 3;
    b
}

/// Commits [`round_trip_batch`] (twice: the second is a duplicate) and reads every
/// event back. A flow's `bytes_out` of `u64::MAX` comes back as at least
/// `i64::MAX`: stores with signed columns saturate, the store's tests say which.
pub(crate) fn round_trip(store: &dyn Store) {
    store.health().unwrap();
    let b = round_trip_batch();
    assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Committed);
    assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Duplicate);

    let found = logs(store, all_logs());
    assert_eq!(found.len(), 1);
    let record = &found[0];
    assert_eq!(record.timestamp_ns, T0 + SEC);
    assert_eq!(record.agent_id, "a1");
    assert_eq!(record.source, "/var/log/app.log");
    assert_eq!(record.severity.as_deref(), Some("error"));
    assert_eq!(record.message, ROUND_TRIP_MESSAGE);
    assert_eq!(
        record.labels,
        BTreeMap::from([("env".into(), "prod".into())])
    );
    // Fields come back as serde_json's values, whichever store holds them.
    let want: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        r#"{"offset": 42, "ratio": 0.1, "big": 1e300, "ok": true, "none": null, "user": "o'neil"}"#,
    )
    .unwrap();
    assert_eq!(record.fields, want);

    let series = |name: &str| {
        store
            .query_metrics(&MetricQuery {
                name: name.into(),
                from_ns: T0,
                to_ns: T0 + 10 * SEC,
                ..MetricQuery::default()
            })
            .unwrap()
    };
    let load = series("load1");
    assert_eq!(load.len(), 1);
    assert_eq!(load[0].kind, "gauge");
    assert_eq!(load[0].agent_id, "a1");
    assert_eq!(
        load[0].labels,
        BTreeMap::from([("cpu".into(), "total".into())])
    );
    assert_eq!(load[0].points, vec![((T0 + SEC) / 1_000_000, 0.75)]);
    let hist = series("req_seconds");
    assert_eq!(hist[0].kind, "histogram");
    assert_eq!(hist[0].points[0].1, 0.5);
    assert_eq!(store.metric_names().unwrap(), ["load1", "req_seconds"]);

    let flows = flows(store, 10);
    assert_eq!(flows.len(), 1);
    let f = &flows[0];
    assert_eq!(
        (f.src_addr.as_str(), f.dst_addr.as_str()),
        ("10.0.0.1", "::1")
    );
    assert_eq!((f.src_port, f.dst_port, f.protocol), (65_535, 443, 255));
    assert!(f.bytes_out >= i64::MAX as u64, "{}", f.bytes_out);
    assert_eq!(f.bytes_in, 10);
    assert_eq!((f.packets_out, f.packets_in, f.tcp_flags), (1, 2, 0xff));
    assert_eq!((f.timestamp_ns, f.end_ns), (T0, T0 + SEC));
    assert_eq!((f.agent_id.as_str(), f.source.as_str()), ("a1", "eth0"));
    store.health().unwrap();
}

/// A batch is known by agent, stream and sequence: resent, resent after midnight or
/// after a restart (each `open` is a restart or another collector on the same data)
/// it is a duplicate; `after_late_duplicate` runs right after the resend of the next
/// day was refused, for a store to check that it wrote nothing. Ends with four logs.
pub(crate) fn duplicates_across_restarts_and_days(
    open: &dyn Fn() -> Box<dyn Store>,
    after_late_duplicate: &dyn Fn(),
) {
    let b = batch("a1", 1, T0 + SEC, vec![log(T0, "once", None)]);
    {
        let store = open();
        assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Committed);
        assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Duplicate);
    }
    let store = open();
    assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Duplicate);
    let late = IngestBatch {
        received_ns: T0 + NS_PER_DAY + SEC,
        ..b.clone()
    };
    assert_eq!(store.commit(&late).unwrap(), CommitOutcome::Duplicate);
    after_late_duplicate();
    // Another sequence, stream or agent is a different batch.
    let next = batch("a1", 2, T0 + NS_PER_DAY, vec![log(T0, "twice", None)]);
    assert_eq!(store.commit(&next).unwrap(), CommitOutcome::Committed);
    let other_stream = IngestBatch {
        stream_id: 8,
        ..b.clone()
    };
    assert_eq!(
        store.commit(&other_stream).unwrap(),
        CommitOutcome::Committed
    );
    let other = batch("a2", 1, T0 + SEC, vec![log(T0, "other", None)]);
    assert_eq!(store.commit(&other).unwrap(), CommitOutcome::Committed);
    drop(store);
    // Now two days hold batches; each is a duplicate, whichever day it is sent on.
    let store = open();
    for again in [&b, &late, &next, &other_stream, &other] {
        assert_eq!(store.commit(again).unwrap(), CommitOutcome::Duplicate);
    }
    assert_eq!(logs(store.as_ref(), all_logs()).len(), 4);
}

/// Commits a log, a gauge `m` and a flow received on each of the days 10, 8 and 7
/// days before [`DAY`] and on it, then keeps seven days at noon of [`DAY`]: day - 8
/// ended 7.5 days ago and goes, day - 7 ended 6.5 days ago and stays, although some
/// of its data is older than 7 days. `after_first_pass` runs right after the pass
/// that dropped two days. Ends with one more log committed on [`DAY`] (three logs).
pub(crate) fn retention_drops_whole_old_days(store: &dyn Store, after_first_pass: &dyn Fn()) {
    let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    for (seq, day) in [(1, DAY - 10), (2, DAY - 8), (3, DAY - 7), (4, DAY)] {
        let received = day * NS_PER_DAY + SEC;
        let events = vec![
            log(received, "x", None),
            gauge(received, "m", &[], 1.0),
            flow(received, src, dst, 80, 1),
        ];
        store.commit(&batch("a1", seq, received, events)).unwrap();
    }
    let now = T0 + NS_PER_DAY / 2;
    assert_eq!(store.enforce_retention(now).unwrap(), 2);
    after_first_pass();
    assert_eq!(logs(store, all_logs()).len(), 2);
    let m = store
        .query_metrics(&MetricQuery {
            name: "m".into(),
            from_ns: 0,
            to_ns: i64::MAX,
            ..MetricQuery::default()
        })
        .unwrap();
    assert_eq!(m.iter().map(|s| s.points.len()).sum::<usize>(), 2);
    assert_eq!(flows(store, 100).len(), 2);
    assert_eq!(store.enforce_retention(now).unwrap(), 0);
    // The store keeps working, and still knows the agent.
    store
        .commit(&batch("a1", 5, T0 + SEC, vec![log(T0, "y", None)]))
        .unwrap();
    assert_eq!(logs(store, all_logs()).len(), 3);
    assert_eq!(store.agents().unwrap().len(), 1);
}

/// The inventory from `host_info`, cpu and memory metrics, committed through `store`
/// and `other` (another collector on the same data, or the same store again): the
/// newest sample wins whatever order batches arrive in, and every batch, even a
/// duplicate or one of logs only, is a sign of life. Both see the same answer.
pub(crate) fn inventory_from_host_metrics(store: &dyn Store, other: &dyn Store) {
    let info = |ts, host: &str| {
        gauge(
            ts,
            "host_info",
            &[
                ("hostname", host),
                ("os", "Ubuntu"),
                ("os_version", "24.04"),
                ("kernel_version", "6.8.0"),
                ("arch", "x86_64"),
            ],
            1.0,
        )
    };
    let cpu = |ts, core, v| gauge(ts, "host_cpu_usage_percent", &[("cpu", core)], v);
    let events = vec![
        info(T0 + 2 * SEC, "web-1"),
        cpu(T0 + 2 * SEC, "total", 12.5),
        cpu(T0 + 3 * SEC, "0", 99.0),
        gauge(T0 + 2 * SEC, "host_memory_usage_percent", &[], 40.0),
    ];
    store
        .commit(&batch("b-agent", 1, T0 + 5 * SEC, events))
        .unwrap();
    // A later batch, through the other collector, with an older host_info does not
    // overwrite the newer one.
    let stale = vec![
        info(T0, "old-name"),
        gauge(T0 + 9 * SEC, "host_memory_usage_percent", &[], 41.0),
    ];
    other
        .commit(&batch("b-agent", 2, T0 + 9 * SEC, stale))
        .unwrap();
    store
        .commit(&batch("a-agent", 1, T0 + SEC, vec![log(T0, "hi", None)]))
        .unwrap();
    // An older batch arriving late (another collector's) moves nothing back.
    let older = vec![info(T0 + SEC, "older")];
    store
        .commit(&batch("b-agent", 0, T0 + 4 * SEC, older))
        .unwrap();
    for s in [store, other] {
        let agents = s.agents().unwrap();
        assert_eq!(agents.len(), 2);
        assert_eq!(agents[0].id, "a-agent");
        assert_eq!(agents[0].os, None);
        assert_eq!(agents[0].cpu_percent, None);
        assert_eq!(agents[0].last_seen_ns, T0 + SEC);
        let b = &agents[1];
        assert_eq!(b.id, "b-agent");
        assert_eq!(b.hostname.as_deref(), Some("web-1"));
        assert_eq!(b.os.as_deref(), Some("Ubuntu 24.04"));
        assert_eq!(b.kernel_version.as_deref(), Some("6.8.0"));
        assert_eq!(b.cpu_percent, Some(12.5));
        assert_eq!(b.memory_percent, Some(41.0));
        assert_eq!(b.last_seen_ns, T0 + 9 * SEC);
        assert_eq!(
            s.metric_names().unwrap(),
            [
                "host_cpu_usage_percent",
                "host_info",
                "host_memory_usage_percent"
            ]
        );
    }
    // Later batches with only logs still move last_seen.
    let hi = vec![log(T0, "hi", None)];
    store
        .commit(&batch("a-agent", 2, T0 + 15 * SEC, hi.clone()))
        .unwrap();
    assert_eq!(other.agents().unwrap()[0].last_seen_ns, T0 + 15 * SEC);
    // A duplicate still counts as a sign of life.
    let again = batch("a-agent", 1, T0 + 20 * SEC, hi);
    assert_eq!(other.commit(&again).unwrap(), CommitOutcome::Duplicate);
    assert_eq!(store.agents().unwrap()[0].last_seen_ns, T0 + 20 * SEC);
}
