//! The spool's ledger: the position before which every spooled record has been
//! acknowledged by the collector, in `ledger.json` beside the segments.
//!
//! It is written with [`crate::state::write_atomic`] (temporary file, fsync, rename,
//! fsync of the directory) at most about once a second and at shutdown, so after a
//! crash it is old but never torn: records acknowledged since its last write are sent
//! again and the collector removes the duplicates. A ledger that cannot be read is
//! reported and replaced: the spool then starts from its oldest segment (duplicates,
//! never loss).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::{StateError, write_atomic};

/// The ledger's file name in the spool directory.
pub const LEDGER_FILE: &str = "ledger.json";

/// Why the ledger could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Reading failed.
    #[error("{path}: cannot read the spool ledger: {source}")]
    Read {
        /// The ledger.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The content is not a ledger.
    #[error("{path}: not a spool ledger: {source}")]
    Parse {
        /// The ledger.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// Writing failed.
    #[error("cannot write the spool ledger: {0}")]
    Write(#[from] StateError),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Content {
    version: u32,
    acked: u64,
}

/// The ledger file of one spool directory.
#[derive(Debug, Clone)]
pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    /// The ledger in `dir`.
    pub fn new(dir: &Path) -> Ledger {
        Ledger {
            path: dir.join(LEDGER_FILE),
        }
    }

    /// The acknowledged position stored, or `None` when there is no ledger yet.
    pub fn load(&self) -> Result<Option<u64>, LedgerError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LedgerError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let content: Content =
            serde_json::from_slice(&bytes).map_err(|source| LedgerError::Parse {
                path: self.path.clone(),
                source,
            })?;
        Ok(Some(content.acked))
    }

    /// Stores `acked` durably.
    pub fn store(&self, acked: u64) -> Result<(), LedgerError> {
        let content = Content { version: 1, acked };
        // Serialising two integers cannot fail.
        let bytes = serde_json::to_vec(&content).unwrap_or_default();
        write_atomic(&self.path, &bytes)?;
        Ok(())
    }
}
