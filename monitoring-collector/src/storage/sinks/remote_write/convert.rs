//! Metric events as Prometheus series: one [`WriteRequest`] for a write's batches.
//!
//! - gauge, counter: one series, the metric's name;
//! - histogram: `<name>_bucket{le="..."}` per bucket (cumulative, with `+Inf` added
//!   when the event lacks it), `<name>_sum`, `<name>_count`;
//! - summary: `<name>{quantile="..."}` per quantile, `<name>_sum`, `<name>_count`.
//!
//! Labels are the event's labels plus `agent_id` (the authenticated agent) and
//! `__name__`. Names are sanitised to what Prometheus accepts (metric names
//! `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`, other
//! characters become `_`); an event label that would clash with one added here
//! (`agent_id`, `le`, `quantile`, or a reserved `__` name) is kept as
//! `exported_<name>`, as Prometheus does; empty values are left out (Prometheus
//! reads them as absent). Labels are sorted by name, and each series' samples by
//! time, with one sample per millisecond (the last one given), since Prometheus
//! refuses a request holding two different samples of a series at one time.

use std::collections::BTreeMap;
use std::sync::Arc;

use monitoring_common::event::Labels;
use monitoring_common::{Event, EventKind, MetricValue};

use super::proto::{Label, Sample, TimeSeries, WriteRequest};
use crate::storage::IngestBatch;

/// The label naming the agent a sample came from.
pub const AGENT_LABEL: &str = "agent_id";

/// The request for the metric events of `batches` (other events are skipped).
pub fn write_request(batches: &[Arc<IngestBatch>]) -> WriteRequest {
    let mut series: BTreeMap<Vec<Label>, Vec<Sample>> = BTreeMap::new();
    for batch in batches {
        for event in &batch.events {
            add(&mut series, &batch.agent_id, event);
        }
    }
    let timeseries = series
        .into_iter()
        .map(|(labels, mut samples)| {
            // Stable: samples at one time keep their order, and the last one wins.
            samples.sort_by_key(|s| s.timestamp);
            let mut unique: Vec<Sample> = Vec::with_capacity(samples.len());
            for sample in samples {
                match unique.last_mut() {
                    Some(last) if last.timestamp == sample.timestamp => *last = sample,
                    _ => unique.push(sample),
                }
            }
            TimeSeries {
                labels,
                samples: unique,
            }
        })
        .collect();
    WriteRequest { timeseries }
}

fn add(series: &mut BTreeMap<Vec<Label>, Vec<Sample>>, agent_id: &str, event: &Event) {
    let EventKind::Metric(metric) = &event.kind else {
        return;
    };
    let name = metric_name(&metric.name);
    if name.is_empty() {
        return;
    }
    let base = base_labels(agent_id, &event.labels);
    let timestamp = event.timestamp_ns.div_euclid(1_000_000);
    let mut push = |suffix: &str, extra: Option<(&str, String)>, value: f64| {
        let labels = series_labels(&base, &format!("{name}{suffix}"), extra);
        series
            .entry(labels)
            .or_default()
            .push(Sample { value, timestamp });
    };
    match &metric.value {
        MetricValue::Gauge { value } | MetricValue::Counter { value } => push("", None, *value),
        MetricValue::Histogram {
            count,
            sum,
            buckets,
        } => {
            for (le, n) in buckets {
                push("_bucket", Some(("le", float_label(*le))), *n as f64);
            }
            if !buckets.iter().any(|(le, _)| *le == f64::INFINITY) {
                push("_bucket", Some(("le", "+Inf".into())), *count as f64);
            }
            push("_sum", None, *sum);
            push("_count", None, *count as f64);
        }
        MetricValue::Summary {
            count,
            sum,
            quantiles,
        } => {
            for (q, value) in quantiles {
                push("", Some(("quantile", float_label(*q))), *value);
            }
            push("_sum", None, *sum);
            push("_count", None, *count as f64);
        }
    }
}

/// The event's labels, sanitised, with `agent_id`; without `__name__`.
fn base_labels(agent_id: &str, labels: &Labels) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in labels {
        if v.is_empty() {
            continue;
        }
        let mut name = label_name(k);
        if name == AGENT_LABEL || name.starts_with("__") {
            name = format!("exported_{name}");
        }
        // Two names that sanitise alike: the first (in name order) is kept.
        out.entry(name).or_insert_with(|| v.clone());
    }
    out.insert(AGENT_LABEL.to_string(), agent_id.to_string());
    out
}

/// The sorted labels of one series.
fn series_labels(
    base: &BTreeMap<String, String>,
    name: &str,
    extra: Option<(&str, String)>,
) -> Vec<Label> {
    let mut labels: Vec<Label> = Vec::with_capacity(base.len() + 2);
    for (k, v) in base {
        let clashes = extra.as_ref().is_some_and(|(e, _)| e == k);
        let name = match clashes {
            true => format!("exported_{k}"),
            false => k.clone(),
        };
        labels.push(Label {
            name,
            value: v.clone(),
        });
    }
    labels.push(Label {
        name: "__name__".into(),
        value: name.into(),
    });
    if let Some((k, v)) = extra {
        labels.push(Label {
            name: k.into(),
            value: v,
        });
    }
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    labels.dedup_by(|a, b| a.name == b.name);
    labels
}

/// A bound or quantile as Prometheus writes it: `0.5`, `1`, `+Inf`.
fn float_label(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

/// A metric name in `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn metric_name(name: &str) -> String {
    sanitise(name, |c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A label name in `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn label_name(name: &str) -> String {
    sanitise(name, |c| c.is_ascii_alphanumeric() || c == '_')
}

fn sanitise(name: &str, allowed: impl Fn(char) -> bool) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(events: Vec<Event>) -> Arc<IngestBatch> {
        Arc::new(IngestBatch {
            agent_id: "web-1".into(),
            stream_id: 1,
            sequence: 1,
            received_ns: 0,
            events,
        })
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Each series as `name{k=v,...}` (without `__name__`) with its samples.
    fn flat(request: &WriteRequest) -> Vec<(String, Vec<(i64, f64)>)> {
        request
            .timeseries
            .iter()
            .map(|ts| {
                let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
                let mut sorted = names.clone();
                sorted.sort_unstable();
                assert_eq!(names, sorted, "labels sorted");
                let name = &ts
                    .labels
                    .iter()
                    .find(|l| l.name == "__name__")
                    .expect("name")
                    .value;
                let rest: Vec<String> = ts
                    .labels
                    .iter()
                    .filter(|l| l.name != "__name__")
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect();
                let samples = ts.samples.iter().map(|s| (s.timestamp, s.value)).collect();
                (format!("{name}{{{}}}", rest.join(",")), samples)
            })
            .collect()
    }

    #[test]
    fn gauges_and_counters_are_one_series_each_with_the_agent() {
        let events = vec![
            Event::metric(
                2_000_000,
                "h",
                "cpu.usage",
                labels(&[("cpu", "0"), ("empty", "")]),
                MetricValue::Gauge { value: 0.5 },
            ),
            Event::metric(
                1_000_000,
                "h",
                "cpu.usage",
                labels(&[("cpu", "0")]),
                MetricValue::Gauge { value: 0.25 },
            ),
            Event::metric(
                1_000_000,
                "h",
                "1st-total",
                labels(&[("agent_id", "spoof"), ("a.b", "x")]),
                MetricValue::Counter { value: 7.0 },
            ),
            Event::log(1, "f", "not a metric"),
        ];
        let got = flat(&write_request(&[batch(events)]));
        assert_eq!(
            got,
            [
                (
                    "_1st_total{a_b=x,agent_id=web-1,exported_agent_id=spoof}".to_string(),
                    vec![(1, 7.0)]
                ),
                (
                    "cpu_usage{agent_id=web-1,cpu=0}".to_string(),
                    vec![(1, 0.25), (2, 0.5)]
                ),
            ]
        );
    }

    #[test]
    fn histograms_and_summaries_expand_as_prometheus_exposes_them() {
        let events = vec![
            Event::metric(
                5_000_000,
                "h",
                "rt",
                labels(&[("le", "mine")]),
                MetricValue::Histogram {
                    count: 4,
                    sum: 2.5,
                    buckets: vec![(0.1, 1), (1.0, 3)],
                },
            ),
            Event::metric(
                5_000_000,
                "h",
                "q",
                Labels::new(),
                MetricValue::Summary {
                    count: 2,
                    sum: 3.0,
                    quantiles: vec![(0.5, 1.0), (0.99, 2.0)],
                },
            ),
        ];
        let got = flat(&write_request(&[batch(events)]));
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "q{agent_id=web-1,quantile=0.5}",
                "q{agent_id=web-1,quantile=0.99}",
                "q_count{agent_id=web-1}",
                "q_sum{agent_id=web-1}",
                "rt_bucket{agent_id=web-1,exported_le=mine,le=+Inf}",
                "rt_bucket{agent_id=web-1,exported_le=mine,le=0.1}",
                "rt_bucket{agent_id=web-1,exported_le=mine,le=1}",
                "rt_count{agent_id=web-1,le=mine}",
                "rt_sum{agent_id=web-1,le=mine}",
            ]
        );
        let value = |n: &str| got.iter().find(|(name, _)| name == n).expect(n).1.clone();
        assert_eq!(
            value("rt_bucket{agent_id=web-1,exported_le=mine,le=+Inf}"),
            [(5, 4.0)]
        );
        assert_eq!(
            value("rt_bucket{agent_id=web-1,exported_le=mine,le=1}"),
            [(5, 3.0)]
        );
        assert_eq!(value("q{agent_id=web-1,quantile=0.99}"), [(5, 2.0)]);
        assert_eq!(value("q_sum{agent_id=web-1}"), [(5, 3.0)]);
    }

    #[test]
    fn one_sample_per_millisecond_the_last_given() {
        let at =
            |ns, v| Event::metric(ns, "h", "g", Labels::new(), MetricValue::Gauge { value: v });
        let request = write_request(&[
            batch(vec![at(3_000_000, 3.0), at(1_000_000, 1.0)]),
            batch(vec![at(1_500_000, 1.5), at(3_200_000, 3.2)]),
        ]);
        assert_eq!(
            flat(&request),
            [("g{agent_id=web-1}".to_string(), vec![(1, 1.5), (3, 3.2)])]
        );
    }

    #[test]
    fn names_are_sanitised() {
        assert_eq!(
            metric_name("node:cpu.seconds-total"),
            "node:cpu_seconds_total"
        );
        assert_eq!(label_name("node:cpu"), "node_cpu");
        assert_eq!(label_name("9lives"), "_9lives");
        assert_eq!(metric_name("é"), "_");
    }
}
