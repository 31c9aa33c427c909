//! The fan-out: what a processor worker does with a batch after the primary store's
//! commit, and the sinks' lifecycle ([`Sinks`]: start, `/ready`, shutdown).
//!
//! - **Required sinks** are written in the worker, one after the other, after the
//!   commit, whether it stored the batch now or found it stored before: a batch the
//!   agent resends because a required sink failed is a duplicate for the store but
//!   still owed to that sink. A failing write is retried with backoff up to
//!   `max_attempts`; still failing, the batch is answered retry-later (reason
//!   `sink`) and the agent sends it again. So a slow required sink slows ingest, and
//!   a dead one stops acknowledgements, losing nothing. Sinks that already took the
//!   batch get it again on the resend (at least once).
//! - **Best-effort sinks** are offered only batches committed now (a resend would
//!   write them twice) through their own queue (see `queue`).
//! - Data a sink refuses for good ([`SinkError::is_retryable`] is false) is dropped
//!   for that sink and counted, never retried: a required sink then no longer holds
//!   the batch back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::config::SinkConfig;
use super::queue::{self, QueueSender, QueueThread};
use super::route::Route;
use super::{BuildError, Sink, SinkError};
use crate::ingest::store_failures::StoreFailures;
use crate::storage::{CommitOutcome, IngestBatch};
use crate::telemetry::{Metrics, sink_drop_reason};

/// One sink's metric handles, looked up once (every series exists from the start).
#[derive(Clone)]
pub(super) struct SinkMetrics {
    pub(super) written: Counter,
    pub(super) errors: Counter,
    pub(super) dropped_queue_full: Counter,
    pub(super) dropped_rejected: Counter,
    pub(super) dropped_shutdown: Counter,
    pub(super) queue: Gauge,
    pub(super) write_seconds: Histogram,
}

impl SinkMetrics {
    fn new(metrics: &Metrics, name: &str) -> SinkMetrics {
        let sink = || [("sink", name.to_string())];
        let dropped = |reason: &str| {
            metrics
                .sink_events_dropped
                .get_or_create(&[("sink", name.to_string()), ("reason", reason.to_string())])
                .clone()
        };
        for reason in sink_drop_reason::ALL {
            drop(dropped(reason));
        }
        SinkMetrics {
            written: metrics.sink_events_written.get_or_create(&sink()).clone(),
            errors: metrics.sink_write_errors.get_or_create(&sink()).clone(),
            dropped_queue_full: dropped(sink_drop_reason::QUEUE_FULL),
            dropped_rejected: dropped(sink_drop_reason::REJECTED),
            dropped_shutdown: dropped(sink_drop_reason::SHUTDOWN),
            queue: metrics.sink_queue_batches.get_or_create(&sink()).clone(),
            write_seconds: metrics.sink_write_seconds.get_or_create(&sink()).clone(),
        }
    }

    /// One attempt at writing `batches` (`events` events) to `sink`: timed, its
    /// events counted as written on success, the error counted on failure.
    pub(super) fn write(
        &self,
        sink: &dyn Sink,
        batches: &[Arc<IngestBatch>],
        events: u64,
    ) -> Result<(), SinkError> {
        let started = Instant::now();
        let result = sink.write(batches);
        self.write_seconds.observe(started.elapsed().as_secs_f64());
        let counter = match &result {
            Ok(()) => (&self.written, events),
            Err(_) => (&self.errors, 1),
        };
        counter.0.inc_by(counter.1);
        result
    }
}

/// Retry timing of a sink.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retry {
    pub(super) initial: Duration,
    pub(super) max: Duration,
    /// Required sinks: attempts per batch.
    pub(super) attempts: u32,
}

impl Retry {
    fn new(config: &SinkConfig) -> Retry {
        Retry {
            initial: Duration::from_millis(config.retry_initial_ms),
            max: Duration::from_millis(config.retry_max_ms),
            attempts: config.max_attempts.max(1),
        }
    }
}

/// A required sink failed to take a batch after every attempt.
#[derive(Debug, thiserror::Error)]
#[error("sink {sink}: {error}")]
pub struct SinkFailure {
    /// The sink's name.
    pub sink: Arc<str>,
    /// Its last error.
    #[source]
    pub error: SinkError,
}

struct Required {
    name: Arc<str>,
    route: Route,
    sink: Arc<dyn Sink>,
    retry: Retry,
    metrics: SinkMetrics,
    /// Throttles the log of refused data.
    rejections: StoreFailures,
}

impl Required {
    fn write(&self, batch: &Arc<IngestBatch>) -> Result<(), SinkFailure> {
        let Some(routed) = self.route.apply(batch) else {
            return Ok(());
        };
        let events = routed.events.len() as u64;
        let batches = std::slice::from_ref(&routed);
        let mut delay = self.retry.initial;
        let mut attempt = 1;
        loop {
            let Err(error) = self.metrics.write(self.sink.as_ref(), batches, events) else {
                return Ok(());
            };
            if !error.is_retryable() {
                self.metrics.dropped_rejected.inc_by(events);
                if let Some(suppressed) = self.rejections.failure(Instant::now()).log {
                    tracing::warn!(
                        message = "Required sink refused events for good; they are dropped for it and the batch is acknowledged.",
                        %error,
                        sink = %self.name,
                        agent_id = %batch.agent_id,
                        stream_id = batch.stream_id,
                        sequence = batch.sequence,
                        events,
                        suppressed,
                    );
                }
                return Ok(());
            }
            if attempt >= self.retry.attempts {
                return Err(SinkFailure {
                    sink: Arc::clone(&self.name),
                    error,
                });
            }
            tracing::debug!(message = "Required sink write failed; retrying.", %error, sink = %self.name, attempt, retry_in_ms = delay.as_millis() as u64);
            std::thread::sleep(delay);
            delay = (delay * 2).min(self.retry.max);
            attempt += 1;
        }
    }
}

/// What the processor workers call after each commit.
pub struct FanOut {
    required: Vec<Required>,
    best_effort: Vec<QueueSender>,
}

impl FanOut {
    /// No sinks.
    pub fn none() -> FanOut {
        FanOut {
            required: Vec::new(),
            best_effort: Vec::new(),
        }
    }

    /// Whether there is no sink at all.
    pub fn is_empty(&self) -> bool {
        self.required.is_empty() && self.best_effort.is_empty()
    }

    /// Hands a batch the store committed (`outcome`) to the sinks: writes it to every
    /// required sink, then offers it to the best-effort ones if it was committed
    /// now. `Err` when a required sink still fails after its attempts: the batch
    /// must not be acknowledged.
    pub fn deliver(
        &self,
        batch: &Arc<IngestBatch>,
        outcome: CommitOutcome,
    ) -> Result<(), SinkFailure> {
        let result = self.required.iter().try_for_each(|r| r.write(batch));
        // Offered even when a required sink failed: the resend will be a duplicate,
        // which best-effort sinks never get.
        if outcome == CommitOutcome::Committed {
            for queue in &self.best_effort {
                queue.offer(batch);
            }
        }
        result
    }

    /// Whether every required sink can take writes (best-effort ones do not hold up
    /// readiness). Blocking.
    pub fn health(&self) -> Result<(), SinkFailure> {
        for r in &self.required {
            r.sink.health().map_err(|error| SinkFailure {
                sink: Arc::clone(&r.name),
                error,
            })?;
        }
        Ok(())
    }

    fn flush_required(&self) {
        for r in &self.required {
            if let Err(error) = r.sink.flush() {
                tracing::warn!(message = "Failed to flush sink at shutdown.", %error, sink = %r.name);
            }
        }
    }
}

/// The configured sinks: the [`FanOut`] the workers use and the best-effort
/// threads, until [`Sinks::shutdown`].
pub struct Sinks {
    fanout: Arc<FanOut>,
    threads: Vec<QueueThread>,
}

impl Sinks {
    /// No sinks.
    pub fn none() -> Sinks {
        Sinks {
            fanout: Arc::new(FanOut::none()),
            threads: Vec::new(),
        }
    }

    /// Builds every `[[storage.sinks]]` sink ([`super::build`]) and starts the
    /// best-effort threads. Blocking (opens files, makes clients).
    pub fn start(configs: &[SinkConfig], metrics: &Metrics) -> Result<Sinks, BuildError> {
        let mut built = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            built.push((config.clone(), super::build(index, config)?));
        }
        Sinks::start_with(built, metrics)
    }

    /// Like [`Sinks::start`] with sinks already built (each with its table, for its
    /// name, routing and retries).
    pub fn start_with(
        sinks: Vec<(SinkConfig, Arc<dyn Sink>)>,
        metrics: &Metrics,
    ) -> Result<Sinks, BuildError> {
        let mut fanout = FanOut::none();
        let mut threads = Vec::new();
        for (index, (config, sink)) in sinks.into_iter().enumerate() {
            let name: Arc<str> = Arc::from(config.name());
            let route = Route::new(&config).map_err(|e| BuildError::Setup {
                index,
                name: name.to_string(),
                message: e.to_string(),
            })?;
            let sink_metrics = SinkMetrics::new(metrics, &name);
            let retry = Retry::new(&config);
            tracing::info!(message = "Sink started.", sink = %name, r#type = config.kind.as_str(), required = config.required);
            if config.required {
                fanout.required.push(Required {
                    name,
                    route,
                    sink,
                    retry,
                    metrics: sink_metrics,
                    rejections: StoreFailures::default(),
                });
            } else {
                let (sender, thread) =
                    queue::start(name, route, sink, config.queue_batches, retry, sink_metrics)?;
                fanout.best_effort.push(sender);
                threads.push(thread);
            }
        }
        Ok(Sinks {
            fanout: Arc::new(fanout),
            threads,
        })
    }

    /// The fan-out, for the processor workers and `/ready`.
    pub fn fanout(&self) -> Arc<FanOut> {
        Arc::clone(&self.fanout)
    }

    /// Drains the best-effort queues, all at once, within `timeout` (what remains
    /// is counted as dropped), then flushes every sink. Call it once the workers have
    /// stopped. Blocking.
    pub fn shutdown(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for thread in &self.threads {
            thread.control.stop_by(deadline);
        }
        // A write in progress at the deadline may still take its own timeout.
        let grace = deadline + Duration::from_secs(5);
        for thread in self.threads {
            let left = grace.saturating_duration_since(Instant::now());
            match thread.done.recv_timeout(left) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    tracing::warn!(message = "Sink did not stop in time; leaving it.", sink = %thread.name);
                }
                _ => {
                    if thread.handle.join().is_err() {
                        tracing::error!(message = "Sink thread panicked.", sink = %thread.name);
                    }
                }
            }
        }
        self.fanout.flush_required();
    }
}
