//! Harness for end-to-end tests: starts the real `monitoring-collector` and
//! `monitoring-agent` binaries on loopback ports with configs written to a temporary
//! directory, writes log lines with unique sequence numbers, and counts through the
//! REST API what arrived.
//!
//! The binaries are taken from the target directory this test was built into
//! (`scripts/test.sh` builds them before running the tests).

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The directory holding the workspace's binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/<test>-<hash> → target/debug
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn bin(name: &str) -> Result<PathBuf> {
    let p = bin_dir().join(name);
    if !p.exists() {
        bail!(
            "{} is missing: build the binaries first (scripts/test.sh does: cargo build --workspace --bins)",
            p.display()
        );
    }
    Ok(p)
}

/// A free loopback port (bound, then released: good enough on a test machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The loghub sample lines shipped in ../shared/data, CR/LF stripped, non-empty.
pub fn loghub_lines() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/loghub");
    let mut lines = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    names.sort();
    for p in names {
        let bytes = std::fs::read(&p).unwrap();
        for l in String::from_utf8_lossy(&bytes).split(['\n', '\r']) {
            if !l.trim().is_empty() {
                // Keep lines short enough that the test is about delivery, not truncation.
                lines.push(l.chars().take(400).collect());
            }
        }
    }
    lines
}

/// The line with sequence number `seq`, built from the loghub corpus.
pub fn numbered_line(corpus: &[String], seq: u64) -> String {
    format!("seq={seq:08} {}", corpus[(seq as usize) % corpus.len()])
}

/// Sends SIGTERM (graceful) to a child.
pub fn sigterm(child: &Child) {
    let pid = child.id() as libc::pid_t;
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// A running collector.
pub struct Collector {
    pub child: Child,
    pub dir: PathBuf,
    pub ingest_port: u16,
    pub api_port: u16,
    pub config: PathBuf,
    /// An admin API token made with the real `api-token create` command; [`Collector::get`]
    /// sends it.
    pub api_token: String,
}

impl Collector {
    /// Writes a config under `dir` and starts the collector.
    pub fn start(dir: &Path) -> Result<Collector> {
        Collector::start_with(dir, "")
    }

    /// Like [`Collector::start`], with `extra` (whole TOML sections such as
    /// `[server.tls]`) appended to the config.
    pub fn start_with(dir: &Path, extra: &str) -> Result<Collector> {
        Collector::start_with_server(dir, "", extra)
    }

    /// Like [`Collector::start_with`], with `server_extra` (keys of `[server]` such
    /// as `idle_timeout_secs = 3`) added to the `[server]` table.
    pub fn start_with_server(dir: &Path, server_extra: &str, extra: &str) -> Result<Collector> {
        let ingest_port = free_port();
        let api_port = free_port();
        let config = dir.join("collector.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[server]
websocket_addr = "127.0.0.1:{ingest_port}"
{server_extra}

[api]
addr = "127.0.0.1:{api_port}"

[api.auth]
users_file = "{users}"

[auth]
mode = "none"

[processor]
workers = 2

[storage]
backend = "sqlite"
path = "{}"
retention_days = 7

{extra}
"#,
                dir.join("store").display(),
                users = dir.join("users.toml").display(),
            ),
        )?;
        let api_token = create_api_token(&config, "e2e", "admin")?;
        let mut c = Collector {
            child: spawn(
                &bin("monitoring-collector")?,
                &config,
                &dir.join("collector.log"),
            )?,
            dir: dir.to_path_buf(),
            ingest_port,
            api_port,
            config,
            api_token,
        };
        c.wait_healthy()?;
        Ok(c)
    }

    /// Starts the collector again with the same config and data (after a kill).
    pub fn restart(&mut self) -> Result<()> {
        kill(&mut self.child);
        self.child = spawn(
            &bin("monitoring-collector")?,
            &self.config,
            &self.dir.join("collector.log"),
        )?;
        self.wait_healthy()
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/health", self.api());
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("collector exited with {status}; log:\n{}", self.log());
            }
            if blocking_get(&url).is_ok_and(|r| r.0 == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("collector not healthy after 30 s; log:\n{}", self.log())
    }

    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    pub fn endpoint(&self) -> String {
        format!("ws://127.0.0.1:{}/ingest", self.ingest_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("collector.log")).unwrap_or_default()
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// GET a JSON document from the API, with [`Collector::api_token`].
    pub fn get(&self, path_and_query: &str) -> Result<serde_json::Value> {
        let (status, body) = blocking_get_with(
            &format!("{}{path_and_query}", self.api()),
            Some(&self.api_token),
        )?;
        if status != 200 {
            bail!("GET {path_and_query}: {status}: {body}");
        }
        serde_json::from_str(&body)
            .with_context(|| format!("GET {path_and_query}: not JSON: {body}"))
    }

    /// Every log message stored, by paging through the API with its cursor.
    pub fn all_log_messages(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = "/api/v1/logs?limit=10000&order=asc".to_string();
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={}", urlencode(c)));
            }
            let page = self.get(&q)?;
            for l in page["logs"].as_array().context("logs array")? {
                out.push(l["message"].as_str().context("message")?.to_string());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return Ok(out),
            }
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Agent settings a test may change.
pub struct AgentOptions {
    pub files: Vec<String>,
    pub host_metrics: bool,
    pub system_interval_secs: u64,
    pub flush_interval_ms: u64,
    pub compression: String,
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
endpoint = "{endpoint}"

[buffer]
flush_interval_ms = {flush}
compression = "{compression}"

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
            child: spawn(&bin("monitoring-agent")?, &config, &log)?,
            dir: dir.to_path_buf(),
            config,
            control_port,
        })
    }

    /// Starts the agent again with the same config and state.
    pub fn restart(&mut self) -> Result<()> {
        kill(&mut self.child);
        let log = self.config.with_extension("log");
        self.child = spawn(&bin("monitoring-agent")?, &self.config, &log)?;
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

/// SIGKILL and reap; a child that already exited is fine.
fn kill(child: &mut Child) {
    if let Err(error) = child.kill().and_then(|()| child.wait().map(drop)) {
        eprintln!("killing pid {}: {error}", child.id());
    }
}

fn spawn(bin: &Path, config: &Path, log: &Path) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

/// Runs `monitoring-collector api-token create` for the collector config `config`;
/// the token it prints.
pub fn create_api_token(config: &Path, name: &str, role: &str) -> Result<String> {
    let out = Command::new(bin("monitoring-collector")?)
        .args([
            "api-token",
            "create",
            "--name",
            name,
            "--role",
            role,
            "--config",
        ])
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .context("running api-token create")?;
    if !out.status.success() {
        bail!(
            "api-token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// A plain HTTP GET on loopback; returns status and body.
pub fn blocking_get(url: &str) -> Result<(u16, String)> {
    blocking_get_with(url, None)
}

/// A plain HTTP GET on loopback with an optional bearer token; returns status and
/// body.
pub fn blocking_get_with(url: &str, bearer: Option<&str>) -> Result<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut request = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(30));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let r = request.send().await?;
        let status = r.status().as_u16();
        Ok((status, r.text().await?))
    })
}

/// An HTTPS GET of `path` from `addr` (certificate name `localhost`) trusting only
/// the CA in `ca_pem`, with an optional bearer token; returns status and body.
/// HTTP/1.1 by hand over tokio-rustls: reqwest here is built without TLS.
pub fn https_get(
    addr: &str,
    path: &str,
    ca_pem: &Path,
    bearer: Option<&str>,
) -> Result<(u16, String)> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem)? {
        roots.add(cert?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let response = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
        let mut stream = connector
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let auth = bearer.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        let request =
            format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n{auth}connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        // A TLS close without close_notify still ends the response.
        if let Err(e) = stream.read_to_end(&mut response).await
            && response.is_empty()
        {
            return Err(anyhow::Error::from(e));
        }
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    })?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no end of headers")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)?
        } else {
            body.to_string()
        },
    ))
}

fn dechunk(mut body: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("bad chunk")?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("short chunk")?);
        body = rest.get(size + 2..).context("short chunk")?;
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Appends lines to a file, flushing each chunk so the agent sees them.
pub struct LineWriter {
    file: std::fs::File,
}

impl LineWriter {
    pub fn open(path: &Path) -> Result<LineWriter> {
        Ok(LineWriter {
            file: std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        })
    }

    pub fn write_lines(&mut self, lines: impl Iterator<Item = String>) -> Result<()> {
        let mut buf = String::new();
        for l in lines {
            buf.push_str(&l);
            buf.push('\n');
        }
        self.file.write_all(buf.as_bytes())?;
        Ok(())
    }
}

/// How many of the sequence numbers `0..expected` arrived, and how many extra copies.
#[derive(Debug)]
pub struct Tally {
    pub expected: u64,
    pub missing: Vec<u64>,
    pub duplicates: u64,
}

/// Counts `seq=NNNNNNNN` markers in the messages.
pub fn tally(messages: &[String], expected: u64) -> Tally {
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    for m in messages {
        if let Some(n) = m
            .strip_prefix("seq=")
            .and_then(|r| r.get(..8))
            .and_then(|d| d.parse().ok())
        {
            *seen.entry(n).or_default() += 1;
        }
    }
    let missing = (0..expected).filter(|n| !seen.contains_key(n)).collect();
    let duplicates = seen.values().map(|c| c - 1).sum();
    Tally {
        expected,
        missing,
        duplicates,
    }
}

/// Polls until `expected` distinct sequence numbers are stored, or the deadline.
pub fn wait_for_all(collector: &Collector, expected: u64, timeout: Duration) -> Result<Tally> {
    let deadline = Instant::now() + timeout;
    loop {
        let t = tally(&collector.all_log_messages()?, expected);
        if t.missing.is_empty() || Instant::now() > deadline {
            return Ok(t);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Sends SIGHUP (configuration reload) to a child.
pub fn sighup(child: &Child) {
    let pid = child.id() as libc::pid_t;
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGHUP);
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

/// The sum of every sample of the metric `name` (all label sets; a counter's
/// `_total` suffix is added when `name` lacks it) in the agent's `/metrics`; `None`
/// when the control server does not answer or has no such metric.
pub fn agent_metric(agent: &Agent, name: &str) -> Option<f64> {
    let url = format!("http://127.0.0.1:{}/metrics", agent.control_port);
    let (status, body) = blocking_get(&url).ok()?;
    if status != 200 {
        return None;
    }
    let total = format!("{name}_total");
    let mut found = None;
    for line in body.lines() {
        let Some(rest) = line
            .strip_prefix(total.as_str())
            .or_else(|| line.strip_prefix(name))
        else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        *found.get_or_insert(0.0) += value;
    }
    found
}

/// Polls `check` every 50 ms until it holds; an error naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// What a [`ContinuousWriter`] writes to, shared with the test so that it can rotate
/// between two chunks (holding the lock pauses the writer).
pub struct WriterState {
    /// The file written now (`None`: closed, nothing is written until reopened).
    writer: Option<LineWriter>,
    /// The path written to.
    pub path: PathBuf,
    /// The sequence number of the next line; also the number of lines written.
    pub next_seq: u64,
    /// Bytes written so far, to all files.
    pub bytes: u64,
    corpus: std::sync::Arc<Vec<String>>,
}

impl WriterState {
    /// Opens `path` (created if missing) and writes there from now on.
    pub fn switch_to(&mut self, path: &Path) -> Result<()> {
        self.writer = Some(LineWriter::open(path)?);
        self.path = path.to_path_buf();
        Ok(())
    }

    /// Opens the current path again (after it was renamed away or deleted).
    pub fn reopen(&mut self) -> Result<()> {
        let path = self.path.clone();
        self.switch_to(&path)
    }

    /// Closes the file: nothing is written until [`WriterState::reopen`].
    pub fn close(&mut self) {
        self.writer = None;
    }

    /// Writes the next `n` numbered lines (nothing while closed).
    pub fn write_chunk(&mut self, n: u64) -> Result<()> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let lines: Vec<String> = (self.next_seq..self.next_seq + n)
            .map(|s| numbered_line(&self.corpus, s))
            .collect();
        let bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        w.write_lines(lines.into_iter())?;
        self.next_seq += n;
        self.bytes += bytes;
        Ok(())
    }
}

/// A thread appending numbered lines (from the loghub corpus) to a file, a chunk
/// every tick, until [`ContinuousWriter::finish`]: the load a rotation happens under.
pub struct ContinuousWriter {
    state: std::sync::Arc<std::sync::Mutex<WriterState>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl ContinuousWriter {
    /// Starts writing `lines_per_tick` lines to `path` every `tick`.
    pub fn start(
        path: &Path,
        corpus: std::sync::Arc<Vec<String>>,
        lines_per_tick: u64,
        tick: Duration,
    ) -> Result<ContinuousWriter> {
        let state = std::sync::Arc::new(std::sync::Mutex::new(WriterState {
            writer: Some(LineWriter::open(path)?),
            path: path.to_path_buf(),
            next_seq: 0,
            bytes: 0,
            corpus,
        }));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || -> Result<()> {
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    lock(&state).write_chunk(lines_per_tick)?;
                    std::thread::sleep(tick);
                }
                Ok(())
            })
        };
        Ok(ContinuousWriter {
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// The writer's state; writing pauses while the guard is held.
    pub fn pause(&self) -> std::sync::MutexGuard<'_, WriterState> {
        lock(&self.state)
    }

    /// Stops the thread; the number of lines and of bytes written.
    pub fn finish(mut self) -> Result<(u64, u64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| anyhow::anyhow!("writer thread panicked"))??;
        }
        let s = lock(&self.state);
        Ok((s.next_seq, s.bytes))
    }
}

impl Drop for ContinuousWriter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Locks `m`, ignoring poisoning (a failed test already reported it).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
