//! The collector's own metrics, all defined here and served at `GET /metrics`.
//!
//! Every label has a small fixed set of values (a reason, an event kind): never an
//! agent id or a peer address, so the exposition stays bounded however many agents
//! connect. Every batch the collector does not store is counted with its reason.

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label set with one label whose values are a fixed set of names.
pub type ReasonLabel = [(&'static str, &'static str); 1];

/// Why a batch was rejected (label `reason` of the rejected counter).
pub mod reject_reason {
    /// Not a valid frame: short, bad magic, flags, corrupt compression, bad events.
    pub const MALFORMED: &str = "malformed";
    /// A codec this collector does not know.
    pub const CODEC: &str = "codec";
    /// A protocol version this collector does not speak.
    pub const VERSION: &str = "version";
    /// Over a configured limit (frame size, uncompressed size, event count).
    pub const LIMIT: &str = "limit";
    /// A text WebSocket message where a binary frame was expected.
    pub const TEXT: &str = "text";
    /// The payload inflates past its declared length (a decompression bomb); caught
    /// without inflating it.
    pub const INFLATED: &str = "inflated";
}

/// Why a batch was answered with retry-later (label `reason` of the retried counter).
pub mod retry_reason {
    /// The store failed to commit it.
    pub const STORE: &str = "store";
    /// The processor queue was full.
    pub const QUEUE_FULL: &str = "queue_full";
    /// The processor is shutting down or a worker failed.
    pub const UNAVAILABLE: &str = "unavailable";
    /// The agent is over its `[server.rate_limit]` budget.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// A required `[[storage.sinks]]` sink failed to write it.
    pub const SINK: &str = "sink";
}

/// Why a sink dropped events (label `reason` of the sink dropped counter).
pub mod sink_drop_reason {
    /// A best-effort sink's queue was full.
    pub const QUEUE_FULL: &str = "queue_full";
    /// The sink refused them for good (a 4xx from Prometheus, out-of-order samples):
    /// retrying cannot help.
    pub const REJECTED: &str = "rejected";
    /// Still queued or unwritten when the shutdown flush time ran out.
    pub const SHUTDOWN: &str = "shutdown";
    /// Every reason.
    pub const ALL: [&str; 3] = [QUEUE_FULL, REJECTED, SHUTDOWN];
}

/// A label set naming a `[[storage.sinks]]` sink (bounded: one per configured sink).
pub type SinkLabel = [(&'static str, String); 1];
/// A sink and a reason.
pub type SinkReasonLabel = [(&'static str, String); 2];

/// Why an ingest connection was refused before the WebSocket upgrade.
pub mod refuse_reason {
    /// No acceptable agent identity.
    pub const AUTH: &str = "auth";
    /// JWT mode: no bearer token.
    pub const AUTH_MISSING: &str = "auth_missing";
    /// JWT mode: a malformed, badly signed or otherwise unacceptable token.
    pub const AUTH_INVALID: &str = "auth_invalid";
    /// JWT mode: an expired token.
    pub const AUTH_EXPIRED: &str = "auth_expired";
    /// JWT mode: a token on the deny-list.
    pub const AUTH_REVOKED: &str = "auth_revoked";
    /// The agent id header or client certificate names another agent than the token.
    pub const AUTH_MISMATCH: &str = "auth_mismatch";
    /// `server.max_connections` reached.
    pub const LIMIT: &str = "limit";
    /// `server.max_connections_per_agent` reached for this agent.
    pub const AGENT_LIMIT: &str = "agent_limit";
    /// The upgrade request was not read within `server.handshake_timeout_secs` of
    /// accepting the connection (TLS finished, HTTP request too slow or missing).
    pub const UPGRADE_TIMEOUT: &str = "upgrade_timeout";
    /// Too many connections between accept and upgrade at once.
    pub const UPGRADE_BUSY: &str = "upgrade_busy";
}

/// Why an ingest WebSocket connection ended (label `reason` of the closed counter).
pub mod close_reason {
    /// The agent closed the connection.
    pub const PEER: &str = "peer";
    /// The WebSocket failed: a message over the hard size cap, a protocol violation,
    /// or a broken connection.
    pub const ERROR: &str = "error";
    /// Nothing arrived for `server.idle_timeout_secs`.
    pub const IDLE: &str = "idle";
    /// The collector is shutting down.
    pub const SHUTDOWN: &str = "shutdown";
}

/// The event kinds of the event model (label `kind` of the received and stored
/// counters); every one is a series from the start.
pub mod event_kind {
    use monitoring_common::EventKind;

    /// A log record.
    pub const LOG: &str = "log";
    /// A metric sample.
    pub const METRIC: &str = "metric";
    /// A network flow summary.
    pub const FLOW: &str = "flow";
    /// Every kind.
    pub const ALL: [&str; 3] = [LOG, METRIC, FLOW];

    /// The label of an event's kind.
    pub fn of(kind: &EventKind) -> &'static str {
        match kind {
            EventKind::Log(_) => LOG,
            EventKind::Metric(_) => METRIC,
            EventKind::Flow(_) => FLOW,
        }
    }
}

/// What a frame was answered (label `outcome` of the ack latency histogram).
pub mod ack_outcome {
    use monitoring_common::protocol::AckStatus;

    /// Every outcome.
    pub const ALL: [&str; 3] = ["ok", "retry_later", "rejected"];

    /// The label of an acknowledgement's status.
    pub fn of(status: AckStatus) -> &'static str {
        match status {
            AckStatus::Ok => "ok",
            AckStatus::RetryLater => "retry_later",
            AckStatus::Rejected => "rejected",
        }
    }
}

/// A histogram family whose buckets are set once for all its series.
pub type HistogramFamily = Family<ReasonLabel, Histogram, fn() -> Histogram>;

fn ack_seconds_histogram() -> Histogram {
    // 0.5 ms to about 33 s: a local commit to a store under heavy load.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// How a `POST /api/v1/login` ended (label `outcome` of the logins counter).
pub mod login_outcome {
    /// The password matched; a session was created.
    pub const SUCCESS: &str = "success";
    /// Unknown user or wrong password (not told apart).
    pub const FAILURE: &str = "failure";
    /// Too many logins in progress; refused with 429 before verifying.
    pub const BUSY: &str = "busy";
    /// The body was not the expected JSON.
    pub const BAD_REQUEST: &str = "bad_request";
}

/// Why a REST API request was refused by the guard (label `reason`).
pub mod api_refuse_reason {
    /// No credentials.
    pub const MISSING: &str = "missing";
    /// Credentials that are not a live token or session.
    pub const INVALID: &str = "invalid";
    /// An expired token or session.
    pub const EXPIRED: &str = "expired";
    /// Authenticated, but the role is not enough (403).
    pub const FORBIDDEN: &str = "forbidden";
}

/// The collector's metrics. Cheap to clone: every metric is a shared handle.
#[derive(Clone)]
pub struct Metrics {
    /// Open ingest connections.
    pub connections: Gauge,
    /// Ingest connections accepted since start.
    pub connections_accepted: Counter,
    /// Ingest connections refused before upgrade, by reason.
    pub connections_refused: Family<ReasonLabel, Counter>,
    /// Ingest WebSocket connections ended, by reason.
    pub connections_closed: Family<ReasonLabel, Counter>,
    /// WebSocket messages received on ingest connections (binary or text).
    pub frames_received: Counter,
    /// Bytes of those messages.
    pub bytes_received: Counter,
    /// Batches committed to the store.
    pub batches_committed: Counter,
    /// Batches recognised as already committed (acknowledged, not stored again).
    pub batches_duplicate: Counter,
    /// Batches rejected for good, by reason.
    pub batches_rejected: Family<ReasonLabel, Counter>,
    /// Batches answered with retry-later, by reason.
    pub batches_retried: Family<ReasonLabel, Counter>,
    /// Events in batches decoded, by kind (log, metric, flow); duplicates included.
    pub events_received: Family<ReasonLabel, Counter>,
    /// Events committed, by kind (log, metric, flow).
    pub events_stored: Family<ReasonLabel, Counter>,
    /// Seconds from a frame's arrival to its acknowledgement being queued, by outcome.
    pub ack_seconds: HistogramFamily,
    /// Time to commit one batch, seconds.
    pub commit_seconds: Histogram,
    /// Batches waiting in the processor queue.
    pub processor_queue_depth: Gauge,
    /// Log events parsed, by format (json, logfmt, rfc5424, rfc3164, timestamp, none).
    pub processor_parsed: Family<ReasonLabel, Counter>,
    /// Data retention runs that failed.
    pub retention_failures: Counter,
    /// Storage partitions dropped by retention.
    pub retention_partitions_dropped: Counter,
    /// REST API logins, by outcome.
    pub api_logins: Family<ReasonLabel, Counter>,
    /// REST API requests refused for their credentials, by reason.
    pub api_requests_refused: Family<ReasonLabel, Counter>,
    /// Events a `[[storage.sinks]]` sink wrote, by sink.
    pub sink_events_written: Family<SinkLabel, Counter>,
    /// Failed sink writes (each attempt), by sink.
    pub sink_write_errors: Family<SinkLabel, Counter>,
    /// Events a sink dropped, by sink and reason.
    pub sink_events_dropped: Family<SinkReasonLabel, Counter>,
    /// Batches waiting in a best-effort sink's queue, by sink.
    pub sink_queue_batches: Family<SinkLabel, Gauge>,
    /// Time of one sink write (successful or not), by sink.
    pub sink_write_seconds: Family<SinkLabel, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            connections: Gauge::default(),
            connections_accepted: Counter::default(),
            connections_refused: Family::default(),
            connections_closed: Family::default(),
            frames_received: Counter::default(),
            bytes_received: Counter::default(),
            batches_committed: Counter::default(),
            batches_duplicate: Counter::default(),
            batches_rejected: Family::default(),
            batches_retried: Family::default(),
            events_received: Family::default(),
            events_stored: Family::default(),
            ack_seconds: Family::new_with_constructor(ack_seconds_histogram),
            // 0.5 ms to about 16 s.
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            processor_queue_depth: Gauge::default(),
            processor_parsed: Family::default(),
            retention_failures: Counter::default(),
            retention_partitions_dropped: Counter::default(),
            api_logins: Family::default(),
            api_requests_refused: Family::default(),
            sink_events_written: Family::default(),
            sink_write_errors: Family::default(),
            sink_events_dropped: Family::default(),
            sink_queue_batches: Family::default(),
            sink_write_seconds: Family::new_with_constructor(ack_seconds_histogram),
        }
    }
}

/// The metrics and the registry they are exposed through.
pub struct Telemetry {
    /// The metrics, to be cloned into the parts that update them.
    pub metrics: Metrics,
    registry: Registry,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    /// Creates and registers every metric.
    pub fn new() -> Telemetry {
        let metrics = Metrics::default();
        let mut r = Registry::default();
        let m = &metrics;
        // Counters get their `_total` suffix from the encoder.
        r.register(
            "monitoring_ingest_connections",
            "Open ingest WebSocket connections",
            m.connections.clone(),
        );
        r.register(
            "monitoring_ingest_connections_accepted",
            "Ingest connections accepted since start",
            m.connections_accepted.clone(),
        );
        r.register(
            "monitoring_ingest_connections_refused",
            "Ingest connections refused before the WebSocket upgrade, by reason (auth*, limit, agent_limit, tls_*, upgrade_timeout, upgrade_busy)",
            m.connections_refused.clone(),
        );
        r.register(
            "monitoring_ingest_connections_closed",
            "Ingest WebSocket connections ended, by reason (peer, idle, shutdown)",
            m.connections_closed.clone(),
        );
        r.register(
            "monitoring_ingest_frames_received",
            "WebSocket messages received on ingest connections",
            m.frames_received.clone(),
        );
        r.register(
            "monitoring_ingest_bytes_received",
            "Bytes of WebSocket messages received on ingest connections",
            m.bytes_received.clone(),
        );
        r.register(
            "monitoring_ingest_batches_committed",
            "Batches committed to the store",
            m.batches_committed.clone(),
        );
        r.register(
            "monitoring_ingest_batches_duplicate",
            "Batches already committed before, acknowledged without storing them again",
            m.batches_duplicate.clone(),
        );
        r.register(
            "monitoring_ingest_batches_rejected",
            "Batches rejected for good, by reason (malformed, codec, version, limit, text)",
            m.batches_rejected.clone(),
        );
        r.register(
            "monitoring_ingest_batches_retried",
            "Batches answered with retry-later, by reason (store, queue_full, unavailable, rate_limited, sink)",
            m.batches_retried.clone(),
        );
        for kind in event_kind::ALL {
            m.events_received.get_or_create(&[("kind", kind)]).inc_by(0);
            m.events_stored.get_or_create(&[("kind", kind)]).inc_by(0);
        }
        for outcome in ack_outcome::ALL {
            drop(m.ack_seconds.get_or_create(&[("outcome", outcome)]));
        }
        r.register(
            "monitoring_ingest_events_received",
            "Events in batches decoded, by kind (log, metric, flow), duplicates and batches not committed included",
            m.events_received.clone(),
        );
        r.register(
            "monitoring_ingest_ack_seconds",
            "Seconds from a frame's arrival to its acknowledgement being queued, by outcome (ok, retry_later, rejected)",
            m.ack_seconds.clone(),
        );
        r.register(
            "monitoring_storage_events_stored",
            "Events committed to the store, by kind (log, metric, flow)",
            m.events_stored.clone(),
        );
        r.register(
            "monitoring_storage_commit_seconds",
            "Time to commit one batch to the store",
            m.commit_seconds.clone(),
        );
        r.register(
            "monitoring_processor_queue_depth",
            "Batches waiting in the processor queue",
            m.processor_queue_depth.clone(),
        );
        for format in crate::processor::parse::Format::ALL {
            m.processor_parsed
                .get_or_create(&[("format", format.as_str())])
                .inc_by(0);
        }
        r.register(
            "monitoring_processor_parsed",
            "Log events parsed, by the format recognised (json, logfmt, rfc5424, rfc3164, timestamp, none)",
            m.processor_parsed.clone(),
        );
        r.register(
            "monitoring_storage_retention_failures",
            "Retention runs that failed",
            m.retention_failures.clone(),
        );
        r.register(
            "monitoring_storage_retention_partitions_dropped",
            "Storage partitions dropped by retention",
            m.retention_partitions_dropped.clone(),
        );
        r.register(
            "monitoring_api_logins",
            "REST API logins, by outcome (success, failure, busy, bad_request)",
            m.api_logins.clone(),
        );
        r.register(
            "monitoring_api_requests_refused",
            "REST API requests refused for their credentials, by reason (missing, invalid, expired, forbidden)",
            m.api_requests_refused.clone(),
        );
        r.register(
            "monitoring_sink_events_written",
            "Events written by each [[storage.sinks]] sink",
            m.sink_events_written.clone(),
        );
        r.register(
            "monitoring_sink_write_errors",
            "Failed writes (each attempt) of each sink",
            m.sink_write_errors.clone(),
        );
        r.register(
            "monitoring_sink_events_dropped",
            "Events each sink dropped, by reason (queue_full, rejected, shutdown)",
            m.sink_events_dropped.clone(),
        );
        r.register(
            "monitoring_sink_queue_batches",
            "Batches waiting in each best-effort sink's queue",
            m.sink_queue_batches.clone(),
        );
        r.register(
            "monitoring_sink_write_seconds",
            "Time of one write of each sink",
            m.sink_write_seconds.clone(),
        );
        Telemetry {
            metrics,
            registry: r,
        }
    }

    /// The exposition in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail; an encoder error would be a bug in a
        // label value, and an incomplete page is better than none.
        if let Err(error) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::warn!(message = "Failed to encode internal metrics.", %error);
        }
        out
    }

    /// The `Content-Type` of [`Telemetry::encode`]'s output.
    pub const CONTENT_TYPE: &'static str = prometheus_text::CONTENT_TYPE;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric_with_its_suffix() {
        let t = Telemetry::new();
        t.metrics.frames_received.inc();
        t.metrics
            .batches_rejected
            .get_or_create(&[("reason", reject_reason::CODEC)])
            .inc();
        t.metrics.commit_seconds.observe(0.01);
        let text = t.encode();
        assert!(
            text.contains("monitoring_ingest_frames_received_total 1"),
            "{text}"
        );
        assert!(
            text.contains("monitoring_ingest_batches_rejected_total{reason=\"codec\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("monitoring_storage_commit_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains("monitoring_processor_queue_depth 0"),
            "{text}"
        );
        for format in ["json", "logfmt", "rfc5424", "rfc3164", "timestamp", "none"] {
            let series = format!("monitoring_processor_parsed_total{{format=\"{format}\"}} 0");
            assert!(text.contains(&series), "{series} missing:\n{text}");
        }
        for kind in event_kind::ALL {
            for family in ["ingest_events_received", "storage_events_stored"] {
                let series = format!("monitoring_{family}_total{{kind=\"{kind}\"}} 0");
                assert!(text.contains(&series), "{series} missing:\n{text}");
            }
        }
        for outcome in ack_outcome::ALL {
            let series = format!("monitoring_ingest_ack_seconds_count{{outcome=\"{outcome}\"}} 0");
            assert!(text.contains(&series), "{series} missing:\n{text}");
        }
    }

    #[test]
    fn api_auth_outcomes_are_labelled() {
        let t = Telemetry::new();
        t.metrics
            .api_logins
            .get_or_create(&[("outcome", login_outcome::FAILURE)])
            .inc();
        t.metrics
            .api_requests_refused
            .get_or_create(&[("reason", api_refuse_reason::FORBIDDEN)])
            .inc();
        let text = t.encode();
        assert!(
            text.contains("monitoring_api_logins_total{outcome=\"failure\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("monitoring_api_requests_refused_total{reason=\"forbidden\"} 1"),
            "{text}"
        );
    }
}
