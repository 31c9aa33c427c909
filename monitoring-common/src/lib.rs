//! Shared pieces of the monitoring agent and collector.
//!
//! - [`event`]: the event model (logs, metrics, flows) that every part speaks.
//! - [`protocol`]: wire protocol v1: batch frames, codecs, acknowledgements and the
//!   limits that bound decoding. `docs/protocol.md` is its normative description.
//! - [`atomic_file`]: files replaced whole, atomically and durably.
//! - [`severity`]: the severity of a log line read from its text.
//! - [`config`]: helpers both programs use to load TOML configuration: `${VAR}`
//!   expansion and errors that name file, line and key.
//!
//! This crate stays small: no server or client machinery lives here.

pub mod atomic_file;
pub mod config;
pub mod event;
pub mod protocol;
pub mod severity;

pub use event::{Event, EventKind, FlowEvent, LogEvent, MetricEvent, MetricValue, Severity, Value};
