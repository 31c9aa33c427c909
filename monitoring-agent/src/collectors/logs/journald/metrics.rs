//! The journald source's own counters. Defined in every build (they stay at zero
//! without the `journald` feature) so that telemetry needs no feature switch.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::telemetry::FilteredEvents;

/// Counters of the journald source, registered once with [`JournaldMetrics::register`].
/// Counter names get their `_total` suffix from the encoder.
#[derive(Debug, Default)]
pub struct JournaldMetrics {
    /// Journal entries read and handed to the pipeline.
    pub entries_read: Counter,
    /// Checkpointed cursors that named no entry of the journal any more (vacuumed,
    /// another machine's, a corrupt checkpoint): reading restarted at the oldest entry.
    pub cursor_resets: Counter,
    /// Errors reading the journal (the read is retried after a wait).
    pub read_errors: Counter,
    /// Cursor checkpoints written to `<state dir>/journald.json`.
    pub checkpoint_writes: Counter,
    /// Cursor checkpoint writes that failed (retried at the next interval).
    pub checkpoint_write_failures: Counter,
    /// Entries filtered out by `[collectors.logs.journald.filter]`, by reason
    /// (registered with the telemetry, shared with the file source).
    pub filtered: FilteredEvents,
}

impl JournaldMetrics {
    /// Registers every counter in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let counters: [(&str, &str, &Counter); 5] = [
            (
                "monitoring_agent_journald_read_entries",
                "Journal entries read and handed to the pipeline",
                &self.entries_read,
            ),
            (
                "monitoring_agent_journald_cursor_resets",
                "Checkpointed journal cursors not found any more; reading restarted at the oldest entry",
                &self.cursor_resets,
            ),
            (
                "monitoring_agent_journald_read_errors",
                "Errors reading the journal",
                &self.read_errors,
            ),
            (
                "monitoring_agent_journald_checkpoint_writes",
                "Journal cursor checkpoints written",
                &self.checkpoint_writes,
            ),
            (
                "monitoring_agent_journald_checkpoint_write_failures",
                "Journal cursor checkpoint writes that failed",
                &self.checkpoint_write_failures,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
    }
}
