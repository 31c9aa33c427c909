//! Payload templates shared by every simulated agent.
//!
//! A thousand agents must not each encode and compress their own batches: that would
//! make the load tool, not the collector, the bottleneck on a 2-core machine. The
//! payloads (loghub lines as log events) are encoded and compressed once; an agent
//! builds each frame by writing a fresh 32-byte header (its stream id and sequence)
//! in front of a shared compressed payload, exactly as
//! [`encode_frame`](monitoring_common::protocol::frame::encode_frame) lays it out.

use std::sync::Arc;

use monitoring_common::Event;
use monitoring_common::event::now_ns;
use monitoring_common::protocol::frame::HEADER_LEN;
use monitoring_common::protocol::payload::encode_event;
use monitoring_common::protocol::{Codec, FrameHeader, PROTOCOL_VERSION};

/// How many different payloads the agents cycle through, so that the store does not
/// see the same lines over and over (its text index would then flatter it).
const VARIANTS: usize = 16;

/// One encoded, compressed batch payload.
#[derive(Debug)]
pub struct Template {
    compressed: Vec<u8>,
    event_count: u32,
    uncompressed_len: u32,
}

/// The payloads of a run, all of one codec and one batch size.
#[derive(Debug, Clone)]
pub struct Templates {
    variants: Arc<[Template]>,
}

impl Templates {
    /// `VARIANTS` payloads of `events_per_batch` log events each, taken in turn from
    /// `lines` (the loghub corpus; a stand-in line when it is empty), compressed with
    /// `codec`.
    pub fn build(lines: &[Event], events_per_batch: u32, codec: Codec) -> Templates {
        let fallback = [Event::log(
            now_ns(),
            "/var/log/swarm.log",
            "swarm: simulated agent heartbeat, loghub corpus not found",
        )];
        let lines = if lines.is_empty() { &fallback } else { lines };
        let now = now_ns();
        let mut next = 0usize;
        let variants = (0..VARIANTS)
            .map(|_| {
                let mut payload = Vec::new();
                for i in 0..events_per_batch {
                    let mut event = lines[next % lines.len()].clone();
                    next += 1;
                    // Recent timestamps, a millisecond apart: the store partitions and
                    // retains by time, and a real agent ships what it just read.
                    event.timestamp_ns = now + i64::from(i) * 1_000_000;
                    encode_event(&event, &mut payload);
                }
                let mut compressed = Vec::new();
                codec.compress(&payload, &mut compressed);
                Template {
                    compressed,
                    event_count: events_per_batch,
                    uncompressed_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
                }
            })
            .collect();
        Templates { variants }
    }

    /// The frame of batch `sequence` of stream `stream_id`, with `codec` (the one
    /// the templates were compressed with).
    pub fn frame(&self, codec: Codec, stream_id: u64, sequence: u64) -> Frame {
        let variant = usize::try_from(sequence % VARIANTS as u64).unwrap_or(0);
        let t = &self.variants[variant];
        let header = FrameHeader {
            version: PROTOCOL_VERSION,
            codec,
            stream_id,
            sequence,
            event_count: t.event_count,
            uncompressed_len: t.uncompressed_len,
        };
        let mut bytes = Vec::with_capacity(HEADER_LEN + t.compressed.len());
        header.write(&mut bytes);
        bytes.extend_from_slice(&t.compressed);
        Frame {
            bytes,
            events: t.event_count,
        }
    }

    /// Uncompressed and compressed bytes of one batch (of the first variant), for
    /// the report.
    pub fn sizes(&self) -> (usize, usize) {
        self.variants.first().map_or((0, 0), |t| {
            (t.uncompressed_len as usize, HEADER_LEN + t.compressed.len())
        })
    }
}

/// One frame ready to send.
#[derive(Debug)]
pub struct Frame {
    /// Header and compressed payload: one binary WebSocket message.
    pub bytes: Vec<u8>,
    /// Events it holds.
    pub events: u32,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use monitoring_common::protocol::Limits;
    use monitoring_common::protocol::frame::decode_frame;

    #[test]
    fn frames_decode_as_the_collector_decodes_them() {
        let lines = vec![Event::log(1, "a", "one"), Event::log(2, "b", "two")];
        for codec in Codec::ALL {
            let t = Templates::build(&lines, 5, codec);
            let f = t.frame(codec, 42, 7);
            let frame = decode_frame(&f.bytes, &Limits::default()).unwrap();
            assert_eq!(frame.header.stream_id, 42);
            assert_eq!(frame.header.sequence, 7);
            assert_eq!(frame.events.len(), 5);
            assert_eq!(f.events, 5);
        }
    }
}
