//! Several collectors behind one agent (`[collector] endpoints`): which collector the
//! agent is connected to, the tally of every `seq=` over several collectors' REST
//! APIs, and the failover scenario (SIGKILL the collector the agent uses, mid-stream,
//! twice), written once so that it runs on any store: separate SQLite stores, or one
//! store the collectors share (PostgreSQL, ClickHouse).

use std::sync::Arc;

use crate::*;

/// Where the collectors of a test keep their events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stores {
    /// Each collector its own store (SQLite): a line is stored on every collector
    /// it was delivered to, so the union of all their APIs is what arrived, and a
    /// batch resent after a failover may be stored on both (duplicates).
    Separate,
    /// One store behind every collector (PostgreSQL, ClickHouse): any one API shows
    /// everything, and a resent batch is recognised (no duplicates expected).
    Shared,
}

impl Agent {
    /// Like [`Agent::start`], shipping to `endpoints` in order of preference.
    pub fn start_endpoints(
        dir: &Path,
        id: &str,
        endpoints: &[String],
        opts: &AgentOptions,
    ) -> Result<Agent> {
        let list: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
        let keys = format!("endpoints = [{}]", list.join(", "));
        Agent::start_with_collector(dir, id, &keys, opts)
    }

    /// The index in `collectors` of the one the agent is connected to now, from its
    /// `monitoring_agent_collector_connected{endpoint}`; `None` when it is not
    /// connected or its control server does not answer.
    pub fn connected_to(&self, collectors: &[Collector]) -> Option<usize> {
        let scrape = Scrape::agent(self).ok()?;
        collectors.iter().position(|c| {
            scrape.value(
                "monitoring_agent_collector_connected",
                &[("endpoint", &c.endpoint())],
            ) == Some(1.0)
        })
    }

    /// Waits until the agent is connected to `collectors[index]`.
    pub fn wait_connected_to(
        &self,
        collectors: &[Collector],
        index: usize,
        timeout: Duration,
    ) -> Result<()> {
        wait_until(
            &format!("the agent connected to collector {index}"),
            timeout,
            || self.connected_to(collectors) == Some(index),
        )
        .with_context(|| format!("agent log:\n{}", self.log()))
    }
}

/// Every log message stored, over `collectors`: all of them with separate stores,
/// the first one with a shared store (every API shows the same rows).
pub fn messages_over(collectors: &[Collector], stores: Stores) -> Result<Vec<String>> {
    let read = match stores {
        Stores::Separate => collectors,
        Stores::Shared => &collectors[..collectors.len().min(1)],
    };
    let mut all = Vec::new();
    for c in read {
        all.extend(c.all_log_messages()?);
    }
    Ok(all)
}

/// Like [`wait_for_all`], over several collectors ([`messages_over`]).
pub fn wait_for_all_over(
    collectors: &[Collector],
    stores: Stores,
    expected: u64,
    timeout: Duration,
) -> Result<Tally> {
    let deadline = Instant::now() + timeout;
    loop {
        let t = tally(&messages_over(collectors, stores)?, expected);
        if t.missing.is_empty() || Instant::now() > deadline {
            return Ok(t);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// What [`run_failover`] counted.
#[derive(Debug)]
pub struct FailoverOutcome {
    /// The union over the collectors.
    pub tally: Tally,
    /// `seq=` lines each collector's API shows (duplicates included; with a shared
    /// store every collector shows them all).
    pub per_collector: Vec<usize>,
    /// How long the agent took to reach the other collector after each kill.
    pub failovers: Vec<Duration>,
}

/// The writer's load: 30 lines every 10 ms, up to 3,000 lines a second.
const LINES_PER_TICK: u64 = 30;
const TICK: Duration = Duration::from_millis(10);
/// Writing between two faults.
const PHASE: Duration = Duration::from_secs(3);
/// Longest a failover, a restart or the final delivery may take.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(30);
const DELIVERY_DEADLINE: Duration = Duration::from_secs(90);

/// One agent shipping a file written without pause to `collectors` (two, already
/// started, in that order in `endpoints`): the collector it is connected to is killed
/// with SIGKILL mid-stream, the agent must reach the other one; the killed one is
/// restarted, and the agent must stay where it is; then that one is killed and the
/// agent must come back. Both run again at the end and every line is counted over
/// them as `stores` says. Prints the counts; the caller asserts on them.
pub fn run_failover(
    name: &str,
    dir: &Path,
    collectors: &mut [Collector; 2],
    stores: Stores,
) -> Result<FailoverOutcome> {
    let logs = dir.join(format!("logs-{name}"));
    std::fs::create_dir_all(&logs)?;
    let endpoints: Vec<String> = collectors.iter().map(Collector::endpoint).collect();
    let opts = AgentOptions {
        files: vec![format!("{}/app.log*", logs.display())],
        ..AgentOptions::default()
    };
    let agent = Agent::start_endpoints(dir, name, &endpoints, &opts)?;
    agent.wait_connected_to(collectors, 0, FAILOVER_DEADLINE)?;
    let writer = ContinuousWriter::start(
        &logs.join("app.log"),
        Arc::new(loghub_lines()),
        LINES_PER_TICK,
        TICK,
    )?;
    let started = Instant::now();
    let mut failovers = Vec::new();
    let mut kills_in_flight = Vec::new();
    // The first kill hits collector 0, the second collector 1.
    for victim in [0, 1] {
        std::thread::sleep(PHASE);
        let other = 1 - victim;
        if agent.connected_to(collectors) != Some(victim) {
            bail!(
                "{name}: before kill {victim} the agent is on {:?}, not on collector {victim}; agent log:\n{}",
                agent.connected_to(collectors),
                agent.log()
            );
        }
        let in_flight = wait_for_in_flight(&agent, Duration::from_secs(5));
        let killed = Instant::now();
        collectors[victim].kill();
        kills_in_flight.push(in_flight);
        agent.wait_connected_to(collectors, other, FAILOVER_DEADLINE)?;
        failovers.push(killed.elapsed());
        std::thread::sleep(PHASE);
        collectors[victim].restart()?;
    }
    // Back on collector 0 (restarted after the first kill), both running: a last
    // stretch of writing before counting.
    std::thread::sleep(PHASE);
    let (lines, _) = writer.finish()?;
    let wrote_for = started.elapsed();
    let tally = wait_for_all_over(collectors, stores, lines, DELIVERY_DEADLINE)?;
    let per_collector = collectors
        .iter()
        .map(|c| Ok(tally_lines(&c.all_log_messages()?)))
        .collect::<Result<Vec<usize>>>()?;
    println!(
        "{name}: expected {} lost {} duplicates {} ({stores:?} stores) written over {wrote_for:?}\n  \
         failovers took {failovers:?}, killed with {kills_in_flight:?} batches in flight; \
         stored per collector {per_collector:?}\n  \
         agent: failures by endpoint {:?}, resent batches (reconnect) {}",
        tally.expected,
        tally.missing.len(),
        tally.duplicates,
        endpoints
            .iter()
            .map(|e| agent_metric_with(
                &agent,
                "monitoring_agent_collector_failures",
                Some(&format!("endpoint=\"{e}\""))
            )
            .unwrap_or(0.0))
            .collect::<Vec<_>>(),
        agent_metric_with(
            &agent,
            "monitoring_agent_transport_resent_batches",
            Some("reason=\"reconnect\"")
        )
        .unwrap_or(0.0),
    );
    if !tally.missing.is_empty() {
        println!(
            "{name}: first lost {:?}; agent log:\n{}",
            &tally.missing[..tally.missing.len().min(10)],
            agent.log()
        );
    }
    Ok(FailoverOutcome {
        tally,
        per_collector,
        failovers,
    })
}

/// Polls the agent's `monitoring_agent_transport_in_flight_batches` as fast as it
/// answers until batches are in flight (so that a kill then catches some unacknowledged)
/// or `timeout` passes; the last value seen.
fn wait_for_in_flight(agent: &Agent, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let n = Scrape::agent(agent)
            .ok()
            .and_then(|s| s.value("monitoring_agent_transport_in_flight_batches", &[]))
            .unwrap_or(0.0) as u64;
        if n > 0 || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How many of `messages` carry a `seq=` number.
fn tally_lines(messages: &[String]) -> usize {
    messages.iter().filter(|m| m.starts_with("seq=")).count()
}
