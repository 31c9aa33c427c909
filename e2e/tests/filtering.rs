//! End to end: `[collectors.logs.filter]` on loghub files (Hadoop, Apache, Linux).
//! Exactly the lines the filter passes arrive, each once, across a restart and a
//! reload; the lines it does not pass are counted in
//! `monitoring_agent_events_filtered_total` and never read again.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::path::{Path, PathBuf};
use std::time::Duration;

use monitoring_common::Severity;
use monitoring_common::severity::detect;
use monitoring_e2e::{
    Agent, AgentOptions, Collector, LineWriter, Scrape, sighup, sigterm, tally, wait_until,
};

const DEADLINE: Duration = Duration::from_secs(90);
const SOURCES: [&str; 3] = ["Hadoop_2k.log", "Apache_2k.log", "Linux_2k.log"];

/// The lines of one loghub file, CR/LF stripped, non-empty.
fn loghub(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/loghub")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    String::from_utf8_lossy(&bytes)
        .split(['\n', '\r'])
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Copy `copy` of the three sources as `(file in logs, lines)`, every line prefixed
/// with a sequence number unique across sources and copies.
fn numbered(logs: &Path, copy: u64) -> Vec<(PathBuf, Vec<String>)> {
    let mut seq = copy * 100_000;
    SOURCES
        .iter()
        .map(|name| {
            let lines = loghub(name)
                .into_iter()
                .map(|l| {
                    seq += 1;
                    format!("seq={seq:08} {l}")
                })
                .collect();
            (logs.join(format!("copy{copy}-{name}")), lines)
        })
        .collect()
}

/// Appends `range` of each source's lines to its file; the lines written.
fn write(sources: &[(PathBuf, Vec<String>)], range: std::ops::Range<usize>) -> Vec<String> {
    let mut written = Vec::new();
    for (path, lines) in sources {
        let part = &lines[range.start.min(lines.len())..range.end.min(lines.len())];
        LineWriter::open(path)
            .unwrap()
            .write_lines(part.iter().cloned())
            .unwrap();
        written.extend_from_slice(part);
    }
    written
}

fn agent_count(agent: &Agent, name: &str) -> u64 {
    Scrape::agent(agent)
        .and_then(|s| s.count(name, &[("source", "file")]))
        .unwrap_or(0)
}

fn filtered(agent: &Agent) -> u64 {
    agent_count(agent, "monitoring_agent_events_filtered_total")
}

fn read(agent: &Agent) -> u64 {
    agent_count(agent, "monitoring_agent_events_read_total")
}

/// Waits until `want` messages are stored and this run of the agent counted
/// `filtered_now` filtered and `read_now` read events; then what is stored.
fn settle(
    collector: &Collector,
    agent: &Agent,
    want: usize,
    filtered_now: u64,
    read_now: u64,
) -> Vec<String> {
    wait_until("the expected lines and counts", DEADLINE, || {
        collector.all_log_messages().is_ok_and(|m| m.len() >= want)
            && filtered(agent) >= filtered_now
            && read(agent) >= read_now
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: stored {:?} of {want}, filtered {} of {filtered_now}, read {} of {read_now}",
            collector.all_log_messages().map(|m| m.len()),
            filtered(agent),
            read(agent),
        )
    });
    // Anything extra (a line read twice, one that should have been filtered) would
    // arrive within a flush or two.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(filtered(agent), filtered_now, "filtered counter");
    assert_eq!(read(agent), read_now, "read counter");
    collector.all_log_messages().unwrap()
}

/// Asserts that `stored` is `expected` exactly, each once, printing the counts.
fn assert_exactly(stored: &[String], expected: &[String]) {
    let mut got = stored.to_vec();
    got.sort();
    let mut want = expected.to_vec();
    want.sort();
    let t = tally(stored, 0);
    let lost = want
        .iter()
        .filter(|w| got.binary_search(w).is_err())
        .count();
    let unexpected = got
        .iter()
        .filter(|g| want.binary_search(g).is_err())
        .count();
    println!(
        "expected {} lines: stored {}, lost {lost}, duplicates {}, unexpected {unexpected}",
        want.len(),
        got.len(),
        t.duplicates
    );
    assert_eq!(lost, 0, "lost");
    assert_eq!(t.duplicates, 0, "duplicates");
    assert_eq!(unexpected, 0, "lines that should not ship");
    assert_eq!(got, want);
}

fn start(dir: &Path, logs: &Path, collector: &Collector, filter: &str) -> Agent {
    Agent::start(
        dir,
        "filter",
        &collector.endpoint(),
        &AgentOptions {
            files: vec![format!("{}/*.log", logs.display())],
            extra: format!("[collectors.logs.filter]\n{filter}\n"),
            ..AgentOptions::default()
        },
    )
    .unwrap()
}

/// `min_severity = "error"`: exactly the lines `severity::detect` finds error or
/// worse arrive. The agent is stopped (SIGTERM) midway once everything was read:
/// the second run reads only what was written since, and its filtered counter
/// covers exactly those lines. Then stopped again while it reads a second copy of
/// the files: still every line once.
#[test]
fn only_errors_ship_and_a_restart_repeats_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, logs) = (tmp.path(), tmp.path().join("logs"));
    std::fs::create_dir_all(&logs).unwrap();
    let sources = numbered(&logs, 0);
    let ships = |l: &String| detect(l).is_some_and(|s| s <= Severity::Error);
    let collector = Collector::start(dir).unwrap();
    let mut agent = start(dir, &logs, &collector, "min_severity = \"error\"");

    let first = write(&sources, 0..1000);
    let want_first: Vec<String> = first.iter().filter(|l| ships(l)).cloned().collect();
    let shipped = want_first.len() as u64;
    assert!(
        shipped > 10 && shipped < first.len() as u64 / 2,
        "{shipped}"
    );
    let stored = settle(
        &collector,
        &agent,
        want_first.len(),
        first.len() as u64 - shipped,
        shipped,
    );
    assert_exactly(&stored, &want_first);

    sigterm(&agent.child);
    let status = agent.child.wait().unwrap();
    assert!(status.success(), "agent exit: {status}");
    let second = write(&sources, 1000..usize::MAX);
    agent.restart().unwrap();
    let want_second: Vec<String> = second.iter().filter(|l| ships(l)).cloned().collect();
    let all: Vec<String> = want_first.iter().chain(&want_second).cloned().collect();
    // This run's counters: only the lines written while the agent was down.
    let stored = settle(
        &collector,
        &agent,
        all.len(),
        (second.len() - want_second.len()) as u64,
        want_second.len() as u64,
    );
    println!(
        "lines {} (first run {}, second {}), shipped {}",
        first.len() + second.len(),
        first.len(),
        second.len(),
        all.len()
    );
    assert_exactly(&stored, &all);

    // Stopped in the middle of reading: acknowledged lines and the filtered lines
    // after them are not read again, the rest is.
    let copy = numbered(&logs, 1);
    let third = write(&copy, 0..usize::MAX);
    // Long enough for the agent to see the new files, not to finish them.
    std::thread::sleep(Duration::from_millis(40));
    let read_before_stop = read(&agent);
    sigterm(&agent.child);
    let status = agent.child.wait().unwrap();
    assert!(status.success(), "agent exit: {status}");
    agent.restart().unwrap();
    let want_third: Vec<String> = third.iter().filter(|l| ships(l)).cloned().collect();
    let all: Vec<String> = all.iter().chain(&want_third).cloned().collect();
    wait_until("the copy's lines", DEADLINE, || {
        collector
            .all_log_messages()
            .is_ok_and(|m| m.len() >= all.len())
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    println!(
        "stopped while reading {} lines ({} to ship): second run had read {}, third run read {} and filtered {}",
        third.len(),
        want_third.len(),
        read_before_stop - want_second.len() as u64,
        read(&agent),
        filtered(&agent),
    );
    assert_exactly(&collector.all_log_messages().unwrap(), &all);
}

/// Include and exclude expressions: exactly the matching lines arrive. A reload
/// (SIGHUP) changes the filter of the open files: lines written after it follow
/// the new one, and nothing before is read again.
#[test]
fn include_and_exclude_ship_exactly_the_matching_lines_and_a_reload_changes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, logs) = (tmp.path(), tmp.path().join("logs"));
    std::fs::create_dir_all(&logs).unwrap();
    let sources = numbered(&logs, 0);
    let collector = Collector::start(dir).unwrap();
    // Literal patterns (with escaped brackets), so that `contains` says the same.
    let filter = "include = ['sshd\\(pam_unix\\)', '\\[error\\]', 'WARN']\n\
                  exclude = ['authentication failure', 'mod_jk']";
    let first_ships = |l: &&String| {
        ["sshd(pam_unix)", "[error]", "WARN"]
            .iter()
            .any(|p| l.contains(p))
            && !["authentication failure", "mod_jk"]
                .iter()
                .any(|p| l.contains(p))
    };
    let mut agent = start(dir, &logs, &collector, filter);
    let first = write(&sources, 0..1200);
    let want_first: Vec<String> = first.iter().filter(first_ships).cloned().collect();
    assert!(want_first.len() > 10, "{}", want_first.len());
    let stored = settle(
        &collector,
        &agent,
        want_first.len(),
        (first.len() - want_first.len()) as u64,
        want_first.len() as u64,
    );
    assert_exactly(&stored, &want_first);

    // Now everything but INFO lines.
    let config = std::fs::read_to_string(&agent.config).unwrap();
    assert!(config.contains(filter), "{config}");
    std::fs::write(&agent.config, config.replace(filter, "exclude = ['INFO']")).unwrap();
    sighup(&agent.child);
    let log = agent
        .wait_for_log("Configuration reloaded and applied.", 1, DEADLINE)
        .unwrap();
    assert!(log.contains("collectors.logs.filter"), "{log}");
    let second = write(&sources, 1200..usize::MAX);
    let want_second: Vec<String> = second
        .iter()
        .filter(|l| !l.contains("INFO"))
        .cloned()
        .collect();
    let all: Vec<String> = want_first.iter().chain(&want_second).cloned().collect();
    let stored = settle(
        &collector,
        &agent,
        all.len(),
        (first.len() - want_first.len() + second.len() - want_second.len()) as u64,
        all.len() as u64,
    );
    assert_exactly(&stored, &all);
}
