//! `GET /api/v1/metrics` (series of one metric) and `GET /api/v1/metrics/names`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use monitoring_common::event::now_ns;
use serde::Serialize;

use super::params::Params;
use super::{AppError, AppState, blocking};
use crate::storage::{MetricQuery, Series};

/// The window when `from` is not given: the last hour.
const DEFAULT_WINDOW_NS: i64 = 3600 * 1_000_000_000;

/// Most buckets a stepped query may ask for per series (Prometheus's limit too).
pub(crate) const MAX_POINTS: i64 = 11_000;

/// The body of `GET /api/v1/metrics`.
#[derive(Debug, Serialize)]
pub(crate) struct SeriesResponse {
    series: Vec<Series>,
}

/// The body of `GET /api/v1/metrics/names`.
#[derive(Debug, Serialize)]
pub(crate) struct NamesResponse {
    names: Vec<String>,
}

/// Builds the store query from the query string; `now` is the default `to`.
pub(crate) fn parse_query(params: &Params, now: i64) -> Result<MetricQuery, AppError> {
    let name = params.one("name").ok_or_else(|| {
        AppError::BadRequest("`name` is required (see /api/v1/metrics/names)".into())
    })?;
    let mut labels = BTreeMap::new();
    for pair in params.all("label") {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            AppError::BadRequest(format!("`label`: {pair:?} is not of the form key=value"))
        })?;
        if k.is_empty() {
            return Err(AppError::BadRequest(format!(
                "`label`: {pair:?} has an empty key"
            )));
        }
        if labels.insert(k.to_string(), v.to_string()).is_some() {
            return Err(AppError::BadRequest(format!(
                "`label`: key {k:?} is given more than once"
            )));
        }
    }
    let to_ns = params.time("to")?.unwrap_or(now);
    let from_ns = params
        .time("from")?
        .unwrap_or(to_ns.saturating_sub(DEFAULT_WINDOW_NS));
    if from_ns >= to_ns {
        return Err(AppError::BadRequest("`from` must be before `to`".into()));
    }
    let step_ns = params.duration("step")?;
    if let Some(step) = step_ns {
        let buckets = (to_ns.saturating_sub(from_ns)) / step;
        if buckets > MAX_POINTS {
            return Err(AppError::BadRequest(format!(
                "`step` too small: {buckets} points per series; at most {MAX_POINTS} are allowed, use a larger step or a shorter range"
            )));
        }
    }
    Ok(MetricQuery {
        name: name.to_string(),
        agent: params.one("agent").map(str::to_string),
        labels,
        from_ns,
        to_ns,
        step_ns,
    })
}

/// `GET /api/v1/metrics?name=&agent=&label=k=v&from=&to=&step=`.
pub(crate) async fn series(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<SeriesResponse>, AppError> {
    let params = Params::parse(query, &["name", "agent", "from", "to", "step"], &["label"])?;
    let query = parse_query(&params, now_ns())?;
    let series = blocking(&state.store, move |s| s.query_metrics(&query)).await?;
    Ok(Json(SeriesResponse { series }))
}

/// `GET /api/v1/metrics/names`.
pub(crate) async fn names(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<NamesResponse>, AppError> {
    Params::parse(query, &[], &[])?;
    let names = blocking(&state.store, |s| s.metric_names()).await?;
    Ok(Json(NamesResponse { names }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_715_000_000_000_000_000;

    fn params(pairs: &[(&str, &str)]) -> Result<MetricQuery, AppError> {
        let pairs = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let p = Params::parse(
            Ok(Query(pairs)),
            &["name", "agent", "from", "to", "step"],
            &["label"],
        )?;
        parse_query(&p, NOW)
    }

    #[test]
    fn defaults_to_the_last_hour_of_raw_samples() {
        let q = params(&[("name", "cpu")]).expect("valid");
        assert_eq!(
            (q.from_ns, q.to_ns, q.step_ns),
            (NOW - DEFAULT_WINDOW_NS, NOW, None)
        );
    }

    #[test]
    fn labels_repeat_and_steps_parse() {
        let q = params(&[
            ("name", "cpu"),
            ("label", "cpu=total"),
            ("label", "mode=user"),
            ("step", "30s"),
        ])
        .expect("valid");
        assert_eq!(q.labels.get("cpu").map(String::as_str), Some("total"));
        assert_eq!(q.labels.get("mode").map(String::as_str), Some("user"));
        assert_eq!(q.step_ns, Some(30_000_000_000));
        let q = params(&[("name", "cpu"), ("label", "path=/a=b")]).expect("valid");
        assert_eq!(q.labels.get("path").map(String::as_str), Some("/a=b"));
    }

    #[test]
    fn bad_parameters_are_400s() {
        for (pairs, needle) in [
            (vec![], "`name` is required"),
            (vec![("name", "x"), ("label", "novalue")], "key=value"),
            (
                vec![("name", "x"), ("label", "a=1"), ("label", "a=2")],
                "more than once",
            ),
            (vec![("name", "x"), ("step", "1ms")], "too small"),
            (vec![("name", "x"), ("step", "fast")], "`step`"),
            (
                vec![("name", "x"), ("from", "2000"), ("to", "1000")],
                "before",
            ),
        ] {
            let err = params(&pairs).expect_err("accepted");
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
    }
}
