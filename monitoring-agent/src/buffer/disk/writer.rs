//! The spool's writer: appends batches as records, makes them durable, then lets
//! their sources' checkpoints move; applies `when_full` when the spool is full.
//!
//! It is synchronous (file I/O and fsync block) and runs on a blocking thread
//! ([`super::run`]). Batches are gathered into a group, written with one `write` and
//! one fsync, and only then are their marks applied: a crash before the fsync loses
//! records whose lines were never checkpointed, so they are read again.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, warn};

use super::format::{self, Read};
use super::open::open_segment;
use super::{Shared, SpoolOptions, SyncMode, lock};
use crate::buffer::WhenFull;
use crate::pipeline::{Batch, SourceCounts};
use crate::telemetry::DropReason;

/// How long a blocked or failing writer waits before it looks again.
const RETRY: Duration = Duration::from_millis(50);
/// Longest wait between two attempts after an I/O error.
const IO_RETRY: Duration = Duration::from_secs(1);

/// The writer was told to stop while it could not make progress (spool full under
/// `block`, or writes failing); the batches not written were not applied and their
/// lines are read again after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the spool writer stopped before the batch was written")]
pub struct Stopped;

/// What happened to a batch given to [`Writer::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; durable (and its marks applied) after the next [`Writer::flush`].
    Queued,
    /// Discarded by `drop_newest` (counted; marks applied).
    Dropped,
}

/// Appends to the active segment.
#[derive(Debug)]
pub struct Writer {
    shared: Arc<Shared>,
    file: File,
    /// Base position of the active segment.
    base: u64,
    /// Bytes of the active segment that are written and published.
    len: u64,
    /// Encoded records not written yet, and their batches.
    pending: Vec<u8>,
    batches: Vec<Batch>,
    max_bytes: u64,
    segment_bytes: u64,
    sync: SyncMode,
    when_full: WhenFull,
}

impl Writer {
    pub(super) fn new(shared: Arc<Shared>, o: &SpoolOptions, file: File, base: u64) -> Writer {
        Writer {
            shared,
            file,
            base,
            len: 0,
            pending: Vec::new(),
            batches: Vec::new(),
            max_bytes: o.max_bytes,
            segment_bytes: o.segment_bytes.max(format::HEADER_LEN + 1),
            sync: o.sync,
            when_full: o.when_full,
        }
    }

    /// Queues one batch, making room first as `when_full` says. `stop` is asked while
    /// waiting for room (or for a failing disk); when it says yes, [`Stopped`].
    pub fn push(&mut self, batch: Batch, stop: &dyn Fn() -> bool) -> Result<Pushed, Stopped> {
        let rec = format::record_len(batch.frame.len());
        loop {
            let open = self.len + self.pending.len() as u64;
            if open > 0 && open + rec > self.segment_bytes {
                self.roll(stop)?;
            }
            if self.fits(rec) {
                format::encode(&batch.frame, &batch.sources, &mut self.pending);
                self.batches.push(batch);
                return Ok(Pushed::Queued);
            }
            // Full: make the accounting current, then give back what is acknowledged.
            self.flush(stop)?;
            self.shared.reclaim();
            if self.fits(rec) {
                continue;
            }
            match self.when_full {
                WhenFull::Block => {
                    if self.len > 0 && self.shared.progress.acked() >= self.base + self.len {
                        // Everything is acknowledged but the active segment holds the
                        // space: start a new one so the old can go.
                        self.roll(stop)?;
                        self.shared.reclaim();
                        continue;
                    }
                    if stop() {
                        return Err(Stopped);
                    }
                    std::thread::sleep(RETRY);
                }
                WhenFull::DropNewest => {
                    self.shared
                        .metrics
                        .dropped
                        .add_counts(DropReason::SpoolFull, &batch.sources);
                    // The lines are given up (counted): their sources move on rather
                    // than stall behind a full spool.
                    batch.apply_marks();
                    return Ok(Pushed::Dropped);
                }
                WhenFull::DropOldest => {
                    if self.oldest_is_active() {
                        self.roll(stop)?;
                    }
                    if !self.shared.drop_oldest() {
                        // Nothing left to drop: take the record over the limit
                        // rather than loop.
                        format::encode(&batch.frame, &batch.sources, &mut self.pending);
                        self.batches.push(batch);
                        return Ok(Pushed::Queued);
                    }
                }
            }
        }
    }

    fn used(&self) -> u64 {
        self.shared.bytes() + self.pending.len() as u64
    }

    /// Whether a record of `rec` bytes fits; an empty spool takes any record, so one
    /// larger than `max_bytes` cannot wedge the writer.
    fn fits(&self, rec: u64) -> bool {
        let used = self.used();
        used == 0 || used + rec <= self.max_bytes
    }

    fn oldest_is_active(&self) -> bool {
        let st = lock(&self.shared.state);
        st.segments.keys().next() == Some(&self.base)
    }

    /// Writes the queued records, makes them durable, publishes them to the reader and
    /// applies their marks. Retries on I/O errors until it succeeds or `stop` says so.
    pub fn flush(&mut self, stop: &dyn Fn() -> bool) -> Result<(), Stopped> {
        if self.batches.is_empty() {
            return Ok(());
        }
        loop {
            match self.write_pending() {
                Ok(()) => break,
                Err(error) => {
                    self.shared.metrics.io_errors.inc();
                    error!(
                        message = "Failed to write to the spool; retrying (the sources wait).",
                        segment = %format::segment_file_name(self.base),
                        %error,
                    );
                    // Whatever part was written is cut off, so that the segment holds
                    // only whole records.
                    if let Err(error) = self.file.set_len(self.len) {
                        warn!(message = "Failed to cut a failed write off a spool segment.", %error);
                    }
                    if stop() {
                        return Err(Stopped);
                    }
                    std::thread::sleep(IO_RETRY);
                }
            }
        }
        self.len += self.pending.len() as u64;
        self.pending.clear();
        let n = self.batches.len() as u64;
        self.shared.publish(self.base, self.len, n);
        self.shared.metrics.records_written.inc_by(n);
        for batch in self.batches.drain(..) {
            batch.apply_marks();
        }
        Ok(())
    }

    fn write_pending(&mut self) -> std::io::Result<()> {
        self.file.write_all(&self.pending)?;
        if self.sync == SyncMode::Batch {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Closes the active segment and starts the next one where it ends.
    fn roll(&mut self, stop: &dyn Fn() -> bool) -> Result<(), Stopped> {
        self.flush(stop)?;
        if self.len == 0 {
            return Ok(());
        }
        let base = self.base + self.len;
        loop {
            match open_segment(&self.shared.dir, base, true) {
                Ok(file) => {
                    self.file = file;
                    self.base = base;
                    self.len = 0;
                    self.shared.publish(base, 0, 0);
                    return Ok(());
                }
                Err(error) => {
                    self.shared.metrics.io_errors.inc();
                    error!(message = "Failed to start a spool segment; retrying.", %error);
                    if stop() {
                        return Err(Stopped);
                    }
                    std::thread::sleep(IO_RETRY);
                }
            }
        }
    }

    /// Flushes and tells the reader that nothing more comes.
    pub fn close(mut self, stop: &dyn Fn() -> bool) -> Result<(), Stopped> {
        let r = self.flush(stop);
        self.shared.close();
        r
    }
}

impl Shared {
    /// Deletes the oldest segment (not the active one), counting the events of its
    /// records not yet acknowledged as dropped. Returns whether one was deleted.
    pub(super) fn drop_oldest(&self) -> bool {
        let (base, len) = {
            let st = lock(&self.state);
            match st.segments.iter().next() {
                Some((&b, &l)) if b != st.active => (b, l),
                _ => return false,
            }
        };
        let acked = self.progress.acked();
        let (records, sources) = self.count_unacked(base, len, acked);
        let events = sources.total();
        {
            let mut st = lock(&self.state);
            st.segments.remove(&base);
            st.records -= i64::try_from(records).unwrap_or(0);
            self.update_gauges(&st);
        }
        self.metrics
            .dropped
            .add_counts(DropReason::SpoolDropOldest, &sources);
        warn!(
            message = "The spool is full: deleted its oldest segment (when_full = \"drop_oldest\").",
            segment = %format::segment_file_name(base),
            records,
            events,
        );
        self.delete_file(base);
        true
    }

    /// Records, and their events per source, at or after `acked` in a segment.
    fn count_unacked(&self, base: u64, len: u64, acked: u64) -> (u64, SourceCounts) {
        let path = self.dir.join(format::segment_file_name(base));
        let mut sources = SourceCounts::default();
        let Ok(file) = File::open(&path) else {
            return (0, sources);
        };
        let mut records = 0;
        let mut offset = acked.saturating_sub(base);
        while offset < len {
            match format::read_record(&file, offset, len) {
                Ok(Read::Record {
                    body,
                    next,
                    version,
                }) => {
                    records += 1;
                    add_record_sources(&mut sources, version, &body);
                    offset = next;
                }
                Ok(Read::Bad) => match format::resync(&file, offset + 1, len) {
                    Ok(Some(next)) => offset = next,
                    _ => break,
                },
                Ok(Read::End) | Err(_) => break,
            }
        }
        (records, sources)
    }
}

/// Adds the per-source events of one record's body to `sources`.
fn add_record_sources(sources: &mut SourceCounts, version: format::Version, body: &[u8]) {
    if let Some((counts, _)) = format::body_sources(version, body) {
        for (source, n) in counts.iter() {
            sources.add_n(source, n);
        }
    }
}
