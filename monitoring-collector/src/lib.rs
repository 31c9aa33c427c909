//! monitoring-collector: accepts agents over WebSocket, stores what they send and
//! serves it back through a REST API.
//!
//! - [`server`]: wiring and shutdown order; [`run`] is the library entry point;
//! - [`ingest`]: the `/ingest` WebSocket endpoint: frames in, acknowledgements out;
//! - [`processor`]: the worker pool between ingest and storage: parsing, severity and
//!   enrichment of log events, then the commit;
//! - [`storage`]: the [`storage::Store`] trait and its backends (`sqlite`, `clickhouse`),
//!   and the `[[storage.sinks]]` fan-out ([`storage::sinks`]: file, console, blackhole,
//!   Prometheus remote write);
//! - [`api`]: the REST API, `/health`, `/ready` and `/metrics`;
//! - [`auth`]: who an agent is (the seam for mTLS and JWT);
//! - [`retention`]: dropping expired data;
//! - [`telemetry`]: the collector's own metrics, defined in one place;
//! - [`tls`]: TLS and mutual TLS on the ingest listener;
//! - [`certs`]: development certificates (`monitoring-collector certs`);
//! - [`config`]: the TOML configuration;
//! - [`nofile`]: the open-file limit, raised at start for many agent connections.
//!
//! ```no_run
//! # async fn example() -> Result<(), monitoring_collector::RunError> {
//! let config = monitoring_collector::config::Config::default();
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! monitoring_collector::run(config, shutdown).await
//! # }
//! ```

pub mod api;
pub mod auth;
pub mod certs;
pub mod config;
pub mod ingest;
pub mod nofile;
pub mod processor;
pub mod retention;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod watched_file;

pub use server::{RunError, Server, run};
