//! The agent inventory and the metric-name catalogue, shared by every collector
//! writing to the database.
//!
//! `agents` holds facts with a time: `info` (host identity, as JSON), `cpu`,
//! `memory` and `seen`. Reads take the latest of each kind per agent (`argMax`),
//! which gives the SQLite store's answer whatever order collectors wrote them in.
//! The last time an agent was seen is the latest of its `seen` facts and of its
//! batch records: every committed batch is recorded in `batches` anyway, so a
//! `seen` fact is written only with other facts, for a duplicate (which has no
//! record), and at least hourly per agent (so that an agent whose batches have all
//! passed retention keeps its last-seen time, within that hour). That saves one
//! insert, and one part for ClickHouse to merge, per batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use super::client::{ClickhouseError, Client};
use super::rowbinary::{RowReader, RowWriter};
use super::schema::{AGENTS, BATCHES, METRIC_NAMES, qualified};
use crate::storage::AgentRecord;
use crate::storage::inventory::InventoryUpdate;

/// How often at most an agent's `seen` fact is written when nothing else is.
const SEEN_INTERVAL_NS: i64 = 3_600 * 1_000_000_000;

const AGENT_COLUMNS: &str = "agent_id, fact, ts, received_ns, version, text, value";

/// The host identity of an `info` fact.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Info {
    hostname: Option<String>,
    os: Option<String>,
    kernel_version: Option<String>,
    arch: Option<String>,
}

/// What this process has written already, so that most batches write nothing here.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    known_names: Mutex<HashSet<String>>,
    /// Per agent, the receipt time of the last `seen` fact written.
    seen_written: Mutex<HashMap<String, i64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `ts` as an unsigned number of the same order (ReplacingMergeTree's version).
fn version(ts: i64) -> u64 {
    u64::from_ne_bytes(ts.to_ne_bytes()) ^ (1 << 63)
}

impl Inventory {
    /// Records what a batch of `agent` received at `received_ns` changes. `recorded`
    /// says whether the batch has a record in `batches` (it was committed now).
    pub(crate) fn apply(
        &self,
        client: &Client,
        agent: &str,
        received_ns: i64,
        recorded: bool,
        update: &InventoryUpdate<'_>,
    ) -> Result<(), ClickhouseError> {
        let database = client.endpoint().database();
        let mut rows = RowWriter::default();
        let fact = |rows: &mut RowWriter, name: &str, ts: i64, text: &str, value: f64| {
            rows.str(agent);
            rows.str(name);
            rows.i64(ts);
            rows.i64(received_ns);
            rows.u64(version(ts));
            rows.str(text);
            rows.f64(value);
            rows.end_row();
        };
        if let Some((ts, labels)) = update.info {
            let get = |k: &str| labels.get(k).cloned();
            let info = Info {
                hostname: get("hostname"),
                os: update.os(),
                kernel_version: get("kernel_version"),
                arch: get("arch"),
            };
            let text = serde_json::to_string(&info).unwrap_or_default();
            fact(&mut rows, "info", ts, &text, 0.0);
        }
        if let Some((ts, v)) = update.cpu {
            fact(&mut rows, "cpu", ts, "", v);
        }
        if let Some((ts, v)) = update.memory {
            fact(&mut rows, "memory", ts, "", v);
        }
        let seen_due = {
            let written = lock(&self.seen_written);
            written
                .get(agent)
                .is_none_or(|&at| received_ns.saturating_sub(at) >= SEEN_INTERVAL_NS)
        };
        let write_seen = !recorded || seen_due || rows.rows() > 0;
        if write_seen {
            fact(&mut rows, "seen", received_ns, "", 0.0);
        }
        if rows.rows() > 0 {
            client.insert(&qualified(database, AGENTS), AGENT_COLUMNS, rows.bytes())?;
            if write_seen {
                let mut written = lock(&self.seen_written);
                let at = written.entry(agent.to_string()).or_insert(received_ns);
                *at = (*at).max(received_ns);
            }
        }
        self.add_names(client, received_ns, update)
    }

    /// Adds the names of `update` not yet known to this process to the catalogue.
    fn add_names(
        &self,
        client: &Client,
        received_ns: i64,
        update: &InventoryUpdate<'_>,
    ) -> Result<(), ClickhouseError> {
        let new_names: Vec<(&str, &str)> = {
            let known = lock(&self.known_names);
            update
                .names
                .iter()
                .filter(|(n, _)| !known.contains(*n))
                .copied()
                .collect()
        };
        if new_names.is_empty() {
            return Ok(());
        }
        let mut rows = RowWriter::default();
        for (name, kind) in &new_names {
            rows.str(name);
            rows.str(kind);
            rows.i64(received_ns);
            rows.end_row();
        }
        let table = qualified(client.endpoint().database(), METRIC_NAMES);
        client.insert(&table, "name, kind, first_seen_ns", rows.bytes())?;
        lock(&self.known_names).extend(new_names.into_iter().map(|(n, _)| n.to_string()));
        Ok(())
    }
}

/// Every agent, sorted by id.
pub(crate) fn agents(client: &Client) -> Result<Vec<AgentRecord>, ClickhouseError> {
    let database = client.endpoint().database();
    let answer = client.query(&format!(
        "SELECT agent_id, fact, max(ts), argMax(text, (ts, received_ns)), \
                argMax(value, (ts, received_ns)) \
         FROM {} GROUP BY agent_id, fact \
         UNION ALL \
         SELECT agent_id, 'seen', max(received_ns), '', toFloat64(0) FROM {} GROUP BY agent_id \
         FORMAT RowBinary",
        qualified(database, AGENTS),
        qualified(database, BATCHES),
    ))?;
    let mut r = RowReader::new(&answer);
    let mut agents: BTreeMap<String, AgentRecord> = BTreeMap::new();
    while !r.at_end() {
        let (id, fact, ts, text, value) =
            (r.string()?, r.string()?, r.i64()?, r.string()?, r.f64()?);
        let agent = agents.entry(id.clone()).or_insert_with(|| AgentRecord {
            id,
            hostname: None,
            os: None,
            kernel_version: None,
            last_seen_ns: i64::MIN,
            cpu_percent: None,
            memory_percent: None,
        });
        match fact.as_str() {
            "seen" => agent.last_seen_ns = agent.last_seen_ns.max(ts),
            "info" => {
                let info: Info = serde_json::from_str(&text).unwrap_or_default();
                agent.hostname = info.hostname;
                agent.os = info.os;
                agent.kernel_version = info.kernel_version;
            }
            "cpu" => agent.cpu_percent = Some(value),
            "memory" => agent.memory_percent = Some(value),
            _ => {}
        }
    }
    Ok(agents.into_values().collect())
}

/// Every metric name, sorted.
pub(crate) fn metric_names(client: &Client) -> Result<Vec<String>, ClickhouseError> {
    let answer = client.query(&format!(
        "SELECT name FROM {} GROUP BY name ORDER BY name FORMAT RowBinary",
        qualified(client.endpoint().database(), METRIC_NAMES)
    ))?;
    let mut r = RowReader::new(&answer);
    let mut names = Vec::new();
    while !r.at_end() {
        names.push(r.string()?);
    }
    Ok(names)
}
