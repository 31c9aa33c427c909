//! Tests of the users file: parsing, checking, rendering and atomic writing.

use super::*;
use crate::api::auth::password::hash_password;
use crate::api::auth::secret::{sha256, to_hex};

fn sample() -> UsersFile {
    UsersFile {
        users: vec![UserRecord {
            name: "alice".into(),
            role: Role::Admin,
            password_hash: hash_password("alice's password").unwrap(),
            created: 1_700_000_000,
        }],
        tokens: vec![
            TokenRecord {
                name: "grafana".into(),
                role: Role::Read,
                sha256: to_hex(&sha256("mcapi_x")),
                created: 1_700_000_001,
                expires: Some(1_800_000_000),
            },
            TokenRecord {
                name: "ci".into(),
                role: Role::Admin,
                sha256: to_hex(&sha256("mcapi_y")),
                created: 1_700_000_002,
                expires: None,
            },
        ],
    }
}

#[test]
fn renders_and_parses_back() {
    let file = sample();
    let text = file.render().unwrap();
    assert!(
        text.starts_with("# monitoring-collector API users"),
        "{text}"
    );
    assert!(
        text.contains("[[user]]") && text.contains("[[token]]"),
        "{text}"
    );
    assert!(
        text.contains("created = \"2023-11-14T22:13:20Z\""),
        "{text}"
    );
    assert!(
        text.contains("expires = \"2027-01-15T08:00:00Z\""),
        "{text}"
    );
    assert_eq!(UsersFile::parse(&text).unwrap(), file);
    assert_eq!(UsersFile::parse("").unwrap(), UsersFile::default());
}

#[test]
fn malformed_files_are_refused_with_a_reason() {
    let hash = hash_password("a long password").unwrap();
    let user = |name: &str, role: &str, hash: &str| {
        format!(
            "[[user]]\nname = \"{name}\"\nrole = \"{role}\"\npassword_hash = \"{hash}\"\ncreated = \"2024-01-01T00:00:00Z\"\n"
        )
    };
    let cases = [
        (user("a b", "read", &hash), "contains ' '"),
        (user("root", "root", &hash), "unknown variant"),
        (user("bob", "read", "plain text"), "not an argon2id PHC"),
        (
            format!("{}{}", user("bob", "read", &hash), user("bob", "admin", &hash)),
            "appears twice",
        ),
        (format!("{}extra = 1\n", user("bob", "read", &hash)), "extra"),
        (
            "[[token]]\nname = \"t\"\nrole = \"read\"\nsha256 = \"abc\"\ncreated = \"2024-01-01T00:00:00Z\"\n".into(),
            "64 lowercase hex",
        ),
        (
            format!(
                "[[token]]\nname = \"t\"\nrole = \"read\"\nsha256 = \"{}\"\ncreated = \"yesterday\"\n",
                "a".repeat(64)
            ),
            "neither RFC 3339",
        ),
        ("[[user]]\nname = \"x\"\n".into(), "missing field"),
    ];
    for (text, expected) in cases {
        let error = UsersFile::parse(&text).expect_err(&text);
        assert!(error.contains(expected), "{expected:?} not in {error:?}");
    }
}

#[test]
fn names_are_restricted() {
    assert!(check_name("ops.team-1_x@example").is_ok());
    assert!(check_name("").is_err());
    assert!(check_name(&"a".repeat(65)).is_err());
    assert!(check_name(&"a".repeat(64)).is_ok());
    assert!(check_name("a\"b").is_err());
    assert!(check_name("é").is_err());
}

#[test]
fn write_is_atomic_private_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/users.toml");
    assert!(UsersFile::read(&path).unwrap().is_none(), "missing is None");
    let file = sample();
    file.write(&path).unwrap();
    assert_eq!(UsersFile::read(&path).unwrap(), Some(file.clone()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A stale temporary file from a crashed writer with our pid, world-readable.
    let stale = dir
        .path()
        .join(format!("sub/.users.toml.tmp-{}", std::process::id()));
    std::fs::write(&stale, "junk that is longer than the new content, surely").unwrap();
    let empty = UsersFile::default();
    empty.write(&path).unwrap();
    assert_eq!(UsersFile::read(&path).unwrap(), Some(empty));
    let names: Vec<String> = std::fs::read_dir(dir.path().join("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["users.toml"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a stale file's mode is not inherited");
    }
}

#[test]
fn reading_reports_malformed_files_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.toml");
    std::fs::write(&path, "[[user]\n").unwrap();
    let error = UsersFile::read(&path).unwrap_err().to_string();
    assert!(
        error.contains("users.toml is not a valid users file"),
        "{error}"
    );
    std::fs::write(&path, b"\xff").unwrap();
    assert!(UsersFile::read(&path).is_err());
}

#[test]
fn the_lock_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.toml");
    let held = lock(&path).unwrap();
    let lock_path = dir.path().join("users.toml.lock");
    let other = File::options().write(true).open(&lock_path).unwrap();
    assert!(
        matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        "a second writer must wait"
    );
    drop(held);
    assert!(other.try_lock().is_ok());
}

#[test]
fn times_are_whole_seconds_in_rfc3339() {
    assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
    assert_eq!(parse_time_secs("2023-11-14T22:13:20Z"), Ok(1_700_000_000));
    assert_eq!(
        parse_time_secs("2023-11-14T23:13:20+01:00"),
        Ok(1_700_000_000)
    );
}
