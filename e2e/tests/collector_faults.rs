//! End to end, the collector's store failing under a running agent, with real files
//! as the fault: a write lock held on its SQLite day files from this process (the
//! store errors, or is slow), a full tmpfs under the store, and a SIGKILL while
//! batches wait for a lock. In every case the collector answers retry-later and never
//! acknowledges what it has not committed, the agent keeps everything, and every line
//! arrives (lost 0; duplicates printed).
//!
//! The tests run one at a time: each starts a collector, an agent and a writer, and
//! the slow-sink test measures memory under load that a second rig would distort.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use monitoring_e2e::{
    Agent, AgentOptions, Collector, CollectorOptions, ContinuousWriter, StoreLock, Tally,
    agent_metric, agent_metric_with, blocking_get, collector_metric, fill_filesystem, free_bytes,
    in_namespace_of, loghub_lines, peak_rss_kib, proc_status_kib, remove_filler, serial,
    tmpfs_wrapper, wait_for_all, wait_until,
};

/// How long every line has to arrive once writing stopped.
const DEADLINE: Duration = Duration::from_secs(90);
/// The writer's load: `LINES_PER_TICK` lines every `TICK` (2-3 thousand a second).
const LINES_PER_TICK: u64 = 30;
const TICK: Duration = Duration::from_millis(10);

/// A collector and an agent tailing `logs/app.log`.
struct Rig {
    _tmp: tempfile::TempDir,
    app: PathBuf,
    corpus: Arc<Vec<String>>,
    collector: Collector,
    agent: Option<Agent>,
    id: String,
    started: Instant,
}

impl Rig {
    /// Starts the collector in `tmp` with `opts`; the agent waits for
    /// [`Rig::start_agent`].
    fn collector(tmp: tempfile::TempDir, opts: &CollectorOptions, id: &str) -> Rig {
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let collector = Collector::start_opts(dir, opts).unwrap();
        Rig {
            app: dir.join("logs/app.log"),
            _tmp: tmp,
            corpus: Arc::new(loghub_lines()),
            collector,
            agent: None,
            id: id.to_string(),
            started: Instant::now(),
        }
    }

    /// A collector with `opts` and an agent.
    fn start(opts: &CollectorOptions, id: &str) -> Rig {
        let mut rig = Rig::collector(tempfile::tempdir().unwrap(), opts, id);
        rig.start_agent();
        rig
    }

    fn start_agent(&mut self) {
        let options = AgentOptions {
            files: vec![self.app.display().to_string()],
            ..AgentOptions::default()
        };
        let dir = self.collector.dir.clone();
        self.agent =
            Some(Agent::start(&dir, &self.id, &self.collector.endpoint(), &options).unwrap());
    }

    fn agent(&self) -> &Agent {
        self.agent.as_ref().unwrap()
    }

    fn writer(&self, lines_per_tick: u64, tick: Duration) -> ContinuousWriter {
        ContinuousWriter::start(&self.app, Arc::clone(&self.corpus), lines_per_tick, tick).unwrap()
    }

    /// The agent's metric `name` (0 when not exported yet).
    fn agent_metric(&self, name: &str) -> u64 {
        agent_metric(self.agent(), name).unwrap_or(0.0) as u64
    }

    /// The collector's metric `name` with `label` (0 when not exported yet).
    fn collector_metric(&self, name: &str, label: Option<&str>) -> u64 {
        collector_metric(&self.collector, name, label).unwrap_or(0.0) as u64
    }

    fn acked(&self) -> u64 {
        self.agent_metric("monitoring_agent_transport_acked_events")
    }

    fn committed(&self) -> u64 {
        self.collector_metric("monitoring_ingest_batches_committed", None)
    }

    fn retried(&self, reason: &str) -> u64 {
        self.collector_metric(
            "monitoring_ingest_batches_retried",
            Some(&format!("reason=\"{reason}\"")),
        )
    }

    /// Waits until the agent has `n` events acknowledged.
    fn wait_acked(&self, n: u64) {
        wait_until("events to be acknowledged", DEADLINE, || self.acked() >= n)
            .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", self.agent().log()));
    }

    /// Waits until the collector has answered retry-later with reason store `n` times
    /// in all; fails at once if it exits.
    fn wait_retried_store(&mut self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.retried("store") < n {
            if let Some(status) = self.collector.child.try_wait().unwrap() {
                panic!(
                    "the collector exited with {status}; log:\n{}",
                    self.collector.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {n} retry-later with reason store in 30 s (processor queue {}, frames received {}, committed {}); collector log:\n{}",
                self.collector_metric("monitoring_processor_queue_depth", None),
                self.collector_metric("monitoring_ingest_frames_received", None),
                self.committed(),
                self.collector.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The collector must still be running, and its REST API answering queries.
    fn assert_collector_serves(&mut self) {
        assert!(
            self.collector.child.try_wait().unwrap().is_none(),
            "the collector exited; log:\n{}",
            self.collector.log()
        );
        let (status, _) = blocking_get(&format!("{}/health", self.collector.api())).unwrap();
        assert_eq!(status, 200);
        let (ready, body) = blocking_get(&format!("{}/ready", self.collector.api())).unwrap();
        println!("GET /ready during the fault: {ready} {body}");
        let page = self.collector.get("/api/v1/logs?limit=5").unwrap();
        assert!(page["logs"].is_array(), "{page}");
    }

    /// Waits for lines `0..total` to arrive; prints the tally and asserts lost 0.
    fn assert_all_arrive(&self, test: &str, total: u64) -> Tally {
        let t = wait_for_all(&self.collector, total, DEADLINE).unwrap();
        println!(
            "{test}: expected {} lost {} duplicates {} (agent: resent after retry-later {}, \
             after reconnect {}, disconnects {}; collector: retried store {}, queue_full {}, \
             duplicate batches {}; {:.0} s since the collector started)",
            t.expected,
            t.missing.len(),
            t.duplicates,
            self.resent("retry_later"),
            self.resent("reconnect"),
            self.agent_metric("monitoring_agent_transport_disconnects"),
            self.retried("store"),
            self.retried("queue_full"),
            self.collector_metric("monitoring_ingest_batches_duplicate", None),
            self.started.elapsed().as_secs_f64(),
        );
        assert!(
            t.missing.is_empty(),
            "{test}: lost {} of {} lines, first {:?}; agent log:\n{}\ncollector log:\n{}",
            t.missing.len(),
            t.expected,
            &t.missing[..t.missing.len().min(10)],
            self.agent().log(),
            self.collector.log(),
        );
        t
    }

    fn resent(&self, reason: &str) -> u64 {
        let label = format!("reason=\"{reason}\"");
        let name = "monitoring_agent_transport_resent_batches";
        agent_metric_with(self.agent(), name, Some(&label)).unwrap_or(0.0) as u64
    }

    /// Lines of the collector's log containing `needle`.
    fn collector_log_count(&self, needle: &str) -> usize {
        self.collector.log().matches(needle).count()
    }

    /// Both logs say what happened in a few lines, not one per failed batch: each
    /// outage (under 20 s) has a first line, at most one reminder, and a line when it
    /// is over. The test makes `outages`; a full disk may give a few more short ones
    /// (a WAL checkpoint frees a page, one commit succeeds), each logged the same way.
    fn assert_quiet_logs(&self, outages: usize) {
        let agent_log = self.agent().log();
        let counts = [
            self.collector_log_count("Failed to commit batch"),
            self.collector_log_count("Store commits succeed again"),
            agent_log
                .matches("The collector asked to resend a batch later")
                .count(),
            agent_log
                .matches("The collector acknowledges batches again")
                .count(),
        ];
        println!(
            "log lines: collector {} failed commits, {} recoveries; agent {} retry-later, \
             {} recoveries",
            counts[0], counts[1], counts[2], counts[3]
        );
        assert!(
            counts[1] >= outages && counts[3] >= outages,
            "the end of an outage was not logged: {counts:?}"
        );
        assert!(
            counts[0] <= 2 * counts[1] && counts[2] <= 2 * counts[3],
            "store failures flood the logs: {counts:?}"
        );
    }

    /// The last line of the collector's log containing `needle`.
    fn collector_log_line(&self, needle: &str) -> String {
        let log = self.collector.log();
        log.lines()
            .rev()
            .find(|l| l.contains(needle))
            .unwrap_or_default()
            .to_string()
    }
}

/// The store fails (its day files locked by another process; commits give up after
/// `busy_timeout_ms` = 200) for 10 s, then recovers.
#[test]
fn a_failing_sink_is_retried_never_acknowledged_and_recovers() {
    let _serial = serial();
    let opts = CollectorOptions {
        storage: "busy_timeout_ms = 200".into(),
        ..CollectorOptions::default()
    };
    let mut rig = Rig::start(&opts, "sinkfail");
    let writer = rig.writer(LINES_PER_TICK, TICK);
    rig.wait_acked(2_000);

    let mut lock = StoreLock::open(&rig.collector.store_dir()).unwrap();
    lock.lock().unwrap();
    let locked = Instant::now();
    // A commit finishing as the lock was taken is still acknowledged a moment later.
    thread::sleep(Duration::from_millis(1_500));
    let (acked0, committed0, retried0) = (rig.acked(), rig.committed(), rig.retried("store"));
    thread::sleep(Duration::from_secs(10).saturating_sub(locked.elapsed()));
    let (acked1, committed1, retried1) = (rig.acked(), rig.committed(), rig.retried("store"));
    let connected = rig.agent_metric("monitoring_agent_transport_connected");
    let disconnects = rig.agent_metric("monitoring_agent_transport_disconnects");
    rig.assert_collector_serves();
    lock.unlock().unwrap();
    println!(
        "sink failing for 10 s: retried (store) {} more, committed {} more, acked {} more \
         events; agent connected {connected}, disconnects {disconnects}",
        retried1 - retried0,
        committed1 - committed0,
        acked1 - acked0,
    );
    assert!(
        retried1 > retried0,
        "no retry-later with reason store while the store was locked"
    );
    println!("{}", rig.collector_log_line("Failed to commit batch"));
    assert_eq!(committed1, committed0, "batches committed through the lock");
    assert_eq!(
        acked1, acked0,
        "the agent had events acknowledged that were not committed"
    );

    // Recovery: acknowledgements resume on the same (or a new) connection.
    rig.wait_acked(acked1 + 1);
    thread::sleep(Duration::from_secs(2));
    let (total, _) = writer.finish().unwrap();
    rig.assert_all_arrive("failing sink", total);
    rig.assert_quiet_logs(1);
}

/// The store's filesystem (a 32 MiB tmpfs in the collector's own mount namespace) is
/// made full twice: before any day file exists (the collector must create one while
/// full), and later under load (the day file and its WAL must grow while full).
#[test]
fn a_full_disk_is_retried_never_acknowledged_and_recovers() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let opts = CollectorOptions {
        wrapper: tmpfs_wrapper(&store, 32).unwrap(),
        ..CollectorOptions::default()
    };
    let mut rig = Rig::collector(tmp, &opts, "fulldisk");
    let view = in_namespace_of(rig.collector.child.id(), &store);
    let size = free_bytes(&view).unwrap();
    assert!(
        size <= 32 << 20,
        "{} is not the 32 MiB tmpfs ({size} bytes free)",
        view.display()
    );

    // 1. Full before the first batch: the day file cannot be created.
    let filled = fill_filesystem(&view).unwrap();
    println!(
        "full disk: filler of {filled} bytes leaves {} bytes free",
        free_bytes(&view).unwrap()
    );
    rig.start_agent();
    let writer = rig.writer(LINES_PER_TICK, TICK);
    rig.wait_retried_store(5);
    thread::sleep(Duration::from_secs(3));
    assert_eq!(rig.committed(), 0, "committed on a full disk");
    assert_eq!(rig.acked(), 0, "acknowledged on a full disk");
    println!("{}", rig.collector_log_line("Failed to commit batch"));
    rig.assert_collector_serves();
    println!(
        "full disk before the first day file: retried (store) {}, committed 0, acked 0",
        rig.retried("store")
    );
    remove_filler(&view).unwrap();
    rig.wait_acked(2_000);

    // 2. Full under load: the day file and its WAL must grow.
    let filled = fill_filesystem(&view).unwrap();
    let retried0 = rig.retried("store");
    rig.wait_retried_store(retried0 + 5);
    thread::sleep(Duration::from_millis(1_500));
    let (acked0, committed0) = (rig.acked(), rig.committed());
    thread::sleep(Duration::from_secs(5));
    let (acked1, committed1) = (rig.acked(), rig.committed());
    rig.assert_collector_serves();
    println!(
        "full disk under load: filler {filled} bytes; retried (store) {} more; in 5 s \
         committed {} and acked {} events more",
        rig.retried("store") - retried0,
        committed1 - committed0,
        acked1 - acked0,
    );
    println!("{}", rig.collector_log_line("Failed to commit batch"));
    assert_eq!(committed1, committed0, "batches committed on a full disk");
    assert_eq!(acked1, acked0, "events acknowledged on a full disk");
    remove_filler(&view).unwrap();

    rig.wait_acked(acked1 + 1);
    thread::sleep(Duration::from_secs(2));
    let (total, _) = writer.finish().unwrap();
    rig.assert_all_arrive("full disk", total);
    rig.assert_quiet_logs(2);
}

/// Batches are received but cannot commit (the store locked, `busy_timeout_ms` =
/// 30000, so they wait inside the collector); the collector is SIGKILLed while they
/// wait, the lock released and the collector restarted on the same store and port.
/// The agent reconnects and resends them.
#[test]
fn sigkill_between_receiving_and_acknowledging_loses_nothing() {
    let _serial = serial();
    let opts = CollectorOptions {
        storage: "busy_timeout_ms = 30000".into(),
        ..CollectorOptions::default()
    };
    let mut rig = Rig::start(&opts, "killed");
    let writer = rig.writer(LINES_PER_TICK, TICK);
    rig.wait_acked(2_000);

    let mut lock = StoreLock::open(&rig.collector.store_dir()).unwrap();
    lock.lock().unwrap();
    // A commit that finished as the lock was taken is counted a moment later.
    thread::sleep(Duration::from_millis(300));
    let frames0 = rig.collector_metric("monitoring_ingest_frames_received", None);
    let committed0 = rig.committed();
    wait_until("frames received that cannot commit", DEADLINE, || {
        rig.collector_metric("monitoring_ingest_frames_received", None) >= frames0 + 4
    })
    .unwrap();
    let waiting = rig.collector_metric("monitoring_ingest_frames_received", None) - frames0;
    assert_eq!(rig.committed(), committed0, "committed through the lock");
    let acked = rig.acked();
    rig.collector.kill();
    lock.unlock().unwrap();
    drop(lock);
    rig.collector.restart().unwrap();
    println!("SIGKILL with {waiting} frames received and not committed ({acked} events acked)");

    rig.wait_acked(acked + 1);
    thread::sleep(Duration::from_secs(2));
    let (total, _) = writer.finish().unwrap();
    rig.assert_all_arrive("SIGKILL before ack", total);
    assert!(
        rig.resent("reconnect") >= 1,
        "the agent resent nothing after the collector died"
    );
}

/// A slow sink (the store locked 350 ms of every 400 ms for 20 s) under a writer
/// faster than it: backpressure must reach the file (the agent's buffer fills, its
/// sources wait, the reader falls behind the writer) while both processes' memory
/// stays bounded; then everything arrives.
#[test]
fn a_slow_sink_slows_the_agent_with_bounded_memory() {
    let _serial = serial();
    // A short processor queue, so that one agent's window can overflow it as many
    // agents would overflow the default one.
    let opts = CollectorOptions {
        processor: "queue_batches = 4".into(),
        ..CollectorOptions::default()
    };
    let rig = Rig::start(&opts, "slow");
    let writer = rig.writer(SLOW_LINES_PER_TICK, TICK);
    rig.wait_acked(1);

    let stop = Arc::new(AtomicBool::new(false));
    let lock = StoreLock::open(&rig.collector.store_dir()).unwrap();
    let pulses = lock.pulse(SLOW_SINK_HELD, SLOW_SINK_PERIOD, Arc::clone(&stop));
    let (agent_pid, collector_pid) = (rig.agent().child.id(), rig.collector.child.id());
    let started = Instant::now();
    let (mut max_buffered, mut max_lag) = (0, 0);
    while started.elapsed() < Duration::from_secs(20) {
        thread::sleep(Duration::from_millis(250));
        max_buffered = max_buffered.max(rig.agent_metric("monitoring_agent_buffer_events"));
        let read = rig.agent_metric("monitoring_agent_file_read_bytes");
        max_lag = max_lag.max(writer.pause().bytes.saturating_sub(read));
    }
    stop.store(true, Ordering::Release);
    let pulses = pulses.join().unwrap().unwrap();
    let (total, bytes) = writer.finish().unwrap();
    let agent_peak = peak_rss_kib(agent_pid).unwrap();
    let collector_peak = peak_rss_kib(collector_pid).unwrap();
    let capacity = rig.agent_metric("monitoring_agent_buffer_capacity_events");
    let blocked = rig.agent_metric("monitoring_agent_buffer_blocked_sends");
    let (queue_full, store) = (rig.retried("queue_full"), rig.retried("store"));
    println!(
        "slow sink: {pulses} lock pulses; wrote {total} lines ({bytes} bytes); reader behind \
         the writer by up to {max_lag} bytes; buffer up to {max_buffered} of {capacity} events; \
         blocked sends {blocked}; retried queue_full {queue_full}, store {store}; peak RSS \
         agent {} MiB, collector {} MiB (now {} / {} MiB)",
        agent_peak / 1024,
        collector_peak / 1024,
        proc_status_kib(agent_pid, "VmRSS").unwrap() / 1024,
        proc_status_kib(collector_pid, "VmRSS").unwrap() / 1024,
    );
    if store > 0 {
        println!("{}", rig.collector_log_line("Failed to commit batch"));
    }
    assert!(
        blocked > 0 && max_buffered >= capacity * 9 / 10,
        "backpressure did not reach the agent's sources (blocked sends {blocked}, buffer \
         up to {max_buffered} of {capacity})"
    );
    assert!(
        max_lag > 1 << 20,
        "the reader never fell behind the writer (by at most {max_lag} bytes)"
    );
    assert!(
        queue_full + store > 0,
        "the collector never answered retry-later"
    );
    assert!(
        agent_peak < AGENT_PEAK_KIB,
        "agent peak RSS {agent_peak} KiB"
    );
    assert!(
        collector_peak < COLLECTOR_PEAK_KIB,
        "collector peak RSS {collector_peak} KiB"
    );
    rig.assert_all_arrive("slow sink", total);
}

/// The slow sink: the store locked `SLOW_SINK_HELD` of every `SLOW_SINK_PERIOD`.
const SLOW_SINK_HELD: Duration = Duration::from_millis(350);
const SLOW_SINK_PERIOD: Duration = Duration::from_millis(400);
/// The slow-sink writer: about 6,000 lines (0.9 MB) a second, above what the pulsed
/// store commits, so that the reader must fall behind; not more, because every line
/// is then shipped and counted through the API.
const SLOW_LINES_PER_TICK: u64 = 60;
/// Peak RSS bounds of the slow-sink test, for a debug build. Measured on a 2-core
/// machine: agent 21-26 MiB (its 10,000-event buffer full, 8 batches in flight),
/// collector 19-20 MiB (2 workers, a queue of 4 batches). The bounds leave 2.5x and
/// 6x room for allocator and build variation; an agent that held the 28 MB of lines
/// written during the fault, decoded into events, on top of its 20 MiB would pass
/// its bound. The direct proof that the data waited on disk is the reader's lag.
const AGENT_PEAK_KIB: u64 = 64 << 10;
const COLLECTOR_PEAK_KIB: u64 = 128 << 10;
