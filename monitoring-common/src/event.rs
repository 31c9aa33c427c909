//! The event model: what collectors produce, batches carry and sinks store.
//!
//! An [`Event`] is one log line, one metric sample or one network flow summary. The
//! agent id is deliberately *not* part of an event: it belongs to the authenticated
//! connection a batch arrives on, so the collector stamps it and an agent cannot
//! write as another (see `docs/protocol.md`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Labels (tags): small, low-cardinality string pairs that identify a series or a source.
pub type Labels = BTreeMap<String, String>;

/// Structured fields of a log event.
pub type Fields = BTreeMap<String, Value>;

/// One event as it travels from a collector on the agent to a sink on the collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When the event happened, in nanoseconds since the Unix epoch (UTC).
    pub timestamp_ns: i64,
    /// Where it came from: a file path, `host`, `journald`, a scrape URL...
    pub source: String,
    /// Tags of the event (agent tags, metric labels).
    pub labels: Labels,
    /// What the event is.
    pub kind: EventKind,
}

/// The three kinds of events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A log line or record.
    Log(LogEvent),
    /// A metric sample.
    Metric(MetricEvent),
    /// A network flow summary.
    Flow(FlowEvent),
}

/// A log record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEvent {
    /// The message text (valid UTF-8; invalid input bytes are replaced when read).
    pub message: String,
    /// Severity, when known.
    pub severity: Option<Severity>,
    /// Structured fields (file offset, parsed fields...).
    pub fields: Fields,
}

/// One metric sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricEvent {
    /// Metric name, Prometheus style (`node_cpu_usage_ratio`).
    pub name: String,
    /// The sample.
    pub value: MetricValue,
}

/// The value of a metric sample; its variant is the metric kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricValue {
    /// A value that goes up and down.
    Gauge {
        /// The value.
        value: f64,
    },
    /// A monotonically increasing total.
    Counter {
        /// The running total.
        value: f64,
    },
    /// A histogram with cumulative buckets, as Prometheus exposes them.
    Histogram {
        /// Number of observations.
        count: u64,
        /// Sum of observations.
        sum: f64,
        /// `(upper bound, cumulative count)` pairs, bounds increasing.
        buckets: Vec<(f64, u64)>,
    },
    /// A summary with quantiles.
    Summary {
        /// Number of observations.
        count: u64,
        /// Sum of observations.
        sum: f64,
        /// `(quantile, value)` pairs.
        quantiles: Vec<(f64, f64)>,
    },
}

impl MetricValue {
    /// The kind's name as stored and shown by the API.
    pub fn kind_name(&self) -> &'static str {
        match self {
            MetricValue::Gauge { .. } => "gauge",
            MetricValue::Counter { .. } => "counter",
            MetricValue::Histogram { .. } => "histogram",
            MetricValue::Summary { .. } => "summary",
        }
    }

    /// A single number for the sample: the value of a gauge or counter, the sum of a
    /// histogram or summary.
    pub fn scalar(&self) -> f64 {
        match self {
            MetricValue::Gauge { value } | MetricValue::Counter { value } => *value,
            MetricValue::Histogram { sum, .. } | MetricValue::Summary { sum, .. } => *sum,
        }
    }
}

/// A network flow summarised over one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowEvent {
    /// Source address.
    pub src_addr: IpAddr,
    /// Destination address.
    pub dst_addr: IpAddr,
    /// Source port (0 for protocols without ports).
    pub src_port: u16,
    /// Destination port (0 for protocols without ports).
    pub dst_port: u16,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub protocol: u8,
    /// End of the interval, ns since the epoch (the event timestamp is its start).
    pub end_ns: i64,
    /// Bytes from source to destination.
    pub bytes_out: u64,
    /// Bytes from destination to source.
    pub bytes_in: u64,
    /// Packets from source to destination.
    pub packets_out: u64,
    /// Packets from destination to source.
    pub packets_in: u64,
    /// Union of the TCP flags seen (0 for other protocols).
    pub tcp_flags: u8,
}

/// Field values of a log event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
}

/// Log severity, the syslog levels (RFC 5424) plus debug's finer sibling, trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Severity {
    /// System is unusable.
    Emergency = 0,
    /// Action must be taken immediately.
    Alert = 1,
    /// Critical conditions.
    Critical = 2,
    /// Error conditions.
    Error = 3,
    /// Warning conditions.
    Warning = 4,
    /// Normal but significant.
    Notice = 5,
    /// Informational.
    Info = 6,
    /// Debug-level messages.
    Debug = 7,
    /// Finer than debug.
    Trace = 8,
}

impl Severity {
    /// All severities, most severe first.
    pub const ALL: [Severity; 9] = [
        Severity::Emergency,
        Severity::Alert,
        Severity::Critical,
        Severity::Error,
        Severity::Warning,
        Severity::Notice,
        Severity::Info,
        Severity::Debug,
        Severity::Trace,
    ];

    /// The wire and storage code (0 = emergency ... 8 = trace).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The severity with the given code.
    pub fn from_code(code: u8) -> Option<Severity> {
        Severity::ALL.get(usize::from(code)).copied()
    }

    /// Canonical lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Emergency => "emergency",
            Severity::Alert => "alert",
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Notice => "notice",
            Severity::Info => "info",
            Severity::Debug => "debug",
            Severity::Trace => "trace",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a severity name that is not known.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown severity {0:?} (expected emergency, alert, critical, error, warning, notice, info, debug or trace)"
)]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    /// Parses the canonical names and the common variants (`err`, `warn`, `crit`,
    /// `emerg`, `fatal`, `panic`), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "emergency" | "emerg" | "panic" | "0" => Severity::Emergency,
            "alert" | "1" => Severity::Alert,
            "critical" | "crit" | "fatal" | "2" => Severity::Critical,
            "error" | "err" | "3" => Severity::Error,
            "warning" | "warn" | "4" => Severity::Warning,
            "notice" | "5" => Severity::Notice,
            "info" | "information" | "informational" | "6" => Severity::Info,
            "debug" | "7" => Severity::Debug,
            "trace" | "8" => Severity::Trace,
            _ => return Err(UnknownSeverity(s.to_string())),
        })
    }
}

impl Event {
    /// A log event with no labels or fields.
    pub fn log(timestamp_ns: i64, source: impl Into<String>, message: impl Into<String>) -> Event {
        Event {
            timestamp_ns,
            source: source.into(),
            labels: Labels::new(),
            kind: EventKind::Log(LogEvent {
                message: message.into(),
                severity: None,
                fields: Fields::new(),
            }),
        }
    }

    /// A metric event.
    pub fn metric(
        timestamp_ns: i64,
        source: impl Into<String>,
        name: impl Into<String>,
        labels: Labels,
        value: MetricValue,
    ) -> Event {
        Event {
            timestamp_ns,
            source: source.into(),
            labels,
            kind: EventKind::Metric(MetricEvent {
                name: name.into(),
                value,
            }),
        }
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_codes_round_trip() {
        for s in Severity::ALL {
            assert_eq!(Severity::from_code(s.code()), Some(s));
            assert_eq!(s.as_str().parse::<Severity>().ok(), Some(s));
        }
        assert_eq!(Severity::from_code(9), None);
        assert_eq!("WARN".parse::<Severity>().ok(), Some(Severity::Warning));
        assert!("loud".parse::<Severity>().is_err());
    }
}
