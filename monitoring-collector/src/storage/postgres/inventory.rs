//! The agent inventory, the metric-name catalogue and the health row.
//!
//! Unlike the sqlite store (whose inventory lives in another file), both are
//! updated inside the batch's own transaction: one round trip more, and a batch
//! and what it says about its agent commit together. Newer information wins by
//! its timestamp, not by arrival, so collectors committing one agent's batches
//! in any order converge on the same row.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use postgres::Transaction;

use super::pool::Conn;
use super::values::{Args, text};
use crate::storage::AgentRecord;
use crate::storage::inventory::InventoryUpdate;

/// Records that an agent sent a batch, with the host facts it carried. Each
/// fact replaces the stored one only if it is at least as new.
pub(crate) const UPSERT_AGENT: &str = "INSERT INTO agents AS a
    (id, last_seen_ns, hostname, os, kernel_version, arch, info_ts,
     cpu_percent, cpu_ts, memory_percent, memory_ts)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (id) DO UPDATE SET
        last_seen_ns = GREATEST(a.last_seen_ns, excluded.last_seen_ns),
        hostname = CASE WHEN excluded.info_ts IS NOT NULL
            AND (a.info_ts IS NULL OR a.info_ts <= excluded.info_ts)
            THEN excluded.hostname ELSE a.hostname END,
        os = CASE WHEN excluded.info_ts IS NOT NULL
            AND (a.info_ts IS NULL OR a.info_ts <= excluded.info_ts)
            THEN excluded.os ELSE a.os END,
        kernel_version = CASE WHEN excluded.info_ts IS NOT NULL
            AND (a.info_ts IS NULL OR a.info_ts <= excluded.info_ts)
            THEN excluded.kernel_version ELSE a.kernel_version END,
        arch = CASE WHEN excluded.info_ts IS NOT NULL
            AND (a.info_ts IS NULL OR a.info_ts <= excluded.info_ts)
            THEN excluded.arch ELSE a.arch END,
        info_ts = CASE WHEN excluded.info_ts IS NOT NULL
            AND (a.info_ts IS NULL OR a.info_ts <= excluded.info_ts)
            THEN excluded.info_ts ELSE a.info_ts END,
        cpu_percent = CASE WHEN excluded.cpu_ts IS NOT NULL
            AND (a.cpu_ts IS NULL OR a.cpu_ts <= excluded.cpu_ts)
            THEN excluded.cpu_percent ELSE a.cpu_percent END,
        cpu_ts = CASE WHEN excluded.cpu_ts IS NOT NULL
            AND (a.cpu_ts IS NULL OR a.cpu_ts <= excluded.cpu_ts)
            THEN excluded.cpu_ts ELSE a.cpu_ts END,
        memory_percent = CASE WHEN excluded.memory_ts IS NOT NULL
            AND (a.memory_ts IS NULL OR a.memory_ts <= excluded.memory_ts)
            THEN excluded.memory_percent ELSE a.memory_percent END,
        memory_ts = CASE WHEN excluded.memory_ts IS NOT NULL
            AND (a.memory_ts IS NULL OR a.memory_ts <= excluded.memory_ts)
            THEN excluded.memory_ts ELSE a.memory_ts END";

/// Inserts the names given as two arrays, in the order given (sorted by the
/// caller, so that two transactions never wait on each other's names crosswise).
const INSERT_NAMES: &str = "INSERT INTO metric_names (name, kind, first_seen_ns)
    SELECT n, k, $3 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t (n, k, i)
    ORDER BY i
    ON CONFLICT (name) DO NOTHING";

/// The parameters of [`UPSERT_AGENT`] for `agent` and `update`.
pub(crate) fn agent_params(agent: &str, received_ns: i64, update: &InventoryUpdate<'_>) -> Args {
    let label = |key: &str| {
        update
            .info
            .and_then(|(_, labels)| labels.get(key))
            .map(|v| text(v).into_owned())
    };
    let mut args = Args::default();
    args.bind(agent.to_string());
    args.bind(received_ns);
    args.bind(label("hostname"));
    args.bind(update.os().map(|os| text(&os).into_owned()));
    args.bind(label("kernel_version"));
    args.bind(label("arch"));
    args.bind(update.info.map(|(ts, _)| ts));
    args.bind(update.cpu.map(|(_, v)| v));
    args.bind(update.cpu.map(|(ts, _)| ts));
    args.bind(update.memory.map(|(_, v)| v));
    args.bind(update.memory.map(|(ts, _)| ts));
    args
}

/// Adds `names` to the catalogue unless present.
pub(crate) fn insert_names(
    tx: &mut Transaction<'_>,
    names: &[(String, &'static str)],
    received_ns: i64,
) -> Result<(), postgres::Error> {
    let (list, kinds): (Vec<&str>, Vec<&str>) = names.iter().map(|(n, k)| (n.as_str(), *k)).unzip();
    tx.execute(INSERT_NAMES, &[&list, &kinds, &received_ns])?;
    Ok(())
}

/// Names known to be in the catalogue, so that most batches skip writing it.
#[derive(Default)]
pub(crate) struct KnownNames {
    names: Mutex<HashSet<String>>,
}

impl KnownNames {
    /// The names of `update` not known yet, cleaned of NUL and sorted.
    pub(crate) fn unknown(&self, update: &InventoryUpdate<'_>) -> Vec<(String, &'static str)> {
        let known = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        let mut new: Vec<(String, &'static str)> = update
            .names
            .iter()
            .map(|(n, k)| (text(n).into_owned(), *k))
            .filter(|(n, _)| !known.contains(n))
            .collect();
        new.sort();
        new.dedup_by(|a, b| a.0 == b.0);
        new
    }

    /// Notes `names` as catalogued (after their transaction committed).
    pub(crate) fn learn(&self, names: Vec<(String, &'static str)>) {
        let mut known = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        known.extend(names.into_iter().map(|(n, _)| n));
    }
}

/// All agents, sorted by id.
pub(crate) fn agents(conn: &mut Conn) -> Result<Vec<AgentRecord>, postgres::Error> {
    let statement = conn.prepare(
        "SELECT id, hostname, os, kernel_version, last_seen_ns, cpu_percent, memory_percent
         FROM agents ORDER BY id",
    )?;
    conn.client
        .query(&statement, &[])?
        .into_iter()
        .map(|r| {
            Ok(AgentRecord {
                id: r.try_get(0)?,
                hostname: r.try_get(1)?,
                os: r.try_get(2)?,
                kernel_version: r.try_get(3)?,
                last_seen_ns: r.try_get(4)?,
                cpu_percent: r.try_get(5)?,
                memory_percent: r.try_get(6)?,
            })
        })
        .collect()
}

/// Every metric name seen, sorted (bytewise: the column is `COLLATE "C"`).
pub(crate) fn metric_names(conn: &mut Conn) -> Result<Vec<String>, postgres::Error> {
    let statement = conn.prepare("SELECT name FROM metric_names ORDER BY name")?;
    conn.client
        .query(&statement, &[])?
        .into_iter()
        .map(|r| r.try_get(0))
        .collect()
}

/// Writes the health row, proving that the database accepts writes.
pub(crate) fn health(conn: &mut Conn, now_ns: i64) -> Result<(), postgres::Error> {
    let statement = conn.prepare(
        "INSERT INTO health (id, checked_ns) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET checked_ns = excluded.checked_ns",
    )?;
    conn.client.execute(&statement, &[&now_ns])?;
    Ok(())
}
