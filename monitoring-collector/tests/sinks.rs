//! `[[storage.sinks]]` in the real collector binary: a required sink that fails
//! holds acknowledgements back (retry-later, reason `sink`) until it is repaired,
//! after which the store has every batch once; the console sink's NDJSON on stdout,
//! routing by kind and severity after parsing, and dead best-effort sinks (a closed
//! port, a vanished directory) that delay no acknowledgement, their drops counted
//! through shutdown.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::time::{Duration, Instant};

use common::{Collector, frame, gauge, log_frame, marker, round_trip};
use monitoring_common::Event;
use monitoring_common::event::now_ns;
use monitoring_common::protocol::{AckStatus, Codec};
use serde_json::Value;

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn ready_status(collector: &Collector) -> u16 {
    reqwest::get(collector.url("/ready"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_failing_required_sink_asks_for_retries_and_after_repair_every_batch_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let sink_dir = dir.path().join("sink");
    let ndjson = sink_dir.join("events.ndjson");
    let sections = format!(
        "[[storage.sinks]]\ntype = \"file\"\nname = \"audit\"\nrequired = true\npath = \"{}\"\n\
         retry_initial_ms = 10\nretry_max_ms = 20\nmax_attempts = 2\n",
        ndjson.display()
    );
    let collector = Collector::start_full("", "", &sections, dir).await;
    let metrics = collector.self_metrics().await;
    for series in [
        "monitoring_sink_events_written_total{sink=\"audit\"}",
        "monitoring_sink_write_errors_total{sink=\"audit\"}",
        "monitoring_sink_events_dropped_total{sink=\"audit\",reason=\"queue_full\"}",
        "monitoring_sink_events_dropped_total{sink=\"audit\",reason=\"rejected\"}",
        "monitoring_sink_events_dropped_total{sink=\"audit\",reason=\"shutdown\"}",
        "monitoring_sink_queue_batches{sink=\"audit\"}",
        "monitoring_sink_write_seconds_count{sink=\"audit\"}",
    ] {
        assert_eq!(
            metric(&metrics, series),
            Some(0.0),
            "{series} in:\n{metrics}"
        );
    }
    assert_eq!(ready_status(&collector).await, 200);

    std::fs::remove_dir_all(&sink_dir).unwrap();
    assert_eq!(
        ready_status(&collector).await,
        503,
        "a required sink cannot write"
    );

    let m = marker("requiredsink");
    let frames: Vec<Vec<u8>> = (1..=10)
        .map(|seq| {
            let lines: Vec<String> = (0..3)
                .map(|i| format!("{m} batch {seq} line {i}"))
                .collect();
            log_frame(Codec::Lz4, 7, seq, &lines)
        })
        .collect();
    let mut agent = collector.connect("req-agent").await;
    for (i, f) in frames.iter().enumerate() {
        let ack = round_trip(&mut agent, f.clone()).await;
        assert_eq!(
            (ack.status, ack.sequence),
            (AckStatus::RetryLater, i as u64 + 1),
            "{ack:?}"
        );
        assert!(ack.reason.contains("sink audit"), "{ack:?}");
        assert!(ack.retry_after_ms >= 1000, "{ack:?}");
    }
    let metrics = collector.self_metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "monitoring_ingest_batches_retried_total{reason=\"sink\"}"
        ),
        Some(10.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "monitoring_sink_write_errors_total{sink=\"audit\"}"
        ),
        Some(20.0)
    );
    let warned = collector
        .log()
        .matches("Failed to write batch to a required sink")
        .count();
    assert_eq!(
        warned,
        1,
        "one line for the outage, not one per batch:\n{}",
        collector.log()
    );

    std::fs::create_dir(&sink_dir).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let ack = round_trip(&mut agent, f.clone()).await;
        assert_eq!(
            (ack.status, ack.sequence),
            (AckStatus::Ok, i as u64 + 1),
            "{ack:?}"
        );
    }
    let (_, body) = collector
        .get(&format!("/api/v1/logs?q={m}&limit=1000"))
        .await;
    let stored = body["logs"].as_array().unwrap();
    let mut messages: Vec<&str> = stored
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    messages.sort_unstable();
    let before = messages.len();
    messages.dedup();
    println!(
        "primary: {before} lines stored, {} distinct, expected 30",
        messages.len()
    );
    assert_eq!(
        (before, messages.len()),
        (30, 30),
        "every line once in the store"
    );

    let text = std::fs::read_to_string(&ndjson).unwrap();
    let mut sunk: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["message"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    sunk.sort_unstable();
    assert_eq!(sunk, messages, "the sink has every line, once");

    let metrics = collector.self_metrics().await;
    assert_eq!(
        metric(&metrics, "monitoring_ingest_batches_committed_total"),
        Some(10.0)
    );
    assert_eq!(
        metric(&metrics, "monitoring_ingest_batches_duplicate_total"),
        Some(10.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "monitoring_sink_events_written_total{sink=\"audit\"}"
        ),
        Some(30.0)
    );
    assert!(
        collector
            .log()
            .contains("Required sinks take batches again."),
        "{}",
        collector.log()
    );
    assert_eq!(ready_status(&collector).await, 200);
}

fn json_log(level: &str, text: &str) -> Event {
    Event::log(
        now_ns(),
        "/var/log/app.log",
        format!("{{\"level\":\"{level}\",\"msg\":\"{text}\"}}"),
    )
}

#[tokio::test]
async fn console_ndjson_routing_and_a_dead_best_effort_sink_that_delays_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_file = dir.path().join("metrics.ndjson");
    let doomed = dir.path().join("doomed");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sections = format!(
        "[[storage.sinks]]\ntype = \"console\"\nkinds = [\"log\"]\nmin_severity = \"warning\"\n\n\
         [[storage.sinks]]\ntype = \"file\"\nkinds = [\"metric\"]\npath = \"{}\"\n\n\
         [[storage.sinks]]\ntype = \"blackhole\"\n\n\
         [[storage.sinks]]\ntype = \"prometheus_remote_write\"\nname = \"dead\"\n\
         url = \"http://127.0.0.1:{closed}/api/v1/write\"\nqueue_batches = 2\n\
         retry_initial_ms = 50\nretry_max_ms = 200\n\n\
         [[storage.sinks]]\ntype = \"file\"\nname = \"vanished\"\npath = \"{}\"\nqueue_batches = 2\n",
        metrics_file.display(),
        doomed.join("events.ndjson").display(),
    );
    let mut collector = Collector::start_full("", "", &sections, dir).await;
    std::fs::remove_dir_all(&doomed).unwrap();
    let m = marker("console");
    let mut agent = collector.connect("console-agent").await;
    let batches = 20;
    let mut slowest = Duration::ZERO;
    for seq in 1..=batches {
        let events = vec![
            json_log("error", &format!("{m} {seq} disk failed")),
            json_log("warning", &format!("{m} {seq} disk slow")),
            json_log("info", &format!("{m} {seq} disk fine")),
            json_log("debug", &format!("{m} {seq} disk details")),
            gauge("disk_used_ratio", &[("dev", "sda")], 0.5),
            gauge("disk_used_ratio", &[("dev", "sdb")], 0.25),
        ];
        let started = Instant::now();
        let ack = round_trip(&mut agent, frame(Codec::Zstd, 3, seq, &events)).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(ack.status, AckStatus::Ok, "{ack:?}");
    }
    println!("slowest acknowledgement with a dead best-effort sink: {slowest:?}");
    assert!(slowest < Duration::from_secs(3), "{slowest:?}");

    let expected_console = 2 * batches as usize;
    let deadline = Instant::now() + Duration::from_secs(20);
    while collector.stdout().lines().count() < expected_console
        || std::fs::read_to_string(&metrics_file).map_or(0, |t| t.lines().count())
            < 2 * batches as usize
    {
        assert!(
            Instant::now() < deadline,
            "sinks incomplete; stdout:\n{}",
            collector.stdout()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stdout = collector.stdout();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), expected_console, "{stdout}");
    for line in &lines {
        assert_eq!(line["agent_id"], "console-agent");
        assert_eq!(line["kind"], "log");
        assert_eq!(line["source"], "/var/log/app.log");
        let severity = line["severity"].as_str().unwrap();
        assert!(matches!(severity, "error" | "warning"), "{line}");
        // Parsed before routing: the JSON's msg is the message, its fields kept.
        assert!(line["message"].as_str().unwrap().starts_with(&m), "{line}");
        assert_eq!(line["fields"]["level"], severity, "{line}");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    let metric_lines: Vec<Value> = std::fs::read_to_string(&metrics_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        metric_lines
            .iter()
            .all(|l| l["kind"] == "metric" && l["name"] == "disk_used_ratio")
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = collector.self_metrics().await;
        let hole = metric(
            &metrics,
            "monitoring_sink_events_written_total{sink=\"blackhole\"}",
        );
        let errors = metric(
            &metrics,
            "monitoring_sink_write_errors_total{sink=\"dead\"}",
        )
        .unwrap();
        let full = metric(
            &metrics,
            "monitoring_sink_events_dropped_total{sink=\"dead\",reason=\"queue_full\"}",
        )
        .unwrap();
        let vanished = metric(
            &metrics,
            "monitoring_sink_events_dropped_total{sink=\"vanished\",reason=\"queue_full\"}",
        )
        .unwrap();
        if hole == Some(6.0 * batches as f64) && errors >= 1.0 && full > 0.0 && vanished > 0.0 {
            println!(
                "dead sink: {errors} failed writes, {full} events dropped on a full queue; \
                 vanished directory: {vanished} dropped"
            );
            assert_eq!(
                metric(
                    &metrics,
                    "monitoring_sink_events_written_total{sink=\"dead\"}"
                ),
                Some(0.0)
            );
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The dead sink still holds batches: shutdown waits for it a bounded time,
    // then counts and logs them.
    let started = Instant::now();
    assert_eq!(
        collector.terminate(Duration::from_secs(30)),
        Some(0),
        "{}",
        collector.log()
    );
    println!("graceful shutdown took {:?}", started.elapsed());
    let log = collector.log();
    assert!(log.contains("did not drain in time at shutdown"), "{log}");
    assert!(log.contains("sink=dead"), "{log}");
}
