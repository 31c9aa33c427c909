//! A small configuration file re-read without a restart (the token deny-list, the API
//! users file).
//!
//! The file is looked at lazily, when a caller needs it and at most once every
//! [`CHECK_INTERVAL`]: a `stat` of a small local file on a request costs less than a
//! background task, and a change is seen by the first caller at most ~2 s after it.
//! It is read again only when its modification time, length or inode changed (the
//! commands replace files by renaming, so a new inode means a new file, even at the
//! same length within the clock's resolution). A missing file means the default value
//! (with one warning until it appears); a malformed or unreadable one keeps the
//! previous value (with an error), so that a half-written edit never un-revokes a
//! token nor locks everybody out.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// How often the file's metadata is looked at, at most.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// What a watched file holds and how it is read.
#[derive(Debug)]
pub struct FileKind<T> {
    /// The file's name in logs: `token deny-list`, `API users file`.
    pub name: &'static str,
    /// Logged (warning) once while the file is missing; the default value is used.
    pub when_missing: &'static str,
    /// Reads and parses the file; the error says what is wrong (with the line).
    pub load: fn(&Path) -> Result<T, String>,
    /// What was loaded, for the log: `3 revoked ids`.
    pub summary: fn(&T) -> String,
}

/// Modification time, length and inode of the file last looked at.
type Stamp = (SystemTime, u64, u64);

/// A file and the value last read from it.
#[derive(Debug)]
pub struct WatchedFile<T> {
    path: PathBuf,
    kind: FileKind<T>,
    state: Mutex<State<T>>,
}

#[derive(Debug)]
struct State<T> {
    checked: Option<Instant>,
    /// `None` if the file was missing.
    seen: Option<Stamp>,
    missing_reported: bool,
    value: Arc<T>,
}

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0;
    (
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        meta.len(),
        inode,
    )
}

impl<T: Default> WatchedFile<T> {
    /// Opens `path` and reads it once now.
    pub fn open(path: &Path, kind: FileKind<T>) -> WatchedFile<T> {
        let file = WatchedFile {
            path: path.to_owned(),
            kind,
            state: Mutex::new(State {
                checked: None,
                seen: None,
                missing_reported: false,
                value: Arc::new(T::default()),
            }),
        };
        file.refresh(Instant::now(), true);
        file
    }

    /// The value, after re-reading the file if it is due and changed.
    pub fn current(&self) -> Arc<T> {
        self.refresh(Instant::now(), false)
    }

    /// The value as of `now`: re-reads the file if [`CHECK_INTERVAL`] has passed since
    /// the last look (or if `force`) and its metadata changed (or if `force`).
    pub(crate) fn refresh(&self, now: Instant, force: bool) -> Arc<T> {
        // Held across a small synchronous read, never across an await.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let due = force
            || state
                .checked
                .is_none_or(|at| now.duration_since(at) >= CHECK_INTERVAL);
        if !due {
            return Arc::clone(&state.value);
        }
        state.checked = Some(now);
        let (name, path) = (self.kind.name, self.path.display());
        let seen = match std::fs::metadata(&self.path) {
            Ok(meta) => stamp(&meta),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if !state.missing_reported {
                    tracing::warn!(message = self.kind.when_missing, file = name, %path);
                    state.missing_reported = true;
                }
                state.seen = None;
                state.value = Arc::new(T::default());
                return Arc::clone(&state.value);
            }
            Err(error) => {
                tracing::error!(message = "Cannot read the file; keeping what was read before.", file = name, %path, %error);
                return Arc::clone(&state.value);
            }
        };
        state.missing_reported = false;
        if Some(seen) == state.seen && !force {
            return Arc::clone(&state.value);
        }
        state.seen = Some(seen);
        match (self.kind.load)(&self.path) {
            Ok(value) => {
                let loaded = (self.kind.summary)(&value);
                tracing::info!(message = "Loaded the file.", file = name, %path, %loaded);
                state.value = Arc::new(value);
            }
            Err(error) => {
                tracing::error!(message = "The file is malformed; keeping what was read before.", file = name, %path, %error);
            }
        }
        Arc::clone(&state.value)
    }
}
