//! Fan-out sinks: where events go besides the primary store (`[[storage.sinks]]`).

pub mod config;

pub use config::{RouteKind, SinkConfig, SinkType};
