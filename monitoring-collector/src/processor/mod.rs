//! The processor: a pool of worker threads between ingest and storage.
//!
//! Ingest hands each frame (already header-checked) to [`ProcessorHandle::submit`]
//! with the authenticated agent id; a worker decodes the payload, processes each log
//! event ([`parse`]: fields, severity; [`enrich`]: the agent's host and tags as
//! labels) and commits the batch to the store, hands it to the `[[storage.sinks]]`
//! ([`FanOut`]: required sinks written before the answer, best-effort ones queued),
//! then answers on a oneshot channel. Decoding, committing and writing sinks are CPU
//! and disk work, so they run on plain OS threads, never on the async executor.
//!
//! The queue is bounded (`processor.queue_batches`): when it is full, `submit` fails
//! at once and ingest answers retry-later, which slows the agents down instead of
//! growing memory. The pool stops when every handle is dropped and the queue is empty,
//! so batches already queued are still committed and answered during shutdown.

pub mod enrich;
pub mod parse;

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use axum::body::Bytes;
use monitoring_common::config::Problem;
use monitoring_common::protocol::frame::decode_frame;
use monitoring_common::protocol::{FrameError, Limits};
use monitoring_common::{Event, EventKind};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;
use tokio::sync::oneshot;

use self::enrich::Enricher;
use self::parse::Format;
use crate::auth::AgentId;
use crate::storage::sinks::{FanOut, SinkFailure};
use crate::storage::{CommitOutcome, IngestBatch, StorageError, Store};
use crate::telemetry::{Metrics, ReasonLabel, event_kind};

/// `[processor]`: the worker pool.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    /// Worker threads that decode and commit batches. Default: the number of CPUs.
    pub workers: usize,
    /// Batches that may wait for a worker before ingest answers retry-later.
    /// Default 64.
    pub queue_batches: usize,
    /// Parse log lines into fields (JSON, logfmt, syslog, timestamps) and classify
    /// their severity. Default true; false stores lines exactly as they arrive.
    pub parse: bool,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            queue_batches: 64,
            parse: true,
        }
    }
}

impl ProcessorConfig {
    /// Problems with this section; keys are prefixed with `prefix` (e.g. `processor`).
    pub fn validate(&self, prefix: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        if !(1..=1024).contains(&self.workers) {
            problems.push(Problem::new(
                format!("{prefix}.workers"),
                "must be between 1 and 1024",
            ));
        }
        if !(1..=1_000_000).contains(&self.queue_batches) {
            problems.push(Problem::new(
                format!("{prefix}.queue_batches"),
                "must be between 1 and 1000000",
            ));
        }
        problems
    }
}

/// One frame to process.
#[derive(Debug)]
pub struct Job {
    /// The authenticated agent.
    pub agent_id: AgentId,
    /// When the frame arrived, ns since the epoch.
    pub received_ns: i64,
    /// The whole frame, header included.
    pub frame: Bytes,
}

/// What became of a job.
#[derive(Debug)]
pub enum Outcome {
    /// Committed now, or found committed before.
    Stored(CommitOutcome),
    /// The payload does not decode: reject it for good.
    Rejected(FrameError),
    /// The store failed: the agent should retry.
    StoreFailed(StorageError),
    /// The store has it (committed now or before), but a required sink failed:
    /// the agent should retry.
    SinkFailed(CommitOutcome, SinkFailure),
}

/// Why a job could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// `processor.queue_batches` jobs are already waiting.
    #[error("processor queue is full")]
    Full,
    /// The workers have stopped.
    #[error("processor is shutting down")]
    Closed,
}

struct Queued {
    job: Job,
    reply: oneshot::Sender<Outcome>,
}

/// Queues jobs for the pool. Cheap to clone; the pool stops once every clone is dropped.
#[derive(Clone)]
pub struct ProcessorHandle {
    tx: SyncSender<Queued>,
    metrics: Metrics,
}

impl ProcessorHandle {
    /// Queues a job; the receiver yields its outcome. Never waits.
    pub fn submit(&self, job: Job) -> Result<oneshot::Receiver<Outcome>, SubmitError> {
        let (reply, rx) = oneshot::channel();
        // Counted before sending so that a worker's decrement can never come first.
        self.metrics.processor_queue_depth.inc();
        match self.tx.try_send(Queued { job, reply }) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.metrics.processor_queue_depth.dec();
                Err(match e {
                    TrySendError::Full(_) => SubmitError::Full,
                    TrySendError::Disconnected(_) => SubmitError::Closed,
                })
            }
        }
    }
}

/// The worker pool. [`Processor::join`] waits for it to drain and stop.
pub struct Processor {
    workers: Vec<JoinHandle<()>>,
}

/// Why the pool could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start processor worker thread: {0}")]
pub struct SpawnError(#[source] pub std::io::Error);

struct Worker {
    rx: Arc<Mutex<Receiver<Queued>>>,
    store: Arc<dyn Store>,
    fanout: Arc<FanOut>,
    limits: Limits,
    metrics: Metrics,
    parse: bool,
    enricher: Arc<Enricher>,
}

impl Processor {
    /// Starts `config.workers` threads committing to `store` and delivering to
    /// `fanout`; frames are decoded within `limits`.
    pub fn start(
        config: &ProcessorConfig,
        limits: Limits,
        store: Arc<dyn Store>,
        fanout: Arc<FanOut>,
        metrics: Metrics,
    ) -> Result<(Processor, ProcessorHandle), SpawnError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue_batches);
        let rx = Arc::new(Mutex::new(rx));
        let enricher = Arc::new(Enricher::seeded(store.as_ref()));
        let mut workers = Vec::with_capacity(config.workers);
        for i in 0..config.workers.max(1) {
            let worker = Worker {
                rx: Arc::clone(&rx),
                store: Arc::clone(&store),
                fanout: Arc::clone(&fanout),
                limits,
                metrics: metrics.clone(),
                parse: config.parse,
                enricher: Arc::clone(&enricher),
            };
            let handle = std::thread::Builder::new()
                .name(format!("processor-{i}"))
                .spawn(move || worker.run())
                .map_err(SpawnError)?;
            workers.push(handle);
        }
        Ok((Processor { workers }, ProcessorHandle { tx, metrics }))
    }

    /// Waits until every handle is dropped, the queue is drained and the workers
    /// have exited. Blocking: call it from `spawn_blocking`.
    pub fn join(self) {
        for worker in self.workers {
            if worker.join().is_err() {
                tracing::error!(message = "Processor worker thread panicked.");
            }
        }
    }
}

impl Worker {
    fn run(self) {
        loop {
            // Only one idle worker waits on the channel; the others wait on the lock.
            let next = self
                .rx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .recv();
            let Ok(Queued { job, reply }) = next else {
                return;
            };
            self.metrics.processor_queue_depth.dec();
            let agent = job.agent_id.clone();
            // A panic in a decoder or the store must cost one batch (which the agent
            // resends), not a worker.
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| self.handle(job)));
            match outcome {
                // The connection may be gone; its agent resends what was not acked.
                Ok(outcome) => drop(reply.send(outcome)),
                Err(_) => {
                    tracing::error!(message = "Processing a batch panicked; the agent will resend it.", agent_id = %agent);
                }
            }
        }
    }

    fn handle(&self, job: Job) -> Outcome {
        let frame = match decode_frame(&job.frame, &self.limits) {
            Ok(frame) => frame,
            Err(error) => return Outcome::Rejected(error),
        };
        count_by_kind(&self.metrics.events_received, &frame.events);
        let batch = self.process(IngestBatch {
            agent_id: job.agent_id.as_arc(),
            stream_id: frame.header.stream_id,
            sequence: frame.header.sequence,
            received_ns: job.received_ns,
            events: frame.events,
        });
        let started = Instant::now();
        let result = self.store.commit(&batch);
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(error) => return Outcome::StoreFailed(error),
        };
        if outcome == CommitOutcome::Committed {
            self.count_events(&batch);
        }
        if self.fanout.is_empty() {
            return Outcome::Stored(outcome);
        }
        match self.fanout.deliver(&Arc::new(batch), outcome) {
            Ok(()) => Outcome::Stored(outcome),
            Err(failure) => Outcome::SinkFailed(outcome, failure),
        }
    }

    /// The steps between decoding and storage: enrichment, then parsing and
    /// classification of each log event.
    fn process(&self, mut batch: IngestBatch) -> IngestBatch {
        self.enricher.enrich(&batch.agent_id, &mut batch.events);
        if !self.parse {
            return batch;
        }
        // Counted per batch: one label lookup per format seen, not per event.
        let mut counts = [0u64; Format::ALL.len()];
        for event in &mut batch.events {
            if let EventKind::Log(log) = &mut event.kind {
                let format = parse::apply(log, event.timestamp_ns);
                if let Some(i) = Format::ALL.iter().position(|f| *f == format) {
                    counts[i] += 1;
                }
            }
        }
        for (format, n) in Format::ALL.iter().zip(counts) {
            if n > 0 {
                self.metrics
                    .processor_parsed
                    .get_or_create(&[("format", format.as_str())])
                    .inc_by(n);
            }
        }
        batch
    }

    fn count_events(&self, batch: &IngestBatch) {
        count_by_kind(&self.metrics.events_stored, &batch.events);
    }
}

/// Adds `events` to `family` by kind: one label lookup per kind, not per event.
fn count_by_kind(family: &Family<ReasonLabel, Counter>, events: &[Event]) {
    let (mut logs, mut metrics, mut flows) = (0u64, 0u64, 0u64);
    for event in events {
        match event.kind {
            EventKind::Log(_) => logs += 1,
            EventKind::Metric(_) => metrics += 1,
            EventKind::Flow(_) => flows += 1,
        }
    }
    let kinds = [
        (event_kind::LOG, logs),
        (event_kind::METRIC, metrics),
        (event_kind::FLOW, flows),
    ];
    for (kind, n) in kinds {
        if n > 0 {
            family.get_or_create(&[("kind", kind)]).inc_by(n);
        }
    }
}

#[cfg(test)]
mod tests;
