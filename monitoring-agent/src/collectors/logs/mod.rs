//! Log sources: tailed files (`file`); journald comes later beside it.

pub mod file;

pub use file::{FileMetrics, FileSourceError, LogsConfig, ReadFrom};
