//! The quick start's secured setup, as `scripts/run.sh` runs it: the certificates and
//! tokens made by the collector's own commands, the collector and the agent started
//! with `config/secure/*.toml` (TLS on both listeners, mutual TLS and a JWT for the
//! agent, an API token for the REST API), and a file shipped through it without loss.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use monitoring_e2e::{
    LineWriter, bin_dir, blocking_get, free_port, https_get, loghub_lines, numbered_line, sigterm,
    tally,
};

const AGENT: &str = "quickstart-agent";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A binary of the workspace run in `dir` (where `var/` lives) with `env`.
fn command(name: &str, dir: &Path, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(bin_dir().join(name));
    command.current_dir(dir);
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

/// Runs a command to completion and returns its stdout, trimmed.
fn output(mut command: Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn spawn(mut command: Command, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    command.stdout(Stdio::null()).stderr(log).spawn().unwrap()
}

struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for child in &mut self.0 {
            drop(child.kill());
            drop(child.wait());
        }
    }
}

#[test]
fn the_secure_quick_start_ships_over_mutual_tls_with_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (ingest, api, control) = (free_port(), free_port(), free_port());
    let env = [
        (
            "MONITORING_TOKEN_SECRET",
            "quickstart-secret-quickstart-secret-0123".to_string(),
        ),
        ("MONITORING_INGEST_ADDR", format!("127.0.0.1:{ingest}")),
        ("MONITORING_API_ADDR", format!("127.0.0.1:{api}")),
        ("MONITORING_AGENT_ID", AGENT.to_string()),
        (
            "MONITORING_COLLECTOR_ENDPOINT",
            format!("wss://127.0.0.1:{ingest}/ingest"),
        ),
    ];
    let collector_config = repo().join("config/secure/collector.toml");

    // What scripts/run.sh does before starting anything.
    let mut certs = command("monitoring-collector", dir, &env);
    certs.args(["certs", "--out", "var/tls", "--agent-id", AGENT]);
    output(certs);
    let mut token = command("monitoring-collector", dir, &env);
    token
        .args(["token", "--agent-id", AGENT, "--ttl", "1h", "--config"])
        .arg(&collector_config);
    let agent_token = output(token);
    let mut api_token = command("monitoring-collector", dir, &env);
    api_token
        .args([
            "api-token",
            "create",
            "--name",
            "e2e",
            "--role",
            "read",
            "--config",
        ])
        .arg(&collector_config);
    let api_token = output(api_token);

    let mut collector = command("monitoring-collector", dir, &env);
    collector.arg("run").arg("--config").arg(&collector_config);
    let mut children = Killed(vec![spawn(collector, &dir.join("collector.log"))]);
    let ca = dir.join("var/tls/ca.pem");
    let api_addr = format!("127.0.0.1:{api}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while https_get(&api_addr, "/health", &ca, None).is_err() {
        assert!(
            Instant::now() < deadline,
            "collector not up:\n{}",
            std::fs::read_to_string(dir.join("collector.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The agent: the secure example plus this test's file, state and control port.
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let agent_config = dir.join("agent.toml");
    let example = std::fs::read_to_string(repo().join("config/secure/agent.toml")).unwrap();
    std::fs::write(
        &agent_config,
        format!(
            "{example}\n[collectors.logs]\nfiles = [\"{}/*.log\"]\n\n\
             [collectors.metrics]\nenabled = false\n\n\
             [control]\nlisten = \"127.0.0.1:{control}\"\n",
            logs.display()
        ),
    )
    .unwrap();
    let mut agent = command("monitoring-agent", dir, &env);
    agent
        .env("MONITORING_AGENT_TOKEN", &agent_token)
        .arg("run")
        .arg("--config")
        .arg(&agent_config);
    children.0.push(spawn(agent, &dir.join("agent.log")));

    let total = 1_000;
    let corpus = loghub_lines();
    let mut w = LineWriter::open(&logs.join("app.log")).unwrap();
    w.write_lines((0..total).map(|n| numbered_line(&corpus, n)))
        .unwrap();

    let url = "/api/v1/logs?limit=10000&order=asc";
    let deadline = Instant::now() + Duration::from_secs(60);
    let result = loop {
        let (status, body) = https_get(&api_addr, url, &ca, Some(&api_token)).unwrap();
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        let messages: Vec<String> = page["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["message"].as_str().unwrap().to_string())
            .collect();
        let t = tally(&messages, total);
        if t.missing.is_empty() || Instant::now() > deadline {
            break (t, page);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let (t, page) = result;
    assert!(
        t.missing.is_empty() && t.duplicates == 0,
        "{t:?}\nagent log:\n{}\ncollector log:\n{}",
        std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("collector.log")).unwrap_or_default()
    );
    // Stamped with the authenticated agent id.
    assert_eq!(page["logs"][0]["agent_id"], AGENT, "{}", page["logs"][0]);

    // Without the API token: 401. Plain HTTP on the API port: no HTTP answer.
    let (status, _) = https_get(&api_addr, url, &ca, None).unwrap();
    assert_eq!(status, 401);
    let plain = blocking_get(&format!("http://127.0.0.1:{api}/health"));
    assert!(!matches!(plain, Ok((200, _))), "{plain:?}");

    for child in &children.0 {
        sigterm(child);
    }
    for child in &mut children.0 {
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
}
