//! The disk spool (`[buffer.disk]`): a write-ahead log of encoded batch frames between
//! the batcher and the transport, so that the agent keeps reading while the collector
//! is down and loses nothing across restarts.
//!
//! ```text
//! batcher ─► writer ─► segments NNNNNNNNNNNNNNNNNNNN.seg ─► reader ─► transport
//!              │ (fsync)                                      │ mark on the spool's
//!              └─► source marks applied                       ▼ SourceProgress
//!                                          ledger.json ◄── maintenance: persist, delete
//! ```
//!
//! - The [`writer`] appends each batch's frame as a checksummed record ([`format`])
//!   and, with `sync = "batch"`, fsyncs the group of records taken together before
//!   it applies their sources' marks: from then on the data is safe on local disk, so
//!   file checkpoints may move past it.
//! - The [`reader`] feeds the transport in order. Each batch it emits carries one mark
//!   on the spool's own `SourceProgress`: the global position just past its record.
//!   The transport's window applies marks only from its front, so that position means
//!   "everything before it is acknowledged".
//! - The maintenance task ([`run`]) stores that position in the [`ledger`] about once
//!   a second and at shutdown, and deletes segments entirely behind it.
//! - On start, [`open`] resumes from the ledger: records not acknowledged are sent
//!   again with their original stream id and sequence (the collector removes
//!   duplicates). A torn record at the end of the last segment (a crash mid-write) is
//!   cut off and counted; a corrupt record (damaged bytes in a whole record, the last
//!   one included) is skipped by the reader, counted and logged as lost; a file that is not the spool's is ignored with a warning. Nothing here
//!   panics or needs a human to delete the spool (LESSONS #6).
//! - When `max_bytes` is reached the `[buffer] when_full` policy applies: `block`
//!   waits (backpressure to the sources), `drop_newest` discards the incoming batch
//!   and applies its marks (its lines are lost and counted as `spool_full`: the
//!   sources must not stall on it), `drop_oldest` deletes the oldest segment and
//!   counts its unacknowledged events as `spool_drop_oldest` (some of them may
//!   already be in flight and still arrive).

pub mod format;
pub mod ledger;
pub mod metrics;
mod open;
pub mod reader;
pub mod run;
pub mod writer;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use monitoring_common::config::Problem;
use serde::Deserialize;
use tracing::{debug, warn};

pub use metrics::SpoolMetrics;
pub use open::{SpoolError, open};

use crate::buffer::WhenFull;
use crate::pipeline::SourceProgress;
use ledger::Ledger;

/// Smallest allowed `max_bytes`.
pub const MIN_MAX_BYTES: u64 = 1024 * 1024;
/// Largest segment file.
pub const MAX_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// When a spooled record counts as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// fsync every group of records before their sources' checkpoints may move: safe
    /// against power loss, at the cost of one fsync per group (a few ms on a disk,
    /// well under one on an SSD; groups grow under load, so throughput holds).
    #[default]
    Batch,
    /// Leave flushing to the operating system: safe against a crash of the agent, not
    /// of the machine.
    None,
}

/// `[buffer.disk]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    /// Directory of the spool (created if missing; relative paths are relative to the
    /// working directory; not `[state] dir` itself). Default: none, the spool is off
    /// and batches go from the batcher straight to the transport.
    pub path: Option<PathBuf>,
    /// Most bytes of segment files; at least 1 MiB. When reached, `[buffer]
    /// when_full` applies. Default `1073741824` (1 GiB).
    pub max_bytes: u64,
    /// `"batch"` (fsync each group of records before it counts as spooled) or
    /// `"none"` (leave it to the OS). Default `"batch"`.
    pub sync: SyncMode,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            path: None,
            max_bytes: 1024 * 1024 * 1024,
            sync: SyncMode::Batch,
        }
    }
}

impl DiskConfig {
    /// Problems with these settings, keyed `buffer.disk.*`; `state_dir` is
    /// `[state] dir`, whose files the spool must not share a directory with.
    pub fn validate(&self, state_dir: &Path) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.path.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            p.push(Problem::new(
                "buffer.disk.path",
                "must not be empty (leave it out to turn the spool off)",
            ));
        } else if self.path.as_deref() == Some(state_dir) {
            p.push(Problem::new(
                "buffer.disk.path",
                "must not be [state] dir itself (use a subdirectory such as \"<dir>/spool\")",
            ));
        }
        if self.max_bytes < MIN_MAX_BYTES {
            p.push(Problem::new(
                "buffer.disk.max_bytes",
                format!("must be at least {MIN_MAX_BYTES} bytes (1 MiB)"),
            ));
        }
        p
    }
}

/// Everything [`open`] needs.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// The spool directory.
    pub dir: PathBuf,
    /// Most bytes of segment files.
    pub max_bytes: u64,
    /// Size at which a segment is closed and the next begun.
    pub segment_bytes: u64,
    /// When records count as written.
    pub sync: SyncMode,
    /// What to do when full.
    pub when_full: WhenFull,
}

impl SpoolOptions {
    /// Options from the configuration; `None` when the spool is off. Segments are an
    /// eighth of `max_bytes` (64 KiB to 8 MiB), so that acknowledged space is given
    /// back in steps well below the limit.
    pub fn from_config(disk: &DiskConfig, when_full: WhenFull) -> Option<SpoolOptions> {
        let dir = disk.path.clone()?;
        Some(SpoolOptions {
            dir,
            max_bytes: disk.max_bytes,
            segment_bytes: (disk.max_bytes / 8).clamp(64 * 1024, MAX_SEGMENT_BYTES),
            sync: disk.sync,
            when_full,
        })
    }
}

/// The segments as the writer has published them.
#[derive(Debug, Default)]
struct State {
    /// Base position → readable length (complete records, flushed).
    segments: BTreeMap<u64, u64>,
    /// Base of the segment being written.
    active: u64,
    /// The writer has finished: nothing more will be published.
    closed: bool,
    /// Records not acknowledged, for the gauge.
    records: i64,
}

impl State {
    fn bytes(&self) -> u64 {
        self.segments.values().sum()
    }

    /// Where the next record at or after `pos` is: (segment base, offset, readable
    /// length); `None` when everything published has been read.
    fn locate(&self, pos: u64) -> Option<(u64, u64, u64)> {
        if let Some((&base, &len)) = self.segments.range(..=pos).next_back()
            && pos < base + len
        {
            return Some((base, pos - base, len));
        }
        use std::ops::Bound::{Excluded, Unbounded};
        self.segments
            .range((Excluded(pos), Unbounded))
            .find(|(_, len)| **len > 0)
            .map(|(&base, &len)| (base, 0, len))
    }
}

/// What the writer, the reader and the maintenance task share.
#[derive(Debug)]
pub struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    /// Signalled when records are published or the writer closes.
    data: Condvar,
    /// The spool's acknowledged position, advanced by the transport's window.
    progress: Arc<SourceProgress>,
    /// End positions of records handed to the transport and not yet seen acknowledged.
    sent: Mutex<VecDeque<u64>>,
    /// Regions `[from, to)` the reader skipped as corrupt, in order. Nothing in them is
    /// ever acknowledged, so once everything before one is, the acknowledged position
    /// steps over it: otherwise damage at the very end of the spool would keep its
    /// segment, and be skipped and counted again after every restart.
    skipped: Mutex<VecDeque<(u64, u64)>>,
    ledger: Ledger,
    metrics: SpoolMetrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent between statements; a panic elsewhere must not stop
    // the spool from being used and closed.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// The spool's acknowledged position.
    pub fn progress(&self) -> &Arc<SourceProgress> {
        &self.progress
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The spool's metrics.
    pub fn metrics(&self) -> &SpoolMetrics {
        &self.metrics
    }

    /// Bytes of segment files published.
    pub fn bytes(&self) -> u64 {
        lock(&self.state).bytes()
    }

    fn update_gauges(&self, st: &State) {
        let m = &self.metrics;
        m.bytes.set(i64::try_from(st.bytes()).unwrap_or(i64::MAX));
        m.segments
            .set(i64::try_from(st.segments.len()).unwrap_or(i64::MAX));
        m.records.set(st.records.max(0));
    }

    /// Publishes the segment at `base` as `len` readable bytes, `new_records` more.
    fn publish(&self, base: u64, len: u64, new_records: u64) {
        let mut st = lock(&self.state);
        st.segments.insert(base, len);
        st.active = base;
        st.records += i64::try_from(new_records).unwrap_or(i64::MAX);
        self.update_gauges(&st);
        drop(st);
        self.data.notify_all();
    }

    /// The writer is done.
    fn close(&self) {
        lock(&self.state).closed = true;
        self.data.notify_all();
    }

    /// Records the end position of a record handed to the transport.
    fn note_sent(&self, end: u64) {
        lock(&self.sent).push_back(end);
        self.metrics.records_sent.inc();
    }

    /// Records a region skipped as corrupt; one record fewer is pending.
    fn note_skipped(&self, from: u64, to: u64) {
        lock(&self.skipped).push_back((from, to));
        self.metrics.records_corrupt.inc();
        let mut st = lock(&self.state);
        // It was counted as pending when written (or at start) and will never be
        // acknowledged. A region of several damaged records is taken for one, so the
        // gauge may stay above 0 then.
        st.records = (st.records - 1).max(0);
        self.update_gauges(&st);
    }

    /// Moves the acknowledged position over skipped regions that everything before
    /// has been acknowledged up to.
    fn step_over_skipped(&self) {
        let mut skipped = lock(&self.skipped);
        while let Some(&(from, to)) = skipped.front() {
            if from > self.progress.acked() {
                break;
            }
            self.progress.advance(to);
            skipped.pop_front();
        }
    }

    /// Counts acknowledged records and deletes the segments entirely behind the
    /// acknowledged position (never the one being written). Returns how many were
    /// deleted.
    pub fn reclaim(&self) -> usize {
        self.step_over_skipped();
        let acked = self.progress.acked();
        let mut newly_acked = 0i64;
        {
            let mut sent = lock(&self.sent);
            while sent.front().is_some_and(|&end| end <= acked) {
                sent.pop_front();
                newly_acked += 1;
            }
        }
        self.metrics
            .records_acked
            .inc_by(u64::try_from(newly_acked).unwrap_or(0));
        let doomed: Vec<u64> = {
            let mut st = lock(&self.state);
            st.records -= newly_acked;
            let bases: Vec<u64> = st.segments.keys().copied().collect();
            let doomed: Vec<u64> = bases
                .iter()
                .enumerate()
                .filter(|&(i, &base)| {
                    let end = base + st.segments[&base];
                    let next = bases.get(i + 1).copied();
                    base != st.active && (end <= acked || next.is_some_and(|n| n <= acked))
                })
                .map(|(_, &b)| b)
                .collect();
            for b in &doomed {
                st.segments.remove(b);
            }
            self.update_gauges(&st);
            doomed
        };
        for base in &doomed {
            self.delete_file(*base);
        }
        doomed.len()
    }

    fn delete_file(&self, base: u64) {
        let path = self.dir.join(format::segment_file_name(base));
        match std::fs::remove_file(&path) {
            Ok(()) => {
                self.metrics.segments_deleted.inc();
                debug!(message = "Deleted a spool segment.", path = %path.display());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                // It is out of the spool's accounting; found again (and deleted once
                // behind the ledger) at the next start.
                self.metrics.io_errors.inc();
                warn!(message = "Failed to delete a spool segment.", path = %path.display(), %error);
            }
        }
    }
}
