//! End to end over TLS: `monitoring-collector certs` makes the PKI, the collector
//! serves wss:// with mutual TLS, and the real agent binary ships a file through it.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::process::Command;
use std::time::Duration;

use monitoring_e2e::{
    Agent, AgentOptions, Collector, LineWriter, bin_dir, loghub_lines, numbered_line, wait_for_all,
};

#[test]
fn the_agent_ships_over_wss_with_mutual_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let certs = dir.join("certs");
    let made = Command::new(bin_dir().join("monitoring-collector"))
        .args(["certs", "--agent-id", "tls-agent", "--out"])
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

    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let corpus = loghub_lines();
    let total = 2_000;
    let mut w = LineWriter::open(&logs.join("app.log")).unwrap();
    w.write_lines((0..total).map(|n| numbered_line(&corpus, n)))
        .unwrap();

    let opts = AgentOptions {
        files: vec![format!("{}/app.log", logs.display())],
        extra: format!(
            "[collector.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            pem("ca.pem"),
            pem("agent-tls-agent.pem"),
            pem("agent-tls-agent-key.pem"),
        ),
        ..AgentOptions::default()
    };
    let endpoint = format!("wss://localhost:{}/ingest", collector.ingest_port);
    let agent = Agent::start(dir, "tls-agent", &endpoint, &opts).unwrap();

    let tally = wait_for_all(&collector, total, Duration::from_secs(60)).unwrap();
    assert!(
        tally.missing.is_empty() && tally.duplicates == 0,
        "{tally:?}\nagent log:\n{}\ncollector log:\n{}",
        agent.log(),
        collector.log()
    );
    assert!(collector.log().contains("wss://"), "{}", collector.log());
}
