//! The transport's metrics: the aggregate `monitoring_agent_transport_*` series, and
//! `monitoring_agent_collector_*{endpoint}` per configured collector endpoint
//! (`[collector] endpoint` or `endpoints`), which say where the agent is connected
//! and why it left an endpoint. The endpoint label is a configured URL, so its values
//! are bounded by the configuration (at most `config::MAX_ENDPOINTS`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::{DroppedEvents, OneLabel, PerSource};

/// `[("endpoint", url)]`.
pub type EndpointLabel = [(&'static str, String); 1];
/// `[("endpoint", url), (name, value)]`, the value from a closed list.
pub type EndpointLabels = [(&'static str, String); 2];

/// The per-endpoint families.
#[derive(Debug, Clone, Default)]
pub struct EndpointMetrics {
    /// 1 for the endpoint connected to now, else 0.
    pub connected: Family<EndpointLabel, Gauge>,
    /// Connection attempts, by `result` (`ok`, `error`).
    pub connects: Family<EndpointLabels, Counter>,
    /// Times the agent left the endpoint, by `reason`.
    pub failures: Family<EndpointLabels, Counter>,
}

/// The series of one endpoint that exist from the start, as handles.
#[derive(Debug, Clone)]
pub struct EndpointSeries {
    /// Its `connected` gauge.
    pub connected: Gauge,
    /// Its `connects{result="ok"}`.
    pub connects_ok: Counter,
    /// Its `connects{result="error"}`.
    pub connects_error: Counter,
}

impl EndpointMetrics {
    /// Creates `url`'s series (at zero, so that alerts work before the first
    /// failure) and returns their handles.
    pub fn series(&self, url: &str) -> EndpointSeries {
        let result = |r: &str| -> EndpointLabels {
            [("endpoint", url.to_string()), ("result", r.to_string())]
        };
        // One statement each: a family's guard lives to the end of its statement, and
        // a second `get_or_create` on the same family under it would deadlock.
        let connected = self
            .connected
            .get_or_create(&[("endpoint", url.to_string())])
            .clone();
        let connects_ok = self.connects.get_or_create(&result("ok")).clone();
        let connects_error = self.connects.get_or_create(&result("error")).clone();
        EndpointSeries {
            connected,
            connects_ok,
            connects_error,
        }
    }

    /// Counts leaving `url` for `reason`.
    pub fn failed(&self, url: &str, reason: &'static str) {
        self.failures
            .get_or_create(&[
                ("endpoint", url.to_string()),
                ("reason", reason.to_string()),
            ])
            .inc();
    }
}

/// Metrics of the transport.
#[derive(Debug, Clone)]
pub struct TransportMetrics {
    /// Frames written to the socket, resends included.
    pub sent_batches: Counter,
    /// Events in those frames.
    pub sent_events: Counter,
    /// Frame bytes written, resends included.
    pub sent_bytes: Counter,
    /// Frames sent again, by why (`retry_later`, `reconnect`).
    pub resent_batches: Family<OneLabel, Counter>,
    /// Batches acknowledged as committed.
    pub acked_batches: Counter,
    /// Events in those batches.
    pub acked_events: Counter,
    /// Batches the collector rejected for good (their events count as dropped).
    pub rejected_batches: Counter,
    /// Connection attempts, by `result` (`ok`, `error`).
    pub connects: Family<OneLabel, Counter>,
    /// Connections lost or closed after being established.
    pub disconnects: Counter,
    /// 1 while connected to the collector, else 0.
    pub connected: Gauge,
    /// Batches sent and not yet acknowledged.
    pub in_flight_batches: Gauge,
    /// Seconds from (last) send to acknowledgement.
    pub ack_latency_seconds: Histogram,
    /// Events rejected by the collector, counted with the other drops.
    pub dropped: DroppedEvents,
    /// Events sent, by source (resends included).
    pub sent_by_source: PerSource,
    /// Events acknowledged, by source.
    pub acked_by_source: PerSource,
    /// The same connection story per configured endpoint.
    pub endpoints: EndpointMetrics,
}

impl Default for TransportMetrics {
    fn default() -> Self {
        TransportMetrics {
            sent_batches: Counter::default(),
            sent_events: Counter::default(),
            sent_bytes: Counter::default(),
            resent_batches: Family::default(),
            acked_batches: Counter::default(),
            acked_events: Counter::default(),
            rejected_batches: Counter::default(),
            connects: Family::default(),
            disconnects: Counter::default(),
            connected: Gauge::default(),
            in_flight_batches: Gauge::default(),
            // 1 ms to ~65 s: a local commit to a collector under heavy backpressure.
            ack_latency_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            dropped: DroppedEvents::default(),
            sent_by_source: PerSource::default(),
            acked_by_source: PerSource::default(),
            endpoints: EndpointMetrics::default(),
        }
    }
}

/// Registers every transport metric in `r`.
pub(super) fn register(r: &mut Registry, t: &TransportMetrics) {
    for reason in ["retry_later", "reconnect"] {
        t.resent_batches
            .get_or_create(&[("reason", reason)])
            .inc_by(0);
    }
    for result in ["ok", "error"] {
        t.connects.get_or_create(&[("result", result)]).inc_by(0);
    }
    let counters: [(&str, &str, &Counter); 7] = [
        (
            "monitoring_agent_transport_sent_batches",
            "Batch frames written to the collector, resends included",
            &t.sent_batches,
        ),
        (
            "monitoring_agent_transport_sent_events",
            "Events in the frames written, resends included",
            &t.sent_events,
        ),
        (
            "monitoring_agent_transport_sent_bytes",
            "Frame bytes written to the collector, resends included",
            &t.sent_bytes,
        ),
        (
            "monitoring_agent_transport_acked_batches",
            "Batches the collector acknowledged as committed",
            &t.acked_batches,
        ),
        (
            "monitoring_agent_transport_acked_events",
            "Events in acknowledged batches",
            &t.acked_events,
        ),
        (
            "monitoring_agent_transport_rejected_batches",
            "Batches the collector rejected for good",
            &t.rejected_batches,
        ),
        (
            "monitoring_agent_transport_disconnects",
            "Connections to the collector lost after being established",
            &t.disconnects,
        ),
    ];
    for (name, help, counter) in counters {
        r.register(name, help, counter.clone());
    }
    r.register(
        "monitoring_agent_transport_resent_batches",
        "Batch frames sent again, by why",
        t.resent_batches.clone(),
    );
    r.register(
        "monitoring_agent_transport_connects",
        "Connection attempts to the collector, by result",
        t.connects.clone(),
    );
    r.register(
        "monitoring_agent_transport_connected",
        "1 while connected to the collector, else 0",
        t.connected.clone(),
    );
    r.register(
        "monitoring_agent_transport_in_flight_batches",
        "Batches sent and not yet acknowledged",
        t.in_flight_batches.clone(),
    );
    r.register(
        "monitoring_agent_transport_ack_latency_seconds",
        "Seconds from sending a batch to its acknowledgement",
        t.ack_latency_seconds.clone(),
    );
    let e = &t.endpoints;
    r.register(
        "monitoring_agent_collector_connected",
        "1 for the collector endpoint the agent is connected to, 0 for the other configured ones",
        e.connected.clone(),
    );
    r.register(
        "monitoring_agent_collector_connects",
        "Connection attempts per configured collector endpoint, by result (ok: connected, so result=\"ok\" beyond the first counts reconnects)",
        e.connects.clone(),
    );
    r.register(
        "monitoring_agent_collector_failures",
        "Times the agent left a collector endpoint, by reason (a failed connection attempt or a lost connection)",
        e.failures.clone(),
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use crate::telemetry::Telemetry;

    #[test]
    fn endpoint_series_render_with_their_labels() {
        let t = Telemetry::new();
        let e = &t.transport.endpoints;
        let a = e.series("ws://a:7400/ingest");
        e.series("ws://b:7400/ingest");
        a.connected.set(1);
        a.connects_ok.inc();
        e.failed("ws://a:7400/ingest", "dropped");
        let text = t.encode();
        for series in [
            "monitoring_agent_collector_connected{endpoint=\"ws://a:7400/ingest\"} 1",
            "monitoring_agent_collector_connected{endpoint=\"ws://b:7400/ingest\"} 0",
            "monitoring_agent_collector_connects_total{endpoint=\"ws://a:7400/ingest\",result=\"ok\"} 1",
            "monitoring_agent_collector_connects_total{endpoint=\"ws://b:7400/ingest\",result=\"error\"} 0",
            "monitoring_agent_collector_failures_total{endpoint=\"ws://a:7400/ingest\",reason=\"dropped\"} 1",
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
    }
}
