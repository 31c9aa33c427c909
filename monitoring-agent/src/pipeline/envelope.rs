//! Envelopes and delivery progress: the contract between sources and the pipeline.
//!
//! A source that must not lose data (a tailed file, a journal) attaches to each event
//! the position just past it, as `(progress, offset)`. The transport advances a
//! source's [`SourceProgress`] only when every batch up to and including the one that
//! holds the event has been acknowledged, in sequence order, so `acked()` is always a
//! position before which everything is committed at the collector. Sources persist
//! that value as their checkpoint; nothing else moves it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use monitoring_common::Event;

use super::Source;

/// Delivery progress of one source: the position up to which every event read has
/// been acknowledged by the collector.
#[derive(Debug)]
pub struct SourceProgress {
    acked: AtomicU64,
}

impl SourceProgress {
    /// Progress starting at `initial` (the checkpoint the source resumed from).
    pub fn new(initial: u64) -> Arc<SourceProgress> {
        Arc::new(SourceProgress {
            acked: AtomicU64::new(initial),
        })
    }

    /// The acknowledged position.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    /// Moves the acknowledged position forward (never back).
    pub fn advance(&self, position: u64) {
        self.acked.fetch_max(position, Ordering::AcqRel);
    }

    /// Moves the position to exactly `position`, for a source that restarted from an
    /// earlier point (a truncated file read again from zero).
    pub fn reset(&self, position: u64) {
        self.acked.store(position, Ordering::Release);
    }
}

/// An event on its way through the agent, with the source position it completes.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The event.
    pub event: Event,
    /// The kind of source that read it, for the per-source accounting.
    pub source: Source,
    /// For sources with checkpoints: the progress to advance once the event is
    /// acknowledged, and the position just past the event.
    pub ack: Option<(Arc<SourceProgress>, u64)>,
}

impl Envelope {
    /// An event whose delivery nothing waits on (metrics).
    pub fn untracked(source: Source, event: Event) -> Envelope {
        Envelope {
            event,
            source,
            ack: None,
        }
    }
}

/// The pipeline has shut down and takes no more events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline is closed")]
pub struct Closed;

/// Where sources put their events: the ring buffer in the agent, a channel in tests.
pub trait EventOutput: Send + Sync + 'static {
    /// Hands over one event. Under the `block` policy this waits while the buffer is
    /// full, which is how a slow collector pauses the tailers.
    fn send(&self, envelope: Envelope) -> impl Future<Output = Result<(), Closed>> + Send;
}

impl EventOutput for tokio::sync::mpsc::Sender<Envelope> {
    async fn send(&self, envelope: Envelope) -> Result<(), Closed> {
        tokio::sync::mpsc::Sender::send(self, envelope)
            .await
            .map_err(|_| Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_only_moves_forward_unless_reset() {
        let p = SourceProgress::new(10);
        p.advance(5);
        assert_eq!(p.acked(), 10);
        p.advance(20);
        assert_eq!(p.acked(), 20);
        p.reset(0);
        assert_eq!(p.acked(), 0);
    }
}
