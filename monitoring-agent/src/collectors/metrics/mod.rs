//! Metric sources and their `[collectors.metrics]` configuration.
//!
//! - [`host`]: this machine's CPU, memory, disks, network, load and inventory, via
//!   sysinfo.
//! - [`prometheus`]: samples scraped from Prometheus exporters.

pub mod host;
pub mod prometheus;

use monitoring_common::config::Problem;
use serde::{Deserialize, Serialize};

/// Longest accepted sampling interval: a day.
const MAX_INTERVAL_SECS: u64 = 86_400;

/// Configuration of the metric sources (`[collectors.metrics]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Whether host metrics are collected. Default `true`.
    pub enabled: bool,
    /// Seconds between two host metric samples. Default `10`.
    pub system_interval_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            system_interval_secs: 10,
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
            ..c
        };
        assert_eq!(
            zero.validate()[0].key,
            "collectors.metrics.system_interval_secs"
        );
        assert!(toml::from_str::<MetricsConfig>("interval = 3").is_err());
    }
}
