//! The spool's own metrics, registered with the agent's others in `telemetry.rs`.
//! Events dropped by the spool's `when_full` policy are counted in the shared
//! `monitoring_agent_events_dropped_total` family (reasons `spool_full` and
//! `spool_drop_oldest`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::telemetry::DroppedEvents;

/// Counters and gauges of the disk spool; all zero when the spool is off.
#[derive(Debug, Clone, Default)]
pub struct SpoolMetrics {
    /// Bytes of segment files on disk.
    pub bytes: Gauge,
    /// Records in the spool not yet acknowledged (estimated at start from the record
    /// headers).
    pub records: Gauge,
    /// Segment files on disk.
    pub segments: Gauge,
    /// Records written (and, with `sync = "batch"`, flushed to disk).
    pub records_written: Counter,
    /// Records handed to the transport, resends after a restart included.
    pub records_sent: Counter,
    /// Records acknowledged by the collector.
    pub records_acked: Counter,
    /// Corrupt records (or corrupt regions) skipped by the reader.
    pub records_corrupt: Counter,
    /// Torn records cut off the end of the last segment at start (a crash mid-write;
    /// never acknowledged to the sources, so read again from them).
    pub torn_tails: Counter,
    /// Segment files deleted (acknowledged, or dropped by `drop_oldest`).
    pub segments_deleted: Counter,
    /// Failed reads, writes and deletions (each retried).
    pub io_errors: Counter,
    /// Ledger writes that failed (retried at the next interval).
    pub ledger_write_failures: Counter,
    /// Files in the spool directory that are not the spool's, ignored.
    pub foreign_files: Counter,
    /// Events dropped by the `when_full` policy (the shared family).
    pub dropped: DroppedEvents,
}

impl SpoolMetrics {
    /// Registers every metric in `registry` (not `dropped`: registered once by
    /// `Telemetry`).
    pub fn register(&self, r: &mut Registry) {
        let gauges: [(&str, &str, &Gauge); 3] = [
            (
                "monitoring_agent_spool_bytes",
                "Bytes of disk spool segment files",
                &self.bytes,
            ),
            (
                "monitoring_agent_spool_records",
                "Records in the disk spool not yet acknowledged",
                &self.records,
            ),
            (
                "monitoring_agent_spool_segments",
                "Disk spool segment files",
                &self.segments,
            ),
        ];
        for (name, help, gauge) in gauges {
            r.register(name, help, gauge.clone());
        }
        let counters: [(&str, &str, &Counter); 9] = [
            (
                "monitoring_agent_spool_records_written",
                "Records written to the disk spool",
                &self.records_written,
            ),
            (
                "monitoring_agent_spool_records_sent",
                "Records read from the disk spool and handed to the transport",
                &self.records_sent,
            ),
            (
                "monitoring_agent_spool_records_acked",
                "Disk spool records acknowledged by the collector",
                &self.records_acked,
            ),
            (
                "monitoring_agent_spool_records_corrupt",
                "Corrupt disk spool records skipped",
                &self.records_corrupt,
            ),
            (
                "monitoring_agent_spool_torn_tails",
                "Torn records cut off the end of the disk spool at start",
                &self.torn_tails,
            ),
            (
                "monitoring_agent_spool_segments_deleted",
                "Disk spool segment files deleted",
                &self.segments_deleted,
            ),
            (
                "monitoring_agent_spool_io_errors",
                "Failed disk spool reads, writes and deletions (retried)",
                &self.io_errors,
            ),
            (
                "monitoring_agent_spool_ledger_write_failures",
                "Failed writes of the disk spool ledger (retried)",
                &self.ledger_write_failures,
            ),
            (
                "monitoring_agent_spool_foreign_files",
                "Files in the spool directory that are not the spool's, ignored",
                &self.foreign_files,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
    }
}
