//! The journald source: reads the systemd journal (or a directory or file of journal
//! files) and ships each entry as a log event whose cursor is checkpointed only once
//! the collector has acknowledged it.
//!
//! Only [`config`] and [`metrics`] are built without the `journald` cargo feature,
//! so that such a build can reject a configuration that enables the source with a
//! precise message; the rest links libsystemd through the `systemd` crate.
//!
//! Layout, in the order data flows:
//!
//! - [`config`]: `[collectors.logs.journald]` and `journald_units`;
//! - `reader`: opening, filtering, resuming after a cursor, reading entries;
//! - `convert`: an entry's fields to an event (the field names are listed there);
//! - `checkpoint`: cursors in flight, `<state dir>/journald.json`;
//! - `run`: the source's thread and its loop ([`run()`]), where
//!   `[collectors.logs.journald.filter]` is applied to each entry's `MESSAGE`;
//! - [`metrics`]: the source's counters.
//!
//! Each event is a log event with `source` = `"journald"` (or the configured path),
//! `message` = `MESSAGE`, the severity from `PRIORITY`, the entry's realtime
//! timestamp, and the fields `unit`, `priority`, `pid`, `comm`, `hostname`,
//! `boot_id`, `syslog_identifier`, `transport` when the entry has them.

pub mod config;
pub mod metrics;

#[cfg(feature = "journald")]
mod checkpoint;
#[cfg(feature = "journald")]
mod convert;
#[cfg(feature = "journald")]
mod reader;
#[cfg(feature = "journald")]
mod run;

#[cfg(all(test, feature = "journald"))]
mod filter_tests;
#[cfg(all(test, feature = "journald"))]
pub(crate) mod testing;
#[cfg(all(test, feature = "journald"))]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use monitoring_common::Severity;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{JournalMatch, JournaldConfig};
pub use metrics::JournaldMetrics;
#[cfg(feature = "journald")]
pub use run::run;

use crate::collectors::logs::filter::LineFilter;
use crate::collectors::logs::{LogsConfig, ReadFrom};
use crate::pipeline::EventOutput;

/// Event `source` of entries read from the system journal.
pub const SOURCE: &str = "journald";

/// Why the journald source could not run.
#[derive(Debug, thiserror::Error)]
pub enum JournaldError {
    /// The state directory could not be created.
    #[error("{path}: cannot create the state directory: {source}")]
    StateDir {
        /// The directory (`[state] dir`).
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The checkpoint file exists but cannot be read (a corrupt one is set aside).
    #[error("{path}: cannot read the journal checkpoint: {source}")]
    ReadCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The journal could not be opened.
    #[error("cannot open {path} ([collectors.logs.journald] path): {error}")]
    Open {
        /// The directory or file, or "the system journal".
        path: String,
        /// What libsystemd said.
        error: String,
    },
    /// Placing the read pointer or adding filters failed.
    #[error("journal: cannot {what}: {error}")]
    Journal {
        /// What was being done.
        what: &'static str,
        /// What libsystemd said.
        error: String,
    },
    /// The reading thread failed.
    #[error("journald source task failed: {0}")]
    Task(String),
}

/// What the source needs from the configuration, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The journal directory or file; `None` for the system journal.
    pub path: Option<PathBuf>,
    /// The events' `source`: [`SOURCE`] or the path.
    pub source: String,
    /// `journald_units`, as configured.
    pub units: Vec<String>,
    /// Only this priority and more severe ones.
    pub max_priority: Option<Severity>,
    /// Further `FIELD=value` matches.
    pub matches: Vec<JournalMatch>,
    /// Where the first start begins.
    pub read_from: ReadFrom,
    /// Longest wait for new entries before the stop flag is checked again.
    pub wait_timeout: Duration,
    /// How often the acknowledged cursor is written (only when it changed).
    pub checkpoint_interval: Duration,
    /// Which entries ship, by their `MESSAGE`.
    pub filter: Arc<LineFilter>,
}

impl Settings {
    /// The settings of `[collectors.logs]` (assumed validated).
    pub fn from_config(logs: &LogsConfig) -> Settings {
        let j = &logs.journald;
        Settings {
            path: j.path.clone(),
            source: j
                .path
                .as_deref()
                .map_or_else(|| SOURCE.to_string(), |p| p.display().to_string()),
            units: logs.journald_units.clone(),
            max_priority: j.max_priority(),
            matches: j.parsed_matches(),
            read_from: j.read_from,
            wait_timeout: Duration::from_secs(1),
            checkpoint_interval: Duration::from_secs(1),
            // Validated with the configuration.
            filter: Arc::new(LineFilter::new(&j.filter).unwrap_or_default()),
        }
    }
}

/// Starts the source when `[collectors.logs.journald] enabled`; `None` otherwise. A
/// build without the `journald` feature never starts it (validation refuses
/// `enabled = true` there). Stops reading on `stop_reading`, writes its last
/// checkpoint and ends on `stop_all`.
pub fn spawn(
    logs: &LogsConfig,
    state_dir: &Path,
    output: impl EventOutput,
    metrics: Arc<JournaldMetrics>,
    stop_reading: &CancellationToken,
    stop_all: &CancellationToken,
) -> Option<JoinHandle<Result<(), JournaldError>>> {
    if !logs.journald.enabled {
        return None;
    }
    #[cfg(feature = "journald")]
    {
        Some(tokio::spawn(run(
            Settings::from_config(logs),
            state_dir.to_path_buf(),
            output,
            metrics,
            stop_reading.clone(),
            stop_all.clone(),
        )))
    }
    #[cfg(not(feature = "journald"))]
    {
        let _ = (state_dir, output, metrics, stop_reading, stop_all);
        tracing::error!(
            message = "The journald source is enabled but the agent was built without the `journald` feature."
        );
        None
    }
}
