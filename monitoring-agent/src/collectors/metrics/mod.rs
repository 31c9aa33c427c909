//! Metric sources.

pub mod host;
