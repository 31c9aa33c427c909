//! Payload compression codecs and bounded decompression.
//!
//! Decompression never produces more than the length the frame header declared: the
//! output buffer is sized from the (already limit-checked) declaration and a payload
//! that would inflate past it is an error, so a decompression bomb costs at most the
//! declared length.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::compressor::Compressor;

/// Compression applied to a frame's payload. The discriminant is the wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Codec {
    /// No compression.
    None = 0,
    /// Snappy raw (block) format, without the framing format.
    Snappy = 1,
    /// LZ4 block format, without the frame format and without a size prefix.
    #[default]
    Lz4 = 2,
    /// gzip (RFC 1952), one member.
    Gzip = 3,
    /// Zstandard frame (RFC 8878).
    Zstd = 4,
}

/// Errors of compression and decompression.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The codec code is not one this version knows.
    #[error("unknown codec {0}")]
    Unknown(u8),
    /// The payload inflates past the length the header declared.
    #[error("payload inflates past its declared length of {declared} bytes")]
    TooLarge {
        /// The declared uncompressed length.
        declared: usize,
    },
    /// The payload inflates to less than the declared length.
    #[error("payload inflates to {actual} bytes, but {declared} were declared")]
    LengthMismatch {
        /// The declared uncompressed length.
        declared: usize,
        /// What it inflated to.
        actual: usize,
    },
    /// A level was configured for a codec that has none.
    #[error("{0} takes no compression level")]
    NoLevels(Codec),
    /// The level is outside the codec's range.
    #[error("compression level {level} is out of range for {codec} ({min} to {max})")]
    Level {
        /// The codec.
        codec: Codec,
        /// The level asked for.
        level: i32,
        /// Its lowest level.
        min: i32,
        /// Its highest level.
        max: i32,
    },
    /// The compressed data is corrupt.
    #[error("corrupt {codec} payload: {message}")]
    Corrupt {
        /// Which codec failed.
        codec: Codec,
        /// What the decompressor said.
        message: String,
    },
}

impl Codec {
    /// All codecs, in wire-code order.
    pub const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Gzip,
        Codec::Zstd,
    ];

    /// The codec with the given wire code.
    pub fn from_code(code: u8) -> Result<Codec, CodecError> {
        Codec::ALL
            .get(usize::from(code))
            .copied()
            .ok_or(CodecError::Unknown(code))
    }

    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Lowercase name, as in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }

    /// Compresses `input` at the codec's default level, appending to `out`. To
    /// compress many payloads, or at another level, keep a [`Compressor`].
    pub fn compress(self, input: &[u8], out: &mut Vec<u8>) {
        Compressor::new(self, None)
            .expect("the default level is valid")
            .compress(input, out);
    }

    /// Decompresses `input`, which must inflate to exactly `declared` bytes.
    ///
    /// `declared` must already have been checked against the configured limit: it is
    /// the most this allocates.
    pub fn decompress(self, input: &[u8], declared: usize) -> Result<Vec<u8>, CodecError> {
        let corrupt = |message: String| CodecError::Corrupt {
            codec: self,
            message,
        };
        let out = match self {
            Codec::None => input.to_vec(),
            Codec::Snappy => {
                let len = snap::raw::decompress_len(input).map_err(|e| corrupt(e.to_string()))?;
                if len > declared {
                    return Err(CodecError::TooLarge { declared });
                }
                let mut out = vec![0; len];
                let n = snap::raw::Decoder::new()
                    .decompress(input, &mut out)
                    .map_err(|e| corrupt(e.to_string()))?;
                out.truncate(n);
                out
            }
            Codec::Lz4 => {
                let mut out = vec![0; declared];
                let n = lz4_flex::block::decompress_into(input, &mut out).map_err(|e| match e {
                    lz4_flex::block::DecompressError::OutputTooSmall { .. } => {
                        CodecError::TooLarge { declared }
                    }
                    other => corrupt(other.to_string()),
                })?;
                out.truncate(n);
                out
            }
            Codec::Gzip => read_bounded(flate2::read::GzDecoder::new(input), declared).map_err(
                |e| match e {
                    BoundedReadError::TooLarge => CodecError::TooLarge { declared },
                    BoundedReadError::Io(e) => corrupt(e.to_string()),
                },
            )?,
            Codec::Zstd => {
                let dec =
                    zstd::stream::read::Decoder::new(input).map_err(|e| corrupt(e.to_string()))?;
                read_bounded(dec, declared).map_err(|e| match e {
                    BoundedReadError::TooLarge => CodecError::TooLarge { declared },
                    BoundedReadError::Io(e) => corrupt(e.to_string()),
                })?
            }
        };
        if out.len() > declared {
            return Err(CodecError::TooLarge { declared });
        }
        if out.len() != declared {
            return Err(CodecError::LengthMismatch {
                declared,
                actual: out.len(),
            });
        }
        Ok(out)
    }
}

enum BoundedReadError {
    TooLarge,
    Io(std::io::Error),
}

/// Reads a stream to its end into a buffer of at most `limit` bytes; one byte more is
/// an error. Grows the buffer as data arrives, so a lying declaration costs nothing.
fn read_bounded(reader: impl Read, limit: usize) -> Result<Vec<u8>, BoundedReadError> {
    let mut out = Vec::with_capacity(limit.min(1 << 20));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(BoundedReadError::Io)?;
    if out.len() > limit {
        return Err(BoundedReadError::TooLarge);
    }
    Ok(out)
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Codec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Codec::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown codec {s:?} (expected none, snappy, lz4, gzip or zstd)")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_codec_round_trips(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            for codec in Codec::ALL {
                let mut packed = Vec::new();
                codec.compress(&data, &mut packed);
                let back = codec.decompress(&packed, data.len());
                prop_assert_eq!(back, Ok(data.clone()));
            }
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), declared in 0usize..10_000) {
            for codec in Codec::ALL {
                if let Ok(out) = codec.decompress(&data, declared) {
                    prop_assert_eq!(out.len(), declared);
                }
            }
        }
    }

    #[test]
    fn bombs_are_refused_at_the_declared_length() {
        let bomb = vec![0u8; 16 * 1024 * 1024];
        for codec in Codec::ALL {
            let mut packed = Vec::new();
            codec.compress(&bomb, &mut packed);
            let err = codec.decompress(&packed, 1024).expect_err("bomb accepted");
            assert!(
                matches!(err, CodecError::TooLarge { declared: 1024 }),
                "{codec}: {err}"
            );
        }
    }

    #[test]
    fn short_payload_is_a_mismatch() {
        for codec in Codec::ALL {
            let mut packed = Vec::new();
            codec.compress(b"hello", &mut packed);
            assert!(codec.decompress(&packed, 6).is_err(), "{codec}");
        }
    }

    #[test]
    fn names_parse() {
        for c in Codec::ALL {
            assert_eq!(c.as_str().parse::<Codec>(), Ok(c));
            assert_eq!(Codec::from_code(c.code()), Ok(c));
        }
        assert_eq!(Codec::from_code(9), Err(CodecError::Unknown(9)));
    }
}
