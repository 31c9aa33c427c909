//! The collector process of a test: config, start, API queries.

use std::ffi::OsString;

use crate::*;

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
    /// What the collector runs behind ([`CollectorOptions::wrapper`]), again on restart.
    wrapper: Vec<OsString>,
}

/// Collector settings a test may change; every string is TOML.
#[derive(Debug, Clone, Default)]
pub struct CollectorOptions {
    /// Keys added to `[server]`, such as `idle_timeout_secs = 3`.
    pub server: String,
    /// Keys added to `[processor]` beside `workers = 2`, such as `queue_batches = 4`.
    pub processor: String,
    /// Keys added to `[storage]`, such as `busy_timeout_ms = 200`.
    pub storage: String,
    /// When not empty, replaces the store keys of `[storage]` (by default
    /// `backend = "sqlite"` and `path = "<dir>/store"`), such as
    /// [`PgDatabase::storage_keys`].
    pub store: String,
    /// Whole sections appended to the config, such as `[server.tls]`.
    pub extra: String,
    /// A command the collector runs behind: the binary and its arguments are
    /// appended to it, so it must end by executing them (`exec "$0" "$@"` in a
    /// `sh -c` script). Empty: the collector is started directly. The process the
    /// test holds must become the collector (exec, not fork), so that signals and
    /// `/proc/<pid>` reach it.
    pub wrapper: Vec<OsString>,
}

impl Collector {
    /// Writes a config under `dir` and starts the collector.
    pub fn start(dir: &Path) -> Result<Collector> {
        Collector::start_opts(dir, &CollectorOptions::default())
    }

    /// Like [`Collector::start`], with `extra` (whole TOML sections such as
    /// `[server.tls]`) appended to the config.
    pub fn start_with(dir: &Path, extra: &str) -> Result<Collector> {
        Collector::start_with_server(dir, "", extra)
    }

    /// Like [`Collector::start_with`], with `server_extra` (keys of `[server]` such
    /// as `idle_timeout_secs = 3`) added to the `[server]` table.
    pub fn start_with_server(dir: &Path, server_extra: &str, extra: &str) -> Result<Collector> {
        Collector::start_opts(
            dir,
            &CollectorOptions {
                server: server_extra.into(),
                extra: extra.into(),
                ..CollectorOptions::default()
            },
        )
    }

    /// Writes a config under `dir` with `opts` and starts the collector. Its store is
    /// `dir/store` ([`Collector::store_dir`]).
    pub fn start_opts(dir: &Path, opts: &CollectorOptions) -> Result<Collector> {
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
{processor_extra}

[storage]
{store}
retention_days = 7
{storage_extra}

{extra}
"#,
                users = dir.join("users.toml").display(),
                store = if opts.store.is_empty() {
                    format!(
                        "backend = \"sqlite\"\npath = \"{}\"",
                        dir.join("store").display()
                    )
                } else {
                    opts.store.clone()
                },
                server_extra = opts.server,
                processor_extra = opts.processor,
                storage_extra = opts.storage,
                extra = opts.extra,
            ),
        )?;
        let api_token = create_api_token(&config, "e2e", "admin")?;
        let mut c = Collector {
            child: spawn(
                &opts.wrapper,
                &bin("monitoring-collector")?,
                &config,
                &dir.join("collector.log"),
            )?,
            dir: dir.to_path_buf(),
            ingest_port,
            api_port,
            config,
            api_token,
            wrapper: opts.wrapper.clone(),
        };
        c.wait_healthy()?;
        Ok(c)
    }

    /// The store directory, as this test process sees it.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// Starts the collector again with the same config and data (after a kill).
    pub fn restart(&mut self) -> Result<()> {
        kill(&mut self.child);
        self.child = spawn(
            &self.wrapper,
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
