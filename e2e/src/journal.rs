//! Journal files for the journald tests: numbered entries in journal export format,
//! written to real journal files with `systemd-journal-remote`; a check that the
//! agent binary was built with the `journald` feature; every stored log record with
//! its fields.

use crate::*;

/// Where Debian installs `systemd-journal-remote`.
pub const JOURNAL_REMOTE: &str = "/usr/lib/systemd/systemd-journal-remote";
/// The boot id of every test entry.
pub const TEST_BOOT_ID: &str = "0123456789abcdef0123456789abcdef";

/// One entry: its fields in order.
pub type JournalEntry = Vec<(String, Vec<u8>)>;

/// Entry `seq`, timestamped `base_usec + seq` µs: `MESSAGE` = `"seq=<8 digits>
/// journal entry\nsecond line \xff"` (counted by [`tally`]; a newline and an invalid
/// UTF-8 byte), `PRIORITY` = `seq % 8`, `_SYSTEMD_UNIT` = `even.service` or
/// `odd.service`, `_PID` = `1000 + seq % 7`, `_COMM` = `comm<seq % 3>`, and fixed
/// host, boot id, identifier and transport.
pub fn journal_entry(seq: u64, base_usec: u64) -> JournalEntry {
    let mut message = format!("seq={seq:08} journal entry\nsecond line ").into_bytes();
    message.push(0xff);
    let unit = if seq.is_multiple_of(2) {
        "even.service"
    } else {
        "odd.service"
    };
    [
        ("__REALTIME_TIMESTAMP", (base_usec + seq).to_string()),
        ("__MONOTONIC_TIMESTAMP", (1_000_000 + seq).to_string()),
        ("_BOOT_ID", TEST_BOOT_ID.to_string()),
        ("_SYSTEMD_UNIT", unit.to_string()),
        ("PRIORITY", (seq % 8).to_string()),
        ("_PID", (1000 + seq % 7).to_string()),
        ("_COMM", format!("comm{}", seq % 3)),
        ("_HOSTNAME", "journal-host".to_string()),
        ("SYSLOG_IDENTIFIER", "e2e".to_string()),
        ("_TRANSPORT", "journal".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_bytes()))
    .chain(std::iter::once(("MESSAGE".to_string(), message)))
    .collect()
}

/// The journal export format of `entries` (the binary field form for values with a
/// newline or invalid UTF-8).
pub fn journal_export(entries: &[JournalEntry]) -> Vec<u8> {
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

/// Writes `entries` as `<dir>/<name>.journal`: written beside `dir`, then renamed
/// into it, so that the agent never sees a half-written file. Fails with a clear
/// message when `systemd-journal-remote` is missing.
pub fn add_journal_file(dir: &Path, name: &str, entries: &[JournalEntry]) -> Result<PathBuf> {
    if !Path::new(JOURNAL_REMOTE).exists() {
        bail!(
            "{JOURNAL_REMOTE} is missing: install the Debian package systemd-journal-remote \
             (the journald tests write real journal files with it)"
        );
    }
    let staging = tempfile::tempdir_in(dir.parent().context("journal dir has a parent")?)?;
    let staged = staging.path().join(format!("{name}.journal"));
    let mut child = Command::new(JOURNAL_REMOTE)
        .arg(format!("--output={}", staged.display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {JOURNAL_REMOTE}"))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(&journal_export(entries))?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{JOURNAL_REMOTE} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = dir.join(format!("{name}.journal"));
    std::fs::rename(&staged, &path)?;
    Ok(path)
}

/// Fails unless the agent binary reads journald: `check-config` of a config that
/// enables it must pass (a build without the `journald` feature refuses it).
pub fn require_journald_agent(dir: &Path) -> Result<()> {
    let config = dir.join("journald-check.toml");
    std::fs::write(
        &config,
        "[collectors.logs]\nenabled = false\n[collectors.logs.journald]\nenabled = true\n",
    )?;
    let out = Command::new(bin("monitoring-agent")?)
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .output()?;
    if !out.status.success() {
        bail!(
            "the agent binary cannot read journald; build it with the feature: \
             `cargo build --workspace --bins --all-features` (scripts/test.sh does). \
             check-config said: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Every stored log record (the API's JSON objects), oldest first.
pub fn all_logs(collector: &Collector) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = "/api/v1/logs?limit=10000&order=asc".to_string();
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={}", urlencode(c)));
        }
        let mut page = collector.get(&q)?;
        let logs = page["logs"].as_array_mut().context("logs array")?;
        out.append(logs);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(out),
        }
    }
}
