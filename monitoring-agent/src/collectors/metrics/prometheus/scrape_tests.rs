//! Scrapes of a real HTTP server on loopback (axum) serving expositions, errors,
//! slow and oversized bodies.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use monitoring_common::event::{Event, EventKind, Labels, MetricValue};

use super::config::ScrapeConfig;
use super::scrape::Target;

const NODE: &str = "# HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 0.25\n\
                    # TYPE node_cpu_seconds_total counter\n\
                    node_cpu_seconds_total{cpu=\"0\",mode=\"idle\",job=\"inner\"} 1234.5\n";

async fn server() -> String {
    let app = Router::new()
        .route("/metrics", get(|| async { NODE }))
        .route(
            "/om",
            get(|| async {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0",
                    )],
                    "# TYPE a counter\na_total 3 1700000000.5\n# EOF\n",
                )
            }),
        )
        .route(
            "/truncated",
            get(|| async {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0",
                    )],
                    "# TYPE a counter\na_total 3\n",
                )
            }),
        )
        .route("/broken", get(|| async { "ok 1\nnot a sample{\n" }))
        .route("/big", get(|| async { "x 1\n".repeat(100_000) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                NODE
            }),
        )
        .route(
            "/auth",
            get(|headers: HeaderMap| async move {
                match headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                {
                    Some("Bearer s3cret") => NODE.into_response(),
                    _ => StatusCode::UNAUTHORIZED.into_response(),
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

fn target(url: String, extra: &str) -> Target {
    let config: ScrapeConfig =
        toml::from_str(&format!("url = {url:?}\njob = \"node\"\n{extra}")).unwrap();
    assert!(
        config.validate("t").is_empty(),
        "{:?}",
        config.validate("t")
    );
    let tags: Labels = [("env".to_string(), "test".to_string())].into();
    Target::new(config, &tags)
}

fn gauge(events: &[Event], name: &str) -> f64 {
    let event = events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::Metric(m) if m.name == name))
        .unwrap_or_else(|| panic!("no {name} in {events:?}"));
    match &event.kind {
        EventKind::Metric(m) => match m.value {
            MetricValue::Gauge { value } | MetricValue::Counter { value } => value,
            _ => panic!("{name} is not a single value"),
        },
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_scrape_labels_every_sample_and_reports_up() {
    let base = server().await;
    let t = target(format!("{base}/metrics"), "labels = { team = \"ops\" }");
    let (events, error) = t.scrape().await;
    assert_eq!(error, None);
    assert_eq!(gauge(&events, "node_load1"), 0.25);
    assert_eq!(gauge(&events, "up"), 1.0);
    assert_eq!(gauge(&events, "scrape_samples_scraped"), 2.0);
    let cpu = events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::Metric(m) if m.name == "node_cpu_seconds_total"))
        .unwrap();
    let port = base.rsplit(':').next().unwrap();
    assert_eq!(cpu.labels["job"], "node");
    assert_eq!(cpu.labels["exported_job"], "inner");
    assert_eq!(cpu.labels["instance"], format!("127.0.0.1:{port}"));
    assert_eq!(cpu.labels["env"], "test");
    assert_eq!(cpu.labels["team"], "ops");
    assert_eq!(cpu.labels["mode"], "idle");
    assert_eq!(cpu.source, format!("{base}/metrics"));
    assert!(
        matches!(&cpu.kind, EventKind::Metric(m) if m.value == MetricValue::Counter { value: 1234.5 })
    );
}

#[tokio::test]
async fn openmetrics_is_recognised_by_its_content_type() {
    let base = server().await;
    let (events, error) = target(format!("{base}/om"), "").scrape().await;
    assert_eq!(error, None);
    let a = events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::Metric(m) if m.name == "a_total"))
        .unwrap();
    assert_eq!(a.timestamp_ns, 1_700_000_000_500_000_000);
}

#[tokio::test]
async fn failures_give_up_zero_and_a_reason() {
    let base = server().await;
    let cases = [
        ("/truncated", "", "# EOF"),
        ("/broken", "", "line 2"),
        ("/big", "max_body_bytes = 65536", "max_body_bytes"),
        ("/slow", "interval_secs = 1", "timed out"),
        ("/auth", "", "HTTP status 401"),
        ("/absent", "", "HTTP status 404"),
        ("/big", "sample_limit = 10", "sample_limit"),
    ];
    for (path, extra, needle) in cases {
        let (events, error) = target(format!("{base}{path}"), extra).scrape().await;
        let error = error.unwrap_or_else(|| panic!("{path} should fail"));
        assert!(error.contains(needle), "{path}: {error:?} lacks {needle:?}");
        assert_eq!(gauge(&events, "up"), 0.0, "{path}");
        assert_eq!(gauge(&events, "scrape_samples_scraped"), 0.0, "{path}");
        assert_eq!(events.len(), 3, "{path}: only the up series");
    }
    // Nothing listens: a connection error, not a hang.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_, error) = target(format!("http://127.0.0.1:{port}/metrics"), "")
        .scrape()
        .await;
    assert!(error.unwrap().contains("cannot connect"));
}

#[tokio::test]
async fn bearer_tokens_from_config_or_file() {
    let base = server().await;
    let (_, error) = target(format!("{base}/auth"), "bearer_token = \"s3cret\"")
        .scrape()
        .await;
    assert_eq!(error, None);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret\n").unwrap();
    let (_, error) = target(
        format!("{base}/auth"),
        &format!("bearer_token_file = {file:?}"),
    )
    .scrape()
    .await;
    assert_eq!(error, None);
}
