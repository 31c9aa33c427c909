//! `GET /api/v1/flows`: the traffic summaries agents captured, newest first.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Serialize;

use super::logs::{DEFAULT_LIMIT, MAX_LIMIT};
use super::params::Params;
use super::time::format_rfc3339_nanos;
use super::{AppError, AppState, blocking};
use crate::storage::{FlowQuery, FlowRecord};

const PARAMS: &[&str] = &["agent", "addr", "port", "protocol", "from", "to", "limit"];

/// The response body.
#[derive(Debug, Serialize)]
pub(crate) struct FlowsResponse {
    flows: Vec<FlowOut>,
}

/// One flow as the API shows it: a [`FlowRecord`] with readable times and totals.
#[derive(Debug, Serialize)]
struct FlowOut {
    timestamp: String,
    end: String,
    timestamp_ns: i64,
    end_ns: i64,
    agent_id: String,
    source: String,
    labels: BTreeMap<String, String>,
    src_addr: String,
    dst_addr: String,
    src_port: u16,
    dst_port: u16,
    protocol: u8,
    bytes_out: u64,
    bytes_in: u64,
    packets_out: u64,
    packets_in: u64,
    bytes: u64,
    packets: u64,
    tcp_flags: u8,
}

impl From<FlowRecord> for FlowOut {
    fn from(r: FlowRecord) -> Self {
        FlowOut {
            timestamp: format_rfc3339_nanos(r.timestamp_ns),
            end: format_rfc3339_nanos(r.end_ns),
            timestamp_ns: r.timestamp_ns,
            end_ns: r.end_ns,
            bytes: r.bytes_out.saturating_add(r.bytes_in),
            packets: r.packets_out.saturating_add(r.packets_in),
            agent_id: r.agent_id,
            source: r.source,
            labels: r.labels,
            src_addr: r.src_addr,
            dst_addr: r.dst_addr,
            src_port: r.src_port,
            dst_port: r.dst_port,
            protocol: r.protocol,
            bytes_out: r.bytes_out,
            bytes_in: r.bytes_in,
            packets_out: r.packets_out,
            packets_in: r.packets_in,
            tcp_flags: r.tcp_flags,
        }
    }
}

/// Builds the store query from the query string.
fn parse_query(params: &Params) -> Result<FlowQuery, AppError> {
    let addr = params
        .one("addr")
        .map(|a| {
            // Normalised so that `::0001` finds what was stored as `::1`.
            a.parse::<std::net::IpAddr>()
                .map(|ip| ip.to_string())
                .map_err(|_| AppError::BadRequest(format!("`addr`: {a:?} is not an IP address")))
        })
        .transpose()?;
    let port = params
        .number("port", 0, u64::from(u16::MAX))?
        .map(|p| u16::try_from(p).unwrap_or(u16::MAX));
    let protocol = match params.one("protocol") {
        None => None,
        Some("tcp") => Some(6),
        Some("udp") => Some(17),
        Some("icmp") => Some(1),
        Some("icmpv6") => Some(58),
        Some(_) => params
            .number("protocol", 0, 255)?
            .map(|p| u8::try_from(p).unwrap_or(u8::MAX)),
    };
    let (from_ns, to_ns) = params.time_range()?;
    let limit = params.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    Ok(FlowQuery {
        agent: params.one("agent").map(str::to_string),
        addr,
        port,
        protocol,
        from_ns,
        to_ns,
        limit,
    })
}

/// `GET /api/v1/flows?agent=&addr=&port=&protocol=&from=&to=&limit=`.
pub(crate) async fn list(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<FlowsResponse>, AppError> {
    let params = Params::parse(query, PARAMS, &[])?;
    let query = parse_query(&params)?;
    let flows = blocking(&state.store, move |s| s.query_flows(&query)).await?;
    Ok(Json(FlowsResponse {
        flows: flows.into_iter().map(FlowOut::from).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Result<FlowQuery, AppError> {
        let pairs = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_query(&Params::parse(Ok(Query(pairs)), PARAMS, &[])?)
    }

    #[test]
    fn parameters() {
        let q = params(&[]).expect("none");
        assert_eq!(
            (q.limit, q.addr, q.port, q.protocol),
            (100, None, None, None)
        );
        let q = params(&[
            ("addr", "::0001"),
            ("port", "443"),
            ("protocol", "udp"),
            ("limit", "99999"),
        ])
        .expect("valid");
        assert_eq!(q.addr.as_deref(), Some("::1"));
        assert_eq!((q.port, q.protocol, q.limit), (Some(443), Some(17), 10_000));
        assert_eq!(
            params(&[("protocol", "47")]).expect("number").protocol,
            Some(47)
        );
        for (pairs, needle) in [
            (vec![("addr", "localhost")], "`addr`"),
            (vec![("port", "70000")], "`port`"),
            (vec![("protocol", "sctp")], "`protocol`"),
            (vec![("from", "2000"), ("to", "1000")], "before"),
            (vec![("host", "a")], "unknown query parameter `host`"),
        ] {
            let err = params(&pairs).expect_err("accepted");
            assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
    }
}
