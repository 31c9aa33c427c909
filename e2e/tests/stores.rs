//! The same scenario on every primary store: a real agent ships numbered loghub
//! lines and host metrics to a collector on sqlite, on PostgreSQL and on ClickHouse;
//! each must store every line once, and the REST API must answer the same queries
//! with the same results on each.
//!
//! Event times differ between runs (they are when the agent read the lines), so the
//! answers compared are what does not depend on them: which lines match, what each
//! stored line holds, the paging, the catalogue and the inventory.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::collections::BTreeSet;
use std::time::Duration;

use monitoring_e2e::{
    Agent, AgentOptions, Backend, Collector, LineWriter, TestStore, loghub_lines, numbered_line,
    wait_for_all, wait_until,
};
use serde_json::Value;

const LINES: u64 = 6_000;
const AGENT: &str = "stores-e2e";

/// What a store answered, minus event times.
#[derive(Debug, PartialEq)]
struct Answers {
    /// Per search: the sequence numbers of the matching lines, sorted.
    searches: Vec<(String, Vec<u64>)>,
    /// Sequence numbers of lines at warning or worse.
    warnings: Vec<u64>,
    /// Chosen lines as stored: message, severity, labels and fields.
    records: Vec<Value>,
    /// Lines counted by paging newest first with an odd page size.
    paged: u64,
}

fn seq_of(message: &str) -> Option<u64> {
    message.strip_prefix("seq=")?.get(..8)?.parse().ok()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every log the query matches, by following the cursor.
fn all_pages(collector: &Collector, query: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = format!("/api/v1/logs?{query}&limit={limit}");
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={}", urlencode(c)));
        }
        let page = collector.get(&q).unwrap();
        out.extend(page["logs"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn seqs(logs: &[Value]) -> Vec<u64> {
    let mut s: Vec<u64> = logs
        .iter()
        .filter_map(|l| seq_of(l["message"].as_str()?))
        .collect();
    s.sort_unstable();
    s
}

fn run_on(backend: Backend) -> Answers {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = TestStore::create(backend, dir).unwrap();
    let collector = Collector::start_opts(dir, &store.collector_options())
        .unwrap_or_else(|e| panic!("{}: collector: {e:#}", backend.name()));
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let app = logs.join("app.log");
    let options = AgentOptions {
        files: vec![app.display().to_string()],
        host_metrics: true,
        ..AgentOptions::default()
    };
    let agent = Agent::start(dir, AGENT, &collector.endpoint(), &options).unwrap();
    let corpus = loghub_lines();
    let mut writer = LineWriter::open(&app).unwrap();
    for start in (0..LINES).step_by(1_000) {
        writer
            .write_lines((start..start + 1_000).map(|n| numbered_line(&corpus, n)))
            .unwrap();
    }
    let tally = wait_for_all(&collector, LINES, Duration::from_secs(120)).unwrap();
    println!(
        "{}: expected {} missing {} duplicates {}",
        backend.name(),
        tally.expected,
        tally.missing.len(),
        tally.duplicates
    );
    assert!(
        tally.missing.is_empty(),
        "{}: lost {} lines; collector log:\n{}\nagent log:\n{}",
        backend.name(),
        tally.missing.len(),
        collector.log(),
        agent.log()
    );
    assert_eq!(tally.duplicates, 0, "{}: duplicates", backend.name());

    // Host metrics: series with points, the catalogue, and the inventory.
    let hour_ago_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 3_600_000;
    wait_until("host metrics and the inventory", Duration::from_secs(30), || {
        let cpu = collector
            .get(&format!(
                "/api/v1/metrics?name=host_cpu_usage_percent&agent={AGENT}&label=cpu=total&from={hour_ago_ms}&step=1m"
            ))
            .unwrap();
        let agents = collector.get("/api/v1/agents").unwrap();
        cpu["series"][0]["points"].as_array().is_some_and(|p| !p.is_empty())
            && agents["agents"][0]["hostname"].is_string()
            && agents["agents"][0]["cpu_percent"].is_number()
    })
    .unwrap_or_else(|e| panic!("{}: {e}; collector log:\n{}", backend.name(), collector.log()));
    let names = collector.get("/api/v1/metrics/names").unwrap();
    let names: BTreeSet<&str> = names["names"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for name in [
        "host_cpu_usage_percent",
        "host_memory_usage_percent",
        "host_info",
    ] {
        assert!(
            names.contains(name),
            "{}: {name} in {names:?}",
            backend.name()
        );
    }
    let raw = collector
        .get(&format!(
            "/api/v1/metrics?name=host_memory_usage_percent&agent={AGENT}&from=0"
        ))
        .unwrap();
    let points = raw["series"][0]["points"].as_array().unwrap();
    assert!(
        points
            .iter()
            .all(|p| (0.0..=100.0).contains(&p[1].as_f64().unwrap())),
        "{}: memory usage points {points:?}",
        backend.name()
    );
    let agents = collector.get("/api/v1/agents").unwrap();
    assert_eq!(agents["agents"].as_array().unwrap().len(), 1);
    assert_eq!(agents["agents"][0]["id"], AGENT);

    let searches = [
        "error",
        "workerEnv.init() ok",
        "activitymanager",
        "instruction cache",
        "conn*",
        "->",
        "kernel",
    ]
    .into_iter()
    .map(|q| {
        let hits = all_pages(&collector, &format!("q={}", urlencode(q)), 5_000);
        (q.to_string(), seqs(&hits))
    })
    .collect();
    let warnings = seqs(&all_pages(&collector, "severity=warning", 5_000));
    let records = [0u64, 1, 2, 777, 1_999, 4_321, LINES - 1]
        .into_iter()
        .map(|seq| {
            let hits = all_pages(&collector, &format!("q=seq%3D{seq:08}"), 10);
            assert_eq!(hits.len(), 1, "{}: seq {seq}: {hits:?}", backend.name());
            let l = &hits[0];
            assert_eq!(l["agent_id"], AGENT);
            assert_eq!(l["source"], app.display().to_string());
            serde_json::json!({
                "message": l["message"],
                "severity": l["severity"],
                "labels": l["labels"],
                "fields": l["fields"],
            })
        })
        .collect();
    let newest_first = all_pages(&collector, "order=desc", 997);
    let times: Vec<i64> = newest_first
        .iter()
        .map(|l| l["timestamp_ns"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "{}: pages newest first",
        backend.name()
    );
    let paged = seqs(&newest_first);
    let distinct: BTreeSet<u64> = paged.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        paged.len(),
        "{}: a line twice in pages",
        backend.name()
    );
    drop(agent);
    Answers {
        searches,
        warnings,
        records,
        paged: paged.len() as u64,
    }
}

#[test]
fn every_primary_store_stores_every_line_and_answers_alike() {
    let answers: Vec<(Backend, Answers)> =
        Backend::ALL.into_iter().map(|b| (b, run_on(b))).collect();
    let (first, reference) = &answers[0];
    assert_eq!(reference.paged, LINES);
    for (name, hits) in &reference.searches {
        println!("{}: q={name:?}: {} lines", first.name(), hits.len());
    }
    assert!(
        reference.searches.iter().all(|(_, hits)| !hits.is_empty()),
        "every search finds something in loghub"
    );
    for (backend, a) in &answers[1..] {
        assert_eq!(
            a,
            reference,
            "{} answers differently from {}",
            backend.name(),
            first.name()
        );
    }
}
