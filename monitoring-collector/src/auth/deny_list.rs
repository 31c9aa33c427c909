//! The `jti` deny-list (`auth.deny_list`): revoked token ids, one per line, `#`
//! comments, reloaded without restart.
//!
//! Re-read as a [`WatchedFile`]: revocation takes effect for the next connection
//! within ~2 s; a missing file is an empty list (with a warning: the operator may have
//! mistyped the path); a malformed file keeps the previous list, so that a
//! half-written edit never un-revokes tokens.

use std::collections::HashSet;
use std::path::Path;

use crate::watched_file::{FileKind, WatchedFile};

/// Longest `jti` accepted in the file.
const MAX_JTI_LEN: usize = 256;

/// The deny-list file and the ids last read from it.
#[derive(Debug)]
pub struct DenyList {
    file: WatchedFile<HashSet<String>>,
}

impl DenyList {
    /// Opens `path` and reads it once now.
    pub fn open(path: &Path) -> DenyList {
        let kind = FileKind {
            name: "token deny-list",
            when_missing: "Token deny-list file does not exist; no token is revoked.",
            load: |path| {
                std::fs::read(path)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| parse(&bytes))
            },
            summary: |ids| format!("{} revoked token ids", ids.len()),
        };
        DenyList {
            file: WatchedFile::open(path, kind),
        }
    }

    /// Whether `jti` is revoked, after re-reading the file if it is due and changed.
    pub fn contains(&self, jti: &str) -> bool {
        self.file.current().contains(jti)
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
    use std::time::Instant;

    use super::*;
    use crate::watched_file::CHECK_INTERVAL;

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
        assert!(list.file.refresh(later, false).contains("a"));
        std::fs::write(&path, "a\nb c d\n").unwrap();
        let ids = list.file.refresh(later + CHECK_INTERVAL, false);
        assert!(
            ids.contains("a"),
            "a malformed file keeps the previous list"
        );
        std::fs::write(&path, "b\n# a is back\n").unwrap();
        let ids = list.file.refresh(later + CHECK_INTERVAL * 2, false);
        assert!(ids.contains("b") && !ids.contains("a"));
        std::fs::remove_file(&path).unwrap();
        assert!(
            list.file
                .refresh(later + CHECK_INTERVAL * 3, false)
                .is_empty()
        );
    }
}
