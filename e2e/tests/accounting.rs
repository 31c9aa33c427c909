//! End to end: the per-source accounting self-metrics add up.
//!
//! The agent counts, per source, events read, sent, acknowledged and dropped (by
//! reason); the collector counts events received and stored by kind and how long
//! acknowledgements take. Once nothing is buffered or in flight, for every source
//! `read == acked + dropped`: these tests check it against what actually arrived,
//! counted by sequence number through the REST API, with and without drops.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::path::Path;
use std::time::{Duration, Instant};

use monitoring_e2e::{
    Agent, AgentOptions, Collector, LineWriter, Scrape, loghub_lines, numbered_line, tally,
    wait_for_all, wait_until,
};

const DEADLINE: Duration = Duration::from_secs(120);

/// Agent counters of one source, from one scrape.
#[derive(Debug, Clone, Copy)]
struct Counts {
    read: u64,
    sent: u64,
    acked: u64,
    dropped: u64,
}

fn counts(s: &Scrape, source: &str) -> Counts {
    let src = [("source", source)];
    Counts {
        read: s.count("monitoring_agent_events_read_total", &src).unwrap(),
        sent: s.count("monitoring_agent_events_sent_total", &src).unwrap(),
        acked: s
            .count("monitoring_agent_events_acked_total", &src)
            .unwrap(),
        dropped: s
            .count("monitoring_agent_events_dropped_total", &src)
            .unwrap(),
    }
}

fn write_lines(path: &Path, n: u64) {
    let corpus = loghub_lines();
    let mut w = LineWriter::open(path).unwrap();
    let chunk = 1_000;
    let mut seq = 0;
    while seq < n {
        let end = (seq + chunk).min(n);
        w.write_lines((seq..end).map(|i| numbered_line(&corpus, i)))
            .unwrap();
        seq = end;
    }
}

/// Polls the agent's metrics until `done` holds for one scrape; that scrape.
fn wait_for_scrape(
    agent: &Agent,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(&Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Ok(s) = Scrape::agent(agent) {
            if done(&s) {
                return s;
            }
            last = Some(s);
        }
        if Instant::now() > deadline {
            let text = last.map_or_else(|| "no scrape".to_string(), |s| s.0);
            panic!(
                "timed out after {timeout:?} waiting for {what}; last metrics:\n{text}\nagent log:\n{}",
                agent.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Lines of a file and host metrics, nothing dropped: every line read is
/// acknowledged once, and host metrics balance whenever nothing is in flight.
#[test]
fn every_event_read_is_acknowledged_per_source_and_seen_by_the_collector() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let collector = Collector::start(dir).unwrap();
    let agent = Agent::start(
        dir,
        "accounting",
        &collector.endpoint(),
        &AgentOptions {
            files: vec![format!("{}/app.log", logs.display())],
            host_metrics: true,
            system_interval_secs: 2,
            ..AgentOptions::default()
        },
    )
    .unwrap();

    let n: u64 = 20_000;
    write_lines(&logs.join("app.log"), n);
    let t = wait_for_all(&collector, n, DEADLINE).unwrap();
    println!(
        "accounting: expected {} lost {} duplicates {}",
        t.expected,
        t.missing.len(),
        t.duplicates
    );
    assert!(t.missing.is_empty(), "lost {} lines", t.missing.len());

    // Stored is not yet acknowledged: wait for the acks to reach the agent.
    let s = wait_for_scrape(&agent, "every file line acknowledged", DEADLINE, |s| {
        counts(s, "file").acked >= n
    });
    let file = counts(&s, "file");
    println!("accounting: file {file:?}");
    assert_eq!(file.read, n, "read{{file}}");
    assert_eq!(file.acked, n, "acked{{file}}");
    assert!(file.sent >= n, "sent{{file}} {} < {n}", file.sent);
    assert_eq!(file.dropped, 0, "dropped{{*, file}}");

    // Host metrics keep coming every 2 s; between two samples everything is
    // acknowledged and the invariant holds exactly.
    let host = counts(&s, "host_metrics");
    assert!(host.acked <= host.read, "{host:?}");
    let s = wait_for_scrape(
        &agent,
        "host metrics read == acked + dropped",
        DEADLINE,
        |s| {
            let h = counts(s, "host_metrics");
            assert!(h.acked + h.dropped <= h.read, "more acked than read: {h:?}");
            h.read > 0 && h.read == h.acked + h.dropped
        },
    );
    let host = counts(&s, "host_metrics");
    println!("accounting: host_metrics {host:?}");
    assert!(host.sent >= host.acked, "{host:?}");

    let c = Scrape::collector(&collector).unwrap();
    let received_logs = c
        .count(
            "monitoring_ingest_events_received_total",
            &[("kind", "log")],
        )
        .unwrap();
    let stored_logs = c
        .count("monitoring_storage_events_stored_total", &[("kind", "log")])
        .unwrap();
    let received_metrics = c
        .count(
            "monitoring_ingest_events_received_total",
            &[("kind", "metric")],
        )
        .unwrap();
    let acks_ok = c
        .count("monitoring_ingest_ack_seconds_count", &[("outcome", "ok")])
        .unwrap();
    println!(
        "accounting: collector received logs {received_logs} metrics {received_metrics}, stored logs {stored_logs}, ok acks {acks_ok}"
    );
    assert!(
        received_logs >= n,
        "received{{kind=log}} {received_logs} < {n}"
    );
    assert!(stored_logs >= n, "stored{{kind=log}} {stored_logs} < {n}");
    assert!(
        received_metrics >= host.acked,
        "{received_metrics} < {host:?}"
    );
    assert!(acks_ok > 0);
    println!("accounting: took {:?}", started.elapsed());
}

/// A tiny buffer under `drop_newest` while the collector is down: lines are dropped
/// and counted under their source, and once the collector is back every line read is
/// either stored or counted as dropped.
#[test]
fn drops_with_the_collector_down_are_counted_under_their_source() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut collector = Collector::start(dir).unwrap();
    collector.kill();
    let agent = Agent::start(
        dir,
        "dropper",
        &collector.endpoint(),
        &AgentOptions {
            files: vec![format!("{}/app.log", logs.display())],
            buffer_extra: "max_events = 50\nmax_batch_events = 10\nwhen_full = \"drop_newest\""
                .into(),
            ..AgentOptions::default()
        },
    )
    .unwrap();

    let n: u64 = 3_000;
    write_lines(&logs.join("app.log"), n);
    // With nowhere to send, the window and the buffer fill and the rest is dropped.
    let s = wait_for_scrape(&agent, "every line read", DEADLINE, |s| {
        counts(s, "file").read >= n
    });
    let down = counts(&s, "file");
    println!("accounting: collector down, file {down:?}");
    assert_eq!(down.read, n);
    assert_eq!(down.acked, 0);
    assert!(down.dropped > 0, "nothing dropped with the collector down");

    collector.restart().unwrap();
    let s = wait_for_scrape(&agent, "read == acked + dropped", DEADLINE, |s| {
        let f = counts(s, "file");
        let idle = s
            .count("monitoring_agent_transport_in_flight_batches", &[])
            .unwrap()
            == 0
            && s.count("monitoring_agent_buffer_events", &[]).unwrap() == 0;
        idle && f.read == f.acked + f.dropped
    });
    let file = counts(&s, "file");
    let by_policy = s
        .count(
            "monitoring_agent_events_dropped_total",
            &[("reason", "drop_newest"), ("source", "file")],
        )
        .unwrap();
    let host_dropped = s
        .count(
            "monitoring_agent_events_dropped_total",
            &[("source", "host_metrics")],
        )
        .unwrap();
    println!("accounting: collector back, file {file:?}, dropped by drop_newest {by_policy}");
    assert_eq!(file.read, n);
    assert_eq!(
        file.dropped, by_policy,
        "every file drop is a drop_newest one"
    );
    assert_eq!(host_dropped, 0, "no host metrics ran, none may be dropped");

    wait_until(
        "the collector stores what was acknowledged",
        DEADLINE,
        || {
            collector
                .all_log_messages()
                .is_ok_and(|m| tally(&m, n).missing.len() as u64 <= n - file.acked)
        },
    )
    .unwrap();
    let t = tally(&collector.all_log_messages().unwrap(), n);
    let stored = n - t.missing.len() as u64;
    let lost = n as i64 - stored as i64 - by_policy as i64;
    println!(
        "accounting: stored {stored} dropped {by_policy} lost {lost} duplicates {}",
        t.duplicates
    );
    assert_eq!(stored, file.acked, "stored lines != acked{{file}}");
    assert_eq!(lost, 0, "lines neither stored nor counted as dropped");
    println!("accounting: took {:?}", started.elapsed());
}
