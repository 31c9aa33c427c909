//! End to end through a TCP proxy that breaks the agent's connection to the collector
//! under load: in the middle of a frame, right after the collector committed batches
//! but before the agent heard so (their acknowledgements swallowed), and by refusing
//! or blackholing new connections for a while. Every line must arrive, and arrive once:
//! the agent resends what it did not see acknowledged, and the collector recognises a
//! batch it already committed by its (stream, sequence).

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use monitoring_e2e::{
    Agent, AgentOptions, Collector, ContinuousWriter, Cut, Gate, Proxy, agent_metric, bin_dir,
    collector_metric, loghub_lines, wait_for_all, wait_until,
};

/// How long every line has to arrive once writing stopped.
const DEADLINE: Duration = Duration::from_secs(90);
/// The writer's load: 30 lines every 10 ms, about 3,000 lines a second.
const LINES_PER_TICK: u64 = 30;
const TICK: Duration = Duration::from_millis(10);

/// The collector's `name` samples matching `label`, summed; 0 if none.
fn collector_total(collector: &Collector, name: &str, label: Option<&str>) -> f64 {
    collector_metric(collector, name, label).unwrap_or(0.0)
}

/// Arms the live connection for `cut` until the proxy made it (a connection closed
/// for another reason before its cut is replaced by the agent's next one), then
/// disarms the agent's next connection if it was armed in the meantime: one cut.
fn cut(proxy: &Proxy, how: Cut, agent: &Agent) {
    let before = proxy.stats().cuts(how);
    wait_until(&format!("a {how:?} cut"), Duration::from_secs(60), || {
        let done = proxy.stats().cuts(how) > before;
        if !done {
            proxy.arm(how);
        }
        done
    })
    .unwrap_or_else(|e| panic!("{e}; proxy: {}\nagent log:\n{}", proxy.stats(), agent.log()));
    proxy.disarm(how);
}

/// Closes the live connection and keeps new ones out (`gate`) for `hold`.
fn outage(proxy: &Proxy, gate: Gate, hold: Duration) {
    proxy.set_gate(gate);
    proxy.close_all();
    thread::sleep(hold);
    proxy.set_gate(Gate::Open);
}

/// What a run through the proxy counted.
struct Outcome {
    lines: u64,
    missing: Vec<u64>,
    duplicates: u64,
}

/// Writes for `write_for` while `faults` cut the connection; returns once every line
/// arrived (or the deadline passed), having printed the counts.
fn run(
    name: &str,
    collector: &Collector,
    agent: &Agent,
    proxy: &Proxy,
    app_log: &Path,
    write_for: Duration,
    faults: impl FnOnce(&Instant),
) -> Outcome {
    let writer =
        ContinuousWriter::start(app_log, Arc::new(loghub_lines()), LINES_PER_TICK, TICK).unwrap();
    let started = Instant::now();
    faults(&started);
    if let Some(rest) = write_for.checked_sub(started.elapsed()) {
        thread::sleep(rest);
    }
    let (lines, _) = writer.finish().unwrap();
    let t = wait_for_all(collector, lines, DEADLINE).unwrap();
    let m = |n: &str| agent_metric(agent, n).unwrap_or(0.0);
    println!(
        "{name}: expected {} missing {} duplicates {} in {:?}\n  proxy: {}\n  agent: disconnects {} \
         failed connects {} resent batches {} (reconnect {})\n  collector: connections closed {} \
         duplicate batches {}",
        t.expected,
        t.missing.len(),
        t.duplicates,
        started.elapsed(),
        proxy.stats(),
        m("monitoring_agent_transport_disconnects"),
        agent_metric_labelled(agent, "result=\"error\""),
        m("monitoring_agent_transport_resent_batches"),
        agent_metric_labelled(agent, "reason=\"reconnect\""),
        collector_total(collector, "monitoring_ingest_connections_closed", None),
        collector_total(collector, "monitoring_ingest_batches_duplicate", None),
    );
    Outcome {
        lines,
        missing: t.missing,
        duplicates: t.duplicates,
    }
}

/// A labelled sample of the agent's transport counters: connects by result, resends
/// by reason (the only families here that carry those labels).
fn agent_metric_labelled(agent: &Agent, label: &str) -> f64 {
    let url = format!("http://127.0.0.1:{}/metrics", agent.control_port);
    let (_, body) = monitoring_e2e::blocking_get(&url).unwrap();
    let family = if label.starts_with("result=") {
        "monitoring_agent_transport_connects_total{"
    } else {
        "monitoring_agent_transport_resent_batches_total{"
    };
    body.lines()
        .filter(|l| l.starts_with(family) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn ingest_addr(collector: &Collector) -> SocketAddr {
    format!("127.0.0.1:{}", collector.ingest_port)
        .parse()
        .unwrap()
}

fn assert_complete(o: &Outcome, agent: &Agent, collector: &Collector) {
    assert!(
        o.missing.is_empty(),
        "lost {} of {} lines, first {:?}; agent log:\n{}\ncollector log:\n{}",
        o.missing.len(),
        o.lines,
        &o.missing[..o.missing.len().min(10)],
        agent.log(),
        collector.log()
    );
    // A batch resent after its acknowledgement was lost is recognised and not stored
    // again; the file checkpoint never moved past an unacknowledged batch, so nothing
    // is read twice either.
    assert_eq!(o.duplicates, 0, "lines stored twice");
}

/// ~15 s at ~3,000 lines/s with a fault every ~1.5 s: half a frame then a close,
/// swallowed acknowledgements then a close, 1.5 s of blackholed connections, 1.5 s of
/// refused ones; then every line arrives exactly once.
#[test]
fn cuts_mid_frame_lost_acks_and_refused_connections_lose_and_repeat_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let collector = Collector::start(dir).unwrap();
    let proxy = Proxy::start(ingest_addr(&collector)).unwrap();
    let app_log = logs.join("app.log");
    let opts = AgentOptions {
        files: vec![app_log.display().to_string()],
        ..AgentOptions::default()
    };
    let endpoint = format!("ws://127.0.0.1:{}/ingest", proxy.port());
    let agent = Agent::start(dir, "proxied", &endpoint, &opts).unwrap();

    let plan = [
        Some(Cut::MidForward),
        Some(Cut::AfterReply),
        None, // blackhole
        Some(Cut::MidForward),
        Some(Cut::AfterReply),
        None, // refuse
        Some(Cut::MidForward),
        Some(Cut::AfterReply),
    ];
    let write_for = Duration::from_secs(15);
    let o = run(
        "proxy cuts",
        &collector,
        &agent,
        &proxy,
        &app_log,
        write_for,
        |started| {
            let mut outages = 0;
            for (i, step) in plan.iter().enumerate() {
                let at = Duration::from_millis(1_500) * (i as u32 + 1);
                if let Some(rest) = at.checked_sub(started.elapsed()) {
                    thread::sleep(rest);
                }
                match step {
                    Some(how) => cut(&proxy, *how, &agent),
                    None => {
                        let gate = [Gate::Blackhole, Gate::Refuse][outages % 2];
                        outages += 1;
                        outage(&proxy, gate, Duration::from_millis(1_500));
                    }
                }
            }
        },
    );
    assert_complete(&o, &agent, &collector);

    let stats = proxy.stats();
    let (mid, after) = (stats.cuts(Cut::MidForward), stats.cuts(Cut::AfterReply));
    assert!(mid >= 3 && after >= 3, "{stats}");
    let disconnects = agent_metric(&agent, "monitoring_agent_transport_disconnects").unwrap();
    // Every cut was of an established session (the proxy arms only those).
    assert!(
        disconnects >= (mid + after) as f64,
        "{disconnects} disconnects for {mid} + {after} cuts"
    );
    assert!(
        agent_metric_labelled(&agent, "reason=\"reconnect\"") > 0.0,
        "nothing resent after the cuts"
    );
    assert!(
        collector_total(&collector, "monitoring_ingest_connections_closed", None)
            >= (mid + after) as f64,
        "the collector did not count the closed connections"
    );
    // The swallowed acknowledgements were of committed batches: their resends were
    // recognised (that is what kept the duplicates at 0 above).
    assert!(
        collector_total(&collector, "monitoring_ingest_batches_duplicate", None) > 0.0,
        "no resent batch was recognised as already committed"
    );
}

/// The same cuts over `wss://` with mutual TLS: a cut then tears a TLS record.
#[test]
fn cuts_over_mutual_tls_lose_and_repeat_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let certs = dir.join("certs");
    let made = Command::new(bin_dir().join("monitoring-collector"))
        .args(["certs", "--agent-id", "tls-proxied", "--out"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let pem = |name: &str| certs.join(name).display().to_string();
    let collector = Collector::start_with(
        dir,
        &format!(
            "[server.tls]\nenabled = true\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
            pem("server.pem"),
            pem("server-key.pem"),
            pem("ca.pem"),
        ),
    )
    .unwrap();
    let proxy = Proxy::start(ingest_addr(&collector)).unwrap();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let app_log = logs.join("app.log");
    let opts = AgentOptions {
        files: vec![app_log.display().to_string()],
        extra: format!(
            "[collector.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            pem("ca.pem"),
            pem("agent-tls-proxied.pem"),
            pem("agent-tls-proxied-key.pem"),
        ),
        ..AgentOptions::default()
    };
    // `localhost`: the name in the server certificate.
    let endpoint = format!("wss://localhost:{}/ingest", proxy.port());
    let agent = Agent::start(dir, "tls-proxied", &endpoint, &opts).unwrap();

    let o = run(
        "proxy cuts over mTLS",
        &collector,
        &agent,
        &proxy,
        &app_log,
        Duration::from_secs(5),
        |started| {
            for (i, how) in [Cut::MidForward, Cut::AfterReply].into_iter().enumerate() {
                let at = Duration::from_millis(1_500) * (i as u32 + 1);
                if let Some(rest) = at.checked_sub(started.elapsed()) {
                    thread::sleep(rest);
                }
                cut(&proxy, how, &agent);
            }
        },
    );
    assert_complete(&o, &agent, &collector);
    assert!(
        agent_metric(&agent, "monitoring_agent_transport_disconnects").unwrap() >= 2.0,
        "proxy: {}",
        proxy.stats()
    );
}
