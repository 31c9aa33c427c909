//! The server's view of the users file, re-read without a restart.
//!
//! Same approach as the agents' deny-list ([`crate::auth::deny_list`]): the file is
//! looked at lazily, when a request needs it and at most once every
//! [`CHECK_INTERVAL`], and read again only when its modification time, length or
//! inode changed (the commands replace it by renaming, so a new inode means a new
//! file). A change is therefore seen by the first request at most ~2 s after it. A
//! missing file means no users and no tokens (with a warning and a hint); a
//! malformed one keeps the previous contents (with an error), so that a bad edit
//! never locks everybody out nor brings back a revoked token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::secret::{Digest256, from_hex};
use super::users_file::{TokenRecord, UserRecord, UsersFile};

/// How often the file's metadata is looked at, at most.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// The users file's content, indexed for requests.
#[derive(Debug, Default)]
pub struct Directory {
    /// Users by name.
    pub users: HashMap<String, UserRecord>,
    /// API tokens by the SHA-256 of the token.
    pub tokens: HashMap<Digest256, TokenRecord>,
    /// The file as read, in its order (for listing).
    pub file: UsersFile,
}

impl Directory {
    fn new(file: UsersFile) -> Directory {
        let users = file
            .users
            .iter()
            .map(|u| (u.name.clone(), u.clone()))
            .collect();
        let tokens = file
            .tokens
            .iter()
            .filter_map(|t| from_hex(&t.sha256).map(|digest| (digest, t.clone())))
            .collect();
        Directory {
            users,
            tokens,
            file,
        }
    }
}

/// Modification time, length and inode of the file last looked at.
type Stamp = (SystemTime, u64, u64);

/// The users file and what was last read from it.
#[derive(Debug)]
pub struct Accounts {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    checked: Option<Instant>,
    /// `None` if the file was missing.
    seen: Option<Stamp>,
    missing_reported: bool,
    directory: Arc<Directory>,
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

impl Accounts {
    /// Opens `path` and reads it once now.
    pub fn open(path: &Path) -> Accounts {
        let accounts = Accounts {
            path: path.to_owned(),
            state: Mutex::new(State::default()),
        };
        accounts.refresh(Instant::now(), true);
        accounts
    }

    /// The users and tokens, after re-reading the file if it is due and changed.
    pub fn current(&self) -> Arc<Directory> {
        self.refresh(Instant::now(), false)
    }

    /// Re-reads the file now, whatever its metadata says.
    #[cfg(test)]
    pub(crate) fn reload_now(&self) {
        self.refresh(Instant::now(), true);
    }

    fn refresh(&self, now: Instant, force: bool) -> Arc<Directory> {
        // Held across a small synchronous read, never across an await.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let due = force
            || state
                .checked
                .is_none_or(|at| now.duration_since(at) >= CHECK_INTERVAL);
        if !due {
            return Arc::clone(&state.directory);
        }
        state.checked = Some(now);
        let path = self.path.display();
        let seen = match std::fs::metadata(&self.path) {
            Ok(meta) => Some(stamp(&meta)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                tracing::error!(message = "Cannot read the API users file; keeping the previous users.", %path, %error);
                return Arc::clone(&state.directory);
            }
        };
        let Some(seen) = seen else {
            if !state.missing_reported {
                tracing::warn!(
                    message = "The API users file does not exist: no user can log in and no API token is accepted. Add one with `monitoring-collector user add --config PATH --name NAME --role admin` or `monitoring-collector api-token create --config PATH --name NAME --role read`.",
                    %path
                );
                state.missing_reported = true;
            }
            state.seen = None;
            state.directory = Arc::new(Directory::default());
            return Arc::clone(&state.directory);
        };
        state.missing_reported = false;
        if Some(seen) == state.seen && !force {
            return Arc::clone(&state.directory);
        }
        state.seen = Some(seen);
        match UsersFile::read(&self.path) {
            Ok(file) => {
                let file = file.unwrap_or_default();
                tracing::info!(message = "Loaded the API users file.", %path, users = file.users.len(), tokens = file.tokens.len());
                warn_if_readable_by_others(&self.path);
                state.directory = Arc::new(Directory::new(file));
            }
            Err(error) => {
                tracing::error!(
                    message = "The API users file is malformed; keeping the previous users and tokens.",
                    %error,
                    kept_users = state.directory.users.len(),
                    kept_tokens = state.directory.tokens.len()
                );
            }
        }
        Arc::clone(&state.directory)
    }
}

/// Password hashes invite offline guessing; the commands write the file 0600.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
        if mode & 0o077 != 0 {
            tracing::warn!(message = "The API users file is readable by other users; restrict it with chmod 600.", path = %path.display(), mode = format!("{:o}", mode & 0o777));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::Role;
    use crate::api::auth::secret::{sha256, to_hex};

    fn token(name: &str, secret: &str) -> TokenRecord {
        TokenRecord {
            name: name.into(),
            role: Role::Read,
            sha256: to_hex(&sha256(secret)),
            created: 0,
            expires: None,
        }
    }

    fn with_tokens(tokens: &[(&str, &str)]) -> UsersFile {
        UsersFile {
            users: Vec::new(),
            tokens: tokens.iter().map(|(n, s)| token(n, s)).collect(),
        }
    }

    #[test]
    fn reloads_on_change_and_keeps_the_previous_contents_when_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let accounts = Accounts::open(&path);
        assert!(accounts.current().tokens.is_empty(), "missing file: nobody");

        with_tokens(&[("a", "mcapi_a")]).write(&path).unwrap();
        let start = Instant::now();
        let seen = accounts.refresh(start + CHECK_INTERVAL, false);
        assert_eq!(seen.tokens[&sha256("mcapi_a")].name, "a");

        // Within the interval the file is not looked at.
        with_tokens(&[("b", "mcapi_b")]).write(&path).unwrap();
        let early = accounts.refresh(start + CHECK_INTERVAL + Duration::from_millis(10), false);
        assert!(early.tokens.contains_key(&sha256("mcapi_a")));
        let later = accounts.refresh(start + CHECK_INTERVAL * 2, false);
        assert!(later.tokens.contains_key(&sha256("mcapi_b")));
        assert!(!later.tokens.contains_key(&sha256("mcapi_a")));

        // A half-written edit does not un-revoke nor lock out.
        std::fs::write(&path, "[[token]]\nname = \"c\"\n").unwrap();
        let kept = accounts.refresh(start + CHECK_INTERVAL * 3, false);
        assert!(kept.tokens.contains_key(&sha256("mcapi_b")));
        assert_eq!(kept.file.tokens.len(), 1);

        std::fs::remove_file(&path).unwrap();
        assert!(
            accounts
                .refresh(start + CHECK_INTERVAL * 4, false)
                .tokens
                .is_empty()
        );
    }

    #[test]
    fn a_same_sized_replacement_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        with_tokens(&[("a", "mcapi_1")]).write(&path).unwrap();
        let accounts = Accounts::open(&path);
        let before = std::fs::metadata(&path).unwrap();
        // Same length, and the same modification time if the clock is coarse: the
        // rename still gives a new inode.
        with_tokens(&[("a", "mcapi_2")]).write(&path).unwrap();
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(before.len(), after.len());
        let seen = accounts.refresh(Instant::now() + CHECK_INTERVAL, false);
        assert!(seen.tokens.contains_key(&sha256("mcapi_2")));
    }
}
