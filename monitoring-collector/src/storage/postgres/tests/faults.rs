//! Several collectors on one database, lost connections, locks and a server that
//! is not there.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::*;
use crate::storage::{CommitOutcome, StorageError};

#[test]
fn two_stores_committing_the_same_batches_at_once_store_each_once() {
    let db = TestDb::new("two_stores");
    let stores = [Arc::new(db.open()), Arc::new(db.open())];
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(i, store)| {
            let store = Arc::clone(store);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut committed = 0;
                for seq in 0..60_u64 {
                    // Half of the resends arrive after midnight, in another day's
                    // partitions: still one batch.
                    let received = T0 + (i as i64) * ((seq % 2) as i64) * NS_PER_DAY;
                    let events = (0..20).map(|n| log(T0 + n, "x", None)).collect();
                    let b = batch("a1", seq, received, events);
                    barrier.wait();
                    if store.commit(&b).unwrap() == CommitOutcome::Committed {
                        committed += 1;
                    }
                }
                committed
            })
        })
        .collect();
    let committed: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    println!("committed per store: {committed:?}");
    assert_eq!(committed.iter().sum::<usize>(), 60, "{committed:?}");
    assert_eq!(db.count("logs"), 60 * 20);
    assert_eq!(db.count("batches"), 60);
    assert_eq!(stores[0].agents().unwrap().len(), 1);
}

#[test]
fn two_opens_at_once_create_the_schema_once() {
    let db = TestDb::new("two_opens");
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let config = db.config();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                PostgresStore::open(&config)
            })
        })
        .collect();
    let stores: Vec<PostgresStore> = handles
        .into_iter()
        .map(|h| h.join().unwrap().expect("every concurrent open succeeds"))
        .collect();
    for (i, store) in stores.iter().enumerate() {
        let b = batch("a1", i as u64, T0, vec![log(T0, "x", None)]);
        assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Committed);
    }
    assert_eq!(db.count("logs"), 4);
}

/// Terminates every backend of the test database except the caller's.
fn terminate_all(db: &TestDb) -> i64 {
    let mut admin = db.client();
    admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn terminated_connections_are_replaced_without_failing_a_call() {
    let db = TestDb::new("terminate");
    let store = db.open();
    // Connections in the pool (usually more than one, from concurrent calls),
    // all idle when they are killed.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    store.agents().unwrap();
                }
            });
        }
    });
    let killed = terminate_all(&db);
    println!("terminated {killed} backends");
    assert!(killed >= 1, "the pool had connections to kill");
    let b = batch("a1", 1, T0, vec![log(T0, "after", None)]);
    assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Committed);
    terminate_all(&db);
    assert_eq!(logs(&store, all_logs()).len(), 1);
    terminate_all(&db);
    store.health().unwrap();
}

#[test]
fn commits_during_repeated_terminations_lose_and_duplicate_nothing() {
    let db = TestDb::new("terminate_load");
    let store = Arc::new(db.open());
    let writers: Vec<_> = (0..3_u64)
        .map(|w| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut retries = 0;
                for seq in 0..40_u64 {
                    let events = (0..50).map(|i| log(T0 + i, "load", None)).collect();
                    let b = batch(&format!("agent-{w}"), seq, T0, events);
                    // As an agent does on retry-later: send the same batch again.
                    let deadline = Instant::now() + Duration::from_secs(30);
                    loop {
                        match store.commit(&b) {
                            Ok(_) => break,
                            Err(e) => {
                                retries += 1;
                                assert!(Instant::now() < deadline, "no recovery: {e}");
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    }
                }
                retries
            })
        })
        .collect();
    let mut kills = 0;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(150));
        kills += terminate_all(&db);
    }
    let retries: Vec<usize> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    let stored = db.count("logs");
    let expected = 3 * 40 * 50;
    println!(
        "backends terminated: {kills}; commit retries per writer: {retries:?}; \
         lost: {}; duplicates: {}",
        (expected - stored).max(0),
        (stored - expected).max(0)
    );
    assert_eq!(stored, expected, "every batch once");
    assert_eq!(db.count("batches"), 3 * 40);
}

#[test]
fn a_held_lock_fails_a_commit_after_the_timeout_instead_of_hanging() {
    let db = TestDb::new("lock_timeout");
    let store = PostgresStore::open(&PostgresConfig {
        timeout_ms: 500,
        ..db.config()
    })
    .unwrap();
    let mut holder = db.client();
    let mut tx = holder.transaction().unwrap();
    tx.batch_execute("LOCK TABLE batches IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let started = Instant::now();
    let b = batch("a1", 1, T0, vec![log(T0, "x", None)]);
    let err = store.commit(&b).unwrap_err();
    let waited = started.elapsed();
    println!("commit failed after {waited:?}: {err}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert!(matches!(err, StorageError::Database { .. }));
    assert!(err.to_string().contains("committing a batch"), "{err}");
    tx.rollback().unwrap();
    assert_eq!(store.commit(&b).unwrap(), CommitOutcome::Committed);
}

#[test]
fn an_absent_server_fails_fast_and_the_error_hides_the_password() {
    // A port nothing listens on: bind one, then close it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let config = PostgresConfig {
        url: format!("postgres://collector:s3cret-pw@127.0.0.1:{port}/monitoring"),
        tls_ca: None,
        retention_days: 7,
        pool_size: 2,
        timeout_ms: 2_000,
        text_index: true,
    };
    let started = Instant::now();
    let err = PostgresStore::open(&config).unwrap_err();
    let text = format!("{err} {err:?}");
    println!("{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!text.contains("s3cret-pw"), "{text}");
    assert!(
        text.contains(&format!("postgres://collector@127.0.0.1:{port}/monitoring")),
        "{text}"
    );
    let bad = PostgresConfig {
        url: "postgres://collector:s3cret-pw@host:port/db".into(),
        ..config
    };
    let text = PostgresStore::open(&bad).unwrap_err().to_string();
    assert!(
        !text.contains("s3cret-pw") && text.contains("storage.url"),
        "{text}"
    );
}

/// The store is meant for plain threads and `spawn_blocking`, but a call from an
/// async task (the processor seeds its enricher from the inventory on the runtime's
/// thread) must block, not panic in the client's own runtime.
#[test]
fn calls_from_async_contexts_block_instead_of_panicking() {
    let db = TestDb::new("async_callers");
    let store = Arc::new(db.open());
    let b = batch("a1", 1, T0, vec![log(T0, "x", None)]);
    for multi_thread in [false, true] {
        let runtime = if multi_thread {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
        .unwrap();
        let store = Arc::clone(&store);
        let b = b.clone();
        runtime.block_on(async move {
            // On the runtime's own thread, in a task, and in spawn_blocking.
            store.commit(&b).unwrap();
            let s = Arc::clone(&store);
            tokio::spawn(async move { s.agents().unwrap() })
                .await
                .unwrap();
            let s = Arc::clone(&store);
            tokio::task::spawn_blocking(move || s.health().unwrap())
                .await
                .unwrap();
        });
    }
    assert_eq!(logs(store.as_ref(), all_logs()).len(), 1);
}
