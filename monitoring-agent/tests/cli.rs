//! The `monitoring-agent` binary: `check-config` output and exit codes, and `run`
//! shipping a file then exiting 0 on SIGTERM.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestCollector;

const BIN: &str = env!("CARGO_BIN_EXE_monitoring-agent");

#[test]
fn check_config_accepts_the_example_file() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/agent.toml");
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK"));
}

#[test]
fn check_config_prints_every_problem_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[collector]\nmax_in_flight = 0\n\n[buffer]\nmax_batch_events = 0\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let p = path.display();
    assert!(
        stderr.contains(&format!("{p}:2: key `collector.max_in_flight`: ")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{p}:5: key `buffer.max_batch_events`: ")),
        "{stderr}"
    );

    std::fs::write(&path, "[buffer]\nwhen_ful = \"block\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{p}:2: key `buffer.when_ful`")),
        "{stderr}"
    );
}

/// Enabling journald in a build without the `journald` feature is a configuration
/// error that names the key and the feature; with the feature it is accepted.
#[test]
fn check_config_names_the_journald_feature() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journald.toml");
    std::fs::write(
        &path,
        "[collectors.logs]\nenabled = false\n\n[collectors.logs.journald]\nenabled = true\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if cfg!(feature = "journald") {
        assert!(out.status.success(), "{stderr}");
    } else {
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("key `collectors.logs.journald.enabled`")
                && stderr.contains("built without the `journald` feature"),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ships_lines_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    std::fs::write(dir.path().join("logs/a.log"), "hello from the binary\n").unwrap();
    let mut collector = TestCollector::start().await;
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[collector]\nendpoint = \"{}\"\n[buffer]\nflush_interval_ms = 50\n[state]\ndir = \"{}\"\n\
             [collectors.logs]\nfiles = [\"{}/*.log\"]\n[collectors.metrics]\nenabled = false\n\
             [control]\nenabled = false\n",
            collector.url(),
            dir.path().join("state").display(),
            dir.path().join("logs").display(),
        ),
    )
    .unwrap();
    let child = tokio::process::Command::new(BIN)
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let f = collector.next_frame(20).await;
    assert_eq!(f.messages(), vec!["hello from the binary"]);
    f.ok();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the agent did not exit after SIGTERM")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // JSON logs, one object per line.
    let first = stderr.lines().next().unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(first).is_ok(),
        "{first}"
    );
    assert!(stderr.contains("Agent stopped."), "{stderr}");
}
