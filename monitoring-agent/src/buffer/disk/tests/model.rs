//! A model of random write, read, acknowledge, crash (with or without a torn write)
//! and corruption sequences against a real spool directory.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use proptest::prelude::*;

use super::{batch, metrics, never, options, segment_files};
use crate::buffer::WhenFull;
use crate::buffer::disk::format;
use crate::buffer::disk::open;
use crate::buffer::disk::reader::Next;
use crate::buffer::disk::writer;
use crate::pipeline::{Batch, SourceProgress};

#[derive(Debug, Clone)]
enum Op {
    Write(u64),
    Read(usize),
    Ack(usize),
    Maintain,
    Crash { torn: bool },
    Corrupt { file: usize, at: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..6).prop_map(Op::Write),
        3 => (1usize..8).prop_map(Op::Read),
        3 => (1usize..8).prop_map(Op::Ack),
        1 => Just(Op::Maintain),
        1 => any::<bool>().prop_map(|torn| Op::Crash { torn }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(file, at)| Op::Corrupt { file, at }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the order of writes, reads, acknowledgements, crashes (with or
    /// without a torn write) and flipped bytes: every batch the writer was told is
    /// spooled is delivered, unless it was damaged; a loss is never silent.
    ///
    /// One flipped byte damages at most one record, so at most one batch is lost per
    /// flip. The corrupt counter counts skipped regions: two damaged records next to
    /// each other are one region, so it may be below the number lost (it cannot know
    /// how many records a damaged region held), but never 0 when something was lost.
    #[test]
    fn nothing_spooled_is_lost_unless_counted(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let m = metrics();
        let src = SourceProgress::new(0);
        let opts = options(dir.path(), 1 << 20, 600, WhenFull::Block);
        let mut spool = open(opts.clone(), m.clone()).unwrap();
        let mut next_seq = 0;
        let mut stream = 1;
        let mut spooled = BTreeSet::new();
        let mut in_flight: Vec<Batch> = Vec::new();
        let mut delivered = BTreeSet::new();
        let mut damaged = false;
        let mut flips = 0u64;
        for op in ops {
            match op {
                Op::Write(n) => {
                    for _ in 0..n {
                        next_seq += 1;
                        let b = batch(stream, next_seq, 1, &src, next_seq);
                        prop_assert_eq!(spool.writer.push(b, &never), Ok(writer::Pushed::Queued));
                    }
                    spool.writer.flush(&never).unwrap();
                    for s in next_seq + 1 - n..=next_seq {
                        spooled.insert((stream, s));
                    }
                    prop_assert_eq!(src.acked(), next_seq);
                }
                Op::Read(n) => {
                    for _ in 0..n {
                        match spool.reader.next(Duration::ZERO) {
                            Next::Batch(b) => in_flight.push(b),
                            _ => break,
                        }
                    }
                }
                Op::Ack(n) => {
                    let n = n.min(in_flight.len());
                    for b in in_flight.drain(..n) {
                        b.apply_marks();
                        delivered.insert((b.stream_id, b.sequence));
                    }
                }
                Op::Maintain => {
                    spool.shared.maintain(None, true);
                }
                Op::Crash { torn } => {
                    drop(spool);
                    in_flight.clear();
                    if torn && let Some(last) = segment_files(dir.path()).pop() {
                        let mut rec = Vec::new();
                        format::encode_v1(&[1u8; 50], &mut rec);
                        OpenOptions::new().append(true).open(&last).unwrap().write_all(&rec[..20]).unwrap();
                    }
                    spool = open(opts.clone(), m.clone()).unwrap();
                    stream += 1;
                }
                Op::Corrupt { file, at } => {
                    let files = segment_files(dir.path());
                    if files.is_empty() {
                        continue;
                    }
                    let path = &files[file % files.len()];
                    let mut bytes = std::fs::read(path).unwrap();
                    if bytes.is_empty() {
                        continue;
                    }
                    let i = at % bytes.len();
                    bytes[i] ^= 0x5a;
                    std::fs::write(path, &bytes).unwrap();
                    damaged = true;
                    flips += 1;
                }
            }
        }
        // A last clean restart, then everything is read and acknowledged.
        drop(spool);
        let mut spool = open(opts, m.clone()).unwrap();
        while let Next::Batch(b) = spool.reader.next(Duration::ZERO) {
            b.apply_marks();
            delivered.insert((b.stream_id, b.sequence));
        }
        spool.shared.maintain(None, true);
        let missing: Vec<_> = spooled.difference(&delivered).collect();
        let accounted = m.records_corrupt.get() + m.torn_tails.get();
        if !damaged {
            prop_assert!(missing.is_empty(), "lost {:?}", missing);
            prop_assert_eq!(m.records_corrupt.get(), 0);
        }
        prop_assert!(missing.len() as u64 <= flips, "lost {:?} with {} flipped bytes", missing, flips);
        prop_assert!(missing.is_empty() || accounted > 0, "lost {:?} silently", missing);
        // Everything is acknowledged: only the segment being written is left.
        prop_assert_eq!(segment_files(dir.path()).len(), 1);
    }
}
