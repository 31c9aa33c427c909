//! One open file being read: its identity, its position, and the read that turns
//! new bytes into envelopes.
//!
//! Reads use explicit offsets (`pread`) up to the size measured just before, so a
//! file short enough to be known by inode is never read past `fingerprint_bytes`
//! before its identity is settled, and a truncation is seen as a size below the read
//! position rather than as a read from the middle of new content.
//!
//! Each event (after multiline merging) goes through the source's filter. A filtered
//! event is consumed, not lost: its end is acknowledged like a shipped one's, by
//! stretching the acknowledgement of the event shipped just before it in the same
//! chunk, or, with none, by a [`SourceProgress::skip_to`] that passes it once
//! everything handed over before it is acknowledged. The acknowledged position thus
//! never passes an event still in flight, and the skip lives with the progress, so
//! it survives the tail being closed, parked at a truncation or resumed.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monitoring_common::Value;
use monitoring_common::event::now_ns;
use monitoring_common::protocol::payload::{encode_log, encoded_log_len};

use super::FileMetrics;
use super::checkpoints::{self, Known};
use super::fingerprint::{Key, Prefix, read_prefix, starts_with};
use super::multiline::{Merged, Merger, Rule};
use super::reader::LineSplitter;
use crate::collectors::logs::filter::{LineFilter, Verdict};
use crate::pipeline::{Body, Envelope, Source, SourceProgress};

/// Field holding the byte offset of the line's start in its file.
pub const OFFSET_FIELD: &str = "offset";

/// Why handing a batch over stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stopped {
    /// `stop_reading` fired.
    Cancelled,
    /// The pipeline is closed.
    Closed,
}

/// Where the read loop hands batches of envelopes: the pipeline (through a blocking
/// bridge) in the agent, a plain vector in model tests.
pub(super) trait Deliver {
    /// Hands over every envelope of `batch` in order, leaving it empty.
    fn deliver(&mut self, batch: &mut Vec<Envelope>) -> Result<(), Stopped>;
}

/// What a poll of one file found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Poll {
    /// Nothing new.
    Idle,
    /// Lines were read; `more` if the budget ran out before the end.
    Read {
        /// Whether unread bytes remain.
        more: bool,
    },
    /// The file is shorter than the read position: truncated.
    Truncated,
    /// A short file grew enough to have a fingerprint, not adopted yet.
    Identified(Prefix),
    /// Handing over stopped; nothing more is read.
    Stopped(Stopped),
}

/// How bytes become events, the same for every file.
#[derive(Debug, Clone)]
pub(super) struct LineRules {
    /// Longest line (and merged event), in bytes.
    pub max_line_bytes: usize,
    /// Multiline merging, when configured.
    pub multiline: Option<Rule>,
    /// How long a last line without its newline waits before it is shipped; `None`
    /// waits for the newline.
    pub partial_timeout: Option<Duration>,
    /// Which events ship.
    pub filter: Arc<LineFilter>,
}

/// Buffers shared by all tails, reused across reads.
pub(super) struct ReadContext<'a> {
    /// The read buffer (its length is the chunk size).
    pub buf: &'a mut Vec<u8>,
    /// Scratch space for fingerprints.
    pub scratch: &'a mut Vec<u8>,
    /// Envelopes of the chunk being handed over.
    pub batch: &'a mut Vec<Envelope>,
    /// Counters.
    pub metrics: &'a FileMetrics,
    /// Configured fingerprint size.
    pub fingerprint_bytes: usize,
    /// Most bytes read from one file per poll, for fairness between files.
    pub budget: usize,
}

/// An open file.
#[derive(Debug)]
pub(super) struct Tail {
    /// Its checkpoint key.
    pub key: Key,
    /// The path it is known under now.
    pub path: PathBuf,
    /// The `source` of its events: its path when it was opened.
    pub source: String,
    /// The open file.
    pub file: File,
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Hash of its first bytes; full once the file has `fingerprint_bytes`.
    pub prefix: Prefix,
    /// Delivery progress of its content.
    pub progress: Arc<SourceProgress>,
    /// Line splitting state; its position is the read position.
    pub splitter: LineSplitter,
    /// Offset just past the last event consumed: handed over, or filtered out.
    pub emitted: u64,
    /// Offset just past the last event handed over (its acknowledgement stretched
    /// over the filtered events right after it): what a skip waits for.
    shipped: u64,
    /// End of the events filtered out in the chunk being split while no event of
    /// the chunk was shipped before them.
    filtered_to: Option<u64>,
    /// Which events ship; replaced on reload.
    pub filter: Arc<LineFilter>,
    /// Size at the last poll (or when opened).
    pub size: u64,
    /// Since when it is no longer matched by the patterns (renamed away or deleted).
    pub rotated_since: Option<Instant>,
    /// When data was last read (or the file opened).
    pub last_data: Instant,
    /// Whether the last poll failed (to log a failing file once, not every poll).
    pub failing: bool,
    /// The event being merged from several lines, with multiline on.
    merger: Option<Merger>,
    max_line_bytes: usize,
    partial_timeout: Option<Duration>,
    /// Lines of the chunk being split, reused across reads.
    line_scratch: Vec<(String, u64, u64)>,
}

impl Tail {
    /// A tail reading `file` from `start`, a line start.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: Key,
        path: PathBuf,
        file: File,
        dev: u64,
        ino: u64,
        prefix: Prefix,
        progress: Arc<SourceProgress>,
        start: u64,
        rules: &LineRules,
    ) -> Tail {
        Tail {
            key,
            source: path.to_string_lossy().into_owned(),
            path,
            file,
            dev,
            ino,
            prefix,
            progress,
            splitter: LineSplitter::new(start, rules.max_line_bytes),
            emitted: start,
            shipped: start,
            filtered_to: None,
            filter: Arc::clone(&rules.filter),
            size: start,
            rotated_since: None,
            last_data: Instant::now(),
            failing: false,
            merger: rules
                .multiline
                .clone()
                .map(|rule| Merger::new(rule, rules.max_line_bytes)),
            max_line_bytes: rules.max_line_bytes,
            partial_timeout: rules.partial_timeout,
            line_scratch: Vec::new(),
        }
    }

    /// Reads from the start again with a fresh progress: the file holds new content.
    /// An event still being merged was handed out when the truncation was seen.
    pub fn restart(&mut self, key: Key, prefix: Prefix) {
        self.key = key;
        self.prefix = prefix;
        self.progress = SourceProgress::new(0);
        self.splitter = LineSplitter::new(0, self.max_line_bytes);
        self.emitted = 0;
        self.shipped = 0;
        self.filtered_to = None;
        self.last_data = Instant::now();
    }

    /// The known-content record left when this file is closed.
    pub fn into_known(self, now_ms: u64) -> Known {
        Known {
            dev: self.dev,
            ino: self.ino,
            prefix: self.prefix,
            path: self.path,
            progress: self.progress,
            position: self.emitted,
            last_seen_ms: now_ms,
        }
    }

    /// Its checkpoint entry.
    pub fn entry(&self, now_ms: u64) -> checkpoints::Entry {
        checkpoints::entry(
            &self.path,
            self.dev,
            self.ino,
            &self.prefix,
            self.progress.acked(),
            now_ms,
        )
    }

    /// Whether everything measured has been read.
    pub fn at_end(&self) -> bool {
        self.splitter.position() >= self.size
    }

    /// Whether lines are held back in an event still being merged.
    pub fn merging(&self) -> bool {
        self.merger.as_ref().is_some_and(Merger::is_pending)
    }

    /// Reads what is new, up to the budget, and hands the lines to `out`.
    pub fn poll(&mut self, cx: &mut ReadContext<'_>, out: &mut dyn Deliver) -> io::Result<Poll> {
        let size = self.file.metadata()?.len();
        let mut pos = self.splitter.position();
        if size < pos {
            return self.truncated(cx, out);
        }
        if pos == size {
            self.size = size;
            return self.idle(cx, out);
        }
        // Truncated and written past our position since the last poll: reading on
        // would ship the middle of new content. One small pread per poll with data.
        if !starts_with(&self.file, &self.prefix, size, cx.scratch)? {
            return self.truncated(cx, out);
        }
        self.size = size;
        if !self.prefix.is_full(cx.fingerprint_bytes) && size > self.prefix.len {
            let prefix = read_prefix(&self.file, cx.fingerprint_bytes, size, cx.scratch)?;
            if prefix.is_full(cx.fingerprint_bytes) {
                return Ok(Poll::Identified(prefix));
            }
            self.prefix = prefix;
        }
        let mut budget = cx.budget;
        while pos < size && budget > 0 {
            let want = cx
                .buf
                .len()
                .min(budget)
                .min(usize::try_from(size - pos).unwrap_or(usize::MAX));
            let n = match self.file.read_at(&mut cx.buf[..want], pos) {
                Ok(0) => break, // shrank since measured; the next poll sees it
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            // Truncated and written past `pos` while this poll read (copy-truncate
            // under load): the chunk may be the middle of the new content. Checking
            // after the read means a chunk is only shipped if the file still held
            // its old content when it was read; otherwise `emitted` would move past
            // lines of the old content, which its copy then skips.
            let now = self.file.metadata()?.len();
            if !starts_with(&self.file, &self.prefix, now, cx.scratch)? {
                return self.truncated(cx, out);
            }
            budget -= n;
            cx.metrics.bytes_read.inc_by(n as u64);
            self.split_into(&cx.buf[..n], cx.batch, cx.metrics);
            pos = self.splitter.position();
            if let Err(stopped) = self.deliver(cx, out) {
                return Ok(Poll::Stopped(stopped));
            }
        }
        self.last_data = Instant::now();
        Ok(Poll::Read { more: pos < size })
    }

    /// Hands over the envelopes in `cx.batch` and moves `emitted` past them and past
    /// the events filtered out after them.
    fn deliver(&mut self, cx: &mut ReadContext<'_>, out: &mut dyn Deliver) -> Result<(), Stopped> {
        let filtered = self.filtered_to.take();
        // Filtered events before the first shipped one of the chunk: passed once
        // everything shipped before them is acknowledged. Recorded before the
        // hand-over, which may stop: they are consumed either way, and the events
        // of the batch come after them.
        if let Some(end) = filtered {
            self.progress.skip_to(self.shipped, end);
            self.emitted = self.emitted.max(end);
        }
        let Some(end) = cx.batch.last().and_then(|e| e.ack.as_ref()).map(|a| a.1) else {
            return Ok(());
        };
        cx.metrics.lines_read.inc_by(cx.batch.len() as u64);
        if let Err(stopped) = out.deliver(cx.batch) {
            cx.batch.clear();
            return Err(stopped);
        }
        self.emitted = end;
        self.shipped = end;
        Ok(())
    }

    /// The file was truncated: the event being merged belongs to the old content and
    /// is handed out before the file is read again.
    fn truncated(&mut self, cx: &mut ReadContext<'_>, out: &mut dyn Deliver) -> io::Result<Poll> {
        if let Some(merged) = self.merger.as_mut().and_then(Merger::take) {
            self.push_event(merged, now_ns(), cx.batch, cx.metrics);
            if let Err(stopped) = self.deliver(cx, out) {
                return Ok(Poll::Stopped(stopped));
            }
        }
        Ok(Poll::Truncated)
    }

    /// Nothing new: ships what waited long enough, a merged event no line joined for
    /// the multiline timeout, then a last line whose newline did not come in time.
    fn idle(&mut self, cx: &mut ReadContext<'_>, out: &mut dyn Deliver) -> io::Result<Poll> {
        let now = Instant::now();
        if let Some(merged) = self.merger.as_mut().and_then(|m| m.due(now)) {
            self.push_event(merged, now_ns(), cx.batch, cx.metrics);
        }
        let partial_due = self
            .partial_timeout
            .is_some_and(|t| self.last_data.elapsed() >= t);
        if partial_due {
            let mut lines = Vec::new();
            self.splitter.flush(|line| {
                lines.push((line.to_text(), line.start, line.end, line.truncated));
            });
            for (text, start, end, truncated) in lines {
                cx.metrics.partial_lines.inc();
                cx.metrics.lines_truncated.inc_by(u64::from(truncated));
                self.push_line(text, start, end, (now, now_ns()), cx.batch, cx.metrics);
                // Nothing follows it to close a merged event.
                if let Some(merged) = self.merger.as_mut().and_then(Merger::take) {
                    self.push_event(merged, now_ns(), cx.batch, cx.metrics);
                }
            }
        }
        match self.deliver(cx, out) {
            Ok(()) => Ok(Poll::Idle),
            Err(stopped) => Ok(Poll::Stopped(stopped)),
        }
    }

    pub(super) fn split_into(
        &mut self,
        chunk: &[u8],
        batch: &mut Vec<Envelope>,
        metrics: &FileMetrics,
    ) {
        // One read time for the whole chunk: the clock is not read per line.
        let at = (Instant::now(), now_ns());
        let mut truncated = 0;
        let mut lines = std::mem::take(&mut self.line_scratch);
        self.splitter.feed(chunk, |line| {
            truncated += u64::from(line.truncated);
            lines.push((line.to_text(), line.start, line.end));
        });
        for (text, start, end) in lines.drain(..) {
            self.push_line(text, start, end, at, batch, metrics);
        }
        self.line_scratch = lines;
        if truncated > 0 {
            metrics.lines_truncated.inc_by(truncated);
        }
    }

    /// One complete line: an event of its own, or a part of a merged one.
    fn push_line(
        &mut self,
        text: String,
        start: u64,
        end: u64,
        at: (Instant, i64),
        batch: &mut Vec<Envelope>,
        metrics: &FileMetrics,
    ) {
        let Some(merger) = self.merger.as_mut() else {
            self.push_envelope(text, start, end, at.1, batch, metrics);
            return;
        };
        if let Some(merged) = merger.push(&text, start, end, at.0) {
            self.push_event(merged, at.1, batch, metrics);
        }
    }

    fn push_event(
        &mut self,
        merged: Merged,
        timestamp_ns: i64,
        batch: &mut Vec<Envelope>,
        metrics: &FileMetrics,
    ) {
        self.push_envelope(
            merged.message,
            merged.start,
            merged.end,
            timestamp_ns,
            batch,
            metrics,
        );
    }

    /// One complete event: shipped, or consumed by the filter.
    fn push_envelope(
        &mut self,
        message: String,
        start: u64,
        end: u64,
        timestamp_ns: i64,
        batch: &mut Vec<Envelope>,
        metrics: &FileMetrics,
    ) {
        let severity = match self.filter.check(&message) {
            Verdict::Ship(severity) => severity,
            Verdict::Filter(reason) => {
                metrics.filtered.inc(Source::File, reason);
                match batch.last_mut().and_then(|e| e.ack.as_mut()) {
                    // Acknowledged with the event shipped before it.
                    Some(ack) => ack.1 = end,
                    None => self.filtered_to = Some(end),
                }
                return;
            }
        };
        let offset = Value::Int(i64::try_from(start).unwrap_or(i64::MAX));
        let fields = [(OFFSET_FIELD, &offset)];
        let mut encoded = Vec::with_capacity(encoded_log_len(&self.source, &message, &fields));
        encode_log(
            timestamp_ns,
            &self.source,
            severity,
            &message,
            &fields,
            &mut encoded,
        );
        batch.push(Envelope {
            source: Source::File,
            body: Body::Encoded(encoded),
            ack: Some((Arc::clone(&self.progress), end)),
        });
    }
}
