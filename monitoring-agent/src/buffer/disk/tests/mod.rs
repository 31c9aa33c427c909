//! Unit tests of the spool: format, recovery, ledger, deletion and full policies;
//! `model` checks random write/ack/restart/corrupt sequences.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use monitoring_common::protocol::Codec;
use monitoring_common::protocol::frame::encode_frame;
use tokio_tungstenite::tungstenite::Bytes;

use super::format::{self, Read};
use super::open::Spool;
use super::reader::Next;
use super::*;
use crate::pipeline::{Batch, Source, SourceCounts, SourceProgress};
use crate::telemetry::{DropReason, DroppedEvents};

mod model;
mod sources;

pub(super) fn options(
    dir: &Path,
    max_bytes: u64,
    segment_bytes: u64,
    when_full: WhenFull,
) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes,
        sync: SyncMode::Batch,
        when_full,
    }
}

pub(super) fn metrics() -> SpoolMetrics {
    SpoolMetrics {
        dropped: DroppedEvents::default(),
        ..SpoolMetrics::default()
    }
}

/// A batch of `events` events, named (stream, seq), with a mark on `source`; half
/// its events (rounded down) are host metrics, the rest lines of files.
pub(super) fn batch(
    stream: u64,
    seq: u64,
    events: u32,
    source: &Arc<SourceProgress>,
    mark: u64,
) -> Batch {
    let payload = vec![b'x'; 40 + (seq % 7) as usize];
    Batch {
        stream_id: stream,
        sequence: seq,
        event_count: events,
        uncompressed_bytes: payload.len(),
        frame: Bytes::from(encode_frame(Codec::None, stream, seq, events, &payload)),
        marks: vec![(source.clone(), mark)],
        sources: mixed(events),
    }
}

/// `events / 2` host metrics, the rest file lines.
fn mixed(events: u32) -> SourceCounts {
    let mut c = SourceCounts::default();
    c.add_n(Source::HostMetrics, events / 2);
    c.add_n(Source::File, events - events / 2);
    c
}

pub(super) fn never() -> bool {
    false
}

/// Reads every batch available now.
pub(super) fn drain(spool: &mut Spool) -> Vec<Batch> {
    let mut out = Vec::new();
    while let Next::Batch(b) = spool.reader.next(Duration::ZERO) {
        out.push(b);
    }
    out
}

pub(super) fn ids(batches: &[Batch]) -> Vec<(u64, u64)> {
    batches.iter().map(|b| (b.stream_id, b.sequence)).collect()
}

pub(super) fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn records_round_trip_and_resync_finds_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.seg");
    let bodies: Vec<Vec<u8>> = vec![b"one".to_vec(), Vec::new(), vec![7u8; 100_000]];
    let mut bytes = Vec::new();
    for b in &bodies {
        format::encode_v1(b, &mut bytes);
    }
    std::fs::write(&path, &bytes).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let limit = bytes.len() as u64;
    let mut offset = 0;
    for b in &bodies {
        match format::read_record(&file, offset, limit).unwrap() {
            Read::Record {
                body,
                next,
                version,
            } => {
                assert_eq!(version, format::Version::V1);
                assert_eq!(&body, b);
                offset = next;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        format::read_record(&file, offset, limit).unwrap(),
        Read::End
    );
    // From inside the first record, the next valid one is the second.
    assert_eq!(format::resync(&file, 1, limit).unwrap(), Some(15));
    // A limit cutting the last record makes it bad, and nothing follows.
    assert_eq!(
        format::read_record(&file, 27, limit - 1).unwrap(),
        Read::Bad
    );
    assert_eq!(format::resync(&file, 28, limit - 1).unwrap(), None);
    assert_eq!(format::count_records(&file, 0, limit).unwrap(), 3);
    assert_eq!(
        format::parse_segment_file_name(&format::segment_file_name(42)),
        Some(42)
    );
    assert_eq!(format::parse_segment_file_name("42.seg"), None);
}

#[test]
fn marks_apply_only_once_spooled_and_batches_come_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(
        options(dir.path(), 1 << 20, 4096, WhenFull::Block),
        metrics(),
    )
    .unwrap();
    let src = SourceProgress::new(0);
    for seq in 1..=5 {
        spool
            .writer
            .push(batch(9, seq, 2, &src, seq * 10), &never)
            .unwrap();
    }
    assert_eq!(src.acked(), 0, "not durable yet");
    assert!(matches!(spool.reader.next(Duration::ZERO), Next::Idle));
    spool.writer.flush(&never).unwrap();
    assert_eq!(src.acked(), 50);
    let got = drain(&mut spool);
    assert_eq!(ids(&got), (1..=5).map(|s| (9, s)).collect::<Vec<_>>());
    assert_eq!(got[0].event_count, 2);
    // Each batch carries one mark on the spool's progress, increasing.
    let marks: Vec<u64> = got.iter().map(|b| b.marks[0].1).collect();
    assert!(marks.windows(2).all(|w| w[0] < w[1]));
    assert!(Arc::ptr_eq(&got[0].marks[0].0, spool.shared.progress()));
    assert_eq!(spool.shared.metrics().records_written.get(), 5);
}

/// Spools batches 1 to 3 of stream 1 and closes the spool.
fn write_three(dir: &Path, m: &SpoolMetrics, src: &Arc<SourceProgress>) {
    let mut spool = open(options(dir, 1 << 20, 1 << 20, WhenFull::Block), m.clone()).unwrap();
    for seq in 1..=3 {
        spool
            .writer
            .push(batch(1, seq, 1, src, seq), &never)
            .unwrap();
    }
    spool.writer.flush(&never).unwrap();
}

#[test]
fn a_torn_tail_is_cut_off_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let src = SourceProgress::new(0);
    write_three(dir.path(), &m, &src);
    // A crash in the middle of the next write: half a record at the end.
    let last = segment_files(dir.path()).pop().unwrap();
    let full_len = std::fs::metadata(&last).unwrap().len();
    let mut rec = Vec::new();
    format::encode(&[5u8; 64], &SourceCounts::default(), &mut rec);
    OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap()
        .write_all(&rec[..30])
        .unwrap();

    let mut spool = open(
        options(dir.path(), 1 << 20, 1 << 20, WhenFull::Block),
        m.clone(),
    )
    .unwrap();
    assert_eq!(m.torn_tails.get(), 1);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), full_len);
    let got = drain(&mut spool);
    assert_eq!(ids(&got), vec![(1, 1), (1, 2), (1, 3)]);
    assert_eq!(m.records_corrupt.get(), 0);
    // The spool goes on: new records after the cut are read too.
    spool.writer.push(batch(2, 1, 1, &src, 9), &never).unwrap();
    spool.writer.flush(&never).unwrap();
    assert_eq!(ids(&drain(&mut spool)), vec![(2, 1)]);
}

#[test]
fn a_corrupt_record_in_the_middle_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let src = SourceProgress::new(0);
    let mut spool = open(
        options(dir.path(), 1 << 20, 1 << 20, WhenFull::Block),
        m.clone(),
    )
    .unwrap();
    for seq in 1..=3 {
        spool
            .writer
            .push(batch(1, seq, 1, &src, seq), &never)
            .unwrap();
    }
    spool.writer.flush(&never).unwrap();
    drop(spool);
    // Flip one byte in the body of the second record.
    let seg = segment_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let first_len = format::record_len(batch(1, 1, 1, &src, 1).frame.len()) as usize;
    bytes[first_len + 20] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    // A foreign file is ignored with a warning.
    std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();

    let mut spool = open(
        options(dir.path(), 1 << 20, 1 << 20, WhenFull::Block),
        m.clone(),
    )
    .unwrap();
    assert_eq!(
        m.torn_tails.get(),
        0,
        "valid records follow: not a torn tail"
    );
    assert_eq!(m.foreign_files.get(), 1);
    assert_eq!(ids(&drain(&mut spool)), vec![(1, 1), (1, 3)]);
    assert_eq!(m.records_corrupt.get(), 1);
    assert!(dir.path().join("notes.txt").exists());
}

#[test]
fn a_whole_last_record_that_fails_its_checksum_is_corrupt_not_torn() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let src = SourceProgress::new(0);
    write_three(dir.path(), &m, &src);
    // A flipped byte in the body of the last record, which was whole and synced (its
    // source moved past it), then half a record from a crash during the next write.
    let seg = segment_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let whole = bytes.len();
    bytes[whole - 3] ^= 0xff;
    let mut rec = Vec::new();
    format::encode(&[5u8; 64], &SourceCounts::default(), &mut rec);
    bytes.extend_from_slice(&rec[..30]);
    std::fs::write(&seg, &bytes).unwrap();

    let mut spool = open(
        options(dir.path(), 1 << 20, 1 << 20, WhenFull::Block),
        m.clone(),
    )
    .unwrap();
    assert_eq!(m.torn_tails.get(), 1, "the half record is torn");
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        whole as u64,
        "only the half record is cut off"
    );
    let got = drain(&mut spool);
    assert_eq!(ids(&got), vec![(1, 1), (1, 2)]);
    assert_eq!(m.records_corrupt.get(), 1, "the damaged record is counted");
    // Once the rest is acknowledged the gauge shows nothing pending.
    for b in &got {
        b.apply_marks();
    }
    spool.shared.reclaim();
    assert_eq!(m.records.get(), 0);
}

#[test]
fn the_ledger_resumes_after_the_acknowledged_records() {
    let dir = tempfile::tempdir().unwrap();
    let src = SourceProgress::new(0);
    {
        let mut spool = open(
            options(dir.path(), 1 << 20, 1 << 20, WhenFull::Block),
            metrics(),
        )
        .unwrap();
        for seq in 1..=5 {
            spool
                .writer
                .push(batch(4, seq, 1, &src, seq), &never)
                .unwrap();
        }
        spool.writer.flush(&never).unwrap();
        let got = drain(&mut spool);
        // The collector acknowledged the first three, in order.
        for b in &got[..3] {
            b.apply_marks();
        }
        assert!(spool.shared.maintain(None, true).is_some());
    }
    let mut spool = open(
        options(dir.path(), 1 << 20, 1 << 20, WhenFull::Block),
        metrics(),
    )
    .unwrap();
    assert_eq!(ids(&drain(&mut spool)), vec![(4, 4), (4, 5)]);
    // Without a ledger write after an ack, those records come again: duplicates, no loss.
}

#[test]
fn acknowledged_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let src = SourceProgress::new(0);
    let mut spool = open(
        options(dir.path(), 1 << 20, 256, WhenFull::Block),
        m.clone(),
    )
    .unwrap();
    for seq in 1..=20 {
        spool
            .writer
            .push(batch(1, seq, 1, &src, seq), &never)
            .unwrap();
    }
    spool.writer.flush(&never).unwrap();
    let before = segment_files(dir.path()).len();
    assert!(before >= 5, "{before} segments");
    let got = drain(&mut spool);
    assert_eq!(got.len(), 20);
    for b in &got[..10] {
        b.apply_marks();
    }
    spool.shared.maintain(None, true);
    let middle = segment_files(dir.path()).len();
    assert!(middle < before && middle > 1, "{before} → {middle}");
    for b in &got[10..] {
        b.apply_marks();
    }
    spool.shared.maintain(None, true);
    // Only the segment being written is left.
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(m.segments_deleted.get() as usize, before - 1);
    assert_eq!(m.records_acked.get(), 20);
    assert_eq!(m.records.get(), 0);
}

/// Fills a spool of 2 KiB (segments of 512 bytes) with 40 batches of about 100 bytes.
fn fill(
    when_full: WhenFull,
) -> (
    tempfile::TempDir,
    Spool,
    SpoolMetrics,
    Arc<SourceProgress>,
    usize,
) {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let src = SourceProgress::new(0);
    let mut spool = open(options(dir.path(), 2048, 512, when_full), m.clone()).unwrap();
    let mut queued = 0;
    for seq in 1..=40 {
        let stop = || true;
        match spool.writer.push(batch(1, seq, 3, &src, seq), &stop) {
            Ok(writer::Pushed::Queued) => queued += 1,
            Ok(writer::Pushed::Dropped) => {}
            Err(writer::Stopped) => break,
        }
        spool.writer.flush(&never).unwrap();
    }
    (dir, spool, m, src, queued)
}

#[test]
fn full_with_block_waits_and_loses_nothing() {
    let (_dir, mut spool, m, src, queued) = fill(WhenFull::Block);
    assert!(queued < 40 && queued > 5, "{queued}");
    assert!(spool.shared.bytes() <= 2048);
    // The batch that did not fit was not applied: its lines are read again.
    assert_eq!(src.acked(), queued as u64);
    assert_eq!(m.dropped.get(DropReason::SpoolFull), 0);
    // Once acknowledged, room comes back and the writer goes on.
    for b in drain(&mut spool) {
        b.apply_marks();
    }
    let next = batch(1, 1000, 1, &src, 1000);
    assert_eq!(spool.writer.push(next, &never), Ok(writer::Pushed::Queued));
    spool.writer.flush(&never).unwrap();
    assert_eq!(ids(&drain(&mut spool)), vec![(1, 1000)]);
}

#[test]
fn full_with_drop_newest_counts_and_moves_the_sources_on() {
    let (_dir, mut spool, m, src, queued) = fill(WhenFull::DropNewest);
    assert!(queued < 40);
    assert_eq!(
        m.dropped.get(DropReason::SpoolFull),
        3 * (40 - queued as u64)
    );
    // Each dropped batch held two file lines and one host metric event.
    assert_eq!(
        m.dropped.get_source(DropReason::SpoolFull, Source::File),
        2 * (40 - queued as u64)
    );
    assert_eq!(
        m.dropped
            .get_source(DropReason::SpoolFull, Source::HostMetrics),
        40 - queued as u64
    );
    assert_eq!(src.acked(), 40, "dropped batches' marks are applied");
    assert_eq!(drain(&mut spool).len(), queued);
}

#[test]
fn full_with_drop_oldest_deletes_segments_and_counts_their_events() {
    let (dir, mut spool, m, src, queued) = fill(WhenFull::DropOldest);
    assert_eq!(queued, 40);
    assert_eq!(src.acked(), 40);
    assert!(spool.shared.bytes() <= 2048 + 512);
    let got = drain(&mut spool);
    let dropped = m.dropped.get(DropReason::SpoolDropOldest);
    assert!(dropped > 0);
    // Every batch is either read or counted as dropped; the newest survive.
    assert_eq!(got.len() as u64 * 3 + dropped, 40 * 3);
    // Attributed from the records' stored counts: two file lines, one host event each.
    let file = m
        .dropped
        .get_source(DropReason::SpoolDropOldest, Source::File);
    assert_eq!((file, dropped - file), (dropped / 3 * 2, dropped / 3));
    // And the batches read back carry their counts.
    assert!(got.iter().all(|b| b.sources == mixed(3)));
    assert_eq!(got.last().unwrap().sequence, 40);
    assert!(segment_files(dir.path()).len() <= 5);
}

#[test]
fn disk_config_is_validated() {
    let state = Path::new("var/agent");
    let ok = DiskConfig::default();
    assert!(ok.validate(state).is_empty());
    let on = DiskConfig {
        path: Some("var/agent/spool".into()),
        ..DiskConfig::default()
    };
    assert!(on.validate(state).is_empty());
    let opts = SpoolOptions::from_config(&on, WhenFull::Block).unwrap();
    assert_eq!(opts.segment_bytes, MAX_SEGMENT_BYTES);
    let bad = DiskConfig {
        path: Some(std::path::PathBuf::new()),
        max_bytes: 1000,
        sync: SyncMode::None,
    };
    let keys: Vec<String> = bad.validate(state).iter().map(|p| p.key.clone()).collect();
    assert_eq!(keys, vec!["buffer.disk.path", "buffer.disk.max_bytes"]);
    let shared = DiskConfig {
        path: Some(state.to_path_buf()),
        ..DiskConfig::default()
    };
    assert_eq!(shared.validate(state).len(), 1);
}
