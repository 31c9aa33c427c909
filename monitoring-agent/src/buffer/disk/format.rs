//! The on-disk format of the spool: segment file names and records.
//!
//! A segment is named after the global byte position of its first record, as 20
//! decimal digits and `.seg` (`00000000000008388608.seg`), so that a position (a u64
//! that only grows, across segments and restarts) names one byte of one segment, and
//! "everything before position P is acknowledged" is one number.
//!
//! ```text
//! record := magic (4 bytes) | body length u32 LE | CRC32 of the body u32 LE | body
//! "MSP2" body := source counts | frame        (written by this version)
//! "MSP1" body := frame                        (written before; still read)
//! source counts := n u8 | n × events u32 LE   (in `Source` index order)
//! ```
//!
//! The frame is an encoded batch frame, whose header carries its stream id and
//! sequence. A record is valid only if its magic, its length (within the segment and
//! under [`MAX_BODY`]) and its checksum are; anything else is corruption, which the
//! reader skips by scanning for the next valid record ([`resync`]).
//!
//! Why the per-source counts are stored rather than recomputed: with a spool, every
//! batch the transport sends comes back from disk, so recomputing them would mean
//! decompressing and decoding every payload on the hot path. Storing them costs
//! `1 + 4 × sources` bytes per record. Records of the previous version (`MSP1`, left
//! by an older agent) carry no counts: they are attributed by decoding their payload
//! once, on that cold path ([`v1_sources`]); this is exact because the agents that
//! wrote them had only two sources, one per event kind. An older agent reading an
//! `MSP2` record takes it as corrupt and skips it, so a downgrade with a non-empty
//! spool loses that spool's unacknowledged batches (counted in
//! `monitoring_agent_spool_records_corrupt_total`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use monitoring_common::EventKind;
use monitoring_common::protocol::Limits;
use monitoring_common::protocol::frame::decode_frame;

use crate::pipeline::{Source, SourceCounts};

/// Marks the start of every record this version writes.
pub const MAGIC: [u8; 4] = *b"MSP2";
/// Marks the start of a record of the previous version (no source counts).
pub const MAGIC_V1: [u8; 4] = *b"MSP1";
/// What every magic starts with; what [`resync`] looks for after corruption.
const MAGIC_PREFIX: [u8; 3] = *b"MSP";
/// Magic, length and checksum.
pub const HEADER_LEN: u64 = 12;
/// Largest body accepted when reading: far above any frame the agent builds, so that a
/// corrupt length cannot make the reader allocate without bound.
pub const MAX_BODY: u32 = 256 * 1024 * 1024;
/// Bytes read at once while scanning for the next magic.
const SCAN_CHUNK: usize = 64 * 1024;

/// The record format versions this agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `MSP1`: the body is the frame.
    V1,
    /// `MSP2`: the body is the source counts, then the frame.
    V2,
}

/// Appends one record (the current version) holding `frame` and its per-source
/// event counts to `out`.
pub fn encode(frame: &[u8], sources: &SourceCounts, out: &mut Vec<u8>) {
    let start = out.len();
    // The writer never builds bodies near 4 GiB (batches are at most a few MiB).
    let len = u32::try_from(SourceCounts::ENCODED_LEN + frame.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let body = out.len();
    sources.encode(out);
    out.extend_from_slice(frame);
    let crc = crc32fast::hash(&out[body..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// Appends one record of the previous version (`MSP1`, as older agents wrote it)
/// holding `body` to `out`. The writer no longer uses it; tests make old spools with it.
pub fn encode_v1(body: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&MAGIC_V1);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
}

/// Bytes the record of a frame of `frame_len` bytes takes on disk.
pub fn record_len(frame_len: usize) -> u64 {
    HEADER_LEN + (SourceCounts::ENCODED_LEN + frame_len) as u64
}

/// A record body's per-source event counts and the offset of its frame in the body:
/// stored in a `V2` record, computed from the payload of a `V1` one ([`v1_sources`]).
/// `None` if the body cannot hold them (a `V2` body too short, a `V1` body that is not
/// a frame).
pub fn body_sources(version: Version, body: &[u8]) -> Option<(SourceCounts, usize)> {
    match version {
        Version::V2 => SourceCounts::decode(body),
        Version::V1 => {
            let events = frame_event_count(body)?;
            Some((v1_sources(body, events), 0))
        }
    }
}

/// The per-source counts of a `V1` record's frame of `event_count` events, by decoding
/// its payload (a cold path: only spools left by an older agent have such records).
/// Those agents had two sources, one per event kind: logs came from files and metrics
/// from the host. Events that cannot be decoded count as `file` (the source whose
/// events are tracked), so that the counts always add up to `event_count`.
pub fn v1_sources(frame: &[u8], event_count: u32) -> SourceCounts {
    let limits = Limits {
        max_frame_bytes: MAX_BODY as usize,
        max_uncompressed_bytes: MAX_BODY as usize,
        max_events_per_batch: u32::MAX,
    };
    let mut counts = SourceCounts::default();
    if let Ok(decoded) = decode_frame(frame, &limits) {
        for event in &decoded.events {
            match event.kind {
                EventKind::Metric(_) => counts.add(Source::HostMetrics),
                EventKind::Log(_) | EventKind::Flow(_) => counts.add(Source::File),
            }
        }
    }
    let missing = u64::from(event_count).saturating_sub(counts.total());
    counts.add_n(Source::File, u32::try_from(missing).unwrap_or(u32::MAX));
    counts
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
        /// Its format version (how to read the body).
        version: Version,
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
    let (version, len, crc) = header;
    let mut body = vec![0u8; len as usize];
    file.read_exact_at(&mut body, offset + HEADER_LEN)?;
    if crc32fast::hash(&body) != crc {
        return Ok(Read::Bad);
    }
    Ok(Read::Record {
        body,
        next: offset + HEADER_LEN + u64::from(len),
        version,
    })
}

/// Where the record at `offset` would end if its header is plausible (magic, and a
/// length that fits before `limit`), whether or not its body matches its checksum.
/// A record that is whole but fails its checksum was damaged after it was written; one
/// whose header is missing or runs past `limit` was cut short.
pub fn record_end(file: &File, offset: u64, limit: u64) -> io::Result<Option<u64>> {
    Ok(read_header(file, offset, limit)?.map(|(_, len, _)| offset + HEADER_LEN + u64::from(len)))
}

/// Reads and checks a record header: magic, and a length that fits before `limit`.
/// Returns the version, body length and checksum; `None` if they are not plausible.
fn read_header(file: &File, offset: u64, limit: u64) -> io::Result<Option<(Version, u32, u32)>> {
    if limit.saturating_sub(offset) < HEADER_LEN {
        return Ok(None);
    }
    let mut h = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut h, offset)?;
    let version = if h[0..4] == MAGIC {
        Version::V2
    } else if h[0..4] == MAGIC_V1 {
        Version::V1
    } else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let crc = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if len > MAX_BODY || u64::from(len) > limit - offset - HEADER_LEN {
        return Ok(None);
    }
    Ok(Some((version, len, crc)))
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
        while let Some(hit) = memchr::memmem::find(&buf[i..], &MAGIC_PREFIX) {
            let candidate = at + (i + hit) as u64;
            if let Read::Record { .. } = read_record(file, candidate, limit)? {
                return Ok(Some(candidate));
            }
            i += hit + 1;
        }
        if n < MAGIC_PREFIX.len() || at + n as u64 >= limit {
            break;
        }
        // Step back a little so a magic split between two chunks is still found.
        at += (n - (MAGIC_PREFIX.len() - 1)) as u64;
    }
    Ok(None)
}

/// Counts the records from `offset` to `limit` by their headers alone (lengths are
/// followed, bodies not read); stops at the first implausible header. Used at start
/// for the records gauge, so it must be cheap rather than exact.
pub fn count_records(file: &File, mut offset: u64, limit: u64) -> io::Result<u64> {
    let mut n = 0;
    while let Some((_, len, _)) = read_header(file, offset, limit)? {
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
