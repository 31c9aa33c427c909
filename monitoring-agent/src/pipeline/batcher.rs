//! The batcher: takes envelopes from the ring buffer and turns them into compressed
//! frames, one per batch, for the transport.
//!
//! Each event is encoded into the payload as soon as it is taken, so a batch never
//! holds decoded events and the envelope (with its event) is freed at once. A batch is
//! closed by whichever comes first: `max_batch_events` events, `max_batch_bytes`
//! uncompressed bytes (an event that would cross the limit starts the next batch; an
//! event larger than the limit travels alone), or `flush_interval` after the batch's
//! first event. Closing the buffer flushes what is left.
//!
//! Each batch records its ack marks: for every [`SourceProgress`] with events in it,
//! the largest position of those events. The transport applies them once the batch,
//! and every batch before it, is acknowledged.

use std::sync::Arc;
use std::time::Duration;

use monitoring_common::protocol::Codec;
use monitoring_common::protocol::frame::encode_frame;
use monitoring_common::protocol::payload::encode_event;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Bytes;
use tracing::debug;

use super::{Envelope, SourceProgress};
use crate::buffer::RingBuffer;
use crate::telemetry::BatcherMetrics;

/// How the batcher cuts and encodes batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatcherConfig {
    /// Most events in one batch (at least 1).
    pub max_batch_events: usize,
    /// Uncompressed payload bytes at which a batch is closed.
    pub max_batch_bytes: usize,
    /// Longest a batch stays open after its first event.
    pub flush_interval: Duration,
    /// Payload compression.
    pub codec: Codec,
    /// The stream id of this agent process, in every frame header.
    pub stream_id: u64,
    /// Sequence number of the first batch; each next batch has one more.
    pub first_sequence: u64,
}

/// One encoded batch on its way to the collector.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Stream id in the frame header.
    pub stream_id: u64,
    /// Sequence number in the frame header.
    pub sequence: u64,
    /// Events in the batch.
    pub event_count: u32,
    /// Payload bytes before compression.
    pub uncompressed_bytes: usize,
    /// The complete frame (header and compressed payload), ready to send and resend.
    pub frame: Bytes,
    /// Per source with events in this batch, the position just past its last one.
    pub marks: Vec<(Arc<SourceProgress>, u64)>,
}

impl Batch {
    /// Moves each source's acknowledged position up to this batch's mark. Call only
    /// when this batch and every batch before it is done.
    pub fn apply_marks(&self) {
        for (progress, position) in &self.marks {
            progress.advance(*position);
        }
    }
}

/// What closed a batch; the `reason` label of `monitoring_agent_batches_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlushReason {
    Events,
    Bytes,
    Interval,
    Shutdown,
}

impl FlushReason {
    fn as_str(self) -> &'static str {
        match self {
            FlushReason::Events => "events",
            FlushReason::Bytes => "bytes",
            FlushReason::Interval => "interval",
            FlushReason::Shutdown => "shutdown",
        }
    }
}

/// The transport is gone; nothing more can be sent.
struct OutputClosed;

/// The batch being filled.
struct Open {
    config: BatcherConfig,
    next_sequence: u64,
    payload: Vec<u8>,
    count: u32,
    marks: Vec<(Arc<SourceProgress>, u64)>,
    /// Index in `marks` of the last source seen: events of one source come in runs.
    last_mark: Option<usize>,
    deadline: Option<Instant>,
    metrics: BatcherMetrics,
}

impl Open {
    fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn mark(&mut self, ack: Option<(Arc<SourceProgress>, u64)>) {
        let Some((progress, position)) = ack else {
            return;
        };
        let hit = self
            .last_mark
            .filter(|&i| Arc::ptr_eq(&self.marks[i].0, &progress))
            .or_else(|| {
                self.marks
                    .iter()
                    .position(|(p, _)| Arc::ptr_eq(p, &progress))
            });
        match hit {
            Some(i) => {
                let m = &mut self.marks[i].1;
                *m = (*m).max(position);
                self.last_mark = Some(i);
            }
            None => {
                self.marks.push((progress, position));
                self.last_mark = Some(self.marks.len() - 1);
            }
        }
    }

    /// Encodes one envelope; returns the batches it closed (at most two).
    fn add(&mut self, envelope: Envelope, out: &mut Vec<(Batch, FlushReason)>) {
        if self.is_empty() {
            self.deadline = Some(Instant::now() + self.config.flush_interval);
        }
        let before = self.payload.len();
        encode_event(&envelope.event, &mut self.payload);
        if self.payload.len() > self.config.max_batch_bytes && !self.is_empty() {
            // This event would cross the limit: close the batch without it and let it
            // start the next one.
            let tail = self.payload.split_off(before);
            out.push((self.take(), FlushReason::Bytes));
            self.payload = tail;
            self.deadline = Some(Instant::now() + self.config.flush_interval);
        }
        self.count += 1;
        self.mark(envelope.ack);
        if self.payload.len() >= self.config.max_batch_bytes {
            out.push((self.take(), FlushReason::Bytes));
        } else if self.count as usize >= self.config.max_batch_events {
            out.push((self.take(), FlushReason::Events));
        }
    }

    /// Closes the open batch into a frame.
    fn take(&mut self) -> Batch {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let frame = encode_frame(
            self.config.codec,
            self.config.stream_id,
            sequence,
            self.count,
            &self.payload,
        );
        let batch = Batch {
            stream_id: self.config.stream_id,
            sequence,
            event_count: self.count,
            uncompressed_bytes: self.payload.len(),
            frame: Bytes::from(frame),
            marks: std::mem::take(&mut self.marks),
        };
        self.payload.clear();
        // A batch far over the limit (one huge event) should not pin its allocation.
        if self.payload.capacity() > self.config.max_batch_bytes.saturating_mul(2) {
            self.payload = Vec::with_capacity(self.config.max_batch_bytes.min(1 << 20));
        }
        self.count = 0;
        self.last_mark = None;
        self.deadline = None;
        batch
    }

    async fn emit(
        &self,
        batch: Batch,
        reason: FlushReason,
        output: &mpsc::Sender<Batch>,
    ) -> Result<(), OutputClosed> {
        let m = &self.metrics;
        m.batches
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
        m.events.inc_by(u64::from(batch.event_count));
        m.uncompressed_bytes.inc_by(batch.uncompressed_bytes as u64);
        m.compressed_bytes.inc_by(batch.frame.len() as u64);
        debug!(
            message = "Batch closed.",
            sequence = batch.sequence,
            events = batch.event_count,
            bytes = batch.frame.len(),
            reason = reason.as_str(),
        );
        // Waiting here is the backpressure: a full transport window stops the batcher,
        // which lets the buffer fill, which pauses the sources.
        output.send(batch).await.map_err(|_| OutputClosed)
    }
}

/// Runs the batcher until the buffer is closed and drained (flushing the last batch),
/// or until the transport stops taking batches.
pub async fn run(
    buffer: RingBuffer,
    config: BatcherConfig,
    output: mpsc::Sender<Batch>,
    metrics: BatcherMetrics,
) {
    let config = BatcherConfig {
        max_batch_events: config.max_batch_events.clamp(1, u32::MAX as usize),
        max_batch_bytes: config.max_batch_bytes.max(1),
        ..config
    };
    for reason in [
        FlushReason::Events,
        FlushReason::Bytes,
        FlushReason::Interval,
        FlushReason::Shutdown,
    ] {
        metrics
            .batches
            .get_or_create(&[("reason", reason.as_str())])
            .inc_by(0);
    }
    let mut open = Open {
        config,
        next_sequence: config.first_sequence,
        payload: Vec::with_capacity(config.max_batch_bytes.min(1 << 20)),
        count: 0,
        marks: Vec::new(),
        last_mark: None,
        deadline: None,
        metrics,
    };
    let mut chunk = Vec::with_capacity(config.max_batch_events.min(1024));
    let mut closed = Vec::with_capacity(2);
    loop {
        let want = config.max_batch_events - open.count as usize;
        let received = match open.deadline {
            Some(deadline) => tokio::select! {
                r = buffer.recv_many(&mut chunk, want) => r,
                () = tokio::time::sleep_until(deadline) => Some(0),
            },
            None => buffer.recv_many(&mut chunk, want).await,
        };
        let Some(_) = received else {
            if !open.is_empty() {
                let batch = open.take();
                if open
                    .emit(batch, FlushReason::Shutdown, &output)
                    .await
                    .is_err()
                {
                    debug!(message = "The last batch found the transport gone.");
                }
            }
            debug!(message = "Batcher finished: the buffer is closed and drained.");
            return;
        };
        for envelope in chunk.drain(..) {
            open.add(envelope, &mut closed);
        }
        if open.deadline.is_some_and(|d| d <= Instant::now()) {
            closed.push((open.take(), FlushReason::Interval));
        }
        for (batch, reason) in closed.drain(..) {
            if open.emit(batch, reason, &output).await.is_err() {
                debug!(message = "Batcher stopped: the transport is gone.");
                return;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use monitoring_common::Event;
    use monitoring_common::protocol::{Limits, frame::decode_frame};

    use super::*;
    use crate::buffer::WhenFull;
    use crate::telemetry::Telemetry;

    fn config(events: usize, bytes: usize, interval_ms: u64) -> BatcherConfig {
        BatcherConfig {
            max_batch_events: events,
            max_batch_bytes: bytes,
            flush_interval: Duration::from_millis(interval_ms),
            codec: Codec::Lz4,
            stream_id: 42,
            first_sequence: 1,
        }
    }

    fn start(
        config: BatcherConfig,
    ) -> (
        RingBuffer,
        mpsc::Receiver<Batch>,
        tokio::task::JoinHandle<()>,
    ) {
        let t = Telemetry::new();
        let buffer = RingBuffer::new(10_000, WhenFull::Block, t.buffer.clone());
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(run(buffer.clone(), config, tx, t.batcher.clone()));
        (buffer, rx, task)
    }

    fn messages(batch: &Batch) -> Vec<String> {
        let frame = decode_frame(&batch.frame, &Limits::default()).unwrap();
        assert_eq!(frame.header.sequence, batch.sequence);
        assert_eq!(frame.header.event_count, batch.event_count);
        frame
            .events
            .into_iter()
            .map(|e| match e.kind {
                monitoring_common::EventKind::Log(l) => l.message,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn log(i: usize) -> Envelope {
        Envelope::untracked(Event::log(i as i64, "t", format!("line {i}")))
    }

    #[tokio::test]
    async fn flushes_by_event_count_and_on_close() {
        let (buffer, mut rx, task) = start(config(3, 1 << 20, 60_000));
        for i in 0..7 {
            buffer.send(log(i)).await.unwrap();
        }
        buffer.close();
        task.await.unwrap();
        let mut batches = Vec::new();
        while let Some(b) = rx.recv().await {
            batches.push(b);
        }
        let counts: Vec<u32> = batches.iter().map(|b| b.event_count).collect();
        assert_eq!(counts, vec![3, 3, 1]);
        let seqs: Vec<u64> = batches.iter().map(|b| b.sequence).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        let all: Vec<String> = batches.iter().flat_map(messages).collect();
        let expected: Vec<String> = (0..7).map(|i| format!("line {i}")).collect();
        assert_eq!(all, expected);
    }

    #[tokio::test]
    async fn flushes_by_bytes_without_crossing_the_limit() {
        let one = {
            let mut v = Vec::new();
            encode_event(&log(0).event, &mut v);
            v.len()
        };
        // Room for two and a half events: every batch holds exactly two.
        let limit = one * 5 / 2;
        let (buffer, mut rx, task) = start(config(1000, limit, 60_000));
        for i in 0..6 {
            buffer.send(log(i)).await.unwrap();
        }
        buffer.close();
        task.await.unwrap();
        let mut all = Vec::new();
        while let Some(b) = rx.recv().await {
            assert!(
                b.uncompressed_bytes <= limit,
                "{} > {limit}",
                b.uncompressed_bytes
            );
            assert_eq!(b.event_count, 2);
            all.extend(messages(&b));
        }
        assert_eq!(all.len(), 6);
    }

    #[tokio::test]
    async fn an_event_over_the_byte_limit_travels_alone() {
        let (buffer, mut rx, task) = start(config(1000, 16, 60_000));
        buffer.send(log(1)).await.unwrap();
        buffer
            .send(Envelope::untracked(Event::log(2, "t", "x".repeat(100))))
            .await
            .unwrap();
        buffer.close();
        task.await.unwrap();
        let a = rx.recv().await.unwrap();
        let b = rx.recv().await.unwrap();
        assert_eq!((a.event_count, b.event_count), (1, 1));
        assert!(b.uncompressed_bytes > 100);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn flush_interval_starts_at_the_first_event() {
        let (buffer, mut rx, _task) = start(config(1000, 1 << 20, 1000));
        tokio::time::sleep(Duration::from_millis(5_000)).await;
        assert!(rx.try_recv().is_err(), "an empty batch must not be flushed");
        let t0 = Instant::now();
        buffer.send(log(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        buffer.send(log(2)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(590)).await;
        assert!(rx.try_recv().is_err(), "flushed before the interval");
        let batch = rx.recv().await.unwrap();
        assert_eq!(Instant::now() - t0, Duration::from_millis(1000));
        assert_eq!(batch.event_count, 2);
        // The next batch's timer starts at its own first event.
        tokio::time::sleep(Duration::from_millis(3_000)).await;
        let t1 = Instant::now();
        buffer.send(log(3)).await.unwrap();
        let batch = rx.recv().await.unwrap();
        assert_eq!(Instant::now() - t1, Duration::from_millis(1000));
        assert_eq!(batch.sequence, 2);
    }

    #[tokio::test]
    async fn marks_keep_the_largest_position_per_source() {
        let (buffer, mut rx, task) = start(config(1000, 1 << 20, 60_000));
        let a = SourceProgress::new(0);
        let b = SourceProgress::new(0);
        for (p, pos) in [(&a, 10), (&a, 20), (&b, 5), (&a, 30), (&b, 7)] {
            buffer
                .send(Envelope {
                    event: Event::log(0, "f", "l"),
                    ack: Some((p.clone(), pos)),
                })
                .await
                .unwrap();
        }
        buffer.send(log(9)).await.unwrap();
        buffer.close();
        task.await.unwrap();
        let batch = rx.recv().await.unwrap();
        assert_eq!(batch.event_count, 6);
        assert_eq!(batch.marks.len(), 2);
        assert!(Arc::ptr_eq(&batch.marks[0].0, &a) && batch.marks[0].1 == 30);
        assert!(Arc::ptr_eq(&batch.marks[1].0, &b) && batch.marks[1].1 == 7);
        // Nothing moves until the transport says so.
        assert_eq!((a.acked(), b.acked()), (0, 0));
        batch.apply_marks();
        assert_eq!((a.acked(), b.acked()), (30, 7));
    }

    #[tokio::test]
    async fn frames_carry_the_configured_codec_and_stream() {
        for codec in Codec::ALL {
            let (buffer, mut rx, task) = start(BatcherConfig {
                codec,
                ..config(10, 1 << 20, 60_000)
            });
            buffer.send(log(1)).await.unwrap();
            buffer.close();
            task.await.unwrap();
            let batch = rx.recv().await.unwrap();
            let frame = decode_frame(&batch.frame, &Limits::default()).unwrap();
            assert_eq!(frame.header.codec, codec);
            assert_eq!(frame.header.stream_id, 42);
        }
    }
}
