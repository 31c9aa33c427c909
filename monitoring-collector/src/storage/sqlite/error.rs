//! Turning SQLite and I/O failures into [`StorageError`]s that name the file.

use std::path::{Path, PathBuf};

use crate::storage::StorageError;

/// Result of the store's internals.
pub(crate) type StorageResult<T> = Result<T, StorageError>;

/// A database error together with the file it happened in, so that an operator
/// reading "database error in committing a batch: …" knows which day file to look at.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub(crate) struct AtPath {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

/// Maps a rusqlite error in `path` to [`StorageError::Database`].
pub(crate) fn db_at<'a>(
    context: &'static str,
    path: &'a Path,
) -> impl FnOnce(rusqlite::Error) -> StorageError + 'a {
    move |source| StorageError::Database {
        context,
        source: Box::new(AtPath {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Maps an I/O error to [`StorageError::Io`] with what was done to which path.
pub(crate) fn io_at(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let context = format!("{what} {}", path.display());
    move |source| StorageError::Io { context, source }
}

/// Maps a JSON encoding error (labels, fields) to [`StorageError::Database`].
pub(crate) fn json(context: &'static str) -> impl FnOnce(serde_json::Error) -> StorageError {
    move |source| StorageError::Database {
        context,
        source: Box::new(source),
    }
}
