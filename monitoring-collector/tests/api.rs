//! The REST API against the real collector binary, fed by an agent connection.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use common::{Collector, gauge, log_frame, marker, round_trip};
use monitoring_common::event::now_ns;
use monitoring_common::protocol::{AckStatus, Codec};
use monitoring_common::{Event, EventKind, Severity};

#[tokio::test]
async fn health_ready_metrics_and_openapi() {
    let collector = Collector::start().await;
    assert_eq!(
        collector.get("/health").await,
        (200, serde_json::json!({"status": "ok"}))
    );
    assert_eq!(
        collector.get("/ready").await,
        (200, serde_json::json!({"status": "ready"}))
    );

    let response = reqwest::get(collector.url("/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    for name in [
        "monitoring_ingest_connections ",
        "monitoring_ingest_connections_accepted_total",
        "monitoring_ingest_frames_received_total",
        "monitoring_ingest_bytes_received_total",
        "monitoring_ingest_batches_committed_total",
        "monitoring_ingest_batches_duplicate_total",
        "monitoring_storage_commit_seconds_bucket",
        "monitoring_processor_queue_depth",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }

    let (status, spec) = collector.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(spec["openapi"], "3.0.3");
    assert!(spec["paths"]["/api/v1/logs"]["get"].is_object());

    let (status, body) = collector.get("/api/v1/nothing").await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn agents_and_metrics_come_from_host_metrics() {
    let collector = Collector::start().await;
    let mut agent = collector.connect("db-7").await;
    let events = vec![
        gauge(
            "host_info",
            &[
                ("hostname", "db7.example"),
                ("os", "Debian GNU/Linux"),
                ("os_version", "13"),
                ("kernel_version", "6.12.0"),
                ("arch", "x86_64"),
            ],
            1.0,
        ),
        gauge("host_cpu_usage_percent", &[("cpu", "total")], 12.5),
        gauge("host_cpu_usage_percent", &[("cpu", "0")], 30.0),
        gauge("host_memory_usage_percent", &[], 40.0),
    ];
    let ack = round_trip(&mut agent, common::frame(Codec::Lz4, 1, 1, &events)).await;
    assert_eq!(ack.status, AckStatus::Ok, "{ack:?}");

    let (status, body) = collector.get("/api/v1/agents").await;
    assert_eq!(status, 200, "{body}");
    let agents = body["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{body}");
    let a = &agents[0];
    assert_eq!(a["id"], "db-7");
    assert_eq!(a["hostname"], "db7.example");
    assert_eq!(a["os"], "Debian GNU/Linux 13");
    assert_eq!(a["kernel_version"], "6.12.0");
    assert_eq!(a["cpu_percent"], 12.5);
    assert_eq!(a["memory_percent"], 40.0);
    assert_eq!(a["status"], "online");
    let last_seen_ms = a["last_seen_ms"].as_i64().unwrap();
    assert!((now_ns() / 1_000_000 - last_seen_ms).abs() < 60_000, "{a}");
    assert!(a["last_seen"].as_str().unwrap().ends_with('Z'));

    let (status, body) = collector.get("/api/v1/metrics/names").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "host_cpu_usage_percent",
            "host_info",
            "host_memory_usage_percent"
        ]
    );

    let (status, body) = collector
        .get("/api/v1/metrics?name=host_cpu_usage_percent&label=cpu=total")
        .await;
    assert_eq!(status, 200, "{body}");
    let series = body["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{body}");
    let s = &series[0];
    assert_eq!(
        (&s["name"], &s["agent_id"], &s["kind"]),
        (
            &"host_cpu_usage_percent".into(),
            &"db-7".into(),
            &"gauge".into()
        )
    );
    assert_eq!(s["labels"], serde_json::json!({"cpu": "total"}));
    let point = &s["points"][0];
    assert_eq!(point[1], 12.5, "{body}");
    assert!((now_ns() / 1_000_000 - point[0].as_i64().unwrap()).abs() < 60_000);

    // Both CPU series, bucketed by a step, within an explicit range.
    let from = now_ns() / 1_000_000 - 600_000;
    let (status, body) = collector
        .get(&format!(
            "/api/v1/metrics?name=host_cpu_usage_percent&agent=db-7&from={from}&step=1m"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["series"].as_array().unwrap().len(), 2, "{body}");
    for s in body["series"].as_array().unwrap() {
        let t = s["points"][0][0].as_i64().unwrap();
        // Buckets start at `from`.
        assert_eq!((t - from) % 60_000, 0, "bucket not aligned: {s}");
    }

    let (status, body) = collector
        .get("/api/v1/metrics?name=host_cpu_usage_percent&agent=nobody")
        .await;
    assert_eq!((status, body), (200, serde_json::json!({"series": []})));
}

#[tokio::test]
async fn log_search_filters_pages_and_reports_bad_parameters() {
    let collector = Collector::start().await;
    let mut agent = collector.connect("app-1").await;
    let m = marker("search");
    // In the past, so that the batch sent after it is outside the time window below.
    let base = now_ns() - 10_000_000_000;
    let events: Vec<Event> = [
        Severity::Error,
        Severity::Warning,
        Severity::Info,
        Severity::Debug,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, severity)| {
        let mut e = Event::log(
            base + i as i64 * 1_000_000,
            "app",
            format!("{m} {severity}"),
        );
        if let EventKind::Log(log) = &mut e.kind {
            log.severity = Some(severity);
        }
        e
    })
    .collect();
    assert_eq!(
        round_trip(&mut agent, common::frame(Codec::Gzip, 9, 1, &events))
            .await
            .status,
        AckStatus::Ok
    );
    let other = log_frame(Codec::Gzip, 9, 2, &[format!("{m} from another source")]);
    assert_eq!(round_trip(&mut agent, other).await.status, AckStatus::Ok);

    // Severity is a minimum.
    let (_, body) = collector
        .get(&format!("/api/v1/logs?q={m}&severity=warning&order=asc"))
        .await;
    let severities: Vec<&str> = body["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["severity"].as_str().unwrap())
        .collect();
    assert_eq!(severities, ["error", "warning"]);

    // Source and agent filters.
    let (_, body) = collector
        .get(&format!("/api/v1/logs?q={m}&source=app&agent=app-1"))
        .await;
    assert_eq!(body["logs"].as_array().unwrap().len(), 4);
    let (_, body) = collector
        .get(&format!("/api/v1/logs?q={m}&agent=someone-else"))
        .await;
    assert_eq!(body["logs"].as_array().unwrap().len(), 0);

    // Paging with the cursor visits everything once, newest first.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/logs?q={m}&limit=2");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = collector.get(&path).await;
        assert_eq!(status, 200, "{body}");
        for l in body["logs"].as_array().unwrap() {
            seen.push(l["timestamp_ns"].as_i64().unwrap());
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(seen.len() <= 5, "paging does not end");
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.windows(2).all(|w| w[0] >= w[1]), "{seen:?}");

    // A time window in RFC 3339 and in milliseconds.
    let from_ms = base / 1_000_000;
    let (_, body) = collector
        .get(&format!(
            "/api/v1/logs?q={m}&from={from_ms}&to={}",
            from_ms + 2
        ))
        .await;
    assert_eq!(body["logs"].as_array().unwrap().len(), 2, "{body}");

    for (query, needle) in [
        ("severity=loud", "severity"),
        ("limit=0", "limit"),
        ("from=yesterday", "from"),
        ("order=sideways", "order"),
        ("cursor=garbage", "cursor"),
        ("colour=blue", "unknown query parameter"),
    ] {
        let (status, body) = collector.get(&format!("/api/v1/logs?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(needle),
            "{query}: {body}"
        );
    }
    let (status, body) = collector.get("/api/v1/metrics").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("name"), "{body}");
}

#[tokio::test]
async fn every_response_carries_security_headers_and_no_cors() {
    let collector = Collector::start().await;
    let client = reqwest::Client::new();
    for (path, origin_status) in [
        ("/health", 200),
        ("/api/v1/logs?limit=1", 200),
        ("/nope", 404),
    ] {
        let response = client
            .get(collector.url(path))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), origin_status, "{path}");
        let h = response.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(
            h["content-security-policy"], "default-src 'none'; frame-ancestors 'none'",
            "{path}"
        );
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert!(
            !h.contains_key("access-control-allow-origin"),
            "{path}: CORS must be closed"
        );
    }
}

#[tokio::test]
async fn a_client_that_drips_its_request_headers_is_dropped_at_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let collector = Collector::start_with("handshake_timeout_secs = 2", "").await;
    let started = std::time::Instant::now();
    let mut slow = tokio::net::TcpStream::connect(collector.api).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // Meanwhile the API answers others.
    let (status, _) = collector.get("/health").await;
    assert_eq!(status, 200);
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        slow.read_to_end(&mut buf),
    )
    .await
    .expect("connection still open 10 s after its deadline");
    let waited = started.elapsed();
    // An end of file or a reset: either way the server closed it.
    drop(read);
    assert!(!buf.starts_with(b"HTTP/1.1 200"), "{buf:?}");
    assert!(
        waited >= std::time::Duration::from_millis(1900),
        "dropped after {waited:?}, before the deadline"
    );
}
