//! The server's view of the users file, re-read without a restart.
//!
//! Re-read as a [`WatchedFile`]: a change made by the `user` and `api-token`
//! commands is seen by the first request at most ~2 s after it. A missing file means
//! no users and no tokens (with a warning and a hint); a malformed one keeps the
//! previous contents, so that a bad edit never locks everybody out nor brings back a
//! revoked token.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
#[cfg(test)]
use std::time::Instant;

use super::secret::{Digest256, from_hex};
use super::users_file::{TokenRecord, UserRecord, UsersFile};
use crate::watched_file::{FileKind, WatchedFile};

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

/// The users file and what was last read from it.
#[derive(Debug)]
pub struct Accounts {
    file: WatchedFile<Directory>,
}

impl Accounts {
    /// Opens `path` and reads it once now.
    pub fn open(path: &Path) -> Accounts {
        let kind = FileKind {
            name: "API users file",
            when_missing: "The API users file does not exist: no user can log in and no API token is accepted. Add one with `monitoring-collector user add --config PATH --name NAME --role admin` or `monitoring-collector api-token create --config PATH --name NAME --role read`.",
            load: |path| {
                let file = UsersFile::read(path).map_err(|e| e.to_string())?;
                warn_if_readable_by_others(path);
                Ok(Directory::new(file.unwrap_or_default()))
            },
            summary: |d| format!("{} users, {} API tokens", d.users.len(), d.tokens.len()),
        };
        Accounts {
            file: WatchedFile::open(path, kind),
        }
    }

    /// The users and tokens, after re-reading the file if it is due and changed.
    pub fn current(&self) -> Arc<Directory> {
        self.file.current()
    }

    /// Re-reads the file now, whatever its metadata says.
    #[cfg(test)]
    pub(crate) fn reload_now(&self) {
        self.file.refresh(Instant::now(), true);
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
    use std::time::Duration;

    use super::*;
    use crate::api::auth::Role;
    use crate::api::auth::secret::{sha256, to_hex};
    use crate::watched_file::CHECK_INTERVAL;

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
        let seen = accounts.file.refresh(start + CHECK_INTERVAL, false);
        assert_eq!(seen.tokens[&sha256("mcapi_a")].name, "a");

        // Within the interval the file is not looked at.
        with_tokens(&[("b", "mcapi_b")]).write(&path).unwrap();
        let early = accounts
            .file
            .refresh(start + CHECK_INTERVAL + Duration::from_millis(10), false);
        assert!(early.tokens.contains_key(&sha256("mcapi_a")));
        let later = accounts.file.refresh(start + CHECK_INTERVAL * 2, false);
        assert!(later.tokens.contains_key(&sha256("mcapi_b")));
        assert!(!later.tokens.contains_key(&sha256("mcapi_a")));

        // A half-written edit does not un-revoke nor lock out.
        std::fs::write(&path, "[[token]]\nname = \"c\"\n").unwrap();
        let kept = accounts.file.refresh(start + CHECK_INTERVAL * 3, false);
        assert!(kept.tokens.contains_key(&sha256("mcapi_b")));
        assert_eq!(kept.file.tokens.len(), 1);

        std::fs::remove_file(&path).unwrap();
        assert!(
            accounts
                .file
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
        let seen = accounts
            .file
            .refresh(Instant::now() + CHECK_INTERVAL, false);
        assert!(seen.tokens.contains_key(&sha256("mcapi_2")));
    }
}
