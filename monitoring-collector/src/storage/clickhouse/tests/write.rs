//! Commits, duplicates (also across collectors and after a crash between the
//! events and the record), the inventory, health and retention.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Barrier};

use monitoring_common::event::{Fields, Labels};
use monitoring_common::{Event, EventKind, MetricValue, Severity, Value};

use super::super::write::insert_events;
use super::*;
use crate::storage::{CommitOutcome, FlowQuery, MetricQuery, StorageError};

const V4_A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const V4_B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

#[test]
fn round_trip_of_logs_metrics_and_flows() {
    let db = TestDb::new("round_trip");
    let store = db.open();
    store.health().unwrap();
    let mut line = log(
        T0 + SEC,
        "disk full on /dev/sda1 'é' \\ \0",
        Some(Severity::Error),
    );
    line.labels.insert("env".into(), "prod".into());
    if let EventKind::Log(l) = &mut line.kind {
        l.fields = Fields::from([
            ("offset".to_string(), Value::Int(42)),
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
            buckets: vec![(0.1, 1), (1.0, 2)],
        },
    );
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let events = vec![
        line,
        gauge(T0 + SEC, "load1", &[("cpu", "total")], 0.75),
        histogram,
        flow(T0, V4_A, v6, 443, u64::MAX),
    ];
    let outcome = store.commit(&batch("a1", 1, T0 + 2 * SEC, events)).unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);

    let found = logs(&store, all_logs());
    assert_eq!(found.len(), 1);
    let record = &found[0];
    assert_eq!(record.timestamp_ns, T0 + SEC);
    assert_eq!(record.agent_id, "a1");
    assert_eq!(record.source, "/var/log/app.log");
    assert_eq!(record.severity.as_deref(), Some("error"));
    assert_eq!(record.message, "disk full on /dev/sda1 'é' \\ \0");
    assert_eq!(
        record.labels,
        BTreeMap::from([("env".into(), "prod".into())])
    );
    assert_eq!(record.fields.get("offset"), Some(&serde_json::json!(42)));
    assert_eq!(
        record.fields.get("user"),
        Some(&serde_json::json!("o'neil"))
    );

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

    let flows = store
        .query_flows(&FlowQuery {
            limit: 10,
            ..FlowQuery::default()
        })
        .unwrap();
    assert_eq!(flows.len(), 1);
    let f = &flows[0];
    assert_eq!(
        (f.src_addr.as_str(), f.dst_addr.as_str()),
        ("10.0.0.1", "::1")
    );
    assert_eq!((f.src_port, f.dst_port, f.protocol), (40_000, 443, 6));
    assert_eq!((f.bytes_out, f.bytes_in), (u64::MAX, 10));
    assert_eq!((f.packets_out, f.packets_in, f.tcp_flags), (1, 2, 0x12));
    assert_eq!((f.timestamp_ns, f.end_ns), (T0, T0 + SEC));
    assert_eq!(f.source, "eth0");
    store.health().unwrap();
}

#[test]
fn duplicate_batches_are_stored_once_across_collectors_and_days() {
    let db = TestDb::new("duplicates");
    let b = batch("a1", 1, T0 + SEC, vec![log(T0, "once", None)]);
    {
        let store = db.open();
        assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Committed);
        assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Duplicate);
    }
    // Another collector (or a restart) on the same database.
    let store = db.open();
    assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Duplicate);
    // Resent after midnight: still recognised.
    let late = IngestBatch {
        received_ns: T0 + NS_PER_DAY + SEC,
        ..b.clone()
    };
    assert_eq!(store.commit(&late).unwrap(), CommitOutcome::Duplicate);
    let next = batch("a1", 2, T0 + NS_PER_DAY, vec![log(T0, "twice", None)]);
    assert_eq!(store.commit(&next).unwrap(), CommitOutcome::Committed);
    let other = batch("a2", 1, T0 + SEC, vec![log(T0, "other", None)]);
    assert_eq!(store.commit(&other).unwrap(), CommitOutcome::Committed);
    let other_stream = IngestBatch {
        stream_id: 8,
        ..b.clone()
    };
    assert_eq!(
        store.commit(&other_stream).unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(db.count("SELECT count() FROM {db}.logs"), 4);
    assert_eq!(logs(&store, all_logs()).len(), 4);
}

/// The events of one batch of every kind, for the duplicate tests.
fn mixed_events() -> Vec<Event> {
    let mut events: Vec<Event> = (0..300)
        .map(|i| log(T0 + (i % 7) * SEC, &format!("line {i}"), None))
        .collect();
    for i in 0..50 {
        events.push(gauge(T0 + i * SEC, "temp", &[("zone", "a")], i as f64));
    }
    for i in 0..20 {
        events.push(flow(T0 + (i % 3) * SEC, V4_A, V4_B, 443, i as u64));
    }
    events.push(gauge(T0 + 500 * SEC, "partial", &[], 10.0));
    events
}

/// Every query kind shows each event of [`mixed_events`] once.
fn assert_each_event_once(store: &dyn Store) {
    let found = logs(store, all_logs());
    assert_eq!(found.len(), 300);
    let mut messages: Vec<String> = found.into_iter().map(|r| r.message).collect();
    messages.sort();
    messages.dedup();
    assert_eq!(messages.len(), 300);
    // Small pages, so that the copies straddle page ends.
    let mut paged = 0;
    let mut cursor = None;
    loop {
        let page = store
            .query_logs(&LogQuery {
                limit: 7,
                cursor: cursor.take(),
                ..LogQuery::default()
            })
            .unwrap();
        paged += page.logs.len();
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(paged, 300);
    let query = MetricQuery {
        name: "temp".into(),
        from_ns: T0,
        to_ns: T0 + 100 * SEC,
        ..MetricQuery::default()
    };
    let raw = store.query_metrics(&query).unwrap();
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].points.len(), 50);
    let stepped = store
        .query_metrics(&MetricQuery {
            step_ns: Some(10 * SEC),
            ..query
        })
        .unwrap();
    assert_eq!(stepped[0].points.len(), 5);
    assert_eq!(stepped[0].points[0].1, 4.5);
    let flows = store
        .query_flows(&FlowQuery {
            limit: 15,
            ..FlowQuery::default()
        })
        .unwrap();
    assert_eq!(flows.len(), 15);
    let all_flows = store
        .query_flows(&FlowQuery {
            limit: 100,
            ..FlowQuery::default()
        })
        .unwrap();
    let mut bytes: Vec<u64> = all_flows.iter().map(|f| f.bytes_out).collect();
    bytes.sort_unstable();
    assert_eq!(bytes, (0..20).collect::<Vec<u64>>());
}

#[test]
fn concurrent_commits_of_one_batch_by_two_collectors_show_each_event_once() {
    let db = TestDb::new("race_once");
    let stores: Vec<Arc<ClickhouseStore>> = (0..2).map(|_| Arc::new(db.open())).collect();
    let b = batch("a1", 1, T0 + SEC, mixed_events());
    let barrier = Arc::new(Barrier::new(4));
    // Two workers in each collector, one of them receiving it after midnight.
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            let barrier = Arc::clone(&barrier);
            let b = IngestBatch {
                received_ns: b.received_ns + (i as i64 / 2) * NS_PER_DAY,
                ..b.clone()
            };
            std::thread::spawn(move || {
                barrier.wait();
                store.commit(&b).unwrap()
            })
        })
        .collect();
    let outcomes: Vec<CommitOutcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(outcomes.contains(&CommitOutcome::Committed), "{outcomes:?}");
    let stored = db.count("SELECT count() FROM {db}.logs");
    println!("outcomes {outcomes:?}; log rows stored: {stored} (300 per copy)");
    for store in &stores {
        assert_each_event_once(store.as_ref());
    }
}

#[test]
fn events_written_without_their_record_are_shown_once_after_the_resend() {
    let db = TestDb::new("crash");
    let store = db.open();
    let b = batch("a1", 1, T0 + SEC, mixed_events());
    // A collector crashed after inserting the events (twice: it was retried), before
    // recording the batch; one copy even landed on the next day.
    insert_events(&db.open().client, &b).unwrap();
    let next_day = IngestBatch {
        received_ns: T0 + NS_PER_DAY + SEC,
        ..b.clone()
    };
    insert_events(&db.open().client, &next_day).unwrap();
    assert_each_event_once(&store);
    // The agent resends: not recorded, so it is written again, and still shown once.
    assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Committed);
    assert_eq!(db.count("SELECT count() FROM {db}.logs"), 900);
    assert_each_event_once(&store);
    assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Duplicate);
    // An average over samples of which only some were written twice: the copies
    // would pull it towards 10.
    let zero = vec![gauge(T0 + 501 * SEC, "partial", &[], 0.0)];
    store.commit(&batch("a1", 2, T0 + SEC, zero)).unwrap();
    let partial = store
        .query_metrics(&MetricQuery {
            name: "partial".into(),
            from_ns: T0,
            to_ns: T0 + 1_000 * SEC,
            step_ns: Some(1_000 * SEC),
            ..MetricQuery::default()
        })
        .unwrap();
    assert_eq!(partial[0].points, vec![(T0 / 1_000_000, 5.0)]);
}

#[test]
fn retention_drops_whole_old_day_partitions() {
    let db = TestDb::new("retention");
    let store = db.open();
    for (seq, day) in [(1, DAY - 10), (2, DAY - 8), (3, DAY - 7), (4, DAY)] {
        let received = day * NS_PER_DAY + SEC;
        let events = vec![
            log(received, "x", None),
            gauge(received, "m", &[], 1.0),
            flow(received, V4_A, V4_B, 80, 1),
        ];
        store.commit(&batch("a1", seq, received, events)).unwrap();
    }
    // At noon today, day - 8 ended 7.5 days ago and goes; day - 7 ended 6.5 days
    // ago and stays.
    let now = T0 + NS_PER_DAY / 2;
    assert_eq!(store.enforce_retention(now).unwrap(), 2);
    for table in ["logs", "metrics", "flows", "batches"] {
        assert_eq!(
            db.count(&format!("SELECT count() FROM {{db}}.{table}")),
            2,
            "{table}"
        );
        assert_eq!(
            db.count(&format!(
                "SELECT toUInt64(min(received_date)) FROM {{db}}.{table}"
            )),
            (DAY - 7) as u64,
            "{table}"
        );
    }
    assert_eq!(store.enforce_retention(now).unwrap(), 0);
    // Two collectors at once, one day later: both succeed, the day goes once.
    let other = Arc::new(db.open());
    let store = Arc::new(store);
    let later = now + NS_PER_DAY;
    let handles: Vec<_> = [Arc::clone(&store), other]
        .into_iter()
        .map(|s| std::thread::spawn(move || s.enforce_retention(later).unwrap()))
        .collect();
    let dropped: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(dropped.iter().all(|d| *d <= 1), "{dropped:?}");
    assert_eq!(logs(store.as_ref(), all_logs()).len(), 1);
    // The store keeps working; the agent is still known.
    store
        .commit(&batch("a1", 5, T0 + SEC, vec![log(T0, "y", None)]))
        .unwrap();
    assert_eq!(logs(store.as_ref(), all_logs()).len(), 2);
    assert_eq!(store.agents().unwrap().len(), 1);
    let forever = ClickhouseStore::open(&ClickhouseConfig {
        retention_days: 0,
        ..db.config.clone()
    })
    .unwrap();
    assert_eq!(forever.enforce_retention(i64::MAX).unwrap(), 0);
}

#[test]
fn agents_inventory_comes_from_host_metrics_across_collectors() {
    let db = TestDb::new("agents");
    let store = db.open();
    let other = db.open();
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
    for s in [&store, &other] {
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
    // Later batches with only logs still move last_seen (through their records).
    store
        .commit(&batch(
            "a-agent",
            2,
            T0 + 15 * SEC,
            vec![log(T0, "hi", None)],
        ))
        .unwrap();
    assert_eq!(other.agents().unwrap()[0].last_seen_ns, T0 + 15 * SEC);
    // A duplicate still counts as a sign of life.
    let again = batch("a-agent", 1, T0 + 20 * SEC, vec![log(T0, "hi", None)]);
    assert_eq!(other.commit(&again).unwrap(), CommitOutcome::Duplicate);
    assert_eq!(store.agents().unwrap()[0].last_seen_ns, T0 + 20 * SEC);
    // Merges keep the answer: force them.
    for table in ["agents", "metric_names"] {
        db.client
            .execute(&format!(
                "OPTIMIZE TABLE {}.{table} FINAL",
                db.config.endpoint.database()
            ))
            .unwrap();
    }
    let agents = store.agents().unwrap();
    assert_eq!(agents[1].hostname.as_deref(), Some("web-1"));
    assert_eq!(agents[1].memory_percent, Some(41.0));
    assert_eq!(agents[0].last_seen_ns, T0 + 20 * SEC);
    assert_eq!(store.metric_names().unwrap().len(), 3);
}

#[test]
fn health_reports_missing_tables_and_unreachable_servers() {
    let db = TestDb::new("health");
    let store = db.open();
    store.health().unwrap();
    db.client
        .execute(&format!(
            "DROP TABLE {}.flows",
            db.config.endpoint.database()
        ))
        .unwrap();
    let error = store.health().unwrap_err();
    assert!(error.to_string().contains("flows"), "{error}");
    // Opening again creates what is missing.
    db.open().health().unwrap();
    store.health().unwrap();

    // Nothing listens on port 1 of loopback.
    let endpoint = super::Endpoint::parse("http://127.0.0.1:1/?database=x").unwrap();
    let unreachable = ClickhouseStore::open(&ClickhouseConfig {
        endpoint,
        ..db.config.clone()
    });
    let error = unreachable.unwrap_err();
    assert!(matches!(error, StorageError::Database { .. }), "{error}");
    assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
}
