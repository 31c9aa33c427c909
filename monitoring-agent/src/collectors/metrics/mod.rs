//! Metric sources and their `[collectors.metrics]` configuration.
//!
//! - [`host`]: this machine's CPU, memory, disks, network, load and inventory, via
//!   sysinfo.
//! - [`prometheus`]: samples scraped from Prometheus exporters.

pub mod host;
pub mod prometheus;

use monitoring_common::config::Problem;
use serde::{Deserialize, Serialize};

use self::prometheus::ScrapeConfig;

/// Longest accepted sampling interval: a day.
const MAX_INTERVAL_SECS: u64 = 86_400;

/// Most top processes reported: each is a series per rank.
const MAX_TOP_PROCESSES: usize = 100;

/// Configuration of the metric sources (`[collectors.metrics]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Whether host metrics are collected. Default `true`.
    pub enabled: bool,
    /// Seconds between two host metric samples. Default `10`.
    pub system_interval_secs: u64,
    /// How many of the busiest processes, by CPU and by memory, each sample reports
    /// (`host_process_top_cpu_percent`, `host_process_top_memory_bytes`); 0 turns
    /// the process table off. Default `5`.
    pub top_processes: usize,
    /// Whether each sample counts TCP connections in every state
    /// (`host_tcp_connections{state}`, all 12) from `/proc/net/tcp` and `tcp6`. Off,
    /// only `established` (from `/proc/net/snmp`) and `time_wait` (from
    /// `/proc/net/sockstat`) are reported: reading the full tables makes the kernel
    /// walk its whole connection hash table, sized by RAM and not by connections
    /// (10 ms per sample on a 24 GiB machine, half of an idle agent's CPU). Node
    /// exporter's `tcpstat` and Datadog's `collect_connection_state` are off by
    /// default for the same reason. Default `false`.
    pub tcp_states: bool,
    /// Prometheus endpoints to scrape (`[[collectors.metrics.prometheus]]`), whether
    /// or not host metrics are enabled. Default none.
    pub prometheus: Vec<ScrapeConfig>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            system_interval_secs: 10,
            top_processes: 5,
            tcp_states: false,
            prometheus: Vec::new(),
        }
    }
}

impl MetricsConfig {
    /// Every problem of this table, with dotted keys.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if !(1..=MAX_INTERVAL_SECS).contains(&self.system_interval_secs) {
            problems.push(Problem::new(
                "collectors.metrics.system_interval_secs",
                format!("must be between 1 and {MAX_INTERVAL_SECS} seconds"),
            ));
        }
        if self.top_processes > MAX_TOP_PROCESSES {
            problems.push(Problem::new(
                "collectors.metrics.top_processes",
                format!("must be at most {MAX_TOP_PROCESSES}"),
            ));
        }
        let mut urls = std::collections::HashSet::new();
        for (i, target) in self.prometheus.iter().enumerate() {
            let prefix = format!("collectors.metrics.prometheus[{i}]");
            problems.extend(target.validate(&prefix));
            if !urls.insert(target.url.as_str()) {
                problems.push(Problem::new(
                    format!("{prefix}.url"),
                    "is listed twice: every target is scraped once",
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        let c = MetricsConfig::default();
        assert!(c.enabled);
        assert_eq!(c.system_interval_secs, 10);
        assert!(c.validate().is_empty());
        let zero = MetricsConfig {
            system_interval_secs: 0,
            ..c.clone()
        };
        assert_eq!(
            zero.validate()[0].key,
            "collectors.metrics.system_interval_secs"
        );
        assert!(toml::from_str::<MetricsConfig>("interval = 3").is_err());
    }

    #[test]
    fn scrape_targets_are_validated_with_their_index() {
        let c: MetricsConfig = toml::from_str(
            "[[prometheus]]\nurl = \"http://a:9100/metrics\"\n\
             [[prometheus]]\nurl = \"http://a:9100/metrics\"\ninterval_secs = 0\n",
        )
        .unwrap();
        let keys: Vec<String> = c.validate().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "collectors.metrics.prometheus[1].interval_secs",
                "collectors.metrics.prometheus[1].url"
            ]
        );
    }
}
