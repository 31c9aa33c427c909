//! Best-effort sinks: a bounded queue per sink and a thread of its own that drains it.
//!
//! Workers offer a committed batch with a `try_send` that never waits: a full queue
//! drops the batch for that sink (counted, logged at most every 10 s), so one slow
//! or dead sink never stalls ingest or the other sinks. The thread takes up to
//! [`MAX_BATCHES_PER_WRITE`] batches per write and retries a failed write with
//! exponential backoff (`retry_initial_ms` .. `retry_max_ms`) for as long as it
//! fails, while the queue keeps taking, and dropping, new batches; data the sink
//! refuses for good is dropped and counted at once.
//!
//! At shutdown each queue gets until a deadline to drain; what is still queued or
//! unwritten then is counted as dropped (reason `shutdown`) and logged.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::fanout::{Retry, SinkMetrics};
use super::route::Route;
use super::{BuildError, Sink};
use crate::ingest::store_failures::StoreFailures;
use crate::storage::IngestBatch;

/// Most batches one write takes from the queue.
pub(super) const MAX_BATCHES_PER_WRITE: usize = 64;
/// Past this many events, a write takes no more batches.
const MAX_EVENTS_PER_WRITE: usize = 20_000;
/// How often an idle thread looks for a stop request.
const IDLE_TICK: Duration = Duration::from_millis(200);

/// Tells a sink thread when to stop, and wakes it from a backoff sleep.
#[derive(Default)]
pub(super) struct Control {
    deadline: Mutex<Option<Instant>>,
    wake: Condvar,
}

impl Control {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.deadline.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the thread to drain its queue and stop by `deadline`.
    pub(super) fn stop_by(&self, deadline: Instant) {
        *self.lock() = Some(deadline);
        self.wake.notify_all();
    }

    fn deadline(&self) -> Option<Instant> {
        *self.lock()
    }

    /// Sleeps for `delay`, or until the stop deadline if that comes first; `false`
    /// when the deadline has passed.
    fn sleep(&self, delay: Duration) -> bool {
        let wake_at = Instant::now() + delay;
        let mut deadline = self.lock();
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return false;
            }
            if now >= wake_at {
                return true;
            }
            let until = deadline.map_or(wake_at, |d| d.min(wake_at));
            deadline = self
                .wake
                .wait_timeout(deadline, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The workers' side of a best-effort sink.
pub(super) struct QueueSender {
    name: Arc<str>,
    route: Route,
    tx: SyncSender<Arc<IngestBatch>>,
    metrics: SinkMetrics,
    /// Throttles the log of drops on a full queue.
    full: StoreFailures,
}

impl QueueSender {
    /// Queues what of `batch` the sink takes, or drops and counts it if the queue is
    /// full. Never waits.
    pub(super) fn offer(&self, batch: &Arc<IngestBatch>) {
        let Some(routed) = self.route.apply(batch) else {
            return;
        };
        let events = routed.events.len() as u64;
        // Counted before sending so that the thread's decrement can never come first.
        self.metrics.queue.inc();
        if self.tx.try_send(routed).is_ok() {
            return;
        }
        self.metrics.queue.dec();
        self.metrics.dropped_queue_full.inc_by(events);
        if let Some(suppressed) = self.full.failure(Instant::now()).log {
            tracing::warn!(
                message = "Best-effort sink is behind and its queue is full; dropping batches for it.",
                sink = %self.name,
                events,
                suppressed,
            );
        }
    }
}

/// The thread's handle, for shutdown.
pub(super) struct QueueThread {
    pub(super) name: Arc<str>,
    pub(super) control: Arc<Control>,
    /// Disconnected when the thread has finished.
    pub(super) done: Receiver<()>,
    pub(super) handle: JoinHandle<()>,
}

/// Starts the thread of a best-effort sink with a queue of `capacity` batches.
pub(super) fn start(
    name: Arc<str>,
    route: Route,
    sink: Arc<dyn Sink>,
    capacity: usize,
    retry: Retry,
    metrics: SinkMetrics,
) -> Result<(QueueSender, QueueThread), BuildError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
    let (done_tx, done) = std::sync::mpsc::channel();
    let control = Arc::new(Control::default());
    let worker = Worker {
        name: Arc::clone(&name),
        sink,
        rx,
        control: Arc::clone(&control),
        retry,
        metrics: metrics.clone(),
        failures: StoreFailures::default(),
        rejections: StoreFailures::default(),
    };
    let handle = std::thread::Builder::new()
        .name(format!("sink-{name}"))
        .spawn(move || {
            worker.run();
            drop(done_tx);
        })
        .map_err(|source| BuildError::Spawn {
            name: name.to_string(),
            source,
        })?;
    let sender = QueueSender {
        name: Arc::clone(&name),
        route,
        tx,
        metrics,
        full: StoreFailures::default(),
    };
    Ok((
        sender,
        QueueThread {
            name,
            control,
            done,
            handle,
        },
    ))
}

struct Worker {
    name: Arc<str>,
    sink: Arc<dyn Sink>,
    rx: Receiver<Arc<IngestBatch>>,
    control: Arc<Control>,
    retry: Retry,
    metrics: SinkMetrics,
    /// Throttles the log of failed writes (and reports the recovery).
    failures: StoreFailures,
    /// Throttles the log of refused data.
    rejections: StoreFailures,
}

impl Worker {
    fn run(self) {
        let mut pending = Vec::with_capacity(MAX_BATCHES_PER_WRITE);
        while let Some(first) = self.next() {
            let mut events = first.events.len();
            pending.push(first);
            while pending.len() < MAX_BATCHES_PER_WRITE && events < MAX_EVENTS_PER_WRITE {
                match self.rx.try_recv() {
                    Ok(batch) => {
                        self.metrics.queue.dec();
                        events += batch.events.len();
                        pending.push(batch);
                    }
                    Err(_) => break,
                }
            }
            if !self.write(&pending, events as u64) {
                break;
            }
            pending.clear();
        }
        // Stopped: what was in hand and what is still queued is lost.
        let mut lost: usize = pending.iter().map(|b| b.events.len()).sum();
        let mut batches = pending.len();
        while let Ok(batch) = self.rx.try_recv() {
            self.metrics.queue.dec();
            lost += batch.events.len();
            batches += 1;
        }
        if lost > 0 {
            self.metrics.dropped_shutdown.inc_by(lost as u64);
            tracing::warn!(
                message = "Best-effort sink did not drain in time at shutdown; its remaining events are dropped.",
                sink = %self.name,
                events = lost,
                batches,
            );
        }
        if let Err(error) = self.sink.flush() {
            tracing::warn!(message = "Failed to flush sink at shutdown.", %error, sink = %self.name);
        }
    }

    /// The next batch: waits for one, or, once a stop is asked, takes only what is
    /// already queued. `None` when it is time to stop.
    fn next(&self) -> Option<Arc<IngestBatch>> {
        loop {
            let batch = match self.control.deadline() {
                Some(deadline) if Instant::now() >= deadline => return None,
                Some(_) => match self.rx.try_recv() {
                    Ok(batch) => Some(batch),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => return None,
                },
                None => match self.rx.recv_timeout(IDLE_TICK) {
                    Ok(batch) => Some(batch),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return None,
                },
            };
            if let Some(batch) = batch {
                self.metrics.queue.dec();
                return Some(batch);
            }
        }
    }

    /// Writes `batches`, retrying while it fails and may succeed; `false` when the
    /// stop deadline passed first (the batches are then still unwritten).
    fn write(&self, batches: &[Arc<IngestBatch>], events: u64) -> bool {
        let mut delay = self.retry.initial;
        loop {
            let error = match self.metrics.write(self.sink.as_ref(), batches, events) {
                Ok(()) => {
                    if let Some(r) = self.failures.success(Instant::now()) {
                        tracing::info!(
                            message = "Best-effort sink writes succeed again.",
                            sink = %self.name,
                            failed_writes = r.failures,
                            after_secs = r.after.as_secs(),
                        );
                    }
                    return true;
                }
                Err(error) => error,
            };
            if !error.is_retryable() {
                self.metrics.dropped_rejected.inc_by(events);
                if let Some(suppressed) = self.rejections.failure(Instant::now()).log {
                    tracing::warn!(message = "Sink refused events for good; they are dropped.", %error, sink = %self.name, events, suppressed);
                }
                return true;
            }
            if let Some(suppressed) = self.failures.failure(Instant::now()).log {
                tracing::warn!(
                    message = "Failed to write to a best-effort sink; retrying while its queue takes new batches.",
                    %error,
                    sink = %self.name,
                    retry_in_ms = delay.as_millis() as u64,
                    suppressed,
                );
            }
            if !self.control.sleep(delay) {
                return false;
            }
            delay = (delay * 2).min(self.retry.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_cuts_a_backoff_sleep_short() {
        let control = Arc::new(Control::default());
        let started = Instant::now();
        assert!(control.sleep(Duration::from_millis(20)), "no stop asked");
        assert!(started.elapsed() >= Duration::from_millis(20));
        let stopper = {
            let control = Arc::clone(&control);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                control.stop_by(Instant::now());
            })
        };
        let started = Instant::now();
        assert!(
            !control.sleep(Duration::from_secs(30)),
            "the deadline passed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        stopper.join().expect("stopper");
        // A deadline further out lets a short sleep finish.
        control.stop_by(Instant::now() + Duration::from_secs(60));
        assert!(control.sleep(Duration::from_millis(10)));
    }
}
