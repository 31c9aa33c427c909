//! The running agent: builds every component from the configuration, runs them, and
//! shuts them down in the order that keeps the delivery guarantee.
//!
//! ```text
//! file tailer ─┐
//! journald ────┤
//!              ├─► ring buffer ─► batcher ─► [disk spool] ─► transport ─► collector
//! host metrics ┘                                                │ acks
//!   ▲ SourceProgress ◄──────────────────────────────────────────┘
//! ```
//!
//! With `[buffer.disk] path` set, the spool sits between batcher and transport: a
//! batch's marks are applied once it is durably spooled, and the transport's
//! acknowledgements move the spool's own position instead (see `buffer::disk`).
//!
//! Shutdown (the `shutdown` token, SIGTERM in the binary): sources stop reading; the
//! buffer is closed once they have stopped; the batcher flushes what is left; the
//! transport delivers it and waits for acknowledgements until
//! `[agent] shutdown_timeout_secs` after the signal; then the tailer writes its final
//! checkpoints (which only cover acknowledged lines) and everything returns.
//!
//! Reload ([`run_reloadable`], SIGHUP in the binary): a new configuration
//! reconfigures the running file source in place and restarts the host metrics
//! source; the pipeline and the transport keep running (see [`crate::reload`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::buffer::RingBuffer;
use crate::buffer::disk::{self, SpoolOptions};
use crate::collectors::logs::file::FileReloader;
use crate::collectors::logs::journald::{self, JournaldError};
use crate::collectors::logs::{self, FileSourceError};
use crate::collectors::metrics::host;
use crate::collectors::sampled::SampledSources;
use crate::config::AgentConfig;
use crate::control::{self, ControlState};
use crate::memory::{self, TrimPolicy};
use crate::pipeline::{BatcherConfig, batcher};
use crate::reload;
use crate::telemetry::Telemetry;
use crate::transport::{self, Endpoint, TransportConfig, TransportStatus};

/// With a disk spool, how long a shutdown waits at most for the acknowledgements of
/// batches in flight (they stay in the spool either way).
const SPOOLED_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Batches between batcher and transport: enough to keep the socket busy while the
/// next batch is built, few enough that backpressure reaches the buffer at once.
const BATCH_CHANNEL: usize = 2;
/// Longest wait for the tailer's final checkpoint write after everything else ended.
const FINAL_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The control server's address could not be bound.
    #[error(
        "agent {agent_id}: cannot listen on {addr} for the control server ([control] listen): {source}"
    )]
    ControlBind {
        /// The agent.
        agent_id: String,
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The file source failed.
    #[error("agent {agent_id}: {source}")]
    Files {
        /// The agent.
        agent_id: String,
        /// The cause.
        source: FileSourceError,
    },
    /// The journald source failed.
    #[error("agent {agent_id}: {source}")]
    Journald {
        /// The agent.
        agent_id: String,
        /// The cause.
        source: JournaldError,
    },
    /// The disk spool could not be opened.
    #[error("agent {agent_id}: {source}")]
    Spool {
        /// The agent.
        agent_id: String,
        /// The cause.
        source: disk::SpoolError,
    },
    /// A pipeline task ended unexpectedly (a bug: it should only end on shutdown).
    #[error("agent {agent_id}: the {task} task ended unexpectedly{}", detail(.cause))]
    Task {
        /// The agent.
        agent_id: String,
        /// Which task.
        task: &'static str,
        /// A panic message or cancellation, if any.
        cause: Option<String>,
    },
}

fn detail(cause: &Option<String>) -> String {
    cause.as_ref().map(|c| format!(": {c}")).unwrap_or_default()
}

/// Runs the agent until `shutdown` is cancelled, then drains and returns.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    run_with(config, Arc::new(Telemetry::new()), shutdown).await
}

/// [`run`] with a given [`Telemetry`], so that a caller (a test) can watch the metrics.
pub async fn run_with(
    config: AgentConfig,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let (_, reloads) = mpsc::channel(1);
    run_reloadable(config, telemetry, shutdown, reloads).await
}

/// [`run_with`], also applying every (valid) configuration received on `reloads`:
/// what can change while running is applied, the rest keeps its running value and is
/// named in a warning (see [`reload::diff`]).
pub async fn run_reloadable(
    config: AgentConfig,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
    reloads: mpsc::Receiver<AgentConfig>,
) -> Result<(), AgentError> {
    let mut reloads = Some(reloads);
    let agent_id = config.agent_id();
    let stream_id: u64 = rand::random();
    let buffer = RingBuffer::new(
        config.buffer.max_events,
        config.buffer.when_full,
        telemetry.buffer.clone(),
    );
    let status = Arc::new(TransportStatus::default());
    let endpoint_urls = config.collector.endpoint_urls();
    info!(
        message = "Agent starting.",
        agent_id = %agent_id,
        endpoints = %endpoint_urls.join(" "),
        stream_id,
        version = env!("CARGO_PKG_VERSION"),
    );

    // The control server binds first, so that a taken port fails the start at once.
    let control_stop = CancellationToken::new();
    let control_task = if config.control.enabled {
        let addr = config.control.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AgentError::ControlBind {
                agent_id: agent_id.clone(),
                addr,
                source,
            })?;
        let state = ControlState {
            agent_id: agent_id.clone(),
            telemetry: telemetry.clone(),
            buffer: buffer.clone(),
            transport: status.clone(),
        };
        Some(tokio::spawn(control::serve(
            listener,
            state,
            control_stop.clone(),
        )))
    } else {
        None
    };

    let (batch_tx, batch_rx) = mpsc::channel(BATCH_CHANNEL);
    let b = &config.buffer;
    // With a spool, the batcher writes into it and its reader feeds the transport.
    let spool_stop = CancellationToken::new();
    let drain = CancellationToken::new();
    let (batch_rx, spool_tasks) = match SpoolOptions::from_config(&b.disk, b.when_full) {
        None => (batch_rx, None),
        Some(options) => {
            let dir = options.dir.clone();
            let metrics = telemetry.spool.clone();
            let spool = tokio::task::spawn_blocking(move || disk::open(options, metrics));
            let spool = match spool.await {
                Ok(Ok(spool)) => spool,
                Ok(Err(source)) => {
                    control_stop.cancel();
                    return Err(AgentError::Spool { agent_id, source });
                }
                Err(join) => {
                    control_stop.cancel();
                    return Err(AgentError::Task {
                        agent_id,
                        task: "spool open",
                        cause: Some(join.to_string()),
                    });
                }
            };
            info!(message = "Batches go through the disk spool.", dir = %dir.display());
            let (spooled_tx, spooled_rx) = mpsc::channel(BATCH_CHANNEL);
            let tasks = disk::run::spawn(
                spool,
                batch_rx,
                spooled_tx,
                drain.clone(),
                spool_stop.clone(),
            );
            (spooled_rx, Some(tasks))
        }
    };
    let mut batcher_task = Some(tokio::spawn(batcher::run(
        buffer.clone(),
        BatcherConfig {
            max_batch_events: b.max_batch_events,
            max_batch_bytes: b.max_batch_bytes,
            flush_interval: Duration::from_millis(b.flush_interval_ms),
            codec: b.compression,
            compression_level: b.compression_level,
            stream_id,
            first_sequence: 1,
        },
        batch_tx,
        telemetry.batcher.clone(),
        status.delivery_idle(),
    )));
    let mut transport_task = Some(tokio::spawn(transport::run(
        TransportConfig {
            endpoints: endpoint_urls
                .into_iter()
                .map(|url| Endpoint {
                    url,
                    agent_id: agent_id.clone(),
                    auth_token: config.collector.token().map(str::to_string),
                    connect_timeout: Duration::from_secs(config.collector.connect_timeout_secs),
                    tls: config.collector.tls.clone(),
                })
                .collect(),
            max_in_flight: config.collector.max_in_flight,
            // With a spool, everything unacknowledged is already safe on disk and is
            // sent after a restart: waiting for acknowledgements only saves
            // duplicates, so it is kept short (a dead collector must not hold the
            // shutdown for the whole timeout).
            shutdown_timeout: match spool_tasks {
                Some(_) => config.shutdown_timeout().min(SPOOLED_SHUTDOWN_GRACE),
                None => config.shutdown_timeout(),
            },
        },
        batch_rx,
        drain.clone(),
        status.clone(),
        telemetry.transport.clone(),
    )));

    let stop_reading = CancellationToken::new();
    let stop_all = CancellationToken::new();
    let trimmer = tokio::spawn(memory::run(
        telemetry.batcher.events.clone(),
        TrimPolicy::default(),
        stop_all.clone(),
    ));
    let spawn_files = |config: &AgentConfig| {
        let (reloader, reloads) = FileReloader::channel();
        let task = tokio::spawn(logs::file::run_reloadable(
            config.collectors.logs.clone(),
            config.state.dir.clone(),
            buffer.clone(),
            telemetry.files.clone(),
            stop_reading.clone(),
            stop_all.clone(),
            reloads,
        ));
        (task, reloader)
    };
    if config.collectors.metrics.enabled {
        host::announce(&config.agent.tags, &buffer);
    }
    let (task, mut files_reloader) = spawn_files(&config);
    let mut files_task: Option<JoinHandle<Result<(), FileSourceError>>> = Some(task);
    // The journald source is not reloaded: a change of its table needs a restart.
    let mut journald_task = journald::spawn(
        &config.collectors.logs,
        &config.state.dir,
        buffer.clone(),
        telemetry.journald.clone(),
        &stop_reading,
        &stop_all,
    );
    let spawn_sampled =
        |config: &AgentConfig| SampledSources::spawn(config, &buffer, &telemetry, &stop_reading);
    let mut sampled = spawn_sampled(&config);
    let mut running = config;

    // Run until told to stop, or until something fails that the agent cannot do without.
    let task_error = |task: &'static str, cause: Option<String>| AgentError::Task {
        agent_id: agent_id.clone(),
        task,
        cause,
    };
    let failure: Option<AgentError> = loop {
        tokio::select! {
            () = shutdown.cancelled() => break None,
            r = join_opt(&mut files_task) => {
                files_task = None;
                match r {
                    // A disabled source returns at once; nothing is wrong.
                    Ok(Ok(())) => continue,
                    Ok(Err(source)) => break Some(AgentError::Files { agent_id: agent_id.clone(), source }),
                    Err(join) => break Some(task_error("file source", Some(join.to_string()))),
                }
            }
            r = join_opt(&mut journald_task) => {
                journald_task = None;
                match r {
                    Ok(Ok(())) => continue,
                    Ok(Err(source)) => break Some(AgentError::Journald { agent_id: agent_id.clone(), source }),
                    Err(join) => break Some(task_error("journald source", Some(join.to_string()))),
                }
            }
            r = join_opt(&mut batcher_task) => {
                batcher_task = None;
                break Some(task_error("batcher", r.err().map(|e| e.to_string())));
            }
            r = join_opt(&mut transport_task) => {
                transport_task = None;
                break Some(task_error("transport", r.err().map(|e| e.to_string())));
            }
            new = recv_opt(&mut reloads) => {
                let Some(new) = new else {
                    reloads = None;
                    continue;
                };
                let changes = reload::diff(&running, &new);
                reload::log(&changes);
                let merged = reload::merge(&running, &new);
                if changes.logs() {
                    let logs = merged.collectors.logs.clone();
                    // A source disabled at start has returned: start one now.
                    if files_task.is_none() || !files_reloader.reload(logs) {
                        let (task, reloader) = spawn_files(&merged);
                        files_task = Some(task);
                        files_reloader = reloader;
                    }
                }
                if changes.sampled() {
                    sampled.stop().await;
                    sampled = spawn_sampled(&merged);
                }
                running = merged;
                reload::count(&telemetry, "ok");
            }
        }
    };
    let config = running;
    match &failure {
        None => info!(
            message = "Shutting down: sources stop, the rest is flushed and acknowledged.",
            timeout_secs = config.agent.shutdown_timeout_secs,
        ),
        Some(error) => error!(message = "Agent failed; shutting down.", %error),
    }

    // 1. Sources stop reading; the deadline for delivery starts now.
    drain.cancel();
    stop_reading.cancel();
    sampled.stop().await;
    // 2. Close the buffer: what is in it still goes out; a tailer send still waiting
    //    gets `Closed` and that line is read again next time (it was never acknowledged).
    buffer.close();
    // 3. The batcher flushes and ends; the transport delivers and waits for acks.
    if let Some(Err(error)) = join_if(batcher_task).await {
        error!(message = "Batcher task failed.", %error);
    }
    let report = match join_if(transport_task).await {
        Some(Ok(report)) => Some(report),
        Some(Err(error)) => {
            error!(message = "Transport task failed.", %error);
            None
        }
        None => None,
    };
    // The spool stops reading and writes its ledger (what is not acknowledged stays in
    // it and is sent after a restart).
    spool_stop.cancel();
    if let Some(tasks) = spool_tasks {
        tasks.join().await;
    }
    // 4. Only now the tailer writes its final checkpoints: they cover every ack received.
    stop_all.cancel();
    drop(trimmer.await);
    if let Some(task) = files_task {
        match tokio::time::timeout(FINAL_CHECKPOINT_TIMEOUT, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => error!(message = "File source failed while stopping.", %error),
            Ok(Err(error)) => error!(message = "File source task failed while stopping.", %error),
            Err(_) => warn!(
                message = "File source did not write its final checkpoints in time; lines since the last checkpoint will be read again.",
            ),
        }
    }
    if let Some(task) = journald_task {
        match tokio::time::timeout(FINAL_CHECKPOINT_TIMEOUT, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => {
                error!(message = "Journald source failed while stopping.", %error)
            }
            Ok(Err(error)) => {
                error!(message = "Journald source task failed while stopping.", %error)
            }
            Err(_) => warn!(
                message = "Journald source did not write its final checkpoint in time; entries since the last checkpoint will be read again.",
            ),
        }
    }
    control_stop.cancel();
    match join_if(control_task).await {
        Some(Ok(Err(error))) => error!(message = "Control server failed.", %error),
        Some(Err(error)) => error!(message = "Control server task failed.", %error),
        Some(Ok(Ok(()))) | None => {}
    }
    if let Some(report) = report {
        info!(
            message = "Agent stopped.",
            unacknowledged_batches = report.unacked_batches,
            unacknowledged_events = report.unacked_events,
        );
    }
    failure.map_or(Ok(()), Err)
}

/// Receives from an optional channel; pending forever when there is none.
async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Awaits an optional task; `None` when there is none.
async fn join_if<T>(task: Option<JoinHandle<T>>) -> Option<Result<T, tokio::task::JoinError>> {
    match task {
        Some(handle) => Some(handle.await),
        None => None,
    }
}

/// Awaits an optional task; pending forever when there is none.
async fn join_opt<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}
