//! Commits, deduplication, retention and the agent inventory.

use std::sync::Arc;

use super::*;
use crate::storage::CommitOutcome;
use crate::storage::conformance::{store_tests, writes};

#[test]
fn round_trip_of_logs_metrics_and_flows() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    writes::round_trip(&store);
    // Counters past i64::MAX are stored at i64::MAX.
    let conn = rusqlite::Connection::open(dir.path().join(file_name(DAY))).unwrap();
    let (dst, port, bytes): (String, i64, i64) = conn
        .query_row("SELECT dst_addr, dst_port, bytes_out FROM flows", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((dst.as_str(), port, bytes), ("::1", 443, i64::MAX));
    let flows = flows(&store, 10);
    assert_eq!(flows[0].bytes_out, i64::MAX as u64);
}

#[test]
fn duplicate_batches_are_stored_once_across_restarts_and_days() {
    let dir = tempfile::tempdir().unwrap();
    let next_day = dir.path().join(file_name(DAY + 1));
    writes::duplicates_across_restarts_and_days(
        &|| Box::new(open(dir.path())) as Box<dyn Store>,
        // A duplicate resent after midnight makes no file for its day.
        &|| assert!(!next_day.exists()),
    );
    assert_eq!(count_rows(dir.path(), DAY, "logs"), 3);
    assert_eq!(count_rows(dir.path(), DAY + 1, "logs"), 1);
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
    assert_eq!(logs(store.as_ref(), all_logs()).len(), 1);
}

#[test]
fn retention_drops_whole_old_day_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    writes::retention_drops_whole_old_days(&store, &|| {
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
    });
    // Also after a restart.
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

store_tests! {
    with_fresh;
    agents_inventory_comes_from_host_metrics: |s| writes::inventory_from_host_metrics(s, s),
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
    assert_eq!(logs(store.as_ref(), all_logs()).len(), 4 * 25 * 20);
}

#[test]
fn the_write_path_keeps_the_full_text_index_merged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // One segment per batch. Without the write path's merging (automerge is off)
    // they pile up until FTS5's crisis merge (16 on a level) merges them inside one
    // slow commit: 5 segments are left at the end, against 2 with it.
    for seq in 0..200 {
        let message = format!("request {seq} served");
        store
            .commit(&batch(
                "a1",
                seq,
                T0,
                vec![log(T0 + seq as i64, &message, None)],
            ))
            .unwrap();
    }
    let conn = rusqlite::Connection::open(dir.path().join(file_name(DAY))).unwrap();
    let automerge: i64 = conn
        .query_row(
            "SELECT v FROM logs_fts_config WHERE k = 'automerge'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(automerge, 0);
    let segments: i64 = conn
        .query_row("SELECT count(DISTINCT segid) FROM logs_fts_idx", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(segments <= 3, "{segments} segments");
    for seq in [0, 199] {
        let found = logs(
            &store,
            LogQuery {
                text: Some(format!("request {seq}")),
                ..all_logs()
            },
        );
        assert_eq!(found.len(), 1, "request {seq}");
    }
}
