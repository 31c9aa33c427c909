//! End to end: host metrics and the agent's inventory reach the API.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::time::{Duration, Instant};

use monitoring_e2e::{Agent, AgentOptions, Collector};

#[test]
fn host_metrics_and_inventory_appear_within_two_intervals() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(tmp.path()).unwrap();
    let opts = AgentOptions {
        host_metrics: true,
        system_interval_secs: 2,
        flush_interval_ms: 100,
        ..AgentOptions::default()
    };
    let agent = Agent::start(tmp.path(), "inventory-host", &collector.endpoint(), &opts).unwrap();
    let started = Instant::now();

    // Two collection intervals, plus the time to start the process and flush.
    let deadline = started + Duration::from_secs(2 * 2 + 3);
    let mut found = None;
    while Instant::now() < deadline {
        let r = collector
            .get("/api/v1/metrics?name=host_cpu_usage_percent&agent=inventory-host&label=cpu=total&from=0")
            .unwrap();
        if r["series"].as_array().is_some_and(|s| !s.is_empty()) {
            found = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = found.unwrap_or_else(|| {
        panic!(
            "no cpu series within two intervals; agent log:\n{}",
            agent.log()
        )
    });
    let series = &r["series"][0];
    assert_eq!(series["agent_id"], "inventory-host");
    let v = series["points"][0][1].as_f64().unwrap();
    assert!((0.0..=100.0 * 64.0).contains(&v), "cpu {v}");

    let names = collector.get("/api/v1/metrics/names").unwrap();
    let names: Vec<&str> = names["names"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    for expected in [
        "host_memory_used_bytes",
        "host_load1",
        "host_uptime_seconds",
        "host_info",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }

    let agents = collector.get("/api/v1/agents").unwrap();
    let me = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "inventory-host")
        .unwrap_or_else(|| panic!("agent missing: {agents}"));
    assert!(me["os"].as_str().is_some_and(|s| !s.is_empty()), "{me}");
    assert!(me["last_seen"].as_str().is_some(), "{me}");
    assert_eq!(me["status"], "online");
}

/// The lines an agent reads at start, before its first host metrics sample, are
/// labelled with its host like every later line.
#[test]
fn lines_read_before_the_first_sample_carry_the_host_label() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("early.log");
    let lines: String = (0..2_000).map(|i| format!("early line {i:05}\n")).collect();
    std::fs::write(&log, lines).unwrap();
    let collector = Collector::start(tmp.path()).unwrap();
    let opts = AgentOptions {
        files: vec![log.display().to_string()],
        host_metrics: true,
        system_interval_secs: 60,
        flush_interval_ms: 10,
        ..AgentOptions::default()
    };
    let agent = Agent::start(tmp.path(), "early-host", &collector.endpoint(), &opts).unwrap();
    let url = "/api/v1/logs?agent=early-host&limit=10000&from=0";
    let deadline = Instant::now() + Duration::from_secs(30);
    let logs = loop {
        let page = collector.get(url).unwrap();
        let logs = page["logs"].as_array().cloned().unwrap_or_default();
        if logs.len() >= 2_000 || Instant::now() > deadline {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(logs.len(), 2_000, "agent log:\n{}", agent.log());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let unlabelled: Vec<&serde_json::Value> = logs
        .iter()
        .filter(|l| l["labels"]["host"] != hostname.trim())
        .collect();
    assert!(
        unlabelled.is_empty(),
        "{} of 2000 lines without host {:?}, first: {}",
        unlabelled.len(),
        hostname.trim(),
        unlabelled[0]
    );
}
