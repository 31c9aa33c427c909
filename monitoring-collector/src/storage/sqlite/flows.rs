//! Flow summaries across day files, in the order [`FlowQuery`] defines.
//!
//! Each file returns at most `limit` rows in that order; the rows are merged and cut
//! here, because one time range may span several files.

use std::sync::Arc;

use rusqlite::types::Value;

use super::error::{StorageResult, db_at};
use super::partition::{Kind, Partition};
use crate::storage::{FlowQuery, FlowRecord};

/// Columns in the order rows are read.
const COLUMNS: &str = "timestamp_ns, end_ns, agent_id, source, labels, src_addr, dst_addr, \
     src_port, dst_port, protocol, bytes_out, bytes_in, packets_out, packets_in, tcp_flags";

/// The order of [`FlowQuery`], as SQL.
const ORDER: &str =
    "timestamp_ns DESC, agent_id, src_addr, dst_addr, src_port, dst_port, protocol, id";

/// Runs a flow query over `partitions`.
pub(crate) fn query_flows(
    partitions: Vec<Arc<Partition>>,
    query: &FlowQuery,
) -> StorageResult<Vec<FlowRecord>> {
    if query.limit == 0 {
        return Ok(Vec::new());
    }
    let (sql, args) = build_sql(query);
    let mut found = Vec::new();
    for partition in partitions
        .iter()
        .filter(|p| p.overlaps(Kind::Flow, query.from_ns, query.to_ns))
    {
        partition.with_reader(|conn| {
            let err = || db_at("reading flows", &partition.path);
            let mut stmt = conn.prepare_cached(&sql).map_err(err())?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(args.iter()))
                .map_err(err())?;
            while let Some(r) = rows.next().map_err(err())? {
                let labels: String = r.get(4).map_err(err())?;
                found.push(FlowRecord {
                    timestamp_ns: r.get(0).map_err(err())?,
                    end_ns: r.get(1).map_err(err())?,
                    agent_id: r.get(2).map_err(err())?,
                    source: r.get(3).map_err(err())?,
                    labels: serde_json::from_str(&labels).unwrap_or_default(),
                    src_addr: r.get(5).map_err(err())?,
                    dst_addr: r.get(6).map_err(err())?,
                    src_port: r.get(7).map_err(err())?,
                    dst_port: r.get(8).map_err(err())?,
                    protocol: r.get(9).map_err(err())?,
                    bytes_out: unsigned(r.get(10).map_err(err())?),
                    bytes_in: unsigned(r.get(11).map_err(err())?),
                    packets_out: unsigned(r.get(12).map_err(err())?),
                    packets_in: unsigned(r.get(13).map_err(err())?),
                    tcp_flags: r.get(14).map_err(err())?,
                });
            }
            Ok(())
        })?;
    }
    found.sort_by(|a, b| {
        b.timestamp_ns.cmp(&a.timestamp_ns).then_with(|| {
            (
                &a.agent_id,
                &a.src_addr,
                &a.dst_addr,
                a.src_port,
                a.dst_port,
                a.protocol,
            )
                .cmp(&(
                    &b.agent_id,
                    &b.src_addr,
                    &b.dst_addr,
                    b.src_port,
                    b.dst_port,
                    b.protocol,
                ))
        })
    });
    found.truncate(query.limit);
    Ok(found)
}

/// Counters are stored saturated to `i64::MAX`, so never negative.
fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The per-file SQL and its arguments; every value is bound.
fn build_sql(query: &FlowQuery) -> (String, Vec<Value>) {
    let mut args: Vec<Value> = Vec::new();
    let mut clauses: Vec<String> = Vec::new();
    let mut arg = |v: Value| {
        args.push(v);
        format!("?{}", args.len())
    };
    if let Some(agent) = &query.agent {
        clauses.push(format!("agent_id = {}", arg(Value::Text(agent.clone()))));
    }
    if let Some(addr) = &query.addr {
        let a = arg(Value::Text(addr.clone()));
        clauses.push(format!("(src_addr = {a} OR dst_addr = {a})"));
    }
    if let Some(port) = query.port {
        let p = arg(Value::Integer(i64::from(port)));
        clauses.push(format!("(src_port = {p} OR dst_port = {p})"));
    }
    if let Some(protocol) = query.protocol {
        clauses.push(format!(
            "protocol = {}",
            arg(Value::Integer(i64::from(protocol)))
        ));
    }
    if let Some(from) = query.from_ns {
        clauses.push(format!("timestamp_ns >= {}", arg(Value::Integer(from))));
    }
    if let Some(to) = query.to_ns {
        clauses.push(format!("timestamp_ns < {}", arg(Value::Integer(to))));
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let limit = arg(Value::Integer(
        i64::try_from(query.limit).unwrap_or(i64::MAX),
    ));
    (
        format!("SELECT {COLUMNS} FROM flows {filter} ORDER BY {ORDER} LIMIT {limit}"),
        args,
    )
}
