//! Shared harness for the collector's integration tests: starts the real binary on
//! free ports with a temporary store and talks to it as an agent and an API client
//! would.

#![allow(dead_code)] // Each test file uses a different part of the harness.

pub mod tls;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use monitoring_common::event::now_ns;
use monitoring_common::protocol::frame::encode_frame;
use monitoring_common::protocol::payload::encode_events;
use monitoring_common::protocol::{AGENT_ID_HEADER, Ack, Codec, INGEST_PATH};
use monitoring_common::{Event, MetricValue};
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// An agent's WebSocket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A free TCP port on loopback (free when this returns; the race is acceptable here).
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A running collector binary. Killed when dropped; its log is printed if the test
/// failed.
pub struct Collector {
    child: Option<Child>,
    /// Ingest address.
    pub ws: SocketAddr,
    /// API address.
    pub api: SocketAddr,
    /// Temporary directory with the config, the store and the log.
    pub dir: TempDir,
}

impl Collector {
    /// Starts a collector with default settings.
    pub async fn start() -> Collector {
        Collector::start_with("", "").await
    }

    /// Starts a collector; `server_extra` is appended to `[server]`, `limits` is the
    /// body of `[server.limits]`.
    pub async fn start_with(server_extra: &str, limits: &str) -> Collector {
        Collector::start_full(server_extra, limits, "", tempfile::tempdir().unwrap()).await
    }

    /// Starts a collector in `dir` with `sections` (whole TOML sections such as
    /// `[auth]`) appended to the config. The API's read endpoints are open
    /// (`[api.auth] open_read`): these tests are not about API authentication.
    pub async fn start_full(
        server_extra: &str,
        limits: &str,
        sections: &str,
        dir: TempDir,
    ) -> Collector {
        Collector::start_with_api_auth(server_extra, limits, "open_read = true", sections, dir)
            .await
    }

    /// Like [`Collector::start_full`], with `api_auth` as the body of `[api.auth]`
    /// (whose `users_file` is [`Collector::users_file`]).
    pub async fn start_with_api_auth(
        server_extra: &str,
        limits: &str,
        api_auth: &str,
        sections: &str,
        dir: TempDir,
    ) -> Collector {
        let storage = format!("path = \"{}\"", dir.path().join("store").display());
        Collector::launch(server_extra, limits, api_auth, &storage, sections, dir).await
    }

    /// Starts a collector whose `[storage]` section has `storage` as its body (the
    /// server stores), with open API reads.
    pub async fn start_with_storage(storage: &str) -> Collector {
        let dir = tempfile::tempdir().unwrap();
        Collector::launch("", "", "open_read = true", storage, "", dir).await
    }

    async fn launch(
        server_extra: &str,
        limits: &str,
        api_auth: &str,
        storage: &str,
        sections: &str,
        dir: TempDir,
    ) -> Collector {
        let (ws, api) = (free_addr(), free_addr());
        let config = format!(
            "[server]\nwebsocket_addr = \"{ws}\"\nshutdown_timeout_secs = 5\n{server_extra}\n\n\
             [server.limits]\n{limits}\n\n\
             [api]\naddr = \"{api}\"\n\n\
             [api.auth]\nusers_file = \"{}\"\n{api_auth}\n\n\
             [processor]\nworkers = 2\n\n\
             [storage]\n{storage}\n\n{sections}\n",
            dir.path().join("users.toml").display(),
        );
        let config_path = dir.path().join("collector.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("collector.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_monitoring-collector"))
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info,monitoring_collector=debug")
            // Captured for the console sink's tests.
            .stdout(std::fs::File::create(dir.path().join("collector.stdout")).unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut collector = Collector {
            child: Some(child),
            ws,
            api,
            dir,
        };
        collector.wait_healthy().await;
        collector
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(self.url("/health")).await
                && r.status() == 200
            {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("collector exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "collector not healthy in 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The collector's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("collector.log")).unwrap_or_default()
    }

    /// The collector's stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("collector.stdout")).unwrap_or_default()
    }

    /// The collector's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The collector's peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let pid = self.child.as_ref().unwrap().id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("collector.toml")
    }

    /// The API's users file.
    pub fn users_file(&self) -> PathBuf {
        self.dir.path().join("users.toml")
    }

    /// Runs the collector binary with `args` and `--config` of this collector,
    /// feeding it `stdin`.
    pub fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_monitoring-collector"))
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The command may exit without reading it.
        drop(child.stdin.take().unwrap().write_all(stdin.as_bytes()));
        child.wait_with_output().unwrap()
    }

    /// An API URL.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.api)
    }

    /// GET an API path: status and JSON body.
    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let r = reqwest::get(self.url(path_and_query)).await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path_and_query}: not JSON ({e}): {text}"));
        (status, body)
    }

    /// GET `/metrics` as text.
    pub async fn self_metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Connects as `agent`.
    pub async fn connect(&self, agent: &str) -> Socket {
        connect(self.ws, Some(agent)).await.unwrap()
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!(
                    "collector did not exit within {within:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.kill());
            drop(child.wait());
        }
        if std::thread::panicking() {
            eprintln!("---- collector log ----\n{}", self.log());
        }
    }
}

/// Opens an ingest WebSocket, with the agent id header when given.
pub async fn connect(
    ws: SocketAddr,
    agent: Option<&str>,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{ws}{INGEST_PATH}").into_client_request()?;
    if let Some(agent) = agent {
        request
            .headers_mut()
            .insert(AGENT_ID_HEADER, HeaderValue::from_str(agent).unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(s, _)| s)
}

/// A frame of log events with these messages, timestamped now.
pub fn log_frame(codec: Codec, stream: u64, seq: u64, messages: &[String]) -> Vec<u8> {
    let now = now_ns();
    let events: Vec<Event> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| Event::log(now + i as i64, "/var/log/test.log", m.clone()))
        .collect();
    frame(codec, stream, seq, &events)
}

/// A frame of these events.
pub fn frame(codec: Codec, stream: u64, seq: u64, events: &[Event]) -> Vec<u8> {
    encode_frame(
        codec,
        stream,
        seq,
        events.len() as u32,
        &encode_events(events),
    )
}

/// A gauge sample, timestamped now.
pub fn gauge(name: &str, labels: &[(&str, &str)], value: f64) -> Event {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Event::metric(now_ns(), "host", name, labels, MetricValue::Gauge { value })
}

/// Sends one binary message.
pub async fn send(socket: &mut Socket, bytes: Vec<u8>) {
    socket.send(Message::binary(bytes)).await.unwrap();
}

/// The next acknowledgement (within 10 s).
pub async fn recv_ack(socket: &mut Socket) -> Ack {
    let deadline = Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout(deadline, socket.next())
            .await
            .expect("no acknowledgement within 10 s")
            .expect("connection closed")
            .expect("connection failed");
        match message {
            Message::Binary(b) => return Ack::decode(&b).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// Sends a frame and returns its acknowledgement.
pub async fn round_trip(socket: &mut Socket, bytes: Vec<u8>) -> Ack {
    send(socket, bytes).await;
    recv_ack(socket).await
}

/// Unique text for a test, so that full-text search finds only its own lines.
pub fn marker(test: &str) -> String {
    let letters: String = test.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("{letters}{}", now_ns())
}

/// Config text for `check-config` tests.
pub fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
