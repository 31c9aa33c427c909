//! What bounds a sqlite log commit: batches of 1,000 loghub lines (the agent's
//! events, every sample in turn) committed through `Store::commit` as in the
//! `stores` bench, with the parts of the cost taken away one at a time: on disk
//! (/tmp) and on tmpfs (/dev/shm, where the per-commit fsync costs next to
//! nothing), each with the schema as shipped, without the FTS5 index, and without
//! the FTS5 index and the four secondary indexes of `logs`.
//!
//! The store has no setting to leave those indexes out (they are what log search
//! needs), so the bench drops them from the day file through a second connection
//! after a first commit has created it; the store's own connection then prepares its
//! statements against the new schema. A measurement device only.

#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use monitoring_collector::storage::IngestBatch;
use monitoring_collector::storage::config::{StorageBackend, StorageConfig};
use monitoring_common::Event;
use monitoring_common::event::now_ns;

#[derive(Clone, Copy)]
enum Schema {
    AsShipped,
    NoFts,
    NoFtsNoIndexes,
}

impl Schema {
    fn name(self) -> &'static str {
        match self {
            Schema::AsShipped => "fts5_and_indexes",
            Schema::NoFts => "no_fts5",
            Schema::NoFtsNoIndexes => "no_fts5_no_indexes",
        }
    }

    fn strip(self, day_file: &Path) {
        let sql = match self {
            Schema::AsShipped => return,
            Schema::NoFts => NO_FTS.to_string(),
            Schema::NoFtsNoIndexes => format!(
                "{NO_FTS}
                 DROP INDEX logs_time; DROP INDEX logs_agent;
                 DROP INDEX logs_source; DROP INDEX logs_severity;"
            ),
        };
        let conn = rusqlite::Connection::open(day_file).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        conn.execute_batch(&sql).unwrap();
    }
}

/// The FTS5 table replaced by a view (with the hidden columns its `merge` command
/// names) that discards what the write path indexes and merges, so
/// the store's statements still prepare.
const NO_FTS: &str = "DROP TABLE logs_fts;
    CREATE VIEW logs_fts (rowid, message, logs_fts, rank) AS SELECT 0, '', '', 0 WHERE 0;
    CREATE TRIGGER logs_fts_discard INSTEAD OF INSERT ON logs_fts BEGIN SELECT 1; END;";

fn batch(sequence: u64, events: Vec<Event>) -> IngestBatch {
    IngestBatch {
        agent_id: Arc::from("bench"),
        stream_id: 1,
        sequence,
        received_ns: now_ns(),
        events,
    }
}

fn split(c: &mut Criterion) {
    let batches: Vec<Vec<Event>> = support::corpus_batches().into_iter().map(|b| b.1).collect();
    let mut group = c.benchmark_group("sqlite_log_commit");
    group.sample_size(20);
    group.throughput(Throughput::Elements(support::BATCH as u64));
    for (medium, parent) in [("disk", std::env::temp_dir()), ("tmpfs", "/dev/shm".into())] {
        assert!(
            parent.is_dir(),
            "{}: missing; the tmpfs variant needs /dev/shm",
            parent.display()
        );
        for schema in [Schema::AsShipped, Schema::NoFts, Schema::NoFtsNoIndexes] {
            let dir = tempfile::tempdir_in(&parent).unwrap();
            let config = StorageConfig {
                backend: StorageBackend::Sqlite,
                path: dir.path().join("store"),
                retention_days: 0,
                ..StorageConfig::default()
            };
            let store = monitoring_collector::storage::open(&config).unwrap();
            // The first commit creates today's day file; then strip it.
            store.commit(&batch(0, batches[0].clone())).unwrap();
            let day_file = std::fs::read_dir(&config.path)
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("events-"))
                        && p.extension().is_some_and(|x| x == "db")
                })
                .unwrap();
            schema.strip(&day_file);
            let mut sequence = 0u64;
            group.bench_function(format!("{medium}/{}", schema.name()), |b| {
                b.iter_batched(
                    || {
                        sequence += 1;
                        batch(sequence, batches[sequence as usize % batches.len()].clone())
                    },
                    |batch| store.commit(&batch).unwrap(),
                    BatchSize::LargeInput,
                );
            });
        }
    }
    group.finish();
}

criterion_group!(benches, split);
criterion_main!(benches);
