//! End to end through the disk spool under faults: the collector down for a minute
//! while the agent keeps reading and is restarted halfway, and a damaged last spool
//! record, torn by a power loss or with a flipped byte. Every line is accounted for
//! by its `seq=` number.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use monitoring_e2e::{
    Agent, AgentOptions, Collector, ContinuousWriter, LineWriter, agent_metric, checkpoint_offset,
    flip_byte_in_last_spool_record, loghub_lines, numbered_line, sigterm, tally,
    tear_last_spool_record, wait_for_all, wait_until,
};

/// How long every line has to arrive once the collector is back.
const DEADLINE: Duration = Duration::from_secs(120);
/// `[buffer] max_batch_events` left at its default.
const MAX_BATCH_EVENTS: usize = 1000;

/// The agent's metric `name` (0 when not exported yet, or the agent is down).
fn metric(agent: &Agent, name: &str) -> f64 {
    agent_metric(agent, name).unwrap_or(0.0)
}

/// Waits for `check`, panicking with `what` and the agent's log at `timeout`.
fn wait(agent: &Agent, what: &str, timeout: Duration, check: impl FnMut() -> bool) {
    wait_until(what, timeout, check).unwrap_or_else(|e| panic!("{e}; agent log:\n{}", agent.log()));
}

/// SIGTERM, and a clean exit within 20 s (with the collector down the agent has
/// nothing to wait for: everything is in the spool).
fn stop(agent: &mut Agent) {
    sigterm(&agent.child);
    let started = Instant::now();
    loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            assert!(
                status.success(),
                "agent exited with {status}:\n{}",
                agent.log()
            );
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "agent still running 20 s after SIGTERM:\n{}",
            agent.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A collector (down unless a test brings it up) and an agent with a disk spool.
struct Rig {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    app: PathBuf,
    spool: PathBuf,
    state: PathBuf,
    collector: Collector,
    agent: Agent,
}

impl Rig {
    /// Starts the collector (for its config and port) and, unless `collector_up`,
    /// kills it again; then the agent, spooling to `max_bytes`.
    fn start(id: &str, collector_up: bool, max_bytes: u64) -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let mut collector = Collector::start(&dir).unwrap();
        if !collector_up {
            collector.kill();
        }
        let app = logs.join("app.log");
        let spool = dir.join("spool");
        let opts = AgentOptions {
            files: vec![app.display().to_string()],
            extra: format!(
                "[buffer.disk]\npath = \"{}\"\nmax_bytes = {max_bytes}\nsync = \"batch\"\n",
                spool.display()
            ),
            ..AgentOptions::default()
        };
        let agent = Agent::start(&dir, id, &collector.endpoint(), &opts).unwrap();
        Rig {
            state: dir.join(format!("state-{id}")),
            _tmp: tmp,
            dir,
            app,
            spool,
            collector,
            agent,
        }
    }

    fn file_len(&self) -> u64 {
        std::fs::metadata(&self.app).map_or(0, |m| m.len())
    }

    /// Waits until everything written is spooled and checkpointed.
    fn wait_checkpointed(&self) {
        let len = self.file_len();
        wait(
            &self.agent,
            "everything written to be spooled and checkpointed",
            Duration::from_secs(60),
            || checkpoint_offset(&self.state) == Some(len),
        );
    }
}

/// Writes lines `from..to` in chunks of `chunk`, pausing between them so that each
/// chunk becomes its own batch (and spool record).
fn write_chunks(w: &mut LineWriter, corpus: &[String], from: u64, to: u64, chunk: u64) {
    for start in (from..to).step_by(chunk as usize) {
        w.write_lines((start..(start + chunk).min(to)).map(|n| numbered_line(corpus, n)))
            .unwrap();
        thread::sleep(Duration::from_millis(300));
    }
}

/// The collector is down (SIGKILL) for 60 s while a writer adds ~1,000 lines a
/// second; 30 s in, the agent is stopped with SIGTERM and started again; then the
/// collector comes back on the same port and data. Every line arrives; the spool grew
/// during the outage and gives its space back after.
#[test]
fn collector_down_a_minute_with_an_agent_restart_loses_nothing() {
    // 8 MiB: segments of 1 MiB, so that the minute's spool spans several and the
    // drain is seen in the bytes on disk.
    let mut rig = Rig::start("outage", true, 8 * 1024 * 1024);
    let writer = ContinuousWriter::start(
        &rig.app,
        Arc::new(loghub_lines()),
        10,
        Duration::from_millis(10),
    )
    .unwrap();
    wait(
        &rig.agent,
        "a first acknowledgement",
        Duration::from_secs(30),
        || metric(&rig.agent, "monitoring_agent_transport_acked_batches") > 0.0,
    );

    rig.collector.kill();
    let down = Instant::now();
    let bytes_at_kill = metric(&rig.agent, "monitoring_agent_spool_bytes");
    thread::sleep(Duration::from_secs(30).saturating_sub(down.elapsed()));
    let bytes_before_restart = metric(&rig.agent, "monitoring_agent_spool_bytes");
    let checkpoint_before_restart = checkpoint_offset(&rig.state).unwrap_or(0);
    stop(&mut rig.agent);
    rig.agent.restart().unwrap();
    thread::sleep(Duration::from_secs(60).saturating_sub(down.elapsed()));
    let bytes_at_end = metric(&rig.agent, "monitoring_agent_spool_bytes");
    let read_after_restart = metric(&rig.agent, "monitoring_agent_file_read_lines");
    let checkpoint_at_end = checkpoint_offset(&rig.state).unwrap_or(0);
    rig.collector.restart().unwrap();
    let outage = down.elapsed();
    thread::sleep(Duration::from_secs(3));
    let (lines, _) = writer.finish().unwrap();

    let t = wait_for_all(&rig.collector, lines, DEADLINE).unwrap();
    println!(
        "outage of {outage:?} with an agent restart: expected {} missing {} duplicates {}\n  \
         spool bytes: {bytes_at_kill} at the kill, {bytes_before_restart} before the agent \
         restart, {bytes_at_end} at the end of the outage; lines read after the restart \
         {read_after_restart}; checkpoint {checkpoint_before_restart} -> {checkpoint_at_end}",
        t.expected,
        t.missing.len(),
        t.duplicates,
    );
    assert!(
        t.missing.is_empty(),
        "lost {} lines, first {:?}; agent log:\n{}",
        t.missing.len(),
        &t.missing[..t.missing.len().min(10)],
        rig.agent.log()
    );
    // The agent kept reading into the spool through the outage, across its restart.
    assert!(
        bytes_before_restart > bytes_at_kill && bytes_at_end > bytes_before_restart,
        "the spool did not grow: {bytes_at_kill} -> {bytes_before_restart} -> {bytes_at_end}"
    );
    assert!(read_after_restart > 0.0 && checkpoint_at_end > checkpoint_before_restart);
    // And gives the space back once acknowledged (the segment being written stays).
    let peak = bytes_at_end;
    wait(&rig.agent, "the spool to drain", DEADLINE, || {
        metric(&rig.agent, "monitoring_agent_spool_records") == 0.0
            && metric(&rig.agent, "monitoring_agent_spool_bytes") < peak / 2.0
    });
    let drained = metric(&rig.agent, "monitoring_agent_spool_bytes");
    println!(
        "  drained to {drained} bytes, {} segments deleted",
        metric(&rig.agent, "monitoring_agent_spool_segments_deleted")
    );
}

/// Lines in the first part (several records) and the last chunk (one record) of the
/// damaged-record tests.
const FIRST: u64 = 4_000;
const LAST: u64 = 200;

/// Spools `FIRST` lines in several records with the collector down, then calls
/// `before_last`, then spools `LAST` more lines in one chunk, and stops the agent.
fn spool_then_stop(rig: &mut Rig, before_last: impl FnOnce(&Rig)) {
    let corpus = loghub_lines();
    let mut w = LineWriter::open(&rig.app).unwrap();
    write_chunks(&mut w, &corpus, 0, FIRST, 1_000);
    rig.wait_checkpointed();
    before_last(rig);
    w.write_lines((FIRST..FIRST + LAST).map(|n| numbered_line(&corpus, n)))
        .unwrap();
    rig.wait_checkpointed();
    stop(&mut rig.agent);
}

/// A power loss: the last record and the checkpoint that followed it never reached
/// the disk. The test keeps a copy of the checkpoints from before the last chunk was
/// written, stops the agent, tears the last record in half and puts the old
/// checkpoints back. On restart the torn tail is cut off and counted, the last chunk
/// is read again from the file, and nothing is lost.
#[test]
fn a_torn_last_spool_record_with_an_older_checkpoint_loses_nothing() {
    let mut rig = Rig::start("torn", false, 64 * 1024 * 1024);
    let saved = rig.dir.join("files.json.before-last-chunk");
    spool_then_stop(&mut rig, |rig| {
        std::fs::copy(rig.state.join("files.json"), &saved).unwrap();
    });
    let (segment, record) = tear_last_spool_record(&rig.spool).unwrap();
    std::fs::copy(&saved, rig.state.join("files.json")).unwrap();

    rig.agent.restart().unwrap();
    rig.collector.restart().unwrap();
    let total = FIRST + LAST;
    let t = wait_for_all(&rig.collector, total, DEADLINE).unwrap();
    wait(
        &rig.agent,
        "the torn tail to be counted",
        Duration::from_secs(30),
        || metric(&rig.agent, "monitoring_agent_spool_torn_tails") >= 1.0,
    );
    println!(
        "torn last record ({} bytes at {} of {}): expected {} missing {} duplicates {} \
         (torn tails {}, corrupt records {})",
        record.len,
        record.offset,
        segment.display(),
        t.expected,
        t.missing.len(),
        t.duplicates,
        metric(&rig.agent, "monitoring_agent_spool_torn_tails"),
        metric(&rig.agent, "monitoring_agent_spool_records_corrupt"),
    );
    assert!(
        t.missing.is_empty(),
        "lost {:?}; agent log:\n{}",
        &t.missing[..t.missing.len().min(10)],
        rig.agent.log()
    );
    assert_eq!(metric(&rig.agent, "monitoring_agent_spool_torn_tails"), 1.0);
    assert_eq!(
        metric(&rig.agent, "monitoring_agent_spool_records_corrupt"),
        0.0
    );
}

/// A flipped byte in the body of the last record, which was whole, synced and
/// checkpointed. The agent starts (no crash loop), counts and logs the corrupt record
/// and delivers everything else once.
///
/// Lost cannot be 0 here: once a record is synced to the spool, the file checkpoint
/// moves past its lines (that is what lets the agent keep reading through an outage
/// without holding the file), so the damaged record held the only copy of them. What
/// the agent owes is that the loss is exactly that record (one contiguous range of at
/// most one batch) and that it is counted and logged, never silent.
#[test]
fn a_flipped_byte_in_the_last_spool_record_loses_that_record_only_and_counts_it() {
    let mut rig = Rig::start("flipped", false, 64 * 1024 * 1024);
    spool_then_stop(&mut rig, |_| {});
    let (segment, record) = flip_byte_in_last_spool_record(&rig.spool).unwrap();

    rig.agent.restart().unwrap();
    rig.collector.restart().unwrap();
    wait(
        &rig.agent,
        "the corrupt record to be counted and the rest acknowledged",
        DEADLINE,
        || {
            metric(&rig.agent, "monitoring_agent_spool_records_corrupt") >= 1.0
                && metric(&rig.agent, "monitoring_agent_spool_records_acked") > 0.0
                && agent_metric(&rig.agent, "monitoring_agent_spool_records") == Some(0.0)
        },
    );
    let total = FIRST + LAST;
    let t = tally(&rig.collector.all_log_messages().unwrap(), total);
    let range = t.missing.first().zip(t.missing.last());
    println!(
        "flipped byte in the last record ({} bytes at {} of {}): expected {} missing {} \
         ({range:?}) duplicates {} (corrupt records {}, torn tails {})",
        record.len,
        record.offset,
        segment.display(),
        t.expected,
        t.missing.len(),
        t.duplicates,
        metric(&rig.agent, "monitoring_agent_spool_records_corrupt"),
        metric(&rig.agent, "monitoring_agent_spool_torn_tails"),
    );
    assert_eq!(
        metric(&rig.agent, "monitoring_agent_spool_records_corrupt"),
        1.0
    );
    assert_eq!(metric(&rig.agent, "monitoring_agent_spool_torn_tails"), 0.0);
    assert!(
        rig.agent
            .log()
            .contains("Skipping a corrupt spool record; the events in it are lost."),
        "{}",
        rig.agent.log()
    );
    // Exactly the damaged record is missing: one contiguous range, at most one batch,
    // inside the last chunk (the last record holds the newest lines).
    let (first, last) = range.expect("the damaged record's lines cannot have arrived");
    assert_eq!(
        last - first + 1,
        t.missing.len() as u64,
        "not one range: {:?}",
        t.missing
    );
    assert!(t.missing.len() <= MAX_BATCH_EVENTS, "{}", t.missing.len());
    assert!(*first >= FIRST && *last < total, "{first}..={last}");
    assert_eq!(t.duplicates, 0);
    // The agent goes on: new lines after the damage arrive.
    let corpus = loghub_lines();
    LineWriter::open(&rig.app)
        .unwrap()
        .write_lines((total..total + 100).map(|n| numbered_line(&corpus, n)))
        .unwrap();
    wait(
        &rig.agent,
        "lines written after the restart",
        DEADLINE,
        || {
            let t = tally(&rig.collector.all_log_messages().unwrap(), total + 100);
            t.missing.iter().all(|n| *n < total)
        },
    );
}
