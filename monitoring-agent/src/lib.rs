//! monitoring-agent: collects logs and metrics on a host and ships them to a
//! monitoring-collector without losing what it has read.
//!
//! Data flows one way, and the folders follow it:
//!
//! - [`collectors`]: sources (`logs/file`, `metrics/host`) that produce [`pipeline::Envelope`]s;
//! - [`buffer`]: the bounded lock-free ring buffer with its `when_full` policy;
//! - [`pipeline`]: envelopes, delivery progress and the batcher (size/age, compression);
//! - [`transport`]: the WebSocket client with a window of unacknowledged batches;
//! - [`state`]: checkpoints written atomically in `[state] dir`;
//! - [`control`]: the agent's own `/health` and `/metrics`;
//! - [`telemetry`]: the agent's internal metrics, defined in one place;
//! - [`config`]: the TOML configuration;
//! - [`memory`]: free memory given back to the system after a burst;
//! - [`reload`]: what a new configuration changes on SIGHUP.
//!
//! Acknowledgements flow back from transport to the sources' [`pipeline::SourceProgress`]
//! and are the only thing that does.

pub mod agent;
pub mod buffer;
pub mod collectors;
pub mod config;
pub mod control;
pub mod memory;
pub mod pipeline;
pub mod reload;
pub mod state;
pub mod telemetry;
pub mod transport;
