//! The agent's configuration (`config/agent.toml`), as a tree of serde structs.
//!
//! Every table denies unknown keys, every field documents its default, and
//! [`AgentConfig`]'s `validate()` reports every problem at once with its dotted key;
//! [`load`] adds the file and line (see `monitoring_common::config`). `${VAR}` and
//! `${VAR:-default}` are expanded from the environment before parsing, which is how a
//! token stays out of the file: `auth_token = "${MONITORING_AGENT_TOKEN:-}"`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use monitoring_common::config::{ConfigError, Problem, Validate};
use monitoring_common::protocol::Codec;
use serde::Deserialize;

use crate::buffer::WhenFull;
use crate::buffer::disk::DiskConfig;
use crate::collectors::logs::LogsConfig;
use crate::collectors::metrics::MetricsConfig;
use crate::collectors::traffic::TrafficConfig;

mod collector;

pub use collector::{CollectorConfig, DEFAULT_ENDPOINT, MAX_ENDPOINTS, Secret};

/// Largest uncompressed batch: well under the collector's default frame limit (8 MiB)
/// even for data that does not compress.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// The collector's default limit of events per batch.
const MAX_BATCH_EVENTS: usize = 100_000;

/// The whole agent configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// `[agent]`: identity and lifecycle.
    pub agent: AgentSection,
    /// `[collector]`: where events go.
    pub collector: CollectorConfig,
    /// `[buffer]`: the ring buffer and the batcher.
    pub buffer: BufferConfig,
    /// `[state]`: where checkpoints live.
    pub state: StateConfig,
    /// `[collectors]`: the sources.
    pub collectors: CollectorsConfig,
    /// `[control]`: the agent's own `/health` and `/metrics`.
    pub control: ControlConfig,
}

/// `[agent]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSection {
    /// The agent's id, sent to the collector. Default: this machine's host name.
    pub id: Option<String>,
    /// Labels added to every metric this agent produces (e.g. `env = "prod"`).
    /// Default: none.
    pub tags: BTreeMap<String, String>,
    /// On SIGTERM, how long to keep delivering and waiting for acknowledgements
    /// before exiting, in seconds. What is not acknowledged by then is read again
    /// after a restart. Default `10`.
    pub shutdown_timeout_secs: u64,
}

impl Default for AgentSection {
    fn default() -> Self {
        AgentSection {
            id: None,
            tags: BTreeMap::new(),
            shutdown_timeout_secs: 10,
        }
    }
}

/// `[buffer]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Capacity of the ring buffer, in events. Default `10000`.
    pub max_events: usize,
    /// Longest a batch stays open after its first event, in milliseconds, while
    /// earlier batches await acknowledgement (with nothing in flight a batch is
    /// sent at once). Default `1000`.
    pub flush_interval_ms: u64,
    /// Most events in one batch. Default `1000`.
    pub max_batch_events: usize,
    /// Uncompressed bytes at which a batch is closed. Default `1048576` (1 MiB).
    pub max_batch_bytes: usize,
    /// Payload compression: `"none"`, `"snappy"`, `"lz4"`, `"gzip"` or `"zstd"`.
    /// Default `"lz4"`.
    pub compression: Codec,
    /// Level of `compression`, for `"gzip"` (1 to 9, default 1) and `"zstd"` (1 to 19,
    /// default 3); higher levels trade agent CPU for smaller batches. Not allowed
    /// with the other codecs. Default: the codec's.
    pub compression_level: Option<i32>,
    /// When the buffer is full: `"block"` (sources wait; tailed files stay on disk),
    /// `"drop_oldest"` or `"drop_newest"` (counted in
    /// `monitoring_agent_events_dropped_total`). Host metrics never wait: under
    /// `block` a sample that does not fit is skipped and counted. The disk spool
    /// applies the same policy when it is full. Default `"block"`.
    pub when_full: WhenFull,
    /// `[buffer.disk]`: the disk spool between batcher and transport. Default: off.
    pub disk: DiskConfig,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_events: 10_000,
            flush_interval_ms: 1000,
            max_batch_events: 1000,
            max_batch_bytes: 1024 * 1024,
            compression: Codec::Lz4,
            compression_level: None,
            when_full: WhenFull::Block,
            disk: DiskConfig::default(),
        }
    }
}

/// `[state]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory of the checkpoints; relative paths are relative to the working
    /// directory. Default `"var/agent"`.
    pub dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: PathBuf::from("var/agent"),
        }
    }
}

/// `[collectors]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorsConfig {
    /// `[collectors.logs]`: tailed files.
    pub logs: LogsConfig,
    /// `[collectors.metrics]`: host metrics and Prometheus scrape targets.
    pub metrics: MetricsConfig,
    /// `[collectors.traffic]`: flows from packet capture (feature `pcap`).
    pub traffic: TrafficConfig,
}

/// `[control]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Whether the control server runs. Default `true`.
    pub enabled: bool,
    /// Address of `GET /health` and `GET /metrics`, as `ip:port`.
    /// Default `"127.0.0.1:7402"`.
    pub listen: SocketAddr,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 7402)),
        }
    }
}

/// Reads, expands, parses and validates the agent configuration at `path`.
pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
    monitoring_common::config::load(path)
}

impl AgentConfig {
    /// The agent id: `[agent] id`, else the host name, else `"unknown-host"`.
    pub fn agent_id(&self) -> String {
        self.agent
            .id
            .clone()
            .or_else(|| sysinfo::System::host_name().ok())
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| "unknown-host".to_string())
    }

    /// `[agent] shutdown_timeout_secs` as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.agent.shutdown_timeout_secs)
    }
}

fn header_safe(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

fn check_range<T: PartialOrd + std::fmt::Display>(
    problems: &mut Vec<Problem>,
    key: &str,
    value: T,
    min: T,
    max: T,
    unit: &str,
) {
    if value < min || value > max {
        problems.push(Problem::new(
            key,
            format!("must be between {min} and {max}{unit}"),
        ));
    }
}

impl Validate for AgentConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if let Some(id) = &self.agent.id
            && (id.is_empty() || id.len() > 128 || !header_safe(id))
        {
            p.push(Problem::new(
                "agent.id",
                "must be 1 to 128 printable ASCII characters without spaces",
            ));
        }
        for key in self.agent.tags.keys() {
            let mut chars = key.chars();
            let ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                p.push(Problem::new(
                    format!("agent.tags.{key}"),
                    "a tag name must match [a-zA-Z_][a-zA-Z0-9_]*",
                ));
            }
        }
        check_range(
            &mut p,
            "agent.shutdown_timeout_secs",
            self.agent.shutdown_timeout_secs,
            0,
            3600,
            " seconds",
        );

        p.extend(self.collector.validate());

        let b = &self.buffer;
        check_range(
            &mut p,
            "buffer.max_events",
            b.max_events,
            1,
            10_000_000,
            " events",
        );
        check_range(
            &mut p,
            "buffer.flush_interval_ms",
            b.flush_interval_ms,
            1,
            3_600_000,
            " milliseconds",
        );
        check_range(
            &mut p,
            "buffer.max_batch_events",
            b.max_batch_events,
            1,
            MAX_BATCH_EVENTS,
            " events",
        );
        check_range(
            &mut p,
            "buffer.max_batch_bytes",
            b.max_batch_bytes,
            1024,
            MAX_BATCH_BYTES,
            " bytes",
        );
        if let Err(e) = b.compression.check_level(b.compression_level) {
            p.push(Problem::new("buffer.compression_level", e.to_string()));
        }
        p.extend(b.disk.validate(&self.state.dir));

        if self.state.dir.as_os_str().is_empty() {
            p.push(Problem::new("state.dir", "must not be empty"));
        }
        p.extend(self.collectors.logs.validate());
        p.extend(self.collectors.metrics.validate());
        p.extend(self.collectors.traffic.validate());
        p
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use monitoring_common::config::parse;

    use super::*;

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let c: AgentConfig = parse("", Path::new("agent.toml")).unwrap();
        assert_eq!(c.agent.id, None);
        assert!(!c.agent_id().is_empty());
        assert_eq!(c.agent.shutdown_timeout_secs, 10);
        assert_eq!(c.collector.endpoint_urls(), [DEFAULT_ENDPOINT]);
        assert_eq!(c.collector.token(), None);
        assert_eq!(c.collector.max_in_flight, 8);
        assert_eq!(c.collector.connect_timeout_secs, 10);
        assert_eq!(c.buffer, BufferConfig::default());
        assert_eq!(c.buffer.max_events, 10_000);
        assert_eq!(c.buffer.max_batch_bytes, 1 << 20);
        assert_eq!(c.buffer.compression, Codec::Lz4);
        assert_eq!(c.buffer.compression_level, None);
        assert_eq!(c.buffer.when_full, WhenFull::Block);
        assert_eq!(c.state.dir, PathBuf::from("var/agent"));
        assert!(c.collectors.logs.enabled);
        assert!(c.collectors.metrics.enabled);
        assert_eq!(c.control.listen.to_string(), "127.0.0.1:7402");
    }

    #[test]
    fn the_example_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/agent.toml");
        let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.collector.endpoint_urls(), [DEFAULT_ENDPOINT]);
        assert_eq!(c.buffer, BufferConfig::default());
        assert_eq!(c.collectors.logs.journald, Default::default());
        assert!(c.collectors.logs.journald_units.is_empty());
    }

    #[test]
    fn unknown_keys_are_located() {
        let text = "[buffer]\nmax_events = 5\nwhen_ful = \"block\"\n";
        let msg = parse::<AgentConfig>(text, Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("a.toml:3: key `buffer.when_ful`"), "{msg}");
        let text = "[collectors.logs]\nfilez = []\n";
        let msg = parse::<AgentConfig>(text, Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("a.toml:2: key `collectors.logs.filez`"),
            "{msg}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_file_line_and_key() {
        let text = "\
[agent]
id = \"has space\"
tags = { \"bad-tag\" = \"x\" }

[collector]
endpoint = \"http://x/ingest\"
max_in_flight = 0

[buffer]
max_batch_bytes = 10
compression = \"lz4\"
compression_level = 9

[collectors.metrics]
system_interval_secs = 0

[collectors.logs]
files = [\"relative/*.log\"]
";
        let err = parse::<AgentConfig>(text, Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = err.lines().collect();
        for expected in [
            "a.toml:2: key `agent.id`",
            "a.toml:6: key `collector.endpoint`",
            "a.toml:7: key `collector.max_in_flight`",
            "a.toml:10: key `buffer.max_batch_bytes`",
            "a.toml:12: key `buffer.compression_level`: lz4 takes no compression level",
            "a.toml:15: key `collectors.metrics.system_interval_secs`",
            "a.toml:18: key `collectors.logs.files`",
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(expected)),
                "{expected} not in\n{err}"
            );
        }
        assert!(err.contains("key `agent.tags.bad-tag`"), "{err}");
    }

    #[test]
    fn compression_levels_are_checked_per_codec() {
        let ok: AgentConfig = parse(
            "[buffer]\ncompression = \"zstd\"\ncompression_level = 6\n",
            Path::new("a.toml"),
        )
        .unwrap();
        assert_eq!(ok.buffer.compression_level, Some(6));
        let err = parse::<AgentConfig>(
            "[buffer]\ncompression = \"zstd\"\ncompression_level = 22\n",
            Path::new("a.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("a.toml:3: key `buffer.compression_level`: compression level 22 is out of range for zstd (1 to 19)"),
            "{err}"
        );
    }
}
