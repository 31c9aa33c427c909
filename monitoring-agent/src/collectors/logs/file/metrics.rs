//! The file source's own metrics. No label carries a path: the number of series is
//! fixed whatever the number of files (LESSONS #10).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::telemetry::FilteredEvents;

/// Counters and gauges of the file tail source. Cheap to update from the read loop;
/// registered once with [`FileMetrics::register`]. Counter names get their `_total`
/// suffix from the encoder.
#[derive(Debug, Default)]
pub struct FileMetrics {
    /// Events handed to the pipeline: lines, or merged events with multiline on.
    pub lines_read: Counter,
    /// Last lines without a newline shipped after `partial_line_timeout_ms`.
    pub partial_lines: Counter,
    /// Bytes read from files (terminators and skipped bytes of long lines included).
    pub bytes_read: Counter,
    /// Lines longer than `max_line_bytes`, shipped cut.
    pub lines_truncated: Counter,
    /// Files (distinct contents) found by the patterns and opened.
    pub files_discovered: Counter,
    /// Files open now.
    pub files_open: Gauge,
    /// Open files that were renamed out of the patterns or deleted, still being read.
    pub files_rotated_open: Gauge,
    /// Files waiting for a free slot because `max_open_files` are open.
    pub files_waiting: Gauge,
    /// Files seen renamed out of the patterns or deleted while open.
    pub rotations: Counter,
    /// Files seen truncated (or rewritten from the start) while open or since their
    /// checkpoint; they are read again from zero.
    pub truncations: Counter,
    /// Bytes not yet handed over as lines (unread, or the start of a line whose end
    /// was not read) when their file was truncated; recovered only if the copy of a
    /// copy-truncate rotation matches the patterns.
    pub truncated_unread_bytes: Counter,
    /// Files recognised as copies of content already being read (same fingerprint),
    /// and so not read again.
    pub duplicate_files: Counter,
    /// Checkpoint files written.
    pub checkpoint_writes: Counter,
    /// Checkpoint writes that failed (retried at the next interval).
    pub checkpoint_write_failures: Counter,
    /// Errors opening, measuring or reading files.
    pub read_errors: Counter,
    /// File system notification errors and queue overflows (each triggers a rescan).
    pub watch_errors: Counter,
    /// Events filtered out by `[collectors.logs.filter]`, by reason (registered with
    /// the telemetry, shared with the journald source).
    pub filtered: FilteredEvents,
}

impl FileMetrics {
    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let counters: [(&str, &str, &Counter); 13] = [
            (
                "monitoring_agent_file_read_lines",
                "Events (lines, or merged multiline events) read from tailed files and handed to the pipeline",
                &self.lines_read,
            ),
            (
                "monitoring_agent_file_read_bytes",
                "Bytes read from tailed files",
                &self.bytes_read,
            ),
            (
                "monitoring_agent_file_partial_lines",
                "Last lines without a newline shipped after partial_line_timeout_ms",
                &self.partial_lines,
            ),
            (
                "monitoring_agent_file_truncated_lines",
                "Lines longer than max_line_bytes, shipped cut",
                &self.lines_truncated,
            ),
            (
                "monitoring_agent_file_discovered_files",
                "Files found by the patterns and opened",
                &self.files_discovered,
            ),
            (
                "monitoring_agent_file_rotations",
                "Open files renamed out of the patterns or deleted",
                &self.rotations,
            ),
            (
                "monitoring_agent_file_truncations",
                "Files truncated or rewritten, read again from zero",
                &self.truncations,
            ),
            (
                "monitoring_agent_file_truncated_unread_bytes",
                "Bytes not yet read as whole lines when their file was truncated (recovered only from a copy that matches the patterns)",
                &self.truncated_unread_bytes,
            ),
            (
                "monitoring_agent_file_duplicate_files",
                "Files recognised as copies of content already read, not read again",
                &self.duplicate_files,
            ),
            (
                "monitoring_agent_file_checkpoint_writes",
                "Checkpoint files written",
                &self.checkpoint_writes,
            ),
            (
                "monitoring_agent_file_checkpoint_write_failures",
                "Checkpoint writes that failed and will be retried",
                &self.checkpoint_write_failures,
            ),
            (
                "monitoring_agent_file_read_errors",
                "Errors opening or reading tailed files",
                &self.read_errors,
            ),
            (
                "monitoring_agent_file_watch_errors",
                "File system notification errors and overflows, each followed by a rescan",
                &self.watch_errors,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        let gauges: [(&str, &str, &Gauge); 3] = [
            (
                "monitoring_agent_file_open_files",
                "Tailed files open now",
                &self.files_open,
            ),
            (
                "monitoring_agent_file_rotated_open_files",
                "Open files renamed out of the patterns or deleted, still being read to their end",
                &self.files_rotated_open,
            ),
            (
                "monitoring_agent_file_waiting_files",
                "Files waiting for a free slot under max_open_files",
                &self.files_waiting,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_counters_with_total_suffix() {
        let m = FileMetrics::default();
        m.lines_read.inc_by(3);
        m.files_open.set(2);
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("monitoring_agent_file_read_lines_total 3"),
            "{text}"
        );
        assert!(
            text.contains("monitoring_agent_file_open_files 2"),
            "{text}"
        );
        assert!(text.contains("monitoring_agent_file_checkpoint_write_failures_total 0"));
    }
}
