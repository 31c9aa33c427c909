//! The window of unacknowledged batches, and the rule that makes checkpoints honest.
//!
//! Batches enter at the back in sequence order and leave only from the front, and only
//! once done (acknowledged, or rejected for good). A batch's marks are applied when it
//! leaves, so a source's acknowledged position moves only when every batch before it
//! is done, whatever order the acknowledgements arrive in.
//!
//! A batch is named by (stream id, sequence): with the disk spool, batches of an
//! earlier run (another stream id) are resent before this run's, and sequences may
//! have gaps (segments dropped when the spool was full), so neither one stream nor
//! contiguous sequences are assumed.
//!
//! This is pure bookkeeping with no I/O: the connection loop asks it what to send and
//! tells it what came back.

use std::collections::VecDeque;
use std::time::Duration;

use monitoring_common::protocol::{Ack, AckStatus};
use tokio::time::Instant;

use crate::pipeline::{Batch, SourceCounts};

/// Shortest and longest delay honoured from a retry-later acknowledgement: a collector
/// answering 0 must not make the agent spin, and a huge value must not park a batch
/// for a day.
const MIN_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting to be written on the current connection.
    Unsent,
    /// Written; waiting for its acknowledgement.
    Sent,
    /// The collector asked for it again at this time.
    RetryAt(Instant),
    /// Acknowledged or rejected: finished.
    Done,
}

#[derive(Debug)]
struct Entry {
    batch: Batch,
    state: State,
    /// Times written so far.
    sends: u32,
    /// When it was last written.
    sent_at: Option<Instant>,
}

/// Why a batch is written again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// The collector answered retry-later.
    RetryLater,
    /// The connection was lost before its acknowledgement.
    Reconnect,
}

impl Resend {
    /// The `reason` label of `monitoring_agent_transport_resent_batches_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resend::RetryLater => "retry_later",
            Resend::Reconnect => "reconnect",
        }
    }
}

/// A batch to write now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Its stream id.
    pub stream_id: u64,
    /// Its sequence.
    pub sequence: u64,
    /// Why it is written again, if it was written before.
    pub resend: Option<Resend>,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, PartialEq)]
pub enum AckOutcome {
    /// The batch is committed; `latency` since it was last sent.
    Committed {
        /// Events in the batch.
        events: u32,
        /// Those events per kind of source.
        sources: SourceCounts,
        /// Time since it was last written.
        latency: Option<Duration>,
    },
    /// The batch will be resent at the given time.
    RetryScheduled {
        /// Its sequence.
        sequence: u64,
        /// The collector's reason.
        reason: String,
    },
    /// The batch was refused for good and counts as dropped.
    Rejected {
        /// Its sequence.
        sequence: u64,
        /// Events in it.
        events: u32,
        /// Those events per kind of source.
        sources: SourceCounts,
        /// The collector's reason.
        reason: String,
    },
    /// The acknowledgement names no batch in the window (another stream, or a batch
    /// already finished): ignored.
    Unknown,
}

/// The bounded window of batches sent and not yet finished.
#[derive(Debug)]
pub struct Window {
    entries: VecDeque<Entry>,
    max: usize,
}

impl Window {
    /// A window of at most `max` batches (at least 1).
    pub fn new(max: usize) -> Window {
        Window {
            entries: VecDeque::with_capacity(max.max(1)),
            max: max.max(1),
        }
    }

    /// Batches in the window.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether another batch may enter.
    pub fn has_room(&self) -> bool {
        self.entries.len() < self.max
    }

    /// Events in unfinished batches.
    pub fn pending_events(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.state != State::Done)
            .map(|e| u64::from(e.batch.event_count))
            .sum()
    }

    /// Adds a batch to the back, unsent.
    pub fn push(&mut self, batch: Batch) {
        self.entries.push_back(Entry {
            batch,
            state: State::Unsent,
            sends: 0,
            sent_at: None,
        });
    }

    /// After a disconnect: everything unfinished must be written again, in order.
    pub fn reset_for_reconnect(&mut self) {
        for e in &mut self.entries {
            if e.state != State::Done {
                e.state = State::Unsent;
            }
        }
    }

    /// The batches due now (unsent, or whose retry time has come), in order.
    pub fn due(&self, now: Instant) -> Vec<Due> {
        self.entries
            .iter()
            .filter_map(|e| {
                let resend = match e.state {
                    State::Unsent if e.sends == 0 => None,
                    State::Unsent => Some(Resend::Reconnect),
                    State::RetryAt(t) if t <= now => Some(Resend::RetryLater),
                    State::RetryAt(_) | State::Sent | State::Done => return None,
                };
                Some(Due {
                    stream_id: e.batch.stream_id,
                    sequence: e.batch.sequence,
                    resend,
                })
            })
            .collect()
    }

    /// The earliest retry time among batches waiting for one.
    pub fn next_retry(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter_map(|e| match e.state {
                State::RetryAt(t) => Some(t),
                _ => None,
            })
            .min()
    }

    /// The batch with this stream id and sequence, if in the window.
    pub fn batch(&self, stream_id: u64, sequence: u64) -> Option<&Batch> {
        self.index(stream_id, sequence)
            .map(|i| &self.entries[i].batch)
    }

    /// Records that the batch was written now.
    pub fn mark_sent(&mut self, stream_id: u64, sequence: u64, now: Instant) {
        if let Some(i) = self.index(stream_id, sequence) {
            let e = &mut self.entries[i];
            e.state = State::Sent;
            e.sends += 1;
            e.sent_at = Some(now);
        }
    }

    fn index(&self, stream_id: u64, sequence: u64) -> Option<usize> {
        let is = |e: &Entry| e.batch.stream_id == stream_id && e.batch.sequence == sequence;
        // Usually one stream with contiguous sequences: guess the place from the
        // front, and search the (small, bounded) window only when the guess misses.
        let first = self.entries.front()?.batch.sequence;
        let guess = sequence
            .checked_sub(first)
            .and_then(|d| usize::try_from(d).ok())
            .filter(|&i| self.entries.get(i).is_some_and(is));
        guess.or_else(|| self.entries.iter().position(is))
    }

    /// Applies an acknowledgement.
    pub fn on_ack(&mut self, ack: &Ack, now: Instant) -> AckOutcome {
        let Some(i) = self.index(ack.stream_id, ack.sequence) else {
            return AckOutcome::Unknown;
        };
        let e = &mut self.entries[i];
        if e.state == State::Done {
            return AckOutcome::Unknown;
        }
        match ack.status {
            AckStatus::Ok => {
                e.state = State::Done;
                AckOutcome::Committed {
                    events: e.batch.event_count,
                    sources: e.batch.sources,
                    latency: e.sent_at.map(|t| now.saturating_duration_since(t)),
                }
            }
            AckStatus::RetryLater => {
                let delay = Duration::from_millis(u64::from(ack.retry_after_ms))
                    .clamp(MIN_RETRY, MAX_RETRY);
                e.state = State::RetryAt(now + delay);
                AckOutcome::RetryScheduled {
                    sequence: ack.sequence,
                    reason: ack.reason.clone(),
                }
            }
            AckStatus::Rejected => {
                e.state = State::Done;
                AckOutcome::Rejected {
                    sequence: ack.sequence,
                    events: e.batch.event_count,
                    sources: e.batch.sources,
                    reason: ack.reason.clone(),
                }
            }
        }
    }

    /// Removes the finished batches at the front and applies their marks, in order.
    /// Returns how many left the window.
    pub fn release_done(&mut self) -> usize {
        let mut n = 0;
        while self.entries.front().is_some_and(|e| e.state == State::Done) {
            if let Some(e) = self.entries.pop_front() {
                e.batch.apply_marks();
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use std::sync::Arc;

    use tokio_tungstenite::tungstenite::Bytes;

    use super::*;
    use crate::pipeline::SourceProgress;

    fn batch(sequence: u64, progress: &Arc<SourceProgress>, mark: u64) -> Batch {
        Batch {
            stream_id: 7,
            sequence,
            event_count: 2,
            uncompressed_bytes: 10,
            frame: Bytes::from_static(b"frame"),
            marks: vec![(progress.clone(), mark)],
            sources: SourceCounts::default(),
        }
    }

    #[test]
    fn marks_apply_only_in_order() {
        let p = SourceProgress::new(0);
        let mut w = Window::new(8);
        let now = Instant::now();
        for s in 1..=3 {
            w.push(batch(s, &p, s * 100));
            w.mark_sent(7, s, now);
        }
        assert!(matches!(
            w.on_ack(&Ack::ok(7, 3), now),
            AckOutcome::Committed { .. }
        ));
        assert!(matches!(
            w.on_ack(&Ack::ok(7, 2), now),
            AckOutcome::Committed { .. }
        ));
        assert_eq!(w.release_done(), 0);
        assert_eq!(p.acked(), 0, "a gap at the front holds everything back");
        w.on_ack(&Ack::ok(7, 1), now);
        assert_eq!(w.release_done(), 3);
        assert_eq!(p.acked(), 300);
        assert!(w.is_empty());
    }

    #[test]
    fn rejected_batches_finish_and_release_their_marks() {
        let p = SourceProgress::new(0);
        let mut w = Window::new(8);
        let now = Instant::now();
        w.push(batch(1, &p, 10));
        w.mark_sent(7, 1, now);
        let out = w.on_ack(&Ack::rejected(7, 1, "bad"), now);
        assert!(matches!(out, AckOutcome::Rejected { events: 2, .. }));
        assert_eq!(w.release_done(), 1);
        assert_eq!(p.acked(), 10);
    }

    #[test]
    fn retry_later_schedules_a_resend() {
        let p = SourceProgress::new(0);
        let mut w = Window::new(8);
        let now = Instant::now();
        w.push(batch(1, &p, 10));
        assert_eq!(
            w.due(now),
            vec![Due {
                stream_id: 7,
                sequence: 1,
                resend: None
            }]
        );
        w.mark_sent(7, 1, now);
        assert!(w.due(now).is_empty());
        w.on_ack(&Ack::retry_later(7, 1, 200, "busy"), now);
        assert_eq!(w.next_retry(), Some(now + Duration::from_millis(200)));
        assert!(w.due(now + Duration::from_millis(199)).is_empty());
        assert_eq!(
            w.due(now + Duration::from_millis(200)),
            vec![Due {
                stream_id: 7,
                sequence: 1,
                resend: Some(Resend::RetryLater)
            }]
        );
        assert_eq!(w.release_done(), 0);
    }

    #[test]
    fn unknown_and_duplicate_acks_are_ignored() {
        let p = SourceProgress::new(0);
        let mut w = Window::new(2);
        let now = Instant::now();
        w.push(batch(5, &p, 10));
        w.push(batch(6, &p, 20));
        assert!(!w.has_room());
        assert_eq!(w.on_ack(&Ack::ok(8, 5), now), AckOutcome::Unknown);
        assert_eq!(w.on_ack(&Ack::ok(7, 4), now), AckOutcome::Unknown);
        assert_eq!(w.on_ack(&Ack::ok(7, 9), now), AckOutcome::Unknown);
        assert!(matches!(
            w.on_ack(&Ack::ok(7, 6), now),
            AckOutcome::Committed { .. }
        ));
        assert_eq!(w.on_ack(&Ack::ok(7, 6), now), AckOutcome::Unknown);
    }

    #[test]
    fn reconnect_resends_everything_unfinished_in_order() {
        let p = SourceProgress::new(0);
        let mut w = Window::new(8);
        let now = Instant::now();
        for s in 1..=4 {
            w.push(batch(s, &p, s));
            w.mark_sent(7, s, now);
        }
        w.on_ack(&Ack::ok(7, 2), now);
        w.on_ack(&Ack::retry_later(7, 3, 60_000, "busy"), now);
        w.reset_for_reconnect();
        let due: Vec<(u64, Option<Resend>)> =
            w.due(now).iter().map(|d| (d.sequence, d.resend)).collect();
        let again = Some(Resend::Reconnect);
        assert_eq!(due, vec![(1, again), (3, again), (4, again)]);
        assert_eq!(w.pending_events(), 6);
    }

    #[test]
    fn batches_of_an_earlier_stream_and_with_gaps_are_matched() {
        // A spool resends an earlier run's batches (stream 3, with a gap where a
        // segment was dropped) before this run's (stream 7).
        let p = SourceProgress::new(0);
        let mut w = Window::new(8);
        let now = Instant::now();
        let ids = [(3, 10), (3, 11), (3, 15), (7, 1), (7, 2)];
        for (i, &(stream, seq)) in ids.iter().enumerate() {
            let mut b = batch(seq, &p, (i as u64 + 1) * 10);
            b.stream_id = stream;
            w.push(b);
        }
        let due: Vec<(u64, u64)> = w
            .due(now)
            .iter()
            .map(|d| (d.stream_id, d.sequence))
            .collect();
        assert_eq!(due, ids.to_vec());
        for &(stream, seq) in &ids {
            assert_eq!(w.batch(stream, seq).unwrap().stream_id, stream);
            w.mark_sent(stream, seq, now);
        }
        assert_eq!(w.on_ack(&Ack::ok(7, 11), now), AckOutcome::Unknown);
        for &(stream, seq) in ids.iter().rev() {
            assert!(matches!(
                w.on_ack(&Ack::ok(stream, seq), now),
                AckOutcome::Committed { .. }
            ));
        }
        assert_eq!(w.release_done(), 5);
        assert_eq!(p.acked(), 50);
    }
}
