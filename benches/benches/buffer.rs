//! The agent's ring buffer (`buffer::RingBuffer`, the default `block` policy and
//! 10,000 slots): events per second from one and from four producers to one
//! consumer. Producers are OS threads handing over runs of envelopes in one
//! `block_on`, as the file source's reading thread does per chunk; the consumer is a
//! task taking up to 1,000 at a time with `recv_many`, as the batcher does. The
//! envelopes are the file source's: loghub lines with their `offset` field and an
//! acknowledgement mark. Building them and dropping them is outside the timing.

#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use monitoring_agent::buffer::{RingBuffer, WhenFull};
use monitoring_agent::pipeline::{Body, Envelope, Source, SourceProgress};
use monitoring_agent::telemetry::BufferMetrics;
use monitoring_common::protocol::payload::encode_event;

/// Envelopes a producer hands over per `block_on`: about one 64 KiB read of loghub
/// lines.
const RUN: usize = 512;
const CAPACITY: usize = 10_000;

fn envelopes() -> Vec<Envelope> {
    let mut out = Vec::new();
    for sample in support::samples() {
        let progress = SourceProgress::new(0);
        for (i, event) in support::agent_events(&sample).into_iter().enumerate() {
            // Encoded, as the file source hands them over.
            let mut encoded = Vec::new();
            encode_event(&event, &mut encoded);
            out.push(Envelope {
                body: Body::Encoded(encoded),
                source: Source::File,
                ack: Some((Arc::clone(&progress), i as u64 + 1)),
            });
        }
    }
    out
}

/// Moves every envelope of `per_producer` through a fresh buffer; returns the time
/// from the first send to the last receive.
fn pass(rt: &tokio::runtime::Runtime, per_producer: Vec<Vec<Envelope>>) -> Duration {
    let total: usize = per_producer.iter().map(Vec::len).sum();
    let buffer = RingBuffer::new(CAPACITY, WhenFull::Block, BufferMetrics::default());
    let consumer = {
        let buffer = buffer.clone();
        rt.spawn(async move {
            let mut out = Vec::with_capacity(total);
            while out.len() < total {
                buffer.recv_many(&mut out, 1_000).await.unwrap();
            }
            (Instant::now(), out)
        })
    };
    let start = Instant::now();
    let producers: Vec<_> = per_producer
        .into_iter()
        .map(|envelopes| {
            let buffer = buffer.clone();
            let handle = rt.handle().clone();
            std::thread::spawn(move || {
                let mut envelopes = envelopes.into_iter().peekable();
                while envelopes.peek().is_some() {
                    handle.block_on(async {
                        for e in envelopes.by_ref().take(RUN) {
                            buffer.send(e).await.unwrap();
                        }
                    });
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let (end, received) = rt.block_on(consumer).unwrap();
    assert_eq!(received.len(), total);
    let elapsed = end - start;
    drop(received);
    elapsed
}

fn ring_buffer(c: &mut Criterion) {
    // The agent's runtime: a worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let template = envelopes();
    let mut g = c.benchmark_group("ring_buffer");
    g.throughput(Throughput::Elements(template.len() as u64));
    for producers in [1usize, 4] {
        g.bench_function(format!("{producers}_producers_1_consumer"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Each producer its own share, as each source (the file
                    // reader, journald, host metrics) sends from its own thread.
                    let mut shares: Vec<Vec<Envelope>> = vec![Vec::new(); producers];
                    for (i, e) in template.iter().enumerate() {
                        shares[i % producers].push(e.clone());
                    }
                    total += pass(&rt, shares);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, ring_buffer);
criterion_main!(benches);
