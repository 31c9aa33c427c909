//! The on-disk format of the spool: segment file names and records.
//!
//! A segment is named after the global byte position of its first record, as 20
//! decimal digits and `.seg` (`00000000000008388608.seg`), so that a position (a u64
//! that only grows, across segments and restarts) names one byte of one segment, and
//! "everything before position P is acknowledged" is one number.
//!
//! ```text
//! record := magic "MSP1" (4 bytes) | body length u32 LE | CRC32 of the body u32 LE | body
//! ```
//!
//! The body is an encoded batch frame, whose header carries its stream id and
//! sequence. A record is valid only if its magic, its length (within the segment and
//! under [`MAX_BODY`]) and its checksum are; anything else is corruption, which the
//! reader skips by scanning for the next valid record ([`resync`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Marks the start of every record; what [`resync`] looks for after corruption.
pub const MAGIC: [u8; 4] = *b"MSP1";
/// Magic, length and checksum.
pub const HEADER_LEN: u64 = 12;
/// Largest body accepted when reading: far above any frame the agent builds, so that a
/// corrupt length cannot make the reader allocate without bound.
pub const MAX_BODY: u32 = 256 * 1024 * 1024;
/// Bytes read at once while scanning for the next magic.
const SCAN_CHUNK: usize = 64 * 1024;

/// Appends one record holding `body` to `out`.
pub fn encode(body: &[u8], out: &mut Vec<u8>) {
    // The writer never builds bodies near 4 GiB (batches are at most a few MiB).
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
}

/// Bytes a record of `body_len` takes on disk.
pub fn record_len(body_len: usize) -> u64 {
    HEADER_LEN + body_len as u64
}

/// The file name of the segment starting at global position `base`.
pub fn segment_file_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// The base position of a segment file name, if `name` is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What is at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// A valid record; the next one starts at `next`.
    Record {
        /// The record's body.
        body: Vec<u8>,
        /// Offset (in the segment) just past the record.
        next: u64,
    },
    /// Not a valid record: corruption, or a record cut short.
    Bad,
    /// The offset is at (or past) `limit`.
    End,
}

/// Reads the record at `offset` of a segment whose readable bytes end at `limit`.
pub fn read_record(file: &File, offset: u64, limit: u64) -> io::Result<Read> {
    if offset >= limit {
        return Ok(Read::End);
    }
    let Some(header) = read_header(file, offset, limit)? else {
        return Ok(Read::Bad);
    };
    let (len, crc) = header;
    let mut body = vec![0u8; len as usize];
    file.read_exact_at(&mut body, offset + HEADER_LEN)?;
    if crc32fast::hash(&body) != crc {
        return Ok(Read::Bad);
    }
    Ok(Read::Record {
        body,
        next: offset + HEADER_LEN + u64::from(len),
    })
}

/// Where the record at `offset` would end if its header is plausible (magic, and a
/// length that fits before `limit`), whether or not its body matches its checksum.
/// A record that is whole but fails its checksum was damaged after it was written; one
/// whose header is missing or runs past `limit` was cut short.
pub fn record_end(file: &File, offset: u64, limit: u64) -> io::Result<Option<u64>> {
    Ok(read_header(file, offset, limit)?.map(|(len, _)| offset + HEADER_LEN + u64::from(len)))
}

/// Reads and checks a record header: magic, and a length that fits before `limit`.
/// Returns the body length and checksum; `None` if they are not plausible.
fn read_header(file: &File, offset: u64, limit: u64) -> io::Result<Option<(u32, u32)>> {
    if limit.saturating_sub(offset) < HEADER_LEN {
        return Ok(None);
    }
    let mut h = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut h, offset)?;
    if h[0..4] != MAGIC {
        return Ok(None);
    }
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let crc = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if len > MAX_BODY || u64::from(len) > limit - offset - HEADER_LEN {
        return Ok(None);
    }
    Ok(Some((len, crc)))
}

/// The first offset at or after `from` (and before `limit`) where a valid record
/// starts, if any. Reads in chunks: a corrupt segment is never loaded whole.
pub fn resync(file: &File, from: u64, limit: u64) -> io::Result<Option<u64>> {
    let mut at = from;
    let mut chunk = vec![0u8; SCAN_CHUNK];
    while at < limit {
        let n = usize::try_from((limit - at).min(SCAN_CHUNK as u64)).unwrap_or(SCAN_CHUNK);
        let buf = &mut chunk[..n];
        file.read_exact_at(buf, at)?;
        let mut i = 0;
        while let Some(hit) = memchr::memmem::find(&buf[i..], &MAGIC) {
            let candidate = at + (i + hit) as u64;
            if let Read::Record { .. } = read_record(file, candidate, limit)? {
                return Ok(Some(candidate));
            }
            i += hit + 1;
        }
        if n < MAGIC.len() || at + n as u64 >= limit {
            break;
        }
        // Step back a little so a magic split between two chunks is still found.
        at += (n - (MAGIC.len() - 1)) as u64;
    }
    Ok(None)
}

/// Counts the records from `offset` to `limit` by their headers alone (lengths are
/// followed, bodies not read); stops at the first implausible header. Used at start
/// for the records gauge, so it must be cheap rather than exact.
pub fn count_records(file: &File, mut offset: u64, limit: u64) -> io::Result<u64> {
    let mut n = 0;
    while let Some((len, _)) = read_header(file, offset, limit)? {
        n += 1;
        offset += HEADER_LEN + u64::from(len);
    }
    Ok(n)
}

/// The event count in a frame's header (bytes 24..28), if `body` looks like a frame.
pub fn frame_event_count(body: &[u8]) -> Option<u32> {
    // A body that is not a frame (magic, full header) is corruption.
    monitoring_common::protocol::frame::FrameHeader::peek_id(body)?;
    let b = body.get(24..28)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The uncompressed payload length in a frame's header (bytes 28..32).
pub fn frame_uncompressed_len(body: &[u8]) -> Option<u32> {
    let b = body.get(28..32)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
