//! Table layouts of the day files and of `main.db`, and how connections to them are
//! opened (pragmas).
//!
//! A day file holds everything received on one UTC day: the events, the full-text
//! index over log messages, the record of which batches it holds (so that a batch
//! and its dedup record commit in one transaction) and the time bounds of its events
//! (so that queries skip files that cannot match). `main.db` holds what outlives a
//! day: the agent inventory and the metric-name catalogue.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::error::{StorageResult, db_at};
use super::partition::lock;

/// Schema of one day file. Idempotent, so it doubles as the upgrade path.
const PARTITION_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS batches (
    agent_id     TEXT    NOT NULL,
    stream_id    INTEGER NOT NULL,
    sequence     INTEGER NOT NULL,
    received_ns  INTEGER NOT NULL,
    event_count  INTEGER NOT NULL,
    PRIMARY KEY (agent_id, stream_id, sequence)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS meta (
    kind    TEXT    PRIMARY KEY,
    min_ts  INTEGER NOT NULL,
    max_ts  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS logs (
    id            INTEGER PRIMARY KEY,
    timestamp_ns  INTEGER NOT NULL,
    agent_id      TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    severity      INTEGER,
    message       TEXT    NOT NULL,
    labels        TEXT    NOT NULL,
    fields        TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_time     ON logs (timestamp_ns);
CREATE INDEX IF NOT EXISTS logs_agent    ON logs (agent_id, timestamp_ns);
CREATE INDEX IF NOT EXISTS logs_source   ON logs (source, timestamp_ns);
CREATE INDEX IF NOT EXISTS logs_severity ON logs (severity, timestamp_ns);

CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts USING fts5 (
    message, content = 'logs', content_rowid = 'id'
);
-- The write path indexes each batch's messages with one INSERT ... SELECT. Files
-- made before that had a per-row trigger, which made FTS5 flush a segment for every
-- row (42 µs per line instead of 9): it goes on open.
DROP TRIGGER IF EXISTS logs_fts_insert;
-- FTS5's own automerge works in bursts (64 leaf pages times the number of levels,
-- every 64 leaves written), which made one commit in fifty take 15-25 ms. The write
-- path merges a budget in step with what each batch adds instead (`write::merge_budget`).
INSERT INTO logs_fts (logs_fts, rank) VALUES ('automerge', 0);

CREATE TABLE IF NOT EXISTS metrics (
    id            INTEGER PRIMARY KEY,
    timestamp_ns  INTEGER NOT NULL,
    agent_id      TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    labels        TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    value         REAL,
    detail        TEXT
);
CREATE INDEX IF NOT EXISTS metrics_name_time ON metrics (name, timestamp_ns);

CREATE TABLE IF NOT EXISTS flows (
    id            INTEGER PRIMARY KEY,
    timestamp_ns  INTEGER NOT NULL,
    end_ns        INTEGER NOT NULL,
    agent_id      TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    labels        TEXT    NOT NULL,
    src_addr      TEXT    NOT NULL,
    dst_addr      TEXT    NOT NULL,
    src_port      INTEGER NOT NULL,
    dst_port      INTEGER NOT NULL,
    protocol      INTEGER NOT NULL,
    bytes_out     INTEGER NOT NULL,
    bytes_in      INTEGER NOT NULL,
    packets_out   INTEGER NOT NULL,
    packets_in    INTEGER NOT NULL,
    tcp_flags     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS flows_time ON flows (timestamp_ns);
"#;

/// Schema of `main.db`.
const MAIN_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS agents (
    id              TEXT    PRIMARY KEY,
    last_seen_ns    INTEGER NOT NULL,
    hostname        TEXT,
    os              TEXT,
    kernel_version  TEXT,
    arch            TEXT,
    info_ts         INTEGER,
    cpu_percent     REAL,
    cpu_ts          INTEGER,
    memory_percent  REAL,
    memory_ts       INTEGER
);

CREATE TABLE IF NOT EXISTS metric_names (
    name           TEXT    PRIMARY KEY,
    kind           TEXT    NOT NULL,
    first_seen_ns  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS health (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    checked_ns  INTEGER NOT NULL
);
"#;

/// Which file a connection is for; decides durability and schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DbKind {
    /// A day file: events are acknowledged on commit, so every commit is fsynced.
    Partition,
    /// `main.db`: inventory and catalogue, rebuilt by later batches if a crash
    /// loses the last few updates, so it skips the per-commit fsync.
    Main,
}

/// Opens a connection that may write, applying the pragmas and the schema.
pub(crate) fn open_writer(path: &Path, kind: DbKind, busy: Duration) -> StorageResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(db_at("opening database", path))?;
    conn.busy_timeout(busy)
        .map_err(db_at("setting busy timeout", path))?;
    let (synchronous, schema) = match kind {
        DbKind::Partition => ("FULL", PARTITION_SCHEMA),
        DbKind::Main => ("NORMAL", MAIN_SCHEMA),
    };
    // WAL lets queries read while a batch commits; the size limit keeps the WAL
    // file from staying large after a burst.
    let pragmas = format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = {synchronous};
         PRAGMA journal_size_limit = 67108864;
         PRAGMA foreign_keys = OFF;"
    );
    conn.execute_batch(&pragmas)
        .map_err(db_at("setting pragmas", path))?;
    conn.execute_batch(schema)
        .map_err(db_at("creating schema", path))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Opens a connection for queries. Opened read-write with `query_only` rather than
/// read-only, because a read-only connection cannot open a WAL file whose `-shm`
/// is missing (after the writer closed cleanly).
pub(crate) fn open_reader(path: &Path, busy: Duration) -> StorageResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(db_at("opening database", path))?;
    conn.busy_timeout(busy)
        .map_err(db_at("setting busy timeout", path))?;
    conn.execute_batch("PRAGMA query_only = ON;")
        .map_err(db_at("setting pragmas", path))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// A few idle read connections to one file, opened on demand. A connection is
/// taken out of the pool for the duration of a query, so queries run in parallel.
pub(crate) struct ReaderPool {
    path: PathBuf,
    busy: Duration,
    size: usize,
    idle: Mutex<Vec<Connection>>,
    closed: AtomicBool,
}

impl ReaderPool {
    /// An empty pool keeping at most `size` idle connections to `path`.
    pub(crate) fn new(path: PathBuf, busy: Duration, size: usize) -> Self {
        ReaderPool {
            path,
            busy,
            size,
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// Runs `f` with a connection from the pool, or a new one.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> StorageResult<T>,
    ) -> StorageResult<T> {
        let pooled = lock(&self.idle).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path, self.busy)?,
        };
        let result = f(&conn);
        if !self.closed.load(Ordering::Acquire) {
            let mut idle = lock(&self.idle);
            if idle.len() < self.size {
                idle.push(conn);
            }
        }
        result
    }

    /// Closes the idle connections and keeps no more (the file is going away).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        lock(&self.idle).clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bundled_sqlite_has_fts5_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let conn = open_writer(&path, DbKind::Partition, Duration::from_secs(1)).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
        // Schema application is idempotent (it runs on every open).
        drop(conn);
        let conn = open_writer(&path, DbKind::Partition, Duration::from_secs(1)).unwrap();
        // A file made with the per-row indexing trigger loses it on open.
        conn.execute_batch(
            "CREATE TRIGGER logs_fts_insert AFTER INSERT ON logs BEGIN
                 INSERT INTO logs_fts (rowid, message) VALUES (new.id, new.message);
             END;",
        )
        .unwrap();
        drop(conn);
        let conn = open_writer(&path, DbKind::Partition, Duration::from_secs(1)).unwrap();
        let triggers: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(triggers, 0);
        conn.execute_batch(
            "INSERT INTO logs (timestamp_ns, agent_id, source, message, labels, fields)
             VALUES (1, 'a', 's', 'hello world', '{}', '{}');
             INSERT INTO logs_fts (rowid, message) SELECT id, message FROM logs;",
        )
        .unwrap();
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM logs_fts WHERE logs_fts MATCH '\"world\"'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1);
        let reader = open_reader(&path, Duration::from_secs(1)).unwrap();
        assert!(
            reader.execute("DELETE FROM logs", []).is_err(),
            "query_only"
        );
    }
}
