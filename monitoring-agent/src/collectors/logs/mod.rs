//! Log sources: tailed files (`file`); journald comes later beside it.
//!
//! - [`file`]: the file tail source.
//! - [`filter`]: which events a source ships (include, exclude, min_severity).

pub mod file;
pub mod filter;

pub use file::{FileMetrics, FileSourceError, LogsConfig, ReadFrom};
