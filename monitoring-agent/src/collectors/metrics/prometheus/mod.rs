//! Prometheus scrape targets (`[[collectors.metrics.prometheus]]`).
//!
//! - [`exposition`]: the line grammar of the text formats (0.0.4 and OpenMetrics).
//! - [`families`]: lines grouped into samples (histograms, summaries), checked.

pub mod exposition;
pub mod families;

#[cfg(test)]
mod tests;

pub use exposition::Format;
pub use families::{ExpositionError, Sample, parse};
