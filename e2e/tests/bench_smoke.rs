//! The benchmark harness (`benches/`, `monitoring-bench`) runs every scenario, here
//! on the debug binaries at 1% of its line counts and durations: the figures mean
//! nothing at this scale, but every scenario must run to the end and count every
//! line, with nothing lost or repeated, so that the harness cannot rot between the
//! runs that fill BENCHMARKS.md.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::process::Command;

use monitoring_e2e::bin_dir;

#[test]
fn every_scenario_runs_and_counts_nothing_lost_or_repeated() {
    let bench = bin_dir().join("monitoring-bench");
    assert!(
        bench.is_file(),
        "{} is missing: cargo build --workspace --bins",
        bench.display()
    );
    let list = Command::new(&bench).arg("--list").output().unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let names: Vec<String> = String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split('\t').next())
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 10, "{names:?}");

    let work = tempfile::tempdir().unwrap();
    let out = Command::new(&bench)
        .args(["--scale", "0.01", "--work-dir"])
        .arg(work.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    println!("{stdout}");

    let cells = |line: &str| -> Vec<String> {
        line.trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let mut lines = stdout.lines().filter(|l| l.starts_with('|'));
    let header = cells(lines.next().unwrap());
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (lost_dup, events, note) = (col("lost/dup"), col("events"), col("note"));
    let rows: Vec<Vec<String>> = lines.skip(1).map(cells).collect();
    let ran: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ran, names, "every scenario has a row, in order");
    for row in &rows {
        let name = &row[0];
        assert!(
            row[events].parse::<u64>().is_ok_and(|n| n > 0),
            "{name}: no events counted: {row:?}"
        );
        match row[lost_dup].as_str() {
            "0/0" => {}
            // The swarm and the idle agent count in their note instead.
            "-" => assert!(
                name == "idle-agent" || row[note].contains(" 0 batches unacknowledged"),
                "{name}: {row:?}"
            ),
            other => panic!("{name}: lost/duplicates {other}: {row:?}"),
        }
    }
}
