//! Wire protocol v1 between agent and collector.
//!
//! Every binary WebSocket message from an agent is one [`frame`]: a fixed 32-byte
//! header and a payload compressed with one [`codec`], holding the events encoded as
//! [`payload`] describes. The collector answers each frame with an [`ack`].
//! `docs/protocol.md` is the normative description; this module implements it.
//!
//! Decoding is bounded by [`Limits`]: nothing a peer declares is allocated before it
//! is checked against them.

pub mod ack;
pub mod codec;
pub mod compressor;
pub mod frame;
pub mod payload;

use serde::{Deserialize, Serialize};

pub use ack::{Ack, AckStatus};
pub use codec::Codec;
pub use compressor::Compressor;
pub use frame::{Frame, FrameError, FrameHeader};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// The WebSocket path the collector serves ingest on.
pub const INGEST_PATH: &str = "/ingest";

/// Upgrade request header that names the agent when no token identifies it.
pub const AGENT_ID_HEADER: &str = "x-monitoring-agent-id";

/// Bounds on what a peer may make a decoder allocate or do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest frame (header plus compressed payload) accepted, in bytes. Default 8 MiB.
    pub max_frame_bytes: usize,
    /// Largest uncompressed payload a frame may declare, in bytes. Default 64 MiB.
    pub max_uncompressed_bytes: usize,
    /// Most events one batch may hold. Default 100,000.
    pub max_events_per_batch: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 8 * 1024 * 1024,
            max_uncompressed_bytes: 64 * 1024 * 1024,
            max_events_per_batch: 100_000,
        }
    }
}
