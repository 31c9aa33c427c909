//! The file sink on a real file system: rotation by size and by age, gzip, the
//! number of rotated files kept, and a file or directory that vanishes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use monitoring_common::Event;

use super::*;

fn settings(path: &Path) -> FileSettings {
    FileSettings {
        path: path.to_path_buf(),
        max_bytes: DEFAULT_MAX_BYTES,
        max_age: Duration::from_secs(3600),
        max_files: 0,
        gzip: false,
        durable: true,
    }
}

/// A batch of `n` log events numbered from `first`, each about 150 bytes as NDJSON.
fn batch(first: u64, n: u64) -> Arc<IngestBatch> {
    Arc::new(IngestBatch {
        agent_id: "web-1".into(),
        stream_id: 1,
        sequence: first,
        received_ns: 0,
        events: (first..first + n)
            .map(|i| {
                Event::log(
                    1_700_000_000_000_000_000,
                    "/var/log/app.log",
                    format!("seq={i:08}"),
                )
            })
            .collect(),
    })
}

/// Rotated files beside `path`, oldest first.
fn rotated(path: &Path) -> Vec<PathBuf> {
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let mut files: Vec<PathBuf> = std::fs::read_dir(path.parent().expect("dir"))
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let n = p.file_name().expect("name").to_string_lossy().into_owned();
            n.starts_with(&format!("{name}.")) && !n.ends_with(".tmp")
        })
        .collect();
    files.sort();
    files
}

/// The text of a file, inflated if it is `.gz`.
fn read(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read");
    if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .expect("valid gzip");
        text
    } else {
        String::from_utf8(bytes).expect("utf-8")
    }
}

/// The sequence numbers in NDJSON text, checking every line is a whole event.
fn seqs(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("one event per line");
            let m = v["message"].as_str().expect("message");
            m.trim_start_matches("seq=").parse().expect("number")
        })
        .collect()
}

#[test]
fn rotates_by_size_without_splitting_batches_or_losing_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out/events.ndjson");
    let sink = FileSink::with_settings(FileSettings {
        max_bytes: 4096,
        ..settings(&path)
    })
    .expect("opens, creating its directory");
    let mut next = 0;
    for _ in 0..40 {
        sink.write(&[batch(next, 5), batch(next + 5, 3)])
            .expect("written");
        next += 8;
    }
    let files = rotated(&path);
    assert!(files.len() >= 5, "{files:?}");
    let mut all = Vec::new();
    for f in files.iter().chain([&path]) {
        let size = std::fs::metadata(f).expect("meta").len();
        assert!(size <= 4096, "{} is {size} bytes", f.display());
        let text = read(f);
        assert!(text.ends_with('\n'));
        all.extend(seqs(&text));
    }
    assert_eq!(
        all,
        (0..next).collect::<Vec<_>>(),
        "every line once, in order"
    );
    assert!(sink.health().is_ok());
}

#[test]
fn rotates_by_age_at_the_next_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.ndjson");
    let sink = FileSink::with_settings(FileSettings {
        max_age: Duration::from_millis(300),
        ..settings(&path)
    })
    .expect("opens");
    sink.write(&[batch(0, 2)]).expect("written");
    sink.write(&[batch(2, 2)]).expect("written");
    assert!(rotated(&path).is_empty(), "rotated too early");
    std::thread::sleep(Duration::from_millis(400));
    sink.write(&[batch(4, 2)]).expect("written");
    let files = rotated(&path);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(seqs(&read(&files[0])), [0, 1, 2, 3]);
    assert_eq!(seqs(&read(&path)), [4, 5]);
    let name = files[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let stamp = name.strip_prefix("events.ndjson.").expect("prefix");
    assert!(rotate::is_stamp(stamp), "{name}");
}

#[test]
fn gzips_rotated_files_in_the_background_and_keeps_max_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.ndjson");
    let sink = FileSink::with_settings(FileSettings {
        max_bytes: 4096,
        max_files: 3,
        gzip: true,
        durable: false,
        ..settings(&path)
    })
    .expect("opens");
    let mut next = 0;
    for _ in 0..60 {
        sink.write(&[batch(next, 10)]).expect("written");
        next += 10;
    }
    sink.flush().expect("flushed: compression finished");
    let files = rotated(&path);
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.extension().is_some_and(|e| e == "gz")),
        "{files:?}"
    );
    // The newest three rotated files, then the current one: the last lines, in order
    // and without a gap.
    let mut kept = Vec::new();
    for f in files.iter().chain([&path]) {
        kept.extend(seqs(&read(f)));
    }
    let first = kept[0];
    assert!(first > 0, "old files were not pruned");
    assert_eq!(kept, (first..next).collect::<Vec<_>>());
}

#[test]
fn a_previous_runs_uncompressed_rotation_is_compressed_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.ndjson");
    let left = dir.path().join("events.ndjson.20260101T000000.000000000Z");
    std::fs::write(&left, "{\"message\":\"seq=00000007\"}\n").expect("write");
    let stale = dir
        .path()
        .join("events.ndjson.20260101T000000.000000000Z.gz.tmp");
    std::fs::write(&stale, "half").expect("write");
    let unrelated = dir.path().join("events.ndjson.bak");
    std::fs::write(&unrelated, "keep me").expect("write");
    let sink = FileSink::with_settings(FileSettings {
        gzip: true,
        max_files: 1,
        ..settings(&path)
    })
    .expect("opens");
    sink.flush().expect("flushed");
    assert!(!left.exists() && !stale.exists());
    let gz = rotated(&path);
    assert_eq!(gz.len(), 2, "{gz:?}"); // the .gz and the unrelated .bak
    assert_eq!(seqs(&read(&gz[0])), [7]);
    assert_eq!(
        std::fs::read_to_string(&unrelated).expect("kept"),
        "keep me"
    );
}

#[test]
fn a_vanished_file_is_created_again_and_a_vanished_directory_fails_until_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir.path().join("sinks");
    let path = sub.join("events.ndjson");
    let sink = FileSink::with_settings(settings(&path)).expect("opens");
    sink.write(&[batch(0, 2)]).expect("written");

    std::fs::remove_file(&path).expect("rm");
    sink.write(&[batch(2, 2)]).expect("written to a new file");
    assert_eq!(seqs(&read(&path)), [2, 3]);

    std::fs::remove_dir_all(&sub).expect("rm -r");
    let error = sink.write(&[batch(4, 2)]).expect_err("no directory");
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("events.ndjson"), "{error}");
    assert!(sink.health().is_err());

    std::fs::create_dir(&sub).expect("mkdir");
    sink.write(&[batch(4, 2)])
        .expect("written once the directory is back");
    assert!(sink.health().is_ok());
    assert_eq!(seqs(&read(&path)), [4, 5]);
}
