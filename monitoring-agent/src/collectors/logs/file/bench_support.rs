//! The line-splitting hot path as the criterion benchmarks reach it
//! (`benches/benches/lines.rs`): not an API, hidden from the docs, and free to
//! change with the code it wraps.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use super::FileMetrics;
use super::fingerprint::Prefix;
use super::reader::LineSplitter;
use super::tail::{LineRules, Tail};
use crate::collectors::logs::filter::LineFilter;
use crate::pipeline::{Envelope, SourceProgress};

/// [`LineSplitter`] alone: bytes to line slices, no event built.
#[derive(Debug)]
pub struct Splitter(LineSplitter);

impl Splitter {
    /// A splitter at offset 0 with the given longest line.
    pub fn new(max_line_bytes: usize) -> Splitter {
        Splitter(LineSplitter::new(0, max_line_bytes))
    }

    /// Feeds a chunk; calls `line` with the text and end offset of each line it
    /// completes.
    pub fn feed(&mut self, chunk: &[u8], mut line: impl FnMut(&[u8], u64)) {
        self.0.feed(chunk, |l| line(l.text, l.end));
    }
}

/// A tail's chunk step (`Tail::split_into`): bytes to the envelopes handed to the
/// pipeline, with the default rules (no multiline, no filter).
#[derive(Debug)]
pub struct ChunkSplitter {
    tail: Tail,
    metrics: FileMetrics,
}

impl ChunkSplitter {
    /// A tail of `path` (opened only for its identity: chunks are fed directly).
    pub fn open(path: &Path, max_line_bytes: usize) -> std::io::Result<ChunkSplitter> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let prefix = Prefix { len: 0, hash: 0 };
        let rules = LineRules {
            max_line_bytes,
            multiline: None,
            partial_timeout: None,
            filter: Arc::new(LineFilter::default()),
        };
        let tail = Tail::new(
            prefix.key(usize::MAX, meta.dev(), meta.ino()),
            path.to_path_buf(),
            file,
            meta.dev(),
            meta.ino(),
            prefix,
            SourceProgress::new(0),
            0,
            &rules,
        );
        Ok(ChunkSplitter {
            tail,
            metrics: FileMetrics::default(),
        })
    }

    /// Splits the next chunk, appending its envelopes to `batch`.
    pub fn split(&mut self, chunk: &[u8], batch: &mut Vec<Envelope>) {
        self.tail.split_into(chunk, batch, &self.metrics);
    }
}
