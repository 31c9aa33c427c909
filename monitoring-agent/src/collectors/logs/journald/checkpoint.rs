//! The journal cursor checkpoint: which entry the collector has acknowledged last,
//! kept in `<state dir>/journald.json`.
//!
//! Entries get increasing positions as they are read; [`InFlight`] keeps the cursor
//! of each position handed to the pipeline until the source's [`SourceProgress`]
//! passes it. What is persisted is the cursor of the highest acknowledged position,
//! never the read position (journald #15939: a cursor saved before delivery loses
//! entries on a crash). The file is replaced whole with [`state::write_atomic`].
//!
//! [`SourceProgress`]: crate::pipeline::SourceProgress

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::JournaldError;
use crate::state;

/// Name of the checkpoint file in the state directory.
pub const FILE_NAME: &str = "journald.json";
const VERSION: u32 = 1;

/// What `journald.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// Format version (1).
    pub version: u32,
    /// The cursor of the last acknowledged entry; `None` when nothing was
    /// acknowledged yet and reading starts at the oldest entry. The file exists from
    /// the first start on, so that `read_from = "end"` applies once only.
    pub cursor: Option<String>,
}

/// What loading the checkpoint found.
#[derive(Debug, PartialEq, Eq)]
pub enum Loaded {
    /// No checkpoint: the first start, `read_from` decides.
    Missing,
    /// A checkpoint (see [`Saved::cursor`]).
    Cursor(Option<String>),
    /// The file could not be parsed; it was set aside. Nobody knows what was
    /// delivered, so reading starts at the oldest entry (duplicates, not losses).
    Corrupt,
}

/// Reads `<state_dir>/journald.json`. A corrupt file is renamed to
/// `journald.json.corrupt-<unix seconds>` (never a crash loop, LESSONS #6); a file
/// that exists but cannot be read is an error, since starting over could lose data.
pub fn load(state_dir: &Path) -> Result<Loaded, JournaldError> {
    let path = state_dir.join(FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(source) => return Err(JournaldError::ReadCheckpoint { path, source }),
    };
    match serde_json::from_slice::<Saved>(&bytes) {
        Ok(saved) if saved.version == VERSION => Ok(Loaded::Cursor(saved.cursor)),
        parsed => {
            let reason = match parsed {
                Ok(saved) => format!("unsupported version {}", saved.version),
                Err(e) => e.to_string(),
            };
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let aside = state_dir.join(format!("{FILE_NAME}.corrupt-{secs}"));
            warn!(
                message = "Journal checkpoint is corrupt; set aside, reading restarts at the oldest entry.",
                path = %path.display(),
                aside = %aside.display(),
                error = %reason,
            );
            if let Err(error) = std::fs::rename(&path, &aside) {
                warn!(message = "Cannot set the corrupt journal checkpoint aside.", %error);
            }
            Ok(Loaded::Corrupt)
        }
    }
}

/// Writes the checkpoint atomically.
pub fn save(state_dir: &Path, cursor: Option<&str>) -> Result<(), state::StateError> {
    let saved = Saved {
        version: VERSION,
        cursor: cursor.map(str::to_string),
    };
    // Serialising a struct of a string never fails; an empty file would be set aside.
    let bytes = serde_json::to_vec_pretty(&saved).unwrap_or_default();
    state::write_atomic(&checkpoint_path(state_dir), &bytes)
}

/// `<state_dir>/journald.json`.
pub fn checkpoint_path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// The cursors of entries handed to the pipeline and not acknowledged yet, in
/// position order. Its length is bounded by the caller (the pipeline is bounded, and
/// the reader pauses past [`InFlight::MAX`]).
#[derive(Debug, Default)]
pub struct InFlight {
    entries: VecDeque<(u64, String)>,
    last_position: u64,
}

impl InFlight {
    /// Most entries in flight before the reader waits for acknowledgements: above the
    /// default pipeline's capacity, and a few MiB of cursors at most.
    pub const MAX: usize = 32_768;

    /// Records an entry read; returns its position (1, 2, ...), the value the
    /// source's progress reaches once it is acknowledged.
    pub fn push(&mut self, cursor: String) -> u64 {
        self.last_position += 1;
        self.entries.push_back((self.last_position, cursor));
        self.last_position
    }

    /// Records an entry consumed without being shipped (filtered out). Its cursor
    /// replaces that of the last entry in flight, at the same position: once that
    /// entry is acknowledged, everything up to this one is done with. With nothing
    /// in flight, everything read before is acknowledged and the cursor is returned,
    /// to be checkpointed as it is.
    pub fn consume(&mut self, cursor: String) -> Option<String> {
        match self.entries.back_mut() {
            Some((_, last)) => {
                *last = cursor;
                None
            }
            None => Some(cursor),
        }
    }

    /// Forgets the entries up to `acked` and returns the cursor of the last of them,
    /// if any was acknowledged since the previous call.
    pub fn take_acked(&mut self, acked: u64) -> Option<String> {
        let mut last = None;
        while let Some((position, _)) = self.entries.front()
            && *position <= acked
        {
            last = self.entries.pop_front().map(|(_, cursor)| cursor);
        }
        last
    }

    /// Entries not acknowledged yet.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_acknowledged_cursors_come_out_and_the_highest_wins() {
        let mut f = InFlight::default();
        assert_eq!(f.push("a".into()), 1);
        assert_eq!(f.push("b".into()), 2);
        assert_eq!(f.push("c".into()), 3);
        assert_eq!(f.take_acked(0), None);
        assert_eq!(f.take_acked(2), Some("b".into()));
        assert_eq!(f.take_acked(2), None);
        assert_eq!(f.len(), 1);
        assert_eq!(f.take_acked(10), Some("c".into()));
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn a_consumed_cursor_waits_for_the_entry_before_it() {
        let mut f = InFlight::default();
        // Nothing in flight: checkpointed as it is.
        assert_eq!(f.consume("x".into()), Some("x".into()));
        assert_eq!(f.push("a".into()), 1);
        assert_eq!(f.consume("b".into()), None);
        assert_eq!(f.consume("c".into()), None);
        assert_eq!(f.len(), 1);
        assert_eq!(f.take_acked(0), None);
        assert_eq!(f.take_acked(1), Some("c".into()));
        assert_eq!(f.push("d".into()), 2);
        assert_eq!(f.take_acked(2), Some("d".into()));
    }

    #[test]
    fn save_and_load_round_trip_and_a_corrupt_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Loaded::Missing);
        save(dir.path(), None).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Loaded::Cursor(None));
        save(dir.path(), Some("s=1;i=2")).unwrap();
        assert_eq!(
            load(dir.path()).unwrap(),
            Loaded::Cursor(Some("s=1;i=2".into()))
        );
        std::fs::write(checkpoint_path(dir.path()), b"{not json").unwrap();
        assert_eq!(load(dir.path()).unwrap(), Loaded::Corrupt);
        assert_eq!(load(dir.path()).unwrap(), Loaded::Missing);
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
        assert!(aside);
    }
}
