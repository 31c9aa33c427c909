//! Test support: real journal files written by `systemd-journal-remote` from journal
//! export format made here (`NAME=value` lines, the binary form `NAME\n<u64 LE
//! length><bytes>\n` for values with a newline or invalid UTF-8, a blank line between
//! entries). No journald needs to run.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where Debian installs `systemd-journal-remote`.
pub const JOURNAL_REMOTE: &str = "/usr/lib/systemd/systemd-journal-remote";

/// Realtime timestamp of entry 0, in microseconds (entries are 1 ms apart).
pub const BASE_USEC: u64 = 1_700_000_000_000_000;
/// The boot id every test entry carries.
pub const BOOT_ID: &str = "0123456789abcdef0123456789abcdef";

/// One entry: its fields in order.
pub type Entry = Vec<(String, Vec<u8>)>;

/// Entry `seq`: `MESSAGE` = `"entry seq=<seq>\nsecond line \xff"` (a newline and an
/// invalid UTF-8 byte), `PRIORITY` = `seq % 8`, `_SYSTEMD_UNIT` = `a.service` for
/// even and `b.service` for odd numbers, `_PID` = `1000 + seq % 3`, `_COMM` =
/// `comm<seq % 3>`, and fixed host, boot id, identifier and transport.
pub fn entry(seq: u64) -> Entry {
    let unit = if seq.is_multiple_of(2) {
        "a.service"
    } else {
        "b.service"
    };
    let mut message = format!("entry seq={seq}\nsecond line ").into_bytes();
    message.push(0xff);
    [
        ("__REALTIME_TIMESTAMP", (BASE_USEC + seq * 1000).to_string()),
        ("__MONOTONIC_TIMESTAMP", (1_000_000 + seq).to_string()),
        ("_BOOT_ID", BOOT_ID.to_string()),
        ("_SYSTEMD_UNIT", unit.to_string()),
        ("PRIORITY", (seq % 8).to_string()),
        ("_PID", (1000 + seq % 3).to_string()),
        ("_COMM", format!("comm{}", seq % 3)),
        ("_HOSTNAME", "testhost".to_string()),
        ("SYSLOG_IDENTIFIER", "tester".to_string()),
        ("_TRANSPORT", "journal".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_bytes()))
    .chain(std::iter::once(("MESSAGE".to_string(), message)))
    .collect()
}

/// The journal export format of `entries`.
pub fn export(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        for (name, value) in entry {
            out.extend_from_slice(name.as_bytes());
            if value.contains(&b'\n') || std::str::from_utf8(value).is_err() {
                out.push(b'\n');
                out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            } else {
                out.push(b'=');
            }
            out.extend_from_slice(value);
            out.push(b'\n');
        }
        out.push(b'\n');
    }
    out
}

/// Writes `entries` to the journal file `path` (its name must end in `.journal`)
/// with `systemd-journal-remote`. Panics with a clear message when the tool is
/// missing: these tests must fail, not skip, where it is not installed.
pub fn write_journal(path: &Path, entries: &[Entry]) {
    assert!(
        Path::new(JOURNAL_REMOTE).exists(),
        "{JOURNAL_REMOTE} is missing: install the Debian package systemd-journal-remote \
         (these tests write real journal files with it)"
    );
    let mut child = Command::new(JOURNAL_REMOTE)
        .arg(format!("--output={}", path.display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {JOURNAL_REMOTE}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&export(entries)).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{JOURNAL_REMOTE} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes entries `seqs` to `<dir>/<name>.journal` atomically: written beside `dir`
/// then renamed into it, so that a reader watching `dir` never sees a half-written
/// file. Returns the file's path.
pub fn add_journal_file(dir: &Path, name: &str, seqs: std::ops::Range<u64>) -> PathBuf {
    let entries: Vec<Entry> = seqs.map(entry).collect();
    let staging = tempfile::tempdir_in(dir.parent().unwrap()).unwrap();
    let staged = staging.path().join(format!("{name}.journal"));
    write_journal(&staged, &entries);
    let path = dir.join(format!("{name}.journal"));
    std::fs::rename(&staged, &path).unwrap();
    path
}
