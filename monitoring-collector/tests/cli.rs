//! The command line: `check-config` and shutdown on SIGTERM, with the real binary;
//! the library `run` driven by a cancellation token.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Collector, free_addr, log_frame, round_trip, write_config};
use futures_util::StreamExt;
use monitoring_collector::config::Config;
use monitoring_common::protocol::{AckStatus, Codec};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

fn collector() -> Command {
    Command::new(env!("CARGO_BIN_EXE_monitoring-collector"))
}

#[test]
fn check_config_accepts_the_example_file() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/collector.toml");
    let out = collector()
        .arg("check-config")
        .arg("--config")
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n");
}

#[test]
fn check_config_names_file_line_and_key_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "bad.toml",
        "# a comment\n[server]\nwebsocket_addr = \"127.0.0.1:7400\"\nmax_conections = 5\n",
    );
    let out = collector()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:4: key `server.max_conections`: unknown field",
        path.display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");

    // Validation reports every problem at once, each located.
    let path = write_config(
        dir.path(),
        "invalid.toml",
        "[processor]\nworkers = 0\nqueue_batches = 0\n\n[storage]\nread_pool_size = 0\n",
    );
    let out = collector()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let p = path.display();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{p}:2: key `processor.workers`: must be between 1 and 1024"),
            format!("{p}:3: key `processor.queue_batches`: must be between 1 and 1000000"),
            format!("{p}:6: key `storage.read_pool_size`: must be between 1 and 64"),
        ]
    );
}

#[test]
fn usage_errors_exit_2_and_a_missing_file_exits_1() {
    let out = collector()
        .arg("check-config")
        .env_remove("MONITORING_COLLECTOR_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
    let out = collector()
        .args(["check-config", "--config", "/nonexistent/c.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/c.toml"));
}

#[tokio::test]
async fn sigterm_stops_the_collector_cleanly() {
    let mut collector = Collector::start().await;
    let mut agent = collector.connect("leaving").await;
    let ack = round_trip(&mut agent, log_frame(Codec::Zstd, 1, 1, &["bye".into()])).await;
    assert_eq!(ack.status, AckStatus::Ok);
    let code = collector.terminate(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{}", collector.log());
    let log = collector.log();
    assert!(log.contains("Listening for agents."), "{log}");
    assert!(log.contains("Stopped."), "{log}");
}

#[tokio::test]
async fn the_library_run_stops_when_its_token_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.websocket_addr = free_addr();
    config.api.addr = free_addr();
    config.storage.path = dir.path().join("store");
    let api = config.api.addr;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(monitoring_collector::run(config, shutdown.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("http://{api}/ready")).await
            && r.status() == 200
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn server_bind_reports_the_ports_it_got() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.websocket_addr = "127.0.0.1:0".parse().unwrap();
    config.api.addr = "127.0.0.1:0".parse().unwrap();
    config.storage.path = dir.path().join("store");
    let server = monitoring_collector::Server::bind(config).await.unwrap();
    let (ws, api) = (server.ingest_addr(), server.api_addr());
    assert_ne!(ws.port(), 0);
    assert_ne!(api.port(), 0);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(server.serve(shutdown.clone()));
    let mut agent = common::connect(ws, Some("in-process")).await.unwrap();
    let ack = round_trip(&mut agent, log_frame(Codec::Lz4, 5, 5, &["hi".into()])).await;
    assert_eq!(ack.status, AckStatus::Ok);
    // Shutdown closes the open connection with 1001 (going away).
    shutdown.cancel();
    let close = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match agent.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(close, Some(1001));
    let result = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

/// Regression: with stderr a closed pipe, tracing-subscriber's fallback `eprintln!`
/// panicked the signal task, and SIGTERM no longer stopped the collector.
#[tokio::test]
async fn sigterm_stops_the_collector_even_when_stderr_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, api) = (free_addr(), free_addr());
    let config = format!(
        "[server]\nwebsocket_addr = \"{ws}\"\n[api]\naddr = \"{api}\"\n[storage]\npath = \"{}\"\n",
        dir.path().join("store").display()
    );
    let path = write_config(dir.path(), "c.toml", &config);
    let mut child = collector()
        .arg("--config")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !matches!(reqwest::get(format!("http://{api}/health")).await, Ok(r) if r.status() == 200)
    {
        assert!(std::time::Instant::now() < deadline, "not healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(child.stderr.take());
    // Something that logs, now into the closed pipe.
    let mut agent = common::connect(ws, Some("quiet")).await.unwrap();
    let ack = round_trip(&mut agent, log_frame(Codec::Lz4, 1, 1, &["x".into()])).await;
    assert_eq!(ack.status, AckStatus::Ok);
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            return;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("SIGTERM did not stop the collector");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
