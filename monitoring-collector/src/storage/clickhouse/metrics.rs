//! Metric series: raw samples, or averages per step bucket stamped at
//! `from + k * step`, with the SQLite store's rules (NaN samples skipped, series
//! keyed by agent and labels, label filters by containment).
//!
//! Raw samples come sorted by series, time and batch key, so the copies of a batch
//! written twice are neighbours and are folded here. Averages are computed by the
//! server over samples first made unique per batch key (`LIMIT 1 BY`), which is
//! affordable because a metric query is narrowed by name and time, the table's
//! sort key.

use std::collections::BTreeMap;

use super::client::{ClickhouseError, Client};
use super::rowbinary::RowReader;
use super::schema::{METRICS, qualified};
use super::sql::{int, quote};
use crate::storage::{MetricQuery, Series, StorageError};

const NS_PER_MS: i64 = 1_000_000;

/// Runs a metric query.
pub(crate) fn query_metrics(
    client: &Client,
    query: &MetricQuery,
) -> Result<Vec<Series>, StorageError> {
    if let Some(step) = query.step_ns
        && step <= 0
    {
        return Err(StorageError::BadQuery(format!(
            "step must be positive, got {step} ns"
        )));
    }
    if query.to_ns <= query.from_ns {
        return Ok(Vec::new());
    }
    let table = qualified(client.endpoint().database(), METRICS);
    let filter = filter(query);
    let series = match query.step_ns {
        None => raw(client, &table, &filter),
        Some(step) => stepped(client, &table, &filter, query.from_ns, step),
    }
    .map_err(super::db("reading metrics"))?;
    Ok(series
        .into_iter()
        .map(|((agent_id, labels), (kind, points))| Series {
            name: query.name.clone(),
            agent_id,
            labels: serde_json::from_str(&labels).unwrap_or_default(),
            kind,
            points,
        })
        .collect())
}

/// Series by `(agent, labels JSON)`: kind and points.
type SeriesMap = BTreeMap<(String, String), (String, Vec<(i64, f64)>)>;

/// The `WHERE` clause. Label filters test the key and value arrays pairwise, so
/// that a key's value is compared only with that key's value.
fn filter(query: &MetricQuery) -> String {
    let mut f = format!(
        "WHERE name = {} AND timestamp_ns >= {} AND timestamp_ns < {} AND NOT isNaN(value)",
        quote(&query.name),
        int(query.from_ns),
        int(query.to_ns)
    );
    if let Some(agent) = &query.agent {
        f.push_str(&format!(" AND agent_id = {}", quote(agent)));
    }
    for (key, value) in &query.labels {
        f.push_str(&format!(
            " AND arrayExists((k, v) -> k = {} AND v = {}, label_keys, label_values)",
            quote(key),
            quote(value)
        ));
    }
    f
}

fn raw(client: &Client, table: &str, filter: &str) -> Result<SeriesMap, ClickhouseError> {
    let answer = client.query(&format!(
        "SELECT agent_id, labels, kind, timestamp_ns, value, stream_id, sequence, idx \
         FROM {table} {filter} \
         ORDER BY agent_id, labels, timestamp_ns, stream_id, sequence, idx FORMAT RowBinary"
    ))?;
    let mut r = RowReader::new(&answer);
    let mut series = SeriesMap::new();
    let mut last: Option<(String, String, i64, u64, u64, u32)> = None;
    while !r.at_end() {
        let (agent, labels, kind) = (r.string()?, r.string()?, r.string()?);
        let (ts, value) = (r.i64()?, r.f64()?);
        let key = (agent, labels, ts, r.u64()?, r.u64()?, r.u32()?);
        if last.as_ref() == Some(&key) {
            continue;
        }
        let entry = series.entry((key.0.clone(), key.1.clone())).or_default();
        // The kind of the latest sample, as the SQLite store reports.
        entry.0 = kind;
        entry.1.push((ts.div_euclid(NS_PER_MS), value));
        last = Some(key);
    }
    Ok(series)
}

fn stepped(
    client: &Client,
    table: &str,
    filter: &str,
    from: i64,
    step: i64,
) -> Result<SeriesMap, ClickhouseError> {
    // The difference is taken modulo 2^64 and read unsigned, which is exact for
    // every sample at or after `from`, however far apart the two are.
    let answer = client.query(&format!(
        "SELECT agent_id, labels, max(kind), intDiv(toUInt64(timestamp_ns - {from}), {step}) AS bucket, \
                sum(value), count() \
         FROM (SELECT agent_id, labels, kind, timestamp_ns, value, stream_id, sequence, idx \
               FROM {table} {filter} LIMIT 1 BY agent_id, stream_id, sequence, idx) \
         GROUP BY agent_id, labels, bucket ORDER BY agent_id, labels, bucket FORMAT RowBinary",
        from = int(from),
        step = step,
    ))?;
    let mut r = RowReader::new(&answer);
    let mut series = SeriesMap::new();
    while !r.at_end() {
        let (agent, labels, kind) = (r.string()?, r.string()?, r.string()?);
        let bucket = i64::try_from(r.u64()?).unwrap_or(i64::MAX);
        let (sum, count) = (r.f64()?, r.u64()?);
        if count == 0 {
            continue;
        }
        let entry = series.entry((agent, labels)).or_default();
        if kind > entry.0 {
            entry.0 = kind;
        }
        let start = from.saturating_add(bucket.saturating_mul(step));
        entry
            .1
            .push((start.div_euclid(NS_PER_MS), sum / count as f64));
    }
    Ok(series)
}
