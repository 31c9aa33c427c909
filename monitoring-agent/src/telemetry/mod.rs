//! The agent's own metrics, defined and registered in one place.
//!
//! Each component gets a small struct of cheap, cloneable handles (`Counter`, `Gauge`,
//! `Family`); [`Telemetry::new`] creates them all and registers them in one
//! prometheus-client [`Registry`] that the control server renders at `GET /metrics`.
//! Counters are named without their `_total` suffix: the encoder appends it.
//!
//! Every event the agent gives up on is counted in one family,
//! `monitoring_agent_events_dropped_total{reason, source}`, so that a single alert
//! covers every way of losing data by policy. Its reasons are the [`DropReason`]
//! values, its sources the [`Source`](crate::pipeline::Source) values, and every pair exists (at zero) from
//! the start so that alerts and rates work before the first drop.
//!
//! The per-source accounting ([`SourceMetrics`]) follows each event through the agent:
//! `events_read_total{source}` when a source hands it to the ring buffer,
//! `events_sent_total{source}` for each write to the collector (resends included),
//! `events_acked_total{source}` once when it is committed. Within one run of the agent,
//! once nothing is buffered or in flight: `read == acked + dropped` (all reasons) for
//! every source. Log events filtered out by a source never enter the pipeline: they
//! are counted in `events_filtered_total{source, reason}` ([`FilteredEvents`]), not
//! read and not dropped. Per-source counters are handles made once per source, so counting on
//! the hot path is an array index and an atomic add, never a label lookup.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

mod accounting;
mod filtered;
mod transport;

pub use accounting::{DropReason, DroppedEvents, PerSource, SourceMetrics};
pub use filtered::FilteredEvents;
pub use transport::{EndpointMetrics, EndpointSeries, TransportMetrics};

use crate::buffer::disk::SpoolMetrics;
use crate::collectors::logs::FileMetrics;
use crate::collectors::logs::journald::JournaldMetrics;

/// Label set of one-label families: `[("reason", value)]` and the like. Values are
/// always `'static` strings from a closed list, so cardinality stays bounded.
pub type OneLabel = [(&'static str, &'static str); 1];

/// Label set of two-label families: `[("reason", r), ("source", s)]`.
pub type TwoLabels = [(&'static str, &'static str); 2];

/// Metrics of the ring buffer.
#[derive(Debug, Clone, Default)]
pub struct BufferMetrics {
    /// Events accepted into the buffer.
    pub received_events: Counter,
    /// Events in the buffer now.
    pub events: Gauge,
    /// Capacity of the buffer in events.
    pub capacity_events: Gauge,
    /// Times a sender had to wait for room (backpressure reaching the sources).
    pub blocked_sends: Counter,
    /// Events dropped by the `when_full` policy, and skipped samples.
    pub dropped: DroppedEvents,
    /// Events each source handed over (accepted or dropped by the policy).
    pub read: PerSource,
}

/// Metrics of the batcher.
#[derive(Debug, Clone, Default)]
pub struct BatcherMetrics {
    /// Batches built, by what closed them (`events`, `bytes`, `interval`, `shutdown`).
    pub batches: Family<OneLabel, Counter>,
    /// Events put into batches.
    pub events: Counter,
    /// Payload bytes before compression.
    pub uncompressed_bytes: Counter,
    /// Frame bytes after compression, header included.
    pub compressed_bytes: Counter,
}

/// Metrics of the host metrics source.
#[derive(Debug, Clone)]
pub struct HostMetrics {
    /// Samples taken.
    pub collections: Counter,
    /// Samples skipped because the buffer was full (the buffer counts their events as
    /// dropped, reason `sample_skipped`).
    pub skipped_samples: Counter,
    /// Seconds one sample took to collect.
    pub collection_seconds: Histogram,
}

impl Default for HostMetrics {
    fn default() -> Self {
        HostMetrics {
            collections: Counter::default(),
            skipped_samples: Counter::default(),
            collection_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        }
    }
}

/// Every metric of the agent and the registry that renders them.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    /// Ring buffer metrics.
    pub buffer: BufferMetrics,
    /// Batcher metrics.
    pub batcher: BatcherMetrics,
    /// Transport metrics.
    pub transport: TransportMetrics,
    /// Host metrics source metrics.
    pub host: HostMetrics,
    /// File tailer metrics (defined by the tailer, registered here).
    pub files: Arc<FileMetrics>,
    /// Disk spool metrics (defined by the spool, registered here; zero when it is off).
    pub spool: SpoolMetrics,
    /// Journald source metrics (defined by the source, registered here; zero when it
    /// is off or not built).
    pub journald: Arc<JournaldMetrics>,
    /// The shared dropped-events counter.
    pub dropped: DroppedEvents,
    /// The per-source accounting (read, sent, acknowledged).
    pub sources: SourceMetrics,
    /// Log events filtered out by their source (shared with the file and journald
    /// metrics).
    pub filtered: FilteredEvents,
    /// Configuration reloads (SIGHUP), by `result` (`ok`, `error`).
    pub config_reloads: Family<OneLabel, Counter>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    /// Creates and registers every metric of the agent.
    pub fn new() -> Telemetry {
        let mut registry = Registry::default();
        let dropped = DroppedEvents::default();
        registry.register(
            "monitoring_agent_events_dropped",
            "Events the agent gave up on, by reason (buffer policy, skipped sample, rejected by the collector, spool full) and source",
            dropped.family(),
        );
        let sources = SourceMetrics::default();
        let r = &mut registry;
        accounting::register_sources(r, &sources);
        let filtered = FilteredEvents::default();
        r.register(
            "monitoring_agent_events_filtered",
            "Log events a source read and did not ship because of its filter (include, exclude, min_severity), by source and reason; they never enter the pipeline and are not drops",
            filtered.family(),
        );

        let buffer = BufferMetrics {
            dropped: dropped.clone(),
            read: sources.read.clone(),
            ..BufferMetrics::default()
        };
        r.register(
            "monitoring_agent_buffer_received_events",
            "Events accepted into the ring buffer",
            buffer.received_events.clone(),
        );
        r.register(
            "monitoring_agent_buffer_events",
            "Events in the ring buffer now",
            buffer.events.clone(),
        );
        r.register(
            "monitoring_agent_buffer_capacity_events",
            "Capacity of the ring buffer in events",
            buffer.capacity_events.clone(),
        );
        r.register(
            "monitoring_agent_buffer_blocked_sends",
            "Times a source had to wait for room in the ring buffer",
            buffer.blocked_sends.clone(),
        );

        let batcher = BatcherMetrics::default();
        r.register(
            "monitoring_agent_batches",
            "Batches built, by what closed them",
            batcher.batches.clone(),
        );
        r.register(
            "monitoring_agent_batch_events",
            "Events put into batches",
            batcher.events.clone(),
        );
        r.register(
            "monitoring_agent_batch_uncompressed_bytes",
            "Batch payload bytes before compression",
            batcher.uncompressed_bytes.clone(),
        );
        r.register(
            "monitoring_agent_batch_compressed_bytes",
            "Batch frame bytes after compression",
            batcher.compressed_bytes.clone(),
        );

        let transport = TransportMetrics {
            dropped: dropped.clone(),
            sent_by_source: sources.sent.clone(),
            acked_by_source: sources.acked.clone(),
            ..TransportMetrics::default()
        };
        transport::register(r, &transport);

        let host = HostMetrics::default();
        r.register(
            "monitoring_agent_host_collections",
            "Host metric samples taken",
            host.collections.clone(),
        );
        r.register(
            "monitoring_agent_host_skipped_samples",
            "Host metric samples skipped because the buffer was full",
            host.skipped_samples.clone(),
        );
        r.register(
            "monitoring_agent_host_collection_seconds",
            "Seconds one host metric sample took",
            host.collection_seconds.clone(),
        );

        let files = Arc::new(FileMetrics {
            filtered: filtered.clone(),
            ..FileMetrics::default()
        });
        files.register(r);

        let spool = SpoolMetrics {
            dropped: dropped.clone(),
            ..SpoolMetrics::default()
        };
        spool.register(r);

        let journald = Arc::new(JournaldMetrics {
            filtered: filtered.clone(),
            ..JournaldMetrics::default()
        });
        journald.register(r);

        let config_reloads = Family::<OneLabel, Counter>::default();
        for result in ["ok", "error"] {
            config_reloads
                .get_or_create(&[("result", result)])
                .inc_by(0);
        }
        r.register(
            "monitoring_agent_config_reloads",
            "Configuration reloads on SIGHUP, by result (error: the new file was rejected)",
            config_reloads.clone(),
        );

        Telemetry {
            registry,
            buffer,
            batcher,
            transport,
            host,
            files,
            spool,
            journald,
            dropped,
            sources,
            filtered,
            config_reloads,
        }
    }

    /// The registry, for rendering.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Renders every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; should it ever, render nothing rather
        // than half a document.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use crate::pipeline::Source;

    #[test]
    fn every_metric_renders_with_its_suffix() {
        let t = Telemetry::new();
        t.buffer
            .dropped
            .add(DropReason::DropNewest, Source::File, 3);
        t.transport.acked_batches.inc();
        t.sources.read.add(Source::File, 5);
        t.transport.sent_by_source.add(Source::HostMetrics, 7);
        t.transport.acked_by_source.inc(Source::File);
        let text = t.encode();
        assert!(
            text.contains(
                "monitoring_agent_events_dropped_total{reason=\"drop_newest\",source=\"file\"} 3"
            ),
            "{text}"
        );
        // Every (reason, source) pair exists from the start.
        for reason in DropReason::ALL {
            for source in Source::ALL {
                let series = format!(
                    "monitoring_agent_events_dropped_total{{reason=\"{}\",source=\"{}\"}} ",
                    reason.as_str(),
                    source.as_str()
                );
                assert!(text.contains(&series), "{series} missing:\n{text}");
            }
        }
        for name in ["read", "sent", "acked"] {
            for source in Source::ALL {
                let series = format!(
                    "monitoring_agent_events_{name}_total{{source=\"{}\"}} ",
                    source.as_str()
                );
                assert!(text.contains(&series), "{series} missing:\n{text}");
            }
        }
        assert!(text.contains("monitoring_agent_events_read_total{source=\"file\"} 5"));
        assert!(text.contains("monitoring_agent_events_sent_total{source=\"host_metrics\"} 7"));
        assert!(text.contains("monitoring_agent_events_acked_total{source=\"file\"} 1"));
        assert!(text.contains("monitoring_agent_transport_acked_batches_total 1"));
        assert!(text.contains("monitoring_agent_transport_ack_latency_seconds_bucket"));
        assert!(text.contains("monitoring_agent_buffer_events "));
        assert!(text.contains("monitoring_agent_spool_records_corrupt_total 0"));
        assert!(text.contains("monitoring_agent_spool_bytes 0"));
        assert!(text.contains("monitoring_agent_config_reloads_total{result=\"error\"} 0"));
        // The buffer and the transport count into the same family.
        assert_eq!(t.dropped.get(DropReason::DropNewest), 3);
        assert_eq!(
            t.dropped.get_source(DropReason::DropNewest, Source::File),
            3
        );
        assert_eq!(t.dropped.total_for(Source::HostMetrics), 0);
        // And the read counter handed to the buffer is the registered one.
        assert_eq!(t.buffer.read.get(Source::File), 5);
    }
}
