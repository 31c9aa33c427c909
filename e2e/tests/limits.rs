//! End to end: the real agent against a collector that limits it. The agent honours
//! rate-limit retry-later acknowledgements (everything arrives exactly once) and
//! answers the collector's pings, so an idle agent is not taken for a dead one.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::time::{Duration, Instant};

use monitoring_e2e::{
    Agent, AgentOptions, Collector, LineWriter, loghub_lines, numbered_line, wait_for_all,
};

/// The value of a sample line of the collector's `/metrics`, 0 if absent.
fn metric(collector: &Collector, series: &str) -> u64 {
    let (status, text) = monitoring_e2e::blocking_get_with(
        &format!("{}/metrics", collector.api()),
        Some(&collector.api_token),
    )
    .unwrap();
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_rate_limited_agent_delivers_everything_once_and_stays_connected_while_idle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // 1,000 events/s with a one-second burst; pings every second, idle after 3 s.
    let collector = Collector::start_with_server(
        dir,
        "ping_interval_secs = 1\nidle_timeout_secs = 3\n",
        "[server.rate_limit]\nevents_per_sec = 1000\nbytes_per_sec = 0\nburst_secs = 1\n",
    )
    .unwrap();
    let options = AgentOptions {
        files: vec![format!("{}/app.log", logs.display())],
        ..AgentOptions::default()
    };
    let agent = Agent::start(dir, "limited", &collector.endpoint(), &options).unwrap();

    // 6,000 lines at once: at least five seconds' worth of the agent's budget.
    let corpus = loghub_lines();
    let total = 6_000;
    let mut w = LineWriter::open(&logs.join("app.log")).unwrap();
    w.write_lines((0..total).map(|n| numbered_line(&corpus, n)))
        .unwrap();
    let started = Instant::now();
    let t = wait_for_all(&collector, total, Duration::from_secs(120)).unwrap();
    assert!(
        t.missing.is_empty(),
        "lost {} lines, first {:?}\n{}",
        t.missing.len(),
        &t.missing[..t.missing.len().min(10)],
        agent.log()
    );
    assert_eq!(t.duplicates, 0, "lines stored twice");
    let rate_limited = "monitoring_ingest_batches_retried_total{reason=\"rate_limited\"}";
    assert!(
        metric(&collector, rate_limited) > 0,
        "never rate-limited in {:?}",
        started.elapsed()
    );
    assert!(
        agent.log().contains("retry_after_ms"),
        "the agent did not log the retry: {}",
        agent.log()
    );

    // Now idle for twice the idle timeout: the agent answers pings and keeps its one
    // connection.
    std::thread::sleep(Duration::from_secs(6));
    let idle = "monitoring_ingest_connections_closed_total{reason=\"idle\"}";
    assert_eq!(metric(&collector, idle), 0, "{}", collector.log());
    assert_eq!(
        metric(&collector, "monitoring_ingest_connections_accepted_total"),
        1,
        "the agent reconnected: {}",
        agent.log()
    );
    assert_eq!(metric(&collector, "monitoring_ingest_connections"), 1);
}
