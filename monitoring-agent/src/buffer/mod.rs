//! The ring buffer between sources and the batcher: bounded, lock-free, with an
//! explicit policy for when it is full.
//!
//! Events live in a lock-free queue bounded at `[buffer] max_events` ([`bounded`]),
//! so memory is bounded no matter how slow the collector is. What happens when it is full
//! is `[buffer] when_full`:
//!
//! - `block` (default): a sender waits for room. For tailed files this is the
//!   backpressure DESIGN.md asks for: the tailer stops reading and the data stays on
//!   disk, where it is safe.
//! - `drop_oldest`: the oldest buffered event is evicted to make room.
//! - `drop_newest`: the new event is refused.
//!
//! Every event a source hands over (accepted, or dropped by the policy) is counted in
//! `monitoring_agent_events_read_total{source}`, and every drop in
//! `monitoring_agent_events_dropped_total{reason, source}` under the source of the
//! event dropped (under `drop_oldest`, the evicted one's). Dropping a
//! tracked event (one with a checkpoint position) loses that line for good once a later
//! one is acknowledged: that is what the drop policies mean, and why `block` is the
//! default.
//!
//! Sources that must never wait (host metrics: a stalled sampler is worse than a
//! missing sample) use [`RingBuffer::try_send_all`], which under `block` refuses a
//! whole sample rather than wait; its events count as read and as dropped
//! (`sample_skipped`), and the caller counts the skipped sample.
//!
//! The `monitoring_agent_buffer_events` gauge is refreshed by the consumer after
//! every chunk it takes (so it reads 0 once the buffer is drained), by a sender that
//! finds the buffer full, and by every 64th accepted event: reading the queue's
//! length on every push was most of a push's cost.
//!
//! Wakeups use `tokio::sync::Notify` with the register-then-recheck pattern, so none
//! is lost between a failed push or pop and going to sleep. [`RingBuffer::close`] ends
//! the stream: senders get [`Closed`], and the receiver drains what is left and then
//! sees the end.

mod bounded;
pub mod disk;

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use self::bounded::Bounded;
use crate::pipeline::{Closed, Envelope, EventOutput};
use crate::telemetry::{BufferMetrics, DropReason};

/// What the buffer does with a new event when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room (backpressure to the sources).
    #[default]
    Block,
    /// Evict the oldest buffered event.
    DropOldest,
    /// Refuse the new event.
    DropNewest,
}

/// Result of [`RingBuffer::try_send_all`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrySendOutcome {
    /// Every event was handed to the buffer (under a drop policy some may have been
    /// dropped by that policy and counted).
    Sent,
    /// Under `block`, there was no room for the whole sample; nothing was sent.
    Skipped,
    /// Under `block`, another sender took the room between the check and the pushes:
    /// this many events at the end did not fit and were not sent.
    Partial(usize),
}

struct Shared {
    queue: Bounded<Envelope>,
    policy: WhenFull,
    closed: AtomicBool,
    /// Signalled when an event was pushed (or on close); one consumer waits on it.
    not_empty: Notify,
    /// Signalled when events were popped (or on close); blocked senders wait on it.
    not_full: Notify,
    metrics: BufferMetrics,
}

/// A handle to the ring buffer. Clones share one buffer; there must be one consumer
/// (the batcher) calling [`RingBuffer::recv_many`].
#[derive(Clone)]
pub struct RingBuffer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RingBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingBuffer")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("policy", &self.shared.policy)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl RingBuffer {
    /// A buffer of `capacity` events (at least 1) with the given policy.
    pub fn new(capacity: usize, policy: WhenFull, metrics: BufferMetrics) -> RingBuffer {
        let capacity = capacity.max(1);
        metrics
            .capacity_events
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
        RingBuffer {
            shared: Arc::new(Shared {
                queue: Bounded::new(capacity),
                policy,
                closed: AtomicBool::new(false),
                not_empty: Notify::new(),
                not_full: Notify::new(),
                metrics,
            }),
        }
    }

    /// Events buffered now.
    pub fn len(&self) -> usize {
        self.shared.queue.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.shared.queue.is_empty()
    }

    /// Capacity in events.
    pub fn capacity(&self) -> usize {
        self.shared.queue.capacity()
    }

    /// The `when_full` policy.
    pub fn policy(&self) -> WhenFull {
        self.shared.policy
    }

    /// Whether [`RingBuffer::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Ends the stream: senders get [`Closed`] from now on (blocked ones wake up), and
    /// the consumer receives what is left, then `None`.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.not_full.notify_waiters();
        self.shared.not_empty.notify_one();
    }

    /// Hands over one event, applying the policy; under `block` waits for room.
    pub async fn send(&self, envelope: Envelope) -> Result<(), Closed> {
        let s = &*self.shared;
        let mut envelope = match self.push(envelope)? {
            None => return Ok(()),
            Some(back) => back,
        };
        // Only `block` gets here: the queue was full.
        s.metrics.blocked_sends.inc();
        self.update_gauge();
        loop {
            let mut notified = pin!(s.not_full.notified());
            notified.as_mut().enable();
            // Retry after registering, so a pop between the failed push and the
            // registration is not missed.
            envelope = match self.push(envelope)? {
                None => return Ok(()),
                Some(back) => back,
            };
            notified.await;
        }
    }

    /// Tries to push; applies drop policies; under `block` gives the envelope back
    /// when the queue is full.
    fn push(&self, envelope: Envelope) -> Result<Option<Envelope>, Closed> {
        let s = &*self.shared;
        if s.closed.load(Ordering::Acquire) {
            return Err(Closed);
        }
        let source = envelope.source;
        match s.policy {
            WhenFull::Block => {
                if let Err(back) = s.queue.push(envelope) {
                    return Ok(Some(back));
                }
            }
            WhenFull::DropNewest => {
                if s.queue.push(envelope).is_err() {
                    s.metrics.read.inc(source);
                    s.metrics.dropped.add(DropReason::DropNewest, source, 1);
                    self.update_gauge();
                    return Ok(None);
                }
            }
            WhenFull::DropOldest => s.queue.force_push(envelope, |evicted| {
                s.metrics
                    .dropped
                    .add(DropReason::DropOldest, evicted.source, 1);
            }),
        }
        s.metrics.read.inc(source);
        let accepted = s.metrics.received_events.inc();
        // Not per event: the length reads the consumer's cache line (module doc).
        if accepted.is_multiple_of(GAUGE_EVERY) {
            self.update_gauge();
        }
        s.not_empty.notify_one();
        Ok(None)
    }

    fn update_gauge(&self) {
        let s = &*self.shared;
        s.metrics.events.set(len_i64(s.queue.len()));
    }

    /// Hands over a whole sample without ever waiting.
    ///
    /// Under `block`, a sample that does not fit in the free room is skipped whole
    /// (nothing is sent); under the drop policies each event is pushed with the
    /// policy applied. Events that did not fit count as read and as dropped
    /// (`sample_skipped`); the caller counts skipped samples.
    pub fn try_send_all(&self, envelopes: Vec<Envelope>) -> Result<TrySendOutcome, Closed> {
        let s = &*self.shared;
        if s.closed.load(Ordering::Acquire) {
            return Err(Closed);
        }
        if s.policy == WhenFull::Block && self.capacity() - self.len() < envelopes.len() {
            self.skipped(&envelopes);
            return Ok(TrySendOutcome::Skipped);
        }
        let total = envelopes.len();
        let mut rest = envelopes.into_iter();
        let mut i = 0;
        while let Some(envelope) = rest.next() {
            if let Some(back) = self.push(envelope)? {
                self.skipped(std::slice::from_ref(&back));
                self.skipped(rest.as_slice());
                return Ok(TrySendOutcome::Partial(total - i));
            }
            i += 1;
        }
        Ok(TrySendOutcome::Sent)
    }

    /// Counts events a non-blocking sender gave up on as read and dropped.
    fn skipped(&self, envelopes: &[Envelope]) {
        let m = &self.shared.metrics;
        for e in envelopes {
            m.read.inc(e.source);
            m.dropped.add(DropReason::SampleSkipped, e.source, 1);
        }
    }

    /// Waits until at least one event is buffered, then moves up to `max` of them into
    /// `out`. Returns the number moved, or `None` once the buffer is closed and empty.
    ///
    /// Cancel-safe: events are only taken in the poll that returns them.
    pub async fn recv_many(&self, out: &mut Vec<Envelope>, max: usize) -> Option<usize> {
        let s = &*self.shared;
        let max = max.max(1);
        loop {
            if let Some(n) = self.pop_into(out, max) {
                return Some(n);
            }
            let mut notified = pin!(s.not_empty.notified());
            notified.as_mut().enable();
            if let Some(n) = self.pop_into(out, max) {
                return Some(n);
            }
            if s.closed.load(Ordering::Acquire) {
                // A sender that saw the buffer open may still have pushed after our pop.
                return self.pop_into(out, max);
            }
            notified.await;
        }
    }

    fn pop_into(&self, out: &mut Vec<Envelope>, max: usize) -> Option<usize> {
        let s = &*self.shared;
        let mut n = 0;
        while n < max {
            match s.queue.pop() {
                Some(e) => {
                    out.push(e);
                    n += 1;
                }
                None => break,
            }
        }
        if n == 0 {
            return None;
        }
        self.update_gauge();
        // One wakeup per chunk, not per event.
        s.not_full.notify_waiters();
        Some(n)
    }
}

/// Pushes between two refreshes of the `events` gauge by senders.
const GAUGE_EVERY: u64 = 64;

fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl EventOutput for RingBuffer {
    async fn send(&self, envelope: Envelope) -> Result<(), Closed> {
        RingBuffer::send(self, envelope).await
    }
}

#[cfg(test)]
mod tests;
