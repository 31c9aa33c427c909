//! File identity: what makes two paths, or the same path at two moments, the same
//! content.
//!
//! A path says nothing (rotation moves names around) and an inode alone is reused
//! after a delete, so a file is known by a hash of its first `fingerprint_bytes`
//! bytes: a renamed file keeps it, a copy made by copy-truncate rotation shares it,
//! and new content written over a reused inode does not. A file too short to have a
//! fingerprint is known by its device and inode, plus the hash of what it has so far
//! (its [`Prefix`]), so that two short files are never taken for one another
//! (LESSONS #3) and inode reuse is still caught.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use xxhash_rust::xxh3::xxh3_64;

/// The key a file's checkpoint is stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Key {
    /// A file with at least `fingerprint_bytes` bytes: the hash of those bytes.
    Fingerprint(u64),
    /// A shorter file: its device and inode.
    Inode {
        /// Device number.
        dev: u64,
        /// Inode number.
        ino: u64,
    },
}

/// The hash of a file's first `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Prefix {
    /// How many leading bytes were hashed (at most `fingerprint_bytes`).
    pub len: u64,
    /// Their xxh3 hash.
    pub hash: u64,
}

impl Prefix {
    /// The key of a file with this prefix: its fingerprint once the prefix is full.
    pub fn key(&self, fingerprint_bytes: usize, dev: u64, ino: u64) -> Key {
        if self.len >= fingerprint_bytes as u64 {
            Key::Fingerprint(self.hash)
        } else {
            Key::Inode { dev, ino }
        }
    }

    /// Whether the prefix is a full fingerprint.
    pub fn is_full(&self, fingerprint_bytes: usize) -> bool {
        self.len >= fingerprint_bytes as u64
    }
}

/// Reads and hashes the first `min(size, want)` bytes of `file`. `scratch` is reused
/// between calls.
pub(super) fn read_prefix(
    file: &File,
    want: usize,
    size: u64,
    scratch: &mut Vec<u8>,
) -> io::Result<Prefix> {
    let len = want.min(usize::try_from(size).unwrap_or(usize::MAX));
    scratch.clear();
    scratch.resize(len, 0);
    let mut filled = 0;
    while filled < len {
        // Offsets are small here (at most fingerprint_bytes), so the cast is exact.
        match file.read_at(&mut scratch[filled..], filled as u64) {
            Ok(0) => break, // shrank since it was measured
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Prefix {
        len: filled as u64,
        hash: xxh3_64(&scratch[..filled]),
    })
}

/// Whether `file` (of `size` bytes) still starts with `expected`.
pub(super) fn starts_with(
    file: &File,
    expected: &Prefix,
    size: u64,
    scratch: &mut Vec<u8>,
) -> io::Result<bool> {
    if size < expected.len {
        return Ok(false);
    }
    let len = usize::try_from(expected.len).unwrap_or(usize::MAX);
    Ok(read_prefix(file, len, size, scratch)? == *expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(dir: &tempfile::TempDir, name: &str, content: &[u8]) -> File {
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(content)
            .unwrap();
        File::open(path).unwrap()
    }

    #[test]
    fn equal_prefixes_give_equal_fingerprints() {
        let dir = tempfile::tempdir().unwrap();
        let a = file_with(&dir, "a", b"0123456789 first line\nsecond\n");
        let b = file_with(&dir, "b", b"0123456789 first line\nother\n");
        let mut s = Vec::new();
        let pa = read_prefix(&a, 10, 100, &mut s).unwrap();
        let pb = read_prefix(&b, 10, 100, &mut s).unwrap();
        assert_eq!(pa, pb);
        assert_eq!(pa.key(10, 1, 1), pb.key(10, 2, 2));
        assert!(matches!(pa.key(10, 1, 1), Key::Fingerprint(_)));
    }

    #[test]
    fn short_files_are_known_by_inode_not_content() {
        let dir = tempfile::tempdir().unwrap();
        let a = file_with(&dir, "a", b"");
        let b = file_with(&dir, "b", b"");
        let mut s = Vec::new();
        let pa = read_prefix(&a, 256, 0, &mut s).unwrap();
        let pb = read_prefix(&b, 256, 0, &mut s).unwrap();
        assert_eq!(pa.len, 0);
        assert_ne!(pa.key(256, 1, 10), pb.key(256, 1, 11));
    }

    #[test]
    fn starts_with_detects_rewritten_content() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_with(&dir, "a", b"hello world\n");
        let mut s = Vec::new();
        let p = read_prefix(&f, 5, 12, &mut s).unwrap();
        assert!(starts_with(&f, &p, 12, &mut s).unwrap());
        let g = file_with(&dir, "b", b"HELLO world\n");
        assert!(!starts_with(&g, &p, 12, &mut s).unwrap());
        assert!(!starts_with(&f, &p, 3, &mut s).unwrap());
    }
}
