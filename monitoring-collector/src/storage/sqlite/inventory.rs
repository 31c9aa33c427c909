//! `main.db`: the agent inventory and the metric-name catalogue.
//!
//! Both are derived from batches already committed to a day file and are not part
//! of the delivery guarantee: they are updated in a separate, cheaper transaction
//! (no per-commit fsync), and a lost update is repaired by the agent's next batch.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, params};

use super::error::{StorageResult, db_at};
use super::partition::lock;
use super::schema::{DbKind, ReaderPool, open_writer};
use crate::storage::AgentRecord;
use crate::storage::inventory::InventoryUpdate;

/// The connections to `main.db` and the names already in its catalogue.
pub(crate) struct MainDb {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: ReaderPool,
    /// Names known to be in the catalogue, so that most batches skip writing it.
    known_names: Mutex<HashSet<String>>,
}

impl MainDb {
    /// Opens (creating) `main.db` in `dir`.
    pub(crate) fn open(dir: &Path, busy: Duration, pool_size: usize) -> StorageResult<Self> {
        let path = dir.join("main.db");
        let writer = open_writer(&path, DbKind::Main, busy)?;
        let names: HashSet<String> = {
            let mut stmt = writer
                .prepare("SELECT name FROM metric_names")
                .map_err(db_at("reading metric names", &path))?;
            stmt.query_map([], |r| r.get(0))
                .and_then(|rows| rows.collect::<Result<_, _>>())
                .map_err(db_at("reading metric names", &path))?
        };
        Ok(MainDb {
            readers: ReaderPool::new(path.clone(), busy, pool_size),
            writer: Mutex::new(writer),
            known_names: Mutex::new(names),
            path,
        })
    }

    /// Records that `agent` sent a batch at `received_ns`, with what it carried.
    pub(crate) fn apply(
        &self,
        agent: &str,
        received_ns: i64,
        update: &InventoryUpdate<'_>,
    ) -> StorageResult<()> {
        let new_names: Vec<(&str, &str)> = {
            let known = lock(&self.known_names);
            update
                .names
                .iter()
                .filter(|(n, _)| !known.contains(*n))
                .copied()
                .collect()
        };
        let err = |context| db_at(context, &self.path);
        let mut conn = lock(&self.writer);
        let tx = conn.transaction().map_err(err("updating the inventory"))?;
        tx.prepare_cached(
            "INSERT INTO agents (id, last_seen_ns) VALUES (?1, ?2)
             ON CONFLICT (id) DO UPDATE SET last_seen_ns = max(last_seen_ns, excluded.last_seen_ns)",
        )
        .and_then(|mut s| s.execute(params![agent, received_ns]))
        .map_err(err("updating the inventory"))?;
        if let Some((ts, labels)) = update.info {
            let get = |k: &str| labels.get(k).map(String::as_str);
            let os = update.os();
            tx.prepare_cached(
                "UPDATE agents SET hostname = ?2, os = ?3, kernel_version = ?4, arch = ?5, info_ts = ?6
                 WHERE id = ?1 AND (info_ts IS NULL OR info_ts <= ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![agent, get("hostname"), os, get("kernel_version"), get("arch"), ts])
            })
            .map_err(err("updating the inventory"))?;
        }
        if let Some((ts, v)) = update.cpu {
            tx.prepare_cached(
                "UPDATE agents SET cpu_percent = ?2, cpu_ts = ?3
                 WHERE id = ?1 AND (cpu_ts IS NULL OR cpu_ts <= ?3)",
            )
            .and_then(|mut s| s.execute(params![agent, v, ts]))
            .map_err(err("updating the inventory"))?;
        }
        if let Some((ts, v)) = update.memory {
            tx.prepare_cached(
                "UPDATE agents SET memory_percent = ?2, memory_ts = ?3
                 WHERE id = ?1 AND (memory_ts IS NULL OR memory_ts <= ?3)",
            )
            .and_then(|mut s| s.execute(params![agent, v, ts]))
            .map_err(err("updating the inventory"))?;
        }
        if !new_names.is_empty() {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO metric_names (name, kind, first_seen_ns) VALUES (?1, ?2, ?3)",
                )
                .map_err(err("updating metric names"))?;
            for (name, kind) in &new_names {
                stmt.execute(params![name, kind, received_ns])
                    .map_err(err("updating metric names"))?;
            }
        }
        tx.commit().map_err(err("updating the inventory"))?;
        drop(conn);
        lock(&self.known_names).extend(new_names.into_iter().map(|(n, _)| n.to_string()));
        Ok(())
    }

    /// All agents, sorted by id.
    pub(crate) fn agents(&self) -> StorageResult<Vec<AgentRecord>> {
        self.readers.with(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, hostname, os, kernel_version, last_seen_ns, cpu_percent, memory_percent
                     FROM agents ORDER BY id",
                )
                .map_err(db_at("listing agents", &self.path))?;
            let rows = stmt.query_map([], |r| {
                Ok(AgentRecord {
                    id: r.get(0)?,
                    hostname: r.get(1)?,
                    os: r.get(2)?,
                    kernel_version: r.get(3)?,
                    last_seen_ns: r.get(4)?,
                    cpu_percent: r.get(5)?,
                    memory_percent: r.get(6)?,
                })
            });
            rows.and_then(|rows| rows.collect())
                .map_err(db_at("listing agents", &self.path))
        })
    }

    /// Every metric name seen, sorted.
    pub(crate) fn metric_names(&self) -> StorageResult<Vec<String>> {
        self.readers.with(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name FROM metric_names ORDER BY name")
                .map_err(db_at("listing metric names", &self.path))?;
            stmt.query_map([], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(db_at("listing metric names", &self.path))
        })
    }

    /// Writes a row, proving that the database (and its disk) accept writes.
    pub(crate) fn health(&self, now_ns: i64) -> StorageResult<()> {
        let conn = lock(&self.writer);
        conn.prepare_cached("INSERT OR REPLACE INTO health (id, checked_ns) VALUES (1, ?1)")
            .and_then(|mut s| s.execute(params![now_ns]))
            .map_err(db_at("checking that the store can write", &self.path))?;
        Ok(())
    }
}
