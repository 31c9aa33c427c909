//! Line splitting, the file source's hot path, over every loghub sample fed in the
//! reader's 64 KiB chunks: `LineSplitter` alone (bytes to line slices), and the
//! tail's whole chunk step (`Tail::split_into`: lines to the envelopes handed to the
//! pipeline, with the default rules: no multiline, no filter; freeing them, which
//! the batcher does, included). Criterion prints the throughput in bytes; the line
//! count of the corpus is printed once, for lines per second.

#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use monitoring_agent::collectors::logs::file::bench_support::{ChunkSplitter, Splitter};

/// The reader's chunk size (`server::CHUNK_BYTES`).
const CHUNK: usize = 64 * 1024;
/// The default `max_line_bytes`.
const MAX_LINE: usize = 102_400;

fn lines(c: &mut Criterion) {
    let corpus: Vec<u8> = support::samples()
        .into_iter()
        .flat_map(|s| s.bytes)
        .collect();
    let mut count = 0u64;
    Splitter::new(MAX_LINE).feed(&corpus, |_, _| count += 1);
    println!(
        "corpus: {} bytes, {count} lines, {} chunks of 64 KiB",
        corpus.len(),
        corpus.len().div_ceil(CHUNK)
    );

    let mut g = c.benchmark_group("lines");
    g.throughput(Throughput::Bytes(corpus.len() as u64));
    g.bench_function("line_splitter", |b| {
        b.iter(|| {
            let mut s = Splitter::new(MAX_LINE);
            let mut n = 0u64;
            for chunk in corpus.chunks(CHUNK) {
                s.feed(chunk, |text, end| n += text.len() as u64 + end);
            }
            n
        })
    });
    // A temp file only gives the tail an identity; the chunks are fed from memory.
    let file = tempfile::NamedTempFile::new().unwrap();
    g.bench_function("tail_split_into_envelopes", |b| {
        let mut batch = Vec::with_capacity(1_024);
        b.iter(|| {
            let mut tail = ChunkSplitter::open(file.path(), MAX_LINE).unwrap();
            let mut n = 0;
            for chunk in corpus.chunks(CHUNK) {
                tail.split(chunk, &mut batch);
                n += batch.len();
                // The pipeline takes each chunk's envelopes and the batcher frees
                // them once encoded; that free is counted here, as part of what a
                // line costs the agent.
                batch.clear();
            }
            assert_eq!(n as u64, count);
            n
        })
    });
    g.finish();
}

criterion_group!(benches, lines);
criterion_main!(benches);
