//! Fuzzes the collector's frame decoder: any bytes an agent can send.
//!
//! Properties: decoding never panics or allocates past the limits, and a frame that
//! decodes re-encodes (with the same codec) to one that decodes to the same events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitoring_common::protocol::frame::{decode_frame, encode_frame};
use monitoring_common::protocol::payload::encode_events;
use monitoring_common::protocol::Limits;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_frame_bytes: 1 << 20,
        max_uncompressed_bytes: 4 << 20,
        max_events_per_batch: 10_000,
    };
    if let Ok(frame) = decode_frame(data, &limits) {
        let payload = encode_events(&frame.events);
        let h = frame.header;
        let again = encode_frame(h.codec, h.stream_id, h.sequence, h.event_count, &payload);
        let back = decode_frame(&again, &Limits::default()).expect("re-encoded frame decodes");
        // NaN floats compare unequal; compare the encodings instead.
        assert_eq!(encode_events(&back.events), payload);
    }
});
