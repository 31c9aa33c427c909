//! End to end: SIGHUP reloads the agent's configuration without losing or re-reading
//! anything, and a broken configuration is rejected while the agent keeps shipping.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::time::Duration;

use monitoring_e2e::{
    Agent, AgentOptions, Collector, LineWriter, blocking_get, loghub_lines, numbered_line, sighup,
    wait_for_all,
};

const DEADLINE: Duration = Duration::from_secs(120);
const LOG_WAIT: Duration = Duration::from_secs(30);

/// The agent tails a.log; a reload adds b.log (and changes a key that needs a
/// restart); a broken file is then rejected. Every line of both files arrives, and
/// none twice: a.log is not read again after the reload.
#[test]
fn sighup_adds_a_file_keeps_positions_and_rejects_a_broken_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let (a, b) = (logs.join("a.log"), logs.join("b.log"));
    let collector = Collector::start(dir).unwrap();
    let a_pattern = a.display().to_string();
    let mut agent = Agent::start(
        dir,
        "reloader",
        &collector.endpoint(),
        &AgentOptions {
            files: vec![a_pattern.clone()],
            ..AgentOptions::default()
        },
    )
    .unwrap();

    let corpus = loghub_lines();
    let lines = |from: u64, to: u64| (from..to).map(|n| numbered_line(&corpus, n));
    let mut wa = LineWriter::open(&a).unwrap();
    wa.write_lines(lines(0, 300)).unwrap();
    // a.log is delivered (and acknowledged) before the reload: reading it again
    // afterwards would show as duplicates.
    let t = wait_for_all(&collector, 300, DEADLINE).unwrap();
    assert!(
        t.missing.is_empty(),
        "before reload: missing {:?}",
        t.missing
    );
    // b.log has lines before the reload: it is a new file, read from its start.
    let mut wb = LineWriter::open(&b).unwrap();
    wb.write_lines(lines(300, 400)).unwrap();

    let original = std::fs::read_to_string(&agent.config).unwrap();
    let old_files = format!("files = [{a_pattern:?}]");
    assert!(original.contains(&old_files), "{original}");
    let reloaded = original
        .replace(
            &old_files,
            &format!("files = [{a_pattern:?}, {:?}]", b.display().to_string()),
        )
        .replace("compression = \"lz4\"", "compression = \"zstd\"");
    std::fs::write(&agent.config, &reloaded).unwrap();
    sighup(&agent.child);
    let log = agent
        .wait_for_log("Configuration reloaded and applied.", 1, LOG_WAIT)
        .unwrap();
    assert!(log.contains("collectors.logs.files"), "{log}");
    assert!(log.contains("needs a restart"), "{log}");
    assert!(log.contains("buffer.compression"), "{log}");

    wa.write_lines(lines(400, 600)).unwrap();
    wb.write_lines(lines(600, 700)).unwrap();

    // A key that does not exist: rejected with file, line and key, as check-config.
    let broken = reloaded.replace("read_from = ", "filez = []\nread_from = ");
    std::fs::write(&agent.config, broken).unwrap();
    sighup(&agent.child);
    let log = agent
        .wait_for_log("New configuration rejected", 1, LOG_WAIT)
        .unwrap();
    assert!(
        log.contains(&format!("{}:", agent.config.display())),
        "{log}"
    );
    assert!(log.contains("key `collectors.logs.filez`"), "{log}");

    // Still running, still shipping both files.
    wa.write_lines(lines(700, 800)).unwrap();
    wb.write_lines(lines(800, 900)).unwrap();
    let t = wait_for_all(&collector, 900, DEADLINE).unwrap();
    println!(
        "reload: expected {} missing {} duplicates {}",
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
    assert_eq!(t.duplicates, 0, "lines read twice after the reload");
    assert!(agent.child.try_wait().unwrap().is_none(), "agent exited");

    let (status, metrics) =
        blocking_get(&format!("http://127.0.0.1:{}/metrics", agent.control_port)).unwrap();
    assert_eq!(status, 200);
    for expected in [
        "monitoring_agent_config_reloads_total{result=\"ok\"} 1",
        "monitoring_agent_config_reloads_total{result=\"error\"} 1",
    ] {
        assert!(metrics.contains(expected), "{expected} not in\n{metrics}");
    }
}
