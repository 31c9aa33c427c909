//! The file tail source: follows the files matched by glob patterns, across rename
//! and copy-truncate rotation, and ships each line as a log event whose offset is
//! checkpointed only once the collector has acknowledged it.
//!
//! Layout, in the order data flows:
//!
//! - [`config`]: the `[collectors.logs]` table;
//! - `discovery`: patterns, exclusions, notifications;
//! - `fingerprint`: what makes a file the same content;
//! - `server`: the open files and the rotation decisions;
//! - `tail` and `reader`: reading one file and splitting lines (the hot path);
//! - `checkpoints`: acknowledged offsets in `<state dir>/files.json`;
//! - `run`: the entry point [`run`] and its loop;
//! - [`metrics`]: the source's own counters.
//!
//! Each event is `Event::log(now, path, line)` with an `offset` field (the byte
//! offset of the line's start), sent with `(progress, offset just past the line)` so
//! that the transport can advance the file's progress as batches are acknowledged.

pub mod config;
pub mod metrics;

// The criterion benchmarks' way in to the line splitting hot path; not an API.
#[doc(hidden)]
pub mod bench_support;

mod checkpoints;
mod discovery;
mod fingerprint;
mod multiline;
mod reader;
mod run;
mod server;
mod tail;

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use config::{LogsConfig, ReadFrom};
pub use metrics::FileMetrics;
pub use run::{FileReloader, run, run_reloadable};
pub use tail::OFFSET_FIELD;

/// Why the file source could not run.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    /// The state directory could not be created.
    #[error("{path}: cannot create the state directory: {source}")]
    StateDir {
        /// The directory (`[state] dir`).
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The checkpoint file exists but cannot be read (a corrupt one is set aside
    /// instead).
    #[error("{path}: cannot read file checkpoints: {source}")]
    ReadCheckpoints {
        /// The checkpoint file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A pattern of `files` or `exclude` is not a valid glob.
    #[error("invalid file pattern {pattern:?}: {error}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        error: String,
    },
    /// The reading thread failed.
    #[error("file source task failed: {0}")]
    Task(String),
}
