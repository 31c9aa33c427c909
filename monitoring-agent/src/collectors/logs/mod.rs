//! Log sources: tailed files and the systemd journal.
//!
//! - [`file`]: the file tail source.
//! - [`journald`]: the journald source (reading needs the `journald` feature).
//! - [`filter`]: which events a source ships (include, exclude, min_severity).

pub mod file;
pub mod filter;
pub mod journald;

pub use file::{FileMetrics, FileSourceError, LogsConfig, ReadFrom};
