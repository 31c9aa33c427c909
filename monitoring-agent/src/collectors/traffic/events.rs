//! One interval's flows and counts as events: a flow event per flow, and metrics for
//! the top talkers, the interval's totals and the capture's drop counters.

use monitoring_common::event::{Event, EventKind, Labels, MetricEvent, MetricValue};

use super::flows::Interval;

/// The capture's running totals, as libpcap reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packets received by the filter.
    pub received: u64,
    /// Packets dropped by the kernel because the agent did not read fast enough.
    pub kernel_dropped: u64,
    /// Packets dropped by the interface or its driver.
    pub interface_dropped: u64,
}

/// Where the interval's events come from.
#[derive(Debug)]
pub struct Origin<'a> {
    /// The event source: `traffic:<interface>` or the savefile's path.
    pub source: &'a str,
    /// The interface label (or the savefile's name).
    pub interface: &'a str,
    /// The agent's tags.
    pub tags: &'a Labels,
}

/// The events of an interval from `start_ns` (the timestamp of every event) to the
/// `end_ns` its flows carry.
pub fn interval_events(
    interval: Interval,
    start_ns: i64,
    origin: &Origin<'_>,
    stats: Option<CaptureStats>,
) -> Vec<Event> {
    let mut labels = origin.tags.clone();
    labels.insert("interface".into(), origin.interface.to_owned());
    let event = |kind: EventKind, labels: Labels| Event {
        timestamp_ns: start_ns,
        source: origin.source.to_owned(),
        labels,
        kind,
    };
    let metric = |name: &str, labels: Labels, value: MetricValue| {
        event(
            EventKind::Metric(MetricEvent {
                name: name.to_owned(),
                value,
            }),
            labels,
        )
    };
    let mut out = Vec::with_capacity(interval.flows.len() + interval.top_talkers.len() + 8);
    for (rank, (address, bytes)) in interval.top_talkers.iter().enumerate() {
        let mut l = labels.clone();
        l.insert("address".into(), address.to_string());
        l.insert("rank".into(), (rank + 1).to_string());
        out.push(metric(
            "traffic_top_talker_bytes",
            l,
            MetricValue::Gauge {
                value: *bytes as f64,
            },
        ));
    }
    let gauges = [
        ("traffic_flows", interval.flows.len() as f64),
        ("traffic_interval_packets", interval.packets as f64),
        ("traffic_interval_bytes", interval.bytes as f64),
        ("traffic_overflow_packets", interval.overflow_packets as f64),
    ];
    for (name, value) in gauges {
        out.push(metric(name, labels.clone(), MetricValue::Gauge { value }));
    }
    if let Some(s) = stats {
        let counters = [
            ("traffic_captured_packets_total", s.received),
            ("traffic_kernel_dropped_packets_total", s.kernel_dropped),
            (
                "traffic_interface_dropped_packets_total",
                s.interface_dropped,
            ),
        ];
        for (name, value) in counters {
            out.push(metric(
                name,
                labels.clone(),
                MetricValue::Counter {
                    value: value as f64,
                },
            ));
        }
    }
    for flow in interval.flows {
        out.push(event(EventKind::Flow(flow), labels.clone()));
    }
    out
}
