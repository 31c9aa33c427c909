//! `swarm`: holds many simulated agents connected to one collector and prints what
//! they saw, and, given the collector's pid (or starting the collector itself), its
//! peak RSS, RSS per connection and CPU time from /proc.
//!
//! ```text
//! cargo build --release -p monitoring-collector -p monitoring-benches --bin swarm
//! target/release/swarm --spawn-collector     # the release collector beside it
//! target/release/swarm --url ws://127.0.0.1:7400/ingest --collector-pid PID
//! ```

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use monitoring_benches::harness::procs::{self, Usage as ProcSample};
use monitoring_benches::harness::stack::{Collector, Store};
use monitoring_benches::swarm::{self, Phase, SwarmOptions, SwarmReport};
use monitoring_common::protocol::Codec;
use tokio::sync::watch;

/// How often the collector's /proc files are read.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Parser)]
#[command(about = "Many simulated agents against one collector (issue 7's swarm scenario)")]
struct Args {
    /// The collector's ingest endpoint (its [auth] mode must be "none").
    #[arg(
        long,
        default_value = "ws://127.0.0.1:7400/ingest",
        conflicts_with = "spawn_collector"
    )]
    url: String,
    /// Start the release collector beside this binary (sqlite in a temporary
    /// directory, `max_connections` above the agents) and measure it.
    #[arg(long)]
    spawn_collector: bool,
    /// Sample this collector process's RSS and CPU from /proc.
    #[arg(long, value_name = "PID", conflicts_with = "spawn_collector")]
    collector_pid: Option<u32>,
    /// Keep the spawned collector's directory (config, store, log) after the run.
    #[arg(long, requires = "spawn_collector")]
    keep_collector_dir: bool,
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Seconds the agents are held once all are connected.
    #[arg(long, default_value_t = 60)]
    hold_secs: u64,
    /// Events per second of each agent.
    #[arg(long, default_value_t = 1.0)]
    events_per_sec: f64,
    /// Milliseconds between one agent's batches.
    #[arg(long, default_value_t = 5000)]
    batch_interval_ms: u64,
    /// Payload codec: none, snappy, lz4, gzip, zstd.
    #[arg(long, default_value = "lz4")]
    codec: Codec,
    /// Unacknowledged batches per agent.
    #[arg(long, default_value_t = 8)]
    max_in_flight: usize,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Seconds to wait for every agent to connect before holding anyway.
    #[arg(long, default_value_t = 60)]
    connect_deadline_secs: u64,
    /// Seconds to wait for outstanding acks after the hold.
    #[arg(long, default_value_t = 10)]
    drain_secs: u64,
    /// Runtime worker threads; 1 runs every agent on this thread.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut opts = SwarmOptions {
        url: args.url.clone(),
        agents: args.agents,
        hold: Duration::from_secs(args.hold_secs),
        events_per_sec: args.events_per_sec,
        batch_interval: Duration::from_millis(args.batch_interval_ms),
        codec: args.codec,
        max_in_flight: args.max_in_flight,
        connect_concurrency: args.connect_concurrency,
        connect_deadline: Duration::from_secs(args.connect_deadline_secs),
        drain: Duration::from_secs(args.drain_secs),
        ..SwarmOptions::default()
    };
    // Raised before the collector starts, so that it inherits the limit too.
    rlimit::increase_nofile_limit(2 * args.agents as u64 + 1024)
        .context("cannot raise RLIMIT_NOFILE")?;
    let mut dir = tempfile::Builder::new()
        .prefix("swarm-collector-")
        .tempdir()?;
    dir.disable_cleanup(args.keep_collector_dir);
    let spawned = if args.spawn_collector {
        // Connections beyond the agents: reconnects whose old connection the
        // collector has not seen close yet.
        let keys = format!("max_connections = {}", args.agents + 256);
        let c = Collector::start(dir.path(), Store::Sqlite, &keys)?;
        eprintln!(
            "collector pid {} at {} (directory {})",
            c.proc.pid(),
            c.endpoint,
            dir.path().display()
        );
        opts.url = c.endpoint.clone();
        Some(c)
    } else {
        None
    };
    let pid = spawned
        .as_ref()
        .map(|c| c.proc.pid())
        .or(args.collector_pid);
    let (phases, phase_rx) = watch::channel(Phase::Idle);
    let sampler = pid.map(|pid| tokio::spawn(sample(pid, phase_rx)));
    let report = swarm::run_with_phases(&opts, &phases).await;
    let usage = match sampler {
        Some(task) => Some(task.await.context("the sampler panicked")??),
        None => None,
    };
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            if let Some(c) = &spawned {
                eprintln!("collector log:\n{}", tail(&c.proc.log(), 40));
            }
            return Err(error);
        }
    };
    println!("{report}");
    if let Some(usage) = usage {
        print_usage(&usage, &report);
    }
    // The load tool's own cost, to show it left the machine to the collector.
    if let Ok(me) = procs::usage(std::process::id()) {
        println!(
            "| swarm tool itself: peak RSS / CPU | {:.1} MiB / {:.2} s |",
            me.peak_rss as f64 / MIB,
            me.cpu_seconds
        );
    }
    if let Some(c) = &spawned {
        let log = c.proc.log();
        let warnings = log.lines().filter(|l| l.contains("WARN")).count();
        let errors = log.lines().filter(|l| l.contains("ERROR")).count();
        println!("| collector log: warnings / errors | {warnings} / {errors} |");
        if errors > 0 {
            eprintln!("collector log (last lines):\n{}", tail(&log, 20));
        }
    }
    Ok(())
}

/// The collector's readings at each phase of the run.
#[derive(Debug, Default)]
struct Usage {
    before: Option<ProcSample>,
    hold_start: Option<ProcSample>,
    hold_end: Option<ProcSample>,
    /// Connections open at the end of the hold.
    connected: usize,
    last: Option<ProcSample>,
    peak_rss: u64,
}

async fn sample(pid: u32, mut phases: watch::Receiver<Phase>) -> anyhow::Result<Usage> {
    let mut usage = Usage::default();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        let now = procs::usage(pid)?;
        usage.peak_rss = usage.peak_rss.max(now.rss);
        usage.last = Some(now);
        match *phases.borrow_and_update() {
            Phase::Idle => {}
            Phase::Connecting => {
                usage.before.get_or_insert(now);
            }
            Phase::Holding { .. } => {
                usage.hold_start.get_or_insert(now);
            }
            Phase::Draining { connected } => {
                usage.connected = connected;
                usage.hold_end.get_or_insert(now);
            }
            Phase::Done => return Ok(usage),
        }
        tokio::select! {
            _ = tick.tick() => {}
            changed = phases.changed() => if changed.is_err() { return Ok(usage) },
        }
    }
}

fn print_usage(u: &Usage, report: &SwarmReport) {
    let (Some(before), Some(start), Some(end), Some(last)) =
        (u.before, u.hold_start, u.hold_end, u.last)
    else {
        println!("| collector | not sampled through every phase |");
        return;
    };
    let mib = |b: u64| b as f64 / MIB;
    let per_conn = if u.connected > 0 {
        (end.rss as f64 - before.rss as f64) / u.connected as f64 / 1024.0
    } else {
        0.0
    };
    let hold_cpu = (end.cpu_seconds - start.cpu_seconds).max(0.0);
    println!(
        "| collector RSS before / at end of hold / peak (VmHWM) | {:.1} / {:.1} / {:.1} MiB |",
        mib(before.rss),
        mib(end.rss),
        mib(last.peak_rss.max(u.peak_rss))
    );
    println!(
        "| collector RSS per connection ((end of hold - before) / {}) | {per_conn:.1} KiB |",
        u.connected
    );
    println!(
        "| collector CPU: whole run / during the hold | {:.2} s / {hold_cpu:.2} s ({:.1}% of a core) |",
        (last.cpu_seconds - before.cpu_seconds).max(0.0),
        100.0 * hold_cpu / report.hold.as_secs_f64().max(1e-9)
    );
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
