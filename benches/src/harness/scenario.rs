//! The scenarios issue 7 names, and how each is run and measured.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::generator::{self, Load, Written};
use super::procs::Usage;
use super::report::Row;
use super::stack::{Agent, AgentSetup, Collector, Store};
use super::verify::{self, Counts, Tail};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = MIB * 1024.0;

/// One benchmark scenario.
#[derive(Debug, Clone)]
pub enum Scenario {
    /// Lines written into files as fast as possible, shipped to a collector.
    Throughput {
        /// Where the collector puts them.
        store: Store,
        /// How many files the lines are spread over.
        files: usize,
        /// The agent's codec, with `-N` for a level other than its default.
        codec: &'static str,
        /// Lines in all.
        lines: u64,
    },
    /// Lines at a fixed rate into one file; each line timed from write to commit.
    Latency {
        /// The sqlite store, or none (the pipeline alone).
        store: Store,
        /// Lines per second.
        rate: u64,
        /// For how long.
        seconds: u64,
        /// `flush_interval_ms`, or the default.
        flush_interval_ms: Option<u64>,
    },
    /// Simulated agents ([`crate::swarm`]) held against one collector (sqlite).
    Swarm {
        /// How many.
        agents: usize,
        /// How long they are held once connected.
        seconds: u64,
    },
    /// An agent with the default collectors and nothing to tail, for a while.
    Idle {
        /// How long it is watched (after a 5 s warm-up).
        seconds: u64,
    },
}

/// The scenarios by name, as `monitoring-bench --list` shows them. `scale`
/// multiplies line counts and durations (1.0 = the figures in BENCHMARKS.md).
pub fn all(scale: f64) -> Vec<(String, Scenario)> {
    let lines = |n: f64| ((n * scale) as u64).max(1_000);
    let secs = |n: f64| ((n * scale) as u64).max(2);
    let mut list = Vec::new();
    for codec in ["none", "snappy", "lz4", "gzip", "zstd", "zstd-6"] {
        list.push((
            format!("blackhole-1file-{codec}"),
            Scenario::Throughput {
                store: Store::Blackhole,
                files: 1,
                codec,
                lines: lines(2_000_000.0),
            },
        ));
    }
    list.push((
        "blackhole-100files-lz4".into(),
        Scenario::Throughput {
            store: Store::Blackhole,
            files: 100,
            codec: "lz4",
            lines: lines(2_000_000.0),
        },
    ));
    for files in [1, 100] {
        list.push((
            format!("sqlite-{files}file{}-lz4", if files > 1 { "s" } else { "" }),
            Scenario::Throughput {
                store: Store::Sqlite,
                files,
                codec: "lz4",
                lines: lines(300_000.0),
            },
        ));
    }
    for (store_name, store) in [("sqlite", Store::SqliteTailed), ("nostore", Store::Tailed)] {
        for (flush_name, flush_interval_ms) in [("default-flush", None), ("flush-10ms", Some(10))] {
            list.push((
                format!("latency-10k-{store_name}-{flush_name}"),
                Scenario::Latency {
                    store,
                    rate: 10_000,
                    seconds: secs(30.0),
                    flush_interval_ms,
                },
            ));
        }
    }
    list.push((
        "agents-1000".into(),
        Scenario::Swarm {
            agents: 1000,
            seconds: secs(60.0),
        },
    ));
    list.push((
        "idle-agent".into(),
        Scenario::Idle {
            seconds: secs(60.0),
        },
    ));
    list
}

/// Runs `scenario` in the empty directory `dir`.
pub fn run(name: &str, scenario: &Scenario, dir: &Path) -> Result<Row> {
    match *scenario {
        Scenario::Throughput {
            store,
            files,
            codec,
            lines,
        } => shipped(name, dir, store, files, codec, lines, None, None),
        Scenario::Latency {
            store,
            rate,
            seconds,
            flush_interval_ms,
        } => shipped(
            name,
            dir,
            store,
            1,
            "lz4",
            rate * seconds,
            Some(rate),
            flush_interval_ms,
        ),
        Scenario::Swarm { agents, seconds } => swarm(name, dir, agents, seconds),
        Scenario::Idle { seconds } => idle(name, dir, seconds),
    }
}

/// Usage between two readings.
struct Spent {
    cpu_seconds: f64,
    peak_rss: u64,
}

fn spent(before: Usage, after: Usage) -> Spent {
    Spent {
        cpu_seconds: after.cpu_seconds - before.cpu_seconds,
        peak_rss: after.peak_rss,
    }
}

#[allow(clippy::too_many_arguments)]
fn shipped(
    name: &str,
    dir: &Path,
    store: Store,
    files: usize,
    codec: &'static str,
    lines: u64,
    rate: Option<u64>,
    flush_interval_ms: Option<u64>,
) -> Result<Row> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let paths: Vec<_> = (0..files)
        .map(|i| logs.join(format!("app-{i:03}.log")))
        .collect();
    for p in &paths {
        std::fs::File::create(p)?;
    }
    let corpus: Vec<String> = crate::loghub_lines().into_iter().map(|(_, l)| l).collect();
    let collector = Collector::start(dir, store, "")?;
    let mut agent = Agent::start(
        dir,
        &collector.endpoint,
        &AgentSetup {
            codec,
            flush_interval_ms,
            files: Some(logs.join("*.log").display().to_string()),
        },
    )?;
    agent.wait_connected()?;
    // Give it a moment to find every file before the clock starts.
    std::thread::sleep(Duration::from_millis(500));
    let tail = match store {
        Store::SqliteTailed | Store::Tailed => Some(Tail::start(&Store::sink_file(dir), lines)?),
        Store::Blackhole | Store::Sqlite => None,
    };
    let (agent0, collector0) = (agent.proc.usage()?, collector.proc.usage()?);
    let load = Load {
        files: paths,
        lines,
        rate,
    };
    let writer = std::thread::spawn(move || generator::write(&load, corpus));
    // Long enough for the slowest store at its slowest, short enough to end a hang.
    let budget = Duration::from_secs(120 + lines / 2_000);
    let begun = Instant::now();
    let done = loop {
        let stored = collector.logs_stored()?;
        if stored >= lines {
            break Instant::now();
        }
        if begun.elapsed() > budget {
            bail!("{name}: {stored} of {lines} lines stored after {budget:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let written: Written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the generator panicked"))??;
    let (agent1, collector1) = (agent.proc.usage()?, collector.proc.usage()?);
    let uncompressed = agent.metric("monitoring_agent_batch_uncompressed_bytes_total")?;
    let compressed = agent.metric("monitoring_agent_batch_compressed_bytes_total")?;
    let batches = agent.metric("monitoring_agent_transport_acked_batches_total")?;
    agent.proc.stop(Duration::from_secs(30))?;
    let collector_log = collector.proc.stop(Duration::from_secs(60))?;

    let elapsed = (done - written.started).as_secs_f64();
    let gib = written.bytes as f64 / GIB;
    let (a, c) = (spent(agent0, agent1), spent(collector0, collector1));
    let mut row = Row {
        name: name.into(),
        events: written.lines,
        events_per_sec: Some(written.lines as f64 / elapsed),
        mib_per_sec: Some(written.bytes as f64 / MIB / elapsed),
        agent_cpu_per_gib: Some(a.cpu_seconds / gib),
        collector_cpu_per_gib: Some(c.cpu_seconds / gib),
        agent_cpu_percent: Some(100.0 * a.cpu_seconds / elapsed),
        collector_cpu_percent: Some(100.0 * c.cpu_seconds / elapsed),
        agent_peak_mib: Some(a.peak_rss as f64 / MIB),
        collector_peak_mib: Some(c.peak_rss as f64 / MIB),
        reduction_percent: (uncompressed > 0.0).then(|| 100.0 * (1.0 - compressed / uncompressed)),
        ..Row::default()
    };
    match store {
        Store::Blackhole => {
            let (counts, exact) = verify::blackhole(&collector_log, lines, written.checksum)?;
            if !exact {
                row.note = "CHECKSUM MISMATCH: lines lost or repeated".into();
            }
            row.counts = Some(counts);
        }
        Store::Sqlite => {
            let tally = verify::sqlite(&dir.join("store"), lines)?;
            row.counts = Some(tally.counts());
        }
        Store::SqliteTailed | Store::Tailed => {
            let (tally, mut latencies) = tail.context("no tail")?.finish()?;
            latencies.sort_unstable();
            let ms = |q: f64| verify::quantile(&latencies, q) as f64 / 1_000.0;
            row.latency_ms = Some((ms(0.5), ms(0.99), ms(1.0)));
            row.counts = Some(tally.counts());
            // At a fixed rate the throughput is the rate: say what was asked.
            row.note = format!("{} lines/s asked", rate.unwrap_or(0));
        }
    }
    if row.counts.is_some_and(|c| c != Counts::default()) {
        row.note = format!("LOST OR REPEATED LINES {}", row.note);
    }
    let per_batch = written.lines as f64 / batches.max(1.0);
    let batches = format!("{batches} batches of {per_batch:.0} lines");
    row.note = if row.note.is_empty() {
        batches
    } else {
        format!("{}; {batches}", row.note)
    };
    Ok(row)
}

fn idle(name: &str, dir: &Path, seconds: u64) -> Result<Row> {
    let collector = Collector::start(dir, Store::Sqlite, "")?;
    let mut agent = Agent::start(
        dir,
        &collector.endpoint,
        &AgentSetup {
            codec: "lz4",
            flush_interval_ms: None,
            files: None,
        },
    )?;
    agent.wait_connected()?;
    std::thread::sleep(Duration::from_secs(5));
    let before = agent.proc.usage()?;
    let mut peak_now = before;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        agent.proc.check_alive()?;
        let now = agent.proc.usage()?;
        if now.rss > peak_now.rss {
            peak_now = now;
        }
    }
    let after = agent.proc.usage()?;
    let elapsed = start.elapsed().as_secs_f64();
    let read = agent.metric("monitoring_agent_events_read_total")?;
    agent.proc.stop(Duration::from_secs(30))?;
    collector.proc.stop(Duration::from_secs(30))?;
    Ok(Row {
        name: name.into(),
        events: read as u64,
        agent_cpu_percent: Some(100.0 * (after.cpu_seconds - before.cpu_seconds) / elapsed),
        agent_peak_mib: Some(after.peak_rss as f64 / MIB),
        note: format!(
            "{seconds} s watched; RSS at most {:.1} MiB after warm-up, of which {:.1} MiB \
             anonymous (the rest: pages of the binary and libraries); default collectors",
            peak_now.rss as f64 / MIB,
            peak_now.rss_anon as f64 / MIB,
        ),
        ..Row::default()
    })
}

fn swarm(name: &str, dir: &Path, agents: usize, seconds: u64) -> Result<Row> {
    let collector = Collector::start(
        dir,
        Store::Sqlite,
        &format!("max_connections = {}", agents + 256),
    )?;
    let before = collector.proc.usage()?;
    let options = crate::swarm::SwarmOptions {
        url: collector.endpoint.clone(),
        agents,
        hold: Duration::from_secs(seconds),
        ..crate::swarm::SwarmOptions::default()
    };
    let (phases, mut phase) = tokio::sync::watch::channel(crate::swarm::Phase::Idle);
    let pid = collector.proc.pid();
    // The collector's memory with every agent still connected, read as the hold ends.
    let watcher = std::thread::spawn(move || -> Result<Option<Usage>> {
        loop {
            match *phase.borrow_and_update() {
                crate::swarm::Phase::Draining { .. } => {
                    return Ok(Some(super::procs::usage(pid)?));
                }
                crate::swarm::Phase::Done => return Ok(None),
                _ => {}
            }
            if phase.has_changed().is_err() {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(crate::swarm::run_with_phases(&options, &phases))?;
    drop(phases);
    let held = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("the watcher panicked"))??
        .context("the swarm never reached the end of its hold")?;
    let after = collector.proc.usage()?;
    collector.proc.stop(Duration::from_secs(30))?;
    let hold = report.hold.as_secs_f64();
    let per_connection = (held.rss.saturating_sub(before.rss)) as f64 / agents as f64 / 1024.0;
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    let t = &report.totals;
    Ok(Row {
        name: name.into(),
        events: t.events_acked,
        events_per_sec: Some(report.hold_events_per_sec()),
        collector_cpu_percent: Some(
            100.0 * (after.cpu_seconds - before.cpu_seconds) / report.total.as_secs_f64(),
        ),
        collector_peak_mib: Some(after.peak_rss as f64 / MIB),
        latency_ms: Some((ms(report.ack_p50), ms(report.ack_p99), ms(report.ack_max))),
        note: format!(
            "{} of {agents} held for {hold:.0} s; collector RSS {:.1} MiB before, {:.1} MiB with \
             all connected ({per_connection:.1} KiB per connection); {} events sent, {} acked, \
             {} retry-later answers, {} batches unacknowledged at the end; latency is send to ack",
            report.held,
            before.rss as f64 / MIB,
            held.rss as f64 / MIB,
            t.events_sent,
            t.events_acked,
            t.retry_later,
            report.unacked_batches,
        ),
        ..Row::default()
    })
}
