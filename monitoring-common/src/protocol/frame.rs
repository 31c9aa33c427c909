//! Batch frames: one per binary WebSocket message from agent to collector.
//!
//! ```text
//! offset size field
//!  0     2    magic "MB" (0x4D 0x42)
//!  2     1    version (1)
//!  3     1    codec (0 none, 1 snappy, 2 lz4, 3 gzip, 4 zstd)
//!  4     2    flags, u16 LE (none defined: must be 0)
//!  6     2    reserved, must be 0
//!  8     8    stream id, u64 LE
//! 16     8    sequence number, u64 LE
//! 24     4    event count, u32 LE
//! 28     4    uncompressed payload length, u32 LE
//! 32     ..   compressed payload (the rest of the message)
//! ```

use crate::event::Event;

use super::codec::{Codec, CodecError};
use super::compressor::Compressor;
use super::payload::{self, PayloadError};
use super::{Limits, PROTOCOL_VERSION};

/// Frame magic: "MB", monitoring batch.
pub const FRAME_MAGIC: [u8; 2] = *b"MB";

/// Size of the fixed frame header.
pub const HEADER_LEN: usize = 32;

/// The fixed header of a batch frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Protocol version.
    pub version: u8,
    /// Payload codec.
    pub codec: Codec,
    /// Identifies one run of an agent's sender; with `sequence` it names a batch.
    pub stream_id: u64,
    /// Batch sequence number within the stream, increasing by one per batch.
    pub sequence: u64,
    /// Number of events in the payload.
    pub event_count: u32,
    /// Length of the payload once decompressed.
    pub uncompressed_len: u32,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Its header.
    pub header: FrameHeader,
    /// Its events.
    pub events: Vec<Event>,
}

/// Why a frame was refused. Its `Display` is the reason sent back in the rejection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than a header.
    #[error("frame of {0} bytes is shorter than the 32-byte header")]
    Short(usize),
    /// Wrong magic.
    #[error("bad magic: not a batch frame")]
    BadMagic,
    /// A version this collector does not speak.
    #[error("unsupported protocol version {0} (this side speaks 1)")]
    Version(u8),
    /// Unknown codec code.
    #[error("unknown codec {0}")]
    UnknownCodec(u8),
    /// Flags or reserved bits set.
    #[error("unknown flags {0:#06x}")]
    Flags(u16),
    /// The message is larger than allowed.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The declared uncompressed length is larger than allowed.
    #[error("declared uncompressed length {declared} exceeds the limit of {limit} bytes")]
    UncompressedTooLarge {
        /// What was declared.
        declared: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many events.
    #[error("batch of {count} events exceeds the limit of {limit}")]
    TooManyEvents {
        /// The declared count.
        count: u32,
        /// The limit.
        limit: u32,
    },
    /// Decompression failed.
    #[error("{0}")]
    Codec(#[from] CodecError),
    /// The events did not decode.
    #[error("{0}")]
    Payload(#[from] PayloadError),
}

impl FrameHeader {
    /// Reads and validates the header against `limits`. The frame's stream and
    /// sequence are known once this succeeds, so a rejection can name the batch.
    pub fn parse(frame: &[u8], limits: &Limits) -> Result<FrameHeader, FrameError> {
        if frame.len() < HEADER_LEN {
            return Err(FrameError::Short(frame.len()));
        }
        if frame[0..2] != FRAME_MAGIC {
            return Err(FrameError::BadMagic);
        }
        let u16_at = |i: usize| u16::from_le_bytes([frame[i], frame[i + 1]]);
        let u32_at =
            |i: usize| u32::from_le_bytes([frame[i], frame[i + 1], frame[i + 2], frame[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&frame[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let header = FrameHeader {
            version: frame[2],
            codec: Codec::ALL
                .get(usize::from(frame[3]))
                .copied()
                .unwrap_or(Codec::None),
            stream_id: u64_at(8),
            sequence: u64_at(16),
            event_count: u32_at(24),
            uncompressed_len: u32_at(28),
        };
        if header.version != PROTOCOL_VERSION {
            return Err(FrameError::Version(header.version));
        }
        Codec::from_code(frame[3]).map_err(|_| FrameError::UnknownCodec(frame[3]))?;
        let flags = u16_at(4) | u16_at(6);
        if flags != 0 {
            return Err(FrameError::Flags(flags));
        }
        if frame.len() > limits.max_frame_bytes {
            return Err(FrameError::FrameTooLarge {
                size: frame.len(),
                limit: limits.max_frame_bytes,
            });
        }
        if header.uncompressed_len as usize > limits.max_uncompressed_bytes {
            return Err(FrameError::UncompressedTooLarge {
                declared: header.uncompressed_len as usize,
                limit: limits.max_uncompressed_bytes,
            });
        }
        if header.event_count > limits.max_events_per_batch {
            return Err(FrameError::TooManyEvents {
                count: header.event_count,
                limit: limits.max_events_per_batch,
            });
        }
        Ok(header)
    }

    /// Just the stream id and sequence of a frame, if it is long enough to have them;
    /// used to name the batch in a rejection when the rest of the header is bad.
    pub fn peek_id(frame: &[u8]) -> Option<(u64, u64)> {
        if frame.len() < HEADER_LEN || frame[0..2] != FRAME_MAGIC {
            return None;
        }
        let mut s = [0u8; 8];
        let mut q = [0u8; 8];
        s.copy_from_slice(&frame[8..16]);
        q.copy_from_slice(&frame[16..24]);
        Some((u64::from_le_bytes(s), u64::from_le_bytes(q)))
    }

    /// Appends the 32 header bytes to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&FRAME_MAGIC);
        out.push(self.version);
        out.push(self.codec.code());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.stream_id.to_le_bytes());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&self.event_count.to_le_bytes());
        out.extend_from_slice(&self.uncompressed_len.to_le_bytes());
    }
}

/// Builds a complete frame from an already encoded payload (see [`payload::encode_event`]),
/// compressed at the codec's default level. The agent keeps a [`Compressor`] and calls
/// [`encode_frame_with`].
pub fn encode_frame(
    codec: Codec,
    stream_id: u64,
    sequence: u64,
    event_count: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut compressor = Compressor::new(codec, None).expect("the default level is valid");
    encode_frame_with(&mut compressor, stream_id, sequence, event_count, payload)
}

/// Builds a complete frame from an already encoded payload with `compressor`.
///
/// # Panics
/// Never for payloads under 4 GiB; the agent's batch limits keep them far below.
pub fn encode_frame_with(
    compressor: &mut Compressor,
    stream_id: u64,
    sequence: u64,
    event_count: u32,
    payload: &[u8],
) -> Vec<u8> {
    let header = FrameHeader {
        version: PROTOCOL_VERSION,
        codec: compressor.codec(),
        stream_id,
        sequence,
        event_count,
        uncompressed_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() / 2 + 64);
    header.write(&mut out);
    compressor.compress(payload, &mut out);
    out
}

/// Decodes a whole frame, bounded by `limits`.
pub fn decode_frame(frame: &[u8], limits: &Limits) -> Result<Frame, FrameError> {
    let header = FrameHeader::parse(frame, limits)?;
    let raw = header
        .codec
        .decompress(&frame[HEADER_LEN..], header.uncompressed_len as usize)?;
    let events = payload::decode_events(&raw, header.event_count)?;
    Ok(Frame { header, events })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::payload::{encode_events, tests::event};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn frames_round_trip_with_every_codec(
            events in prop::collection::vec(event(), 0..30),
            stream_id in any::<u64>(),
            sequence in any::<u64>(),
        ) {
            let payload = encode_events(&events);
            for codec in Codec::ALL {
                let bytes = encode_frame(codec, stream_id, sequence, events.len() as u32, &payload);
                let frame = decode_frame(&bytes, &Limits::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(frame.header.codec, codec);
                prop_assert_eq!(frame.header.stream_id, stream_id);
                prop_assert_eq!(frame.header.sequence, sequence);
                prop_assert_eq!(&frame.events, &events);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
            let _outcome = decode_frame(&data, &Limits::default());
        }
    }

    /// The worked example of docs/protocol.md, byte for byte.
    #[test]
    fn protocol_document_example() {
        let payload = encode_events(&[Event::log(1, "a", "hi")]);
        let expected_payload = [
            0x01, 1, 0, 0, 0, 0, 0, 0, 0, 0x01, b'a', 0x00, 0xff, 0x02, b'h', b'i', 0x00,
        ];
        assert_eq!(payload, expected_payload[..]);
        let frame = encode_frame(Codec::None, 7, 0, 1, &payload);
        let mut expected = vec![0x4d, 0x42, 1, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(&[0; 8]);
        expected.extend_from_slice(&[1, 0, 0, 0, 17, 0, 0, 0]);
        expected.extend_from_slice(&expected_payload);
        assert_eq!(frame, expected);
        let ack = crate::protocol::Ack::ok(7, 0).encode();
        let mut expected_ack = vec![0x4d, 0x41, 1, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0];
        expected_ack.extend_from_slice(&[0; 10]);
        assert_eq!(ack, expected_ack);
    }

    #[test]
    fn limits_are_enforced_before_decompression() {
        let payload = encode_events(&[Event::log(1, "s", "m")]);
        let bytes = encode_frame(Codec::Zstd, 1, 2, 1, &payload);
        let small = Limits {
            max_frame_bytes: 10_000,
            max_uncompressed_bytes: 4,
            max_events_per_batch: 10,
        };
        assert!(matches!(
            decode_frame(&bytes, &small),
            Err(FrameError::UncompressedTooLarge { .. })
        ));
        let few = Limits {
            max_events_per_batch: 0,
            ..Limits::default()
        };
        assert!(matches!(
            decode_frame(&bytes, &few),
            Err(FrameError::TooManyEvents { .. })
        ));
        let tiny = Limits {
            max_frame_bytes: 33,
            ..Limits::default()
        };
        assert!(matches!(
            decode_frame(&bytes, &tiny),
            Err(FrameError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn bad_headers_are_named() {
        let payload = encode_events(&[]);
        let good = encode_frame(Codec::None, 7, 9, 0, &payload);
        assert_eq!(
            decode_frame(&good[..10], &Limits::default()),
            Err(FrameError::Short(10))
        );
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(
            decode_frame(&b, &Limits::default()),
            Err(FrameError::BadMagic)
        );
        let mut b = good.clone();
        b[3] = 42;
        assert_eq!(
            decode_frame(&b, &Limits::default()),
            Err(FrameError::UnknownCodec(42))
        );
        assert_eq!(FrameHeader::peek_id(&b), Some((7, 9)));
        let mut b = good.clone();
        b[2] = 2;
        assert_eq!(
            decode_frame(&b, &Limits::default()),
            Err(FrameError::Version(2))
        );
        let mut b = good;
        b[4] = 1;
        assert_eq!(
            decode_frame(&b, &Limits::default()),
            Err(FrameError::Flags(1))
        );
    }
}
