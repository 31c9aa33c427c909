//! Rotation, truncation, deletion and restarts: every line exactly once.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_at_the_acknowledged_offset() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = logs.path().join("a.log");
    let text: String = (1..=10).map(|i| format!("line {i:02}\n")).collect();
    append(&a, &text);
    let config = test_config(&[pattern(logs.path(), "*.log")]);
    let mut h = Harness::start(config.clone(), state.path());
    let lines = h.recv(10).await;
    ack_all(&lines[..6]);
    h.stop().await;

    // Lines 7..10 were read but not acknowledged: they come again, and only they.
    append(&a, "line 11\n");
    let mut h = Harness::start(config, state.path());
    let lines = h.recv(5).await;
    assert_eq!(
        messages(&lines),
        vec!["line 07", "line 08", "line 09", "line 10", "line 11"]
    );
    assert_eq!(lines[0].offset, 48);
    h.quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_finishes_a_file_rotated_while_stopped() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = logs.path().join("a.log");
    let text: String = (1..=10)
        .map(|i| format!("line {i:02} of the first file\n"))
        .collect();
    append(&a, &text);
    let config = test_config(&[pattern(logs.path(), "*.log")]);
    let mut h = Harness::start(config.clone(), state.path());
    let lines = h.recv(10).await;
    ack_all(&lines[..4]);
    h.stop().await;
    fs::rename(&a, logs.path().join("a.log.1")).unwrap();
    append(&a, "new file\n");

    let mut h = Harness::start(config, state.path());
    let mut got: Vec<String> = h.recv(7).await.into_iter().map(|g| g.message).collect();
    got.sort();
    let mut want: Vec<String> = (5..=10)
        .map(|i| format!("line {i:02} of the first file"))
        .collect();
    want.push("new file".into());
    want.sort();
    assert_eq!(got, want);
    h.quiet().await;
    h.stop().await;
}

/// Rewrites the checkpoint of the only file to claim its inode held other content.
fn forge_other_content(state: &Path, fingerprint_bytes: u64) {
    let path = state.join("files.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let entry = &mut v["files"][0];
    entry["fingerprint"] = "0000000000000001".into();
    entry["fingerprint_bytes"] = fingerprint_bytes.into();
    entry["offset"] = 1_000_000u64.into();
    fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inode_reuse_with_different_content_starts_at_zero() {
    for (content, fingerprint_bytes) in [
        ("a first line long enough to be fingerprinted\nsecond\n", 32),
        ("short\n", 4),
    ] {
        let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        append(&logs.path().join("a.log"), content);
        let config = LogsConfig {
            read_from: ReadFrom::End,
            ..test_config(&[pattern(logs.path(), "*.log")])
        };
        // First run: read from the end, nothing read; the checkpoint records the inode.
        let mut h = Harness::start(config.clone(), state.path());
        wait_for("a checkpoint", || {
            !checkpoint_offsets(state.path()).is_empty()
        })
        .await;
        h.quiet().await;
        h.stop().await;
        forge_other_content(state.path(), fingerprint_bytes);
        // Same inode, other fingerprint: new content, read from zero despite read_from.
        let mut h = Harness::start(config, state.path());
        let n = content.lines().count();
        assert_eq!(h.recv(n).await[0].offset, 0);
        h.quiet().await;
        h.stop().await;
    }
}

/// Writes `total` numbered lines to `dir/a.log`, rotating every `every` lines with
/// `rotate(dir, generation)`, from a plain thread as an application would.
fn write_with_rotations(
    dir: PathBuf,
    total: usize,
    every: usize,
    rotate: fn(&Path, usize),
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let path = dir.join("a.log");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        for i in 0..total {
            if i > 0 && i % every == 0 {
                drop(file);
                rotate(&dir, i / every);
                file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .unwrap();
            }
            writeln!(file, "line {i:06} {}", "p".repeat(i % 40)).unwrap();
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    })
}

/// Receives and acknowledges until `total` distinct lines arrived; fails on a
/// duplicate.
async fn collect_exactly_once(h: &mut Harness, total: usize) {
    let mut seen = HashSet::new();
    while seen.len() < total {
        for g in h.recv(1).await {
            g.ack();
            assert!(seen.insert(g.message.clone()), "duplicate {:?}", g.message);
        }
    }
    h.quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_under_writes_loses_and_repeats_nothing() {
    for rotated_matches in [false, true] {
        let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let glob = if rotated_matches { "a.log*" } else { "*.log" };
        let mut h = Harness::start(test_config(&[pattern(logs.path(), glob)]), state.path());
        let writer = write_with_rotations(logs.path().to_path_buf(), 3000, 700, |dir, g| {
            fs::rename(dir.join("a.log"), dir.join(format!("a.log.{g}"))).unwrap();
        });
        collect_exactly_once(&mut h, 3000).await;
        writer.join().unwrap();
        assert!(h.metrics.rotations.get() >= u64::from(!rotated_matches) * 4);
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_truncate_rotation_under_writes_loses_and_repeats_nothing() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut h = Harness::start(test_config(&[pattern(logs.path(), "a.log*")]), state.path());
    let writer = write_with_rotations(logs.path().to_path_buf(), 3000, 700, |dir, g| {
        let path = dir.join("a.log");
        fs::copy(&path, dir.join(format!("a.log.{g}"))).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
    });
    collect_exactly_once(&mut h, 3000).await;
    writer.join().unwrap();
    // Two rotations between two looks at the file count as one truncation.
    assert!(
        h.metrics.truncations.get() >= 1,
        "{}",
        h.metrics.truncations.get()
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_file_is_read_to_its_end_then_closed() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = logs.path().join("a.log");
    append(&a, "first\n");
    let mut h = Harness::start(test_config(&[pattern(logs.path(), "*.log")]), state.path());
    assert_eq!(messages(&h.recv(1).await), vec!["first"]);
    // Written and deleted before the source reads again.
    let mut writer = OpenOptions::new().append(true).open(&a).unwrap();
    fs::remove_file(&a).unwrap();
    writer.write_all(b"second\nthird\n").unwrap();
    assert_eq!(messages(&h.recv(2).await), vec!["second", "third"]);
    wait_for("the deleted file to be closed", || {
        h.metrics.files_open.get() == 0
    })
    .await;
    assert_eq!(h.metrics.rotations.get(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_cut_by_a_truncation_counts_as_unread() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = logs.path().join("a.log");
    append(&a, "first\nthe start of a line");
    let mut config = test_config(&[pattern(logs.path(), "*.log")]);
    config.partial_line_timeout_ms = 600_000;
    let mut h = Harness::start(config, state.path());
    assert_eq!(messages(&h.recv(1).await), vec!["first"]);
    h.quiet().await;
    // Truncated before the line ended: its start was read, never handed over, and is
    // gone with the old content.
    OpenOptions::new()
        .write(true)
        .open(&a)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&a, "new\n");
    assert_eq!(messages(&h.recv(1).await), vec!["new"]);
    assert_eq!(h.metrics.truncations.get(), 1);
    assert_eq!(
        h.metrics.truncated_unread_bytes.get(),
        "the start of a line".len() as u64
    );
    h.stop().await;
}
