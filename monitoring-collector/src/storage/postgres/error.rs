//! Failures of the PostgreSQL store and how they become [`StorageError`]s.
//!
//! Every message names the server as `postgres://user@host:port/database` (never the
//! password) and carries the whole cause: the client's own `Display` says only "db
//! error", the server's message sits in its source.

use std::time::Duration;

use postgres::error::SqlState;

use crate::storage::StorageError;

/// A failure while talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PgError {
    /// The client or the server reported an error.
    #[error("{target}: {}", chain(source))]
    Db {
        /// The server, without password.
        target: String,
        /// The cause.
        #[source]
        source: postgres::Error,
    },
    /// Every pooled connection stayed busy for the whole timeout.
    #[error("{target}: no free connection within {waited:?} (pool of {size})")]
    PoolExhausted {
        /// The server, without password.
        target: String,
        /// How long we waited.
        waited: Duration,
        /// Connections in the pool.
        size: usize,
    },
}

impl PgError {
    /// The SQLSTATE of a server error.
    pub(crate) fn code(&self) -> Option<&SqlState> {
        match self {
            PgError::Db { source, .. } => source.code(),
            PgError::PoolExhausted { .. } => None,
        }
    }

    /// As a [`StorageError`] saying what was being done.
    pub(crate) fn doing(self, context: &'static str) -> StorageError {
        StorageError::Database {
            context,
            source: Box::new(self),
        }
    }
}

/// Maps a [`PgError`] to a [`StorageError`] for `context`, for `map_err`.
pub(crate) fn doing(context: &'static str) -> impl FnOnce(PgError) -> StorageError {
    move |e| e.doing(context)
}

/// An error and its causes, joined with `": "`.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let more = e.to_string();
        // Some causes repeat their parent's text; say it once.
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = e.source();
    }
    text
}

/// Whether `error` means the connection is unusable (closed, reset, the backend
/// terminated or the server shutting down), as opposed to a failed statement on a
/// healthy connection.
pub(crate) fn is_broken(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        // Class 08: connection exception; class 57: operator intervention
        // (admin shutdown, crash shutdown, cannot connect now), except a
        // cancelled statement (57014), which leaves the connection usable.
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || (code.starts_with("57") && code != "57014")
        }
        // No SQLSTATE: an I/O error leaves the connection's state unknown; a
        // parameter or column conversion error leaves it usable.
        None => std::error::Error::source(error)
            .is_some_and(|cause| cause.downcast_ref::<std::io::Error>().is_some()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[test]
    fn chain_joins_causes() {
        assert_eq!(chain(&Outer(Inner)), "outer: inner");
    }
}
