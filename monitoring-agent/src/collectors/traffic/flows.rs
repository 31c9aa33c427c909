//! Packets aggregated into flows over one interval, and the top talkers.
//!
//! A flow is the traffic between two endpoints (address and port) over one IP
//! protocol, both directions together. Its `src` is the side that opened it: the
//! sender of a TCP SYN without ACK when one is seen; otherwise, when exactly one
//! side uses a port below 1024, the other side (a client talking to a service);
//! otherwise the sender of the first packet seen. The table is bounded
//! (`max_flows`): packets of new flows beyond it are counted as overflow, never
//! kept, so a port scan cannot grow the agent's memory.

use std::collections::HashMap;
use std::net::IpAddr;

use monitoring_common::FlowEvent;

use super::decode::{Packet, TCP, TCP_ACK, TCP_SYN};

/// The two endpoints of a flow, in a canonical order (`a <= b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    protocol: u8,
    a: (IpAddr, u16),
    b: (IpAddr, u16),
}

#[derive(Debug, Default, Clone, Copy)]
struct Flow {
    /// Whether `a` is the side that opened the flow.
    a_is_src: bool,
    /// Whether a SYN settled the orientation (nothing overrides it then).
    by_syn: bool,
    bytes_ab: u64,
    bytes_ba: u64,
    packets_ab: u64,
    packets_ba: u64,
    tcp_flags: u8,
}

/// What one interval yields.
#[derive(Debug, Default)]
pub struct Interval {
    /// One per flow seen.
    pub flows: Vec<FlowEvent>,
    /// Addresses with the most bytes sent plus received, most first.
    pub top_talkers: Vec<(IpAddr, u64)>,
    /// Packets and bytes of flows not kept because the table was full.
    pub overflow_packets: u64,
    /// Bytes of those packets.
    pub overflow_bytes: u64,
    /// Packets counted into flows.
    pub packets: u64,
    /// Bytes counted into flows.
    pub bytes: u64,
}

/// The flows of the current interval.
#[derive(Debug)]
pub struct FlowTable {
    flows: HashMap<Key, Flow>,
    max_flows: usize,
    overflow_packets: u64,
    overflow_bytes: u64,
}

impl FlowTable {
    /// An empty table keeping at most `max_flows` flows per interval.
    pub fn new(max_flows: usize) -> FlowTable {
        FlowTable {
            flows: HashMap::new(),
            max_flows,
            overflow_packets: 0,
            overflow_bytes: 0,
        }
    }

    /// Flows in the table now.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow was seen yet this interval.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Counts one packet.
    pub fn add(&mut self, p: &Packet) {
        let from = (p.src, p.src_port);
        let to = (p.dst, p.dst_port);
        let (key, from_a) = if from <= to {
            (
                Key {
                    protocol: p.protocol,
                    a: from,
                    b: to,
                },
                true,
            )
        } else {
            (
                Key {
                    protocol: p.protocol,
                    a: to,
                    b: from,
                },
                false,
            )
        };
        let full = self.flows.len() >= self.max_flows;
        let flow = match self.flows.get_mut(&key) {
            Some(flow) => flow,
            None if full => {
                self.overflow_packets += 1;
                self.overflow_bytes += u64::from(p.length);
                return;
            }
            None => self.flows.entry(key).or_insert_with(|| Flow {
                a_is_src: first_orientation(p, from_a),
                ..Flow::default()
            }),
        };
        if p.protocol == TCP && p.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN && !flow.by_syn {
            flow.a_is_src = from_a;
            flow.by_syn = true;
        }
        let length = u64::from(p.length);
        if from_a {
            flow.bytes_ab += length;
            flow.packets_ab += 1;
        } else {
            flow.bytes_ba += length;
            flow.packets_ba += 1;
        }
        flow.tcp_flags |= p.tcp_flags;
    }

    /// Empties the table into the flow events of the interval that ends at `end_ns`,
    /// with the `top` busiest addresses.
    pub fn drain(&mut self, end_ns: i64, top: usize) -> Interval {
        let mut talkers: HashMap<IpAddr, u64> = HashMap::new();
        let mut out = Interval {
            overflow_packets: std::mem::take(&mut self.overflow_packets),
            overflow_bytes: std::mem::take(&mut self.overflow_bytes),
            ..Interval::default()
        };
        for (key, flow) in self.flows.drain() {
            let total = flow.bytes_ab + flow.bytes_ba;
            *talkers.entry(key.a.0).or_default() += total;
            if key.b.0 != key.a.0 {
                *talkers.entry(key.b.0).or_default() += total;
            }
            out.packets += flow.packets_ab + flow.packets_ba;
            out.bytes += total;
            let ((src, sport), (dst, dport), out_bytes, in_bytes, out_packets, in_packets) =
                if flow.a_is_src {
                    (
                        key.a,
                        key.b,
                        flow.bytes_ab,
                        flow.bytes_ba,
                        flow.packets_ab,
                        flow.packets_ba,
                    )
                } else {
                    (
                        key.b,
                        key.a,
                        flow.bytes_ba,
                        flow.bytes_ab,
                        flow.packets_ba,
                        flow.packets_ab,
                    )
                };
            out.flows.push(FlowEvent {
                src_addr: src,
                dst_addr: dst,
                src_port: sport,
                dst_port: dport,
                protocol: key.protocol,
                end_ns,
                bytes_out: out_bytes,
                bytes_in: in_bytes,
                packets_out: out_packets,
                packets_in: in_packets,
                tcp_flags: flow.tcp_flags,
            });
        }
        // Busiest first.
        out.flows
            .sort_by_key(|f| std::cmp::Reverse(f.bytes_out + f.bytes_in));
        let mut talkers: Vec<(IpAddr, u64)> = talkers.into_iter().collect();
        // Ties by address, so that the ranks are stable.
        talkers.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
        talkers.truncate(top);
        out.top_talkers = talkers;
        out
    }
}

/// Whether `a` opened a flow whose first packet seen is `p` (`from_a`: sent by `a`).
fn first_orientation(p: &Packet, from_a: bool) -> bool {
    let sender_is_src =
        if p.protocol == TCP && p.tcp_flags & (TCP_SYN | TCP_ACK) == (TCP_SYN | TCP_ACK) {
            // A SYN-ACK comes from the side that was opened to.
            false
        } else {
            match (p.src_port < 1024, p.dst_port < 1024) {
                // Sent from a service port to a client port: the receiver opened it.
                (true, false) if p.src_port != 0 => false,
                _ => true,
            }
        };
    sender_is_src == from_a
}
