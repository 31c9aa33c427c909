//! Micro-benchmarks of the wire protocol on loghub data: payload encoding, each
//! codec's compression and decompression over the whole corpus (zstd also at levels
//! 1, 6 and 9, each with a compressor kept as the agent keeps one; with its size
//! reduction per codec), and whole frames as the agent builds them and the collector
//! takes them apart, per codec, in batches of 1,000 events.

#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use monitoring_benches::loghub_events;
use monitoring_common::protocol::frame::{FrameHeader, decode_frame, encode_frame_with};
use monitoring_common::protocol::payload::{encode_event, encode_events};
use monitoring_common::protocol::{Codec, Compressor, Limits};

/// Every codec at its default level, then zstd at the other levels worth knowing.
const SETTINGS: [(Codec, Option<i32>); 8] = [
    (Codec::None, None),
    (Codec::Snappy, None),
    (Codec::Lz4, None),
    (Codec::Gzip, None),
    (Codec::Zstd, None),
    (Codec::Zstd, Some(1)),
    (Codec::Zstd, Some(6)),
    (Codec::Zstd, Some(9)),
];

/// A compressor as the agent keeps one, and its name in the tables.
fn compressor((codec, level): (Codec, Option<i32>)) -> (String, Compressor) {
    let name = match level {
        Some(l) => format!("{codec}-{l}"),
        None => codec.to_string(),
    };
    (name, Compressor::new(codec, level).unwrap())
}

/// The encoding of 1,000 Android lines (long lines), the figure BENCHMARKS.md has
/// recorded since the first protocol bench.
fn payload(c: &mut Criterion) {
    let events: Vec<_> = loghub_events().into_iter().take(1000).collect();
    assert!(!events.is_empty(), "loghub data missing");
    let mut g = c.benchmark_group("payload");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("encode_1000_loghub_lines", |b| {
        b.iter(|| encode_events(&events))
    });
    g.finish();
}

/// Every codec over the payloads of every loghub sample, cut in 1,000-event batches
/// as the agent cuts them; prints the size reduction per sample and over the corpus.
fn codecs(c: &mut Criterion) {
    let batches = support::corpus_batches();
    let payloads: Vec<(String, Vec<u8>)> = batches
        .iter()
        .map(|(name, events)| (name.clone(), encode_events(events)))
        .collect();
    let total: usize = payloads.iter().map(|p| p.1.len()).sum();
    let packed: Vec<Vec<Vec<u8>>> = SETTINGS
        .iter()
        .map(|&setting| {
            let (_, mut c) = compressor(setting);
            payloads
                .iter()
                .map(|(_, p)| {
                    let mut out = Vec::new();
                    c.compress(p, &mut out);
                    out
                })
                .collect()
        })
        .collect();
    report_sizes(&payloads, &packed);

    let mut g = c.benchmark_group("codec_corpus");
    g.throughput(Throughput::Bytes(total as u64));
    for (&setting, packed) in SETTINGS.iter().zip(&packed) {
        let (name, mut c) = compressor(setting);
        let codec = c.codec();
        g.bench_function(format!("compress_{name}"), |b| {
            let mut out = Vec::with_capacity(2 << 20);
            b.iter(|| {
                for (_, p) in &payloads {
                    out.clear();
                    c.compress(p, &mut out);
                }
                out.len()
            })
        });
        g.bench_function(format!("decompress_{name}"), |b| {
            b.iter(|| {
                let mut n = 0;
                for ((_, p), z) in payloads.iter().zip(packed) {
                    n += codec.decompress(z, p.len()).unwrap().len();
                }
                n
            })
        });
    }
    g.finish();
}

/// Prints, per codec, the reduction of each sample and of the whole corpus.
fn report_sizes(payloads: &[(String, Vec<u8>)], packed: &[Vec<Vec<u8>>]) {
    let mut names: Vec<&str> = payloads.iter().map(|p| p.0.as_str()).collect();
    names.dedup();
    print!("{:<14}{:>12}", "sample", "payload B");
    for &setting in &SETTINGS {
        print!("{:>9}", compressor(setting).0);
    }
    println!();
    let sum = |name: Option<&str>, sizes: &mut dyn Iterator<Item = (&String, usize)>| -> usize {
        sizes
            .filter(|(n, _)| name.is_none_or(|x| x == n.as_str()))
            .map(|(_, len)| len)
            .sum()
    };
    for name in names.into_iter().map(Some).chain([None]) {
        let raw = sum(name, &mut payloads.iter().map(|(n, p)| (n, p.len())));
        print!("{:<14}{raw:>12}", name.unwrap_or("ALL"));
        for per_codec in packed {
            let z = sum(
                name,
                &mut payloads
                    .iter()
                    .zip(per_codec)
                    .map(|((n, _), z)| (n, z.len())),
            );
            print!("{:>8.1}%", 100.0 * (1.0 - z as f64 / raw as f64));
        }
        println!();
    }
    for (&setting, per_codec) in SETTINGS.iter().zip(packed) {
        let codec = compressor(setting).0;
        let raw: usize = payloads.iter().map(|p| p.1.len()).sum();
        let z: usize = per_codec.iter().map(Vec::len).sum();
        println!(
            "corpus {codec}: {raw} -> {z} bytes ({:.1}% smaller, ratio {:.2})",
            100.0 * (1.0 - z as f64 / raw as f64),
            raw as f64 / z as f64
        );
    }
}

/// Whole frames of 1,000 events, per codec. Encode is the batcher's work: each event
/// encoded into the open payload as it is taken, then the header and the compressed
/// payload. Decode is the collector's: the header checked on receipt, then the frame
/// decompressed and decoded into events by a worker.
fn frames(c: &mut Criterion) {
    let batches = support::corpus_batches();
    let events: usize = batches.iter().map(|b| b.1.len()).sum();
    let limits = Limits::default();
    let mut g = c.benchmark_group("frame_corpus");
    g.throughput(Throughput::Elements(events as u64));
    for codec in Codec::ALL {
        let mut c = Compressor::new(codec, None).unwrap();
        g.bench_function(format!("encode_{codec}"), |b| {
            let mut payload = Vec::with_capacity(1 << 20);
            b.iter(|| {
                let mut bytes = 0;
                for (seq, (_, batch)) in batches.iter().enumerate() {
                    payload.clear();
                    for e in batch {
                        encode_event(e, &mut payload);
                    }
                    let frame =
                        encode_frame_with(&mut c, 1, seq as u64, batch.len() as u32, &payload);
                    bytes += frame.len();
                }
                bytes
            })
        });
        let frames: Vec<Vec<u8>> = batches
            .iter()
            .enumerate()
            .map(|(seq, (_, batch))| {
                encode_frame_with(
                    &mut c,
                    1,
                    seq as u64,
                    batch.len() as u32,
                    &encode_events(batch),
                )
            })
            .collect();
        g.bench_function(format!("decode_{codec}"), |b| {
            b.iter(|| {
                let mut n = 0;
                for frame in &frames {
                    let header = FrameHeader::parse(frame, &limits).unwrap();
                    let decoded = decode_frame(frame, &limits).unwrap();
                    n += decoded.events.len() + header.event_count as usize;
                }
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, payload, codecs, frames);
criterion_main!(benches);
