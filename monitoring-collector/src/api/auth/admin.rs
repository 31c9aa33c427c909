//! What the `user` and `api-token` commands do to the users file: each change is a
//! read-modify-write under the file's lock (see [`super::users_file`]), so that two
//! commands run at once never lose each other's change. A malformed file is never
//! overwritten: the command fails and says why.

use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use super::Role;
use super::password::{PasswordError, check_new_password, hash_password};
use super::secret::{new_api_token, sha256, to_hex};
use super::users_file::{
    TokenRecord, UserRecord, UsersFile, UsersFileError, check_name, format_time, lock,
};

/// Why a command failed. The `Display` text is what the operator sees.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The users file could not be read or written, or is malformed.
    #[error(transparent)]
    File(#[from] UsersFileError),
    /// A bad user or token name.
    #[error("{0}")]
    Name(String),
    /// `user add` of an existing name without `--replace`.
    #[error("a user named {0:?} already exists; pass --replace to replace it")]
    UserExists(String),
    /// No user of that name.
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    /// `api-token create` of an existing name.
    #[error("an API token named {0:?} already exists; revoke it first or choose another name")]
    TokenExists(String),
    /// No token of that name.
    #[error("no API token named {0:?}")]
    NoSuchToken(String),
    /// The password is not acceptable.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// A token lifetime of zero or past the year 9999.
    #[error("--ttl must be longer than zero and shorter than a thousand years")]
    Ttl,
    /// Reading the password failed.
    #[error("cannot read the password from standard input: {0}")]
    Stdin(#[source] std::io::Error),
}

/// Reads `path` (missing: empty), lets `change` modify it and writes it back, all
/// under the lock.
fn modify<T>(
    path: &Path,
    change: impl FnOnce(&mut UsersFile) -> Result<T, AdminError>,
) -> Result<T, AdminError> {
    let _lock = lock(path)?;
    let mut file = UsersFile::read(path)?.unwrap_or_default();
    let out = change(&mut file)?;
    file.write(path)?;
    Ok(out)
}

/// The users file at `path`; empty if it does not exist.
pub fn load(path: &Path) -> Result<UsersFile, AdminError> {
    Ok(UsersFile::read(path)?.unwrap_or_default())
}

/// The first line of `input` without its line ending, as `--password-stdin` takes it.
pub fn read_password_line(mut input: impl BufRead) -> Result<String, AdminError> {
    let mut line = String::new();
    input.read_line(&mut line).map_err(AdminError::Stdin)?;
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned())
}

/// Adds user `name` with `role` and `password` at `now` (Unix seconds); an existing
/// user is refused unless `replace`, which keeps its creation time.
pub fn add_user(
    path: &Path,
    name: &str,
    role: Role,
    password: &str,
    replace: bool,
    now: i64,
) -> Result<(), AdminError> {
    check_name(name).map_err(AdminError::Name)?;
    check_new_password(password)?;
    // Hashed before taking the lock: it is the slow part.
    let password_hash = hash_password(password)?;
    modify(path, |file| {
        let mut user = UserRecord {
            name: name.to_owned(),
            role,
            password_hash,
            created: now,
        };
        match file.users.iter_mut().find(|u| u.name == name) {
            Some(_) if !replace => Err(AdminError::UserExists(name.to_owned())),
            Some(existing) => {
                user.created = existing.created;
                *existing = user;
                Ok(())
            }
            None => {
                file.users.push(user);
                Ok(())
            }
        }
    })
}

/// Removes user `name`; their sessions end at the server's next reload.
pub fn remove_user(path: &Path, name: &str) -> Result<(), AdminError> {
    modify(path, |file| {
        let before = file.users.len();
        file.users.retain(|u| u.name != name);
        match file.users.len() < before {
            true => Ok(()),
            false => Err(AdminError::NoSuchUser(name.to_owned())),
        }
    })
}

/// Creates API token `name` with `role`, valid for `ttl` (or until revoked), at
/// `now` (Unix seconds); returns the token, which is stored only as its digest.
pub fn create_token(
    path: &Path,
    name: &str,
    role: Role,
    ttl: Option<Duration>,
    now: i64,
) -> Result<String, AdminError> {
    check_name(name).map_err(AdminError::Name)?;
    let expires = match ttl {
        None => None,
        Some(ttl) => {
            let secs = i64::try_from(ttl.as_secs()).map_err(|_| AdminError::Ttl)?;
            if ttl.is_zero() || secs > 1000 * 366 * 86_400 {
                return Err(AdminError::Ttl);
            }
            // A sub-second ttl still lasts a second.
            Some(now.saturating_add(secs.max(1)))
        }
    };
    modify(path, |file| {
        if file.tokens.iter().any(|t| t.name == name) {
            return Err(AdminError::TokenExists(name.to_owned()));
        }
        let token = new_api_token();
        file.tokens.push(TokenRecord {
            name: name.to_owned(),
            role,
            sha256: to_hex(&sha256(&token)),
            created: now,
            expires,
        });
        Ok(token)
    })
}

/// Revokes API token `name`; servers stop accepting it within ~2 s.
pub fn revoke_token(path: &Path, name: &str) -> Result<(), AdminError> {
    modify(path, |file| {
        let before = file.tokens.len();
        file.tokens.retain(|t| t.name != name);
        match file.tokens.len() < before {
            true => Ok(()),
            false => Err(AdminError::NoSuchToken(name.to_owned())),
        }
    })
}

/// Rows as aligned columns, header first.
fn table(rows: Vec<Vec<String>>) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `user list`: name, role, created.
pub fn format_users(file: &UsersFile) -> String {
    let header = ["NAME", "ROLE", "CREATED"].map(String::from).to_vec();
    let rows = file
        .users
        .iter()
        .map(|u| vec![u.name.clone(), u.role.to_string(), format_time(u.created)]);
    table(std::iter::once(header).chain(rows).collect())
}

/// `api-token list`: name, role, created, expiry.
pub fn format_tokens(file: &UsersFile, now: i64) -> String {
    let header = ["NAME", "ROLE", "CREATED", "EXPIRES"]
        .map(String::from)
        .to_vec();
    let rows = file.tokens.iter().map(|t| {
        let expires = match t.expires {
            None => "never".to_owned(),
            Some(at) if t.is_expired(now) => format!("{} (expired)", format_time(at)),
            Some(at) => format_time(at),
        };
        vec![
            t.name.clone(),
            t.role.to_string(),
            format_time(t.created),
            expires,
        ]
    });
    table(std::iter::once(header).chain(rows).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::password::verify_password;

    #[test]
    fn users_are_added_replaced_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("var/users.toml");
        add_user(&path, "alice", Role::Read, "first password", false, 100).unwrap();
        let error = add_user(&path, "alice", Role::Admin, "second password", false, 200)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("already exists") && error.contains("--replace"),
            "{error}"
        );
        add_user(&path, "alice", Role::Admin, "second password", true, 200).unwrap();
        let file = load(&path).unwrap();
        assert_eq!(file.users.len(), 1);
        let alice = &file.users[0];
        assert_eq!((alice.role, alice.created), (Role::Admin, 100));
        assert!(verify_password("second password", &alice.password_hash));
        assert_eq!(
            format_users(&file),
            "NAME   ROLE   CREATED\nalice  admin  1970-01-01T00:01:40Z\n"
        );
        assert!(matches!(
            add_user(&path, "bob", Role::Read, "too short", false, 0),
            Err(AdminError::Password(PasswordError::TooShort(9)))
        ));
        assert!(matches!(
            add_user(
                &path,
                "bad name",
                Role::Read,
                "long enough password",
                false,
                0
            ),
            Err(AdminError::Name(_))
        ));
        assert!(matches!(
            remove_user(&path, "bob"),
            Err(AdminError::NoSuchUser(_))
        ));
        remove_user(&path, "alice").unwrap();
        assert!(load(&path).unwrap().users.is_empty());
    }

    #[test]
    fn tokens_are_stored_as_digests_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let token = create_token(&path, "ci", Role::Admin, None, 50).unwrap();
        let day = Some(Duration::from_secs(86_400));
        create_token(&path, "grafana", Role::Read, day, 50).unwrap();
        assert!(matches!(
            create_token(&path, "ci", Role::Read, None, 60),
            Err(AdminError::TokenExists(_))
        ));
        assert!(matches!(
            create_token(&path, "zero", Role::Read, Some(Duration::ZERO), 60),
            Err(AdminError::Ttl)
        ));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token), "the token itself is never stored");
        assert!(text.contains(&to_hex(&sha256(&token))));
        let file = load(&path).unwrap();
        assert_eq!(file.tokens[1].expires, Some(86_450));
        assert_eq!(
            format_tokens(&file, 86_450),
            "NAME     ROLE   CREATED               EXPIRES\n\
             ci       admin  1970-01-01T00:00:50Z  never\n\
             grafana  read   1970-01-01T00:00:50Z  1970-01-02T00:00:50Z (expired)\n"
        );
        revoke_token(&path, "ci").unwrap();
        assert!(matches!(
            revoke_token(&path, "ci"),
            Err(AdminError::NoSuchToken(_))
        ));
        assert_eq!(load(&path).unwrap().tokens.len(), 1);
    }

    #[test]
    fn a_malformed_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::fs::write(&path, "[[user]]\nname = 1\n").unwrap();
        let error = create_token(&path, "ci", Role::Read, None, 0).unwrap_err();
        assert!(
            error.to_string().contains("not a valid users file"),
            "{error}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[[user]]\nname = 1\n"
        );
    }

    #[test]
    fn the_password_is_the_first_line_of_stdin() {
        let read = |input: &str| read_password_line(input.as_bytes()).unwrap();
        assert_eq!(read("secret pass\r\nnext\n"), "secret pass");
        assert_eq!(read("  spaces kept  \n"), "  spaces kept  ");
        assert_eq!(read("no newline"), "no newline");
        assert_eq!(read(""), "");
    }
}
