//! The source's entry point and its loop.
//!
//! File reads, `fstat`s and checkpoint `fsync`s block, so the loop runs on a blocking
//! thread and hands each chunk's envelopes to the async pipeline in one `block_on`,
//! racing `stop_reading`. It sleeps on a wake-up channel fed by file system
//! notifications and by the stop tokens, with the poll, rescan and checkpoint
//! intervals as timeouts. A new `[collectors.logs]` table sent through a
//! [`FileReloader`] is applied between two rounds, without reopening the files the
//! new patterns still match.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, channel, sync_channel};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::checkpoints::Checkpoints;
use super::config::LogsConfig;
use super::discovery::{Discovery, FsWatcher};
use super::server::{Round, Server};
use super::tail::{Deliver, Stopped};
use super::{FileMetrics, FileSourceError};
use crate::pipeline::{Envelope, EventOutput};

/// Least time between two scans asked for by notifications.
const MIN_EVENT_SCAN_GAP: Duration = Duration::from_millis(50);
/// Least time between a read round that found nothing and the next.
const MIN_IDLE_ROUND_GAP: Duration = Duration::from_millis(10);

/// Sends new `[collectors.logs]` tables to a running file source.
#[derive(Debug, Clone)]
pub struct FileReloader(UnboundedSender<LogsConfig>);

impl FileReloader {
    /// A reloader and the receiving end to give to [`run_reloadable`].
    pub fn channel() -> (FileReloader, UnboundedReceiver<LogsConfig>) {
        let (tx, rx) = unbounded_channel();
        (FileReloader(tx), rx)
    }

    /// Asks the source to apply `config`; false when it no longer runs.
    pub fn reload(&self, config: LogsConfig) -> bool {
        self.0.send(config).is_ok()
    }
}

/// Tails the files `config` names into `output` until `stop_all`.
///
/// Offsets are checkpointed in `<state_dir>/files.json` from each file's
/// acknowledged progress. When `stop_reading` fires, no more is read or sent (an event
/// not handed over yet is read again next time: its offset was never acknowledged)
/// but checkpoints keep being written as acknowledgements arrive; when `stop_all`
/// fires, the final checkpoint is written and the function returns. A disabled source
/// returns at once.
pub async fn run(
    config: LogsConfig,
    state_dir: PathBuf,
    output: impl EventOutput,
    metrics: Arc<FileMetrics>,
    stop_reading: CancellationToken,
    stop_all: CancellationToken,
) -> Result<(), FileSourceError> {
    let (_, reloads) = FileReloader::channel();
    run_reloadable(
        config,
        state_dir,
        output,
        metrics,
        stop_reading,
        stop_all,
        reloads,
    )
    .await
}

/// [`run`], also applying each configuration received on `reloads` (see
/// `Server::reconfigure`). Disabling the source in a new configuration closes its
/// files but keeps it checkpointing until `stop_all`.
pub async fn run_reloadable(
    config: LogsConfig,
    state_dir: PathBuf,
    output: impl EventOutput,
    metrics: Arc<FileMetrics>,
    stop_reading: CancellationToken,
    stop_all: CancellationToken,
    mut reloads: UnboundedReceiver<LogsConfig>,
) -> Result<(), FileSourceError> {
    if !config.enabled {
        info!(message = "File source disabled.");
        return Ok(());
    }
    std::fs::create_dir_all(&state_dir).map_err(|source| FileSourceError::StateDir {
        path: state_dir.clone(),
        source,
    })?;
    let checkpoints = Checkpoints::load(&state_dir, config.fingerprint_bytes)?;
    let discovery = Discovery::new(&config.files, &config.exclude)?;

    // Stopping everything stops reading too, including a send waiting for room.
    let read_stop = stop_reading.child_token();
    let done = CancellationToken::new();
    let _done_guard = done.clone().drop_guard();
    let (wake_tx, wake_rx) = sync_channel(1);
    for token in [read_stop.clone(), stop_all.clone()] {
        forward_cancel(token, done.clone(), wake_tx.clone());
    }
    {
        let (stop_all, read_stop, done) = (stop_all.clone(), read_stop.clone(), done.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop_all.cancelled() => read_stop.cancel(),
                _ = done.cancelled() => {}
            }
        });
    }

    // The loop reads new configurations between rounds; this wakes it for them.
    let (reload_tx, reload_rx) = channel();
    {
        let (wake, done) = (wake_tx.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    config = reloads.recv() => match config {
                        Some(config) => {
                            if reload_tx.send(config).is_err() {
                                break;
                            }
                            wake.try_send(()).ok();
                        }
                        None => break,
                    },
                    _ = done.cancelled() => break,
                }
            }
        });
    }

    let rescan = Arc::new(AtomicBool::new(false));
    let watcher = FsWatcher::start(
        discovery.watch_roots(),
        wake_tx.clone(),
        Arc::clone(&rescan),
        Arc::clone(&metrics),
    );
    info!(message = "File source started.", patterns = ?config.files, state_dir = %state_dir.display());
    let timers = Timers::from(&config);
    let server = Server::new(config, discovery, checkpoints, Arc::clone(&metrics));
    let sink = OutputSink {
        handle: Handle::current(),
        output,
        stop: read_stop.clone(),
    };
    let loop_state = Loop {
        server,
        sink,
        watcher,
        wake: wake_rx,
        wake_tx,
        reloads: reload_rx,
        metrics,
        rescan,
        read_stop,
        stop_all,
        timers,
    };
    tokio::task::spawn_blocking(move || loop_state.run())
        .await
        .map_err(|e| FileSourceError::Task(e.to_string()))?;
    info!(message = "File source stopped.");
    Ok(())
}

/// Wakes the loop when `token` fires.
fn forward_cancel(token: CancellationToken, done: CancellationToken, wake: SyncSender<()>) {
    tokio::spawn(async move {
        tokio::select! {
            _ = token.cancelled() => { wake.try_send(()).ok(); }
            _ = done.cancelled() => {}
        }
    });
}

/// Hands batches to the async pipeline from the blocking thread.
struct OutputSink<O> {
    handle: Handle,
    output: O,
    stop: CancellationToken,
}

impl<O: EventOutput> Deliver for OutputSink<O> {
    fn deliver(&mut self, batch: &mut Vec<Envelope>) -> Result<(), Stopped> {
        let (output, stop) = (&self.output, &self.stop);
        self.handle.block_on(async {
            for envelope in batch.drain(..) {
                match stop.run_until_cancelled(output.send(envelope)).await {
                    Some(Ok(())) => {}
                    Some(Err(_closed)) => return Err(Stopped::Closed),
                    None => return Err(Stopped::Cancelled),
                }
            }
            Ok(())
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Timers {
    poll: Duration,
    rescan: Duration,
    checkpoint: Duration,
}

impl From<&LogsConfig> for Timers {
    fn from(c: &LogsConfig) -> Timers {
        Timers {
            poll: Duration::from_millis(c.poll_interval_ms),
            rescan: Duration::from_millis(c.rescan_interval_ms),
            checkpoint: Duration::from_millis(c.checkpoint_interval_ms),
        }
    }
}

struct Loop<O> {
    server: Server,
    sink: OutputSink<O>,
    watcher: Option<FsWatcher>,
    wake: Receiver<()>,
    /// For the watcher of a new configuration.
    wake_tx: SyncSender<()>,
    reloads: Receiver<LogsConfig>,
    metrics: Arc<FileMetrics>,
    rescan: Arc<AtomicBool>,
    read_stop: CancellationToken,
    stop_all: CancellationToken,
    timers: Timers,
}

impl<O: EventOutput> Loop<O> {
    fn run(mut self) {
        let mut next_scan = Instant::now();
        let mut next_checkpoint = Instant::now() + self.timers.checkpoint;
        let mut reading = true;
        let mut last_scan = Instant::now();
        let mut last_idle_round: Option<Instant> = None;
        while !self.stop_all.is_cancelled() {
            let now = Instant::now();
            if reading && self.read_stop.is_cancelled() {
                reading = false;
                info!(message = "File source stopped reading; checkpointing until shutdown.");
            }
            let mut busy = false;
            if reading {
                // Only the latest of several pending configurations matters.
                if let Some(config) = self.reloads.try_iter().last() {
                    self.reconfigure(config);
                }
                // A wake-up right after a round that found nothing (writes to other
                // files in a watched directory) waits a little: bounded idle cost.
                if let Some(idle) = last_idle_round {
                    std::thread::sleep(MIN_IDLE_ROUND_GAP.saturating_sub(idle.elapsed()));
                }
                // Notifications of creations and renames come in storms; scan for
                // them at most every MIN_EVENT_SCAN_GAP. The server's own requests
                // (a truncation looking for its copy) are served at once.
                let notified = self.rescan.load(Ordering::Acquire)
                    && last_scan.elapsed() >= MIN_EVENT_SCAN_GAP;
                if now >= next_scan || self.server.rescan_requested || notified {
                    self.rescan.store(false, Ordering::Release);
                    last_scan = Instant::now();
                    if let Some(w) = &mut self.watcher {
                        w.refresh();
                    }
                    self.server.scan();
                    next_scan = now + self.timers.rescan;
                }
                match self.server.read_round(&mut self.sink) {
                    Ok(Round { more, read }) => {
                        busy = more || self.server.rescan_requested;
                        last_idle_round = (!read).then(Instant::now);
                    }
                    Err(Stopped::Cancelled) => reading = false,
                    Err(Stopped::Closed) => {
                        reading = false;
                        info!(message = "Pipeline closed; file source stops reading.");
                    }
                }
            }
            if Instant::now() >= next_checkpoint {
                self.server.checkpoint();
                next_checkpoint = Instant::now() + self.timers.checkpoint;
            }
            if busy {
                continue;
            }
            let mut deadline = next_checkpoint;
            if reading {
                deadline = deadline
                    .min(next_scan)
                    .min(Instant::now() + self.timers.poll);
                if self.rescan.load(Ordering::Acquire) {
                    deadline = deadline.min(last_scan + MIN_EVENT_SCAN_GAP);
                }
            }
            let timeout = deadline.saturating_duration_since(Instant::now());
            match self.wake.recv_timeout(timeout) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                // Every sender is gone (watcher failed and tokens forwarded): sleep
                // on the timers alone.
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(timeout),
            }
        }
        self.server.checkpoint();
    }

    /// Applies a new configuration: patterns, watches, timers, then the open files.
    fn reconfigure(&mut self, config: LogsConfig) {
        // A disabled source matches nothing but keeps checkpointing what is in flight.
        let none: &[String] = &[];
        let (files, exclude) = if config.enabled {
            (config.files.as_slice(), config.exclude.as_slice())
        } else {
            (none, none)
        };
        let discovery = match Discovery::new(files, exclude) {
            Ok(discovery) => discovery,
            Err(error) => {
                // Validation compiles the patterns, so this is not expected.
                error!(message = "New file patterns rejected; keeping the old ones.", %error);
                return;
            }
        };
        self.watcher = FsWatcher::start(
            discovery.watch_roots(),
            self.wake_tx.clone(),
            Arc::clone(&self.rescan),
            Arc::clone(&self.metrics),
        );
        self.timers = Timers::from(&config);
        info!(
            message = "File source reconfigured.",
            enabled = config.enabled,
            patterns = ?files,
        );
        self.server.reconfigure(config, discovery);
    }
}
