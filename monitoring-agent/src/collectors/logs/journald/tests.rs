//! The journald source against real journal files written by
//! `systemd-journal-remote` (see `testing`): every entry once with its fields,
//! filters, resuming after an acknowledged cursor, a vacuumed cursor, files added
//! while reading, and stopping.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use monitoring_common::{Event, EventKind, Severity, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{self, Loaded};
use super::testing::{BASE_USEC, BOOT_ID, add_journal_file};
use super::{JournalMatch, JournaldError, JournaldMetrics, Settings, run};
use crate::collectors::logs::ReadFrom;
use crate::pipeline::Envelope;

/// Long enough for a loaded 2-core machine; the happy path takes milliseconds.
const PATIENCE: Duration = Duration::from_secs(20);
/// How long to watch for entries that should not come.
const QUIET: Duration = Duration::from_millis(700);

pub(super) fn settings(path: &Path) -> Settings {
    Settings {
        path: Some(path.to_path_buf()),
        source: path.display().to_string(),
        units: Vec::new(),
        max_priority: None,
        matches: Vec::new(),
        read_from: ReadFrom::Beginning,
        wait_timeout: Duration::from_secs(1),
        checkpoint_interval: Duration::from_millis(100),
        filter: Arc::default(),
    }
}

/// A running source feeding a small channel (so that delivery waits for room).
pub(super) struct Running {
    task: JoinHandle<Result<(), JournaldError>>,
    rx: mpsc::Receiver<Envelope>,
    stop_reading: CancellationToken,
    stop_all: CancellationToken,
    metrics: Arc<JournaldMetrics>,
}

pub(super) fn start(settings: Settings, state: &Path) -> Running {
    let (tx, rx) = mpsc::channel(8);
    let metrics = Arc::new(JournaldMetrics::default());
    let (stop_reading, stop_all) = (CancellationToken::new(), CancellationToken::new());
    let task = tokio::spawn(run(
        settings,
        state.to_path_buf(),
        tx,
        metrics.clone(),
        stop_reading.clone(),
        stop_all.clone(),
    ));
    Running {
        task,
        rx,
        stop_reading,
        stop_all,
        metrics,
    }
}

impl Running {
    /// Receives `n` events, acknowledging those `ack` accepts (by sequence number) as
    /// the transport would.
    pub(super) async fn take(&mut self, n: usize, ack: impl Fn(u64) -> bool) -> Vec<Event> {
        let mut events = Vec::new();
        while events.len() < n {
            let envelope = tokio::time::timeout(PATIENCE, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("only {} of {n} events arrived", events.len()))
                .expect("the source ended early");
            let event = envelope.to_event().unwrap();
            if ack(seq(&event))
                && let Some((progress, position)) = &envelope.ack
            {
                progress.advance(*position);
            }
            events.push(event);
        }
        events
    }

    /// Asserts that nothing more arrives for a while.
    pub(super) async fn assert_quiet(&mut self) {
        if let Ok(Some(envelope)) = tokio::time::timeout(QUIET, self.rx.recv()).await {
            panic!("unexpected event: {:?}", envelope.to_event());
        }
    }

    /// Stops the source (as the agent does: reading first, then everything) and
    /// returns how long it took.
    pub(super) async fn stop(self) -> (Duration, Arc<JournaldMetrics>) {
        let started = Instant::now();
        self.stop_reading.cancel();
        self.stop_all.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the source did not stop")
            .unwrap()
            .unwrap();
        (started.elapsed(), self.metrics)
    }
}

fn log(event: &Event) -> &monitoring_common::LogEvent {
    match &event.kind {
        EventKind::Log(log) => log,
        other => panic!("not a log: {other:?}"),
    }
}

fn seq(event: &Event) -> u64 {
    let message = &log(event).message;
    message
        .strip_prefix("entry seq=")
        .and_then(|rest| rest.split('\n').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no seq in {message:?}"))
}

pub(super) fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(seq).collect()
}

/// A journal directory and a state directory side by side in a fresh temp dir.
pub(super) fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let journal = root.path().join("journal");
    let state = root.path().join("state");
    std::fs::create_dir(&journal).unwrap();
    (root, journal, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_arrives_once_with_its_fields() {
    let (_root, journal, state) = dirs();
    add_journal_file(&journal, "one", 0..300);
    let mut source = start(settings(&journal), &state);
    let events = source.take(300, |_| true).await;
    assert_eq!(seqs(&events), (0..300).collect::<Vec<_>>());
    source.assert_quiet().await;

    let e = &events[11];
    assert_eq!(e.source, journal.display().to_string());
    assert_eq!(e.timestamp_ns, (BASE_USEC as i64 + 11_000) * 1000);
    let l = log(e);
    assert_eq!(l.message, "entry seq=11\nsecond line \u{fffd}");
    assert_eq!(l.severity, Some(Severity::Error));
    let f = &l.fields;
    assert_eq!(f["priority"], Value::Int(3));
    assert_eq!(f["unit"], Value::Str("b.service".into()));
    assert_eq!(f["pid"], Value::Int(1000 + 11 % 3));
    assert_eq!(f["comm"], Value::Str("comm2".into()));
    assert_eq!(f["hostname"], Value::Str("testhost".into()));
    assert_eq!(f["boot_id"], Value::Str(BOOT_ID.into()));
    assert_eq!(f["syslog_identifier"], Value::Str("tester".into()));
    assert_eq!(f["transport"], Value::Str("journal".into()));

    let (_, metrics) = source.stop().await;
    assert_eq!(metrics.entries_read.get(), 300);
    assert_eq!(metrics.read_errors.get(), 0);
    assert_eq!(metrics.cursor_resets.get(), 0);
    assert!(metrics.checkpoint_writes.get() >= 1);
}

/// Runs a source with `configure` applied over entries 0..64 and returns the
/// sequence numbers it ships (it must ship exactly `expected` events).
async fn filtered(configure: impl FnOnce(&mut Settings), expected: usize) -> Vec<u64> {
    let (_root, journal, state) = dirs();
    add_journal_file(&journal, "one", 0..64);
    let mut s = settings(&journal);
    configure(&mut s);
    let mut source = start(s, &state);
    let events = source.take(expected, |_| true).await;
    source.assert_quiet().await;
    source.stop().await;
    seqs(&events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_priorities_and_matches_filter_entries() {
    // Units: a.service holds the even entries; a name without suffix is a service.
    let got = filtered(|s| s.units = vec!["a".into()], 32).await;
    assert!(got.iter().all(|n| n % 2 == 0), "{got:?}");

    // Priorities: warning (4) and more severe: seq % 8 in 0..=4.
    let got = filtered(|s| s.max_priority = Some(Severity::Warning), 40).await;
    assert!(got.iter().all(|n| n % 8 <= 4), "{got:?}");

    // Two values of one field are alternatives...
    let m = |field: &str, value: &str| JournalMatch {
        field: field.into(),
        value: value.into(),
    };
    let got = filtered(
        |s| s.matches = vec![m("_COMM", "comm0"), m("_COMM", "comm1")],
        43,
    )
    .await;
    assert!(got.iter().all(|n| n % 3 != 2), "{got:?}");

    // ...different fields must all match, and the groups are ANDed.
    let got = filtered(
        |s| {
            s.matches = vec![m("_COMM", "comm0"), m("_PID", "1000")];
            s.units = vec!["b.service".into()];
            s.max_priority = Some(Severity::Error);
        },
        // seq % 3 == 0, odd, seq % 8 <= 3: 3, 9, 27, 33, 51, 57.
        6,
    )
    .await;
    assert_eq!(got, vec![3, 9, 27, 33, 51, 57]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_the_last_acknowledged_entry() {
    let (_root, journal, state) = dirs();
    add_journal_file(&journal, "one", 0..50);

    // First run: everything is read, only 0..20 acknowledged.
    let mut source = start(settings(&journal), &state);
    let events = source.take(50, |n| n < 20).await;
    assert_eq!(seqs(&events), (0..50).collect::<Vec<_>>());
    source.stop().await;
    let Loaded::Cursor(Some(cursor)) = checkpoint::load(&state).unwrap() else {
        panic!("no cursor checkpointed");
    };
    assert!(cursor.contains(";i="), "{cursor}");

    // Entries written while the agent was down are read too.
    add_journal_file(&journal, "two", 50..60);
    let mut source = start(settings(&journal), &state);
    let events = source.take(40, |_| true).await;
    assert_eq!(
        seqs(&events),
        (20..60).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    source.assert_quiet().await;
    let (_, metrics) = source.stop().await;
    assert_eq!(metrics.cursor_resets.get(), 0);

    // Everything acknowledged: a third run has nothing to send.
    let mut source = start(settings(&journal), &state);
    source.assert_quiet().await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_under_a_filter_that_skips_the_checkpointed_entry_loses_nothing() {
    let (_root, journal, state) = dirs();
    add_journal_file(&journal, "one", 0..20);
    let mut source = start(settings(&journal), &state);
    // Acknowledged up to entry 10 (a.service).
    source.take(20, |n| n <= 10).await;
    source.stop().await;

    // Now only b.service: the checkpointed entry does not match; 11 is the first.
    let mut s = settings(&journal);
    s.units = vec!["b.service".into()];
    let mut source = start(s, &state);
    let events = source.take(5, |_| true).await;
    assert_eq!(seqs(&events), vec![11, 13, 15, 17, 19]);
    source.assert_quiet().await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vacuumed_cursor_restarts_at_the_oldest_entry_and_is_counted() {
    let (_root, journal, state) = dirs();
    let old = add_journal_file(&journal, "old", 0..10);
    add_journal_file(&journal, "new", 10..20);
    let mut source = start(settings(&journal), &state);
    source.take(20, |n| n < 5).await;
    source.stop().await;

    // The file holding the checkpointed entry is vacuumed.
    std::fs::remove_file(&old).unwrap();
    let mut source = start(settings(&journal), &state);
    let events = source.take(10, |_| true).await;
    assert_eq!(seqs(&events), (10..20).collect::<Vec<_>>());
    source.assert_quiet().await;
    let (_, metrics) = source.stop().await;
    assert_eq!(metrics.cursor_resets.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_added_while_reading_is_picked_up() {
    let (_root, journal, state) = dirs();
    add_journal_file(&journal, "one", 0..10);
    let mut source = start(settings(&journal), &state);
    assert_eq!(
        seqs(&source.take(10, |_| true).await),
        (0..10).collect::<Vec<_>>()
    );
    add_journal_file(&journal, "two", 10..25);
    let started = Instant::now();
    let events = source.take(15, |_| true).await;
    println!("new file picked up after {:?}", started.elapsed());
    assert_eq!(seqs(&events), (10..25).collect::<Vec<_>>());
    source.assert_quiet().await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_from_end_skips_old_entries_and_checkpoints_the_start_at_once() {
    let (_root, journal, state) = dirs();
    add_journal_file(&journal, "one", 0..10);
    let mut s = settings(&journal);
    s.read_from = ReadFrom::End;
    let mut source = start(s.clone(), &state);
    source.assert_quiet().await;
    // The starting point is saved before anything is read: a crash now must not
    // move it to a later end.
    assert!(matches!(
        checkpoint::load(&state).unwrap(),
        Loaded::Cursor(Some(_))
    ));
    source.stop().await;

    // Entries written while the agent was down come after that point.
    add_journal_file(&journal, "two", 10..14);
    let mut source = start(s, &state);
    let events = source.take(4, |_| true).await;
    assert_eq!(seqs(&events), vec![10, 11, 12, 13]);
    source.assert_quiet().await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_stops_promptly_when_idle_and_when_blocked() {
    let (_root, journal, state) = dirs();
    add_journal_file(&journal, "one", 0..100);

    // Idle: waiting in sd_journal_wait.
    let mut source = start(settings(&journal), &state);
    source.take(100, |_| true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (took, _) = source.stop().await;
    println!("idle reader stopped in {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");

    // Blocked: the pipeline is full and nobody receives.
    std::fs::remove_dir_all(&state).unwrap();
    let source = start(settings(&journal), &state);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (took, metrics) = source.stop().await;
    println!("blocked reader stopped in {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        metrics.entries_read.get() <= 9,
        "{}",
        metrics.entries_read.get()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_journal_directory_is_a_clear_error() {
    let (_root, journal, state) = dirs();
    let missing = journal.join("nope");
    let source = start(settings(&missing), &state);
    let err = source.task.await.unwrap().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("nope") && text.contains("cannot open"),
        "{text}"
    );
}

/// The shell that runs a command beside a systemd-journald of its own: in the
/// private mount namespace `unshare` made, tmpfs over journald's sockets and its
/// volatile (and, where it exists, persistent) journal directories, so that neither
/// the host's journal nor a journald running on it is touched.
const PRIVATE_JOURNALD: &str = r#"set -e
for d in /run/systemd/journal /run/log /var/log/journal; do
    if [ -d "$d" ] || [ "$d" != /var/log/journal ]; then mkdir -p "$d"; mount -t tmpfs tmpfs "$d"; fi
done
journald=/lib/systemd/systemd-journald
[ -x "$journald" ] || journald=/usr/lib/systemd/systemd-journald
[ -x "$journald" ] || { echo "systemd-journald is missing (package systemd)" >&2; exit 97; }
"$journald" & jpid=$!
i=0
while [ ! -S /run/systemd/journal/socket ]; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "systemd-journald did not start" >&2; exit 97; }
    sleep 0.1
done
set +e
"$@"; rc=$?
kill $jpid; wait $jpid
exit $rc"#;

/// Set in the copy of this test that runs inside the private namespace.
const INSIDE_PRIVATE_JOURNALD: &str = "MONITORING_TEST_INSIDE_PRIVATE_JOURNALD";

/// Reads the live system journal. No journald runs on the test machines, so the test
/// runs itself again in a private mount namespace beside a journald of its own
/// (which needs root, or unprivileged user namespaces), and there does the reading.
#[test]
fn reads_a_live_journald() {
    if std::env::var_os(INSIDE_PRIVATE_JOURNALD).is_some() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        return runtime.block_on(live_journal());
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            PRIVATE_JOURNALD,
            "sh",
        ])
        .arg(exe)
        .args([
            "--exact",
            "collectors::logs::journald::tests::reads_a_live_journald",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INSIDE_PRIVATE_JOURNALD, "1")
        .output()
        .expect("cannot run unshare(1) (package util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the live journald test failed ({}; it needs root for unshare -m):\n{stdout}\n{stderr}",
        out.status
    );
}

/// Writes two entries to the running journald with `systemd-cat` and `logger`
/// under a unique identifier, then reads them back from the system journal.
async fn live_journal() {
    assert!(
        Path::new("/run/systemd/journal/socket").exists(),
        "no journald runs here (/run/systemd/journal/socket is missing)"
    );
    let state = tempfile::tempdir().unwrap();
    let tag = format!("monitoring-agent-test-{}", std::process::id());
    let run_tool = |program: &str, args: &[&str]| {
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(status.success(), "{program} failed: {status}");
    };
    run_tool(
        "systemd-cat",
        &[
            "-t",
            &tag,
            "-p",
            "warning",
            "echo",
            "first from systemd-cat",
        ],
    );
    // journald's own syslog socket: /dev/log is only a link to it where it exists.
    let syslog_socket = "/run/systemd/journal/dev-log";
    run_tool(
        "logger",
        &[
            "-u",
            syslog_socket,
            "-t",
            &tag,
            "-p",
            "user.err",
            "second from logger",
        ],
    );

    let settings = Settings {
        path: None,
        source: super::SOURCE.to_string(),
        matches: vec![JournalMatch {
            field: "SYSLOG_IDENTIFIER".into(),
            value: tag.clone(),
        }],
        ..settings(Path::new("/"))
    };
    let mut source = start(settings, state.path());
    let mut events = Vec::new();
    while events.len() < 2 {
        let envelope = tokio::time::timeout(PATIENCE, source.rx.recv())
            .await
            .expect("the entries written to journald did not come back")
            .unwrap();
        events.push(envelope.to_event().unwrap());
    }
    source.stop().await;
    events.sort_by_key(|e| log(e).message.clone());
    let (first, second) = (log(&events[0]), log(&events[1]));
    assert_eq!(first.message, "first from systemd-cat");
    assert_eq!(first.severity, Some(Severity::Warning));
    assert_eq!(second.message, "second from logger");
    assert_eq!(second.severity, Some(Severity::Error));
    for e in &events {
        assert_eq!(e.source, "journald");
        assert_eq!(log(e).fields["syslog_identifier"], Value::Str(tag.clone()));
        assert!(log(e).fields.contains_key("hostname"), "{e:?}");
    }
}
