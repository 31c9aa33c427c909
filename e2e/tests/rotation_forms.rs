//! End to end, one test per rotation form, each under load (a thread writes numbered
//! lines continuously while the test rotates): truncate-and-rewrite (after the agent
//! caught up, and while it is far behind), delete while open, a retargeted symlink, a
//! rotation storm, rotation while the agent is stopped, and inode reuse after a delete
//! (while the agent runs, and while it is stopped). Nothing may be lost (truncation loses only what
//! the agent's own metric says was unread) and, where the design promises it,
//! nothing is read twice.
//!
//! The tests run one at a time: each starts a collector, an agent and a writer, and
//! the rotation storm is about the agent keeping up with renames, which six rigs
//! sharing two cores would turn into a test of the machine.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use monitoring_e2e::{
    Agent, AgentOptions, Collector, ContinuousWriter, LineWriter, Tally, WriterState, agent_metric,
    loghub_lines, numbered_line, serial, sigterm, tally, wait_for_all, wait_until,
};

/// How long every line has to arrive once writing stopped.
const DEADLINE: Duration = Duration::from_secs(60);
/// The writer's load: `LINES_PER_TICK` lines every `TICK` (a few thousand a second).
const LINES_PER_TICK: u64 = 30;
const TICK: Duration = Duration::from_millis(10);

/// A collector and an agent tailing `logs/<pattern>`.
struct Rig {
    _tmp: tempfile::TempDir,
    logs: PathBuf,
    corpus: Arc<Vec<String>>,
    collector: Collector,
    agent: Agent,
}

impl Rig {
    fn start(id: &str, pattern: &str) -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let collector = Collector::start(&dir).unwrap();
        let options = AgentOptions {
            files: vec![format!("{}/{pattern}", logs.display())],
            ..AgentOptions::default()
        };
        let agent = Agent::start(&dir, id, &collector.endpoint(), &options).unwrap();
        Rig {
            _tmp: tmp,
            logs,
            corpus: Arc::new(loghub_lines()),
            collector,
            agent,
        }
    }

    fn writer(&self, path: &Path) -> ContinuousWriter {
        ContinuousWriter::start(path, Arc::clone(&self.corpus), LINES_PER_TICK, TICK).unwrap()
    }

    /// The agent's metric `name` (0 when not exported yet).
    fn metric(&self, name: &str) -> u64 {
        agent_metric(&self.agent, name).unwrap_or(0.0) as u64
    }

    /// Waits until the agent has read `bytes` bytes in all.
    fn wait_read(&self, bytes: u64) {
        wait_until("the agent to read everything written", DEADLINE, || {
            self.metric("monitoring_agent_file_read_bytes") >= bytes
        })
        .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", self.agent.log()));
    }

    /// Waits for lines `0..total` to arrive; prints and returns the tally.
    fn tally(&self, form: &str, total: u64) -> Tally {
        let t = wait_for_all(&self.collector, total, DEADLINE).unwrap();
        println!(
            "{form}: expected {} missing {} duplicates {} (rotations {}, truncations {}, \
             unread at truncation {} bytes, copies {})",
            t.expected,
            t.missing.len(),
            t.duplicates,
            self.metric("monitoring_agent_file_rotations"),
            self.metric("monitoring_agent_file_truncations"),
            self.metric("monitoring_agent_file_truncated_unread_bytes"),
            self.metric("monitoring_agent_file_duplicate_files"),
        );
        t
    }

    /// Asserts that nothing was lost.
    fn assert_complete(&self, t: &Tally) {
        assert!(
            t.missing.is_empty(),
            "lost {} of {} lines, first {:?}; agent log:\n{}",
            t.missing.len(),
            t.expected,
            &t.missing[..t.missing.len().min(10)],
            self.agent.log()
        );
    }
}

/// Lets the writer run for `d`.
fn run_for(d: Duration) {
    thread::sleep(d);
}

fn inode(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

/// Creates the writer's file again (it was deleted and closed) until it gets inode
/// `old`. ext4 hands out the lowest free inode of the group, which may be below `old`:
/// each such file is renamed out of the patterns and kept, taking that inode, until
/// `old` is the lowest free one. Returns whether it was reused, and the attempts.
fn recreate_with_inode(s: &mut WriterState, logs: &Path, old: u64) -> (bool, u32) {
    for attempt in 1..=500 {
        s.reopen().unwrap();
        if inode(&s.path) == old {
            return (true, attempt);
        }
        s.close();
        std::fs::rename(&s.path, logs.join(format!("filler-{attempt}"))).unwrap();
    }
    s.reopen().unwrap();
    (false, 500)
}

/// Truncated in place with no copy kept. The test pauses the writer and waits until
/// the agent has read every byte before each truncation, so nothing is unread when it
/// happens: the loss the agent reports (`truncated_unread_bytes`) must be exactly the
/// bytes of the lines that did not arrive, and both are 0.
#[test]
fn truncate_and_rewrite_loses_only_what_was_unread() {
    let _serial = serial();
    let rig = Rig::start("truncate", "app.log");
    let app = rig.logs.join("app.log");
    let w = rig.writer(&app);
    let rounds = 3;
    for _ in 0..rounds {
        run_for(Duration::from_millis(1_000));
        let s = w.pause();
        rig.wait_read(s.bytes);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&s.path)
            .unwrap()
            .set_len(0)
            .unwrap();
        // The writer appends (O_APPEND): its next line is at offset 0.
    }
    run_for(Duration::from_millis(1_000));
    let (total, bytes) = w.finish().unwrap();
    rig.wait_read(bytes);
    let t = rig.tally("truncate-and-rewrite", total);

    let unread = rig.metric("monitoring_agent_file_truncated_unread_bytes");
    let lost: u64 = t
        .missing
        .iter()
        .map(|&n| numbered_line(&rig.corpus, n).len() as u64 + 1)
        .sum();
    assert_eq!(
        lost,
        unread,
        "lines lost ({}) do not match the bytes the agent reports unread at truncation",
        t.missing.len()
    );
    assert_eq!(
        unread, 0,
        "the agent had read everything before each truncation"
    );
    rig.assert_complete(&t);
    assert_eq!(
        rig.metric("monitoring_agent_file_truncations"),
        rounds,
        "each truncation seen once"
    );
    assert_eq!(
        rig.metric("monitoring_agent_file_read_bytes"),
        bytes,
        "every byte read exactly once"
    );
    assert_eq!(t.duplicates, 0, "lines read twice");
}

/// The writer deletes its file and creates a new one, three times: the agent reads
/// each deleted file to its end through the descriptor it holds.
#[test]
fn delete_while_open_reads_the_old_file_to_its_end() {
    let _serial = serial();
    let rig = Rig::start("delete", "app.log");
    let app = rig.logs.join("app.log");
    let w = rig.writer(&app);
    let rounds = 3;
    for _ in 0..rounds {
        run_for(Duration::from_millis(1_000));
        let mut s = w.pause();
        std::fs::remove_file(&s.path).unwrap();
        s.reopen().unwrap();
    }
    run_for(Duration::from_millis(1_000));
    let (total, _) = w.finish().unwrap();
    let t = rig.tally("delete-while-open", total);
    rig.assert_complete(&t);
    assert_eq!(t.duplicates, 0, "lines read twice");
    assert!(rig.metric("monitoring_agent_file_rotations") >= rounds);
}

/// `app.log` is a symlink (the pattern matches it, not its targets); rotation points
/// it at a new file, atomically, and the writer moves there.
#[test]
fn retargeted_symlink_loses_and_repeats_nothing() {
    let _serial = serial();
    let rig = Rig::start("symlink", "app.log");
    let link = rig.logs.join("app.log");
    let target = |n: u32| rig.logs.join(format!("app.log.{n}"));
    std::fs::File::create(target(0)).unwrap();
    std::os::unix::fs::symlink("app.log.0", &link).unwrap();
    let w = rig.writer(&target(0));
    let rounds = 3;
    for n in 1..=rounds {
        run_for(Duration::from_millis(1_000));
        let mut s = w.pause();
        std::fs::File::create(target(n)).unwrap();
        let tmp = rig.logs.join("app.log.tmp");
        std::os::unix::fs::symlink(format!("app.log.{n}"), &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
        s.switch_to(&target(n)).unwrap();
    }
    run_for(Duration::from_millis(1_000));
    let (total, _) = w.finish().unwrap();
    let t = rig.tally("symlink", total);
    rig.assert_complete(&t);
    assert_eq!(t.duplicates, 0, "lines read twice");
    assert!(rig.metric("monitoring_agent_file_rotations") >= u64::from(rounds));
}

/// Ten renames a second for four seconds, to `app.log.N` names the pattern does not
/// match: the agent must open each file while it is still `app.log` and then read
/// it to its end under its rotated name. The rotated files stay open until quiet for
/// `rotated_idle_close_ms`, so dozens are open at once (the sampled gauge is printed).
#[test]
fn rotation_storm_loses_and_repeats_nothing() {
    let _serial = serial();
    let rig = Rig::start("storm", "app.log");
    let app = rig.logs.join("app.log");
    let w = rig.writer(&app);
    let rounds = 40;
    let mut most_rotated_open = 0;
    let mut next = Instant::now();
    for n in 1..=rounds {
        next += Duration::from_millis(100);
        thread::sleep(next.saturating_duration_since(Instant::now()));
        let mut s = w.pause();
        std::fs::rename(&app, rig.logs.join(format!("app.log.{n}"))).unwrap();
        s.reopen().unwrap();
        drop(s);
        if n % 5 == 0 {
            most_rotated_open =
                most_rotated_open.max(rig.metric("monitoring_agent_file_rotated_open_files"));
        }
    }
    let (total, _) = w.finish().unwrap();
    let t = rig.tally("storm", total);
    println!("storm: up to {most_rotated_open} rotated files still open at once (sampled)");
    rig.assert_complete(&t);
    assert_eq!(t.duplicates, 0, "lines read twice");
    assert_eq!(rig.metric("monitoring_agent_file_rotations"), rounds);
}

/// The agent is stopped (SIGTERM) while the writer goes on; the file is renamed away
/// (to a name the pattern does not match) and a new one written; when the agent
/// starts again it finishes the rotated file, then reads the new one: every line
/// once.
#[test]
fn rotation_while_the_agent_is_stopped_loses_and_repeats_nothing() {
    let _serial = serial();
    let mut rig = Rig::start("stopped", "app.log");
    let app = rig.logs.join("app.log");
    let w = rig.writer(&app);
    run_for(Duration::from_millis(1_500));
    sigterm(&rig.agent.child);
    let status = rig.agent.child.wait().unwrap();
    assert!(status.success(), "agent exited with {status} on SIGTERM");
    // Lines keep going to the old file while the agent is down, then the rotation.
    run_for(Duration::from_millis(300));
    {
        let mut s = w.pause();
        std::fs::rename(&app, rig.logs.join("app.log.1")).unwrap();
        s.reopen().unwrap();
    }
    run_for(Duration::from_millis(700));
    rig.agent.restart().unwrap();
    run_for(Duration::from_millis(1_500));
    let (total, _) = w.finish().unwrap();
    let t = rig.tally("stopped", total);
    rig.assert_complete(&t);
    assert!(
        rig.agent
            .log()
            .contains("Finishing rotated file left unread before the restart."),
        "the rotated file was not resumed; agent log:\n{}",
        rig.agent.log()
    );
    assert_eq!(
        t.duplicates, 0,
        "lines read twice across a graceful restart"
    );
}

/// A file is deleted; once the agent has read it to its end and closed it (the
/// inode is free), a new file is created under the same name with the same inode
/// ([`recreate_with_inode`]). The checkpoint of the old content must not make the agent
/// resume the new file at the old offset. Which case ran is printed: the filesystem
/// may hand out another inode, and then the test still checks the delete.
#[test]
fn inode_reuse_after_delete_reads_the_new_file_from_the_start() {
    let _serial = serial();
    let rig = Rig::start("inode-reuse", "app.log");
    let app = rig.logs.join("app.log");
    let w = rig.writer(&app);
    run_for(Duration::from_millis(1_500));
    let reused = {
        let mut s = w.pause();
        let old = inode(&app);
        std::fs::remove_file(&app).unwrap();
        s.close();
        // The agent holds the deleted file until it has read it to its end and it
        // stayed quiet for rotated_idle_close_ms (5 s by default).
        wait_until("the agent to close the deleted file", DEADLINE, || {
            agent_metric(&rig.agent, "monitoring_agent_file_open_files") == Some(0.0)
        })
        .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", rig.agent.log()));
        let (reused, attempts) = recreate_with_inode(&mut s, &rig.logs, old);
        println!("inode reuse: inode {old} reused: {reused} after {attempts} creations");
        reused
    };
    run_for(Duration::from_millis(1_500));
    let (total, _) = w.finish().unwrap();
    let t = rig.tally(
        if reused {
            "inode-reuse (inode reused)"
        } else {
            "inode-reuse (inode not reused)"
        },
        total,
    );
    rig.assert_complete(&t);
    assert_eq!(t.duplicates, 0, "lines read twice");
    assert_eq!(
        rig.metric("monitoring_agent_file_truncations"),
        0,
        "the new file is new content, not a truncation of the old one"
    );
}

/// Truncated in place while the agent is far behind: the collector is down, so the
/// agent has read a burst only until its buffer filled (`when_full = "block"`), and
/// the file is truncated and rewritten under it. What it had not read is gone, and
/// the agent must say exactly how much: the bytes of the lines that never arrived
/// equal `truncated_unread_bytes`. The burst appears whole (renamed into place) so
/// that the size the agent measured is the size that was truncated.
#[test]
fn truncation_while_the_agent_is_behind_loses_exactly_what_it_reports_unread() {
    let _serial = serial();
    let mut rig = Rig::start("behind", "app.log");
    rig.collector.kill();
    let app = rig.logs.join("app.log");
    let burst: u64 = 40_000;
    let staged = rig.logs.join("burst.tmp");
    LineWriter::open(&staged)
        .unwrap()
        .write_lines((0..burst).map(|n| numbered_line(&rig.corpus, n)))
        .unwrap();
    let burst_bytes = std::fs::metadata(&staged).unwrap().len();
    std::fs::rename(&staged, &app).unwrap();
    let mut last = 0;
    wait_until("the agent to stall behind the end", DEADLINE, || {
        thread::sleep(Duration::from_millis(1_000));
        let now = rig.metric("monitoring_agent_file_read_bytes");
        let stalled = now > 0 && now == last;
        last = now;
        stalled
    })
    .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", rig.agent.log()));
    assert!(last < burst_bytes, "the agent read the whole burst");

    std::fs::OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    let after: u64 = 2_000;
    let total = burst + after;
    LineWriter::open(&app)
        .unwrap()
        .write_lines((burst..total).map(|n| numbered_line(&rig.corpus, n)))
        .unwrap();
    rig.collector.restart().unwrap();
    // The lines written after the truncation come last: once they are in, everything
    // that will arrive has.
    wait_until("the lines written after the truncation", DEADLINE, || {
        let t = tally(&rig.collector.all_log_messages().unwrap(), total);
        t.missing.iter().all(|&n| n < burst)
    })
    .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", rig.agent.log()));
    let t = tally(&rig.collector.all_log_messages().unwrap(), total);
    let unread = rig.metric("monitoring_agent_file_truncated_unread_bytes");
    let lost: u64 = t
        .missing
        .iter()
        .map(|&n| numbered_line(&rig.corpus, n).len() as u64 + 1)
        .sum();
    println!(
        "truncation while behind: read {last} of {burst_bytes} bytes when truncated; expected \
         {total} missing {} ({lost} bytes) duplicates {}; the agent reports {unread} bytes unread",
        t.missing.len(),
        t.duplicates
    );
    assert!(unread > 0, "the agent was behind: something was unread");
    assert_eq!(
        lost, unread,
        "lines lost do not match the bytes reported unread"
    );
    // What is lost is the end of the burst, and only that.
    assert_eq!(
        t.missing.first().map(|&n| burst - n),
        Some(t.missing.len() as u64)
    );
    assert_eq!(rig.metric("monitoring_agent_file_truncations"), 1);
    assert_eq!(t.duplicates, 0, "lines read twice");
}

/// A file is deleted and another created under the same name while the agent is
/// stopped, with the old one's inode ([`recreate_with_inode`]; a filesystem that
/// never hands it out again is reported, and the test still checks the replacement). The new file is longer than the old
/// checkpoint: a checkpoint found by (device, inode) alone would resume in its middle.
/// The new file must be read from its start, as new content.
#[test]
fn inode_reuse_while_the_agent_is_stopped_reads_the_new_file_from_the_start() {
    let _serial = serial();
    let mut rig = Rig::start("inode-stopped", "app.log");
    let app = rig.logs.join("app.log");
    let w = rig.writer(&app);
    run_for(Duration::from_millis(1_500));
    let reused = {
        let mut s = w.pause();
        rig.wait_read(s.bytes);
        sigterm(&rig.agent.child);
        let status = rig.agent.child.wait().unwrap();
        assert!(status.success(), "agent exited with {status} on SIGTERM");
        let old = inode(&app);
        s.close();
        std::fs::remove_file(&app).unwrap();
        let (reused, attempts) = recreate_with_inode(&mut s, &rig.logs, old);
        println!(
            "inode reuse while stopped: inode {old} reused: {reused} after {attempts} creations"
        );
        reused
    };
    // Longer than the old content before the agent is back.
    run_for(Duration::from_millis(2_500));
    rig.agent.restart().unwrap();
    run_for(Duration::from_millis(1_000));
    let (total, _) = w.finish().unwrap();
    let t = rig.tally(
        if reused {
            "inode-reuse-stopped (inode reused)"
        } else {
            "inode-reuse-stopped (inode not reused by this filesystem)"
        },
        total,
    );
    rig.assert_complete(&t);
    assert_eq!(t.duplicates, 0, "lines read twice");
}
