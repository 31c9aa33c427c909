//! The swarm: many simulated agents held connected to one collector (issue 7's
//! "1,000 concurrent simulated agents" scenario), to measure what a connection costs
//! the collector and what it sustains.
//!
//! [`run`] is async: call it inside a tokio runtime (one runtime, one task per
//! agent; `src/bin/swarm.rs` uses a single-threaded one so that the collector keeps
//! the machine's other core). Each agent ([`agent`]) speaks the real protocol with
//! its own agent id; the batches are shared, pre-compressed loghub payloads
//! ([`templates`]). The run has three phases, reported through a watch channel so a
//! caller can sample the collector at each ([`Phase`]):
//! 1. connecting: every agent connects, at most `connect_concurrency` handshakes at
//!    a time, and starts sending;
//! 2. holding: once all are connected (or `connect_deadline` has passed), the
//!    agents are held for `hold`, sending `events_per_sec` each in a batch every
//!    `batch_interval`;
//! 3. draining: no new batches; up to `drain` for the last acknowledgements, then
//!    every connection is closed.
//!
//! The collector must allow the connections: `server.max_connections` (default
//! 1024) above the agent count, or the surplus is answered 503, and an open-file
//! limit above that (docs/operations.md, "Limits"); `--spawn-collector` and the
//! harness's `agents-1000` scenario set both. Every simulated agent has its own id,
//! so `max_connections_per_agent` does not matter.

mod agent;
mod report;
pub mod stats;
pub mod templates;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use monitoring_common::protocol::Codec;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use report::SwarmReport;
use stats::{Counters, Histogram, Reasons};
use templates::Templates;

/// File descriptors the tool needs beside one per agent.
const SPARE_FDS: u64 = 256;

/// What to run.
#[derive(Debug, Clone)]
pub struct SwarmOptions {
    /// The collector's ingest endpoint, `ws://HOST:PORT/ingest`. The collector must
    /// trust agents by name (`[auth] mode = "none"`).
    pub url: String,
    /// Simulated agents. Default 1,000.
    pub agents: usize,
    /// Agent ids are this prefix and the agent's number (`swarm-0042`). Default
    /// `swarm-`.
    pub id_prefix: String,
    /// How long the agents are held once all are connected. Default 60 s.
    pub hold: Duration,
    /// Events per second of each agent. Default 1 (an idle-ish agent).
    pub events_per_sec: f64,
    /// Each agent sends one batch this often. Default 5 s.
    pub batch_interval: Duration,
    /// Payload codec. Default lz4 (the agent's default).
    pub codec: Codec,
    /// Batches one agent may have unacknowledged. Default 8 (the agent's default).
    pub max_in_flight: usize,
    /// Handshakes in progress at once. Default 64.
    pub connect_concurrency: usize,
    /// Limit on one connection attempt. Default 10 s.
    pub connect_timeout: Duration,
    /// How long to wait for every agent to connect before holding anyway. Default 60 s.
    pub connect_deadline: Duration,
    /// How long, after the hold, to wait for outstanding acknowledgements. Default 10 s.
    pub drain: Duration,
}

impl Default for SwarmOptions {
    fn default() -> Self {
        SwarmOptions {
            url: "ws://127.0.0.1:7400/ingest".into(),
            agents: 1000,
            id_prefix: "swarm-".into(),
            hold: Duration::from_secs(60),
            events_per_sec: 1.0,
            batch_interval: Duration::from_secs(5),
            codec: Codec::Lz4,
            max_in_flight: 8,
            connect_concurrency: 64,
            connect_timeout: Duration::from_secs(10),
            connect_deadline: Duration::from_secs(60),
            drain: Duration::from_secs(10),
        }
    }
}

impl SwarmOptions {
    /// Events in each batch: the rate times the interval, at least one.
    pub fn events_per_batch(&self) -> u32 {
        let n = (self.events_per_sec * self.batch_interval.as_secs_f64()).round();
        (n as u32).max(1)
    }

    /// Every problem with the options, at once.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.url.starts_with("ws://") {
            problems.push(format!(
                "url {} must be ws://HOST:PORT/ingest (the swarm does not speak TLS)",
                self.url
            ));
        }
        if !(1..=100_000).contains(&self.agents) {
            problems.push(format!("agents {} must be 1 to 100000", self.agents));
        }
        if !(self.events_per_sec > 0.0 && self.events_per_sec <= 1_000_000.0) {
            problems.push(format!(
                "events_per_sec {} must be above 0 and at most 1000000",
                self.events_per_sec
            ));
        }
        if self.batch_interval < Duration::from_millis(1) {
            problems.push("batch_interval must be at least 1 ms".into());
        }
        if self.events_per_batch() > 100_000 {
            problems.push(format!(
                "{} events per batch exceed the collector's default limit of 100000",
                self.events_per_batch()
            ));
        }
        for (name, n) in [
            ("max_in_flight", self.max_in_flight),
            ("connect_concurrency", self.connect_concurrency),
        ] {
            if n == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        if self.connect_timeout.is_zero() {
            problems.push("connect_timeout must be above 0".into());
        }
        problems
    }
}

/// How long [`Phase::Draining`] is shown before the agents stop.
const DRAINING_GRACE: Duration = Duration::from_millis(250);

/// Where a run is; sent on the watch channel of [`run_with_phases`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started.
    Idle,
    /// Agents are connecting (no connection is open yet when this is first sent).
    Connecting,
    /// The hold has started with this many agents connected.
    Holding {
        /// Connections open when the hold started.
        connected: usize,
    },
    /// The hold is over, with this many connections still open; acknowledgements
    /// are drained.
    Draining {
        /// Connections open when the hold ended.
        connected: usize,
    },
    /// Every agent has finished and closed.
    Done,
}

/// Runs the swarm described by `opts` and reports what it saw.
pub async fn run(opts: &SwarmOptions) -> anyhow::Result<SwarmReport> {
    let (phases, _rx) = watch::channel(Phase::Idle);
    run_with_phases(opts, &phases).await
}

/// Like [`run`], announcing each [`Phase`] on `phases` as it begins.
pub async fn run_with_phases(
    opts: &SwarmOptions,
    phases: &watch::Sender<Phase>,
) -> anyhow::Result<SwarmReport> {
    let problems = opts.validate();
    if !problems.is_empty() {
        bail!("invalid swarm options: {}", problems.join("; "));
    }
    raise_nofile(opts.agents as u64 + SPARE_FDS)?;
    let templates = Templates::build(&crate::loghub_events(), opts.events_per_batch(), opts.codec);
    let shared = Arc::new(agent::Shared {
        opts: opts.clone(),
        templates,
        counters: Counters::default(),
        latency: Histogram::default(),
        reasons: Reasons::default(),
        connect_permits: Semaphore::new(opts.connect_concurrency),
        ever_connected: AtomicUsize::new(0),
        live: AtomicUsize::new(0),
        connected_notify: Notify::new(),
        stop: CancellationToken::new(),
        abort: CancellationToken::new(),
    });

    let started = Instant::now();
    phases.send_replace(Phase::Connecting);
    let mut tasks = JoinSet::new();
    for i in 0..opts.agents {
        tasks.spawn(agent::run(i, Arc::clone(&shared)));
    }
    let connect_by = started + opts.connect_deadline;
    while shared.ever_connected.load(Ordering::Relaxed) < opts.agents {
        tokio::select! {
            () = shared.connected_notify.notified() => {}
            () = tokio::time::sleep_until(connect_by) => break,
        }
    }
    let all_connected =
        (shared.ever_connected.load(Ordering::Relaxed) == opts.agents).then(|| started.elapsed());

    let hold_start = Instant::now();
    let before = shared.counters.snapshot();
    phases.send_replace(Phase::Holding {
        connected: shared.live.load(Ordering::Relaxed),
    });
    tokio::time::sleep(opts.hold).await;
    let hold_end = Instant::now();
    let after = shared.counters.snapshot();
    let connected_at_end = shared.live.load(Ordering::Relaxed);
    phases.send_replace(Phase::Draining {
        connected: connected_at_end,
    });
    // Connections stay open a moment longer, so that a watcher polling the phase
    // (the harness reads the collector's memory here, every 20 ms) sees Draining
    // before a quick drain (acknowledged at once since TCP_NODELAY) turns it Done.
    tokio::time::sleep(DRAINING_GRACE).await;

    shared.stop.cancel();
    let mut outcomes = Vec::with_capacity(opts.agents);
    let drained = tokio::time::timeout(opts.drain, async {
        while let Some(joined) = tasks.join_next().await {
            outcomes.push(joined);
        }
    })
    .await;
    if drained.is_err() {
        shared.abort.cancel();
        while let Some(joined) = tasks.join_next().await {
            outcomes.push(joined);
        }
    }
    phases.send_replace(Phase::Done);
    let outcomes = outcomes
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .context("a simulated agent panicked")?;

    Ok(report::build(report::Inputs {
        opts,
        shared: &shared,
        outcomes: &outcomes,
        all_connected,
        hold_start,
        hold_end,
        before,
        after,
        connected_at_end,
        total: started.elapsed(),
    }))
}

/// Raises this process's soft RLIMIT_NOFILE to at least `needed` (within the hard
/// limit): each agent holds a socket.
fn raise_nofile(needed: u64) -> anyhow::Result<()> {
    let got = rlimit::increase_nofile_limit(needed).context("cannot raise RLIMIT_NOFILE")?;
    if got < needed {
        bail!(
            "RLIMIT_NOFILE is {got} (hard limit) but {needed} descriptors are needed; raise it (ulimit -Hn) or run fewer agents"
        );
    }
    Ok(())
}
