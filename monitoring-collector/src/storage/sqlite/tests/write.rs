//! Commits, deduplication, retention and the agent inventory.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use monitoring_common::event::{Fields, Labels};
use monitoring_common::{Event, EventKind, FlowEvent, MetricValue, Severity, Value};

use super::*;
use crate::storage::{CommitOutcome, MetricQuery};

#[test]
fn round_trip_of_logs_metrics_and_flows() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut line = log(T0 + SEC, "disk full on /dev/sda1", Some(Severity::Error));
    line.labels.insert("env".into(), "prod".into());
    if let EventKind::Log(l) = &mut line.kind {
        l.fields = Fields::from([("offset".to_string(), Value::Int(42))]);
    }
    let histogram = Event::metric(
        T0 + SEC,
        "scrape",
        "req_seconds",
        Labels::new(),
        MetricValue::Histogram {
            count: 2,
            sum: 0.5,
            buckets: vec![(0.1, 1), (1.0, 2)],
        },
    );
    let flow = Event {
        timestamp_ns: T0,
        source: "eth0".into(),
        labels: Labels::new(),
        kind: EventKind::Flow(FlowEvent {
            src_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            src_port: 40_000,
            dst_port: 443,
            protocol: 6,
            end_ns: T0 + SEC,
            bytes_out: u64::MAX,
            bytes_in: 10,
            packets_out: 1,
            packets_in: 1,
            tcp_flags: 0x12,
        }),
    };
    let events = vec![line, gauge(T0 + SEC, "load1", &[], 0.75), histogram, flow];
    let outcome = store.commit(&batch("a1", 1, T0 + 2 * SEC, events)).unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);

    let found = logs(&store, all_logs());
    assert_eq!(found.len(), 1);
    let record = &found[0];
    assert_eq!(record.timestamp_ns, T0 + SEC);
    assert_eq!(record.agent_id, "a1");
    assert_eq!(record.source, "/var/log/app.log");
    assert_eq!(record.severity.as_deref(), Some("error"));
    assert_eq!(record.message, "disk full on /dev/sda1");
    assert_eq!(
        record.labels,
        BTreeMap::from([("env".into(), "prod".into())])
    );
    assert_eq!(record.fields.get("offset"), Some(&serde_json::json!(42)));

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
    assert_eq!(load[0].points, vec![((T0 + SEC) / 1_000_000, 0.75)]);
    let hist = series("req_seconds");
    assert_eq!(hist[0].kind, "histogram");
    assert_eq!(hist[0].points[0].1, 0.5);
    assert_eq!(store.metric_names().unwrap(), ["load1", "req_seconds"]);

    let conn = rusqlite::Connection::open(dir.path().join(file_name(DAY))).unwrap();
    let (dst, port, bytes): (String, i64, i64) = conn
        .query_row("SELECT dst_addr, dst_port, bytes_out FROM flows", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((dst.as_str(), port, bytes), ("10.0.0.2", 443, i64::MAX));
    store.health().unwrap();
}

#[test]
fn duplicate_batches_are_stored_once_across_restarts_and_days() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch("a1", 1, T0 + SEC, vec![log(T0, "once", None)]);
    {
        let store = open(dir.path());
        assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Committed);
        assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Duplicate);
    }
    // Restart.
    let store = open(dir.path());
    assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Duplicate);
    // Resent after midnight: lands on another day, still recognised.
    let late = IngestBatch {
        received_ns: T0 + NS_PER_DAY + SEC,
        ..b.clone()
    };
    assert_eq!(store.commit(&late).unwrap(), CommitOutcome::Duplicate);
    assert!(!dir.path().join(file_name(DAY + 1)).exists());
    // Another sequence or another agent is a different batch.
    let next = batch("a1", 2, T0 + NS_PER_DAY, vec![log(T0, "twice", None)]);
    assert_eq!(store.commit(&next).unwrap(), CommitOutcome::Committed);
    let other = batch("a2", 1, T0 + SEC, vec![log(T0, "other", None)]);
    assert_eq!(store.commit(&other).unwrap(), CommitOutcome::Committed);
    // Now two day files exist; the first batch is a duplicate in either of them.
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Duplicate);
    assert_eq!(store.commit(&late).unwrap(), CommitOutcome::Duplicate);
    assert_eq!(store.commit(&next).unwrap(), CommitOutcome::Duplicate);
    assert_eq!(count_rows(dir.path(), DAY, "logs"), 2);
    assert_eq!(count_rows(dir.path(), DAY + 1, "logs"), 1);
    assert_eq!(logs(&store, all_logs()).len(), 3);
}

#[test]
fn concurrent_commits_of_one_batch_store_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    // The same batch sent on both sides of midnight, committed at the same time.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let b = batch("a1", 1, T0 + (i % 2) * NS_PER_DAY, vec![log(T0, "x", None)]);
                store.commit(&b).unwrap()
            })
        })
        .collect();
    let outcomes: Vec<CommitOutcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let committed = outcomes
        .iter()
        .filter(|o| **o == CommitOutcome::Committed)
        .count();
    assert_eq!(committed, 1, "{outcomes:?}");
    assert_eq!(logs(&store, all_logs()).len(), 1);
}

#[test]
fn retention_drops_whole_old_day_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for (seq, day) in [(1, DAY - 10), (2, DAY - 8), (3, DAY - 7), (4, DAY)] {
        let received = day * NS_PER_DAY + SEC;
        store
            .commit(&batch("a1", seq, received, vec![log(received, "x", None)]))
            .unwrap();
    }
    // At noon today, day - 8 ended 7.5 days ago and goes; day - 7 ended 6.5 days
    // ago and stays, although some of its data is older than 7 days.
    let now = T0 + NS_PER_DAY / 2;
    assert_eq!(store.enforce_retention(now).unwrap(), 2);
    for (day, exists) in [
        (DAY - 10, false),
        (DAY - 8, false),
        (DAY - 7, true),
        (DAY, true),
    ] {
        let path = dir.path().join(file_name(day));
        assert_eq!(path.exists(), exists, "{}", path.display());
        let wal = dir.path().join(format!("{}-wal", file_name(day)));
        assert!(exists || !wal.exists());
    }
    assert_eq!(logs(&store, all_logs()).len(), 2);
    assert_eq!(store.enforce_retention(now).unwrap(), 0);
    // The store keeps working, also after a restart.
    store
        .commit(&batch("a1", 5, T0 + SEC, vec![log(T0, "y", None)]))
        .unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(logs(&store, all_logs()).len(), 3);
    drop(store);
    let forever = SqliteStore::open(&SqliteConfig {
        retention_days: 0,
        ..config(dir.path())
    })
    .unwrap();
    assert_eq!(forever.enforce_retention(i64::MAX).unwrap(), 0);
}

#[test]
fn agents_inventory_comes_from_host_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
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
    let events = vec![
        info(T0 + 2 * SEC, "web-1"),
        gauge(
            T0 + 2 * SEC,
            "host_cpu_usage_percent",
            &[("cpu", "total")],
            12.5,
        ),
        gauge(
            T0 + 3 * SEC,
            "host_cpu_usage_percent",
            &[("cpu", "0")],
            99.0,
        ),
        gauge(T0 + 2 * SEC, "host_memory_usage_percent", &[], 40.0),
    ];
    store
        .commit(&batch("b-agent", 1, T0 + 5 * SEC, events))
        .unwrap();
    // A later batch with an older host_info does not overwrite the newer one.
    let stale = vec![
        info(T0, "old-name"),
        gauge(T0 + 9 * SEC, "host_memory_usage_percent", &[], 41.0),
    ];
    store
        .commit(&batch("b-agent", 2, T0 + 9 * SEC, stale))
        .unwrap();
    store
        .commit(&batch("a-agent", 1, T0 + SEC, vec![log(T0, "hi", None)]))
        .unwrap();
    let agents = store.agents().unwrap();
    assert_eq!(agents.len(), 2);
    assert_eq!(agents[0].id, "a-agent");
    assert_eq!(agents[0].os, None);
    assert_eq!(agents[0].last_seen_ns, T0 + SEC);
    let b = &agents[1];
    assert_eq!(b.id, "b-agent");
    assert_eq!(b.hostname.as_deref(), Some("web-1"));
    assert_eq!(b.os.as_deref(), Some("Ubuntu 24.04"));
    assert_eq!(b.kernel_version.as_deref(), Some("6.8.0"));
    assert_eq!(b.cpu_percent, Some(12.5));
    assert_eq!(b.memory_percent, Some(41.0));
    assert_eq!(b.last_seen_ns, T0 + 9 * SEC);
    // A duplicate still counts as a sign of life.
    let again = batch("a-agent", 1, T0 + 20 * SEC, vec![log(T0, "hi", None)]);
    assert_eq!(store.commit(&again).unwrap(), CommitOutcome::Duplicate);
    assert_eq!(store.agents().unwrap()[0].last_seen_ns, T0 + 20 * SEC);
}

#[test]
fn queries_run_while_workers_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let writers: Vec<_> = (0..4_u64)
        .map(|w| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for seq in 0..25 {
                    let events = (0..20).map(|i| log(T0 + i, "load", None)).collect();
                    let agent = format!("agent-{w}");
                    store.commit(&batch(&agent, seq, T0, events)).unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            for _ in 0..50 {
                store
                    .query_logs(&LogQuery {
                        limit: 50,
                        ..all_logs()
                    })
                    .unwrap();
                store.agents().unwrap();
            }
        })
    };
    for h in writers {
        h.join().unwrap();
    }
    reader.join().unwrap();
    assert_eq!(logs(&store, all_logs()).len(), 4 * 25 * 20);
}
