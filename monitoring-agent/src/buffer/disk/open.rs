//! Opening a spool directory: find the segments, cut a torn tail off the last one,
//! resume from the ledger, and start a fresh segment for this run.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use tracing::{info, warn};

use super::format::{self, Read};
use super::ledger::{LEDGER_FILE, Ledger};
use super::reader::Reader;
use super::writer::Writer;
use super::{Shared, SpoolMetrics, SpoolOptions, State};
use crate::pipeline::SourceProgress;

/// Why the spool could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A step on the spool directory failed.
    #[error("spool {path}: cannot {step}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        step: &'static str,
        /// The cause.
        source: io::Error,
    },
}

fn io_err(path: &Path, step: &'static str) -> impl FnOnce(io::Error) -> SpoolError {
    let path = path.to_path_buf();
    move |source| SpoolError::Io { path, step, source }
}

/// A spool opened: its writer and reader, and what they share.
#[derive(Debug)]
pub struct Spool {
    /// Appends batches.
    pub writer: Writer,
    /// Reads them back in order.
    pub reader: Reader,
    /// Shared state, for the maintenance task.
    pub shared: Arc<Shared>,
}

/// Opens (or creates) the spool in `options.dir`.
pub fn open(options: SpoolOptions, metrics: SpoolMetrics) -> Result<Spool, SpoolError> {
    let dir = options.dir.clone();
    std::fs::create_dir_all(&dir).map_err(io_err(&dir, "create the directory"))?;
    let mut segments = scan_dir(&dir, &metrics)?;
    clip_overlaps(&mut segments);
    // Empty segments after it are left by runs that wrote nothing.
    if let Some((&base, &len)) = segments.iter().rev().find(|(_, len)| **len > 0) {
        let kept = cut_torn_tail(&dir, base, len, &metrics)?;
        segments.insert(base, kept);
    }

    let ledger = Ledger::new(&dir);
    let first = segments.keys().next().copied();
    let end = segments.iter().next_back().map_or(0, |(b, l)| b + l);
    let acked = match ledger.load() {
        Ok(Some(acked)) => acked,
        Ok(None) => first.unwrap_or(0),
        Err(error) => {
            // Start from the oldest record: duplicates rather than loss.
            warn!(message = "The spool ledger is unreadable; resending the whole spool.", %error);
            first.unwrap_or(0)
        }
    };
    // A new segment never starts before a position already acknowledged, or its
    // records would count as acknowledged before they were sent.
    let base = end.max(acked);
    let records = count_pending(&dir, &segments, acked);

    let writer_file = match segments.get(&base) {
        // An empty last segment at exactly this base: write into it.
        Some(0) => open_segment(&dir, base, false)?,
        _ => open_segment(&dir, base, true)?,
    };
    segments.insert(base, 0);
    let shared = Arc::new(Shared {
        dir: dir.clone(),
        state: Mutex::new(State {
            segments,
            active: base,
            closed: false,
            records: i64::try_from(records).unwrap_or(i64::MAX),
        }),
        data: Condvar::new(),
        progress: SourceProgress::new(acked),
        sent: Mutex::new(VecDeque::new()),
        skipped: Mutex::new(VecDeque::new()),
        ledger,
        metrics,
    });
    {
        let st = super::lock(&shared.state);
        shared.update_gauges(&st);
        info!(
            message = "Disk spool opened.",
            dir = %dir.display(),
            segments = st.segments.len(),
            bytes = st.bytes(),
            unacknowledged_records = records,
            acked_position = acked,
        );
    }
    Ok(Spool {
        writer: Writer::new(shared.clone(), &options, writer_file, base),
        reader: Reader::new(shared.clone(), acked),
        shared,
    })
}

/// Creates (or, `create == false`, opens) the segment at `base` for appending.
pub(super) fn open_segment(dir: &Path, base: u64, create: bool) -> Result<File, SpoolError> {
    let path = dir.join(format::segment_file_name(base));
    let file = OpenOptions::new()
        .append(true)
        .read(true)
        .create(create)
        .open(&path)
        .map_err(io_err(&path, "create a segment"))?;
    // The new name must survive a power loss before records in it count as written.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "fsync the directory"))?;
    Ok(file)
}

/// The segment files in `dir` (base → length); anything else is left alone.
fn scan_dir(dir: &Path, metrics: &SpoolMetrics) -> Result<BTreeMap<u64, u64>, SpoolError> {
    let mut segments = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(io_err(dir, "list the directory"))?;
    for entry in entries {
        let entry = entry.map_err(io_err(dir, "list the directory"))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        match format::parse_segment_file_name(&name) {
            Some(base) if is_file => {
                let len = entry
                    .metadata()
                    .map_err(io_err(&entry.path(), "read the size of"))?
                    .len();
                segments.insert(base, len);
            }
            _ if name == LEDGER_FILE || name == format!(".{LEDGER_FILE}.tmp") => {}
            _ => {
                metrics.foreign_files.inc();
                warn!(
                    message = "Ignoring a file that is not part of the spool.",
                    path = %entry.path().display(),
                );
            }
        }
    }
    Ok(segments)
}

/// Two segments that overlap (a file renamed by hand) would give one position two
/// meanings: the earlier one is read only up to where the next begins.
fn clip_overlaps(segments: &mut BTreeMap<u64, u64>) {
    let bases: Vec<u64> = segments.keys().copied().collect();
    for pair in bases.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if let Some(len) = segments.get_mut(&a)
            && a + *len > b
        {
            warn!(
                message = "Spool segments overlap; reading the first only up to the second.",
                first = a,
                second = b
            );
            *len = b - a;
        }
    }
}

/// Walks the last non-empty segment; if it ends in bytes that are no whole record and
/// no valid record follows them (a write cut short by a crash), cuts them off. Returns
/// the length kept.
///
/// A whole record that fails its checksum is not torn: its write completed, so its
/// sources' checkpoints may have moved past it (with `sync = "batch"` they did), and
/// its lines exist nowhere else. It is left for the reader, which skips it, counts it
/// in `records_corrupt` and logs it: a loss an operator must see, not a torn write
/// whose lines are read again. (A record whose header was damaged, or whose length
/// fits only because a crash extended the file with garbage, cannot be told from a
/// torn one by its bytes; the former is then counted as a torn tail, the latter as
/// corrupt though its lines are read again.) Corruption followed by valid records is
/// likewise left for the reader.
fn cut_torn_tail(
    dir: &Path,
    base: u64,
    len: u64,
    metrics: &SpoolMetrics,
) -> Result<u64, SpoolError> {
    let path = dir.join(format::segment_file_name(base));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_err(&path, "open the last segment"))?;
    let mut offset = 0;
    loop {
        match format::read_record(&file, offset, len).map_err(io_err(&path, "read"))? {
            Read::End => return Ok(len),
            Read::Record { next, .. } => offset = next,
            Read::Bad => {
                match format::resync(&file, offset + 1, len).map_err(io_err(&path, "read"))? {
                    Some(next) => offset = next,
                    None => {
                        if let Some(end) =
                            format::record_end(&file, offset, len).map_err(io_err(&path, "read"))?
                        {
                            // Whole but damaged: the reader skips and counts it.
                            offset = end;
                            continue;
                        }
                        file.set_len(offset)
                            .and_then(|()| file.sync_all())
                            .map_err(io_err(&path, "truncate the torn end of"))?;
                        metrics.torn_tails.inc();
                        warn!(
                            message = "Cut a torn record off the end of the spool (a crash during a write; its lines were never checkpointed and are read again).",
                            path = %path.display(),
                            offset,
                            bytes = len - offset,
                        );
                        return Ok(offset);
                    }
                }
            }
        }
    }
}

/// Records at or after `acked`, counted from their headers (cheap, approximate).
fn count_pending(dir: &Path, segments: &BTreeMap<u64, u64>, acked: u64) -> u64 {
    let mut n = 0;
    for (&base, &len) in segments {
        if base + len <= acked {
            continue;
        }
        let from = acked.saturating_sub(base);
        let path = dir.join(format::segment_file_name(base));
        if let Ok(file) = File::open(&path) {
            n += format::count_records(&file, from, len).unwrap_or(0);
        }
    }
    n
}
