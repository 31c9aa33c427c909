//! Envelopes and delivery progress: the contract between sources and the pipeline.
//!
//! A source that must not lose data (a tailed file, a journal) attaches to each event
//! the position just past it, as `(progress, offset)`. The transport advances a
//! source's [`SourceProgress`] only when every batch up to and including the one that
//! holds the event has been acknowledged, in sequence order, so `acked()` is always a
//! position before which everything is committed at the collector. Sources persist
//! that value as their checkpoint; nothing else moves it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use monitoring_common::Event;
use monitoring_common::protocol::payload::{PayloadError, decode_events, encode_event};

use super::Source;

/// Delivery progress of one source: the position up to which every event read has
/// been acknowledged by the collector.
#[derive(Debug)]
pub struct SourceProgress {
    acked: AtomicU64,
    /// `(after, to)`: once `acked` reaches `after`, it moves on to `to`; the events
    /// between were consumed without being shipped. A lock, not atomics, so that a
    /// skip recorded while an acknowledgement arrives is never missed by both sides.
    skip: Mutex<Option<(u64, u64)>>,
}

impl SourceProgress {
    /// Progress starting at `initial` (the checkpoint the source resumed from).
    pub fn new(initial: u64) -> Arc<SourceProgress> {
        Arc::new(SourceProgress {
            acked: AtomicU64::new(initial),
            skip: Mutex::new(None),
        })
    }

    /// The acknowledged position.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    /// Moves the acknowledged position forward (never back), and past the events
    /// consumed without shipping that follow it (see [`SourceProgress::skip_to`]).
    pub fn advance(&self, position: u64) {
        self.acked.fetch_max(position, Ordering::AcqRel);
        let mut skip = self.skip.lock().unwrap_or_else(PoisonError::into_inner);
        self.apply(&mut skip);
    }

    /// Records that everything from `after` to `to` was consumed without being
    /// shipped (filtered out), `after` being the end of the last event shipped
    /// before: the position moves to `to` as soon as it reaches `after`, now if it
    /// already has. Calls come in position order (`after` never decreases).
    pub fn skip_to(&self, after: u64, to: u64) {
        let mut skip = self.skip.lock().unwrap_or_else(PoisonError::into_inner);
        *skip = match *skip {
            // The new run starts inside (or right at the end of) the pending one:
            // one run, still waiting for the first `after`.
            Some((a, t)) if after <= t => Some((a, t.max(to))),
            // Reaching `after` passes the pending run anyway.
            _ => Some((after, to)),
        };
        self.apply(&mut skip);
    }

    fn apply(&self, skip: &mut Option<(u64, u64)>) {
        if let Some((after, to)) = *skip
            && self.acked.load(Ordering::Acquire) >= after
        {
            self.acked.fetch_max(to, Ordering::AcqRel);
            *skip = None;
        }
    }

    /// Moves the position to exactly `position`, for a source that restarted from an
    /// earlier point (a truncated file read again from zero); a pending skip belongs
    /// to the old content and is forgotten.
    pub fn reset(&self, position: u64) {
        let mut skip = self.skip.lock().unwrap_or_else(PoisonError::into_inner);
        *skip = None;
        self.acked.store(position, Ordering::Release);
    }
}

/// An event on its way through the agent, with the source position it completes.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The event.
    pub body: Body,
    /// The kind of source that read it, for the per-source accounting.
    pub source: Source,
    /// For sources with checkpoints: the progress to advance once the event is
    /// acknowledged, and the position just past the event.
    pub ack: Option<(Arc<SourceProgress>, u64)>,
}

/// The event an envelope carries.
#[derive(Debug, Clone)]
pub enum Body {
    /// Already in its wire encoding (`payload::encode_event`'s bytes): what the file
    /// source ships, so a line costs one exact-size allocation on its way through
    /// the buffer and the batcher only copies it.
    Encoded(Vec<u8>),
    /// An event to encode when it is batched (boxed: few, and it keeps the buffer's
    /// slots small).
    Event(Box<Event>),
}

impl Envelope {
    /// An event whose delivery nothing waits on (metrics).
    pub fn untracked(source: Source, event: Event) -> Envelope {
        Envelope {
            body: Body::Event(Box::new(event)),
            source,
            ack: None,
        }
    }

    /// Appends the event's wire encoding to a batch's payload.
    pub fn encode_into(&self, payload: &mut Vec<u8>) {
        match &self.body {
            Body::Encoded(bytes) => payload.extend_from_slice(bytes),
            Body::Event(event) => encode_event(event, payload),
        }
    }

    /// The event itself, decoded if it travels encoded (tests and diagnostics).
    pub fn to_event(&self) -> Result<Event, PayloadError> {
        match &self.body {
            Body::Encoded(bytes) => {
                let mut events = decode_events(bytes, 1)?;
                Ok(events.swap_remove(0))
            }
            Body::Event(event) => Ok(Event::clone(event)),
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
    fn envelopes_stay_small() {
        // Every slot of the ring buffer holds one: 168 bytes when events were inline.
        assert!(std::mem::size_of::<Envelope>() <= 48);
    }

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

    #[test]
    fn a_skip_waits_for_what_was_shipped_before_it() {
        let p = SourceProgress::new(0);
        // Shipped [0, 10), filtered [10, 30): nothing moves before 10 is acked.
        p.skip_to(10, 30);
        assert_eq!(p.acked(), 0);
        p.advance(5);
        assert_eq!(p.acked(), 5);
        // A second filtered run right after the first joins it.
        p.skip_to(10, 40);
        p.advance(10);
        assert_eq!(p.acked(), 40);
        // Nothing in flight: the skip applies at once.
        p.skip_to(40, 50);
        assert_eq!(p.acked(), 50);
        // Shipped [50, 60), filtered [60, 70), shipped [70, 80), filtered [80, 90):
        // the later run replaces the earlier, which reaching 80 passes anyway.
        p.skip_to(60, 70);
        p.skip_to(80, 90);
        p.advance(60);
        assert_eq!(p.acked(), 60);
        p.advance(80);
        assert_eq!(p.acked(), 90);
        // A reset forgets a pending skip of the old content.
        p.skip_to(100, 200);
        p.reset(0);
        p.advance(100);
        assert_eq!(p.acked(), 100);
    }
}
