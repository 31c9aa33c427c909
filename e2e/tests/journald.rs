//! End to end: journal entries (real journal files written by
//! `systemd-journal-remote`) read by the real agent built with the `journald`
//! feature arrive at the collector once each, with their fields, through a graceful
//! restart (SIGTERM: no duplicate) and a crash (SIGKILL: duplicates counted).

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use monitoring_e2e::{
    Agent, AgentOptions, Collector, JournalEntry, TEST_BOOT_ID, Tally, add_journal_file,
    agent_metric, all_logs, journal_entry, require_journald_agent, sigterm, wait_for_all,
    wait_until,
};

const DEADLINE: Duration = Duration::from_secs(120);
/// Entries per journal file (each file is 8 MiB on disk whatever its content).
const PER_FILE: u64 = 2_500;
const SEVERITIES: [&str; 8] = [
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "info",
    "debug",
];

/// Writes journal file `index`, holding entries `index * PER_FILE ..`.
fn write_file(journal: &Path, index: u64, base_usec: u64) {
    let entries: Vec<JournalEntry> = (index * PER_FILE..(index + 1) * PER_FILE)
        .map(|seq| journal_entry(seq, base_usec))
        .collect();
    add_journal_file(journal, &format!("part{index:02}"), &entries).unwrap();
}

fn print_tally(what: &str, t: &Tally) {
    println!(
        "journald {what}: expected {} lost {} duplicates {}",
        t.expected,
        t.missing.len(),
        t.duplicates
    );
}

/// 20,000 entries in 8 journal files written while the agent runs: after the
/// first two files the agent is stopped with SIGTERM and restarted (nothing lost,
/// nothing twice); after six it is killed with SIGKILL once entries flow, and
/// restarted (nothing lost; duplicates printed). Every record's fields are checked
/// through the REST API.
#[test]
fn journal_entries_arrive_once_with_fields_through_sigterm_and_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    require_journald_agent(dir).unwrap();
    let journal = dir.join("journal");
    std::fs::create_dir_all(&journal).unwrap();
    let collector = Collector::start(dir).unwrap();
    let opts = AgentOptions {
        extra: format!(
            "[collectors.logs.journald]\nenabled = true\npath = \"{}\"\nread_from = \"beginning\"\n",
            journal.display()
        ),
        ..AgentOptions::default()
    };
    let mut agent = Agent::start(dir, "journald", &collector.endpoint(), &opts).unwrap();
    // Recent timestamps, so that retention and time windows keep them.
    let now_usec = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let base_usec = now_usec - 3_600_000_000;

    // Phase 1: SIGTERM right after two files landed, while the agent reads them.
    write_file(&journal, 0, base_usec);
    write_file(&journal, 1, base_usec);
    sigterm(&agent.child);
    let started = Instant::now();
    wait_until("the agent to exit on SIGTERM", DEADLINE, || {
        agent.child.try_wait().unwrap().is_some()
    })
    .unwrap();
    let status = agent.child.wait().unwrap();
    println!("agent stopped on SIGTERM in {:?}", started.elapsed());
    assert!(status.success(), "{status}; log:\n{}", agent.log());
    agent.restart().unwrap();
    write_file(&journal, 2, base_usec);
    write_file(&journal, 3, base_usec);
    let t = wait_for_all(&collector, 4 * PER_FILE, DEADLINE).unwrap();
    print_tally("after SIGTERM", &t);
    assert!(
        t.missing.is_empty(),
        "lost {} entries, first {:?}; agent log:\n{}",
        t.missing.len(),
        &t.missing[..t.missing.len().min(10)],
        agent.log()
    );
    assert_eq!(t.duplicates, 0, "a graceful restart sent entries twice");

    // Phase 2: SIGKILL while the new entries flow (the agent's own count of entries
    // read says when they do).
    let read = || agent_metric(&agent, "monitoring_agent_journald_read_entries").unwrap_or(0.0);
    let before = read();
    write_file(&journal, 4, base_usec);
    write_file(&journal, 5, base_usec);
    wait_until("the agent to read phase 2", DEADLINE, || read() > before).unwrap();
    let read_at_kill = read() - before;
    agent.kill();
    println!(
        "agent killed after reading {read_at_kill} of {} new entries",
        2 * PER_FILE
    );
    agent.restart().unwrap();
    write_file(&journal, 6, base_usec);
    write_file(&journal, 7, base_usec);
    let total = 8 * PER_FILE;
    let t = wait_for_all(&collector, total, DEADLINE).unwrap();
    print_tally("after SIGKILL", &t);
    assert!(
        t.missing.is_empty(),
        "lost {} entries, first {:?}; agent log:\n{}",
        t.missing.len(),
        &t.missing[..t.missing.len().min(10)],
        agent.log()
    );

    // Every record, with its fields intact.
    let source = journal.display().to_string();
    let logs = all_logs(&collector).unwrap();
    assert_eq!(logs.len() as u64, total + t.duplicates);
    for log in &logs {
        let message = log["message"].as_str().unwrap();
        let seq: u64 = message[4..12].parse().unwrap();
        let context = || format!("{log:#}");
        assert_eq!(
            message,
            format!("seq={seq:08} journal entry\nsecond line \u{fffd}"),
            "{}",
            context()
        );
        assert_eq!(log["source"], source.as_str(), "{}", context());
        assert_eq!(
            log["severity"],
            SEVERITIES[(seq % 8) as usize],
            "{}",
            context()
        );
        assert_eq!(
            log["timestamp_ns"].as_i64().unwrap(),
            ((base_usec + seq) * 1000) as i64,
            "{}",
            context()
        );
        let f = &log["fields"];
        let unit = if seq.is_multiple_of(2) {
            "even.service"
        } else {
            "odd.service"
        };
        assert_eq!(f["unit"], unit, "{}", context());
        assert_eq!(f["priority"], seq % 8, "{}", context());
        assert_eq!(f["pid"], 1000 + seq % 7, "{}", context());
        assert_eq!(f["comm"], format!("comm{}", seq % 3), "{}", context());
        assert_eq!(f["hostname"], "journal-host", "{}", context());
        assert_eq!(f["boot_id"], TEST_BOOT_ID, "{}", context());
        assert_eq!(f["syslog_identifier"], "e2e", "{}", context());
        assert_eq!(f["transport"], "journal", "{}", context());
    }
}
