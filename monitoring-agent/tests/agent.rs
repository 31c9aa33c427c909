//! The whole agent library (`monitoring_agent::agent::run`) against a real WebSocket
//! collector: tailed lines are checkpointed only once acknowledged, survive a restart
//! without acknowledgement, host metrics flow, and `/health` tells the truth.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::TestCollector;
use monitoring_agent::config::AgentConfig;
use monitoring_agent::telemetry::Telemetry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn config(extra: &str, url: &str, dir: &Path) -> AgentConfig {
    let text = format!(
        r#"
[agent]
id = "agent-under-test"
shutdown_timeout_secs = 1

[agent.tags]
env = "test"

[collector]
endpoint = "{url}"

[buffer]
flush_interval_ms = 100

[state]
dir = "{state}"

[collectors.logs]
files = ["{logs}/*.log"]
poll_interval_ms = 50
rescan_interval_ms = 200
checkpoint_interval_ms = 100

{extra}
"#,
        state = dir.join("state").display(),
        logs = dir.join("logs").display(),
    );
    monitoring_common::config::parse(&text, Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

const QUIET: &str = "[collectors.metrics]\nenabled = false\n[control]\nenabled = false\n";

fn write_lines(dir: &Path, range: std::ops::Range<usize>) {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("logs/app.log"))
        .unwrap();
    for i in range {
        writeln!(f, "line number {i:05}").unwrap();
    }
    f.sync_all().unwrap();
}

struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), monitoring_agent::agent::AgentError>>,
    telemetry: Arc<Telemetry>,
}

fn spawn(config: AgentConfig) -> Running {
    let shutdown = CancellationToken::new();
    let telemetry = Arc::new(Telemetry::new());
    let task = tokio::spawn(monitoring_agent::agent::run_with(
        config,
        telemetry.clone(),
        shutdown.clone(),
    ));
    Running {
        shutdown,
        task,
        telemetry,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the agent did not stop in time")
            .unwrap()
            .unwrap();
    }
}

/// Receives frames (acknowledging them when `ack`) until `n` log lines have arrived.
async fn receive_lines(collector: &mut TestCollector, n: usize, ack: bool) -> Vec<String> {
    let mut lines = Vec::new();
    while lines.len() < n {
        let f = collector.next_frame(20).await;
        lines.extend(f.messages());
        if ack {
            f.ok();
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_lines_are_checkpointed_and_not_sent_again_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(dir.path(), 0..100);
    let mut collector = TestCollector::start().await;
    let agent = spawn(config(QUIET, &collector.url(), dir.path()));
    let lines = receive_lines(&mut collector, 100, true).await;
    let expected: Vec<String> = (0..100).map(|i| format!("line number {i:05}")).collect();
    assert_eq!(lines, expected);
    agent.stop().await;
    assert!(
        dir.path()
            .join("state")
            .read_dir()
            .unwrap()
            .next()
            .is_some(),
        "no checkpoint written"
    );

    let mut collector = TestCollector::start().await;
    let agent = spawn(config(QUIET, &collector.url(), dir.path()));
    collector.expect_no_frame(1500).await;
    write_lines(dir.path(), 100..110);
    let lines = receive_lines(&mut collector, 10, true).await;
    let expected: Vec<String> = (100..110).map(|i| format!("line number {i:05}")).collect();
    assert_eq!(lines, expected, "only the new lines, once");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_lines_are_read_again_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(dir.path(), 0..50);
    let mut silent = TestCollector::start().await;
    let agent = spawn(config(QUIET, &silent.url(), dir.path()));
    let lines = receive_lines(&mut silent, 50, false).await;
    assert_eq!(lines.len(), 50);
    // Shutdown waits shutdown_timeout_secs for acknowledgements that never come.
    agent.stop().await;

    let mut collector = TestCollector::start().await;
    let agent = spawn(config(QUIET, &collector.url(), dir.path()));
    let lines = receive_lines(&mut collector, 50, true).await;
    let expected: Vec<String> = (0..50).map(|i| format!("line number {i:05}")).collect();
    assert_eq!(lines, expected, "every unacknowledged line comes again");
    agent.stop().await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_metrics_flow_and_health_reports_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let control = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let extra = format!(
        "[collectors.metrics]\nsystem_interval_secs = 1\n[control]\nlisten = \"{control}\"\n"
    );
    let mut collector = TestCollector::start().await;
    let mut cfg = config(&extra, &collector.url(), dir.path());
    cfg.collectors.logs.enabled = false;
    let agent = spawn(cfg);

    let conn = collector.next_connection(10).await;
    assert_eq!(conn.agent_id.as_deref(), Some("agent-under-test"));
    // host_info comes first, announced before any source starts; the first full
    // sample follows a second later (in the same batch or the next).
    let mut f = collector.next_frame(10).await;
    assert_eq!(
        f.metric_names().first().map(String::as_str),
        Some("host_info")
    );
    while !f
        .metric_names()
        .iter()
        .any(|n| n == "host_cpu_usage_percent")
    {
        f.ok();
        f = collector.next_frame(10).await;
    }
    let names = f.metric_names();
    assert!(names.iter().any(|n| n == "host_info"), "{names:?}");
    assert!(
        f.frame
            .events
            .iter()
            .all(|e| e.labels.get("env").map(String::as_str) == Some("test")),
        "agent tags are on every metric"
    );
    f.ok();
    common::eventually(5, "ack counted", || {
        agent.telemetry.transport.acked_batches.get() >= 1
    })
    .await;

    let health: serde_json::Value =
        serde_json::from_str(&http_get(control, "/health").await).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["agent_id"], "agent-under-test");
    assert_eq!(health["collector"]["connected"], true);
    assert!(health["collector"]["last_ack_unix_ms"].as_i64().unwrap() > 0);
    let metrics = http_get(control, "/metrics").await;
    assert!(
        metrics.contains("monitoring_agent_transport_acked_batches_total"),
        "{metrics}"
    );
    assert!(metrics.contains("monitoring_agent_host_collections_total"));

    // Keep acknowledging while the agent drains.
    let acker = tokio::spawn(async move {
        while let Some(f) = collector.frames.recv().await {
            f.ok();
        }
    });
    agent.stop().await;
    acker.abort();
}
