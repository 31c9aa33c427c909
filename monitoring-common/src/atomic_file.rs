//! Files replaced whole, atomically and durably: checkpoints, ledgers, users files.
//!
//! [`write_atomic`] writes a temporary file beside the target, flushes it to disk,
//! renames it over the old one and flushes the directory, so that after a crash or a
//! power loss the file holds either the old or the new content, never a mix or nothing
//! (LESSONS #4). The temporary name carries the process id, so that two processes
//! replacing the same file (two CLI commands) never write into one temporary file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a file could not be replaced.
#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError {
    /// The path has no file name or no parent directory to write beside.
    #[error("{path}: not a file path inside a directory")]
    BadPath {
        /// The path asked for.
        path: PathBuf,
    },
    /// A step of the atomic write failed.
    #[error("{path}: cannot {step}: {source}")]
    Io {
        /// The file (or directory) the step worked on.
        path: PathBuf,
        /// What was being done: `create temporary file`, `fsync`, `rename`...
        step: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Who may read the new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The process's umask decides (state files).
    Default,
    /// Owner only (mode 0600 on Unix): secrets such as password hashes.
    Private,
}

/// Replaces the file at `path` with `bytes` atomically and durably: temporary file in
/// the same directory, fsync, rename over `path`, fsync of the directory. The
/// directory must exist.
///
/// On error the old content (if any) is still in place; the temporary file is removed
/// where possible.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    write_atomic_with(path, bytes, Access::Default)
}

/// [`write_atomic`] with the given [`Access`].
pub fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    access: Access,
) -> Result<(), AtomicWriteError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(AtomicWriteError::BadPath {
            path: path.to_path_buf(),
        });
    };
    // An empty parent means the current directory.
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);

    let result = write_and_rename(&tmp, path, dir, bytes, access);
    if result.is_err() {
        // Best effort: a leftover temporary file is harmless.
        fs::remove_file(&tmp).ok();
    }
    result
}

fn write_and_rename(
    tmp: &Path,
    path: &Path,
    dir: &Path,
    bytes: &[u8],
    access: Access,
) -> Result<(), AtomicWriteError> {
    let io = |path: &Path, step: &'static str| {
        let path = path.to_path_buf();
        move |source| AtomicWriteError::Io { path, step, source }
    };
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if access == Access::Private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    let mut file = options
        .open(tmp)
        .map_err(io(tmp, "create temporary file"))?;
    // A stale temporary file keeps its old mode; a private file must not.
    #[cfg(unix)]
    if access == Access::Private {
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(io(tmp, "set permissions of temporary file"))?;
    }
    file.write_all(bytes)
        .map_err(io(tmp, "write temporary file"))?;
    file.sync_all().map_err(io(tmp, "fsync temporary file"))?;
    drop(file);
    fs::rename(tmp, path).map_err(io(path, "rename temporary file over"))?;
    // Without this the rename itself may not survive a power loss.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir, "fsync directory"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces_whole_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("files.json");
        write_atomic(&path, b"old content").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"old content");
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("files.json")]);
    }

    #[test]
    fn failed_write_leaves_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("files.json");
        write_atomic(&path, b"old content").unwrap();
        // A directory where the temporary file must go makes the write fail midway.
        let tmp = format!(".files.json.tmp-{}", std::process::id());
        fs::create_dir(dir.path().join(&tmp)).unwrap();
        let err = write_atomic(&path, b"new content").unwrap_err();
        assert!(err.to_string().contains(&tmp), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"old content");
    }

    #[test]
    fn missing_directory_is_an_error_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("files.json");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(matches!(err, AtomicWriteError::Io { .. }));
        assert!(err.to_string().contains("absent"), "{err}");
    }

    #[test]
    fn concurrent_readers_see_old_or_new_never_partial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let a = vec![b'a'; 64 * 1024];
        let b = vec![b'b'; 32 * 1024];
        write_atomic(&path, &a).unwrap();
        let reader = {
            let path = path.clone();
            let (a, b) = (a.clone(), b.clone());
            std::thread::spawn(move || {
                for _ in 0..500 {
                    let got = fs::read(&path).unwrap();
                    assert!(
                        got == a || got == b,
                        "partial content of {} bytes",
                        got.len()
                    );
                }
            })
        };
        for i in 0..100 {
            write_atomic(&path, if i % 2 == 0 { &b } else { &a }).unwrap();
        }
        reader.join().unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only_even_over_a_stale_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let tmp = dir
            .path()
            .join(format!(".users.toml.tmp-{}", std::process::id()));
        fs::write(&tmp, "stale").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic_with(&path, b"secret", Access::Private).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"secret");
    }
}
