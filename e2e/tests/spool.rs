//! End to end through the disk spool: the collector is down while the agent reads
//! into its spool, the agent is killed with SIGKILL in the middle and restarted, then
//! the collector comes up and every line arrives (duplicates printed, not asserted:
//! at-least-once).

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::time::{Duration, Instant};

use monitoring_e2e::{
    Agent, AgentOptions, Collector, LineWriter, agent_metric, checkpoint_offset, loghub_lines,
    numbered_line, spool_bytes_on_disk, wait_for_all,
};

const DEADLINE: Duration = Duration::from_secs(240);

/// Polls `check` every 100 ms until it holds; panics with `what` and the agent's log
/// after `timeout`.
fn wait_until(agent: &Agent, what: &str, timeout: Duration, check: impl Fn(&Agent) -> bool) {
    let deadline = Instant::now() + timeout;
    while !check(agent) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; agent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn collector_down_agent_sigkilled_every_spooled_line_arrives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let logs = dir.join("logs");
    let spool = dir.join("spool");
    std::fs::create_dir_all(&logs).unwrap();
    // Start the collector once for its config and port, then take it down: the agent
    // must work without it.
    let mut collector = Collector::start(dir).unwrap();
    let endpoint = collector.endpoint();
    collector.kill();

    let opts = AgentOptions {
        files: vec![format!("{}/app.log", logs.display())],
        extra: format!(
            "[buffer.disk]\npath = \"{}\"\nmax_bytes = 67108864\nsync = \"batch\"\n",
            spool.display()
        ),
        ..AgentOptions::default()
    };
    let mut agent = Agent::start(dir, "spooler", &endpoint, &opts).unwrap();

    let corpus = loghub_lines();
    let total: u64 = 30_000;
    let half = total / 2;
    let mut w = LineWriter::open(&logs.join("app.log")).unwrap();
    for start in (0..half).step_by(1_000) {
        w.write_lines((start..start + 1_000).map(|n| numbered_line(&corpus, n)))
            .unwrap();
    }
    // The first half is read and spooled while the collector is down, and because
    // it is safe in the spool the file checkpoint moves to the end of it.
    let state = dir.join("state-spooler");
    let first_half_len = std::fs::metadata(logs.join("app.log")).unwrap().len();
    wait_until(
        &agent,
        "the first half to be spooled and checkpointed",
        DEADLINE,
        |_| checkpoint_offset(&state) == Some(first_half_len),
    );
    assert!(spool_bytes_on_disk(&spool) > 0, "nothing in the spool");
    assert_eq!(
        agent_metric(&agent, "monitoring_agent_transport_acked_batches_total"),
        Some(0.0),
        "the collector is down: nothing can be acknowledged"
    );

    // SIGKILL in the middle, and a restart: the spool and the checkpoints survive.
    agent.restart().unwrap();
    for start in (half..total).step_by(1_000) {
        w.write_lines((start..start + 1_000).map(|n| numbered_line(&corpus, n)))
            .unwrap();
    }
    let total_len = std::fs::metadata(logs.join("app.log")).unwrap().len();
    wait_until(&agent, "the second half to be spooled", DEADLINE, |_| {
        checkpoint_offset(&state) == Some(total_len)
    });
    // The restarted agent resumed from the checkpoint: the first half was not read
    // again, so it can only reach the collector from the spool.
    let reread = agent_metric(&agent, "monitoring_agent_file_read_lines_total").unwrap_or(0.0);
    assert_eq!(
        reread,
        (total - half) as f64,
        "lines read after the restart"
    );
    let spooled = agent_metric(&agent, "monitoring_agent_spool_records").unwrap_or(0.0);
    assert!(
        spooled > 0.0,
        "the restarted agent should hold the unacknowledged records"
    );

    // The collector comes up: everything spooled, before and after the kill, arrives.
    collector.restart().unwrap();
    let t = wait_for_all(&collector, total, DEADLINE).unwrap();
    println!(
        "spool: expected {} missing {} duplicates {}",
        t.expected,
        t.missing.len(),
        t.duplicates
    );
    assert!(
        t.missing.is_empty(),
        "lost {} lines, first {:?}; agent log:\n{}",
        t.missing.len(),
        &t.missing[..t.missing.len().min(10)],
        agent.log()
    );
    // The spool gives its space back once acknowledged.
    wait_until(&agent, "the spool to be acknowledged", DEADLINE, |a| {
        agent_metric(a, "monitoring_agent_spool_records_acked_total").unwrap_or(0.0) > 0.0
            && agent_metric(a, "monitoring_agent_spool_records").unwrap_or(1.0) == 0.0
    });
}

#[test]
fn sigterm_with_the_collector_down_exits_promptly_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let logs = dir.join("logs");
    let spool = dir.join("spool");
    std::fs::create_dir_all(&logs).unwrap();
    let mut collector = Collector::start(dir).unwrap();
    let endpoint = collector.endpoint();
    collector.kill();
    let opts = AgentOptions {
        files: vec![format!("{}/app.log", logs.display())],
        extra: format!("[buffer.disk]\npath = \"{}\"\n", spool.display()),
        ..AgentOptions::default()
    };
    let mut agent = Agent::start(dir, "stopper", &endpoint, &opts).unwrap();
    let corpus = loghub_lines();
    let total: u64 = 5_000;
    let mut w = LineWriter::open(&logs.join("app.log")).unwrap();
    w.write_lines((0..total).map(|n| numbered_line(&corpus, n)))
        .unwrap();
    let state = dir.join("state-stopper");
    let len = std::fs::metadata(logs.join("app.log")).unwrap().len();
    wait_until(&agent, "everything to be spooled", DEADLINE, |_| {
        checkpoint_offset(&state) == Some(len)
    });

    // Everything is on disk: the agent has nothing to wait for but acknowledgements
    // that cannot come, so it must not sit out its 10 s shutdown timeout.
    let started = Instant::now();
    monitoring_e2e::sigterm(&agent.child);
    let status = agent.child.wait().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}\n{}", agent.log());
    assert!(took < Duration::from_secs(6), "SIGTERM took {took:?}");

    agent.restart().unwrap();
    collector.restart().unwrap();
    let t = wait_for_all(&collector, total, DEADLINE).unwrap();
    println!(
        "spool shutdown: took {took:?}, expected {} missing {} duplicates {}",
        t.expected,
        t.missing.len(),
        t.duplicates
    );
    assert!(
        t.missing.is_empty(),
        "lost {:?}\n{}",
        t.missing,
        agent.log()
    );
}
