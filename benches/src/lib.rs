//! Shared support for the benchmarks: the loghub corpus, the end-to-end
//! [`harness`] that runs the real agent and collector, and the [`swarm`] of
//! simulated agents.

pub mod harness;
pub mod swarm;

use std::path::{Path, PathBuf};

use monitoring_common::Event;

/// The directory of the loghub samples, `../shared/data/loghub`.
pub fn loghub_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/loghub")
}

/// Every non-empty line of the loghub samples, file by file in name order, with the
/// file each came from.
pub fn loghub_lines() -> Vec<(PathBuf, String)> {
    let mut paths: Vec<_> = std::fs::read_dir(loghub_dir())
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|x| x == "log"));
    paths.sort();
    let mut lines = Vec::new();
    for p in paths {
        let Ok(bytes) = std::fs::read(&p) else {
            continue;
        };
        for line in String::from_utf8_lossy(&bytes).split(['\n', '\r']) {
            if !line.is_empty() {
                lines.push((p.clone(), line.to_owned()));
            }
        }
    }
    lines
}

/// Every non-empty line of the loghub samples as a log event (timestamp: its index
/// in its file).
pub fn loghub_events() -> Vec<Event> {
    let mut events = Vec::new();
    let mut previous: Option<PathBuf> = None;
    let mut index = 0i64;
    for (path, line) in loghub_lines() {
        if previous.as_ref() != Some(&path) {
            index = 0;
            previous = Some(path.clone());
        }
        events.push(Event::log(index, path.display().to_string(), line));
        index += 1;
    }
    events
}
