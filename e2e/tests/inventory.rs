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
