//! Commits, deduplication, partitions, retention and the agent inventory.

use std::collections::BTreeMap;

use super::*;
use crate::storage::CommitOutcome;
use crate::storage::conformance::writes;
use crate::storage::sqlite::partition::day_of;

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
    writes::round_trip(&store);
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
        ("::1", 65_535, 255, i64::MAX, 255)
    );
    let flows = flows(&store, 10);
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
        (u64::MAX - 3, u64::MAX, 4)
    );
    let detail: serde_json::Value = client
        .query_one("SELECT detail FROM metrics WHERE name = 'req_seconds'", &[])
        .unwrap()
        .get(0);
    assert_eq!(detail["count"], 2);
    assert_eq!(db.count("health"), 1);

    // PostgreSQL text cannot hold NUL: it is stored as U+FFFD, everywhere.
    let mut nul = log(T0 + 2 * SEC, "nul\0inside", None);
    nul.labels.insert("k\0".into(), "v\0".into());
    store
        .commit(&batch("a1", 1, T0 + 2 * SEC, vec![nul]))
        .unwrap();
    let found = logs(
        &store,
        LogQuery {
            order: crate::storage::Order::Asc,
            ..all_logs()
        },
    );
    assert_eq!(found.len(), 2);
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
}

#[test]
fn duplicate_batches_are_stored_once_across_restarts_and_days() {
    let db = TestDb::new("dedup");
    writes::duplicates_across_restarts_and_days(&|| Box::new(db.open()) as Box<dyn Store>, &|| {
        assert_eq!(db.count("logs"), 1, "a refused resend writes nothing")
    });
    assert_eq!(db.count(&super::super::partition::name("logs", DAY)), 3);
    assert_eq!(db.count(&super::super::partition::name("logs", DAY + 1)), 1);
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
    writes::retention_drops_whole_old_days(&store, &|| {
        for table in ["logs", "metrics", "flows"] {
            let days = partition_days(&db, table);
            assert!(
                !days.contains(&(DAY - 10)) && !days.contains(&(DAY - 8)),
                "{days:?}"
            );
            assert!(days.contains(&(DAY - 7)) && days.contains(&DAY), "{days:?}");
        }
        assert_eq!(db.count("metrics"), 2);
        assert_eq!(
            db.count("batches"),
            2,
            "old dedup records go with their days"
        );
    });
    let now = T0 + NS_PER_DAY / 2;
    // Many old records go too (deleted in chunks).
    let old = (DAY - 9) * NS_PER_DAY;
    db.client()
        .execute(
            "INSERT INTO batches SELECT 'bulk', g, g, $1, 1 FROM generate_series(1, 45000) g",
            &[&old],
        )
        .unwrap();
    assert_eq!(store.enforce_retention(now).unwrap(), 0);
    assert_eq!(db.count("batches"), 3, "the two kept and the one since");

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
    writes::inventory_from_host_metrics(&store, &db.open());
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
