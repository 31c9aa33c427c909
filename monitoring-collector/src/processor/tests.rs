//! The worker pool: commits, duplicates, rejections, a full queue, and the parse
//! switch, against a real SQLite store.

use super::*;
use crate::storage::sqlite::{SqliteConfig, SqliteStore};
use monitoring_common::Event;
use monitoring_common::event::now_ns;
use monitoring_common::protocol::Codec;
use monitoring_common::protocol::frame::encode_frame;
use monitoring_common::protocol::payload::encode_events;

fn store(dir: &std::path::Path) -> Arc<dyn Store> {
    let config = SqliteConfig {
        path: dir.to_path_buf(),
        ..SqliteConfig::default()
    };
    Arc::new(SqliteStore::open(&config).expect("store opens"))
}

fn job(seq: u64) -> Job {
    let events = [Event::log(now_ns(), "t", format!("line {seq}"))];
    Job {
        agent_id: AgentId::parse("a").expect("valid id"),
        received_ns: now_ns(),
        frame: encode_frame(Codec::Lz4, 1, seq, 1, &encode_events(&events)).into(),
    }
}

fn start(
    workers: usize,
    queue_batches: usize,
    dir: &std::path::Path,
) -> (Processor, ProcessorHandle) {
    start_with(workers, queue_batches, dir, Metrics::default())
}

fn start_with(
    workers: usize,
    queue_batches: usize,
    dir: &std::path::Path,
    metrics: Metrics,
) -> (Processor, ProcessorHandle) {
    let config = ProcessorConfig {
        workers,
        queue_batches,
        parse: true,
    };
    Processor::start(
        &config,
        Limits::default(),
        store(dir),
        Arc::new(FanOut::none()),
        metrics,
    )
    .expect("starts")
}

/// `parse = false` stores lines as they arrive; the default parses them.
#[tokio::test]
async fn parsing_can_be_switched_off() {
    let line = r#"{"msg":"disk full","level":"error"}"#;
    for parse in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path());
        let metrics = Metrics::default();
        let config = ProcessorConfig {
            workers: 1,
            queue_batches: 1,
            parse,
        };
        let (processor, handle) = Processor::start(
            &config,
            Limits::default(),
            Arc::clone(&store),
            Arc::new(FanOut::none()),
            metrics.clone(),
        )
        .expect("starts");
        let events = [Event::log(now_ns(), "t", line)];
        let frame = encode_frame(Codec::Lz4, 1, 1, 1, &encode_events(&events)).into();
        let job = Job {
            agent_id: AgentId::parse("a").expect("valid id"),
            received_ns: now_ns(),
            frame,
        };
        let outcome = handle.submit(job).expect("queued").await.expect("answered");
        assert!(matches!(outcome, Outcome::Stored(_)), "{outcome:?}");
        drop(handle);
        tokio::task::spawn_blocking(move || processor.join())
            .await
            .expect("joins");
        let query = crate::storage::LogQuery {
            limit: 10,
            ..Default::default()
        };
        let page = store.query_logs(&query).expect("query");
        let [log] = page.logs.as_slice() else {
            panic!("{page:?}")
        };
        let parsed = metrics
            .processor_parsed
            .get_or_create(&[("format", "json")])
            .get();
        if parse {
            assert_eq!(log.message, "disk full");
            assert_eq!(log.severity.as_deref(), Some("error"));
            assert_eq!(log.fields["level"], "error");
            assert_eq!(parsed, 1);
        } else {
            assert_eq!(log.message, line);
            assert_eq!(log.severity, None);
            assert!(log.fields.is_empty(), "{:?}", log.fields);
            assert_eq!(parsed, 0);
        }
    }
}

fn count(family: &Family<ReasonLabel, Counter>, kind: &'static str) -> u64 {
    family.get_or_create(&[("kind", kind)]).get()
}

#[tokio::test]
async fn commits_recognises_duplicates_and_rejects_bad_payloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Metrics::default();
    let (processor, handle) = start_with(2, 8, dir.path(), metrics.clone());
    let outcome = handle
        .submit(job(1))
        .expect("queued")
        .await
        .expect("answered");
    assert!(
        matches!(outcome, Outcome::Stored(CommitOutcome::Committed)),
        "{outcome:?}"
    );
    let outcome = handle
        .submit(job(1))
        .expect("queued")
        .await
        .expect("answered");
    assert!(
        matches!(outcome, Outcome::Stored(CommitOutcome::Duplicate)),
        "{outcome:?}"
    );
    let mut bad = job(2);
    let mut bytes = bad.frame.to_vec();
    bytes.truncate(bytes.len() - 1);
    bad.frame = bytes.into();
    let outcome = handle.submit(bad).expect("queued").await.expect("answered");
    assert!(matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
    // Received counts every decoded batch (the duplicate too, not the bad one);
    // stored only the committed one.
    assert_eq!(count(&metrics.events_received, event_kind::LOG), 2);
    assert_eq!(count(&metrics.events_stored, event_kind::LOG), 1);
    assert_eq!(count(&metrics.events_received, event_kind::METRIC), 0);
    drop(handle);
    tokio::task::spawn_blocking(move || processor.join())
        .await
        .expect("joins");
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_queued_jobs_still_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (processor, handle) = start(1, 1, dir.path());
    // Submitting takes microseconds, a commit with fsync milliseconds.
    let mut queued = Vec::new();
    let mut full = 0;
    for seq in 0..50 {
        match handle.submit(job(seq)) {
            Ok(rx) => queued.push(rx),
            Err(SubmitError::Full) => full += 1,
            Err(SubmitError::Closed) => panic!("closed while a handle exists"),
        }
    }
    assert!(full > 0, "queue of 1 never full");
    // Dropping the handle stops the pool only after the queue is drained.
    drop(handle);
    for rx in queued {
        let outcome = rx.await.expect("queued job answered");
        assert!(
            matches!(outcome, Outcome::Stored(CommitOutcome::Committed)),
            "{outcome:?}"
        );
    }
    tokio::task::spawn_blocking(move || processor.join())
        .await
        .expect("joins");
}
