//! Shared support for the benchmarks: the loghub corpus as events.

use std::path::Path;

use monitoring_common::Event;

/// Every non-empty line of the loghub samples in `../shared/data/loghub`, as log events.
pub fn loghub_events() -> Vec<Event> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/loghub");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|x| x == "log"));
    paths.sort();
    let mut events = Vec::new();
    for p in paths {
        let Ok(bytes) = std::fs::read(&p) else {
            continue;
        };
        let source = p.display().to_string();
        for (i, line) in String::from_utf8_lossy(&bytes)
            .split(['\n', '\r'])
            .enumerate()
        {
            if !line.is_empty() {
                events.push(Event::log(i as i64, source.clone(), line));
            }
        }
    }
    events
}
