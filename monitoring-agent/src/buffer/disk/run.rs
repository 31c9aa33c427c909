//! Running an opened spool: the writer and the reader on blocking threads (their file
//! I/O and fsyncs must not stall the async runtime), and a maintenance task that
//! deletes acknowledged segments and persists the ledger.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::Shared;
use super::open::Spool;
use super::reader::{Next, Reader};
use super::writer::Writer;
use crate::pipeline::Batch;

/// Most batches written together under one fsync.
const GROUP: usize = 64;
/// How long the reader waits for new records before it checks for shutdown.
const READ_WAIT: Duration = Duration::from_millis(200);
/// How often acknowledged segments are looked for.
const MAINTAIN_INTERVAL: Duration = Duration::from_millis(200);
/// How often the ledger is written while the acknowledged position moves.
const LEDGER_INTERVAL: Duration = Duration::from_secs(1);

/// The spool's running tasks.
#[derive(Debug)]
pub struct SpoolTasks {
    writer: JoinHandle<()>,
    reader: JoinHandle<()>,
    maintenance: JoinHandle<()>,
}

/// Starts the spool between `input` (from the batcher) and `output` (to the
/// transport).
///
/// - `drain` (shutdown has begun): a writer that cannot make progress (spool full
///   under `block`) gives up; what it did not write was not checkpointed.
/// - `stop` (the transport has finished): the reader stops, and the maintenance task
///   writes the ledger a last time and returns.
pub fn spawn(
    spool: Spool,
    input: mpsc::Receiver<Batch>,
    output: mpsc::Sender<Batch>,
    drain: CancellationToken,
    stop: CancellationToken,
) -> SpoolTasks {
    let Spool {
        writer,
        reader,
        shared,
    } = spool;
    let reader_stop = stop.clone();
    SpoolTasks {
        writer: tokio::task::spawn_blocking(move || write_loop(writer, input, &drain)),
        reader: tokio::task::spawn_blocking(move || read_loop(reader, &output, &reader_stop)),
        maintenance: tokio::spawn(maintain(shared, stop)),
    }
}

impl SpoolTasks {
    /// Waits for every task (call after `stop` is cancelled).
    pub async fn join(self) {
        for (name, task) in [
            ("writer", self.writer),
            ("reader", self.reader),
            ("maintenance", self.maintenance),
        ] {
            if let Err(error) = task.await {
                error!(message = "A spool task failed.", task = name, %error);
            }
        }
    }
}

fn write_loop(mut writer: Writer, mut input: mpsc::Receiver<Batch>, drain: &CancellationToken) {
    let stop = || drain.is_cancelled();
    let mut run = || {
        while let Some(first) = input.blocking_recv() {
            writer.push(first, &stop)?;
            for _ in 1..GROUP {
                match input.try_recv() {
                    Ok(batch) => {
                        writer.push(batch, &stop)?;
                    }
                    Err(_) => break,
                }
            }
            writer.flush(&stop)?;
        }
        Ok::<(), super::writer::Stopped>(())
    };
    if run().is_err() {
        warn!(
            message = "Shutting down with the spool full (or failing): the last batches were not spooled; their lines are read again after a restart.",
        );
    }
    // Whatever the batcher still sends is refused: not checkpointed, read again.
    input.close();
    if writer.close(&stop).is_err() {
        warn!(message = "The last spool write failed; its lines are read again after a restart.");
    }
    debug!(message = "Spool writer finished.");
}

fn read_loop(mut reader: Reader, output: &mpsc::Sender<Batch>, stop: &CancellationToken) {
    loop {
        match reader.next(READ_WAIT) {
            Next::Batch(batch) => {
                if output.blocking_send(batch).is_err() {
                    break;
                }
            }
            Next::Idle => {
                if stop.is_cancelled() || output.is_closed() {
                    break;
                }
            }
            Next::Closed => break,
        }
    }
    debug!(
        message = "Spool reader finished.",
        position = reader.position()
    );
}

async fn maintain(shared: Arc<Shared>, stop: CancellationToken) {
    let mut persisted = None;
    let mut last_write: Option<Instant> = None;
    let mut tick = tokio::time::interval(MAINTAIN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            () = stop.cancelled() => true,
            _ = tick.tick() => false,
        };
        let due = last || last_write.is_none_or(|t| t.elapsed() >= LEDGER_INTERVAL);
        let s = shared.clone();
        match tokio::task::spawn_blocking(move || s.maintain(persisted, due)).await {
            Ok(Some(written)) => {
                persisted = Some(written);
                last_write = Some(Instant::now());
            }
            Ok(None) => {}
            Err(error) => error!(message = "Spool maintenance failed.", %error),
        }
        if last {
            return;
        }
    }
}

impl Shared {
    /// Deletes acknowledged segments and, if `write_ledger` and the acknowledged
    /// position is not `persisted`, writes the ledger. Returns the position written.
    pub fn maintain(&self, persisted: Option<u64>, write_ledger: bool) -> Option<u64> {
        self.reclaim();
        let acked = self.progress.acked();
        if !write_ledger || persisted == Some(acked) {
            return None;
        }
        match self.ledger.store(acked) {
            Ok(()) => Some(acked),
            Err(error) => {
                self.metrics.ledger_write_failures.inc();
                error!(message = "Failed to write the spool ledger; retrying.", %error);
                None
            }
        }
    }
}
