//! `monitoring-bench`: runs the end-to-end benchmark scenarios against the release
//! binaries beside it and prints the results as a Markdown table.
//!
//! `scripts/bench.sh [SCENARIO...]` builds everything and runs it; with no names it
//! runs every scenario (about twelve minutes on two cores).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use monitoring_benches::harness::{report, scenario};

#[derive(Debug, Parser)]
#[command(about = "End-to-end benchmarks of monitoring-agent and monitoring-collector")]
struct Args {
    /// Scenarios to run (a name, or a prefix such as `blackhole`); all when none.
    scenarios: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Multiplies line counts and durations (0.1 for a quick look).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Where each scenario's files go (a fresh directory inside it per scenario).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
    /// Keep each scenario's directory (configs, logs, stores) for inspection.
    #[arg(long)]
    keep: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !(args.scale > 0.0 && args.scale.is_finite()) {
        bail!("--scale must be a positive number");
    }
    let all = scenario::all(args.scale);
    if args.list {
        for (name, s) in &all {
            println!("{name}\t{s:?}");
        }
        return Ok(());
    }
    let chosen: Vec<_> = all
        .iter()
        .filter(|(name, _)| {
            args.scenarios.is_empty() || args.scenarios.iter().any(|s| name.starts_with(s))
        })
        .collect();
    if chosen.is_empty() {
        bail!("no scenario matches {:?}; see --list", args.scenarios);
    }
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (name, s) in chosen {
        let dir = tempfile::Builder::new()
            .prefix(&format!("bench-{name}-"))
            .tempdir_in(&args.work_dir)
            .with_context(|| format!("making a directory in {}", args.work_dir.display()))?;
        eprintln!("== {name} (in {})", dir.path().display());
        match scenario::run(name, s, dir.path()) {
            Ok(row) => {
                eprint!("{}", report::table(std::slice::from_ref(&row)));
                rows.push(row);
            }
            Err(error) => {
                eprintln!("{name} FAILED: {error:#}");
                failed.push(name.clone());
            }
        }
        if args.keep {
            let kept = dir.keep();
            eprintln!("   kept {}", kept.display());
        }
    }
    println!("{}", report::table(&rows));
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}
