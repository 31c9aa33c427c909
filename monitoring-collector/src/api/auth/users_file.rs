//! The users file (`[api.auth] users_file`): users and API tokens, in TOML.
//!
//! ```toml
//! [[user]]
//! name = "alice"
//! role = "admin"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$...$..."
//! created = "2025-01-02T03:04:05Z"
//!
//! [[token]]
//! name = "grafana"
//! role = "read"
//! sha256 = "<64 hex digits: SHA-256 of the token>"
//! created = "2025-01-02T03:04:05Z"
//! expires = "2025-04-02T03:04:05Z"   # optional
//! ```
//!
//! Only the `user` and `api-token` commands write it: under an exclusive lock on a
//! `.lock` file beside it (so that two commands never lose each other's change), to a
//! temporary file with mode 0600, flushed to disk, then renamed over the old one, so
//! that the server never reads half a file. No secret is in it: passwords are argon2id
//! hashes and tokens are SHA-256 digests.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use monitoring_common::atomic_file::{Access, AtomicWriteError, write_atomic_with};
use serde::{Deserialize, Serialize};

use super::Role;
use super::password::is_argon2id_phc;
use super::secret::from_hex;
use crate::api::time::{format_rfc3339_nanos, parse_time};

/// Longest user or token name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Largest users file read, in bytes; a bigger one is treated as malformed.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

const HEADER: &str = "# monitoring-collector API users and tokens.\n\
# Written by `monitoring-collector user ...` and `monitoring-collector api-token ...`;\n\
# the collector re-reads it within seconds of a change. Holds no secret: passwords\n\
# are argon2id hashes, tokens SHA-256 digests.\n\n";

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    /// `[[user]]` tables.
    #[serde(default, rename = "user", skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserRecord>,
    /// `[[token]]` tables.
    #[serde(default, rename = "token", skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TokenRecord>,
}

/// A user who logs in with a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// Unique among users.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// argon2id PHC string.
    pub password_hash: String,
    /// When the user was added, Unix seconds (RFC 3339 in the file).
    #[serde(with = "rfc3339")]
    pub created: i64,
}

/// An API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// Unique among tokens; what `api-token revoke` takes.
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// SHA-256 of the token, 64 lowercase hex digits.
    pub sha256: String,
    /// When the token was created, Unix seconds.
    #[serde(with = "rfc3339")]
    pub created: i64,
    /// When the token stops working, Unix seconds; `None`: when revoked.
    #[serde(
        default,
        with = "rfc3339_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires: Option<i64>,
}

impl TokenRecord {
    /// Whether the token has expired at `now` (Unix seconds).
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires.is_some_and(|at| now >= at)
    }
}

/// Why the users file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    /// Reading failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid users file.
    #[error("{} is not a valid users file: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line when TOML says it.
        message: String,
    },
    /// Writing (or locking) failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Checks a user or token name: 1 to 64 of `[A-Za-z0-9._@-]`, so that names are
/// safe in logs, terminals and JSON without escaping surprises.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "name {name:?} must be 1 to {MAX_NAME_LEN} characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-')))
    {
        return Err(format!(
            "name {name:?} contains {c:?}; only letters, digits, '.', '_', '@' and '-' are allowed"
        ));
    }
    Ok(())
}

impl UsersFile {
    /// Parses and checks the text of a users file.
    pub fn parse(text: &str) -> Result<UsersFile, String> {
        let file: UsersFile = toml::from_str(text).map_err(|e| e.to_string())?;
        file.check()?;
        Ok(file)
    }

    fn check(&self) -> Result<(), String> {
        for (i, user) in self.users.iter().enumerate() {
            check_name(&user.name).map_err(|e| format!("user {}: {e}", i + 1))?;
            if self.users[..i].iter().any(|u| u.name == user.name) {
                return Err(format!("user {:?} appears twice", user.name));
            }
            if !is_argon2id_phc(&user.password_hash) {
                return Err(format!(
                    "user {:?}: password_hash is not an argon2id PHC string",
                    user.name
                ));
            }
        }
        for (i, token) in self.tokens.iter().enumerate() {
            check_name(&token.name).map_err(|e| format!("token {}: {e}", i + 1))?;
            if self.tokens[..i].iter().any(|t| t.name == token.name) {
                return Err(format!("token {:?} appears twice", token.name));
            }
            if from_hex(&token.sha256).is_none() {
                return Err(format!(
                    "token {:?}: sha256 is not 64 lowercase hex digits",
                    token.name
                ));
            }
        }
        Ok(())
    }

    /// The file's text.
    pub fn render(&self) -> Result<String, String> {
        let body = toml::to_string(self).map_err(|e| e.to_string())?;
        Ok(format!("{HEADER}{body}"))
    }

    /// Reads `path`; `Ok(None)` if it does not exist.
    pub fn read(path: &Path) -> Result<Option<UsersFile>, UsersFileError> {
        let read_error = |source| UsersFileError::Read {
            path: path.to_owned(),
            source,
        };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_error(e)),
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_FILE_BYTES + 1),
            &mut bytes,
        )
        .map_err(read_error)?;
        let malformed = |message: String| UsersFileError::Malformed {
            path: path.to_owned(),
            message,
        };
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(malformed("larger than 16 MiB".into()));
        }
        let text = String::from_utf8(bytes).map_err(|e| malformed(format!("not UTF-8: {e}")))?;
        UsersFile::parse(&text).map(Some).map_err(malformed)
    }

    /// Replaces `path` with this content atomically (see the module documentation).
    pub fn write(&self, path: &Path) -> Result<(), UsersFileError> {
        let text = self.render().map_err(|message| UsersFileError::Malformed {
            path: path.to_owned(),
            message,
        })?;
        let write_error = |source| UsersFileError::Write {
            path: path.to_owned(),
            source,
        };
        std::fs::create_dir_all(parent(path)).map_err(write_error)?;
        write_atomic_with(path, text.as_bytes(), Access::Private).map_err(|error| match error {
            AtomicWriteError::Io { step, source, .. } => write_error(std::io::Error::new(
                source.kind(),
                format!("{step}: {source}"),
            )),
            AtomicWriteError::BadPath { .. } => write_error(std::io::Error::other(error)),
        })
    }
}

/// An exclusive lock on the users file, held until dropped.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

/// Takes the exclusive lock that serialises writers of `path` (waiting for it),
/// creating the file's directory if needed.
pub fn lock(path: &Path) -> Result<FileLock, UsersFileError> {
    let write_error = |source| UsersFileError::Write {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(parent(path)).map_err(write_error)?;
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = private_options()
        .write(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(write_error)?;
    file.lock().map_err(write_error)?;
    Ok(FileLock { _file: file })
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Creates with mode 0600 on Unix.
fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Unix seconds as `2025-01-02T03:04:05Z`.
pub fn format_time(secs: i64) -> String {
    let nanos = format_rfc3339_nanos(secs.saturating_mul(1_000_000_000));
    // Whole seconds: the fraction is always zero.
    nanos.replace(".000000000Z", "Z")
}

/// RFC 3339 (or Unix milliseconds) as Unix seconds.
pub fn parse_time_secs(text: &str) -> Result<i64, String> {
    parse_time(text).map(|ns| ns.div_euclid(1_000_000_000))
}

mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(secs: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(*secs))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_time_secs(&text).map_err(serde::de::Error::custom)
    }
}

mod rfc3339_option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(secs: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match secs {
            Some(secs) => super::rfc3339::serialize(secs, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_time_secs(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[path = "users_file_tests.rs"]
mod tests;
