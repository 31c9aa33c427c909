//! Configuration reload on SIGHUP: re-reading the file, and deciding what of a new
//! configuration the running agent can take.
//!
//! The file is loaded exactly as at start (`${VAR}` expansion, parsing, validation);
//! a file that fails is rejected whole, logged with the same `file:line: key` messages
//! as `check-config`, and the running configuration stays. A valid one goes to the
//! agent ([`crate::agent::run_reloadable`]), which applies the sources' tables
//! (`[collectors.logs]`, `[collectors.metrics]`, `[collectors.traffic]`,
//! `[agent] tags`) in place and keeps
//! every other key as it was: those shape the pipeline, the connection or the state
//! on disk, which cannot change under data in flight without a restart.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{self, AgentConfig};
use crate::telemetry::Telemetry;

/// What a new configuration changes against the running one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    /// Changed keys applied at once, dotted (`collectors.logs.files`).
    pub applied: Vec<&'static str>,
    /// Changed keys that need a restart to take effect; they keep their running value.
    pub needs_restart: Vec<&'static str>,
}

impl Changes {
    /// Whether the file source must be reconfigured.
    pub fn logs(&self) -> bool {
        self.applied
            .iter()
            .any(|k| k.starts_with("collectors.logs."))
    }

    /// Whether the sampled sources (host metrics, Prometheus targets, traffic) must
    /// be restarted (the tags are labels of every sample).
    pub fn sampled(&self) -> bool {
        self.applied.iter().any(|k| {
            k.starts_with("collectors.metrics.") || *k == "collectors.traffic" || *k == "agent.tags"
        })
    }
}

/// The keys that differ between `running` and `new`, split into those applied on
/// reload and those that need a restart.
pub fn diff(running: &AgentConfig, new: &AgentConfig) -> Changes {
    let (a, b) = (running, new);
    let (ac, bc) = (&a.collector, &b.collector);
    let (ab, bb) = (&a.buffer, &b.buffer);
    let (al, bl) = (&a.collectors.logs, &b.collectors.logs);
    let (am, bm) = (&a.collectors.metrics, &b.collectors.metrics);
    let restart = [
        ("agent.id", a.agent.id != b.agent.id),
        (
            "agent.shutdown_timeout_secs",
            a.agent.shutdown_timeout_secs != b.agent.shutdown_timeout_secs,
        ),
        ("collector.endpoint", ac.endpoint != bc.endpoint),
        ("collector.endpoints", ac.endpoints != bc.endpoints),
        ("collector.auth_token", ac.auth_token != bc.auth_token),
        (
            "collector.max_in_flight",
            ac.max_in_flight != bc.max_in_flight,
        ),
        (
            "collector.connect_timeout_secs",
            ac.connect_timeout_secs != bc.connect_timeout_secs,
        ),
        ("collector.tls", ac.tls != bc.tls),
        ("buffer.max_events", ab.max_events != bb.max_events),
        (
            "buffer.flush_interval_ms",
            ab.flush_interval_ms != bb.flush_interval_ms,
        ),
        (
            "buffer.max_batch_events",
            ab.max_batch_events != bb.max_batch_events,
        ),
        (
            "buffer.max_batch_bytes",
            ab.max_batch_bytes != bb.max_batch_bytes,
        ),
        ("buffer.compression", ab.compression != bb.compression),
        (
            "buffer.compression_level",
            ab.compression_level != bb.compression_level,
        ),
        ("buffer.when_full", ab.when_full != bb.when_full),
        ("buffer.disk", ab.disk != bb.disk),
        ("state.dir", a.state.dir != b.state.dir),
        ("control.enabled", a.control.enabled != b.control.enabled),
        ("control.listen", a.control.listen != b.control.listen),
        // Every known file content is keyed by a hash of this many first bytes.
        (
            "collectors.logs.fingerprint_bytes",
            al.fingerprint_bytes != bl.fingerprint_bytes,
        ),
        // The journald source is started once; its reader holds the journal open.
        ("collectors.logs.journald", al.journald != bl.journald),
        (
            "collectors.logs.journald_units",
            al.journald_units != bl.journald_units,
        ),
    ];
    let applied = [
        ("agent.tags", a.agent.tags != b.agent.tags),
        ("collectors.logs.enabled", al.enabled != bl.enabled),
        ("collectors.logs.files", al.files != bl.files),
        ("collectors.logs.exclude", al.exclude != bl.exclude),
        ("collectors.logs.read_from", al.read_from != bl.read_from),
        (
            "collectors.logs.max_line_bytes",
            al.max_line_bytes != bl.max_line_bytes,
        ),
        (
            "collectors.logs.rescan_interval_ms",
            al.rescan_interval_ms != bl.rescan_interval_ms,
        ),
        (
            "collectors.logs.poll_interval_ms",
            al.poll_interval_ms != bl.poll_interval_ms,
        ),
        (
            "collectors.logs.checkpoint_interval_ms",
            al.checkpoint_interval_ms != bl.checkpoint_interval_ms,
        ),
        (
            "collectors.logs.max_open_files",
            al.max_open_files != bl.max_open_files,
        ),
        (
            "collectors.logs.rotated_idle_close_ms",
            al.rotated_idle_close_ms != bl.rotated_idle_close_ms,
        ),
        (
            "collectors.logs.rotated_max_open_secs",
            al.rotated_max_open_secs != bl.rotated_max_open_secs,
        ),
        (
            "collectors.logs.checkpoint_retention_secs",
            al.checkpoint_retention_secs != bl.checkpoint_retention_secs,
        ),
        (
            "collectors.logs.partial_line_timeout_ms",
            al.partial_line_timeout_ms != bl.partial_line_timeout_ms,
        ),
        ("collectors.logs.multiline", al.multiline != bl.multiline),
        ("collectors.logs.filter", al.filter != bl.filter),
        ("collectors.metrics.enabled", am.enabled != bm.enabled),
        (
            "collectors.metrics.system_interval_secs",
            am.system_interval_secs != bm.system_interval_secs,
        ),
        (
            "collectors.metrics.top_processes",
            am.top_processes != bm.top_processes,
        ),
        (
            "collectors.metrics.tcp_states",
            am.tcp_states != bm.tcp_states,
        ),
        (
            "collectors.metrics.prometheus",
            am.prometheus != bm.prometheus,
        ),
        (
            "collectors.traffic",
            a.collectors.traffic != b.collectors.traffic,
        ),
    ];
    let changed = |keys: &[(&'static str, bool)]| -> Vec<&'static str> {
        keys.iter().filter(|(_, c)| *c).map(|(k, _)| *k).collect()
    };
    Changes {
        applied: changed(&applied),
        needs_restart: changed(&restart),
    }
}

/// The configuration that runs once `new` is applied: `new`'s sources and tags,
/// `running`'s everything else (what needs a restart keeps running as it was).
pub fn merge(running: &AgentConfig, new: &AgentConfig) -> AgentConfig {
    let mut merged = running.clone();
    merged.agent.tags = new.agent.tags.clone();
    merged.collectors.metrics = new.collectors.metrics.clone();
    merged.collectors.traffic = new.collectors.traffic.clone();
    merged.collectors.logs = new.collectors.logs.clone();
    merged.collectors.logs.fingerprint_bytes = running.collectors.logs.fingerprint_bytes;
    merged.collectors.logs.journald = running.collectors.logs.journald.clone();
    merged.collectors.logs.journald_units = running.collectors.logs.journald_units.clone();
    merged
}

/// Logs what a reload changes: a WARN for each key that needs a restart, an INFO
/// with those applied.
pub fn log(changes: &Changes) {
    for key in &changes.needs_restart {
        warn!(
            message = "Changed key needs a restart to take effect; it keeps its running value.",
            key,
        );
    }
    if changes.applied.is_empty() {
        info!(message = "Configuration reloaded; nothing to apply.");
    } else {
        info!(
            message = "Configuration reloaded and applied.",
            changed = %changes.applied.join(", "),
        );
    }
}

/// Re-reads `path` on every SIGHUP and sends each valid configuration to `configs`;
/// one that fails is logged at ERROR, counted, and dropped. Ends on `stop` or when
/// the receiver is gone; SIGHUP stays caught (ignored) after that, so that a late
/// one cannot kill an agent that is shutting down.
pub fn watch_sighup(
    path: PathBuf,
    telemetry: Arc<Telemetry>,
    configs: mpsc::Sender<AgentConfig>,
    stop: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while let Some(Some(())) = stop.run_until_cancelled(hup.recv()).await {
            info!(message = "SIGHUP received; reloading the configuration.", path = %path.display());
            let file = path.clone();
            let loaded = match tokio::task::spawn_blocking(move || config::load(&file)).await {
                Ok(loaded) => loaded,
                Err(join) => {
                    error!(message = "Configuration reload task failed.", error = %join);
                    count(&telemetry, "error");
                    continue;
                }
            };
            match loaded {
                Ok(config) => {
                    if configs.send(config).await.is_err() {
                        break;
                    }
                }
                Err(problems) => {
                    // One event per problem, worded as check-config prints it.
                    for problem in problems.to_string().lines() {
                        error!(
                            message = "New configuration rejected; the running one stays.",
                            problem,
                        );
                    }
                    count(&telemetry, "error");
                }
            }
        }
    }))
}

/// Counts a reload with `result` (`ok` or `error`).
pub fn count(telemetry: &Telemetry, result: &'static str) {
    telemetry
        .config_reloads
        .get_or_create(&[("result", result)])
        .inc();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use std::path::Path;

    use monitoring_common::config::parse;

    use super::*;

    fn config(text: &str) -> AgentConfig {
        parse(text, Path::new("agent.toml")).unwrap()
    }

    const BASE: &str = "\
[agent]
id = \"a1\"
tags = { env = \"prod\" }
[collector]
endpoint = \"ws://127.0.0.1:7400/ingest\"
[state]
dir = \"/var/lib/agent\"
[collectors.logs]
files = [\"/var/log/a.log\"]
[collectors.metrics]
system_interval_secs = 10
";

    #[test]
    fn the_same_configuration_changes_nothing() {
        let changes = diff(&config(BASE), &config(BASE));
        assert_eq!(changes, Changes::default());
        assert!(!changes.logs() && !changes.sampled());
    }

    #[test]
    fn journald_keys_need_a_restart() {
        let new = BASE.replace(
            "[collectors.metrics]",
            "journald_units = [\"nginx\"]\n[collectors.logs.journald]\nread_from = \"beginning\"\n[collectors.metrics]",
        );
        let (running, new) = (config(BASE), config(&new));
        let changes = diff(&running, &new);
        assert_eq!(
            changes.needs_restart,
            ["collectors.logs.journald", "collectors.logs.journald_units"]
        );
        assert!(changes.applied.is_empty() && !changes.logs());
        let merged = merge(&running, &new);
        assert_eq!(merged.collectors.logs, running.collectors.logs);
    }

    #[test]
    fn source_keys_are_applied() {
        let new = BASE
            .replace(
                "\"/var/log/a.log\"]",
                "\"/var/log/a.log\", \"/var/log/b.log\"]\nexclude = [\"*.gz\"]",
            )
            .replace("system_interval_secs = 10", "system_interval_secs = 2");
        let changes = diff(&config(BASE), &config(&new));
        assert_eq!(
            changes.applied,
            [
                "collectors.logs.files",
                "collectors.logs.exclude",
                "collectors.metrics.system_interval_secs"
            ]
        );
        assert!(changes.needs_restart.is_empty());
        assert!(changes.logs() && changes.sampled());
    }

    #[test]
    fn tags_restart_host_metrics_only() {
        let new = BASE.replace("env = \"prod\"", "env = \"staging\"");
        let changes = diff(&config(BASE), &config(&new));
        assert_eq!(changes.applied, ["agent.tags"]);
        assert!(changes.sampled() && !changes.logs());
    }

    #[test]
    fn pipeline_connection_and_state_keys_need_a_restart() {
        let new = "\
[agent]
id = \"a2\"
tags = { env = \"prod\" }
shutdown_timeout_secs = 3
[collector]
endpoint = \"ws://10.0.0.1:7400/ingest\"
auth_token = \"t0ken\"
max_in_flight = 2
[buffer]
max_events = 5
compression = \"zstd\"
compression_level = 6
[buffer.disk]
path = \"/var/lib/agent/spool\"
[state]
dir = \"/var/lib/other\"
[control]
listen = \"127.0.0.1:9999\"
[collectors.logs]
files = [\"/var/log/a.log\"]
fingerprint_bytes = 512
[collectors.metrics]
system_interval_secs = 10
";
        let changes = diff(&config(BASE), &config(new));
        assert!(changes.applied.is_empty(), "{changes:?}");
        assert_eq!(
            changes.needs_restart,
            [
                "agent.id",
                "agent.shutdown_timeout_secs",
                "collector.endpoint",
                "collector.auth_token",
                "collector.max_in_flight",
                "buffer.max_events",
                "buffer.compression",
                "buffer.compression_level",
                "buffer.disk",
                "state.dir",
                "control.listen",
                "collectors.logs.fingerprint_bytes",
            ]
        );
        assert!(!changes.logs() && !changes.sampled());
    }

    #[test]
    fn endpoint_changes_need_a_restart_like_endpoint() {
        let new = BASE.replace(
            "endpoint = \"ws://127.0.0.1:7400/ingest\"",
            "endpoints = [\"ws://127.0.0.1:7400/ingest\", \"ws://10.0.0.2:7400/ingest\"]",
        );
        let (running, new) = (config(BASE), config(&new));
        let changes = diff(&running, &new);
        assert_eq!(
            changes.needs_restart,
            ["collector.endpoint", "collector.endpoints"]
        );
        assert!(changes.applied.is_empty());
        let merged = merge(&running, &new);
        assert_eq!(
            merged.collector.endpoint_urls(),
            running.collector.endpoint_urls()
        );
    }

    #[test]
    fn the_merged_configuration_keeps_what_needs_a_restart() {
        let new = BASE
            .replace("id = \"a1\"", "id = \"a2\"")
            .replace("dir = \"/var/lib/agent\"", "dir = \"/tmp/x\"")
            .replace(
                "files = [\"/var/log/a.log\"]",
                "files = [\"/var/log/b.log\"]\nfingerprint_bytes = 512\npoll_interval_ms = 50",
            )
            .replace("env = \"prod\"", "env = \"dev\"");
        let (running, new) = (config(BASE), config(&new));
        let merged = merge(&running, &new);
        assert_eq!(merged.agent.id.as_deref(), Some("a1"));
        assert_eq!(merged.state.dir, Path::new("/var/lib/agent"));
        assert_eq!(merged.collectors.logs.files, ["/var/log/b.log"]);
        assert_eq!(merged.collectors.logs.poll_interval_ms, 50);
        assert_eq!(
            merged.collectors.logs.fingerprint_bytes,
            running.collectors.logs.fingerprint_bytes
        );
        assert_eq!(merged.agent.tags["env"], "dev");
        // A second reload of the same file warns again about the same keys only.
        let again = diff(&merged, &new);
        assert!(again.applied.is_empty(), "{again:?}");
        assert_eq!(
            again.needs_restart,
            ["agent.id", "state.dir", "collectors.logs.fingerprint_bytes"]
        );
    }
}
