//! End to end with the PostgreSQL store: two collectors started together on one
//! database (the schema is made once), an agent shipping to the first while every
//! connection to the database is terminated again and again, and every line read
//! back through the second. Nothing is lost, and no collector restarts. And a
//! collector started while PostgreSQL does not answer: it serves anyway and opens
//! the store once the server does.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use std::net::{SocketAddr, ToSocketAddrs};

use monitoring_e2e::{
    Agent, AgentOptions, Collector, CollectorOptions, ContinuousWriter, Gate, LineWriter,
    PgDatabase, Proxy, blocking_get, collector_metric, loghub_lines, numbered_line, wait_for_all,
};

const DEADLINE: Duration = Duration::from_secs(90);

fn assert_serves(collector: &mut Collector, name: &str) {
    assert!(
        collector.child.try_wait().unwrap().is_none(),
        "collector {name} exited; log:\n{}",
        collector.log()
    );
    let (status, body) = blocking_get(&format!("{}/ready", collector.api())).unwrap();
    assert_eq!(status, 200, "collector {name} /ready: {body}");
}

#[test]
fn two_collectors_share_postgres_through_terminated_connections() {
    let db = PgDatabase::create("shared").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = [tmp.path().join("c1"), tmp.path().join("c2")];
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let opts = CollectorOptions {
        store: db.storage_keys(),
        ..CollectorOptions::default()
    };
    let [mut first, mut second] = thread::scope(|s| {
        let started = dirs
            .each_ref()
            .map(|d| s.spawn(|| Collector::start_opts(d, &opts)));
        started.map(|h| h.join().unwrap().unwrap())
    });
    let app = logs.join("app.log");
    let options = AgentOptions {
        files: vec![app.display().to_string()],
        ..AgentOptions::default()
    };
    let agent = Agent::start(tmp.path(), "pg-agent", &first.endpoint(), &options).unwrap();

    let started = Instant::now();
    let writer = ContinuousWriter::start(
        &app,
        Arc::new(loghub_lines()),
        20,
        Duration::from_millis(10),
    )
    .unwrap();
    let mut terminated = 0;
    for _ in 0..5 {
        thread::sleep(Duration::from_millis(1_500));
        terminated += db.terminate_connections().unwrap();
    }
    thread::sleep(Duration::from_millis(500));
    let (written, _) = writer.finish().unwrap();

    // Read back through the other collector: one store for both.
    let t = wait_for_all(&second, written, DEADLINE).unwrap();
    let metric = |c: &Collector, name: &str, label: Option<&str>| {
        collector_metric(c, name, label).unwrap_or(0.0) as u64
    };
    println!(
        "postgres: expected {} lost {} duplicates {} (connections terminated {terminated}; \
         collector: committed {}, retried store {}, duplicate batches {}; {:.1} s)",
        t.expected,
        t.missing.len(),
        t.duplicates,
        metric(&first, "monitoring_ingest_batches_committed", None),
        metric(
            &first,
            "monitoring_ingest_batches_retried",
            Some("reason=\"store\"")
        ),
        metric(&first, "monitoring_ingest_batches_duplicate", None),
        started.elapsed().as_secs_f64(),
    );
    let reconnects = first.log().matches("Lost a PostgreSQL connection").count();
    println!("collector 1 replaced broken connections {reconnects} times");
    assert!(
        terminated >= 2 && reconnects >= 1,
        "commits met terminated connections: terminated {terminated}, reconnects {reconnects}"
    );
    assert!(
        t.missing.is_empty(),
        "lost {} of {} lines, first {:?}; agent log:\n{}\ncollector log:\n{}",
        t.missing.len(),
        t.expected,
        &t.missing[..t.missing.len().min(10)],
        agent.log(),
        first.log(),
    );
    assert_serves(&mut first, "1");
    assert_serves(&mut second, "2");
    let agents = second.get("/api/v1/agents").unwrap();
    assert!(
        agents.to_string().contains("pg-agent"),
        "the second collector lists the first one's agent: {agents}"
    );
    let opened = [&first, &second]
        .iter()
        .map(|c| c.log().matches("Opened PostgreSQL store").count())
        .sum::<usize>();
    assert_eq!(opened, 2, "both collectors opened the store");
}

/// The `host:port` of a `postgres://user@host:port/db` URL, resolved.
fn server_of(url: &str) -> (String, SocketAddr) {
    let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let host_port = authority.rsplit('@').next().unwrap().to_string();
    let addr = host_port.to_socket_addrs().unwrap().next().unwrap();
    (host_port, addr)
}

#[test]
fn a_collector_started_before_postgres_opens_the_store_when_it_answers() {
    let db = PgDatabase::create("late").unwrap();
    let (host_port, upstream) = server_of(&db.url);
    // Connections through the proxy are closed at once: a server that is down.
    let proxy = Proxy::start(upstream).unwrap();
    proxy.set_gate(Gate::Refuse);
    let url = db
        .url
        .replacen(&host_port, &format!("127.0.0.1:{}", proxy.port()), 1);
    let tmp = tempfile::tempdir().unwrap();
    let opts = CollectorOptions {
        store: format!(
            "backend = \"postgres\"\nurl = \"{url}\"\nread_pool_size = 2\ntimeout_ms = 3000"
        ),
        ..CollectorOptions::default()
    };
    let mut collector = Collector::start_opts(tmp.path(), &opts).unwrap();
    let (status, body) = blocking_get(&format!("{}/ready", collector.api())).unwrap();
    assert_eq!(status, 503, "/ready before the store opens: {body}");
    assert!(body.contains("not open yet"), "{body}");

    let app = tmp.path().join("app.log");
    let total = 1_000;
    let corpus = loghub_lines();
    LineWriter::open(&app)
        .unwrap()
        .write_lines((0..total).map(|n| numbered_line(&corpus, n)))
        .unwrap();
    let options = AgentOptions {
        files: vec![app.display().to_string()],
        ..AgentOptions::default()
    };
    let agent = Agent::start(tmp.path(), "late-pg", &collector.endpoint(), &options).unwrap();
    let retried = || {
        collector_metric(
            &collector,
            "monitoring_ingest_batches_retried",
            Some("reason=\"store\""),
        )
        .unwrap_or(0.0)
    };
    monitoring_e2e::wait_until("batches answered retry-later", DEADLINE, || retried() > 0.0)
        .unwrap();

    proxy.set_gate(Gate::Open);
    let ready = || {
        blocking_get(&format!("{}/ready", collector.api())).is_ok_and(|(status, _)| status == 200)
    };
    monitoring_e2e::wait_until("the store to open", DEADLINE, ready).unwrap();
    let t = wait_for_all(&collector, total, DEADLINE).unwrap();
    assert!(
        t.missing.is_empty() && t.duplicates == 0,
        "lost {}, duplicates {}; agent log:\n{}\ncollector log:\n{}",
        t.missing.len(),
        t.duplicates,
        agent.log(),
        collector.log(),
    );
    assert_serves(&mut collector, "late");
    let log = collector.log();
    assert!(log.contains("The store is open."), "{log}");
}
