//! `GET /api/v1/logs`: log search with filters and a cursor.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use monitoring_common::Severity;
use serde::Serialize;

use super::params::Params;
use super::time::format_rfc3339_nanos;
use super::{AppError, AppState, blocking};
use crate::storage::{LogQuery, LogRecord, Order};

/// Results per page when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: u64 = 100;
/// Most results per page; larger `limit`s are clamped to it.
pub(crate) const MAX_LIMIT: u64 = 10_000;

/// The response body.
#[derive(Debug, Serialize)]
pub(crate) struct LogsResponse {
    logs: Vec<LogOut>,
    next_cursor: Option<String>,
}

/// One log record as the API shows it.
#[derive(Debug, Serialize)]
struct LogOut {
    timestamp: String,
    timestamp_ns: i64,
    agent_id: String,
    source: String,
    severity: Option<String>,
    message: String,
    labels: BTreeMap<String, String>,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl From<LogRecord> for LogOut {
    fn from(r: LogRecord) -> Self {
        LogOut {
            timestamp: format_rfc3339_nanos(r.timestamp_ns),
            timestamp_ns: r.timestamp_ns,
            agent_id: r.agent_id,
            source: r.source,
            severity: r.severity,
            message: r.message,
            labels: r.labels,
            fields: r.fields,
        }
    }
}

/// Builds the store query from the query string.
pub(crate) fn parse_query(params: &Params) -> Result<LogQuery, AppError> {
    let max_severity_code = params
        .one("severity")
        .map(|s| {
            s.parse::<Severity>()
                .map(Severity::code)
                .map_err(|e| AppError::BadRequest(format!("`severity`: {e}")))
        })
        .transpose()?;
    let order = match params.one("order") {
        None | Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(other) => {
            return Err(AppError::BadRequest(format!(
                "`order`: {other:?} is neither \"asc\" nor \"desc\""
            )));
        }
    };
    let (from_ns, to_ns) = params.time_range()?;
    let limit = params.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    Ok(LogQuery {
        text: params.one("q").map(str::to_string),
        agent: params.one("agent").map(str::to_string),
        source: params.one("source").map(str::to_string),
        max_severity_code,
        from_ns,
        to_ns,
        limit,
        cursor: params.one("cursor").map(str::to_string),
        order,
    })
}

/// `GET /api/v1/logs?q=&agent=&source=&severity=&from=&to=&limit=&cursor=&order=`.
pub(crate) async fn search(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<LogsResponse>, AppError> {
    let params = Params::parse(
        query,
        &[
            "q", "agent", "source", "severity", "from", "to", "limit", "cursor", "order",
        ],
        &[],
    )?;
    let query = parse_query(&params)?;
    let page = blocking(&state.store, move |s| s.query_logs(&query)).await?;
    Ok(Json(LogsResponse {
        logs: page.logs.into_iter().map(LogOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Result<LogQuery, AppError> {
        let pairs = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let p = Params::parse(
            Ok(Query(pairs)),
            &[
                "q", "agent", "source", "severity", "from", "to", "limit", "cursor", "order",
            ],
            &[],
        )?;
        parse_query(&p)
    }

    #[test]
    fn defaults_and_clamping() {
        let q = params(&[]).expect("no parameters is fine");
        assert_eq!(q.limit, 100);
        assert_eq!(q.order, Order::Desc);
        assert_eq!(q.max_severity_code, None);
        let q = params(&[
            ("limit", "1000000"),
            ("order", "asc"),
            ("severity", "warn"),
            ("q", ""),
        ])
        .expect("valid");
        assert_eq!(q.limit, 10_000);
        assert_eq!(q.order, Order::Asc);
        assert_eq!(q.max_severity_code, Some(4));
        assert_eq!(q.text, None);
    }

    #[test]
    fn times_accept_both_forms() {
        let q = params(&[("from", "1000"), ("to", "1970-01-01T00:00:02Z")]).expect("valid");
        assert_eq!(q.from_ns, Some(1_000_000_000));
        assert_eq!(q.to_ns, Some(2_000_000_000));
    }

    #[test]
    fn bad_parameters_are_400s_that_say_why() {
        for (pairs, needle) in [
            (vec![("limit", "0")], "`limit`"),
            (vec![("limit", "ten")], "`limit`"),
            (vec![("severity", "loud")], "`severity`"),
            (vec![("order", "up")], "`order`"),
            (vec![("from", "yesterday")], "`from`"),
            (vec![("from", "2000"), ("to", "1000")], "before"),
            (
                vec![("severty", "error")],
                "unknown query parameter `severty`",
            ),
            (vec![("agent", "a"), ("agent", "b")], "more than once"),
        ] {
            let err = params(&pairs).expect_err("accepted");
            assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
    }
}
