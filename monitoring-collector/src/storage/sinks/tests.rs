//! The fan-out with real sinks: dead best-effort sinks (a closed port, a peer that
//! never answers, a vanished directory) delay nothing and count every event they
//! lose; a failing required sink holds the batch back until it is repaired, after
//! which the primary store has every batch once.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use monitoring_common::event::{Labels, now_ns};
use monitoring_common::{Event, MetricValue};

use super::blackhole::BlackholeSink;
use super::*;
use crate::storage::CommitOutcome;
use crate::telemetry::Metrics;

fn table(text: &str) -> SinkConfig {
    toml::from_str(text).expect("valid sink table")
}

/// Batch `seq`: one log line and one gauge.
fn batch(seq: u64) -> Arc<IngestBatch> {
    Arc::new(IngestBatch {
        agent_id: "web-1".into(),
        stream_id: 1,
        sequence: seq,
        received_ns: now_ns(),
        events: vec![
            Event::log(now_ns(), "app", format!("seq={seq:08}")),
            Event::metric(
                now_ns(),
                "host",
                "g",
                Labels::new(),
                MetricValue::Gauge { value: seq as f64 },
            ),
        ],
    })
}

/// A TCP peer that accepts connections and never answers, until dropped.
struct Silent {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((conn, _)) => held.push(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Silent {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            drop(t.join());
        }
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn counter(metrics: &Metrics, sink: &str) -> (u64, u64) {
    let label = [("sink", sink.to_string())];
    (
        metrics.sink_events_written.get_or_create(&label).get(),
        metrics.sink_write_errors.get_or_create(&label).get(),
    )
}

fn dropped(metrics: &Metrics, sink: &str, reason: &str) -> u64 {
    metrics
        .sink_events_dropped
        .get_or_create(&[("sink", sink.to_string()), ("reason", reason.to_string())])
        .get()
}

fn ndjson_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn dead_best_effort_sinks_delay_nothing_and_count_what_they_drop() {
    let silent = Silent::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let doomed = dir.path().join("doomed");
    let good = dir.path().join("good/events.ndjson");
    let retry = "retry_initial_ms = 20\nretry_max_ms = 100\nqueue_batches = 4\n";
    let configs = [
        format!(
            "type = \"prometheus_remote_write\"\nname = \"closed\"\nurl = \"http://127.0.0.1:{}/api/v1/write\"\n{retry}",
            closed_port()
        ),
        format!(
            "type = \"prometheus_remote_write\"\nname = \"silent\"\nurl = \"http://127.0.0.1:{}/api/v1/write\"\ntimeout_ms = 2000\n{retry}",
            silent.port
        ),
        format!(
            "type = \"file\"\nname = \"vanished\"\npath = \"{}\"\n{retry}",
            doomed.join("e.ndjson").display()
        ),
        format!(
            "type = \"file\"\nname = \"good\"\npath = \"{}\"\n",
            good.display()
        ),
        "type = \"blackhole\"\nrequired = true\n".to_string(),
    ];
    let configs: Vec<SinkConfig> = configs.iter().map(|t| table(t)).collect();
    let metrics = Metrics::default();
    let sinks = Sinks::start(&configs, &metrics).expect("sinks start");
    std::fs::remove_dir_all(&doomed).expect("the directory vanishes");
    let fanout = sinks.fanout();

    let n = 300;
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for seq in 0..n {
        let t = Instant::now();
        fanout
            .deliver(&batch(seq), CommitOutcome::Committed)
            .expect("the required blackhole takes everything");
        slowest = slowest.max(t.elapsed());
    }
    let total = started.elapsed();
    println!("fan-out of {n} batches: {total:?}, slowest {slowest:?}");
    // Written in line, the silent peer alone would cost its 2 s timeout per batch.
    assert!(
        slowest < Duration::from_secs(1),
        "a dead sink delayed a batch by {slowest:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    while ndjson_lines(&good) < 2 * n as usize {
        assert!(
            Instant::now() < deadline,
            "the good sink has {} lines",
            ndjson_lines(&good)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        fanout.health().is_ok(),
        "best-effort sinks do not hold up readiness"
    );

    let stop = Instant::now();
    sinks.shutdown(Duration::from_millis(500));
    let took = stop.elapsed();
    println!("shutdown took {took:?}");
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");

    assert_eq!(counter(&metrics, "good"), (2 * n, 0));
    assert_eq!(counter(&metrics, "blackhole"), (2 * n, 0));
    for (sink, routed) in [("closed", n), ("silent", n), ("vanished", 2 * n)] {
        let (written, errors) = counter(&metrics, sink);
        let full = dropped(&metrics, sink, "queue_full");
        let shutdown = dropped(&metrics, sink, "shutdown");
        println!(
            "{sink}: written {written} errors {errors} dropped queue_full {full} shutdown {shutdown}"
        );
        assert_eq!(written, 0, "{sink}");
        assert!(errors >= 1 && full > 0, "{sink}");
        assert_eq!(
            full + shutdown,
            routed,
            "{sink}: every event is counted once"
        );
        assert_eq!(
            metrics
                .sink_queue_batches
                .get_or_create(&[("sink", sink.to_string())])
                .get(),
            0,
            "{sink}"
        );
    }
}

#[test]
fn a_failing_required_sink_retries_with_backoff_then_fails_the_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir.path().join("req");
    let path = sub.join("e.ndjson");
    let config = table(&format!(
        "type = \"file\"\nrequired = true\npath = \"{}\"\nretry_initial_ms = 40\nretry_max_ms = 60\nmax_attempts = 3\n",
        path.display()
    ));
    let metrics = Metrics::default();
    let sinks = Sinks::start(std::slice::from_ref(&config), &metrics).expect("start");
    let fanout = sinks.fanout();
    std::fs::remove_dir_all(&sub).expect("rm");
    assert!(
        fanout.health().is_err(),
        "a required sink's directory is gone"
    );

    let started = Instant::now();
    let failure = fanout
        .deliver(&batch(1), CommitOutcome::Committed)
        .expect_err("the sink cannot write");
    let took = started.elapsed();
    assert_eq!(&*failure.sink, "file");
    assert!(failure.error.is_retryable());
    // Two waits between three attempts: 40 ms, then 60 (capped at retry_max_ms).
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert_eq!(counter(&metrics, "file"), (0, 3));

    std::fs::create_dir(&sub).expect("mkdir");
    // The resend is a duplicate for the store, and still owed to the sink.
    fanout
        .deliver(&batch(1), CommitOutcome::Duplicate)
        .expect("written once repaired");
    assert_eq!(ndjson_lines(&path), 2);
    assert!(fanout.health().is_ok());
    assert_eq!(counter(&metrics, "file").0, 2);
    sinks.shutdown(Duration::from_secs(1));
}

#[test]
fn best_effort_sinks_get_only_batches_committed_now() {
    let metrics = Metrics::default();
    let hole = Arc::new(BlackholeSink::default());
    let sink: Arc<dyn Sink> = hole.clone();
    let sinks = Sinks::start_with(
        vec![(table("type = \"blackhole\"\nkinds = [\"log\"]"), sink)],
        &metrics,
    )
    .expect("start");
    let fanout = sinks.fanout();
    fanout
        .deliver(&batch(1), CommitOutcome::Committed)
        .expect("ok");
    fanout
        .deliver(&batch(1), CommitOutcome::Duplicate)
        .expect("ok");
    fanout
        .deliver(&batch(2), CommitOutcome::Committed)
        .expect("ok");
    sinks.shutdown(Duration::from_secs(5));
    assert_eq!(hole.events(), 2, "one log line of each batch committed now");
    assert_eq!(counter(&metrics, "blackhole"), (2, 0));
}

#[test]
fn the_blackhole_checksum_ignores_order_and_sees_a_lost_or_repeated_line() {
    let expected = (0..4u64)
        .map(|seq| xxhash_rust::xxh3::xxh3_64(format!("seq={seq:08}").as_bytes()))
        .fold(0u64, u64::wrapping_add);
    let forward = BlackholeSink::default();
    forward.write(&[batch(0), batch(1)]).unwrap();
    forward.write(&[batch(2), batch(3)]).unwrap();
    let backward = BlackholeSink::default();
    backward
        .write(&[batch(3), batch(1), batch(2), batch(0)])
        .unwrap();
    assert_eq!(forward.log_checksum(), expected);
    assert_eq!(backward.log_checksum(), expected);
    assert_eq!(forward.events(), 8);

    // One line lost and another repeated: same count, different checksum.
    let wrong = BlackholeSink::default();
    wrong
        .write(&[batch(0), batch(1), batch(2), batch(2)])
        .unwrap();
    assert_eq!(wrong.events(), 8);
    assert_ne!(wrong.log_checksum(), expected);
}
