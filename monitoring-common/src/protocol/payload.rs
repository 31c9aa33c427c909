//! The uncompressed payload of a frame: events, one after another.
//!
//! A compact binary encoding, described byte for byte in `docs/protocol.md`:
//! integers little-endian, lengths and counts as unsigned LEB128 varints, strings as
//! a length and UTF-8 bytes. Hand-written rather than generic serde so that every
//! length is checked against the bytes that remain before anything is allocated.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::event::{
    Event, EventKind, Fields, FlowEvent, Labels, LogEvent, MetricEvent, MetricValue, Severity,
    Value,
};

const KIND_LOG: u8 = 1;
const KIND_METRIC: u8 = 2;
const KIND_FLOW: u8 = 3;

const METRIC_GAUGE: u8 = 1;
const METRIC_COUNTER: u8 = 2;
const METRIC_HISTOGRAM: u8 = 3;
const METRIC_SUMMARY: u8 = 4;

const VALUE_NULL: u8 = 0;
const VALUE_BOOL: u8 = 1;
const VALUE_INT: u8 = 2;
const VALUE_FLOAT: u8 = 3;
const VALUE_STR: u8 = 4;

const NO_SEVERITY: u8 = 0xFF;

/// A payload that does not decode. `offset` is where in the payload it went wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed event {event} at payload byte {offset}: {reason}")]
pub struct PayloadError {
    /// Index of the event being decoded.
    pub event: u32,
    /// Byte offset into the uncompressed payload.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

/// Appends the encoding of one event to `out`.
pub fn encode_event(event: &Event, out: &mut Vec<u8>) {
    match &event.kind {
        EventKind::Log(_) => out.push(KIND_LOG),
        EventKind::Metric(_) => out.push(KIND_METRIC),
        EventKind::Flow(_) => out.push(KIND_FLOW),
    }
    out.extend_from_slice(&event.timestamp_ns.to_le_bytes());
    put_str(out, &event.source);
    put_labels(out, &event.labels);
    match &event.kind {
        EventKind::Log(log) => put_log(out, log.severity, &log.message, log.fields.iter()),
        EventKind::Metric(m) => {
            put_str(out, &m.name);
            match &m.value {
                MetricValue::Gauge { value } => {
                    out.push(METRIC_GAUGE);
                    put_f64(out, *value);
                }
                MetricValue::Counter { value } => {
                    out.push(METRIC_COUNTER);
                    put_f64(out, *value);
                }
                MetricValue::Histogram {
                    count,
                    sum,
                    buckets,
                } => {
                    out.push(METRIC_HISTOGRAM);
                    put_varint(out, *count);
                    put_f64(out, *sum);
                    put_varint(out, buckets.len() as u64);
                    for (bound, n) in buckets {
                        put_f64(out, *bound);
                        put_varint(out, *n);
                    }
                }
                MetricValue::Summary {
                    count,
                    sum,
                    quantiles,
                } => {
                    out.push(METRIC_SUMMARY);
                    put_varint(out, *count);
                    put_f64(out, *sum);
                    put_varint(out, quantiles.len() as u64);
                    for (q, v) in quantiles {
                        put_f64(out, *q);
                        put_f64(out, *v);
                    }
                }
            }
        }
        EventKind::Flow(f) => {
            put_addr(out, f.src_addr);
            put_addr(out, f.dst_addr);
            out.extend_from_slice(&f.src_port.to_le_bytes());
            out.extend_from_slice(&f.dst_port.to_le_bytes());
            out.push(f.protocol);
            out.extend_from_slice(&f.end_ns.to_le_bytes());
            put_varint(out, f.bytes_out);
            put_varint(out, f.bytes_in);
            put_varint(out, f.packets_out);
            put_varint(out, f.packets_in);
            out.push(f.tcp_flags);
        }
    }
}

/// Appends the encoding of a log event without labels, the same bytes
/// [`encode_event`] writes for it, without building the [`Event`]: the agent's file
/// source encodes each line as it reads it (one allocation per line instead of an
/// event's four or five). `fields` must be sorted by key, as a [`Fields`] map is.
pub fn encode_log<'a>(
    timestamp_ns: i64,
    source: &str,
    severity: Option<Severity>,
    message: &str,
    fields: &[(&'a str, &'a Value)],
    out: &mut Vec<u8>,
) {
    debug_assert!(fields.windows(2).all(|w| w[0].0 < w[1].0));
    out.push(KIND_LOG);
    out.extend_from_slice(&timestamp_ns.to_le_bytes());
    put_str(out, source);
    put_varint(out, 0);
    put_log(out, severity, message, fields.iter().map(|&(k, v)| (k, v)));
}

/// The bytes [`encode_log`] writes for these parts, to size a buffer exactly.
pub fn encoded_log_len(source: &str, message: &str, fields: &[(&str, &Value)]) -> usize {
    // Kind, timestamp, label count, severity: 1 + 8 + 1 + 1 bytes.
    let mut n = 11 + str_len(source) + str_len(message) + varint_len(fields.len() as u64);
    for (k, v) in fields {
        n += str_len(k) + value_len(v);
    }
    n
}

fn put_log<'a, K: AsRef<str> + 'a>(
    out: &mut Vec<u8>,
    severity: Option<Severity>,
    message: &str,
    fields: impl ExactSizeIterator<Item = (K, &'a Value)>,
) {
    out.push(severity.map_or(NO_SEVERITY, Severity::code));
    put_str(out, message);
    put_varint(out, fields.len() as u64);
    for (k, v) in fields {
        put_str(out, k.as_ref());
        put_value(out, v);
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn str_len(s: &str) -> usize {
    varint_len(s.len() as u64) + s.len()
}

fn value_len(v: &Value) -> usize {
    1 + match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Int(_) | Value::Float(_) => 8,
        Value::Str(s) => str_len(s),
    }
}

/// Encodes a slice of events into a fresh payload.
pub fn encode_events(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 128);
    for e in events {
        encode_event(e, &mut out);
    }
    out
}

/// Decodes exactly `count` events that must fill `payload` exactly.
pub fn decode_events(payload: &[u8], count: u32) -> Result<Vec<Event>, PayloadError> {
    // The smallest event is 12 bytes, so a lying count cannot make this allocate more
    // than the payload itself justifies.
    let cap = (count as usize).min(payload.len() / 12);
    let mut events = Vec::with_capacity(cap);
    let mut r = Reader {
        buf: payload,
        pos: 0,
        event: 0,
    };
    for i in 0..count {
        r.event = i;
        events.push(r.event()?);
    }
    if r.pos != payload.len() {
        return Err(r.err("bytes left after the declared number of events"));
    }
    Ok(events)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_labels(out: &mut Vec<u8>, labels: &Labels) {
    put_varint(out, labels.len() as u64);
    for (k, v) in labels {
        put_str(out, k);
        put_str(out, v);
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(VALUE_NULL),
        Value::Bool(b) => {
            out.push(VALUE_BOOL);
            out.push(u8::from(*b));
        }
        Value::Int(i) => {
            out.push(VALUE_INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(VALUE_FLOAT);
            put_f64(out, *f);
        }
        Value::Str(s) => {
            out.push(VALUE_STR);
            put_str(out, s);
        }
    }
}

fn put_addr(out: &mut Vec<u8>, addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    event: u32,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: &'static str) -> PayloadError {
        PayloadError {
            event: self.event,
            offset: self.pos,
            reason,
        }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], PayloadError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.err("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PayloadError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, PayloadError> {
        Ok(self.array::<1>()?[0])
    }

    fn i64(&mut self) -> Result<i64, PayloadError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn f64(&mut self) -> Result<f64, PayloadError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    fn varint(&mut self) -> Result<u64, PayloadError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    /// A count of items each at least `min_size` bytes long, checked against what remains.
    fn count(&mut self, min_size: usize) -> Result<usize, PayloadError> {
        let n = self.varint()?;
        let remaining = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_size as u64) > remaining {
            return Err(self.err("count exceeds the bytes that remain"));
        }
        Ok(n as usize)
    }

    fn str(&mut self) -> Result<String, PayloadError> {
        let n = self.count(1)?;
        let bytes = self.bytes(n)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| self.err("string is not valid UTF-8"))
    }

    fn labels(&mut self) -> Result<Labels, PayloadError> {
        let n = self.count(2)?;
        let mut labels = Labels::new();
        for _ in 0..n {
            let k = self.str()?;
            let v = self.str()?;
            labels.insert(k, v);
        }
        Ok(labels)
    }

    fn value(&mut self) -> Result<Value, PayloadError> {
        Ok(match self.u8()? {
            VALUE_NULL => Value::Null,
            VALUE_BOOL => match self.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(self.err("boolean is neither 0 nor 1")),
            },
            VALUE_INT => Value::Int(self.i64()?),
            VALUE_FLOAT => Value::Float(self.f64()?),
            VALUE_STR => Value::Str(self.str()?),
            _ => return Err(self.err("unknown value tag")),
        })
    }

    fn addr(&mut self) -> Result<IpAddr, PayloadError> {
        Ok(match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            _ => return Err(self.err("unknown address family")),
        })
    }

    fn event(&mut self) -> Result<Event, PayloadError> {
        let kind = self.u8()?;
        let timestamp_ns = self.i64()?;
        let source = self.str()?;
        let labels = self.labels()?;
        let kind = match kind {
            KIND_LOG => {
                let severity = match self.u8()? {
                    NO_SEVERITY => None,
                    code => Some(
                        Severity::from_code(code).ok_or_else(|| self.err("unknown severity"))?,
                    ),
                };
                let message = self.str()?;
                let n = self.count(2)?;
                let mut fields = Fields::new();
                for _ in 0..n {
                    let k = self.str()?;
                    let v = self.value()?;
                    fields.insert(k, v);
                }
                EventKind::Log(LogEvent {
                    message,
                    severity,
                    fields,
                })
            }
            KIND_METRIC => {
                let name = self.str()?;
                let value = match self.u8()? {
                    METRIC_GAUGE => MetricValue::Gauge { value: self.f64()? },
                    METRIC_COUNTER => MetricValue::Counter { value: self.f64()? },
                    METRIC_HISTOGRAM => {
                        let count = self.varint()?;
                        let sum = self.f64()?;
                        let n = self.count(9)?;
                        let mut buckets = Vec::with_capacity(n);
                        for _ in 0..n {
                            buckets.push((self.f64()?, self.varint()?));
                        }
                        MetricValue::Histogram {
                            count,
                            sum,
                            buckets,
                        }
                    }
                    METRIC_SUMMARY => {
                        let count = self.varint()?;
                        let sum = self.f64()?;
                        let n = self.count(16)?;
                        let mut quantiles = Vec::with_capacity(n);
                        for _ in 0..n {
                            quantiles.push((self.f64()?, self.f64()?));
                        }
                        MetricValue::Summary {
                            count,
                            sum,
                            quantiles,
                        }
                    }
                    _ => return Err(self.err("unknown metric kind")),
                };
                EventKind::Metric(MetricEvent { name, value })
            }
            KIND_FLOW => EventKind::Flow(FlowEvent {
                src_addr: self.addr()?,
                dst_addr: self.addr()?,
                src_port: u16::from_le_bytes(self.array()?),
                dst_port: u16::from_le_bytes(self.array()?),
                protocol: self.u8()?,
                end_ns: self.i64()?,
                bytes_out: self.varint()?,
                bytes_in: self.varint()?,
                packets_out: self.varint()?,
                packets_in: self.varint()?,
                tcp_flags: self.u8()?,
            }),
            _ => return Err(self.err("unknown event kind")),
        };
        Ok(Event {
            timestamp_ns,
            source,
            labels,
            kind,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn finite() -> impl Strategy<Value = f64> {
        // NaN != NaN would fail equality, not the codec; finite values and infinities
        // cover the encoding.
        prop_oneof![
            -1e300f64..1e300,
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY)
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            finite().prop_map(Value::Float),
            ".{0,20}".prop_map(Value::Str),
        ]
    }

    fn metric_value() -> impl Strategy<Value = MetricValue> {
        prop_oneof![
            finite().prop_map(|value| MetricValue::Gauge { value }),
            finite().prop_map(|value| MetricValue::Counter { value }),
            (
                any::<u64>(),
                finite(),
                prop::collection::vec((finite(), any::<u64>()), 0..5)
            )
                .prop_map(|(count, sum, buckets)| MetricValue::Histogram {
                    count,
                    sum,
                    buckets
                }),
            (
                any::<u64>(),
                finite(),
                prop::collection::vec((finite(), finite()), 0..5)
            )
                .prop_map(|(count, sum, quantiles)| MetricValue::Summary {
                    count,
                    sum,
                    quantiles
                }),
        ]
    }

    /// Any event, for property tests here and in the frame module.
    pub(crate) fn event() -> impl Strategy<Value = Event> {
        let kind = prop_oneof![
            (
                ".{0,200}",
                proptest::option::of(0u8..9),
                prop::collection::btree_map("[a-z_]{1,8}", value(), 0..4)
            )
                .prop_map(|(message, sev, fields)| EventKind::Log(LogEvent {
                    message,
                    severity: sev.and_then(Severity::from_code),
                    fields,
                })),
            ("[a-z_]{1,30}", metric_value())
                .prop_map(|(name, value)| EventKind::Metric(MetricEvent { name, value })),
            (
                any::<IpAddr>(),
                any::<IpAddr>(),
                any::<u16>(),
                any::<u16>(),
                any::<u8>(),
                any::<i64>(),
                any::<[u64; 4]>(),
                any::<u8>()
            )
                .prop_map(|(s, d, sp, dp, protocol, end_ns, n, tcp_flags)| {
                    EventKind::Flow(FlowEvent {
                        src_addr: s,
                        dst_addr: d,
                        src_port: sp,
                        dst_port: dp,
                        protocol,
                        end_ns,
                        bytes_out: n[0],
                        bytes_in: n[1],
                        packets_out: n[2],
                        packets_in: n[3],
                        tcp_flags,
                    })
                }),
        ];
        (
            any::<i64>(),
            ".{0,40}",
            prop::collection::btree_map("[a-z]{1,6}", ".{0,10}", 0..4),
            kind,
        )
            .prop_map(|(timestamp_ns, source, labels, kind)| Event {
                timestamp_ns,
                source,
                labels,
                kind,
            })
    }

    proptest! {
        #[test]
        fn events_round_trip(events in prop::collection::vec(event(), 0..20)) {
            let payload = encode_events(&events);
            prop_assert_eq!(decode_events(&payload, events.len() as u32), Ok(events));
        }

        #[test]
        fn truncation_is_an_error_not_a_panic(events in prop::collection::vec(event(), 1..5), cut in 1usize..64) {
            let payload = encode_events(&events);
            let cut = cut.min(payload.len());
            prop_assert!(decode_events(&payload[..payload.len() - cut], events.len() as u32).is_err());
        }

        #[test]
        fn a_log_encoded_from_its_parts_is_the_event_encoded(
            ts in any::<i64>(),
            source in ".{0,40}",
            message in ".{0,300}",
            severity in prop::option::of(0u8..8),
            fields in prop::collection::btree_map("[a-z]{1,8}", value(), 0..4),
        ) {
            let severity = severity.and_then(Severity::from_code);
            let parts: Vec<(&str, &Value)> = fields.iter().map(|(k, v)| (k.as_str(), v)).collect();
            let mut direct = Vec::new();
            encode_log(ts, &source, severity, &message, &parts, &mut direct);
            prop_assert_eq!(direct.len(), encoded_log_len(&source, &message, &parts));
            let event = Event {
                timestamp_ns: ts,
                source,
                labels: Labels::new(),
                kind: EventKind::Log(LogEvent { message, severity, fields }),
            };
            let mut via_event = Vec::new();
            encode_event(&event, &mut via_event);
            prop_assert_eq!(direct, via_event);
        }

        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..256), count in 0u32..1_000_000) {
            let _outcome = decode_events(&data, count);
        }
    }

    #[test]
    fn count_mismatch_is_rejected() {
        let payload = encode_events(&[Event::log(1, "a", "x"), Event::log(2, "a", "y")]);
        assert!(decode_events(&payload, 1).is_err());
        assert!(decode_events(&payload, 3).is_err());
    }

    #[test]
    fn huge_declared_string_does_not_allocate() {
        let mut p = vec![KIND_LOG];
        p.extend_from_slice(&0i64.to_le_bytes());
        put_varint(&mut p, u64::MAX / 2);
        let err = decode_events(&p, 1).expect_err("accepted");
        assert_eq!(err.reason, "count exceeds the bytes that remain");
    }
}
