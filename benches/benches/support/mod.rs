//! Inputs shared by the agent-side benchmarks: the loghub samples as files, as raw
//! bytes, and as the events the file source makes of them.

#![allow(dead_code)] // Each bench uses its own part.

use std::path::{Path, PathBuf};

use monitoring_common::event::Fields;
use monitoring_common::{Event, Value};

/// Events per batch: the agent's default `[buffer] max_batch_events`.
pub const BATCH: usize = 1_000;

/// One loghub sample: its name and its bytes.
pub struct Sample {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Every `*.log` file of `../shared/data/loghub`, sorted by name.
pub fn samples() -> Vec<Sample> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/loghub");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: loghub data missing: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "{}: no *.log files", dir.display());
    paths
        .into_iter()
        .map(|p| Sample {
            name: p.file_stem().unwrap().to_string_lossy().into_owned(),
            bytes: std::fs::read(&p).unwrap(),
        })
        .collect()
}

/// The lines of a sample as the file source ships them: source the file's path (a
/// fixed one, so that sizes do not depend on where the repository is), one
/// timestamp per read, and the `offset` field of the line's start.
pub fn agent_events(sample: &Sample) -> Vec<Event> {
    let source = format!("/var/log/loghub/{}.log", sample.name);
    let mut events = Vec::new();
    let mut offset = 0usize;
    for line in sample.bytes.split_inclusive(|&b| b == b'\n') {
        let start = offset;
        offset += line.len();
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let mut event = Event::log(
            1_795_996_800_000_000_000,
            source.clone(),
            String::from_utf8_lossy(text),
        );
        if let monitoring_common::EventKind::Log(log) = &mut event.kind {
            let mut fields = Fields::new();
            fields.insert("offset".to_string(), Value::Int(start as i64));
            log.fields = fields;
        }
        events.push(event);
    }
    events
}

/// The whole corpus as batches of [`BATCH`] agent events, each batch within one
/// sample (a sample's last batch may be shorter).
pub fn corpus_batches() -> Vec<(String, Vec<Event>)> {
    let mut batches = Vec::new();
    for sample in samples() {
        let events = agent_events(&sample);
        for chunk in events.chunks(BATCH) {
            batches.push((sample.name.clone(), chunk.to_vec()));
        }
    }
    batches
}
