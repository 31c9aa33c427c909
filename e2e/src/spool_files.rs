//! The agent's files on disk as a fault test sees them: the disk spool's segments and
//! records (to tear or damage one the way a crash or a bad disk would), and the file
//! checkpoints in `[state] dir`.
//!
//! The record layout is the one `monitoring-agent/src/buffer/disk/format.rs`
//! documents: magic `MSP2` (or `MSP1` from older agents), body length u32 LE, CRC32
//! u32 LE, body. It is read here
//! from the bytes, not through the agent's code, so that a test cannot agree with a
//! bug in it.

use crate::*;

/// Bytes of a record header: magic, length, checksum.
const RECORD_HEADER: u64 = 12;

/// The spool's segment files (`NNNNNNNNNNNNNNNNNNNN.seg`), oldest first.
pub fn spool_segments(spool: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(spool)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "seg"))
                .collect()
        })
        .unwrap_or_default();
    segments.sort();
    segments
}

/// Total bytes of the spool's segment files.
pub fn spool_bytes_on_disk(spool: &Path) -> u64 {
    spool_segments(spool)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// One record of a segment: where it starts and how many bytes it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    /// Offset of its header in the segment.
    pub offset: u64,
    /// Header and body.
    pub len: u64,
}

/// The records of a segment, walked by their headers; fails on anything that is not a
/// whole record (the test damages records only after reading them whole).
pub fn segment_records(segment: &Path) -> Result<Vec<RecordSpan>> {
    let bytes = std::fs::read(segment)?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let header = bytes
            .get(at..at + RECORD_HEADER as usize)
            .with_context(|| format!("{}: short header at {at}", segment.display()))?;
        if !matches!(&header[0..4], b"MSP2" | b"MSP1") {
            bail!("{}: no record magic at {at}", segment.display());
        }
        let body = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as u64;
        let len = RECORD_HEADER + body;
        if at as u64 + len > bytes.len() as u64 {
            bail!("{}: record at {at} runs past the end", segment.display());
        }
        out.push(RecordSpan {
            offset: at as u64,
            len,
        });
        at += len as usize;
    }
    Ok(out)
}

/// The last record of the newest non-empty segment, with that segment.
pub fn last_spool_record(spool: &Path) -> Result<(PathBuf, RecordSpan)> {
    for segment in spool_segments(spool).into_iter().rev() {
        if let Some(last) = segment_records(&segment)?.pop() {
            return Ok((segment, last));
        }
    }
    bail!("no record in the spool at {}", spool.display())
}

/// Cuts the last record of the spool in the middle, as a power loss during its write
/// would leave it; returns it.
pub fn tear_last_spool_record(spool: &Path) -> Result<(PathBuf, RecordSpan)> {
    let (segment, rec) = last_spool_record(spool)?;
    let file = std::fs::OpenOptions::new().write(true).open(&segment)?;
    file.set_len(rec.offset + rec.len / 2)?;
    file.sync_all()?;
    Ok((segment, rec))
}

/// Flips one byte in the middle of the last record's body (past the record and
/// frame headers: damaged data, not a damaged length); returns the record.
pub fn flip_byte_in_last_spool_record(spool: &Path) -> Result<(PathBuf, RecordSpan)> {
    let (segment, rec) = last_spool_record(spool)?;
    let mut bytes = std::fs::read(&segment)?;
    // 12 bytes of record header, then the 32-byte frame header, then the payload.
    let body_start = rec.offset + RECORD_HEADER;
    let at = body_start + 32 + (rec.len - RECORD_HEADER - 32) / 2;
    bytes[at as usize] ^= 0x5a;
    std::fs::write(&segment, &bytes)?;
    Ok((segment, rec))
}

/// The largest `offset` in the agent's file checkpoints (`files.json` in its state
/// directory), if written.
pub fn checkpoint_offset(state: &Path) -> Option<u64> {
    fn walk(v: &serde_json::Value, best: &mut Option<u64>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    if let (true, Some(n)) = (k == "offset", v.as_u64()) {
                        *best = Some(best.map_or(n, |b| b.max(n)));
                    }
                    walk(v, best);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, best)),
            _ => {}
        }
    }
    let bytes = std::fs::read(state.join("files.json")).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let mut best = None;
    walk(&json, &mut best);
    best
}
