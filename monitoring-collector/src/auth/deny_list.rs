//! The `jti` deny-list (`auth.deny_list`): revoked token ids, one per line, `#`
//! comments, reloaded without restart.
//!
//! The file is checked lazily, when a token is verified and at most once every
//! [`CHECK_INTERVAL`]: a `stat` of a small local file on a connection attempt costs
//! less than a background task, and revocation then takes effect for the next
//! connection within that interval. It is re-read only when its modification time or
//! length changed. A missing file is an empty list (with a warning: the operator may
//! have mistyped the path); a malformed file keeps the previous list (with an error),
//! so that a half-written edit never un-revokes tokens.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// How often the file's metadata is looked at, at most.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Longest `jti` accepted in the file.
const MAX_JTI_LEN: usize = 256;

/// The deny-list file and the ids last read from it.
#[derive(Debug)]
pub struct DenyList {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    checked: Option<Instant>,
    /// Modification time and length of the file last looked at; `None` if missing.
    seen: Option<(SystemTime, u64)>,
    missing_reported: bool,
    ids: Arc<HashSet<String>>,
}

impl DenyList {
    /// Opens `path` and reads it once now.
    pub fn open(path: &Path) -> DenyList {
        let list = DenyList {
            path: path.to_owned(),
            state: Mutex::new(State::default()),
        };
        list.refresh(Instant::now(), true);
        list
    }

    /// Whether `jti` is revoked, after re-reading the file if it is due and changed.
    pub fn contains(&self, jti: &str) -> bool {
        self.refresh(Instant::now(), false).contains(jti)
    }

    fn refresh(&self, now: Instant, force: bool) -> Arc<HashSet<String>> {
        // Held across a small synchronous read, never across an await.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let due = force
            || state
                .checked
                .is_none_or(|at| now.duration_since(at) >= CHECK_INTERVAL);
        if !due {
            return Arc::clone(&state.ids);
        }
        state.checked = Some(now);
        let seen = match std::fs::metadata(&self.path) {
            Ok(meta) => Some((
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                meta.len(),
            )),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                tracing::error!(message = "Cannot read the token deny-list; keeping the previous one.", path = %self.path.display(), %error);
                return Arc::clone(&state.ids);
            }
        };
        if seen.is_none() {
            if !state.missing_reported {
                tracing::warn!(message = "Token deny-list file does not exist; no token is revoked.", path = %self.path.display());
                state.missing_reported = true;
            }
            state.seen = None;
            state.ids = Arc::new(HashSet::new());
            return Arc::clone(&state.ids);
        }
        state.missing_reported = false;
        if seen == state.seen && !force {
            return Arc::clone(&state.ids);
        }
        state.seen = seen;
        match std::fs::read(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| parse(&bytes))
        {
            Ok(ids) => {
                tracing::info!(message = "Loaded the token deny-list.", path = %self.path.display(), revoked = ids.len());
                state.ids = Arc::new(ids);
            }
            Err(error) => {
                tracing::error!(message = "Token deny-list is malformed; keeping the previous one.", path = %self.path.display(), %error, kept = state.ids.len());
            }
        }
        Arc::clone(&state.ids)
    }
}

/// The ids in a deny-list file, or the first line that is not one.
fn parse(bytes: &[u8]) -> Result<HashSet<String>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut ids = HashSet::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.len() > MAX_JTI_LEN || !line.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!(
                "line {}: a token id is 1 to 256 visible ASCII characters without spaces",
                index + 1
            ));
        }
        ids.insert(line.to_owned());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_comments() {
        let ids = parse(b"# revoked\nabc\n  def  # laptop lost\n\n").unwrap();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains("abc") && ids.contains("def"));
        assert!(parse(b"two words\n").unwrap_err().starts_with("line 1"));
        assert!(parse(b"\xff\n").is_err());
    }

    #[test]
    fn reloads_on_change_and_keeps_the_list_when_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deny");
        let list = DenyList::open(&path);
        assert!(!list.contains("a"), "a missing file revokes nothing");
        std::fs::write(&path, "a\n").unwrap();
        let later = Instant::now() + CHECK_INTERVAL;
        assert!(list.refresh(later, false).contains("a"));
        std::fs::write(&path, "a\nb c d\n").unwrap();
        let ids = list.refresh(later + CHECK_INTERVAL, false);
        assert!(
            ids.contains("a"),
            "a malformed file keeps the previous list"
        );
        std::fs::write(&path, "b\n# a is back\n").unwrap();
        let ids = list.refresh(later + CHECK_INTERVAL * 2, false);
        assert!(ids.contains("b") && !ids.contains("a"));
        std::fs::remove_file(&path).unwrap();
        assert!(list.refresh(later + CHECK_INTERVAL * 3, false).is_empty());
    }
}
