//! End-to-end tests of the file source through [`run`]: real files in temporary
//! directories, a tokio channel as the pipeline, acknowledgements given by the test
//! the way the transport gives them.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use monitoring_common::{EventKind, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::pipeline::Envelope;

mod filter;
mod multiline;
mod reload;
mod rotation;

/// One line as received.
#[derive(Debug, Clone)]
pub(super) struct Got {
    pub message: String,
    pub source: String,
    pub offset: i64,
    pub envelope: Envelope,
}

impl Got {
    fn ack(&self) {
        let (progress, end) = self.envelope.ack.as_ref().unwrap();
        progress.advance(*end);
    }
}

fn got(envelope: Envelope) -> Got {
    let event = envelope.to_event().unwrap();
    let EventKind::Log(log) = &event.kind else {
        panic!("not a log event");
    };
    let Some(Value::Int(offset)) = log.fields.get(OFFSET_FIELD) else {
        panic!("no offset field");
    };
    Got {
        message: log.message.clone(),
        source: event.source.clone(),
        offset: *offset,
        envelope,
    }
}

/// A running source.
pub(super) struct Harness {
    rx: mpsc::Receiver<Envelope>,
    stop_reading: CancellationToken,
    stop_all: CancellationToken,
    task: JoinHandle<Result<(), FileSourceError>>,
    pub metrics: Arc<FileMetrics>,
}

/// A configuration with short timers for tests.
pub(super) fn test_config(patterns: &[String]) -> LogsConfig {
    LogsConfig {
        files: patterns.to_vec(),
        rescan_interval_ms: 50,
        poll_interval_ms: 20,
        checkpoint_interval_ms: 50,
        fingerprint_bytes: 32,
        rotated_idle_close_ms: 300,
        // Tests that ship partial lines set a timeout themselves.
        partial_line_timeout_ms: 0,
        ..LogsConfig::default()
    }
}

fn pattern(dir: &Path, glob: &str) -> String {
    format!("{}/{glob}", dir.display())
}

impl Harness {
    pub fn start(config: LogsConfig, state: &Path) -> Harness {
        Harness::start_with_capacity(config, state, 100_000)
    }

    fn start_with_capacity(config: LogsConfig, state: &Path, capacity: usize) -> Harness {
        let (tx, rx) = mpsc::channel(capacity);
        let stop_reading = CancellationToken::new();
        let stop_all = CancellationToken::new();
        let metrics = Arc::new(FileMetrics::default());
        let task = tokio::spawn(run(
            config,
            state.to_path_buf(),
            tx,
            Arc::clone(&metrics),
            stop_reading.clone(),
            stop_all.clone(),
        ));
        Harness {
            rx,
            stop_reading,
            stop_all,
            task,
            metrics,
        }
    }

    /// Receives exactly `n` lines (fails after a generous timeout).
    pub async fn recv(&mut self, n: usize) -> Vec<Got> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), self.rx.recv()).await {
                Ok(Some(e)) => out.push(got(e)),
                _ => panic!(
                    "got {} of {n} lines: {:?}",
                    out.len(),
                    out.iter().map(|g| &g.message).collect::<Vec<_>>()
                ),
            }
        }
        out
    }

    /// Asserts that nothing more arrives for a while.
    pub async fn quiet(&mut self) {
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(400), self.rx.recv()).await
        {
            panic!("unexpected line {:?}", got(e).message);
        }
    }

    /// Stops reading and everything, and waits for the final checkpoint.
    pub async fn stop(mut self) {
        self.stop_reading.cancel();
        self.stop_all.cancel();
        (&mut self.task).await.unwrap().unwrap();
    }
}

impl Drop for Harness {
    /// A failed test must not hang: the runtime waits for the blocking loop to end.
    fn drop(&mut self) {
        self.stop_reading.cancel();
        self.stop_all.cancel();
    }
}

fn append(path: &Path, text: &str) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

fn messages(lines: &[Got]) -> Vec<&str> {
    lines.iter().map(|g| g.message.as_str()).collect()
}

fn ack_all(lines: &[Got]) {
    for g in lines {
        g.ack();
    }
}

fn checkpoint_offsets(state: &Path) -> Vec<u64> {
    let text = fs::read_to_string(state.join("files.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["files"]
        .as_array()
        .map(|a| a.iter().map(|e| e["offset"].as_u64().unwrap()).collect())
        .unwrap_or_default()
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_lf_and_crlf_and_holds_a_partial_last_line() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let file = logs.path().join("a.log");
    append(&file, "one\ntwo\r\nthr");
    let mut h = Harness::start(test_config(&[pattern(logs.path(), "*.log")]), state.path());
    let lines = h.recv(2).await;
    assert_eq!(messages(&lines), vec!["one", "two"]);
    assert_eq!((lines[0].offset, lines[1].offset), (0, 4));
    assert_eq!(lines[0].source, file.display().to_string());
    h.quiet().await;
    append(&file, "ee\n");
    let lines = h.recv(1).await;
    assert_eq!(messages(&lines), vec!["three"]);
    assert_eq!(lines[0].offset, 9);
    assert_eq!(lines[0].envelope.ack.as_ref().unwrap().1, 15);
    assert_eq!(h.metrics.lines_read.get(), 3);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_are_truncated_and_counted_and_invalid_utf8_kept() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let file = logs.path().join("a.log");
    let long = "x".repeat(1000);
    fs::write(&file, format!("{long}\nshort\n").into_bytes()).unwrap();
    let mut bytes = b"bad \xff byte\n".to_vec();
    bytes.extend_from_slice(b"after\n");
    OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    let config = LogsConfig {
        max_line_bytes: 100,
        ..test_config(&[pattern(logs.path(), "*.log")])
    };
    let mut h = Harness::start(config, state.path());
    let lines = h.recv(4).await;
    assert_eq!(lines[0].message, "x".repeat(100));
    assert_eq!(lines[1].message, "short");
    assert_eq!(lines[1].offset, 1001);
    assert_eq!(lines[2].message, "bad \u{FFFD} byte");
    assert_eq!(lines[3].message, "after");
    assert_eq!(h.metrics.lines_truncated.get(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn globs_and_exclusions_choose_the_files() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (name, line) in [
        ("a.log", "a"),
        ("b.txt", "b"),
        ("skip.log", "skip"),
        ("sub/c.log", "c"),
    ] {
        let path = logs.path().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        append(&path, &format!("{line}\n"));
    }
    let mut config = test_config(&[
        pattern(logs.path(), "*.log"),
        pattern(logs.path(), "sub/*.log"),
    ]);
    config.exclude = vec!["skip*".into()];
    let mut h = Harness::start(config, state.path());
    let mut got: Vec<String> = h.recv(2).await.into_iter().map(|g| g.message).collect();
    got.sort();
    assert_eq!(got, vec!["a", "c"]);
    h.quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_from_end_skips_existing_lines_but_not_new_files() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = logs.path().join("a.log");
    append(&a, "old 1\nold 2\n");
    let config = LogsConfig {
        read_from: ReadFrom::End,
        ..test_config(&[pattern(logs.path(), "*.log")])
    };
    let mut h = Harness::start(config, state.path());
    wait_for("the file to be open", || h.metrics.files_open.get() == 1).await;
    append(&a, "new 1\n");
    assert_eq!(messages(&h.recv(1).await), vec!["new 1"]);
    // A file created while running is new data: read from its beginning.
    let b = logs.path().join("b.log");
    append(&b, "b 1\nb 2\n");
    assert_eq!(messages(&h.recv(2).await), vec!["b 1", "b 2"]);
    h.quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_from_beginning_reads_existing_lines() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    append(&logs.path().join("a.log"), "old 1\nold 2\n");
    let mut h = Harness::start(test_config(&[pattern(logs.path(), "*.log")]), state.path());
    assert_eq!(messages(&h.recv(2).await), vec!["old 1", "old 2"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_file_is_discovered_while_running() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut h = Harness::start(test_config(&[pattern(logs.path(), "*.log")]), state.path());
    h.quiet().await;
    append(&logs.path().join("later.log"), "hello\n");
    assert_eq!(messages(&h.recv(1).await), vec!["hello"]);
    assert_eq!(h.metrics.files_discovered.get(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_files_are_not_taken_for_one_another() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (logs.path().join("a.log"), logs.path().join("b.log"));
    fs::write(&a, "").unwrap();
    fs::write(&b, "").unwrap();
    let mut h = Harness::start(test_config(&[pattern(logs.path(), "*.log")]), state.path());
    wait_for("both files open", || h.metrics.files_open.get() == 2).await;
    append(&a, "a1\n");
    append(&b, "b1\n");
    let mut got: Vec<String> = h.recv(2).await.into_iter().map(|g| g.message).collect();
    got.sort();
    assert_eq!(got, vec!["a1", "b1"]);
    // Growing past fingerprint_bytes (32) upgrades the identity without re-reading.
    append(&a, "a line long enough to reach the fingerprint size\n");
    assert_eq!(h.recv(1).await[0].offset, 3);
    h.quiet().await;
    assert_eq!(h.metrics.files_open.get(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_advances_only_with_acknowledgement() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    append(&logs.path().join("a.log"), "line 1\nline 2\nline 3\n");
    let mut h = Harness::start(test_config(&[pattern(logs.path(), "*.log")]), state.path());
    let lines = h.recv(3).await;
    wait_for("a checkpoint", || {
        checkpoint_offsets(state.path()) == vec![0]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        checkpoint_offsets(state.path()),
        vec![0],
        "nothing acknowledged yet"
    );
    lines[0].ack();
    lines[1].ack();
    wait_for("the acknowledged offset", || {
        checkpoint_offsets(state.path()) == vec![14]
    })
    .await;
    // After stop_reading, acknowledgements still reach the checkpoint.
    h.stop_reading.cancel();
    lines[2].ack();
    wait_for("the last offset", || {
        checkpoint_offsets(state.path()) == vec![21]
    })
    .await;
    assert!(!h.task.is_finished());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_reading_interrupts_a_send_to_a_full_pipeline() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
    append(&logs.path().join("a.log"), &text);
    let mut h = Harness::start_with_capacity(
        test_config(&[pattern(logs.path(), "*.log")]),
        state.path(),
        5,
    );
    let lines = h.recv(5).await;
    ack_all(&lines);
    h.stop_reading.cancel();
    // The source is blocked on the full channel; stopping must not wait for room.
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.stop_all.cancel();
    tokio::time::timeout(Duration::from_secs(5), &mut h.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(checkpoint_offsets(state.path()), vec![35]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_checkpoints_are_set_aside() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    fs::write(state.path().join("files.json"), "not json").unwrap();
    append(&logs.path().join("a.log"), "x\n");
    let mut h = Harness::start(test_config(&[pattern(logs.path(), "*.log")]), state.path());
    assert_eq!(messages(&h.recv(1).await), vec!["x"]);
    h.stop().await;
    let aside = fs::read_dir(state.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("corrupt")
        })
        .count();
    assert_eq!(aside, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_open_files_makes_files_wait_for_a_slot() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    append(&logs.path().join("a.log"), "a\n");
    append(&logs.path().join("b.log"), "b\n");
    let config = LogsConfig {
        max_open_files: 1,
        ..test_config(&[pattern(logs.path(), "*.log")])
    };
    let mut h = Harness::start(config, state.path());
    let first = h.recv(1).await.remove(0);
    wait_for("the other file to wait", || {
        h.metrics.files_waiting.get() == 1
    })
    .await;
    assert_eq!(h.metrics.files_open.get(), 1);
    // Deleting the open file frees its slot once it is read to its end.
    fs::remove_file(&first.source).unwrap();
    let second = h.recv(1).await.remove(0);
    assert_ne!(first.message, second.message);
    wait_for("no file waiting", || h.metrics.files_waiting.get() == 0).await;
    h.stop().await;
}

#[tokio::test]
async fn disabled_source_returns_at_once() {
    let state = tempfile::tempdir().unwrap();
    let config = LogsConfig {
        enabled: false,
        ..LogsConfig::default()
    };
    let (tx, _rx) = mpsc::channel(1);
    let token = CancellationToken::new();
    run(
        config,
        state.path().to_path_buf(),
        tx,
        Arc::default(),
        token.clone(),
        token,
    )
    .await
    .unwrap();
}
