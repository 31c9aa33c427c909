//! Several collectors on one PostgreSQL or ClickHouse database serve one consistent
//! view: two agents, each shipping to its own collector, and either collector's REST
//! API shows everything both sent, the same way.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::time::Duration;

use monitoring_e2e::{
    Agent, AgentOptions, Backend, Collector, LineWriter, TestStore, loghub_lines, numbered_line,
    tally, wait_for_all, wait_until,
};

const PER_AGENT: u64 = 3_000;

fn two_collectors_one_view(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let store = TestStore::create(backend, tmp.path()).unwrap();
    let corpus = loghub_lines();
    let mut collectors = Vec::new();
    let mut agents = Vec::new();
    for i in 0..2u64 {
        let dir = tmp.path().join(format!("c{i}"));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let collector = Collector::start_opts(&dir, &store.collector_options())
            .unwrap_or_else(|e| panic!("{}: collector {i}: {e:#}", backend.name()));
        let app = dir.join("logs/app.log");
        let options = AgentOptions {
            files: vec![app.display().to_string()],
            host_metrics: true,
            ..AgentOptions::default()
        };
        let agent =
            Agent::start(&dir, &format!("agent-{i}"), &collector.endpoint(), &options).unwrap();
        // Each agent its own range of sequence numbers.
        let mut writer = LineWriter::open(&app).unwrap();
        writer
            .write_lines((i * PER_AGENT..(i + 1) * PER_AGENT).map(|n| numbered_line(&corpus, n)))
            .unwrap();
        collectors.push(collector);
        agents.push(agent);
    }
    for (i, collector) in collectors.iter().enumerate() {
        let t = wait_for_all(collector, 2 * PER_AGENT, Duration::from_secs(120)).unwrap();
        println!(
            "{} collector {i}: expected {} missing {} duplicates {}",
            backend.name(),
            t.expected,
            t.missing.len(),
            t.duplicates
        );
        assert!(t.missing.is_empty(), "collector {i} misses lines");
        assert_eq!(t.duplicates, 0);
    }
    // The same view from both: logs, the inventory, the catalogue.
    let (a, b) = (&collectors[0], &collectors[1]);
    let mut messages = [a.all_log_messages().unwrap(), b.all_log_messages().unwrap()];
    for m in &mut messages {
        m.sort();
    }
    assert_eq!(
        messages[0], messages[1],
        "both collectors list the same logs"
    );
    assert!(tally(&messages[0], 2 * PER_AGENT).missing.is_empty());
    wait_until(
        "both agents in both inventories",
        Duration::from_secs(30),
        || {
            [a, b].iter().all(|c| {
                c.get("/api/v1/agents").unwrap()["agents"]
                    .as_array()
                    .is_some_and(|list| {
                        list.len() == 2 && list.iter().all(|x| x["hostname"].is_string())
                    })
            })
        },
    )
    .unwrap();
    let ids = |c: &Collector| -> Vec<String> {
        c.get("/api/v1/agents").unwrap()["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(a), ["agent-0", "agent-1"]);
    assert_eq!(ids(a), ids(b));
    assert_eq!(
        a.get("/api/v1/metrics/names").unwrap(),
        b.get("/api/v1/metrics/names").unwrap()
    );
    let page = "/api/v1/logs?q=seq%3D00004321&limit=10";
    assert_eq!(a.get(page).unwrap(), b.get(page).unwrap());
    drop(agents);
}

#[test]
fn two_collectors_on_one_postgres_serve_one_view() {
    two_collectors_one_view(Backend::Postgres);
}

#[test]
fn two_collectors_on_one_clickhouse_serve_one_view() {
    two_collectors_one_view(Backend::Clickhouse);
}
