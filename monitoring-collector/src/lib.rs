//! monitoring-collector: accepts agents over WebSocket, stores what they send and
//! serves it back through a REST API.
//!
//! - [`ingest`]: the `/ingest` WebSocket endpoint: frames in, acknowledgements out;
//! - [`processor`]: the worker pool between ingest and storage;
//! - [`storage`]: the [`storage::Store`] trait and its backends (`sqlite`);
//! - [`api`]: the REST API, `/health`, `/ready` and `/metrics`;
//! - [`auth`]: who an agent is (the seam for mTLS and JWT);
//! - [`telemetry`]: the collector's own metrics, defined in one place;
//! - [`config`]: the TOML configuration.

pub mod api;
pub mod auth;
pub mod config;
pub mod ingest;
pub mod processor;
pub mod storage;
pub mod telemetry;
