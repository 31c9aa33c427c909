//! Micro-benchmarks of the wire protocol on loghub data: payload encoding, each
//! codec's compression and decompression, and whole-frame decoding.

#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use monitoring_benches::loghub_events;
use monitoring_common::protocol::frame::{decode_frame, encode_frame};
use monitoring_common::protocol::payload::encode_events;
use monitoring_common::protocol::{Codec, Limits};

fn protocol(c: &mut Criterion) {
    let events: Vec<_> = loghub_events().into_iter().take(1000).collect();
    assert!(!events.is_empty(), "loghub data missing");
    let payload = encode_events(&events);

    let mut g = c.benchmark_group("payload");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("encode_1000_loghub_lines", |b| {
        b.iter(|| encode_events(&events))
    });
    g.finish();

    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    for codec in Codec::ALL {
        let mut packed = Vec::new();
        codec.compress(&payload, &mut packed);
        println!(
            "{codec}: {} -> {} bytes ({:.1}% smaller)",
            payload.len(),
            packed.len(),
            100.0 * (1.0 - packed.len() as f64 / payload.len() as f64)
        );
        g.bench_function(format!("compress_{codec}"), |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(payload.len());
                codec.compress(&payload, &mut out);
                out
            })
        });
        g.bench_function(format!("decompress_{codec}"), |b| {
            b.iter(|| codec.decompress(&packed, payload.len()).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(events.len() as u64));
    let frame = encode_frame(Codec::Lz4, 1, 1, events.len() as u32, &payload);
    g.bench_function("decode_lz4_1000_events", |b| {
        b.iter(|| decode_frame(&frame, &Limits::default()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, protocol);
criterion_main!(benches);
