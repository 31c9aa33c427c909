//! End to end: one agent with two collectors in `[collector] endpoints`, each with its
//! own SQLite store. The collector the agent is connected to is killed with SIGKILL
//! mid-stream, then restarted, then the other one is killed: the agent moves each
//! time, resends what was not acknowledged, and every line arrives somewhere. With
//! separate stores a batch committed by the killed collector but not acknowledged is
//! stored again by the other one, so duplicates are printed, not forbidden; the same
//! scenario on one shared store (`Stores::Shared`) must have none.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use monitoring_e2e::{Backend, Collector, Stores, TestStore, run_failover};

#[test]
fn killing_the_connected_collector_fails_over_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let start = |name: &str| {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        Collector::start(&d).unwrap()
    };
    let mut collectors = [start("collector-a"), start("collector-b")];
    let o = run_failover("failover-sqlite", dir, &mut collectors, Stores::Separate).unwrap();
    assert!(
        o.tally.missing.is_empty(),
        "lost {} of {} lines, first {:?}; collector logs:\n{}\n---\n{}",
        o.tally.missing.len(),
        o.tally.expected,
        &o.tally.missing[..o.tally.missing.len().min(10)],
        collectors[0].log(),
        collectors[1].log(),
    );
    assert!(
        o.per_collector.iter().all(|&n| n > 0),
        "both collectors stored lines: {:?}",
        o.per_collector
    );
    assert_eq!(o.failovers.len(), 2);
}

/// The same scenario with both collectors on one database: every line arrives, and
/// the batches resent after each failover are recognised, so none is stored twice.
fn failover_on_a_shared_store(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = TestStore::create(backend, dir).unwrap();
    let start = |name: &str| {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        Collector::start_opts(&d, &store.collector_options()).unwrap()
    };
    let mut collectors = [start("collector-a"), start("collector-b")];
    let name = format!("failover-{}", backend.name());
    let o = run_failover(&name, dir, &mut collectors, Stores::Shared).unwrap();
    assert!(
        o.tally.missing.is_empty(),
        "{}: lost {} of {} lines, first {:?}",
        backend.name(),
        o.tally.missing.len(),
        o.tally.expected,
        &o.tally.missing[..o.tally.missing.len().min(10)],
    );
    assert_eq!(
        o.tally.duplicates,
        0,
        "{}: a resent batch stored twice",
        backend.name()
    );
    assert_eq!(o.failovers.len(), 2);
}

#[test]
fn failover_between_collectors_on_one_postgres_stores_every_line_once() {
    failover_on_a_shared_store(Backend::Postgres);
}

#[test]
fn failover_between_collectors_on_one_clickhouse_stores_every_line_once() {
    failover_on_a_shared_store(Backend::Clickhouse);
}
