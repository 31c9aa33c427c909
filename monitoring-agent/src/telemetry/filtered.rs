//! `monitoring_agent_events_filtered_total{source, reason}`: log events a source read
//! and consumed without shipping them, because `[collectors.logs.filter]` (or the
//! journald source's own table) said so.
//!
//! Filtered events never enter the pipeline, so they are not in
//! `events_read_total` and are not drops: a host that ships only its errors is not
//! losing anything. Only the log sources filter; every pair of log source and
//! [`FilterReason`] exists at zero from the start, and counting is an array index
//! and an atomic add.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::TwoLabels;
use crate::collectors::logs::filter::FilterReason;
use crate::pipeline::Source;

/// The sources that filter, in cell order.
const FILTERING: [Source; 2] = [Source::File, Source::Journald];

/// The filtered-events counter, shared by the log sources.
#[derive(Debug, Clone)]
pub struct FilteredEvents {
    family: Family<TwoLabels, Counter>,
    /// `[source cell * FilterReason::ALL.len() + reason index]`.
    cells: Arc<[Counter]>,
}

impl Default for FilteredEvents {
    fn default() -> Self {
        let family = Family::<TwoLabels, Counter>::default();
        let mut cells = Vec::with_capacity(FILTERING.len() * FilterReason::ALL.len());
        for source in FILTERING {
            for reason in FilterReason::ALL {
                cells.push(
                    family
                        .get_or_create(&[("reason", reason.as_str()), ("source", source.as_str())])
                        .clone(),
                );
            }
        }
        FilteredEvents {
            family,
            cells: cells.into(),
        }
    }
}

impl FilteredEvents {
    /// The family, for registration.
    pub fn family(&self) -> Family<TwoLabels, Counter> {
        self.family.clone()
    }

    fn cell(&self, source: Source, reason: FilterReason) -> Option<&Counter> {
        let s = FILTERING.iter().position(|&f| f == source)?;
        let r = FilterReason::ALL.iter().position(|&f| f == reason)?;
        self.cells.get(s * FilterReason::ALL.len() + r)
    }

    /// Counts one event of `source` filtered for `reason` (a source that does not
    /// filter is not counted; none calls this).
    pub fn inc(&self, source: Source, reason: FilterReason) {
        if let Some(c) = self.cell(source, reason) {
            c.inc();
        }
    }

    /// Events of `source` filtered so far for `reason`.
    pub fn get(&self, source: Source, reason: FilterReason) -> u64 {
        self.cell(source, reason).map_or(0, Counter::get)
    }

    /// Events of `source` filtered so far for any reason.
    pub fn total_for(&self, source: Source) -> u64 {
        FilterReason::ALL.iter().map(|&r| self.get(source, r)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_log_source_and_reason_has_its_own_series() {
        let f = FilteredEvents::default();
        let mut n = 0;
        for source in FILTERING {
            for reason in FilterReason::ALL {
                n += 1;
                for _ in 0..n {
                    f.inc(source, reason);
                }
                let labels = [("reason", reason.as_str()), ("source", source.as_str())];
                assert_eq!(f.family.get_or_create(&labels).get(), n, "{labels:?}");
                assert_eq!(f.get(source, reason), n);
            }
        }
        assert_eq!(f.total_for(Source::File), 1 + 2 + 3);
        f.inc(Source::HostMetrics, FilterReason::Excluded);
        assert_eq!(f.get(Source::HostMetrics, FilterReason::Excluded), 0);
    }

    #[test]
    fn the_filtered_counter_is_registered_and_shared_by_the_log_sources() {
        let t = super::super::Telemetry::new();
        let text = t.encode();
        for reason in FilterReason::ALL {
            for source in ["file", "journald"] {
                let series = format!(
                    "monitoring_agent_events_filtered_total{{reason=\"{}\",source=\"{source}\"}} 0",
                    reason.as_str()
                );
                assert!(text.contains(&series), "{series} missing:\n{text}");
            }
        }
        t.files.filtered.inc(Source::File, FilterReason::Severity);
        t.journald
            .filtered
            .inc(Source::Journald, FilterReason::Excluded);
        let text = t.encode();
        assert!(text.contains(
            "monitoring_agent_events_filtered_total{reason=\"severity\",source=\"file\"} 1"
        ));
        assert!(text.contains(
            "monitoring_agent_events_filtered_total{reason=\"excluded\",source=\"journald\"} 1"
        ));
        assert_eq!(t.filtered.total_for(Source::File), 1);
    }
}
