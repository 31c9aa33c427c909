//! Flow summaries in the order [`FlowQuery`] defines: newest first, ties by
//! `(agent_id, src_addr, dst_addr, src_port, dst_port, protocol)`, then the batch
//! key, so that the copies of a batch written twice are neighbours and are folded
//! here (the query runs again with a larger limit if folding leaves it short).

use super::client::{ClickhouseError, Client};
use super::rowbinary::RowReader;
use super::schema::{FLOWS, qualified};
use super::sql::{int, quote};
use crate::storage::{FlowQuery, FlowRecord, StorageError};

/// Runs a flow query.
pub(crate) fn query_flows(
    client: &Client,
    query: &FlowQuery,
) -> Result<Vec<FlowRecord>, StorageError> {
    if query.limit == 0 {
        return Ok(Vec::new());
    }
    let mut conds: Vec<String> = Vec::new();
    if let Some(agent) = &query.agent {
        conds.push(format!("agent_id = {}", quote(agent)));
    }
    if let Some(addr) = &query.addr {
        let a = quote(addr);
        conds.push(format!("(src_addr = {a} OR dst_addr = {a})"));
    }
    if let Some(port) = query.port {
        conds.push(format!("(src_port = {port} OR dst_port = {port})"));
    }
    if let Some(protocol) = query.protocol {
        conds.push(format!("protocol = {protocol}"));
    }
    if let Some(from) = query.from_ns {
        conds.push(format!("timestamp_ns >= {}", int(from)));
    }
    if let Some(to) = query.to_ns {
        conds.push(format!("timestamp_ns < {}", int(to)));
    }
    let filter = match conds.is_empty() {
        true => String::new(),
        false => format!("WHERE {}", conds.join(" AND ")),
    };
    let table = qualified(client.endpoint().database(), FLOWS);
    let mut fetch = query.limit;
    loop {
        let answer = client
            .query(&format!(
                "SELECT timestamp_ns, end_ns, agent_id, source, labels, src_addr, dst_addr, \
                 src_port, dst_port, protocol, bytes_out, bytes_in, packets_out, packets_in, \
                 tcp_flags, stream_id, sequence, idx FROM {table} {filter} \
                 ORDER BY timestamp_ns DESC, agent_id, src_addr, dst_addr, src_port, dst_port, \
                 protocol, stream_id, sequence, idx LIMIT {fetch} FORMAT RowBinary"
            ))
            .map_err(super::db("reading flows"))?;
        let (mut flows, read) = decode(&answer).map_err(super::db("reading flows"))?;
        if flows.len() >= query.limit || read < fetch {
            flows.truncate(query.limit);
            return Ok(flows);
        }
        fetch = fetch.saturating_mul(2);
    }
}

/// The flows of an answer with copies folded, and how many rows it had.
fn decode(answer: &[u8]) -> Result<(Vec<FlowRecord>, usize), ClickhouseError> {
    let mut r = RowReader::new(answer);
    let mut flows: Vec<FlowRecord> = Vec::new();
    let mut last_key: Option<(String, u64, u64, u32)> = None;
    let mut read = 0;
    while !r.at_end() {
        let flow = FlowRecord {
            timestamp_ns: r.i64()?,
            end_ns: r.i64()?,
            agent_id: r.string()?,
            source: r.string()?,
            labels: serde_json::from_str(&r.string()?).unwrap_or_default(),
            src_addr: r.string()?,
            dst_addr: r.string()?,
            src_port: r.u16()?,
            dst_port: r.u16()?,
            protocol: r.u8()?,
            bytes_out: r.u64()?,
            bytes_in: r.u64()?,
            packets_out: r.u64()?,
            packets_in: r.u64()?,
            tcp_flags: r.u8()?,
        };
        let key = (flow.agent_id.clone(), r.u64()?, r.u64()?, r.u32()?);
        read += 1;
        if last_key.as_ref() == Some(&key) {
            continue;
        }
        last_key = Some(key);
        flows.push(flow);
    }
    Ok((flows, read))
}
