//! Checkpoints: the acknowledged offset of every known file content, kept in memory
//! for the files that are not open and persisted for all of them in
//! `<state dir>/files.json`.
//!
//! What is written is each content's [`SourceProgress::acked`], never the read
//! position: after a crash, lines read but not acknowledged are read again. Within
//! one run, a closed content also remembers how far it was read (`position`), so that
//! a copy of it found later resumes after the lines already in flight instead of
//! sending them twice. A file that cannot be parsed is kept aside and the source
//! starts fresh instead of crash-looping (LESSONS #6).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::{error, warn};

use super::fingerprint::{Key, Prefix};
use super::{FileMetrics, FileSourceError};
use crate::pipeline::SourceProgress;
use crate::state;

/// Name of the checkpoint file in the state directory.
pub(super) const FILE_NAME: &str = "files.json";
const VERSION: u32 = 1;

/// A file content the source knows and has no open file for.
#[derive(Debug)]
pub(super) struct Known {
    /// Device of the file it was last seen in.
    pub dev: u64,
    /// Inode of the file it was last seen in.
    pub ino: u64,
    /// Hash of its first bytes (a full fingerprint, or all of a short file).
    pub prefix: Prefix,
    /// Last path it was seen under.
    pub path: PathBuf,
    /// Its delivery progress; events still in flight keep advancing it.
    pub progress: Arc<SourceProgress>,
    /// Where reading it resumes: past the last line handed out in this run, or the
    /// acknowledged offset when loaded from disk.
    pub position: u64,
    /// When a file with this content was last seen (ms since the epoch).
    pub last_seen_ms: u64,
}

/// One content as written to `files.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Entry {
    /// Last known path (informational, and where a rotated file is looked for after
    /// a restart).
    pub path: String,
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub inode: u64,
    /// xxh3 of the first `fingerprint_bytes` bytes, hex.
    pub fingerprint: String,
    /// How many bytes `fingerprint` covers (less than the configured size for a
    /// short file).
    pub fingerprint_bytes: u64,
    /// Acknowledged offset: everything before it is committed at the collector.
    pub offset: u64,
    /// When the file was last seen, ms since the epoch.
    pub last_seen_unix_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    files: Vec<Entry>,
}

/// Milliseconds since the epoch, now.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The known closed contents and the checkpoint file they are persisted in.
#[derive(Debug)]
pub(super) struct Checkpoints {
    path: PathBuf,
    fingerprint_bytes: usize,
    entries: HashMap<Key, Known>,
    /// How many entries were last seen in each (device, inode).
    inodes: HashMap<(u64, u64), usize>,
    last_written: Option<Vec<u8>>,
}

impl Checkpoints {
    /// Loads `<state_dir>/files.json`. A missing file is an empty store; a corrupt
    /// one is renamed to `files.json.corrupt-<unix seconds>` and the store starts
    /// empty. Only a file that exists but cannot be read is an error: starting fresh
    /// then would overwrite positions that may still be good.
    pub fn load(
        state_dir: &Path,
        fingerprint_bytes: usize,
    ) -> Result<Checkpoints, FileSourceError> {
        let path = state_dir.join(FILE_NAME);
        let mut store = Checkpoints {
            path: path.clone(),
            fingerprint_bytes,
            entries: HashMap::new(),
            inodes: HashMap::new(),
            last_written: None,
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(store),
            Err(source) => return Err(FileSourceError::ReadCheckpoints { path, source }),
        };
        let parsed: Result<StateFile, String> = serde_json::from_slice::<StateFile>(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|f| match f.version {
                VERSION => Ok(f),
                v => Err(format!("unsupported version {v}")),
            });
        match parsed {
            Ok(file) => {
                for entry in file.files {
                    store.insert_loaded(entry);
                }
                store.last_written = Some(bytes);
            }
            Err(reason) => {
                let aside = path.with_file_name(format!("{FILE_NAME}.corrupt-{}", now_ms() / 1000));
                let moved = std::fs::rename(&path, &aside);
                error!(
                    message = "Checkpoint file is corrupt; starting without checkpoints.",
                    path = %path.display(),
                    kept_as = %aside.display(),
                    moved_aside = moved.is_ok(),
                    error = %reason,
                );
            }
        }
        Ok(store)
    }

    fn insert_loaded(&mut self, entry: Entry) {
        let Ok(hash) = u64::from_str_radix(&entry.fingerprint, 16) else {
            warn!(message = "Ignoring checkpoint with a malformed fingerprint.", path = %entry.path);
            return;
        };
        let prefix = Prefix {
            len: entry.fingerprint_bytes,
            hash,
        };
        // An entry fingerprinted with another `fingerprint_bytes` falls back to its
        // inode, verified by its prefix when the file is found.
        let key = if entry.fingerprint_bytes == self.fingerprint_bytes as u64 {
            Key::Fingerprint(hash)
        } else {
            Key::Inode {
                dev: entry.dev,
                ino: entry.inode,
            }
        };
        if self
            .entries
            .get(&key)
            .is_some_and(|k| k.last_seen_ms >= entry.last_seen_unix_ms)
        {
            return;
        }
        self.insert(
            key,
            Known {
                dev: entry.dev,
                ino: entry.inode,
                prefix,
                path: PathBuf::from(entry.path),
                progress: SourceProgress::new(entry.offset),
                position: entry.offset,
                last_seen_ms: entry.last_seen_unix_ms,
            },
        );
    }

    /// The entry for `key`.
    pub fn get(&self, key: &Key) -> Option<&Known> {
        self.entries.get(key)
    }

    /// Adds or replaces the entry for `key`.
    pub fn insert(&mut self, key: Key, known: Known) {
        *self.inodes.entry((known.dev, known.ino)).or_default() += 1;
        if let Some(old) = self.entries.insert(key, known) {
            self.forget_inode(old.dev, old.ino);
        }
    }

    /// Takes the entry for `key` out (its content is being opened).
    pub fn remove(&mut self, key: &Key) -> Option<Known> {
        let old = self.entries.remove(key)?;
        self.forget_inode(old.dev, old.ino);
        Some(old)
    }

    fn forget_inode(&mut self, dev: u64, ino: u64) {
        if let Some(n) = self.inodes.get_mut(&(dev, ino)) {
            *n -= 1;
            if *n == 0 {
                self.inodes.remove(&(dev, ino));
            }
        }
    }

    /// Whether some known content was last seen in this (device, inode).
    pub fn knows_inode(&self, dev: u64, ino: u64) -> bool {
        self.inodes.contains_key(&(dev, ino))
    }

    /// Keys of the entries, for a pass that may remove some.
    pub fn keys(&self) -> Vec<Key> {
        self.entries.keys().copied().collect()
    }

    /// Drops entries not seen for `retention`.
    pub fn prune(&mut self, now_ms: u64, retention: Duration) {
        let limit = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let stale: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, k)| now_ms.saturating_sub(k.last_seen_ms) > limit)
            .map(|(key, _)| *key)
            .collect();
        for key in stale {
            self.remove(&key);
        }
    }

    /// The entry of a closed content, as written.
    fn entry(&self, known: &Known) -> Entry {
        entry(
            &known.path,
            known.dev,
            known.ino,
            &known.prefix,
            known.progress.acked(),
            known.last_seen_ms,
        )
    }

    /// Writes `open` (the entries of the open files) and the closed entries to the
    /// checkpoint file, if anything changed since the last write. Failures are
    /// logged and counted; the next call tries again.
    pub fn save(&mut self, mut open: Vec<Entry>, metrics: &FileMetrics) -> bool {
        open.extend(self.entries.values().map(|k| self.entry(k)));
        // A stable order, so that "unchanged" is a byte comparison.
        open.sort_by(|a, b| {
            (&a.path, a.dev, a.inode, &a.fingerprint).cmp(&(
                &b.path,
                b.dev,
                b.inode,
                &b.fingerprint,
            ))
        });
        let file = StateFile {
            version: VERSION,
            files: open,
        };
        let bytes = match serde_json::to_vec_pretty(&file) {
            Ok(bytes) => bytes,
            Err(error) => {
                metrics.checkpoint_write_failures.inc();
                warn!(message = "Failed to encode checkpoints.", %error);
                return false;
            }
        };
        if self.last_written.as_deref() == Some(&bytes[..]) {
            return true;
        }
        match state::write_atomic(&self.path, &bytes) {
            Ok(()) => {
                metrics.checkpoint_writes.inc();
                self.last_written = Some(bytes);
                true
            }
            Err(error) => {
                metrics.checkpoint_write_failures.inc();
                warn!(message = "Failed to write checkpoints; retrying at the next interval.", %error);
                false
            }
        }
    }
}

/// The checkpoint entry of one content.
pub(super) fn entry(
    path: &Path,
    dev: u64,
    ino: u64,
    prefix: &Prefix,
    offset: u64,
    last_seen_ms: u64,
) -> Entry {
    Entry {
        path: path.to_string_lossy().into_owned(),
        dev,
        inode: ino,
        fingerprint: format!("{:016x}", prefix.hash),
        fingerprint_bytes: prefix.len,
        offset,
        last_seen_unix_ms: last_seen_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(dev: u64, ino: u64, hash: u64, len: u64, offset: u64) -> Known {
        Known {
            dev,
            ino,
            prefix: Prefix { len, hash },
            path: PathBuf::from(format!("/logs/{ino}.log")),
            progress: SourceProgress::new(offset),
            position: offset,
            last_seen_ms: now_ms(),
        }
    }

    #[test]
    fn saves_acknowledged_offsets_and_loads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = FileMetrics::default();
        let mut cp = Checkpoints::load(dir.path(), 256).unwrap();
        let k = known(1, 10, 0xabc, 256, 0);
        let progress = Arc::clone(&k.progress);
        cp.insert(Key::Fingerprint(0xabc), k);
        cp.insert(Key::Inode { dev: 1, ino: 11 }, known(1, 11, 0xdef, 5, 3));
        progress.advance(42);
        assert!(cp.save(Vec::new(), &metrics));
        // Unchanged: not written again.
        assert!(cp.save(Vec::new(), &metrics));
        assert_eq!(metrics.checkpoint_writes.get(), 1);

        let loaded = Checkpoints::load(dir.path(), 256).unwrap();
        let fp = loaded.get(&Key::Fingerprint(0xabc)).unwrap();
        assert_eq!((fp.position, fp.progress.acked(), fp.ino), (42, 42, 10));
        let short = loaded.get(&Key::Inode { dev: 1, ino: 11 }).unwrap();
        assert_eq!((short.position, short.prefix.len), (3, 5));
        assert!(loaded.knows_inode(1, 10));
    }

    #[test]
    fn changed_fingerprint_size_falls_back_to_inode() {
        let dir = tempfile::tempdir().unwrap();
        let mut cp = Checkpoints::load(dir.path(), 256).unwrap();
        cp.insert(Key::Fingerprint(7), known(1, 10, 7, 256, 9));
        assert!(cp.save(Vec::new(), &FileMetrics::default()));
        let loaded = Checkpoints::load(dir.path(), 512).unwrap();
        assert!(loaded.get(&Key::Fingerprint(7)).is_none());
        assert_eq!(
            loaded
                .get(&Key::Inode { dev: 1, ino: 10 })
                .unwrap()
                .position,
            9
        );
    }

    #[test]
    fn corrupt_file_is_kept_aside_and_start_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            b"{\"version\":1,\"files\":[{tru",
        )
        .unwrap();
        let cp = Checkpoints::load(dir.path(), 256).unwrap();
        assert!(cp.keys().is_empty());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(names[0].starts_with("files.json.corrupt-"), "{names:?}");
    }

    #[test]
    fn failed_write_is_counted_and_retried() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let metrics = FileMetrics::default();
        let mut cp = Checkpoints::load(&state, 256).unwrap();
        cp.insert(Key::Fingerprint(1), known(1, 1, 1, 256, 5));
        std::fs::remove_dir(&state).unwrap();
        assert!(!cp.save(Vec::new(), &metrics));
        assert_eq!(metrics.checkpoint_write_failures.get(), 1);
        std::fs::create_dir(&state).unwrap();
        assert!(cp.save(Vec::new(), &metrics));
        assert_eq!(metrics.checkpoint_writes.get(), 1);
    }

    #[test]
    fn prunes_entries_not_seen_for_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let mut cp = Checkpoints::load(dir.path(), 256).unwrap();
        let mut old = known(1, 1, 1, 256, 5);
        old.last_seen_ms = 1000;
        cp.insert(Key::Fingerprint(1), old);
        cp.insert(Key::Fingerprint(2), known(1, 2, 2, 256, 5));
        cp.prune(now_ms(), Duration::from_secs(3600));
        assert_eq!(cp.keys(), vec![Key::Fingerprint(2)]);
        assert!(!cp.knows_inode(1, 1));
    }
}
