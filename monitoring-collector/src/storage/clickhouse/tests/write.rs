//! Commits, duplicates (also across collectors and after a crash between the
//! events and the record), the inventory, health and retention.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Barrier};

use monitoring_common::Event;

use super::super::write::insert_events;
use super::*;
use crate::storage::conformance::writes;
use crate::storage::{CommitOutcome, MetricQuery, StorageError};

const V4_A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const V4_B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

#[test]
fn round_trip_of_logs_metrics_and_flows() {
    let db = TestDb::new("round_trip");
    let store = db.open();
    writes::round_trip(&store);
    let flows = flows(&store, 10);
    assert_eq!(flows[0].bytes_out, u64::MAX, "UInt64 holds it whole");
    // A NUL (with quotes and a backslash) is stored as it is.
    let message = "disk full on /dev/sda1 'é' \\ \0";
    let nul = batch(
        "a1",
        1,
        T0 + 3 * SEC,
        vec![log(T0 + 2 * SEC, message, None)],
    );
    assert_eq!(store.commit(&nul).unwrap(), CommitOutcome::Committed);
    let found = logs(&store, all_logs());
    assert_eq!(found[0].message, message);
}

#[test]
fn duplicate_batches_are_stored_once_across_collectors_and_days() {
    let db = TestDb::new("duplicates");
    // Each open is another collector (or a restart) on the same database.
    writes::duplicates_across_restarts_and_days(&|| Box::new(db.open()) as Box<dyn Store>, &|| {
        assert_eq!(db.count("SELECT count() FROM {db}.logs"), 1)
    });
    assert_eq!(db.count("SELECT count() FROM {db}.logs"), 4);
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
    assert_eq!(flows(store, 15).len(), 15);
    let all_flows = flows(store, 100);
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
    writes::retention_drops_whole_old_days(&store, &|| {
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
    });
    let now = T0 + NS_PER_DAY / 2;
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
    // Today's two logs are left.
    assert_eq!(logs(store.as_ref(), all_logs()).len(), 2);
    // The store keeps working; the agent is still known.
    store
        .commit(&batch("a1", 6, T0 + SEC, vec![log(T0, "z", None)]))
        .unwrap();
    assert_eq!(logs(store.as_ref(), all_logs()).len(), 3);
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
    writes::inventory_from_host_metrics(&store, &db.open());
    // Merges keep the answer: force them.
    for table in ["agents", "metric_names"] {
        db.execute(&format!("OPTIMIZE TABLE {{db}}.{table} FINAL"));
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
    db.execute("DROP TABLE {db}.flows");
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
