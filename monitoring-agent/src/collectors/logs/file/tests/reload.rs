//! Reconfiguring a running source: matched files keep their position, unmatched
//! ones stop being read and keep their checkpoint, new ones are discovered.

use super::*;
use crate::collectors::logs::file::run::{FileReloader, run_reloadable};

pub(super) fn start(config: LogsConfig, state: &Path) -> (Harness, FileReloader) {
    let (tx, rx) = mpsc::channel(1000);
    let (reloader, reloads) = FileReloader::channel();
    let stop_reading = CancellationToken::new();
    let stop_all = CancellationToken::new();
    let metrics = Arc::new(FileMetrics::default());
    let task = tokio::spawn(run_reloadable(
        config,
        state.to_path_buf(),
        tx,
        Arc::clone(&metrics),
        stop_reading.clone(),
        stop_all.clone(),
        reloads,
    ));
    let harness = Harness {
        rx,
        stop_reading,
        stop_all,
        task,
        metrics,
    };
    (harness, reloader)
}

fn line(name: &str, n: u32) -> String {
    format!("{name} line number {n} long enough for a fingerprint\n")
}

fn sorted(lines: &[Got]) -> Vec<&str> {
    let mut m = messages(lines);
    m.sort_unstable();
    m
}

fn checkpoint_of(state: &Path, file: &Path) -> Option<u64> {
    let text = fs::read_to_string(state.join("files.json")).ok()?;
    let file = file.to_str()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["files"]
        .as_array()?
        .iter()
        .find(|e| e["path"].as_str() == Some(file))
        .and_then(|e| e["offset"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_matched_files_drops_unmatched_and_finds_new_ones() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b, c) = (
        logs.path().join("a.log"),
        logs.path().join("b.log"),
        logs.path().join("c.log"),
    );
    append(&a, &line("a", 1));
    append(&b, &line("b", 1));
    append(&c, &line("c", 1));
    let path = |p: &Path| p.display().to_string();
    let (mut h, reloader) = start(test_config(&[path(&a), path(&b)]), state.path());
    let first = h.recv(2).await;
    assert_eq!(
        sorted(&first),
        [line("a", 1).trim_end(), line("b", 1).trim_end()]
    );
    ack_all(&first);

    // b.log leaves the patterns, c.log joins them.
    assert!(reloader.reload(test_config(&[path(&a), path(&c)])));
    let got = h.recv(1).await;
    assert_eq!(messages(&got), [line("c", 1).trim_end()]);
    ack_all(&got);
    append(&a, &line("a", 2));
    append(&b, &line("b", 2));
    let got = h.recv(1).await;
    // a.log goes on from where it was: its first line is not read again.
    assert_eq!(messages(&got), [line("a", 2).trim_end()]);
    ack_all(&got);
    h.quiet().await;

    // Disabled: nothing is read; enabled again, a.log resumes where it stopped.
    let disabled = LogsConfig {
        enabled: false,
        ..test_config(&[path(&a)])
    };
    assert!(reloader.reload(disabled));
    wait_for("files closed", || h.metrics.files_open.get() == 0).await;
    append(&a, &line("a", 3));
    h.quiet().await;
    assert!(reloader.reload(test_config(&[path(&a)])));
    let got = h.recv(1).await;
    assert_eq!(messages(&got), [line("a", 3).trim_end()]);
    ack_all(&got);
    h.quiet().await;
    h.stop().await;

    // b.log's acknowledged line stays checkpointed, not its unread second one.
    let b1 = u64::try_from(line("b", 1).len()).unwrap();
    assert_eq!(checkpoint_of(state.path(), &b), Some(b1));
    let a3 = u64::try_from(3 * line("a", 1).len()).unwrap();
    assert_eq!(checkpoint_of(state.path(), &a), Some(a3));
}
