//! Partial last lines and multiline merging, through the whole source.

use super::*;
use crate::collectors::logs::file::config::MultilineConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_last_line_ships_after_the_timeout_and_the_rest_is_a_new_line() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let file = logs.path().join("a.log");
    append(&file, "whole\nhalf");
    let config = LogsConfig {
        partial_line_timeout_ms: 200,
        ..test_config(&[pattern(logs.path(), "*.log")])
    };
    let mut h = Harness::start(config, state.path());
    let lines = h.recv(2).await;
    assert_eq!(messages(&lines), vec!["whole", "half"]);
    assert_eq!(lines[1].offset, 6);
    assert_eq!(lines[1].envelope.ack.as_ref().unwrap().1, 10);
    assert_eq!(h.metrics.partial_lines.get(), 1);
    append(&file, " rest\nnext\n");
    let lines = h.recv(2).await;
    assert_eq!(messages(&lines), vec![" rest", "next"]);
    assert_eq!(lines[0].offset, 10);
    h.quiet().await;
    h.stop().await;
}

fn java() -> MultilineConfig {
    MultilineConfig {
        start_pattern: Some(r"^\d{4}-\d{2}-\d{2} ".into()),
        ..MultilineConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_trace_ships_as_one_event_and_the_last_one_after_the_timeout() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let file = logs.path().join("app.log");
    let trace = "2024-05-01 10:00:00 ERROR request failed\n\
                 java.lang.IllegalStateException: boom\n\
                 \tat com.example.Handler.run(Handler.java:42)\n\
                 Caused by: java.io.IOException: closed\n\
                 \t... 3 more\n";
    append(&file, trace);
    append(&file, "2024-05-01 10:00:01 INFO recovered\n");
    let config = LogsConfig {
        multiline: MultilineConfig {
            timeout_ms: 300,
            ..java()
        },
        ..test_config(&[pattern(logs.path(), "*.log")])
    };
    let mut h = Harness::start(config, state.path());
    let events = h.recv(2).await;
    assert_eq!(events[0].message, trace.trim_end_matches('\n'));
    assert_eq!(events[0].offset, 0);
    assert_eq!(
        events[0].envelope.ack.as_ref().unwrap().1,
        trace.len() as u64
    );
    // The last event had nothing after it: it shipped on the timeout.
    assert_eq!(events[1].message, "2024-05-01 10:00:01 INFO recovered");
    assert_eq!(events[1].offset, trace.len() as i64);
    h.quiet().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_never_splits_an_event_across_a_restart() {
    let (logs, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let file = logs.path().join("app.log");
    append(
        &file,
        "2024-05-01 10:00:00 A\n  a1\n2024-05-01 10:00:01 B\n  b1\n",
    );
    // A long timeout: B stays pending until the next event starts.
    let config = LogsConfig {
        multiline: MultilineConfig {
            timeout_ms: 60_000,
            ..java()
        },
        ..test_config(&[pattern(logs.path(), "*.log")])
    };
    let mut h = Harness::start(config.clone(), state.path());
    let a = h.recv(1).await;
    assert_eq!(messages(&a), vec!["2024-05-01 10:00:00 A\n  a1"]);
    ack_all(&a);
    wait_for("the checkpoint after A", || {
        checkpoint_offsets(state.path()) == vec![27]
    })
    .await;
    h.quiet().await;
    h.stop().await;

    // B was never shipped; after the restart it is read again, whole.
    append(&file, "  b2\n2024-05-01 10:00:02 C\n");
    let mut h = Harness::start(config, state.path());
    let b = h.recv(1).await;
    assert_eq!(messages(&b), vec!["2024-05-01 10:00:01 B\n  b1\n  b2"]);
    assert_eq!(b[0].offset, 27);
    h.stop().await;
}
