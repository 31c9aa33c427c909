//! The agent's pipeline between collectors and transport: what an event carries on
//! its way ([`Envelope`]), how delivery progress flows back to sources
//! ([`SourceProgress`]), which kind of source each event came from ([`Source`], with
//! per-batch [`SourceCounts`]), the [`batcher`] that turns envelopes into frames, and
//! whether delivery is waiting for work ([`DeliveryIdle`]).

pub mod batcher;
mod envelope;
mod idle;
mod source;

pub use batcher::{Batch, BatcherConfig};
pub use envelope::{Body, Closed, Envelope, EventOutput, SourceProgress};
pub use idle::DeliveryIdle;
pub use source::{Source, SourceCounts};
