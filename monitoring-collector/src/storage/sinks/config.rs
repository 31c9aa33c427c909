//! `[[storage.sinks]]`: the extra fan-out sinks beside the primary store.
//!
//! One flat table per sink with a `type` key rather than a serde enum per type:
//! serde cannot combine internally tagged enums with `deny_unknown_fields`, and an
//! unknown key must stay an error with its line. [`SinkConfig::validate`] rejects
//! keys that do not apply to the sink's type instead.

use std::path::PathBuf;

use monitoring_common::config::Problem;
use serde::Deserialize;

/// Kinds of sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkType {
    /// NDJSON files, rotated by size and age, optionally gzip-compressed.
    File,
    /// NDJSON on standard output.
    Console,
    /// Accepts and discards (for benchmarks and tests), counting what it got.
    Blackhole,
    /// Metrics to a Prometheus remote-write receiver (protobuf + snappy).
    PrometheusRemoteWrite,
    /// Another PostgreSQL database (same schema as the postgres store).
    Postgres,
    /// Another ClickHouse database (same schema as the clickhouse store).
    Clickhouse,
}

impl SinkType {
    /// The name used in configuration and as the default sink name.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkType::File => "file",
            SinkType::Console => "console",
            SinkType::Blackhole => "blackhole",
            SinkType::PrometheusRemoteWrite => "prometheus_remote_write",
            SinkType::Postgres => "postgres",
            SinkType::Clickhouse => "clickhouse",
        }
    }
}

/// Event kinds a sink can be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// Log events.
    Log,
    /// Metric samples.
    Metric,
    /// Flow summaries.
    Flow,
}

/// One `[[storage.sinks]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// What it is. Required.
    #[serde(rename = "type")]
    pub kind: SinkType,
    /// Name in logs and in the `sink` label of the collector's metrics; unique.
    /// Default: the type (`file`, `console`...).
    #[serde(default)]
    pub name: Option<String>,
    /// `true`: a batch is acknowledged to the agent only once this sink has written
    /// it (a dead sink stops delivery, losing nothing). `false` (default):
    /// best-effort, through its own bounded queue; what does not fit is dropped and
    /// counted, and the agents never wait for it.
    #[serde(default)]
    pub required: bool,
    /// Routing: the event kinds this sink receives. Default: all it can take
    /// (`prometheus_remote_write` takes metrics only).
    #[serde(default)]
    pub kinds: Option<Vec<RouteKind>>,
    /// Routing: only log events at least this severe (`emergency` .. `trace`); logs
    /// without a severity pass. Default: all.
    #[serde(default)]
    pub min_severity: Option<String>,
    /// Best-effort sinks: batches waiting in the sink's queue. Default 1024.
    #[serde(default = "default_queue_batches")]
    pub queue_batches: usize,
    /// First retry delay after a failed write, ms; doubles up to `retry_max_ms`.
    /// Default 100.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Longest retry delay, ms. Default 10000.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Required sinks: attempts per batch before the agent is told to retry later.
    /// Default 3.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Network sinks: connect and request timeout, ms. Default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// `prometheus_remote_write`, `postgres`, `clickhouse`: where to write.
    #[serde(default)]
    pub url: Option<String>,
    /// `prometheus_remote_write`: a bearer token sent in `Authorization`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// `file`: the file written (rotated files get a timestamp suffix beside it).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `file`: rotate when the file reaches this many bytes. Default 100 MiB.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// `file`: rotate when the file is this old, seconds. Default 3600.
    #[serde(default)]
    pub max_age_secs: Option<u64>,
    /// `file`: rotated files kept (older ones are deleted); 0 keeps all. Default 10.
    #[serde(default)]
    pub max_files: Option<usize>,
    /// `file`: gzip rotated files. Default false.
    #[serde(default)]
    pub gzip: Option<bool>,
}

fn default_queue_batches() -> usize {
    1024
}
fn default_retry_initial_ms() -> u64 {
    100
}
fn default_retry_max_ms() -> u64 {
    10_000
}
fn default_max_attempts() -> u32 {
    3
}
fn default_timeout_ms() -> u64 {
    10_000
}

impl SinkConfig {
    /// The sink's name: `name`, or its type.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.kind.as_str())
    }

    /// The routing severity floor, parsed.
    pub fn min_severity(
        &self,
    ) -> Option<Result<monitoring_common::Severity, monitoring_common::event::UnknownSeverity>>
    {
        self.min_severity.as_deref().map(str::parse)
    }

    /// For a `postgres` or `clickhouse` sink: the settings of the store it writes to,
    /// which has no retention pass of its own (that runs on the primary store only).
    pub fn store_config(&self) -> Option<crate::storage::config::StorageConfig> {
        use crate::storage::config::{StorageBackend, StorageConfig};
        let backend = match self.kind {
            SinkType::Postgres => StorageBackend::Postgres,
            SinkType::Clickhouse => StorageBackend::Clickhouse,
            _ => return None,
        };
        Some(StorageConfig {
            backend,
            url: self.url.clone(),
            retention_days: 0,
            timeout_ms: self.timeout_ms,
            read_pool_size: 2,
            ..StorageConfig::default()
        })
    }

    /// Problems with this table; keys are prefixed with `prefix`
    /// (`storage.sinks[0]`).
    pub fn validate(&self, prefix: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(Problem::new(format!("{prefix}.{key}"), message));
        };
        let kind = self.kind.as_str();
        let needs_url = matches!(
            self.kind,
            SinkType::PrometheusRemoteWrite | SinkType::Postgres | SinkType::Clickhouse
        );
        match (&self.url, needs_url) {
            (None, true) => problem("url", format!("is required for type {kind}")),
            (Some(_), false) => problem("url", format!("does not apply to type {kind}")),
            (Some(url), true)
                if self.kind == SinkType::PrometheusRemoteWrite
                    && !(url.starts_with("http://") || url.starts_with("https://")) =>
            {
                problem("url", "must be an http:// or https:// URL".into());
            }
            _ => {}
        }
        if let Some(store) = self.store_config() {
            // The URL checks of the store itself; its messages never repeat the URL.
            for p in store.validate() {
                if p.key == "storage.url" {
                    problem("url", p.message);
                }
            }
        }
        match &self.bearer_token {
            Some(_) if self.kind != SinkType::PrometheusRemoteWrite => {
                problem("bearer_token", format!("does not apply to type {kind}"));
            }
            Some(token) if token.trim().is_empty() => {
                problem(
                    "bearer_token",
                    "must not be empty (leave it out instead)".into(),
                );
            }
            _ => {}
        }
        let file_keys = [
            ("max_bytes", self.max_bytes.is_some()),
            ("max_age_secs", self.max_age_secs.is_some()),
            ("max_files", self.max_files.is_some()),
            ("gzip", self.gzip.is_some()),
        ];
        if self.kind == SinkType::File {
            match &self.path {
                None => problem("path", "is required for type file".into()),
                Some(p) if p.as_os_str().is_empty() => {
                    problem("path", "must name a file".into());
                }
                Some(_) => {}
            }
            if self.max_bytes.is_some_and(|b| b < 4096) {
                problem("max_bytes", "must be at least 4096".into());
            }
            if self.max_age_secs == Some(0) {
                problem("max_age_secs", "must be at least 1".into());
            }
        } else {
            if self.path.is_some() {
                problem("path", format!("does not apply to type {kind}"));
            }
            for (key, set) in file_keys {
                if set {
                    problem(key, format!("does not apply to type {kind}"));
                }
            }
        }
        if let Some(name) = &self.name
            && (name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            problem("name", "must be 1 to 64 letters, digits, `_` or `-`".into());
        }
        if let Some(kinds) = &self.kinds {
            if kinds.is_empty() {
                problem(
                    "kinds",
                    "must list at least one of log, metric, flow".into(),
                );
            }
            if self.kind == SinkType::PrometheusRemoteWrite
                && kinds.iter().any(|k| *k != RouteKind::Metric)
            {
                problem("kinds", "prometheus_remote_write takes metrics only".into());
            }
        }
        if let Some(Err(e)) = self.min_severity() {
            problem("min_severity", e.to_string());
        }
        if self.required && self.queue_batches != default_queue_batches() {
            problem(
                "queue_batches",
                "does not apply to a required sink (it has no queue)".into(),
            );
        }
        if !(1..=1_000_000).contains(&self.queue_batches) {
            problem("queue_batches", "must be between 1 and 1000000".into());
        }
        if self.retry_initial_ms == 0 || self.retry_initial_ms > self.retry_max_ms {
            problem(
                "retry_initial_ms",
                "must be at least 1 and at most retry_max_ms".into(),
            );
        }
        if self.retry_max_ms > 3_600_000 {
            problem("retry_max_ms", "must be at most 3600000 (an hour)".into());
        }
        if !(1..=100).contains(&self.max_attempts) {
            problem("max_attempts", "must be between 1 and 100".into());
        }
        if !(1..=600_000).contains(&self.timeout_ms) {
            problem("timeout_ms", "must be between 1 and 600000".into());
        }
        problems
    }
}

/// Problems with the whole `[[storage.sinks]]` list: each table, and names that
/// repeat (they would share metric series).
pub fn validate_all(sinks: &[SinkConfig]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, sink) in sinks.iter().enumerate() {
        let prefix = format!("storage.sinks[{i}]");
        problems.extend(sink.validate(&prefix));
        if !seen.insert(sink.name().to_string()) {
            problems.push(Problem::new(
                format!("{prefix}.name"),
                format!(
                    "sink name {:?} is used twice: give each sink of the same type a name",
                    sink.name()
                ),
            ));
        }
    }
    problems
}
