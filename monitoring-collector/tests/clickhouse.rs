//! The collector binary with `[storage] backend = "clickhouse"`, against the real
//! ClickHouse server of `scripts/services.sh start` (`MONITORING_TEST_CLICKHOUSE_URL`,
//! default `http://127.0.0.1:58123/`): an agent's batches are acknowledged, a resend
//! is recognised, and the API answers from ClickHouse. Each test uses a database of
//! its own.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::process::Command;

use common::{Collector, gauge, log_frame, marker, round_trip, write_config};
use monitoring_common::protocol::{AckStatus, Codec};

/// The server's URL, without a trailing slash.
fn server() -> String {
    std::env::var("MONITORING_TEST_CLICKHOUSE_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:58123/".to_string())
        .trim_end_matches('/')
        .to_string()
}

/// Runs a statement on the server; fails the test, saying how to start the server,
/// when it does not answer.
async fn clickhouse(sql: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/", server()))
        .body(sql.to_string())
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "ClickHouse does not answer at {} ({e}); start the test servers with \
                 `scripts/services.sh start` or set MONITORING_TEST_CLICKHOUSE_URL",
                server()
            )
        });
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{sql}: {status} {text}");
    text
}

/// A fresh database name; dropped by [`DropDatabase`].
struct DropDatabase(String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {}", self.0);
        // Blocking: this may run outside the test's runtime.
        let dropped = ureq::post(format!("{}/", server())).send(sql.as_bytes());
        if !matches!(&dropped, Ok(r) if r.status() == 200) {
            eprintln!("could not drop test database {}: {dropped:?}", self.0);
        }
    }
}

async fn database(name: &str) -> DropDatabase {
    let db = format!("mon_it_{name}_{}", std::process::id());
    clickhouse(&format!("DROP DATABASE IF EXISTS {db}")).await;
    DropDatabase(db)
}

#[tokio::test]
async fn agents_batches_are_stored_once_and_served_by_the_api() {
    let db = database("collector").await;
    let collector = Collector::start_with_storage(&format!(
        "backend = \"clickhouse\"\nurl = \"{}/?database={}\"\ntimeout_ms = 30000",
        server(),
        db.0
    ))
    .await;
    assert_eq!(
        collector.get("/ready").await,
        (200, serde_json::json!({"status": "ready"}))
    );
    let mark = marker("clickhouse collector");
    let messages: Vec<String> = (0..50).map(|i| format!("{mark} line {i}")).collect();
    let mut agent = collector.connect("ch-agent").await;
    let logs = log_frame(Codec::Zstd, 9, 1, &messages);
    let ack = round_trip(&mut agent, logs.clone()).await;
    assert_eq!(ack.status, AckStatus::Ok, "{ack:?}");
    let host = vec![
        gauge(
            "host_info",
            &[("hostname", "ch.example"), ("os", "Debian")],
            1.0,
        ),
        gauge("host_cpu_usage_percent", &[("cpu", "total")], 7.5),
    ];
    let ack = round_trip(&mut agent, common::frame(Codec::Lz4, 9, 2, &host)).await;
    assert_eq!(ack.status, AckStatus::Ok, "{ack:?}");
    // The first batch again, as after a lost acknowledgement.
    let ack = round_trip(&mut agent, logs).await;
    assert_eq!(ack.status, AckStatus::Ok, "{ack:?}");

    let (status, body) = collector
        .get(&format!("/api/v1/logs?q={mark}&limit=1000"))
        .await;
    assert_eq!(status, 200, "{body}");
    let found = body["logs"].as_array().unwrap();
    assert_eq!(found.len(), 50, "{body}");
    let stored = clickhouse(&format!("SELECT count() FROM {}.logs", db.0)).await;
    assert_eq!(stored.trim(), "50", "the resend was not written again");
    let (_, body) = collector.get("/api/v1/agents").await;
    let agents = body["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{body}");
    assert_eq!(agents[0]["hostname"], "ch.example");
    assert_eq!(agents[0]["cpu_percent"], 7.5);
    let (_, body) = collector.get("/api/v1/metrics/names").await;
    assert_eq!(
        body["names"],
        serde_json::json!(["host_cpu_usage_percent", "host_info"])
    );
    let metrics = collector.self_metrics().await;
    let duplicates = metrics
        .lines()
        .find(|l| l.starts_with("monitoring_ingest_batches_duplicate_total"))
        .unwrap_or_default()
        .to_string();
    assert!(duplicates.ends_with(" 1"), "{duplicates}");
}

#[test]
fn check_config_rejects_a_bad_url_without_printing_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "collector.toml",
        "[storage]\nbackend = \"clickhouse\"\n\
         url = \"http://user:hunter2@ch:8123/?database=bad-name\"\n",
    );
    let output = Command::new(env!("CARGO_BIN_EXE_monitoring-collector"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("storage.url"), "{stderr}");
    assert!(stderr.contains("database name"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
