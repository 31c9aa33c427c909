//! `[collectors.logs.filter]` in the tailer: filtered events are consumed, their
//! positions acknowledged without passing an event in flight, and never read again.

use monitoring_common::Severity;

use super::*;
use crate::collectors::logs::filter::{FilterConfig, FilterReason};
use crate::pipeline::Source;

fn errors_only(patterns: &[String]) -> LogsConfig {
    LogsConfig {
        filter: FilterConfig {
            min_severity: Some("error".into()),
            ..FilterConfig::default()
        },
        ..test_config(patterns)
    }
}

fn filtered(h: &Harness) -> u64 {
    h.metrics.filtered.total_for(Source::File)
}

fn len(text: &str) -> u64 {
    u64::try_from(text.len()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_lines_are_acknowledged_after_what_was_shipped_before_them() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = logs.path().join("a.log");
    let first = "ERROR disk failed\nINFO ok\nINFO fine\nERROR again\nINFO tail\n";
    append(&a, first);
    let config = errors_only(&[pattern(logs.path(), "*.log")]);
    let mut h = Harness::start(config.clone(), state.path());
    let lines = h.recv(2).await;
    assert_eq!(messages(&lines), vec!["ERROR disk failed", "ERROR again"]);
    for g in &lines {
        let EventKind::Log(log) = g.envelope.to_event().unwrap().kind else {
            panic!("not a log");
        };
        assert_eq!(
            log.severity,
            Some(Severity::Error),
            "detected severity kept"
        );
    }
    h.quiet().await;
    assert_eq!(
        h.metrics.filtered.get(Source::File, FilterReason::Severity),
        3
    );
    assert_eq!(
        h.metrics.lines_read.get(),
        2,
        "read counts shipped events only"
    );
    assert_eq!(
        checkpoint_offsets(state.path()),
        vec![0],
        "nothing acked yet"
    );

    // The first event's acknowledgement covers the two filtered lines after it.
    lines[0].ack();
    let covered = len("ERROR disk failed\nINFO ok\nINFO fine\n");
    wait_for("the first ack", || {
        checkpoint_offsets(state.path()) == vec![covered]
    })
    .await;
    lines[1].ack();
    wait_for("the end", || {
        checkpoint_offsets(state.path()) == vec![len(first)]
    })
    .await;

    // Filtered in a later read with nothing in flight: passed at once.
    append(&a, "INFO later\n");
    let end = len(first) + len("INFO later\n");
    wait_for("a skip with nothing in flight", || {
        checkpoint_offsets(state.path()) == vec![end]
    })
    .await;

    // Filtered in a later read while an event is in flight: waits for it.
    append(&a, "FATAL crash\n");
    let crash = h.recv(1).await;
    append(&a, "INFO after the crash\n");
    wait_for("the filtered line", || filtered(&h) == 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        checkpoint_offsets(state.path()),
        vec![end],
        "crash in flight"
    );
    crash[0].ack();
    let end = end + len("FATAL crash\nINFO after the crash\n");
    wait_for("the skip after the ack", || {
        checkpoint_offsets(state.path()) == vec![end]
    })
    .await;
    h.stop().await;

    // A restart reads nothing again: neither shipped nor filtered lines.
    append(&a, "ERROR after restart\n");
    let mut h = Harness::start(config, state.path());
    assert_eq!(messages(&h.recv(1).await), vec!["ERROR after restart"]);
    h.quiet().await;
    assert_eq!(filtered(&h), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_whose_every_line_is_filtered_reaches_a_checkpoint_at_its_end() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = logs.path().join("a.log");
    // Several reads' worth: the skip is recorded chunk after chunk.
    let text: String = (0..20_000)
        .map(|i| format!("debug line {i:05} of a chatty service\n"))
        .collect();
    append(&a, &text);
    let mut config = test_config(&[pattern(logs.path(), "*.log")]);
    config.filter.exclude = vec!["^debug".into()];
    let mut h = Harness::start(config.clone(), state.path());
    wait_for("the end of the file", || {
        checkpoint_offsets(state.path()) == vec![len(&text)]
    })
    .await;
    h.quiet().await;
    assert_eq!(
        h.metrics.filtered.get(Source::File, FilterReason::Excluded),
        20_000
    );
    h.stop().await;

    let mut h = Harness::start(config, state.path());
    h.quiet().await;
    assert_eq!(filtered(&h), 0, "read again after a restart");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_file_whose_last_lines_are_filtered_is_closed_and_finished() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = logs.path().join("a.log");
    append(&a, "ERROR first line of the old file\n");
    let config = errors_only(&[pattern(logs.path(), "*.log")]);
    let mut h = Harness::start(config.clone(), state.path());
    let old = h.recv(1).await;
    // Filtered in a read of their own, with the error still in flight.
    append(&a, "INFO second\nINFO third\n");
    wait_for("the filtered lines", || filtered(&h) == 2).await;
    fs::rename(&a, logs.path().join("a.log.1")).unwrap();
    append(&a, "ERROR first line of the new file\n");
    let new = h.recv(1).await;
    assert_eq!(messages(&new), vec!["ERROR first line of the new file"]);
    wait_for("the rotated file to be closed", || {
        h.metrics.files_open.get() == 1 && h.metrics.files_rotated_open.get() == 0
    })
    .await;
    // Its record still takes the acknowledgement, and passes the filtered lines.
    old[0].ack();
    new[0].ack();
    let old_len = len("ERROR first line of the old file\nINFO second\nINFO third\n");
    let new_len = len("ERROR first line of the new file\n");
    wait_for("both files at their end", || {
        let mut offsets = checkpoint_offsets(state.path());
        offsets.sort_unstable();
        offsets == vec![new_len, old_len]
    })
    .await;
    h.stop().await;

    let mut h = Harness::start(config, state.path());
    h.quiet().await;
    assert_eq!(filtered(&h), 0, "read again after a restart");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_file_whose_last_lines_are_filtered_loses_and_repeats_nothing() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = logs.path().join("a.log");
    append(&a, "ERROR before the truncation\n");
    let config = errors_only(&[pattern(logs.path(), "*.log")]);
    let mut h = Harness::start(config.clone(), state.path());
    let old = h.recv(1).await;
    append(&a, "INFO filtered before the truncation\n");
    wait_for("the filtered line", || filtered(&h) == 1).await;
    OpenOptions::new()
        .write(true)
        .open(&a)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&a, "INFO x\nERROR after\n");
    let new = h.recv(1).await;
    assert_eq!(messages(&new), vec!["ERROR after"]);
    assert_eq!(h.metrics.truncations.get(), 1);
    assert_eq!(
        h.metrics.truncated_unread_bytes.get(),
        0,
        "consumed, not unread"
    );
    old[0].ack();
    new[0].ack();
    wait_for("the new content at its end", || {
        checkpoint_offsets(state.path()).contains(&len("INFO x\nERROR after\n"))
    })
    .await;
    h.stop().await;
    let mut h = Harness::start(config, state.path());
    h.quiet().await;
    assert_eq!(filtered(&h), 0, "read again after a restart");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_what_ships_from_the_next_line_on() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = logs.path().join("a.log");
    append(&a, "INFO one\nERROR two\n");
    let config = test_config(&[pattern(logs.path(), "*.log")]);
    let (mut h, reloader) = super::reload::start(config.clone(), state.path());
    let got = h.recv(2).await;
    assert_eq!(messages(&got), vec!["INFO one", "ERROR two"]);
    ack_all(&got);

    // The open file takes the new filter; nothing before is read again.
    assert!(reloader.reload(errors_only(&[pattern(logs.path(), "*.log")])));
    tokio::time::sleep(Duration::from_millis(200)).await;
    append(&a, "INFO three\nERROR four\nINFO five\n");
    let got = h.recv(1).await;
    assert_eq!(messages(&got), vec!["ERROR four"]);
    ack_all(&got);
    h.quiet().await;
    assert_eq!(filtered(&h), 2);

    // And back: everything ships again, from where the file was.
    assert!(reloader.reload(config));
    tokio::time::sleep(Duration::from_millis(200)).await;
    append(&a, "INFO six\n");
    let got = h.recv(1).await;
    assert_eq!(messages(&got), vec!["INFO six"]);
    ack_all(&got);
    h.quiet().await;
    let total = len("INFO one\nERROR two\nINFO three\nERROR four\nINFO five\nINFO six\n");
    wait_for("the end", || {
        checkpoint_offsets(state.path()) == vec![total]
    })
    .await;
    h.stop().await;
}
