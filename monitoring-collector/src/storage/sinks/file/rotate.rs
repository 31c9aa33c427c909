//! Rotated files of a file sink: their names, their compression on a thread of the
//! sink, and the pruning that keeps at most `max_files` of them.
//!
//! A rotated file is `<file name>.<UTC time>` (`events.ndjson.20261130T120000.123456789Z`,
//! with `-1`, `-2`... in the unlikely case the name is taken), `.gz` once compressed.
//! The fixed-width time makes name order the age order. Compression writes
//! `<name>.gz.tmp`, syncs it, renames it to `<name>.gz` and only then removes the
//! original, so a crash leaves either file whole; what a crash leaves (an
//! uncompressed rotated file, a `.gz.tmp`) is finished or removed at the next start.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::FileSettings;
use super::SinkError;
use crate::api::time::format_rfc3339_nanos;

/// The rotated files of one sink.
pub(super) struct Rotated {
    /// What pruning needs; owned by the compressor thread when there is one.
    pruner: Pruner,
    /// Work for the compressor thread (`gzip = true`).
    compressor: Option<Sender<Job>>,
}

enum Job {
    Compress(PathBuf),
    /// Answered once everything before it is done.
    Barrier(Sender<()>),
}

#[derive(Clone)]
struct Pruner {
    dir: PathBuf,
    /// `<file name>.`: the prefix of every rotated file.
    prefix: String,
    max_files: usize,
}

impl Rotated {
    /// Starts the compressor when `gzip` is set and gives it what a previous run left
    /// uncompressed; removes leftover temporary files; prunes.
    pub(super) fn start(settings: &FileSettings) -> Result<Rotated, SinkError> {
        let dir = super::parent(&settings.path).to_path_buf();
        let name = settings
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pruner = Pruner {
            dir,
            prefix: format!("{name}."),
            max_files: settings.max_files,
        };
        let leftovers = pruner.rotated_files();
        for path in leftovers.iter().filter(|p| is_suffix(p, ".gz.tmp")) {
            if let Err(error) = std::fs::remove_file(path) {
                tracing::warn!(message = "Failed to remove a partly compressed file.", %error, path = %path.display());
            }
        }
        let compressor = if settings.gzip {
            let (tx, rx) = channel();
            let thread_pruner = pruner.clone();
            std::thread::Builder::new()
                .name(format!("sink-gzip-{name}"))
                .spawn(move || compress_loop(&rx, &thread_pruner))
                .map_err(|e| SinkError::io("starting the compression thread", e))?;
            for path in leftovers.iter().filter(|p| is_plain(p)) {
                drop(tx.send(Job::Compress(path.clone())));
            }
            Some(tx)
        } else {
            None
        };
        let rotated = Rotated { pruner, compressor };
        if rotated.compressor.is_none() {
            rotated.pruner.prune();
        }
        Ok(rotated)
    }

    /// A free name for rotating `path` now.
    pub(super) fn next_name(&self, path: &Path) -> PathBuf {
        let stamp: String = format_rfc3339_nanos(monitoring_common::event::now_ns())
            .chars()
            .filter(|c| !matches!(c, '-' | ':'))
            .collect();
        let base = format!("{}{stamp}", self.pruner.prefix);
        let dir = super::parent(path);
        let mut candidate = dir.join(&base);
        let mut n = 0;
        while candidate.exists() || candidate.with_file_name(format!("{base}.gz")).exists() {
            n += 1;
            candidate = dir.join(format!("{base}-{n}"));
        }
        candidate
    }

    /// A file was rotated to `path`: compress it (in the background) or prune now.
    pub(super) fn rotated(&self, path: PathBuf) {
        match &self.compressor {
            Some(tx) => {
                if tx.send(Job::Compress(path)).is_err() {
                    tracing::error!(
                        message = "The compression thread of a file sink is gone; rotated files stay uncompressed."
                    );
                }
            }
            None => self.pruner.prune(),
        }
    }

    /// Waits (up to `timeout`) for the compression of every rotated file so far.
    pub(super) fn finish(&self, timeout: Duration) {
        let Some(tx) = &self.compressor else {
            return;
        };
        let (done_tx, done_rx) = channel();
        if tx.send(Job::Barrier(done_tx)).is_ok() && done_rx.recv_timeout(timeout).is_err() {
            tracing::warn!(message = "Compression of rotated sink files did not finish in time.", dir = %self.pruner.dir.display());
        }
    }
}

fn compress_loop(rx: &Receiver<Job>, pruner: &Pruner) {
    // Ends when the sink is dropped (its sender with it).
    while let Ok(job) = rx.recv() {
        match job {
            Job::Compress(path) => {
                if let Err(error) = compress(&path) {
                    tracing::warn!(message = "Failed to compress a rotated sink file; it is kept uncompressed.", %error, path = %path.display());
                }
                pruner.prune();
            }
            Job::Barrier(done) => drop(done.send(())),
        }
    }
}

/// `path` → `path.gz`, then `path` removed. A file pruned while it waited is no error.
fn compress(path: &Path) -> std::io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!("{name}.gz.tmp"));
    let done = path.with_file_name(format!("{name}.gz"));
    let result = (|| {
        let mut input = BufReader::new(File::open(path)?);
        let mut encoder =
            GzEncoder::new(BufWriter::new(File::create(&tmp)?), Compression::default());
        std::io::copy(&mut input, &mut encoder)?;
        let file = encoder.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &done)?;
        std::fs::remove_file(path)
    })();
    if result.is_err() {
        drop(std::fs::remove_file(&tmp));
    }
    result
}

fn is_suffix(path: &Path, suffix: &str) -> bool {
    path.to_string_lossy().ends_with(suffix)
}

/// A rotated file not (yet) compressed.
fn is_plain(path: &Path) -> bool {
    !is_suffix(path, ".gz") && !is_suffix(path, ".tmp")
}

impl Pruner {
    /// Rotated files of this sink (compressed, not, and temporary), oldest first.
    fn rotated_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix(&self.prefix))
                    .is_some_and(is_stamp)
            })
            .map(|e| e.path())
            .collect();
        files.sort();
        files
    }

    /// Deletes the oldest rotated files past `max_files`.
    fn prune(&self) {
        if self.max_files == 0 {
            return;
        }
        let kept: Vec<PathBuf> = self
            .rotated_files()
            .into_iter()
            .filter(|p| !is_suffix(p, ".tmp"))
            .collect();
        let excess = kept.len().saturating_sub(self.max_files);
        for path in &kept[..excess] {
            match std::fs::remove_file(path) {
                Ok(()) => {
                    tracing::debug!(message = "Removed an old rotated sink file.", path = %path.display())
                }
                Err(error) => {
                    tracing::warn!(message = "Failed to remove an old rotated sink file.", %error, path = %path.display())
                }
            }
        }
    }
}

/// Whether `rest` (what follows `<file name>.`) is a rotation stamp:
/// `YYYYMMDDTHHMMSS.nnnnnnnnnZ`, then maybe `-N`, `.gz`, `.gz.tmp`.
pub(super) fn is_stamp(rest: &str) -> bool {
    let b = rest.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    digits(0..8)
        && b.get(8) == Some(&b'T')
        && digits(9..15)
        && b.get(15) == Some(&b'.')
        && digits(16..25)
        && b.get(25) == Some(&b'Z')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_recognised_and_nothing_else() {
        assert!(is_stamp("20261130T120000.123456789Z"));
        assert!(is_stamp("20261130T120000.123456789Z-2.gz"));
        assert!(is_stamp("20261130T120000.123456789Z.gz.tmp"));
        assert!(!is_stamp("1"));
        assert!(!is_stamp("old"));
        assert!(!is_stamp("20261130T120000Z"));
    }
}
