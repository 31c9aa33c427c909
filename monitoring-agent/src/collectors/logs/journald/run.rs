//! The source's entry point and its thread.
//!
//! The journal handle is not `Send`, so one blocking thread opens it and does
//! everything: it reads up to [`CHUNK`] entries, hands them to the async pipeline in
//! one `block_on` (waiting for room under the `block` policy, which is how a slow
//! collector pauses it), writes the cursor checkpoint every
//! [`Settings::checkpoint_interval`], and when the journal has nothing new waits in
//! `sd_journal_wait` for at most [`Settings::wait_timeout`], so that a stop is seen
//! within that time and an idle source costs one wake-up per timeout.
//!
//! An entry the filter rejects is consumed, not lost: its cursor takes the place of
//! the cursor of the last entry in flight ([`InFlight::consume`]), so that it is
//! checkpointed once that entry is acknowledged, or at once when none is in flight.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::checkpoint::{self, InFlight};
use super::convert::to_event;
use super::reader::Reader;
use super::{JournaldError, JournaldMetrics, Settings};
use crate::collectors::logs::filter::Verdict;
use crate::pipeline::{self, Envelope, EventOutput, SourceProgress};
use monitoring_common::EventKind;

/// Most entries read before they are handed over (and the stop flag checked).
pub const CHUNK: usize = 256;
/// Wait after a read error before trying again: bounded cost of a broken journal.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// Wait while [`InFlight::MAX`] entries are unacknowledged.
const IN_FLIGHT_BACKOFF: Duration = Duration::from_millis(100);

/// Reads the journal `settings` names into `output` until `stop_all`.
///
/// When `stop_reading` fires, nothing more is read or sent, but the cursor keeps
/// being checkpointed as acknowledgements arrive; when `stop_all` fires the final
/// checkpoint is written and the function returns. Failing to open the journal or
/// the checkpoint is an error; read errors later are logged, counted and retried.
pub async fn run(
    settings: Settings,
    state_dir: PathBuf,
    output: impl EventOutput,
    metrics: Arc<JournaldMetrics>,
    stop_reading: CancellationToken,
    stop_all: CancellationToken,
) -> Result<(), JournaldError> {
    std::fs::create_dir_all(&state_dir).map_err(|source| JournaldError::StateDir {
        path: state_dir.clone(),
        source,
    })?;
    let loaded = checkpoint::load(&state_dir)?;
    // Stopping everything stops reading too, including a send waiting for room.
    let read_stop = stop_reading.child_token();
    let guard = stop_all.clone();
    let read_stop_all = read_stop.clone();
    let done = CancellationToken::new();
    let _done_guard = done.clone().drop_guard();
    tokio::spawn(async move {
        tokio::select! {
            _ = guard.cancelled() => read_stop_all.cancel(),
            _ = done.cancelled() => {}
        }
    });
    let handle = Handle::current();
    let thread = tokio::task::spawn_blocking(move || {
        let (reader, save) = Reader::start(&settings, loaded, &metrics)?;
        info!(
            message = "Journal source started.",
            source = %settings.source,
            units = ?settings.units,
            state_dir = %state_dir.display(),
        );
        let mut source = Source {
            reader,
            in_flight: InFlight::default(),
            progress: SourceProgress::new(0),
            saved: None,
            unsaved: save,
            state_dir,
            settings,
            metrics,
            handle,
            output,
            read_stop,
            stop_all,
        };
        source.run();
        Ok(())
    });
    let result = thread
        .await
        .map_err(|e| JournaldError::Task(e.to_string()))?;
    info!(message = "Journal source stopped.");
    result
}

/// The source's state on its thread.
struct Source<O> {
    reader: Reader,
    in_flight: InFlight,
    progress: Arc<SourceProgress>,
    /// The checkpoint last written.
    saved: Option<Option<String>>,
    /// A checkpoint still to write (a failed write is retried).
    unsaved: Option<Option<String>>,
    state_dir: PathBuf,
    settings: Settings,
    metrics: Arc<JournaldMetrics>,
    handle: Handle,
    output: O,
    read_stop: CancellationToken,
    stop_all: CancellationToken,
}

/// Why entries could not be handed over.
enum Stopped {
    /// `stop_reading` (or `stop_all`) fired.
    Cancelled,
    /// The pipeline is closed.
    Closed,
}

impl<O: EventOutput> Source<O> {
    fn run(&mut self) {
        let mut reading = true;
        let mut next_checkpoint = Instant::now();
        let mut batch = Vec::with_capacity(CHUNK);
        while !self.stop_all.is_cancelled() {
            if reading && self.read_stop.is_cancelled() {
                reading = false;
                info!(message = "Journal source stopped reading; checkpointing until shutdown.");
            }
            if Instant::now() >= next_checkpoint {
                self.checkpoint();
                next_checkpoint = Instant::now() + self.settings.checkpoint_interval;
            }
            let until_checkpoint = next_checkpoint.saturating_duration_since(Instant::now());
            if !reading {
                self.sleep(until_checkpoint);
                continue;
            }
            if self.in_flight.len() >= InFlight::MAX {
                self.sleep(IN_FLIGHT_BACKOFF.min(until_checkpoint));
                continue;
            }
            let room = CHUNK.min(InFlight::MAX - self.in_flight.len());
            let read = self.read_chunk(&mut batch, room);
            if !batch.is_empty() {
                match self.deliver(&mut batch) {
                    Ok(()) => {}
                    Err(Stopped::Cancelled) => reading = false,
                    Err(Stopped::Closed) => {
                        reading = false;
                        info!(message = "Pipeline closed; journal source stops reading.");
                    }
                }
            }
            match read {
                Ok(examined) if examined == room => {}
                Ok(_) => {
                    let timeout = self.settings.wait_timeout.min(until_checkpoint);
                    if let Err(error) = self.reader.wait(timeout) {
                        self.read_error("wait for", &error);
                    }
                }
                Err(error) => self.read_error("read", &error),
            }
        }
        self.checkpoint();
    }

    /// Reads up to `room` entries, putting those that pass the filter into `batch`,
    /// and returns how many it read; stops early at the end of the journal or at an
    /// error (entries read before it are kept).
    fn read_chunk(
        &mut self,
        batch: &mut Vec<Envelope>,
        room: usize,
    ) -> Result<usize, systemd::Error> {
        let mut examined = 0;
        while examined < room {
            let Some((entry, cursor)) = self.reader.next_entry()? else {
                break;
            };
            examined += 1;
            let mut event = to_event(&entry, &self.settings.source);
            if let EventKind::Log(log) = &mut event.kind {
                match self.settings.filter.check(&log.message) {
                    // The entry's own priority, when it has one, says more than
                    // the words of its message.
                    Verdict::Ship(detected) => log.severity = log.severity.or(detected),
                    Verdict::Filter(reason) => {
                        self.metrics
                            .filtered
                            .inc(pipeline::Source::Journald, reason);
                        if let Some(cursor) = self.in_flight.consume(cursor) {
                            self.unsaved = Some(Some(cursor));
                        }
                        continue;
                    }
                }
            }
            let position = self.in_flight.push(cursor);
            batch.push(Envelope {
                source: pipeline::Source::Journald,
                body: pipeline::Body::Event(Box::new(event)),
                ack: Some((Arc::clone(&self.progress), position)),
            });
        }
        Ok(examined)
    }

    /// Hands `batch` to the pipeline. An entry not handed over is never acknowledged,
    /// so the checkpoint stays before it and it is read again next time.
    fn deliver(&mut self, batch: &mut Vec<Envelope>) -> Result<(), Stopped> {
        let (output, stop, metrics) = (&self.output, &self.read_stop, &self.metrics);
        self.handle.block_on(async {
            for envelope in batch.drain(..) {
                match stop.run_until_cancelled(output.send(envelope)).await {
                    Some(Ok(())) => {
                        metrics.entries_read.inc();
                    }
                    Some(Err(_closed)) => return Err(Stopped::Closed),
                    None => return Err(Stopped::Cancelled),
                }
            }
            Ok(())
        })
    }

    /// Writes the cursor of the last acknowledged entry, if it changed.
    fn checkpoint(&mut self) {
        if let Some(cursor) = self.in_flight.take_acked(self.progress.acked()) {
            self.unsaved = Some(Some(cursor));
        }
        let Some(cursor) = self.unsaved.take() else {
            return;
        };
        if self.saved.as_ref() == Some(&cursor) {
            return;
        }
        match checkpoint::save(&self.state_dir, cursor.as_deref()) {
            Ok(()) => {
                self.metrics.checkpoint_writes.inc();
                self.saved = Some(cursor);
            }
            Err(error) => {
                self.metrics.checkpoint_write_failures.inc();
                error!(message = "Cannot write the journal checkpoint; retrying.", %error);
                self.unsaved = Some(cursor);
            }
        }
    }

    fn read_error(&mut self, what: &str, error: &systemd::Error) {
        self.metrics.read_errors.inc();
        warn!(message = "Cannot read the journal; retrying.", what, %error);
        self.sleep(ERROR_BACKOFF);
    }

    /// Sleeps up to `duration`, waking at once when everything stops.
    fn sleep(&self, duration: Duration) {
        let stop = &self.stop_all;
        self.handle.block_on(async {
            tokio::time::timeout(duration, stop.cancelled()).await.ok();
        });
    }
}
