//! End to end: a real agent tailing a file and sampling host metrics, a real
//! collector with two fan-out sinks beside its store: a required file sink for the
//! logs and a best-effort remote-write sink for the metrics, into the real
//! Prometheus of `scripts/services.sh start`. Every `seq=` line is in the NDJSON,
//! and the host's metrics are queryable in Prometheus under the agent's id.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use monitoring_e2e::{
    Agent, AgentOptions, Backend, Collector, CollectorOptions, LineWriter, Scrape, TestStore,
    loghub_lines, ndjson_messages, numbered_line, prometheus_query, prometheus_url, tally,
    wait_for_all,
};

#[test]
fn logs_reach_a_file_sink_and_host_metrics_reach_prometheus() {
    let prometheus = prometheus_url().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let ndjson = dir.join("sink/events.ndjson");
    // Prometheus keeps what earlier runs wrote: this run's series carry its own id.
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let agent_id = format!("sinks-e2e-{millis}");
    let extra = format!(
        r#"
[[storage.sinks]]
type = "file"
name = "logs"
required = true
kinds = ["log"]
path = "{}"

[[storage.sinks]]
type = "prometheus_remote_write"
name = "prometheus"
url = "{prometheus}/api/v1/write"
"#,
        ndjson.display()
    );
    let collector = Collector::start_with(dir, &extra).unwrap();
    let opts = AgentOptions {
        files: vec![format!("{}/app.log", logs.display())],
        host_metrics: true,
        system_interval_secs: 1,
        ..AgentOptions::default()
    };
    let agent = Agent::start(dir, &agent_id, &collector.endpoint(), &opts).unwrap();

    let corpus = loghub_lines();
    let total: u64 = 20_000;
    let chunk = 1_000;
    let mut w = LineWriter::open(&logs.join("app.log")).unwrap();
    let started = Instant::now();
    for first in (0..total).step_by(chunk as usize) {
        w.write_lines((first..first + chunk).map(|n| numbered_line(&corpus, n)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }

    let stored = wait_for_all(&collector, total, Duration::from_secs(120)).unwrap();
    println!(
        "primary store: expected {} lost {} duplicates {} ({:?})",
        stored.expected,
        stored.missing.len(),
        stored.duplicates,
        started.elapsed()
    );
    assert!(stored.missing.is_empty(), "the store lost lines");

    // Required: acknowledged only once the file sink took it, so it is all there.
    let sunk = tally(&ndjson_messages(&ndjson).unwrap(), total);
    println!(
        "file sink: expected {} lost {} duplicates {}",
        sunk.expected,
        sunk.missing.len(),
        sunk.duplicates
    );
    assert!(
        sunk.missing.is_empty(),
        "the file sink lost {} lines, first {:?}",
        sunk.missing.len(),
        &sunk.missing[..sunk.missing.len().min(10)]
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let memory = format!("host_memory_usage_percent{{agent_id=\"{agent_id}\"}}");
    let cpu = format!("host_cpu_usage_percent{{agent_id=\"{agent_id}\",cpu=\"total\"}}");
    let (memory, cpu) = loop {
        let m = prometheus_query(&prometheus, &memory).unwrap();
        let c = prometheus_query(&prometheus, &cpu).unwrap();
        if !m.is_empty() && !c.is_empty() {
            break (m, c);
        }
        assert!(
            Instant::now() < deadline,
            "no host metrics of {agent_id} in Prometheus; collector log:\n{}\nagent log:\n{}",
            collector.log(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    println!("prometheus: memory {memory:?} cpu {cpu:?}");
    assert_eq!(memory.len(), 1);
    assert!((0.0..=100.0).contains(&memory[0].1), "{memory:?}");
    assert!(cpu[0].1 >= 0.0, "{cpu:?}");

    let scrape = Scrape::collector(&collector).unwrap();
    let written = scrape
        .count(
            "monitoring_sink_events_written_total",
            &[("sink", "prometheus")],
        )
        .unwrap();
    let logs_written = scrape
        .count("monitoring_sink_events_written_total", &[("sink", "logs")])
        .unwrap();
    let dropped = scrape
        .count(
            "monitoring_sink_events_dropped_total",
            &[("sink", "prometheus")],
        )
        .unwrap();
    println!(
        "sinks: logs wrote {logs_written} events, prometheus wrote {written} and dropped {dropped}"
    );
    assert!(written > 0);
    assert!(logs_written >= total);
}

/// A collector on sqlite with a required postgres sink and a best-effort clickhouse
/// sink: every line reaches both databases once, as collectors whose primary store
/// they are show through their REST APIs.
#[test]
fn logs_reach_postgres_and_clickhouse_sinks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pg = TestStore::create(Backend::Postgres, &dir.join("pg")).unwrap();
    let ch = TestStore::create(Backend::Clickhouse, &dir.join("ch")).unwrap();
    let url = |store: &TestStore| {
        store
            .storage
            .lines()
            .find_map(|l| l.strip_prefix("url = "))
            .unwrap()
            .to_string()
    };
    let extra = format!(
        "[[storage.sinks]]\ntype = \"postgres\"\nrequired = true\nurl = {}\n\n\
         [[storage.sinks]]\ntype = \"clickhouse\"\nkinds = [\"log\"]\nurl = {}\n",
        url(&pg),
        url(&ch)
    );
    let collector = Collector::start_with(dir, &extra).unwrap();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let opts = AgentOptions {
        files: vec![format!("{}/app.log", logs.display())],
        ..AgentOptions::default()
    };
    let _agent = Agent::start(dir, "store-sinks", &collector.endpoint(), &opts).unwrap();
    let corpus = loghub_lines();
    let total = 5_000;
    LineWriter::open(&logs.join("app.log"))
        .unwrap()
        .write_lines((0..total).map(|n| numbered_line(&corpus, n)))
        .unwrap();
    let primary = wait_for_all(&collector, total, Duration::from_secs(90)).unwrap();
    assert!(primary.missing.is_empty() && primary.duplicates == 0);
    for (name, store) in [("postgres", &pg), ("clickhouse", &ch)] {
        let reader_dir = dir.join(format!("reader-{name}"));
        std::fs::create_dir_all(&reader_dir).unwrap();
        let reader = Collector::start_opts(
            &reader_dir,
            &CollectorOptions {
                store: store.storage.clone(),
                ..CollectorOptions::default()
            },
        )
        .unwrap();
        let t = wait_for_all(&reader, total, Duration::from_secs(60)).unwrap();
        println!(
            "{name} sink: expected {} missing {} duplicates {}",
            t.expected,
            t.missing.len(),
            t.duplicates
        );
        assert!(t.missing.is_empty(), "{name} sink lost lines");
        assert_eq!(t.duplicates, 0, "{name} sink");
    }
}
