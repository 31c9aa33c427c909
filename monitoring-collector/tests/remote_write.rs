//! The `prometheus_remote_write` sink against the real Prometheus that
//! `scripts/services.sh start` runs (`MONITORING_TEST_PROMETHEUS_URL`, default
//! http://127.0.0.1:59090): every metric type is queryable with the values written,
//! out-of-order samples are refused and dropped (never retried), and the request
//! carries what the remote-write 1.0 spec asks, read off a real socket.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use monitoring_collector::storage::CommitOutcome;
use monitoring_collector::storage::IngestBatch;
use monitoring_collector::storage::sinks::remote_write::RemoteWriteSink;
use monitoring_collector::storage::sinks::remote_write::proto::WriteRequest;
use monitoring_collector::storage::sinks::{Sink, SinkConfig, SinkError, Sinks};
use monitoring_collector::telemetry::Metrics;
use monitoring_common::event::{Labels, now_ns};
use monitoring_common::{Event, MetricValue};
use prost::Message;
use serde_json::Value;

fn prometheus() -> String {
    let url = std::env::var("MONITORING_TEST_PROMETHEUS_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:59090".into());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    match agent.get(format!("{url}/-/ready")).call() {
        Ok(r) if r.status().is_success() => url,
        other => panic!(
            "Prometheus does not answer at {url} ({other:?}): start it with `scripts/services.sh start` \
             (or set MONITORING_TEST_PROMETHEUS_URL)"
        ),
    }
}

/// A label value no other test run uses.
fn unique(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), now_ns())
}

fn sink(url: &str) -> RemoteWriteSink {
    RemoteWriteSink::with(
        &format!("{url}/api/v1/write"),
        None,
        Duration::from_secs(10),
    )
    .unwrap()
}

fn batch(agent: &str, events: Vec<Event>) -> Arc<IngestBatch> {
    Arc::new(IngestBatch {
        agent_id: agent.into(),
        stream_id: 1,
        sequence: 1,
        received_ns: now_ns(),
        events,
    })
}

fn labels(run: &str) -> Labels {
    [
        ("run".to_string(), run.to_string()),
        ("dev.name".to_string(), "sda".to_string()),
    ]
    .into_iter()
    .collect()
}

/// `query` at now: each result's labels and its value (instant) or values (range).
fn query(url: &str, query: &str) -> Vec<(serde_json::Map<String, Value>, Vec<f64>)> {
    let text = ureq::get(format!("{url}/api/v1/query"))
        .query("query", query)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], "success", "{body}");
    let number = |v: &Value| v[1].as_str().unwrap().parse::<f64>().unwrap();
    body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let values = match r.get("values") {
                Some(vs) => vs.as_array().unwrap().iter().map(number).collect(),
                None => vec![number(&r["value"])],
            };
            (r["metric"].as_object().unwrap().clone(), values)
        })
        .collect()
}

fn value(url: &str, q: &str) -> f64 {
    let results = query(url, q);
    assert_eq!(results.len(), 1, "{q}: {results:?}");
    results[0].1[0]
}

#[test]
fn every_metric_type_is_queryable_with_its_values() {
    let url = prometheus();
    let run = unique("types");
    let now = now_ns();
    let m = |name: &str, at: i64, v: MetricValue| Event::metric(at, "host", name, labels(&run), v);
    let events = vec![
        // Given newest first: the sink sorts each series by time.
        m(
            "sinktest_temp_celsius",
            now,
            MetricValue::Gauge { value: 21.5 },
        ),
        m(
            "sinktest_temp_celsius",
            now - 2_000_000_000,
            MetricValue::Gauge { value: 19.0 },
        ),
        m(
            "sinktest.requests-total",
            now,
            MetricValue::Counter { value: 42.0 },
        ),
        m(
            "sinktest_latency_seconds",
            now,
            MetricValue::Histogram {
                count: 10,
                sum: 3.5,
                buckets: vec![(0.1, 2), (1.0, 9)],
            },
        ),
        m(
            "sinktest_rpc_seconds",
            now,
            MetricValue::Summary {
                count: 7,
                sum: 1.75,
                quantiles: vec![(0.5, 0.2), (0.99, 0.9)],
            },
        ),
        Event::log(now, "app", "logs are not sent"),
    ];
    sink(&url).write(&[batch("rw-agent", events)]).unwrap();

    let sel = format!("{{run=\"{run}\"}}");
    let gauge = query(&url, &format!("sinktest_temp_celsius{sel}[1m]"));
    assert_eq!(gauge.len(), 1, "{gauge:?}");
    let (labels, values) = &gauge[0];
    assert_eq!(values, &[19.0, 21.5], "oldest first");
    assert_eq!(labels["agent_id"], "rw-agent");
    assert_eq!(labels["dev_name"], "sda", "label names sanitised");
    assert_eq!(value(&url, &format!("sinktest_requests_total{sel}")), 42.0);
    let q = |s: &str| format!("sinktest_latency_seconds_{s}");
    assert_eq!(
        value(
            &url,
            &format!("{}{{run=\"{run}\",le=\"0.1\"}}", q("bucket"))
        ),
        2.0
    );
    assert_eq!(
        value(&url, &format!("{}{{run=\"{run}\",le=\"1\"}}", q("bucket"))),
        9.0
    );
    assert_eq!(
        value(
            &url,
            &format!("{}{{run=\"{run}\",le=\"+Inf\"}}", q("bucket"))
        ),
        10.0
    );
    assert_eq!(value(&url, &format!("{}{sel}", q("sum"))), 3.5);
    assert_eq!(value(&url, &format!("{}{sel}", q("count"))), 10.0);
    assert_eq!(
        value(
            &url,
            &format!("sinktest_rpc_seconds{{run=\"{run}\",quantile=\"0.99\"}}")
        ),
        0.9
    );
    assert_eq!(value(&url, &format!("sinktest_rpc_seconds_sum{sel}")), 1.75);
    assert_eq!(
        value(&url, &format!("sinktest_rpc_seconds_count{sel}")),
        7.0
    );
    let bucket_series = query(&url, &format!("{}{sel}", q("bucket")));
    assert_eq!(bucket_series.len(), 3, "{bucket_series:?}");
}

#[test]
fn out_of_order_samples_are_refused_dropped_and_counted_never_retried() {
    let url = prometheus();
    let run = unique("ooo");
    let now = now_ns();
    let gauge = |at: i64, v: f64| {
        batch(
            "rw-agent",
            vec![Event::metric(
                at,
                "host",
                "sinktest_ooo",
                labels(&run),
                MetricValue::Gauge { value: v },
            )],
        )
    };
    let direct = sink(&url);
    direct.write(&[gauge(now, 1.0)]).unwrap();
    let error = direct
        .write(&[gauge(now - 60_000_000_000, 2.0)])
        .unwrap_err();
    println!("refusal: {error}");
    assert!(
        matches!(error, SinkError::Rejected { status: 400, .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert!(
        direct.health().is_ok(),
        "a refusal is about the data, not the sink"
    );

    // Required: the refusal does not hold the batch back, and is counted.
    let config: SinkConfig = toml::from_str(&format!(
        "type = \"prometheus_remote_write\"\nname = \"prom\"\nrequired = true\nurl = \"{url}/api/v1/write\"\n"
    ))
    .unwrap();
    let metrics = Metrics::default();
    let sinks = Sinks::start(&[config], &metrics).unwrap();
    let started = std::time::Instant::now();
    sinks
        .fanout()
        .deliver(&gauge(now - 30_000_000_000, 3.0), CommitOutcome::Committed)
        .expect("a refused batch is acknowledged, not retried");
    assert!(started.elapsed() < Duration::from_secs(5));
    let label = |reason: &str| [("sink", "prom".to_string()), ("reason", reason.to_string())];
    assert_eq!(
        metrics
            .sink_events_dropped
            .get_or_create(&label("rejected"))
            .get(),
        1
    );
    assert_eq!(
        metrics
            .sink_write_errors
            .get_or_create(&[("sink", "prom".to_string())])
            .get(),
        1
    );
    sinks.shutdown(Duration::from_secs(1));
    assert_eq!(value(&url, &format!("sinktest_ooo{{run=\"{run}\"}}")), 1.0);
}

/// Reads one HTTP request (head and a Content-Length body) from a real socket and
/// answers 204.
fn capture_one(listener: &TcpListener) -> (String, Vec<u8>) {
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let (head, body_start) = loop {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed early");
        data.extend_from_slice(&buf[..n]);
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break (String::from_utf8(data[..i].to_vec()).unwrap(), i + 4);
        }
    };
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    while data.len() < body_start + length {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "body cut short");
        data.extend_from_slice(&buf[..n]);
    }
    conn.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .unwrap();
    (head, data[body_start..body_start + length].to_vec())
}

#[test]
fn the_request_is_snappy_protobuf_with_the_spec_headers_and_the_token() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || capture_one(&listener));
    let sink = RemoteWriteSink::with(
        &format!("http://127.0.0.1:{port}/api/v1/write"),
        Some("s3cret".into()),
        Duration::from_secs(10),
    )
    .unwrap();
    let event = Event::metric(
        1_700_000_000_123_456_789,
        "host",
        "up",
        Labels::new(),
        MetricValue::Gauge { value: 1.0 },
    );
    sink.write(&[batch("hdr-agent", vec![event])]).unwrap();
    let (head, body) = server.join().unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("post /api/v1/write http/1.1"), "{head}");
    for header in [
        "content-encoding: snappy",
        "content-type: application/x-protobuf",
        "x-prometheus-remote-write-version: 0.1.0",
        "authorization: bearer s3cret",
    ] {
        assert!(head.contains(header), "{header} missing in:\n{head}");
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy block format");
    let request = WriteRequest::decode(raw.as_slice()).expect("a WriteRequest");
    assert_eq!(request.timeseries.len(), 1);
    let ts = &request.timeseries[0];
    let labels: Vec<(&str, &str)> = ts
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    assert_eq!(labels, [("__name__", "up"), ("agent_id", "hdr-agent")]);
    assert_eq!(ts.samples.len(), 1);
    assert_eq!(
        (ts.samples[0].timestamp, ts.samples[0].value),
        (1_700_000_000_123, 1.0)
    );
}

#[test]
fn a_closed_port_is_a_retryable_failure_and_marks_the_sink_unhealthy() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sink = RemoteWriteSink::with(
        &format!("http://127.0.0.1:{port}/api/v1/write"),
        None,
        Duration::from_secs(2),
    )
    .unwrap();
    let event = Event::metric(
        now_ns(),
        "host",
        "up",
        Labels::new(),
        MetricValue::Gauge { value: 1.0 },
    );
    let error = sink.write(&[batch("a", vec![event])]).unwrap_err();
    assert!(
        matches!(error, SinkError::Transport { .. }) && error.is_retryable(),
        "{error:?}"
    );
    assert!(sink.health().is_err());
}
