//! Commits, deduplication, partitions, retention and the agent inventory.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use monitoring_common::event::{Fields, Labels};
use monitoring_common::{EventKind, FlowEvent, MetricValue, Value};

use super::*;
use crate::storage::sqlite::partition::day_of;
use crate::storage::{CommitOutcome, MetricQuery};

/// Days that have a partition of `table`, from the catalogue.
fn partition_days(db: &TestDb, table: &str) -> Vec<i64> {
    let rows = db
        .client()
        .query(
            "SELECT child.relname::text FROM pg_inherits i
             JOIN pg_class child ON child.oid = i.inhrelid
             WHERE i.inhparent = $1::text::regclass ORDER BY 1",
            &[&table],
        )
        .unwrap();
    rows.iter()
        .map(|r| {
            let name: String = r.get(0);
            let date = name.rsplit_once("_p").unwrap().1;
            let (y, m, d) = (&date[..4], &date[4..6], &date[6..]);
            crate::storage::sqlite::partition::days_from_civil(
                y.parse().unwrap(),
                m.parse().unwrap(),
                d.parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn round_trip_of_logs_metrics_and_flows() {
    let db = TestDb::new("round_trip");
    let store = db.open();
    let mut line = log(T0 + SEC, "disk full on /dev/sda1", Some(Severity::Error));
    line.labels.insert("env".into(), "prod".into());
    if let EventKind::Log(l) = &mut line.kind {
        l.fields = Fields::from([
            ("offset".to_string(), Value::Int(42)),
            ("ratio".to_string(), Value::Float(0.1)),
            ("big".to_string(), Value::Float(1e300)),
            ("ok".to_string(), Value::Bool(true)),
            ("none".to_string(), Value::Null),
        ]);
    }
    // PostgreSQL text cannot hold NUL: it is stored as U+FFFD, everywhere.
    let mut nul = log(T0 + 2 * SEC, "nul\0inside", None);
    nul.labels.insert("k\0".into(), "v\0".into());
    let histogram = Event::metric(
        T0 + SEC,
        "scrape",
        "req_seconds",
        Labels::new(),
        MetricValue::Histogram {
            count: 2,
            sum: 0.5,
            buckets: vec![(0.1, 1), (f64::INFINITY, 2)],
        },
    );
    let flow = Event {
        timestamp_ns: T0,
        source: "eth0".into(),
        labels: Labels::new(),
        kind: EventKind::Flow(FlowEvent {
            src_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            src_port: 65_535,
            dst_port: 443,
            protocol: 255,
            end_ns: T0 + SEC,
            bytes_out: u64::MAX,
            bytes_in: 10,
            packets_out: 1,
            packets_in: 1,
            tcp_flags: 0xff,
        }),
    };
    let events = vec![
        line,
        nul,
        gauge(T0 + SEC, "load1", &[], 0.75),
        histogram,
        flow,
    ];
    let mut b = batch("a1", u64::MAX, T0 + 2 * SEC, events);
    b.stream_id = u64::MAX - 3;
    assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Committed);
    assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Duplicate);

    let found = logs(
        &store,
        LogQuery {
            order: crate::storage::Order::Asc,
            ..all_logs()
        },
    );
    assert_eq!(found.len(), 2);
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
    // Fields come back as the sqlite store gives them: serde_json's values.
    let want: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        r#"{"offset": 42, "ratio": 0.1, "big": 1e300, "ok": true, "none": null}"#,
    )
    .unwrap();
    assert_eq!(record.fields, want);
    assert_eq!(found[1].message, "nul\u{FFFD}inside");
    assert_eq!(
        found[1].labels,
        BTreeMap::from([("k\u{FFFD}".into(), "v\u{FFFD}".into())])
    );
    let by_nul = logs(
        &store,
        LogQuery {
            text: Some("\0".into()),
            ..all_logs()
        },
    );
    assert_eq!(by_nul.len(), 1, "a NUL searches for its stand-in");

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

    let mut client = db.client();
    let row = client
        .query_one(
            "SELECT dst_addr, src_port, protocol, bytes_out, tcp_flags FROM flows",
            &[],
        )
        .unwrap();
    let (dst, port, proto, bytes, flags): (String, i32, i16, i64, i16) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(
        (dst.as_str(), port, proto, bytes, flags),
        ("10.0.0.2", 65_535, 255, i64::MAX, 255)
    );
    let flows = store
        .query_flows(&crate::storage::FlowQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        (flows[0].src_port, flows[0].protocol, flows[0].tcp_flags),
        (65_535, 255, 0xff)
    );
    assert_eq!(
        flows[0].bytes_out,
        i64::MAX as u64,
        "saturated, as in sqlite"
    );
    let row = client
        .query_one("SELECT stream_id, sequence, event_count FROM batches", &[])
        .unwrap();
    let (stream, seq, count): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (stream as u64, seq as u64, count),
        (u64::MAX - 3, u64::MAX, 5)
    );
    let detail: serde_json::Value = client
        .query_one("SELECT detail FROM metrics WHERE name = 'req_seconds'", &[])
        .unwrap()
        .get(0);
    assert_eq!(detail["count"], 2);
    store.health().unwrap();
    assert_eq!(db.count("health"), 1);
}

#[test]
fn duplicate_batches_are_stored_once_across_restarts_and_days() {
    let db = TestDb::new("dedup");
    let b = batch("a1", 1, T0 + SEC, vec![log(T0, "once", None)]);
    {
        let store = db.open();
        assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Committed);
        assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Duplicate);
    }
    // Restart.
    let store = db.open();
    assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Duplicate);
    // Resent after midnight: another day, still recognised, nothing written.
    let late = IngestBatch {
        received_ns: T0 + NS_PER_DAY + SEC,
        ..b.clone()
    };
    assert_eq!(store.commit(&late).unwrap(), CommitOutcome::Duplicate);
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
    let store = db.open();
    for again in [&b, &late, &next, &other_stream, &other] {
        assert_eq!(store.commit(again).unwrap(), CommitOutcome::Duplicate);
    }
    assert_eq!(db.count(&super::super::partition::name("logs", DAY)), 3);
    assert_eq!(db.count(&super::super::partition::name("logs", DAY + 1)), 1);
    assert_eq!(logs(&store, all_logs()).len(), 4);
    assert_eq!(db.count("batches"), 4);
}

#[test]
fn partitions_are_made_ahead_of_time_and_on_demand() {
    let db = TestDb::new("partitions");
    let store = db.open();
    let today = day_of(monitoring_common::event::now_ns());
    for table in ["logs", "metrics", "flows"] {
        assert_eq!(partition_days(&db, table), [today, today + 1], "{table}");
    }
    // A batch received on another day makes that day's partitions (all three).
    store
        .commit(&batch(
            "a1",
            1,
            T0 - 3 * NS_PER_DAY + 5,
            vec![log(T0, "x", None)],
        ))
        .unwrap();
    for table in ["logs", "metrics", "flows"] {
        let days = partition_days(&db, table);
        assert!(days.contains(&(DAY - 3)), "{table}: {days:?}");
    }
    // The row sits in its day's partition, whatever its event time.
    assert_eq!(db.count(&super::super::partition::name("logs", DAY - 3)), 1);
    // A retention pass makes the partitions of the day it is told is today.
    store.enforce_retention(T0 + 40 * NS_PER_DAY + 1).unwrap();
    let days = partition_days(&db, "metrics");
    assert!(
        days.contains(&(DAY + 40)) && days.contains(&(DAY + 41)),
        "{days:?}"
    );
    // A second store finds them and makes nothing twice.
    let again = db.open();
    assert!(again.partitions.known().contains(&(DAY + 41)));
}

#[test]
fn retention_drops_whole_old_days_and_their_dedup_records() {
    let db = TestDb::new("retention");
    let store = db.open();
    for (seq, day) in [(1, DAY - 10), (2, DAY - 8), (3, DAY - 7), (4, DAY)] {
        let received = day * NS_PER_DAY + SEC;
        let events = vec![log(received, "x", None), gauge(received, "m", &[], 1.0)];
        store.commit(&batch("a1", seq, received, events)).unwrap();
    }
    // At noon today, day - 8 ended 7.5 days ago and goes; day - 7 ended 6.5 days
    // ago and stays, although some of its data is older than 7 days.
    let now = T0 + NS_PER_DAY / 2;
    assert_eq!(store.enforce_retention(now).unwrap(), 2);
    for table in ["logs", "metrics", "flows"] {
        let days = partition_days(&db, table);
        assert!(
            !days.contains(&(DAY - 10)) && !days.contains(&(DAY - 8)),
            "{days:?}"
        );
        assert!(days.contains(&(DAY - 7)) && days.contains(&DAY), "{days:?}");
    }
    assert_eq!(logs(&store, all_logs()).len(), 2);
    assert_eq!(db.count("metrics"), 2);
    assert_eq!(
        db.count("batches"),
        2,
        "old dedup records go with their days"
    );
    assert_eq!(store.enforce_retention(now).unwrap(), 0);
    // Many old records go too (deleted in chunks).
    let old = (DAY - 9) * NS_PER_DAY;
    db.client()
        .execute(
            "INSERT INTO batches SELECT 'bulk', g, g, $1, 1 FROM generate_series(1, 45000) g",
            &[&old],
        )
        .unwrap();
    assert_eq!(store.enforce_retention(now).unwrap(), 0);
    assert_eq!(db.count("batches"), 2);

    // Another collector whose list of partitions is stale (it still knows day - 7)
    // commits there after this one dropped it: the partition is made again.
    let other = db.open();
    let late = (DAY - 7) * NS_PER_DAY + 2 * SEC;
    store.enforce_retention(now + NS_PER_DAY).unwrap();
    assert!(!partition_days(&db, "logs").contains(&(DAY - 7)));
    assert_eq!(
        other
            .commit(&batch("a1", 9, late, vec![log(late, "late", None)]))
            .unwrap(),
        CommitOutcome::Committed
    );
    assert!(partition_days(&db, "logs").contains(&(DAY - 7)));

    let forever = PostgresStore::open(&PostgresConfig {
        retention_days: 0,
        ..db.config()
    })
    .unwrap();
    assert_eq!(forever.enforce_retention(i64::MAX / 2).unwrap(), 0);
    assert!(partition_days(&db, "logs").contains(&(DAY - 7)));
}

#[test]
fn agents_inventory_comes_from_host_metrics() {
    let db = TestDb::new("agents");
    let store = db.open();
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
    // An older batch arriving late (another collector's) moves nothing back.
    store
        .commit(&batch(
            "b-agent",
            0,
            T0 + 4 * SEC,
            vec![info(T0 + SEC, "older")],
        ))
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
    // Names are catalogued once, whichever store sees them first.
    let other = db.open();
    other
        .commit(&batch(
            "c",
            1,
            T0,
            vec![
                gauge(T0, "host_info", &[], 1.0),
                gauge(T0, "zeta", &[], 1.0),
            ],
        ))
        .unwrap();
    assert_eq!(
        store.metric_names().unwrap(),
        [
            "host_cpu_usage_percent",
            "host_info",
            "host_memory_usage_percent",
            "zeta"
        ]
    );
}
