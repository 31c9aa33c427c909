//! The traffic source (`[collectors.traffic]`): packets captured with libpcap
//! (cargo feature `pcap`) summarised into flows per interval, and the top talkers.
//!
//! - [`decode`]: a frame to addresses, ports, protocol, flags and length.
//! - [`flows`]: packets aggregated into flows, bounded.
//! - `capture` (feature `pcap`): the capture thread, live or from a savefile.
//!
//! Only headers are looked at (a small snap length by default) and no payload is
//! kept or shipped. The capture runs on its own thread and offers each interval's
//! events to the buffer without waiting: a capture that blocked would make the
//! kernel drop packets, which are counted and shipped
//! (`traffic_kernel_dropped_packets_total`).

#[cfg(feature = "pcap")]
pub mod capture;
pub mod decode;
pub mod events;
pub mod flows;

use std::path::PathBuf;

use monitoring_common::config::Problem;
use serde::{Deserialize, Serialize};

/// `[collectors.traffic]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrafficConfig {
    /// Whether packets are captured. Needs an agent built with the `pcap` feature
    /// and the right to capture (root or CAP_NET_RAW). Default `false`.
    pub enabled: bool,
    /// The interface to capture on; `any` is every interface (Linux). Default `"any"`.
    pub interface: String,
    /// A BPF filter in tcpdump's syntax, e.g. `"tcp or udp"`. Default: none (all).
    pub bpf_filter: String,
    /// Read this pcap savefile instead of capturing (offline analysis); intervals
    /// then follow the packets' timestamps. Default: none.
    pub savefile: Option<PathBuf>,
    /// Seconds per flow summary. Default `10`.
    pub interval_secs: u64,
    /// Bytes captured per packet: headers only. Default `128`.
    pub snaplen: u32,
    /// Flows kept per interval; packets of more flows are counted as overflow.
    /// Default `10000`.
    pub max_flows: usize,
    /// Addresses reported as top talkers per interval. Default `10`.
    pub top_talkers: usize,
    /// Whether the interface is put in promiscuous mode. Default `false`.
    pub promiscuous: bool,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            enabled: false,
            interface: "any".into(),
            bpf_filter: String::new(),
            savefile: None,
            interval_secs: 10,
            snaplen: 128,
            max_flows: 10_000,
            top_talkers: 10,
            promiscuous: false,
        }
    }
}

impl TrafficConfig {
    /// Every problem of this table, with dotted keys.
    pub fn validate(&self) -> Vec<Problem> {
        let key = |k: &str| format!("collectors.traffic.{k}");
        let mut problems = Vec::new();
        if self.enabled && !cfg!(feature = "pcap") {
            problems.push(Problem::new(
                key("enabled"),
                "this agent was built without the `pcap` feature (cargo build --features pcap)",
            ));
        }
        if self.interface.trim().is_empty() && self.savefile.is_none() {
            problems.push(Problem::new(
                key("interface"),
                "must name an interface (or `any`)",
            ));
        }
        if !(1..=3600).contains(&self.interval_secs) {
            problems.push(Problem::new(
                key("interval_secs"),
                "must be between 1 and 3600",
            ));
        }
        if !(64..=65_535).contains(&self.snaplen) {
            problems.push(Problem::new(
                key("snaplen"),
                "must be between 64 and 65535 bytes",
            ));
        }
        if !(1..=1_000_000).contains(&self.max_flows) {
            problems.push(Problem::new(
                key("max_flows"),
                "must be between 1 and 1000000",
            ));
        }
        if self.top_talkers > 1000 {
            problems.push(Problem::new(key("top_talkers"), "must be at most 1000"));
        }
        problems
    }
}

#[cfg(all(test, feature = "pcap"))]
mod pcap_tests;
#[cfg(test)]
mod tests;
