//! Metric series: raw samples, or averages per step bucket, with the sqlite store's
//! results.
//!
//! Series are keyed and ordered by agent, then by their labels as the sqlite store
//! holds them (serde_json's text of the sorted map), so both stores list series in
//! the same order; `jsonb`'s own text differs (spacing, key order by length).

use std::collections::BTreeMap;

use postgres::types::Json;

use super::pool::Conn;
use super::values::{Args, text};
use crate::storage::{MetricQuery, Series, StorageError};

const NS_PER_MS: i64 = 1_000_000;

/// One series being assembled.
#[derive(Default)]
struct Acc {
    labels: BTreeMap<String, String>,
    kind: String,
    points: Vec<(i64, f64)>,
}

/// Rejects what cannot be answered; `Ok(false)` when the answer is empty anyway.
pub(crate) fn check(query: &MetricQuery) -> Result<bool, StorageError> {
    if let Some(step) = query.step_ns
        && step <= 0
    {
        return Err(StorageError::BadQuery(format!(
            "step must be positive, got {step} ns"
        )));
    }
    Ok(query.to_ns > query.from_ns)
}

/// The statement and its arguments; label keys and values are bound, as one
/// `jsonb` document the labels must contain.
fn build(query: &MetricQuery) -> (String, Args) {
    let mut args = Args::default();
    let name = args.bind(text(&query.name).into_owned());
    let from = args.bind(query.from_ns);
    let to = args.bind(query.to_ns);
    let mut filter = format!(
        "name = {name} AND timestamp_ns >= {from} AND timestamp_ns < {to} AND value IS NOT NULL"
    );
    if let Some(agent) = &query.agent {
        let a = args.bind(text(agent).into_owned());
        filter.push_str(&format!(" AND agent_id = {a}"));
    }
    if !query.labels.is_empty() {
        let wanted: BTreeMap<String, String> = query
            .labels
            .iter()
            .map(|(k, v)| (text(k).into_owned(), text(v).into_owned()))
            .collect();
        let l = args.bind(Json(wanted));
        filter.push_str(&format!(" AND labels @> {l}"));
    }
    let sql = match query.step_ns {
        Some(step) => {
            let s = args.bind(step);
            // `timestamp_ns - from` fits a bigint whenever `to - from` does; a range
            // wider than that is done in numeric (slower, and only ever asked by hand).
            let bucket = if query.to_ns.checked_sub(query.from_ns).is_some() {
                format!("(timestamp_ns - {from}) / {s}")
            } else {
                format!(
                    "LEAST(div(timestamp_ns::numeric - {from}::int8, {s}::int8), 9223372036854775807)::int8"
                )
            };
            format!(
                "SELECT agent_id, labels, max(kind), {bucket} AS bucket, sum(value), count(value)
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

/// Runs a metric query that passed [`check`].
pub(crate) fn query_metrics(
    conn: &mut Conn,
    query: &MetricQuery,
) -> Result<Vec<Series>, postgres::Error> {
    let (sql, args) = build(query);
    let statement = conn.prepare(&sql)?;
    let rows = conn.client.query(&statement, &args.refs())?;
    let mut series: BTreeMap<(String, String), Acc> = BTreeMap::new();
    for r in rows {
        let agent: String = r.try_get(0)?;
        let Json(labels): Json<serde_json::Value> = r.try_get(1)?;
        let labels: BTreeMap<String, String> = serde_json::from_value(labels).unwrap_or_default();
        let key_text = serde_json::to_string(&labels).unwrap_or_default();
        let kind: String = r.try_get(2)?;
        let at: i64 = r.try_get(3)?;
        let point = match query.step_ns {
            Some(step) => {
                let sum: f64 = r.try_get(4)?;
                let count: i64 = r.try_get(5)?;
                if count == 0 {
                    continue;
                }
                let start = query.from_ns.saturating_add(at.saturating_mul(step));
                (start.div_euclid(NS_PER_MS), sum / count as f64)
            }
            None => (at.div_euclid(NS_PER_MS), r.try_get(4)?),
        };
        let acc = series.entry((agent, key_text)).or_default();
        acc.labels = labels;
        acc.kind = kind;
        acc.points.push(point);
    }
    Ok(series
        .into_iter()
        .map(|((agent_id, _), mut acc)| {
            // Raw rows come in time order; buckets in any: sort both (stable).
            acc.points.sort_by_key(|(ts, _)| *ts);
            Series {
                name: query.name.clone(),
                agent_id,
                labels: acc.labels,
                kind: acc.kind,
                points: acc.points,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_steps_are_bound() {
        let query = MetricQuery {
            name: "x'".into(),
            labels: BTreeMap::from([("k\"')".to_string(), "v".to_string())]),
            from_ns: 0,
            to_ns: 10,
            step_ns: Some(5),
            ..MetricQuery::default()
        };
        let (sql, args) = build(&query);
        assert!(!sql.contains("x'") && !sql.contains("k\""), "{sql}");
        assert!(sql.contains("(timestamp_ns - $2) / $5"), "{sql}");
        assert_eq!(args.refs().len(), 5);
        let wide = MetricQuery {
            from_ns: i64::MIN,
            to_ns: i64::MAX,
            ..query
        };
        assert!(build(&wide).0.contains("numeric"));
    }
}
