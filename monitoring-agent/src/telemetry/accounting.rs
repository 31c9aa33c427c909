//! The per-source accounting: which kind of source each event came from, followed
//! through read, sent, acknowledged and dropped (with its reason).
//!
//! Every counter of a source is a handle made once (a [`PerSource`] array, a
//! [`DroppedEvents`] table of reason × source), all series of one registered family,
//! so that counting on the hot path is an array index and an atomic add, never a
//! label lookup, and every series exists at zero from the start.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{OneLabel, TwoLabels};
use crate::pipeline::{Source, SourceCounts};

/// Why events were dropped; the `reason` label of `monitoring_agent_events_dropped_total`.
///
/// Declared in the order of [`DropReason::ALL`]: the discriminant indexes the counter
/// table of [`DroppedEvents`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The buffer was full under `when_full = "drop_oldest"`: the oldest event made room.
    DropOldest,
    /// The buffer was full under `when_full = "drop_newest"`: the new event was refused.
    DropNewest,
    /// The buffer was full under `when_full = "block"` and a source that must not block
    /// (host metrics) skipped its sample.
    SampleSkipped,
    /// The collector rejected the batch for good (malformed, over a limit).
    Rejected,
    /// The disk spool was full under `when_full = "drop_newest"`: the batch was refused.
    SpoolFull,
    /// The disk spool was full under `when_full = "drop_oldest"`: its oldest segment
    /// was deleted (events in flight from it may still arrive).
    SpoolDropOldest,
}

impl DropReason {
    /// Every reason, so that each series exists (at zero) from the start.
    pub const ALL: [DropReason; 6] = [
        DropReason::DropOldest,
        DropReason::DropNewest,
        DropReason::SampleSkipped,
        DropReason::Rejected,
        DropReason::SpoolFull,
        DropReason::SpoolDropOldest,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::DropOldest => "drop_oldest",
            DropReason::DropNewest => "drop_newest",
            DropReason::SampleSkipped => "sample_skipped",
            DropReason::Rejected => "rejected",
            DropReason::SpoolFull => "spool_full",
            DropReason::SpoolDropOldest => "spool_drop_oldest",
        }
    }
}

/// One counter per source, in [`Source`] index order, all series of one family.
#[derive(Debug, Clone)]
pub struct PerSource {
    family: Family<OneLabel, Counter>,
    counters: [Counter; Source::COUNT],
}

impl Default for PerSource {
    fn default() -> Self {
        let family = Family::<OneLabel, Counter>::default();
        let counters = Source::ALL.map(|s| family.get_or_create(&[("source", s.as_str())]).clone());
        PerSource { family, counters }
    }
}

impl PerSource {
    /// Counts one event of `source`.
    #[inline]
    pub fn inc(&self, source: Source) {
        self.counters[source.index()].inc();
    }

    /// Counts `n` events of `source`.
    pub fn add(&self, source: Source, n: u64) {
        self.counters[source.index()].inc_by(n);
    }

    /// Counts a batch's events, each under its source.
    pub fn add_counts(&self, counts: &SourceCounts) {
        for (source, n) in counts.iter() {
            self.add(source, u64::from(n));
        }
    }

    /// The count of `source`.
    pub fn get(&self, source: Source) -> u64 {
        self.counters[source.index()].get()
    }

    /// The family, for registration.
    pub fn family(&self) -> Family<OneLabel, Counter> {
        self.family.clone()
    }
}

/// The per-source accounting: what each kind of source read, sent and got
/// acknowledged. Drops are in [`DroppedEvents`].
#[derive(Debug, Clone, Default)]
pub struct SourceMetrics {
    /// Events a source handed to the ring buffer (accepted, or dropped by its policy);
    /// a merged multiline event counts once.
    pub read: PerSource,
    /// Events in frames written to the collector, resends included.
    pub sent: PerSource,
    /// Events acknowledged as committed, each once.
    pub acked: PerSource,
}

/// The counter of dropped events, shared by every component that may drop.
#[derive(Debug, Clone)]
pub struct DroppedEvents {
    family: Family<TwoLabels, Counter>,
    /// `[reason index * Source::COUNT + source index]`.
    cells: Arc<[Counter]>,
}

impl Default for DroppedEvents {
    fn default() -> Self {
        let family = Family::<TwoLabels, Counter>::default();
        let mut cells = Vec::with_capacity(DropReason::ALL.len() * Source::COUNT);
        for reason in DropReason::ALL {
            for source in Source::ALL {
                cells.push(
                    family
                        .get_or_create(&[("reason", reason.as_str()), ("source", source.as_str())])
                        .clone(),
                );
            }
        }
        DroppedEvents {
            family,
            cells: cells.into(),
        }
    }
}

impl DroppedEvents {
    /// The family, for registration.
    pub fn family(&self) -> Family<TwoLabels, Counter> {
        self.family.clone()
    }

    fn cell(&self, reason: DropReason, source: Source) -> &Counter {
        &self.cells[reason as usize * Source::COUNT + source.index()]
    }

    /// Counts `n` events of `source` dropped for `reason`.
    pub fn add(&self, reason: DropReason, source: Source, n: u64) {
        self.cell(reason, source).inc_by(n);
    }

    /// Counts a batch's events dropped for `reason`, each under its source.
    pub fn add_counts(&self, reason: DropReason, counts: &SourceCounts) {
        for (source, n) in counts.iter() {
            self.add(reason, source, u64::from(n));
        }
    }

    /// Events of `source` dropped so far for `reason`.
    pub fn get_source(&self, reason: DropReason, source: Source) -> u64 {
        self.cell(reason, source).get()
    }

    /// Events dropped so far for `reason`, every source together.
    pub fn get(&self, reason: DropReason) -> u64 {
        Source::ALL
            .iter()
            .map(|&s| self.get_source(reason, s))
            .sum()
    }

    /// Events of `source` dropped so far for any reason.
    pub fn total_for(&self, source: Source) -> u64 {
        DropReason::ALL
            .iter()
            .map(|&r| self.get_source(r, source))
            .sum()
    }
}

pub(super) fn register_sources(r: &mut Registry, s: &SourceMetrics) {
    r.register(
        "monitoring_agent_events_read",
        "Events each kind of source handed to the pipeline (a merged multiline event counts once)",
        s.read.family(),
    );
    r.register(
        "monitoring_agent_events_sent",
        "Events in batches written to the collector, by source, resends included",
        s.sent.family(),
    );
    r.register(
        "monitoring_agent_events_acked",
        "Events the collector acknowledged as committed, by source, each once",
        s.acked.family(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_and_source_has_its_own_cell_with_its_own_labels() {
        let d = DroppedEvents::default();
        let mut n = 0;
        for reason in DropReason::ALL {
            for source in Source::ALL {
                n += 1;
                d.add(reason, source, n);
                let labels = [("reason", reason.as_str()), ("source", source.as_str())];
                assert_eq!(d.family.get_or_create(&labels).get(), n, "{labels:?}");
            }
        }
        assert_eq!(d.cells.len(), n as usize);
    }
}
