//! The agent process of a test: config, start, log and metrics.

use crate::*;

/// Agent settings a test may change.
pub struct AgentOptions {
    pub files: Vec<String>,
    pub host_metrics: bool,
    pub system_interval_secs: u64,
    pub flush_interval_ms: u64,
    pub compression: String,
    /// Keys added to the agent's `[buffer]` table (`when_full = "drop_newest"`).
    pub buffer_extra: String,
    /// Appended to the agent's config (whole sections such as `[collector.tls]`).
    pub extra: String,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            files: Vec::new(),
            host_metrics: false,
            system_interval_secs: 1,
            flush_interval_ms: 100,
            compression: "lz4".into(),
            buffer_extra: String::new(),
            extra: String::new(),
        }
    }
}

/// A running agent.
pub struct Agent {
    pub child: Child,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub control_port: u16,
}

impl Agent {
    /// Writes a config under `dir` and starts the agent against `endpoint`.
    pub fn start(dir: &Path, id: &str, endpoint: &str, opts: &AgentOptions) -> Result<Agent> {
        Agent::start_with_collector(dir, id, &format!("endpoint = {endpoint:?}"), opts)
    }

    /// Like [`Agent::start`], with `collector_keys` (TOML lines of `[collector]`, such
    /// as `endpoints = [...]`) naming where it ships.
    pub fn start_with_collector(
        dir: &Path,
        id: &str,
        collector_keys: &str,
        opts: &AgentOptions,
    ) -> Result<Agent> {
        let control_port = free_port();
        let config = dir.join(format!("agent-{id}.toml"));
        let files: Vec<String> = opts.files.iter().map(|f| format!("{f:?}")).collect();
        std::fs::write(
            &config,
            format!(
                r#"
[agent]
id = "{id}"

[collector]
{collector_keys}

[buffer]
flush_interval_ms = {flush}
compression = "{compression}"
{buffer_extra}

[state]
dir = "{state}"

[collectors.logs]
enabled = {logs}
files = [{files}]
read_from = "beginning"

[collectors.metrics]
enabled = {metrics}
system_interval_secs = {interval}

[control]
listen = "127.0.0.1:{control_port}"

{extra}
"#,
                extra = opts.extra,
                buffer_extra = opts.buffer_extra,
                flush = opts.flush_interval_ms,
                compression = opts.compression,
                state = dir.join(format!("state-{id}")).display(),
                logs = !opts.files.is_empty(),
                files = files.join(", "),
                metrics = opts.host_metrics,
                interval = opts.system_interval_secs,
            ),
        )?;
        let log = dir.join(format!("agent-{id}.log"));
        Ok(Agent {
            child: spawn(&[], &bin("monitoring-agent")?, &config, &log)?,
            dir: dir.to_path_buf(),
            config,
            control_port,
        })
    }

    /// Starts the agent again with the same config and state.
    pub fn restart(&mut self) -> Result<()> {
        kill(&mut self.child);
        let log = self.config.with_extension("log");
        self.child = spawn(&[], &bin("monitoring-agent")?, &self.config, &log)?;
        Ok(())
    }

    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.config.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Agent {
    /// Polls the agent's log until `needle` occurs in it `count` times; the log then.
    /// Fails at the deadline, or when the agent exits.
    pub fn wait_for_log(
        &mut self,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if log.matches(needle).count() >= count {
                return Ok(log);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("agent exited with {status} waiting for {needle:?}; log:\n{log}");
            }
            if Instant::now() > deadline {
                bail!(
                    "{needle:?} not {count} times in the agent log after {timeout:?}; log:\n{log}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
