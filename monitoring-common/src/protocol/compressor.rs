//! Compression at a chosen level, with the state kept from one payload to the next.
//!
//! The agent compresses every batch with the same settings, so it keeps one
//! [`Compressor`]: zstd's context (its match tables, hundreds of KiB at level 3) is
//! made once and reset per batch instead of allocated, cleared and freed per batch,
//! which cost about a tenth of compressing a 1,000-line batch. The reset keeps the
//! output byte for byte what a fresh streaming encoder writes: the payload is fed as
//! a stream, not as one block of known size, because zstd sizes its tables down for
//! a known small input and loghub batches came out 2.4% larger that way.

use std::io::Write;
use std::ops::RangeInclusive;

use zstd::stream::raw::{Encoder as ZstdEncoder, InBuffer, Operation, OutBuffer};

use super::codec::{Codec, CodecError};

impl Codec {
    /// The compression levels this codec takes, or `None` if it has no levels.
    ///
    /// zstd stops at 19: levels 20 to 22 need windows of up to 128 MiB on both ends.
    /// gzip starts at 1: level 0 stores the data uncompressed (use `none` for that).
    pub fn levels(self) -> Option<RangeInclusive<i32>> {
        match self {
            Codec::Gzip => Some(1..=9),
            Codec::Zstd => Some(1..=19),
            Codec::None | Codec::Snappy | Codec::Lz4 => None,
        }
    }

    /// The level used when none is configured: gzip 1 (its fastest: gzip is the
    /// compatibility choice, not the ratio one) and zstd 3 (zstd's own default).
    pub fn default_level(self) -> Option<i32> {
        match self {
            Codec::Gzip => Some(1),
            Codec::Zstd => Some(3),
            Codec::None | Codec::Snappy | Codec::Lz4 => None,
        }
    }

    /// The level a compressor uses for `level` as configured, or why it cannot.
    pub fn check_level(self, level: Option<i32>) -> Result<i32, CodecError> {
        match (self.levels(), level) {
            (None, None) => Ok(0),
            (None, Some(_)) => Err(CodecError::NoLevels(self)),
            (Some(_), None) => Ok(self.default_level().unwrap_or(0)),
            (Some(range), Some(level)) if range.contains(&level) => Ok(level),
            (Some(range), Some(level)) => Err(CodecError::Level {
                codec: self,
                level,
                min: *range.start(),
                max: *range.end(),
            }),
        }
    }
}

/// A codec at one level, and the state it keeps between payloads.
pub struct Compressor {
    codec: Codec,
    level: i32,
    zstd: Option<ZstdEncoder<'static>>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("codec", &self.codec)
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

impl Compressor {
    /// A compressor for `codec` at `level` (`None`: the codec's default level).
    pub fn new(codec: Codec, level: Option<i32>) -> Result<Compressor, CodecError> {
        let level = codec.check_level(level)?;
        let zstd = match codec {
            Codec::Zstd => Some(ZstdEncoder::new(level).map_err(|e| CodecError::Corrupt {
                codec,
                message: format!("creating a compression context: {e}"),
            })?),
            _ => None,
        };
        Ok(Compressor { codec, level, zstd })
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The level in use (0 for codecs without levels).
    pub fn level(&self) -> i32 {
        self.level
    }

    /// Compresses `input`, appending to `out`.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        match self.codec {
            Codec::None => out.extend_from_slice(input),
            Codec::Snappy => {
                let start = out.len();
                out.resize(start + snap::raw::max_compress_len(input.len()), 0);
                // Compressing into a buffer of max_compress_len cannot fail.
                let n = snap::raw::Encoder::new()
                    .compress(input, &mut out[start..])
                    .unwrap_or(0);
                out.truncate(start + n);
            }
            Codec::Lz4 => {
                let start = out.len();
                out.resize(
                    start + lz4_flex::block::get_maximum_output_size(input.len()),
                    0,
                );
                let n = lz4_flex::block::compress_into(input, &mut out[start..]).unwrap_or(0);
                out.truncate(start + n);
            }
            Codec::Gzip => {
                let level = flate2::Compression::new(self.level.unsigned_abs());
                let mut enc = flate2::write::GzEncoder::new(out, level);
                enc.write_all(input)
                    .and_then(|()| enc.try_finish())
                    .expect("writing to a Vec cannot fail");
            }
            Codec::Zstd => {
                if let Some(enc) = &mut self.zstd {
                    zstd_frame(enc, input, out)
                        .expect("a reset zstd context compresses into a growing Vec");
                }
            }
        }
    }
}

/// One zstd frame of `input`, appended to `out`, with a context used before.
fn zstd_frame(
    enc: &mut ZstdEncoder<'static>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    enc.reinit()?;
    let mut src = InBuffer::around(input);
    // The output grows as zstd fills it rather than by the worst-case bound: frames
    // wait for their acknowledgement in the allocation made here.
    while src.pos() < input.len() {
        grow(out);
        let pos = out.len();
        let mut dst = OutBuffer::around_pos(out, pos);
        enc.run(&mut src, &mut dst)?;
    }
    loop {
        grow(out);
        let pos = out.len();
        let mut dst = OutBuffer::around_pos(out, pos);
        if enc.finish(&mut dst, true)? == 0 {
            return Ok(());
        }
    }
}

/// Leaves room to write into: `OutBuffer` writes only into a Vec's spare capacity.
fn grow(out: &mut Vec<u8>) {
    if out.capacity() - out.len() < 4096 {
        out.reserve(out.len().max(64 * 1024));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A reused context writes what a fresh one writes, payload after payload.
        #[test]
        fn a_kept_context_matches_a_fresh_one(
            payloads in proptest::collection::vec(proptest::collection::vec(0u8..8, 0..20_000), 1..5),
            level in 1i32..=6,
        ) {
            let mut kept = Compressor::new(Codec::Zstd, Some(level)).expect("valid level");
            for p in &payloads {
                let mut a = vec![7u8];
                kept.compress(p, &mut a);
                let mut b = vec![7u8];
                let mut fresh = zstd::stream::write::Encoder::new(&mut b, level).expect("valid level");
                fresh.write_all(p).expect("to a Vec");
                fresh.finish().expect("to a Vec");
                prop_assert_eq!(&a, &b);
                prop_assert_eq!(Codec::Zstd.decompress(&a[1..], p.len()), Ok(p.clone()));
            }
        }
    }

    #[test]
    fn every_level_round_trips() {
        let data: Vec<u8> = (0..50_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for codec in [Codec::Gzip, Codec::Zstd] {
            for level in codec.levels().expect("has levels") {
                let mut c = Compressor::new(codec, Some(level)).expect("in range");
                assert_eq!(c.level(), level);
                let mut out = Vec::new();
                c.compress(&data, &mut out);
                assert_eq!(
                    codec.decompress(&out, data.len()),
                    Ok(data.clone()),
                    "{codec} {level}"
                );
            }
        }
    }

    #[test]
    fn levels_are_checked() {
        assert_eq!(Codec::Zstd.check_level(None), Ok(3));
        assert_eq!(Codec::Gzip.check_level(None), Ok(1));
        assert_eq!(Codec::Lz4.check_level(None), Ok(0));
        assert_eq!(
            Codec::Lz4.check_level(Some(3)),
            Err(CodecError::NoLevels(Codec::Lz4))
        );
        let err = Codec::Zstd
            .check_level(Some(20))
            .expect_err("20 is out of range");
        assert_eq!(
            err.to_string(),
            "compression level 20 is out of range for zstd (1 to 19)"
        );
        assert!(Codec::Gzip.check_level(Some(0)).is_err());
        assert!(Compressor::new(Codec::Snappy, Some(1)).is_err());
    }
}
