//! The commit path of each primary store: batches of 1,000 loghub log lines (and of
//! 1,000 metric samples) committed through `Store::commit`, as a processor worker
//! does, into sqlite (a temp dir), PostgreSQL and ClickHouse (fresh databases on the
//! servers `scripts/services.sh start` runs; MONITORING_TEST_POSTGRES_URL /
//! MONITORING_TEST_CLICKHOUSE_URL override them). Each iteration is a new batch, so
//! the dedup check and the growing tables are part of what is measured; its events
//! are stamped with the time the batch is made.

#![allow(missing_docs, clippy::unwrap_used)]

use std::str::FromStr;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use monitoring_benches::loghub_events;
use monitoring_collector::storage::config::{StorageBackend, StorageConfig};
use monitoring_collector::storage::{IngestBatch, Store};
use monitoring_common::event::Labels;
use monitoring_common::{Event, MetricValue};

const BATCH: usize = 1_000;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// A fresh store of `backend`; the temp dir keeps a sqlite store alive.
fn open(backend: StorageBackend, dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let name = format!("bench_{}", std::process::id());
    let url = match backend {
        StorageBackend::Sqlite | StorageBackend::None => None,
        StorageBackend::Postgres => {
            let server = env_or(
                "MONITORING_TEST_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:55432/postgres",
            );
            let mut admin = postgres::Config::from_str(&server)
                .unwrap()
                .connect(postgres::NoTls)
                .expect("PostgreSQL does not answer: scripts/services.sh start");
            // One statement per call: DROP/CREATE DATABASE refuse a transaction block.
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .unwrap();
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .unwrap();
            let base = server.rsplit_once('/').unwrap().0;
            Some(format!("{base}/{name}"))
        }
        StorageBackend::Clickhouse => {
            let server = env_or("MONITORING_TEST_CLICKHOUSE_URL", "http://127.0.0.1:58123/");
            Some(format!("{}/?database={name}", server.trim_end_matches('/')))
        }
    };
    let config = StorageConfig {
        backend,
        path: dir.path().join("store"),
        url,
        retention_days: 0,
        ..StorageConfig::default()
    };
    monitoring_collector::storage::open(&config).expect("opening the store")
}

fn log_events() -> Vec<Event> {
    loghub_events().into_iter().take(BATCH).collect()
}

fn metric_events() -> Vec<Event> {
    (0..BATCH)
        .map(|i| {
            let labels: Labels = [("cpu".to_string(), (i % 16).to_string())].into();
            Event::metric(
                1_795_996_800_000_000_000 + i as i64,
                "host",
                format!("bench_metric_{}", i % 50),
                labels,
                MetricValue::Gauge { value: i as f64 },
            )
        })
        .collect()
}

fn commits(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit");
    group.sample_size(20);
    group.throughput(Throughput::Elements(BATCH as u64));
    for backend in [
        StorageBackend::Sqlite,
        StorageBackend::Postgres,
        StorageBackend::Clickhouse,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(backend, &dir);
        for (kind, events) in [("logs", log_events()), ("metrics", metric_events())] {
            let mut sequence = 0u64;
            group.bench_function(format!("{}/{kind}", backend.as_str()), |b| {
                b.iter_batched(
                    || {
                        sequence += 1;
                        // Stamped now, as the agent stamps lines when it reads them:
                        // the same stamps in every batch would make each commit
                        // insert all over the time indexes instead of at their end
                        // (14 -> 65 ms per sqlite batch over 150 batches).
                        let now = monitoring_common::event::now_ns();
                        let mut events = events.clone();
                        for e in &mut events {
                            e.timestamp_ns = now;
                        }
                        IngestBatch {
                            agent_id: Arc::from("bench"),
                            stream_id: if kind == "logs" { 1 } else { 2 },
                            sequence,
                            received_ns: now,
                            events,
                        }
                    },
                    |batch| store.commit(&batch).unwrap(),
                    BatchSize::LargeInput,
                );
            });
        }
    }
    group.finish();
}

criterion_group!(benches, commits);
criterion_main!(benches);
