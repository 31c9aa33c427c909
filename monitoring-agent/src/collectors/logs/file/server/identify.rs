//! Deciding what a file found by a scan is: a copy, known content to resume, or new
//! content; and, after a restart, finding rotated files that still hold unread lines.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::Server;
use crate::collectors::logs::file::checkpoints::Known;
use crate::collectors::logs::file::config::ReadFrom;
use crate::collectors::logs::file::discovery::Candidate;
use crate::collectors::logs::file::fingerprint::{Key, read_prefix, starts_with};
use crate::collectors::logs::file::tail::Tail;
use crate::pipeline::SourceProgress;

/// How long the content of a truncated short file waits for its copy.
pub(super) const ORPHAN_TTL: Duration = Duration::from_secs(60);
/// How many such contents wait at most.
const MAX_ORPHANS: usize = 256;

/// What to do with a file found by a scan that is not open.
enum Decision {
    /// A copy of content being read: leave it.
    Duplicate,
    /// Known content: continue it.
    Resume(Known),
    /// New content, read from this offset with a fresh progress.
    New(u64),
}

impl Server {
    pub(super) fn open_candidate(
        &mut self,
        c: Candidate,
        initial: bool,
        duplicates: &mut HashSet<(u64, u64)>,
    ) {
        let opened = File::open(&c.path).and_then(|file| {
            let meta = file.metadata()?;
            let prefix = read_prefix(
                &file,
                self.config.fingerprint_bytes,
                meta.len(),
                &mut self.scratch,
            )?;
            Ok((file, meta, prefix))
        });
        let (file, meta, prefix) = match opened {
            Ok(opened) => opened,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(error) => {
                self.metrics.read_errors.inc();
                if self.failed_paths.insert(c.path.clone()) {
                    warn!(message = "Cannot open file; retrying at each rescan.", path = %c.path.display(), %error);
                }
                return;
            }
        };
        self.failed_paths.remove(&c.path);
        let (dev, ino, size) = (meta.dev(), meta.ino(), meta.len());
        // Renamed between the match and the open into a file already open.
        if self.tails.values().any(|t| t.dev == dev && t.ino == ino) {
            return;
        }
        let key = prefix.key(self.config.fingerprint_bytes, dev, ino);
        let mut tail = match self.decide(key, dev, ino, &file, size, initial) {
            Decision::Duplicate => {
                if !self.duplicates.contains(&(dev, ino)) {
                    self.metrics.duplicate_files.inc();
                    info!(
                        message = "File has the fingerprint of content already being read (a copy); not reading it again.",
                        path = %c.path.display(),
                    );
                }
                duplicates.insert((dev, ino));
                return;
            }
            Decision::Resume(known) => {
                debug!(message = "Resuming file.", path = %c.path.display(), offset = known.position);
                Tail::new(
                    key,
                    c.path,
                    file,
                    dev,
                    ino,
                    prefix,
                    known.progress,
                    known.position,
                    &self.rules,
                )
            }
            Decision::New(start) => {
                debug!(message = "Found new file.", path = %c.path.display(), offset = start);
                Tail::new(
                    key,
                    c.path,
                    file,
                    dev,
                    ino,
                    prefix,
                    SourceProgress::new(start),
                    start,
                    &self.rules,
                )
            }
        };
        tail.size = size;
        self.metrics.files_discovered.inc();
        self.tails.insert(key, tail);
    }

    fn decide(
        &mut self,
        key: Key,
        dev: u64,
        ino: u64,
        file: &File,
        size: u64,
        initial: bool,
    ) -> Decision {
        if let Key::Fingerprint(_) = key {
            if self.tails.contains_key(&key) {
                return Decision::Duplicate;
            }
            if let Some(known) = self.checkpoints.remove(&key) {
                if size >= known.position {
                    return Decision::Resume(known);
                }
                // Shorter than where this content was read to: truncated while we
                // were not looking (or another file with the same first bytes).
                self.metrics.truncations.inc();
                return Decision::New(0);
            }
        }
        // A short file, or an unknown fingerprint: what does the inode tell?
        let inode_key = Key::Inode { dev, ino };
        if let Some(known) = self.checkpoints.remove(&inode_key) {
            let same = size >= known.position
                && starts_with(file, &known.prefix, size, &mut self.scratch).unwrap_or(false);
            // Grown since (or fingerprinted with another size), or the inode now holds
            // other content; the old one may live on in a copy.
            if same {
                return Decision::Resume(known);
            }
            self.add_orphan(known);
            return Decision::New(0);
        }
        if self.checkpoints.knows_inode(dev, ino) {
            // Inode reuse: the content it held before has another fingerprint.
            return Decision::New(0);
        }
        let orphan = self.orphans.iter().position(|(_, o)| {
            o.position > 0
                && size >= o.position
                && starts_with(file, &o.prefix, size, &mut self.scratch).unwrap_or(false)
        });
        if let Some(i) = orphan {
            return Decision::Resume(self.orphans.swap_remove(i).1);
        }
        let first_sight = initial || self.startup_waiting.remove(&(dev, ino));
        match self.config.read_from {
            ReadFrom::End if first_sight => Decision::New(size),
            // Files appearing while we run are new data, read whole.
            _ => Decision::New(0),
        }
    }

    pub(super) fn add_orphan(&mut self, known: Known) {
        if known.position == 0 {
            return; // nothing read: a copy is read whole anyway
        }
        if self.orphans.len() >= MAX_ORPHANS {
            self.orphans.remove(0);
        }
        self.orphans.push((Instant::now(), known));
    }

    /// After a restart: files rotated away before it that still hold unacknowledged
    /// lines are found (at their last known path, or renamed beside it) and read to
    /// their end.
    pub(super) fn resume_rotated(&mut self) {
        let mut siblings: HashMap<PathBuf, HashMap<(u64, u64), PathBuf>> = HashMap::new();
        for key in self.checkpoints.keys() {
            if self.tails.len() >= self.config.max_open_files {
                break;
            }
            let Some(known) = self.checkpoints.get(&key) else {
                continue;
            };
            let id = (known.dev, known.ino);
            let at_path = std::fs::metadata(&known.path).is_ok_and(|m| (m.dev(), m.ino()) == id);
            let path = if at_path {
                known.path.clone()
            } else {
                // Rotation renames within the directory, usually.
                let Some(dir) = known.path.parent() else {
                    continue;
                };
                let found = siblings
                    .entry(dir.to_path_buf())
                    .or_insert_with(|| list_inodes(dir))
                    .get(&id);
                match found {
                    Some(path) => path.clone(),
                    None => continue,
                }
            };
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let Ok(meta) = file.metadata() else {
                continue;
            };
            let unread = (meta.dev(), meta.ino()) == id
                && meta.len() > known.position
                && starts_with(&file, &known.prefix, meta.len(), &mut self.scratch)
                    .unwrap_or(false);
            if !unread || self.tails.contains_key(&key) {
                continue;
            }
            let Some(known) = self.checkpoints.remove(&key) else {
                continue;
            };
            info!(message = "Finishing rotated file left unread before the restart.", path = %path.display());
            let mut tail = Tail::new(
                key,
                path,
                file,
                known.dev,
                known.ino,
                known.prefix,
                known.progress,
                known.position,
                &self.rules,
            );
            tail.rotated_since = Some(Instant::now());
            tail.size = meta.len();
            self.metrics.files_discovered.inc();
            self.tails.insert(key, tail);
        }
    }
}

/// The regular files of `dir` by (device, inode).
fn list_inodes(dir: &std::path::Path) -> HashMap<(u64, u64), PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let meta = std::fs::metadata(e.path()).ok()?;
            meta.is_file().then(|| ((meta.dev(), meta.ino()), e.path()))
        })
        .collect()
}
