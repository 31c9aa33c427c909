//! One collector and one agent under test: their configuration files, starting them
//! (collector first, ready before the agent starts), and reading their own metrics.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::procs::{Proc, binary};

/// Where the collector puts what it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// `backend = "none"` with a required `blackhole` sink.
    Blackhole,
    /// The default embedded store.
    Sqlite,
    /// `sqlite` plus a required NDJSON `file` sink that the harness tails, to see
    /// each line's arrival (latency).
    SqliteTailed,
    /// `backend = "none"` with only the tailed file sink: the pipeline's own latency.
    Tailed,
}

impl Store {
    fn config(self, dir: &Path) -> String {
        let sqlite = format!("backend = \"sqlite\"\npath = {:?}\n", dir.join("store"));
        let tailed = format!(
            "[[storage.sinks]]\ntype = \"file\"\nrequired = true\npath = {:?}\n\
             max_bytes = 100000000000\nmax_age_secs = 86400\n",
            Store::sink_file(dir)
        );
        match self {
            Store::Blackhole => {
                "backend = \"none\"\n[[storage.sinks]]\ntype = \"blackhole\"\nrequired = true\n"
                    .into()
            }
            Store::Sqlite => sqlite,
            Store::SqliteTailed => format!("{sqlite}{tailed}"),
            Store::Tailed => format!("backend = \"none\"\n{tailed}"),
        }
    }

    /// The NDJSON file of [`Store::SqliteTailed`] and [`Store::Tailed`].
    pub fn sink_file(dir: &Path) -> PathBuf {
        dir.join("sink.ndjson")
    }
}

/// A free loopback port (bound and released; the race is acceptable for a benchmark).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A collector under test.
pub struct Collector {
    /// The process.
    pub proc: Proc,
    /// `ws://…/ingest`.
    pub endpoint: String,
    api: String,
    token: String,
}

impl Collector {
    /// Writes its config into `dir` (with `server_keys` added to `[server]`) and
    /// starts it; returns once `/ready` answers.
    pub fn start(dir: &Path, store: Store, server_keys: &str) -> Result<Collector> {
        let ingest = free_port()?;
        let api = free_port()?;
        let config = dir.join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nwebsocket_addr = \"127.0.0.1:{ingest}\"\n{server_keys}\n\n[api]\n\
                 addr = \"127.0.0.1:{api}\"\n\n[api.auth]\nusers_file = {users:?}\n\n\
                 [auth]\nmode = \"none\"\n\n[storage]\n{store}",
                users = dir.join("users.toml"),
                store = store.config(dir),
            ),
        )?;
        let token = api_token(&config)?;
        let mut collector = Collector {
            proc: Proc::start("collector", &config, &dir.join("collector.log"))?,
            endpoint: format!("ws://127.0.0.1:{ingest}/ingest"),
            api: format!("http://127.0.0.1:{api}"),
            token,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            collector.proc.check_alive()?;
            if collector.get("/ready").is_ok() {
                return Ok(collector);
            }
            if Instant::now() > deadline {
                bail!(
                    "the collector was not ready in 30 s:\n{}",
                    collector.proc.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn get(&self, path: &str) -> Result<String> {
        let body = ureq::get(format!("{}{path}", self.api))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()?
            .body_mut()
            .read_to_string()?;
        Ok(body)
    }

    /// The sum of its own metric `name` over all label sets.
    pub fn metric(&self, name: &str) -> Result<f64> {
        Ok(sum_metric(&self.get("/metrics")?, name, ""))
    }

    /// Log events committed so far.
    pub fn logs_stored(&self) -> Result<u64> {
        let text = self.get("/metrics")?;
        Ok(sum_metric(
            &text,
            "monitoring_storage_events_stored_total",
            "kind=\"log\"",
        ) as u64)
    }
}

fn api_token(config: &Path) -> Result<String> {
    let out = Command::new(binary("monitoring-collector")?)
        .args([
            "api-token",
            "create",
            "--name",
            "bench",
            "--role",
            "read",
            "--config",
        ])
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .context("running monitoring-collector api-token create")?;
    if !out.status.success() {
        bail!(
            "api-token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// How the agent under test is set up.
#[derive(Debug, Clone)]
pub struct AgentSetup {
    /// `[buffer] compression`, with `-N` for `compression_level = N` (`"zstd-6"`).
    pub codec: &'static str,
    /// `[buffer] flush_interval_ms`, or the default.
    pub flush_interval_ms: Option<u64>,
    /// The glob of files it tails, or `None` for the default collectors (the
    /// shipped config's `/var/log/*.log` and host metrics).
    pub files: Option<String>,
}

/// An agent under test.
pub struct Agent {
    /// The process.
    pub proc: Proc,
    control: String,
}

impl Agent {
    /// Writes its config into `dir` and starts it, shipping to `endpoint`.
    pub fn start(dir: &Path, endpoint: &str, setup: &AgentSetup) -> Result<Agent> {
        let control = free_port()?;
        let flush = setup
            .flush_interval_ms
            .map(|ms| format!("flush_interval_ms = {ms}\n"))
            .unwrap_or_default();
        let compression = match setup.codec.split_once('-') {
            Some((codec, level)) => {
                format!("compression = {codec:?}\ncompression_level = {level}\n")
            }
            None => format!("compression = {:?}\n", setup.codec),
        };
        let logs = match &setup.files {
            Some(glob) => format!(
                "[collectors.logs]\nfiles = [{glob:?}]\nread_from = \"beginning\"\n\n\
                 [collectors.metrics]\nenabled = false\n"
            ),
            None => String::new(),
        };
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "[agent]\nid = \"bench\"\n\n[collector]\nendpoint = {endpoint:?}\n\n\
                 [buffer]\n{compression}{flush}\n[state]\ndir = {state:?}\n\n\
                 {logs}\n[control]\nlisten = \"127.0.0.1:{control}\"\n",
                state = dir.join("state"),
            ),
        )?;
        Ok(Agent {
            proc: Proc::start("agent", &config, &dir.join("agent.log"))?,
            control: format!("http://127.0.0.1:{control}"),
        })
    }

    /// The sum of its own metric `name` over all label sets.
    pub fn metric(&self, name: &str) -> Result<f64> {
        let body = ureq::get(format!("{}/metrics", self.control))
            .call()?
            .body_mut()
            .read_to_string()?;
        Ok(sum_metric(&body, name, ""))
    }

    /// Waits until it is connected to its collector.
    pub fn wait_connected(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.proc.check_alive()?;
            if self
                .metric("monitoring_agent_collector_connected")
                .is_ok_and(|v| v >= 1.0)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the agent did not connect in 30 s:\n{}", self.proc.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Sums the samples of `name` (exactly that name) whose labels contain `label`, in
/// Prometheus text.
pub fn sum_metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(label))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.as_bytes().first() {
                Some(b'{') => rest.rsplit_once('}')?.1,
                Some(b' ') => rest,
                _ => return None,
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_summed_over_labels_and_names_are_exact() {
        let text = "# HELP x_total help\nx_total{kind=\"log\"} 3\nx_total{kind=\"metric\"} 4\n\
                    x_total_more 100\nx_total 1\n";
        assert_eq!(sum_metric(text, "x_total", ""), 8.0);
        assert_eq!(sum_metric(text, "x_total", "kind=\"log\""), 3.0);
        assert_eq!(sum_metric(text, "y", ""), 0.0);
    }
}
