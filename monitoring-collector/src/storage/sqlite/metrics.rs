//! Metric series across day files: raw samples, or averages per step bucket.
//!
//! Each file returns partial sums and counts per `(agent, labels, bucket)`; they are
//! combined here, because one bucket's samples may be spread over several files
//! (late events, a bucket across midnight).

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::types::Value;

use super::error::{StorageResult, db_at};
use super::partition::{Kind, Partition};
use crate::storage::{MetricQuery, Series, StorageError};

const NS_PER_MS: i64 = 1_000_000;

/// One series being assembled.
#[derive(Default)]
struct Acc {
    kind: String,
    /// Raw samples: `(ts ns, value)`.
    raw: Vec<(i64, f64)>,
    /// Bucket index → (sum, count).
    buckets: BTreeMap<i64, (f64, i64)>,
}

/// Runs a metric query over `partitions`.
pub(crate) fn query_metrics(
    partitions: Vec<Arc<Partition>>,
    query: &MetricQuery,
) -> StorageResult<Vec<Series>> {
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
    let (sql, args) = build_sql(query);
    let mut series: BTreeMap<(String, String), Acc> = BTreeMap::new();
    for partition in partitions
        .iter()
        .filter(|p| p.overlaps(Kind::Metric, Some(query.from_ns), Some(query.to_ns)))
    {
        partition.with_reader(|conn| {
            let err = || db_at("reading metrics", &partition.path);
            let mut stmt = conn.prepare_cached(&sql).map_err(err())?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(args.iter()))
                .map_err(err())?;
            while let Some(r) = rows.next().map_err(err())? {
                let agent: String = r.get(0).map_err(err())?;
                let labels: String = r.get(1).map_err(err())?;
                let kind: String = r.get(2).map_err(err())?;
                let at: i64 = r.get(3).map_err(err())?;
                let acc = series.entry((agent, labels)).or_default();
                acc.kind = kind;
                if query.step_ns.is_some() {
                    let sum: f64 = r.get(4).map_err(err())?;
                    let count: i64 = r.get(5).map_err(err())?;
                    let slot = acc.buckets.entry(at).or_insert((0.0, 0));
                    slot.0 += sum;
                    slot.1 += count;
                } else {
                    acc.raw.push((at, r.get(4).map_err(err())?));
                }
            }
            Ok(())
        })?;
    }
    Ok(series
        .into_iter()
        .map(|((agent_id, labels), acc)| {
            let points = match query.step_ns {
                Some(step) => acc
                    .buckets
                    .into_iter()
                    .filter(|(_, (_, count))| *count > 0)
                    .map(|(bucket, (sum, count))| {
                        let start = query.from_ns.saturating_add(bucket.saturating_mul(step));
                        (start.div_euclid(NS_PER_MS), sum / count as f64)
                    })
                    .collect(),
                None => {
                    let mut raw = acc.raw;
                    raw.sort_by_key(|(ts, _)| *ts);
                    raw.into_iter()
                        .map(|(ts, v)| (ts.div_euclid(NS_PER_MS), v))
                        .collect()
                }
            };
            Series {
                name: query.name.clone(),
                agent_id,
                labels: serde_json::from_str(&labels).unwrap_or_default(),
                kind: acc.kind,
                points,
            }
        })
        .collect())
}

/// The per-file SQL and its arguments. Only fixed fragments enter the text; label
/// keys and values are bound, matched through `json_each` so that no user text ever
/// becomes a JSON path.
fn build_sql(query: &MetricQuery) -> (String, Vec<Value>) {
    let mut args: Vec<Value> = Vec::new();
    let mut arg = |v: Value| {
        args.push(v);
        format!("?{}", args.len())
    };
    let name = arg(Value::Text(query.name.clone()));
    let from = arg(Value::Integer(query.from_ns));
    let to = arg(Value::Integer(query.to_ns));
    let mut filter = format!(
        "name = {name} AND timestamp_ns >= {from} AND timestamp_ns < {to} AND value IS NOT NULL"
    );
    if let Some(agent) = &query.agent {
        filter.push_str(&format!(
            " AND agent_id = {}",
            arg(Value::Text(agent.clone()))
        ));
    }
    for (key, value) in &query.labels {
        let k = arg(Value::Text(key.clone()));
        let v = arg(Value::Text(value.clone()));
        filter.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM json_each(metrics.labels) WHERE key = {k} AND value = {v})"
        ));
    }
    let sql = match query.step_ns {
        Some(step_ns) => {
            // floor((ts - from) / step) without computing ts - from, which overflows
            // (and SQLite then turns it into a REAL) on ranges wider than an i64:
            // with ts = qa*step + ra and from = qb*step + rb (0 <= r < step), it is
            // qa - qb - (ra < rb). SQLite's / and % truncate toward zero, so a
            // negative ts is brought to floor division first.
            let step = arg(Value::Integer(step_ns));
            let qb = arg(Value::Integer(query.from_ns.div_euclid(step_ns)));
            let rb = arg(Value::Integer(query.from_ns.rem_euclid(step_ns)));
            let neg = format!("(timestamp_ns % {step} < 0)");
            format!(
                "SELECT agent_id, labels, max(kind),
                        (timestamp_ns / {step} - {neg}) - {qb}
                            - ((timestamp_ns % {step} + {neg} * {step}) < {rb}) AS bucket,
                        sum(value), count(value)
                 FROM metrics WHERE {filter} GROUP BY agent_id, labels, bucket"
            )
        }
        None => format!(
            "SELECT agent_id, labels, kind, timestamp_ns, value
             FROM metrics WHERE {filter} ORDER BY timestamp_ns, id"
        ),
    };
    (sql, args)
}
