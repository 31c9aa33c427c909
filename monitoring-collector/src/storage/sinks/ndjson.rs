//! The NDJSON shape of an event, shared by the `file` and `console` sinks: one JSON
//! object per line, keys in this order:
//!
//! - every event: `timestamp` (RFC 3339, UTC, nanoseconds:
//!   `2026-11-30T12:00:00.123456789Z`), `agent_id`, `kind` (`log`, `metric`,
//!   `flow`), `source`, `labels` (an object of strings);
//! - `log`: `message`, `severity` (absent when unknown), `fields` (an object);
//! - `metric`: `name`, `metric_type` (`gauge`, `counter`, `histogram`, `summary`),
//!   then `value` (gauge, counter), or `count`, `sum` and `buckets`
//!   (`[{"le": 0.5, "count": 3}, ...]`, cumulative) or `quantiles`
//!   (`[{"quantile": 0.99, "value": 1.5}, ...]`);
//! - `flow`: `src_addr`, `dst_addr`, `src_port`, `dst_port`, `protocol` (IP protocol
//!   number), `end` (RFC 3339), `bytes_out`, `bytes_in`, `packets_out`,
//!   `packets_in`, `tcp_flags`.
//!
//! JSON has no NaN or infinities: such numbers are written as the strings `"NaN"`,
//! `"+Inf"` and `"-Inf"`, as Prometheus writes them.

use std::sync::Arc;

use monitoring_common::event::{FlowEvent, LogEvent, MetricEvent, Value};
use monitoring_common::{Event, EventKind, MetricValue};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use crate::api::time::format_rfc3339_nanos;
use crate::storage::IngestBatch;

/// Appends every event of `batches` to `out`, one line each.
pub fn encode_batches(out: &mut Vec<u8>, batches: &[Arc<IngestBatch>]) {
    for batch in batches {
        for event in &batch.events {
            encode_event(out, &batch.agent_id, event);
        }
    }
}

/// Appends one event and a newline to `out`.
pub fn encode_event(out: &mut Vec<u8>, agent_id: &str, event: &Event) {
    let line = Line { agent_id, event };
    // Serializing into a Vec fails only for a map with non-string keys, which this
    // shape does not have.
    if let Err(error) = serde_json::to_writer(&mut *out, &line) {
        tracing::error!(message = "Failed to encode an event as JSON.", %error);
        return;
    }
    out.push(b'\n');
}

struct Line<'a> {
    agent_id: &'a str,
    event: &'a Event,
}

impl Serialize for Line<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.event;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("timestamp", &format_rfc3339_nanos(e.timestamp_ns))?;
        map.serialize_entry("agent_id", self.agent_id)?;
        map.serialize_entry("kind", crate::telemetry::event_kind::of(&e.kind))?;
        map.serialize_entry("source", &e.source)?;
        map.serialize_entry("labels", &e.labels)?;
        match &e.kind {
            EventKind::Log(log) => log_entries(&mut map, log)?,
            EventKind::Metric(metric) => metric_entries(&mut map, metric)?,
            EventKind::Flow(flow) => flow_entries(&mut map, flow)?,
        }
        map.end()
    }
}

fn log_entries<M: SerializeMap>(map: &mut M, log: &LogEvent) -> Result<(), M::Error> {
    map.serialize_entry("message", &log.message)?;
    if let Some(severity) = log.severity {
        map.serialize_entry("severity", severity.as_str())?;
    }
    map.serialize_entry("fields", &Fields(&log.fields))
}

fn metric_entries<M: SerializeMap>(map: &mut M, metric: &MetricEvent) -> Result<(), M::Error> {
    map.serialize_entry("name", &metric.name)?;
    map.serialize_entry("metric_type", metric.value.kind_name())?;
    match &metric.value {
        MetricValue::Gauge { value } | MetricValue::Counter { value } => {
            map.serialize_entry("value", &Float(*value))
        }
        MetricValue::Histogram {
            count,
            sum,
            buckets,
        } => {
            map.serialize_entry("count", count)?;
            map.serialize_entry("sum", &Float(*sum))?;
            map.serialize_entry("buckets", &Buckets(buckets))
        }
        MetricValue::Summary {
            count,
            sum,
            quantiles,
        } => {
            map.serialize_entry("count", count)?;
            map.serialize_entry("sum", &Float(*sum))?;
            map.serialize_entry("quantiles", &Quantiles(quantiles))
        }
    }
}

fn flow_entries<M: SerializeMap>(map: &mut M, flow: &FlowEvent) -> Result<(), M::Error> {
    map.serialize_entry("src_addr", &flow.src_addr)?;
    map.serialize_entry("dst_addr", &flow.dst_addr)?;
    map.serialize_entry("src_port", &flow.src_port)?;
    map.serialize_entry("dst_port", &flow.dst_port)?;
    map.serialize_entry("protocol", &flow.protocol)?;
    map.serialize_entry("end", &format_rfc3339_nanos(flow.end_ns))?;
    map.serialize_entry("bytes_out", &flow.bytes_out)?;
    map.serialize_entry("bytes_in", &flow.bytes_in)?;
    map.serialize_entry("packets_out", &flow.packets_out)?;
    map.serialize_entry("packets_in", &flow.packets_in)?;
    map.serialize_entry("tcp_flags", &flow.tcp_flags)
}

/// A float as a JSON number, or `"NaN"`, `"+Inf"`, `"-Inf"`.
struct Float(f64);

impl Serialize for Float {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() {
            s.serialize_f64(v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if v > 0.0 {
            s.serialize_str("+Inf")
        } else {
            s.serialize_str("-Inf")
        }
    }
}

/// Histogram buckets as `[{"le": 0.5, "count": 3}, ...]`.
struct Buckets<'a>(&'a [(f64, u64)]);

impl Serialize for Buckets<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for &(le, count) in self.0 {
            seq.serialize_element(&Pair(("le", Float(le)), ("count", count)))?;
        }
        seq.end()
    }
}

/// Summary quantiles as `[{"quantile": 0.99, "value": 1.5}, ...]`.
struct Quantiles<'a>(&'a [(f64, f64)]);

impl Serialize for Quantiles<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for &(q, value) in self.0 {
            seq.serialize_element(&Pair(("quantile", Float(q)), ("value", Float(value))))?;
        }
        seq.end()
    }
}

/// A two-key object.
struct Pair<A, B>((&'static str, A), (&'static str, B));

impl<A: Serialize, B: Serialize> Serialize for Pair<A, B> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry(self.0.0, &self.0.1)?;
        map.serialize_entry(self.1.0, &self.1.1)?;
        map.end()
    }
}

/// Log fields, with non-finite floats as strings.
struct Fields<'a>(&'a monitoring_common::event::Fields);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            match v {
                Value::Float(f) => map.serialize_entry(k, &Float(*f))?,
                other => map.serialize_entry(k, other)?,
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitoring_common::Severity;
    use monitoring_common::event::FlowEvent;
    use monitoring_common::event::Labels;
    use serde_json::json;

    fn line(event: &Event) -> serde_json::Value {
        let mut out = Vec::new();
        encode_event(&mut out, "web-1", event);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn a_log_line_has_the_documented_keys_in_order() {
        let mut event = Event::log(
            1_700_000_000_123_456_789,
            "/var/log/app.log",
            "disk \"full\"\n",
        );
        event.labels.insert("host".into(), "h1".into());
        if let EventKind::Log(log) = &mut event.kind {
            log.severity = Some(Severity::Error);
            log.fields.insert("offset".into(), Value::Int(42));
            log.fields.insert("ratio".into(), Value::Float(f64::NAN));
        }
        let mut out = Vec::new();
        encode_event(&mut out, "web-1", &event);
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            "{\"timestamp\":\"2023-11-14T22:13:20.123456789Z\",\"agent_id\":\"web-1\",\"kind\":\"log\",\
             \"source\":\"/var/log/app.log\",\"labels\":{\"host\":\"h1\"},\"message\":\"disk \\\"full\\\"\\n\",\
             \"severity\":\"error\",\"fields\":{\"offset\":42,\"ratio\":\"NaN\"}}\n"
        );
    }

    #[test]
    fn metrics_of_every_type() {
        let m = |value| Event::metric(0, "host", "rt", Labels::new(), value);
        let gauge = line(&m(MetricValue::Gauge { value: 0.5 }));
        assert_eq!(gauge["metric_type"], "gauge");
        assert_eq!(gauge["value"], 0.5);
        assert_eq!(gauge["timestamp"], "1970-01-01T00:00:00.000000000Z");
        let counter = line(&m(MetricValue::Counter {
            value: f64::INFINITY,
        }));
        assert_eq!(counter["value"], "+Inf");
        let histogram = line(&m(MetricValue::Histogram {
            count: 4,
            sum: 2.5,
            buckets: vec![(0.1, 1), (1.0, 3), (f64::INFINITY, 4)],
        }));
        assert_eq!(histogram["name"], "rt");
        assert_eq!(histogram["count"], 4);
        assert_eq!(
            histogram["buckets"],
            json!([{"le": 0.1, "count": 1}, {"le": 1.0, "count": 3}, {"le": "+Inf", "count": 4}])
        );
        assert!(histogram.get("value").is_none());
        let summary = line(&m(MetricValue::Summary {
            count: 2,
            sum: 3.0,
            quantiles: vec![(0.5, 1.0), (0.99, 2.75)],
        }));
        assert_eq!(
            summary["quantiles"],
            json!([{"quantile": 0.5, "value": 1.0}, {"quantile": 0.99, "value": 2.75}])
        );
    }

    #[test]
    fn a_flow_line() {
        let event = Event {
            timestamp_ns: 0,
            source: "lo".into(),
            labels: Labels::new(),
            kind: EventKind::Flow(FlowEvent {
                src_addr: "127.0.0.1".parse().expect("ip"),
                dst_addr: "::1".parse().expect("ip"),
                src_port: 5000,
                dst_port: 80,
                protocol: 6,
                end_ns: 1_000_000_000,
                bytes_out: 10,
                bytes_in: 20,
                packets_out: 1,
                packets_in: 2,
                tcp_flags: 0x12,
            }),
        };
        let v = line(&event);
        assert_eq!(v["kind"], "flow");
        assert_eq!(v["src_addr"], "127.0.0.1");
        assert_eq!(v["dst_addr"], "::1");
        assert_eq!(v["end"], "1970-01-01T00:00:01.000000000Z");
        assert_eq!(v["tcp_flags"], 18);
    }
}
