//! Flow summaries in the order [`FlowQuery`] defines: newest first, ties by
//! addresses and ports (text compared bytewise: the columns are `COLLATE "C"`).

use std::collections::BTreeMap;

use postgres::types::Json;

use super::pool::Conn;
use super::values::{Args, text, unsigned};
use crate::storage::{FlowQuery, FlowRecord};

const COLUMNS: &str = "timestamp_ns, end_ns, agent_id, source, labels, src_addr, dst_addr, \
     src_port, dst_port, protocol, bytes_out, bytes_in, packets_out, packets_in, tcp_flags";

const ORDER: &str =
    "timestamp_ns DESC, agent_id, src_addr, dst_addr, src_port, dst_port, protocol, id";

/// The statement and its arguments; every value is bound.
fn build(query: &FlowQuery) -> (String, Args) {
    let mut args = Args::default();
    let mut clauses: Vec<String> = Vec::new();
    if let Some(agent) = &query.agent {
        let a = args.bind(text(agent).into_owned());
        clauses.push(format!("agent_id = {a}"));
    }
    if let Some(addr) = &query.addr {
        let a = args.bind(text(addr).into_owned());
        clauses.push(format!("(src_addr = {a} OR dst_addr = {a})"));
    }
    if let Some(port) = query.port {
        let p = args.bind(i32::from(port));
        clauses.push(format!("(src_port = {p} OR dst_port = {p})"));
    }
    if let Some(protocol) = query.protocol {
        let p = args.bind(i16::from(protocol));
        clauses.push(format!("protocol = {p}"));
    }
    if let Some(from) = query.from_ns {
        let f = args.bind(from);
        clauses.push(format!("timestamp_ns >= {f}"));
    }
    if let Some(to) = query.to_ns {
        let t = args.bind(to);
        clauses.push(format!("timestamp_ns < {t}"));
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let limit = args.bind(i64::try_from(query.limit).unwrap_or(i64::MAX));
    (
        format!("SELECT {COLUMNS} FROM flows {filter} ORDER BY {ORDER} LIMIT {limit}"),
        args,
    )
}

/// Runs a flow query.
pub(crate) fn query_flows(
    conn: &mut Conn,
    query: &FlowQuery,
) -> Result<Vec<FlowRecord>, postgres::Error> {
    if query.limit == 0 {
        return Ok(Vec::new());
    }
    let (sql, args) = build(query);
    let statement = conn.prepare(&sql)?;
    conn.client
        .query(&statement, &args.refs())?
        .into_iter()
        .map(|r| {
            let Json(labels): Json<serde_json::Value> = r.try_get(4)?;
            let src_port: i32 = r.try_get(7)?;
            let dst_port: i32 = r.try_get(8)?;
            let protocol: i16 = r.try_get(9)?;
            let tcp_flags: i16 = r.try_get(14)?;
            Ok(FlowRecord {
                timestamp_ns: r.try_get(0)?,
                end_ns: r.try_get(1)?,
                agent_id: r.try_get(2)?,
                source: r.try_get(3)?,
                labels: serde_json::from_value::<BTreeMap<String, String>>(labels)
                    .unwrap_or_default(),
                src_addr: r.try_get(5)?,
                dst_addr: r.try_get(6)?,
                // Stored from u16 and u8, so they convert back; anything else
                // (written by hand) reads as 0.
                src_port: u16::try_from(src_port).unwrap_or(0),
                dst_port: u16::try_from(dst_port).unwrap_or(0),
                protocol: u8::try_from(protocol).unwrap_or(0),
                bytes_out: unsigned(r.try_get(10)?),
                bytes_in: unsigned(r.try_get(11)?),
                packets_out: unsigned(r.try_get(12)?),
                packets_in: unsigned(r.try_get(13)?),
                tcp_flags: u8::try_from(tcp_flags).unwrap_or(0),
            })
        })
        .collect()
}
