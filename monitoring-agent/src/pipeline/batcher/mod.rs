//! The batcher: takes envelopes from the ring buffer and turns them into compressed
//! frames, one per batch, for the transport.
//!
//! Each event is encoded into the payload as soon as it is taken, so a batch never
//! holds decoded events and the envelope (with its event) is freed at once. A batch is
//! closed by whichever comes first: `max_batch_events` events, `max_batch_bytes`
//! uncompressed bytes (an event that would cross the limit starts the next batch; an
//! event larger than the limit travels alone), `flush_interval` after the batch's
//! first event, or as soon as delivery is idle ([`DeliveryIdle`]: connected, nothing
//! unacknowledged), so that a quiet agent's lines do not wait out the interval.
//! Closing the buffer flushes what is left.
//!
//! Each batch records its ack marks: for every [`SourceProgress`] with events in it,
//! the largest position of those events. The transport applies them once the batch,
//! and every batch before it, is acknowledged.
//!
//! Each batch also counts its events per kind of source ([`SourceCounts`], one array
//! increment per event), so that sends, acknowledgements and drops of the whole batch
//! are attributed to the sources of its events.

use std::sync::Arc;
use std::time::Duration;

use monitoring_common::protocol::frame::encode_frame_with;
use monitoring_common::protocol::{Codec, Compressor};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Bytes;
use tracing::{debug, warn};

use super::{DeliveryIdle, Envelope, SourceCounts, SourceProgress};
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
    /// The codec's level (`None`: its default); see [`Codec::levels`].
    pub compression_level: Option<i32>,
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
    /// Its events per kind of source; they add up to `event_count`.
    pub sources: SourceCounts,
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
    Idle,
    Shutdown,
}

impl FlushReason {
    fn as_str(self) -> &'static str {
        match self {
            FlushReason::Events => "events",
            FlushReason::Bytes => "bytes",
            FlushReason::Interval => "interval",
            FlushReason::Idle => "idle",
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
    sources: SourceCounts,
    marks: Vec<(Arc<SourceProgress>, u64)>,
    /// Index in `marks` of the last source seen: events of one source come in runs.
    last_mark: Option<usize>,
    deadline: Option<Instant>,
    /// Kept for the batcher's life: zstd reuses its context from batch to batch.
    compressor: Compressor,
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
        envelope.encode_into(&mut self.payload);
        if self.payload.len() > self.config.max_batch_bytes && !self.is_empty() {
            // This event would cross the limit: close the batch without it and let it
            // start the next one.
            let tail = self.payload.split_off(before);
            out.push((self.take(), FlushReason::Bytes));
            self.payload = tail;
            self.deadline = Some(Instant::now() + self.config.flush_interval);
        }
        self.count += 1;
        self.sources.add(envelope.source);
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
        let frame = encode_frame_with(
            &mut self.compressor,
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
            sources: std::mem::take(&mut self.sources),
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
    idle: Arc<DeliveryIdle>,
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
        FlushReason::Idle,
        FlushReason::Shutdown,
    ] {
        metrics
            .batches
            .get_or_create(&[("reason", reason.as_str())])
            .inc_by(0);
    }
    let compressor =
        Compressor::new(config.codec, config.compression_level).unwrap_or_else(|error| {
            // The configuration's validation refuses such levels; this is the fallback.
            warn!(message = "Compression level refused; the codec's default is used.", %error);
            Compressor::new(config.codec, None).expect("the default level is valid")
        });
    let mut open = Open {
        config,
        next_sequence: config.first_sequence,
        payload: Vec::with_capacity(config.max_batch_bytes.min(1 << 20)),
        count: 0,
        sources: SourceCounts::default(),
        marks: Vec::new(),
        last_mark: None,
        deadline: None,
        compressor,
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
                () = idle.wait() => Some(0),
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
        } else if !open.is_empty() && idle.is_idle() {
            closed.push((open.take(), FlushReason::Idle));
        }
        if !closed.is_empty() {
            // Until the transport has acknowledged these, the next batch fills up.
            idle.set(false);
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
mod tests;
