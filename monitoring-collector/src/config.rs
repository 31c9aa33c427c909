//! The collector's configuration (`config/collector.toml`).
//!
//! Every section and key is optional and has the default its doc comment names, so
//! an empty file is a working development setup. Sections that belong to one
//! component live beside it ([`crate::auth::AuthConfig`],
//! [`crate::processor::ProcessorConfig`], [`crate::api::ApiConfig`]); this module
//! holds the top level, the ingest listener and the storage choice.

use std::net::SocketAddr;
use std::path::Path;

use monitoring_common::config::{ConfigError, Problem, Validate};
use monitoring_common::protocol::Limits;
use serde::Deserialize;

use crate::api::ApiConfig;
use crate::auth::AuthConfig;
use crate::processor::ProcessorConfig;
pub use crate::storage::config::{StorageBackend, StorageConfig};

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`: the ingest WebSocket listener.
    pub server: ServerConfig,
    /// `[api]`: the REST API listener.
    pub api: ApiConfig,
    /// `[auth]`: how agents are authenticated.
    pub auth: AuthConfig,
    /// `[processor]`: the worker pool.
    pub processor: ProcessorConfig,
    /// `[storage]`: where events are stored.
    pub storage: StorageConfig,
}

impl Config {
    /// Reads, expands `${VAR}`, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        monitoring_common::config::load(path)
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<Problem> {
        let mut problems = self.server.validate("server");
        problems.extend(self.api.validate("api"));
        problems.extend(self.auth.validate("auth"));
        problems.extend(self.processor.validate("processor"));
        problems.extend(self.storage.validate());
        if self.api.addr == self.server.websocket_addr && self.api.addr.port() != 0 {
            problems.push(Problem::new(
                "api.addr",
                format!(
                    "is the same address as server.websocket_addr ({}); give each its own port",
                    self.api.addr
                ),
            ));
        }
        problems
    }
}

/// `[server]`: the ingest WebSocket listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address agents connect to; `/ingest` is served there. Default
    /// `"127.0.0.1:7400"`; use `"0.0.0.0:7400"` to accept remote agents.
    pub websocket_addr: SocketAddr,
    /// Most agent connections open at once; more are refused with 503. Default 1024.
    pub max_connections: usize,
    /// Most batches of one connection being processed at once; the connection is not
    /// read further until one is acknowledged. Default 64.
    pub max_in_flight_per_connection: usize,
    /// On shutdown, how long connections get to finish and acknowledge the batches
    /// they are processing, in seconds. Default 10.
    pub shutdown_timeout_secs: u64,
    /// `[server.limits]`: bounds on what an agent may send. Defaults: frames of 8 MiB,
    /// 64 MiB uncompressed, 100,000 events per batch.
    pub limits: Limits,
    /// How long a client gets from opening TCP until its WebSocket upgrade request
    /// has been read (the TLS handshake plus the HTTP request), in seconds; then it
    /// is dropped (slowloris). Default 10.
    pub handshake_timeout_secs: u64,
    /// How often each ingest connection is pinged, in seconds. Default 30.
    pub ping_interval_secs: u64,
    /// An ingest connection from which nothing (no frame, no pong) has arrived for
    /// this long is closed, in seconds; must exceed `ping_interval_secs`. Default 90.
    pub idle_timeout_secs: u64,
    /// Most connections one agent may have open at once; more are refused with 429.
    /// Default 4.
    pub max_connections_per_agent: usize,
    /// `[server.rate_limit]`: events and bytes per second per agent. Defaults:
    /// 1,000,000 events/s, 256 MiB/s, bursts of 2 s.
    pub rate_limit: crate::ingest::RateLimitConfig,
    /// `[server.tls]`: TLS and mutual TLS on the ingest listener. Default: off.
    pub tls: crate::tls::TlsConfig,
    /// Serve plain `ws://` on an address other than loopback. Without TLS the
    /// collector listens only on loopback unless this says so explicitly. Default
    /// `false`.
    pub allow_plaintext: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            websocket_addr: SocketAddr::from(([127, 0, 0, 1], 7400)),
            max_connections: 1024,
            max_in_flight_per_connection: 64,
            shutdown_timeout_secs: 10,
            limits: Limits::default(),
            handshake_timeout_secs: 10,
            ping_interval_secs: 30,
            idle_timeout_secs: 90,
            max_connections_per_agent: 4,
            rate_limit: crate::ingest::RateLimitConfig::default(),
            tls: crate::tls::TlsConfig::default(),
            allow_plaintext: false,
        }
    }
}

/// Plain text on a non-loopback address must be asked for: `<prefix>.allow_plaintext`.
pub fn plaintext_problem(
    prefix: &str,
    addr: SocketAddr,
    tls: bool,
    allowed: bool,
) -> Option<Problem> {
    (!tls && !allowed && !addr.ip().is_loopback()).then(|| {
        Problem::new(
            format!("{prefix}.tls.enabled"),
            format!(
                "is false on {addr}, which is not loopback: traffic would cross the network unencrypted; \
                 enable [{prefix}.tls], or set {prefix}.allow_plaintext = true to accept that"
            ),
        )
    })
}

/// The largest `server.limits.max_frame_bytes` accepted (the WebSocket hard cap is
/// twice that plus 1 MiB).
pub const MAX_FRAME_BYTES_LIMIT: usize = 1 << 30;

impl ServerConfig {
    /// Problems with this section; keys are prefixed with `prefix` (e.g. `server`).
    pub fn validate(&self, prefix: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, message: &str| {
            if !ok {
                problems.push(Problem::new(format!("{prefix}.{key}"), message));
            }
        };
        check(
            (1..=1_000_000).contains(&self.max_connections),
            "max_connections",
            "must be between 1 and 1000000",
        );
        check(
            (1..=65_536).contains(&self.max_in_flight_per_connection),
            "max_in_flight_per_connection",
            "must be between 1 and 65536",
        );
        check(
            self.shutdown_timeout_secs <= 3600,
            "shutdown_timeout_secs",
            "must be at most 3600",
        );
        check(
            (1..=300).contains(&self.handshake_timeout_secs),
            "handshake_timeout_secs",
            "must be between 1 and 300",
        );
        check(
            (1..=3600).contains(&self.ping_interval_secs),
            "ping_interval_secs",
            "must be between 1 and 3600",
        );
        check(
            self.idle_timeout_secs > self.ping_interval_secs && self.idle_timeout_secs <= 86_400,
            "idle_timeout_secs",
            "must exceed server.ping_interval_secs and be at most 86400",
        );
        check(
            (1..=1_000_000).contains(&self.max_connections_per_agent),
            "max_connections_per_agent",
            "must be between 1 and 1000000",
        );
        let limits = &self.limits;
        check(
            (64..=MAX_FRAME_BYTES_LIMIT).contains(&limits.max_frame_bytes),
            "limits.max_frame_bytes",
            "must be between 64 and 1073741824 (1 GiB)",
        );
        check(
            (1..=u32::MAX as usize).contains(&limits.max_uncompressed_bytes),
            "limits.max_uncompressed_bytes",
            "must be between 1 and 4294967295",
        );
        check(
            limits.max_events_per_batch >= 1,
            "limits.max_events_per_batch",
            "must be at least 1",
        );
        problems.extend(self.rate_limit.validate(&format!("{prefix}.rate_limit")));
        problems.extend(self.tls.validate(&format!("{prefix}.tls")));
        problems.extend(plaintext_problem(
            prefix,
            self.websocket_addr,
            self.tls.enabled,
            self.allow_plaintext,
        ));
        problems
    }

    /// The WebSocket message size past which a connection is closed instead of
    /// answered: twice the frame limit plus 1 MiB. Frames between the limit and this
    /// cap get a `rejected` acknowledgement; beyond it the peer is not speaking the
    /// protocol and reading its message would cost unbounded memory.
    pub fn hard_message_cap(&self) -> usize {
        self.limits
            .max_frame_bytes
            .saturating_mul(2)
            .saturating_add(1 << 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitoring_common::config::parse;

    fn parse_str(text: &str) -> Result<Config, String> {
        parse::<Config>(text, Path::new("collector.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let config = parse_str("").expect("empty config is valid");
        assert_eq!(config.server.websocket_addr.to_string(), "127.0.0.1:7400");
        assert_eq!(config.api.addr.to_string(), "127.0.0.1:7401");
        assert_eq!(config.server.max_connections, 1024);
        assert_eq!(config.processor.queue_batches, 64);
        assert!(config.processor.workers >= 1);
        assert!(config.processor.parse);
        assert_eq!(
            config.storage.path,
            std::path::PathBuf::from("var/collector")
        );
        assert_eq!(config.storage.retention_days, 7);
        assert_eq!(config.server.limits, Limits::default());
        assert_eq!(config.server.ping_interval_secs, 30);
        assert_eq!(config.server.idle_timeout_secs, 90);
        assert_eq!(config.server.max_connections_per_agent, 4);
        assert_eq!(config.server.rate_limit.events_per_sec, 1_000_000);
    }

    #[test]
    fn ingest_limits_are_validated() {
        let err = parse_str(
            "[server]\nping_interval_secs = 30\nidle_timeout_secs = 30\nmax_connections_per_agent = 0\n\n[server.rate_limit]\nburst_secs = 0\n",
        )
        .expect_err("bad limits accepted");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines,
            [
                "collector.toml:3: key `server.idle_timeout_secs`: must exceed server.ping_interval_secs and be at most 86400",
                "collector.toml:4: key `server.max_connections_per_agent`: must be between 1 and 1000000",
                "collector.toml:7: key `server.rate_limit.burst_secs`: must be between 1 and 3600",
            ]
        );
        let ok = parse_str(
            "[server]\nping_interval_secs = 1\nidle_timeout_secs = 3\n\n[server.rate_limit]\nevents_per_sec = 0\nbytes_per_sec = 0\n",
        )
        .expect("unlimited rate and short timeouts are valid");
        assert!(ok.server.rate_limit.is_unlimited());
    }

    #[test]
    fn the_example_file_is_valid_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/collector.toml");
        let text = std::fs::read_to_string(&path).expect("config/collector.toml exists");
        let mut config = parse_str(&text).expect("example is valid");
        let mut defaults = Config::default();
        // The example cannot spell out the CPU count.
        config.processor.workers = 1;
        defaults.processor.workers = 1;
        assert_eq!(config, defaults);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_located() {
        let err = parse_str("[server]\nwebsocket_addr = \"127.0.0.1:1\"\nmax_conections = 5\n")
            .expect_err("unknown key accepted");
        assert!(
            err.starts_with("collector.toml:3: key `server.max_conections`"),
            "{err}"
        );

        let err =
            parse_str("[server.limits]\nmax_frame_bytes = 10\n\n[storage]\nread_pool_size = 0\n")
                .expect_err("bad values accepted");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines,
            [
                "collector.toml:2: key `server.limits.max_frame_bytes`: must be between 64 and 1073741824 (1 GiB)",
                "collector.toml:5: key `storage.read_pool_size`: must be between 1 and 64",
            ]
        );

        let err =
            parse_str("[storage]\nbackend = \"oracle\"\n").expect_err("unknown backend accepted");
        assert!(
            err.starts_with("collector.toml:2: key `storage.backend`"),
            "{err}"
        );
    }

    #[test]
    fn plaintext_beyond_loopback_must_be_asked_for() {
        let err = parse_str("[server]\nwebsocket_addr = \"0.0.0.0:7400\"\n")
            .expect_err("plain ws:// on 0.0.0.0 accepted");
        assert!(err.contains("key `server.tls.enabled`"), "{err}");
        assert!(err.contains("server.allow_plaintext"), "{err}");
        let err = parse_str("[api]\naddr = \"0.0.0.0:7401\"\n").expect_err("plain http accepted");
        assert!(err.contains("key `api.tls.enabled`"), "{err}");
        parse_str(
            "[server]\nwebsocket_addr = \"0.0.0.0:7400\"\nallow_plaintext = true\n\
             [api]\naddr = \"0.0.0.0:7401\"\nallow_plaintext = true\n",
        )
        .expect("explicitly allowed");
    }

    #[test]
    fn the_hard_cap_is_above_the_frame_limit() {
        let server = ServerConfig::default();
        assert_eq!(server.hard_message_cap(), 17 * (1 << 20));
    }
}
