//! Prometheus scrape targets (`[[collectors.metrics.prometheus]]`).
//!
//! - [`config`]: the target's table.
//! - [`fetch`]: one HTTP GET of the exposition.
//! - [`exposition`]: the line grammar of the text formats (0.0.4 and OpenMetrics).
//! - [`families`]: lines grouped into samples (histograms, summaries), checked.
//! - [`scrape`]: the loop of one target: fetch, parse, label, emit, with `up`.

pub mod config;
pub mod exposition;
pub mod families;
pub mod fetch;
pub mod scrape;

#[cfg(test)]
mod scrape_tests;
#[cfg(test)]
mod tests;

pub use config::ScrapeConfig;
pub use exposition::Format;
pub use families::{ExpositionError, Sample, parse};
pub use scrape::{Target, run};
