//! End to end: lines written to files arrive at the collector exactly once through
//! rotations, and at least once (with duplicates counted) through crashes.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::path::Path;
use std::thread;
use std::time::Duration;

use monitoring_e2e::{
    Agent, AgentOptions, Collector, LineWriter, Tally, loghub_lines, numbered_line, wait_for_all,
};

const DEADLINE: Duration = Duration::from_secs(240);

fn options(dir: &Path) -> AgentOptions {
    AgentOptions {
        files: vec![format!("{}/app.log*", dir.display())],
        ..AgentOptions::default()
    }
}

/// 200,000 loghub lines, rotated once by rename and once by copy-truncate while the
/// agent reads: every line arrives exactly once.
#[test]
fn rotation_by_rename_and_copy_truncate_loses_and_repeats_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let collector = Collector::start(dir).unwrap();
    let _agent = Agent::start(dir, "rotator", &collector.endpoint(), &options(&logs)).unwrap();

    let corpus = loghub_lines();
    let total: u64 = 200_000;
    let chunk = 2_000;
    let app = logs.join("app.log");
    let mut w = LineWriter::open(&app).unwrap();
    let mut seq = 0;
    while seq < total {
        w.write_lines((seq..seq + chunk).map(|n| numbered_line(&corpus, n)))
            .unwrap();
        seq += chunk;
        if seq == 66_000 {
            // Rename-and-create, as logrotate's default `create` does.
            std::fs::rename(&app, logs.join("app.log.1")).unwrap();
            w = LineWriter::open(&app).unwrap();
        }
        if seq == 134_000 {
            // copytruncate: the writer keeps its file; copy then truncate in place.
            std::fs::copy(&app, logs.join("app.log.2")).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&app)
                .unwrap()
                .set_len(0)
                .unwrap();
        }
        thread::sleep(Duration::from_millis(20));
    }

    let t = wait_for_all(&collector, total, DEADLINE).unwrap();
    println!(
        "rotation: expected {} missing {} duplicates {}",
        t.expected,
        t.missing.len(),
        t.duplicates
    );
    assert!(
        t.missing.is_empty(),
        "lost {} lines, first {:?}",
        t.missing.len(),
        &t.missing[..t.missing.len().min(10)]
    );
    assert_eq!(t.duplicates, 0, "lines read twice");
}

/// Which process a crash test kills.
enum Victim {
    Collector,
    Agent,
}

/// Writes 60,000 lines while the victim is killed with SIGKILL halfway and
/// restarted; returns the tally once every line arrived (or the deadline passed).
fn crash_mid_stream(victim: Victim, agent_id: &str) -> Tally {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut collector = Collector::start(dir).unwrap();
    let mut agent = Agent::start(dir, agent_id, &collector.endpoint(), &options(&logs)).unwrap();

    let corpus = loghub_lines();
    let total: u64 = 60_000;
    let mut w = LineWriter::open(&logs.join("app.log")).unwrap();
    for start in (0..total).step_by(1_000) {
        w.write_lines((start..start + 1_000).map(|n| numbered_line(&corpus, n)))
            .unwrap();
        if start == total / 2 {
            match victim {
                Victim::Collector => {
                    collector.kill();
                    thread::sleep(Duration::from_millis(500));
                    collector.restart().unwrap();
                }
                Victim::Agent => {
                    agent.kill();
                    thread::sleep(Duration::from_millis(300));
                    agent.restart().unwrap();
                }
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    let t = wait_for_all(&collector, total, DEADLINE).unwrap();
    println!(
        "{agent_id}: expected {} missing {} duplicates {}",
        t.expected,
        t.missing.len(),
        t.duplicates
    );
    assert!(
        t.missing.is_empty(),
        "lost {} lines; agent log:\n{}",
        t.missing.len(),
        agent.log()
    );
    t
}

/// The collector is killed with SIGKILL mid-stream and restarted: nothing is lost.
#[test]
fn collector_sigkill_mid_stream_loses_nothing() {
    let t = crash_mid_stream(Victim::Collector, "collector-sigkill");
    // The collector records every committed batch with its events, so a batch resent
    // after the restart is recognised: no duplicates are expected here either.
    assert_eq!(t.duplicates, 0);
}

/// The agent is killed with SIGKILL mid-stream and restarted: nothing is lost;
/// duplicates are only lines committed but not yet checkpointed (printed).
#[test]
fn agent_sigkill_mid_stream_loses_nothing() {
    crash_mid_stream(Victim::Agent, "agent-sigkill");
}
