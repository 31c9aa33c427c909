//! Unit tests of the batcher: how batches are cut, their marks and their per-source
//! counts, and the frames they become.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use monitoring_common::Event;
use monitoring_common::protocol::payload::encode_events;
use monitoring_common::protocol::{Limits, frame::decode_frame};

use super::*;
use crate::buffer::WhenFull;
use crate::pipeline::{Body, Source};
use crate::telemetry::Telemetry;

fn config(events: usize, bytes: usize, interval_ms: u64) -> BatcherConfig {
    BatcherConfig {
        max_batch_events: events,
        max_batch_bytes: bytes,
        flush_interval: Duration::from_millis(interval_ms),
        codec: Codec::Lz4,
        compression_level: None,
        stream_id: 42,
        first_sequence: 1,
    }
}

fn start(
    config: BatcherConfig,
) -> (
    RingBuffer,
    mpsc::Receiver<Batch>,
    tokio::task::JoinHandle<()>,
) {
    start_with(config, Arc::new(DeliveryIdle::default()))
}

fn start_with(
    config: BatcherConfig,
    idle: Arc<DeliveryIdle>,
) -> (
    RingBuffer,
    mpsc::Receiver<Batch>,
    tokio::task::JoinHandle<()>,
) {
    let t = Telemetry::new();
    let buffer = RingBuffer::new(10_000, WhenFull::Block, t.buffer.clone());
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(run(buffer.clone(), config, tx, t.batcher.clone(), idle));
    (buffer, rx, task)
}

fn messages(batch: &Batch) -> Vec<String> {
    let frame = decode_frame(&batch.frame, &Limits::default()).unwrap();
    assert_eq!(frame.header.sequence, batch.sequence);
    assert_eq!(frame.header.event_count, batch.event_count);
    frame
        .events
        .into_iter()
        .map(|e| match e.kind {
            monitoring_common::EventKind::Log(l) => l.message,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn log(i: usize) -> Envelope {
    Envelope::untracked(Source::File, Event::log(i as i64, "t", format!("line {i}")))
}

#[tokio::test]
async fn flushes_by_event_count_and_on_close() {
    let (buffer, mut rx, task) = start(config(3, 1 << 20, 60_000));
    for i in 0..7 {
        buffer.send(log(i)).await.unwrap();
    }
    buffer.close();
    task.await.unwrap();
    let mut batches = Vec::new();
    while let Some(b) = rx.recv().await {
        batches.push(b);
    }
    let counts: Vec<u32> = batches.iter().map(|b| b.event_count).collect();
    assert_eq!(counts, vec![3, 3, 1]);
    let seqs: Vec<u64> = batches.iter().map(|b| b.sequence).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    let all: Vec<String> = batches.iter().flat_map(messages).collect();
    let expected: Vec<String> = (0..7).map(|i| format!("line {i}")).collect();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn flushes_by_bytes_without_crossing_the_limit() {
    let one = {
        let mut v = Vec::new();
        log(0).encode_into(&mut v);
        v.len()
    };
    // Room for two and a half events: every batch holds exactly two.
    let limit = one * 5 / 2;
    let (buffer, mut rx, task) = start(config(1000, limit, 60_000));
    for i in 0..6 {
        buffer.send(log(i)).await.unwrap();
    }
    buffer.close();
    task.await.unwrap();
    let mut all = Vec::new();
    while let Some(b) = rx.recv().await {
        assert!(
            b.uncompressed_bytes <= limit,
            "{} > {limit}",
            b.uncompressed_bytes
        );
        assert_eq!(b.event_count, 2);
        all.extend(messages(&b));
    }
    assert_eq!(all.len(), 6);
}

#[tokio::test]
async fn an_event_over_the_byte_limit_travels_alone() {
    let (buffer, mut rx, task) = start(config(1000, 16, 60_000));
    buffer.send(log(1)).await.unwrap();
    buffer
        .send(Envelope::untracked(
            Source::File,
            Event::log(2, "t", "x".repeat(100)),
        ))
        .await
        .unwrap();
    buffer.close();
    task.await.unwrap();
    let a = rx.recv().await.unwrap();
    let b = rx.recv().await.unwrap();
    assert_eq!((a.event_count, b.event_count), (1, 1));
    assert!(b.uncompressed_bytes > 100);
    assert!(rx.recv().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn flush_interval_starts_at_the_first_event() {
    let (buffer, mut rx, _task) = start(config(1000, 1 << 20, 1000));
    tokio::time::sleep(Duration::from_millis(5_000)).await;
    assert!(rx.try_recv().is_err(), "an empty batch must not be flushed");
    let t0 = Instant::now();
    buffer.send(log(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    buffer.send(log(2)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(590)).await;
    assert!(rx.try_recv().is_err(), "flushed before the interval");
    let batch = rx.recv().await.unwrap();
    assert_eq!(Instant::now() - t0, Duration::from_millis(1000));
    assert_eq!(batch.event_count, 2);
    // The next batch's timer starts at its own first event.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let t1 = Instant::now();
    buffer.send(log(3)).await.unwrap();
    let batch = rx.recv().await.unwrap();
    assert_eq!(Instant::now() - t1, Duration::from_millis(1000));
    assert_eq!(batch.sequence, 2);
}

#[tokio::test]
async fn marks_keep_the_largest_position_per_source() {
    let (buffer, mut rx, task) = start(config(1000, 1 << 20, 60_000));
    let a = SourceProgress::new(0);
    let b = SourceProgress::new(0);
    for (p, pos) in [(&a, 10), (&a, 20), (&b, 5), (&a, 30), (&b, 7)] {
        buffer
            .send(Envelope {
                source: Source::File,
                // As the file source sends them: already encoded.
                body: Body::Encoded(encode_events(&[Event::log(0, "f", "l")])),
                ack: Some((p.clone(), pos)),
            })
            .await
            .unwrap();
    }
    buffer.send(log(9)).await.unwrap();
    buffer.close();
    task.await.unwrap();
    let batch = rx.recv().await.unwrap();
    assert_eq!(batch.event_count, 6);
    assert_eq!(batch.marks.len(), 2);
    assert!(Arc::ptr_eq(&batch.marks[0].0, &a) && batch.marks[0].1 == 30);
    assert!(Arc::ptr_eq(&batch.marks[1].0, &b) && batch.marks[1].1 == 7);
    // Nothing moves until the transport says so.
    assert_eq!((a.acked(), b.acked()), (0, 0));
    batch.apply_marks();
    assert_eq!((a.acked(), b.acked()), (30, 7));
}

#[tokio::test]
async fn frames_carry_the_configured_codec_and_stream() {
    for codec in Codec::ALL {
        let (buffer, mut rx, task) = start(BatcherConfig {
            codec,
            ..config(10, 1 << 20, 60_000)
        });
        buffer.send(log(1)).await.unwrap();
        buffer.close();
        task.await.unwrap();
        let batch = rx.recv().await.unwrap();
        let frame = decode_frame(&batch.frame, &Limits::default()).unwrap();
        assert_eq!(frame.header.codec, codec);
        assert_eq!(frame.header.stream_id, 42);
    }
}

#[tokio::test]
async fn a_configured_level_is_used_for_every_batch() {
    // Lines with enough repetition at a distance that zstd's levels differ in size.
    let line = |i: usize| {
        let text = format!(
            "{i:06} user{} GET /api/v1/items/{} 200 {}",
            i % 37,
            i * 7919 % 1000,
            i % 13
        );
        Envelope::untracked(Source::File, Event::log(i as i64, "t", text))
    };
    let mut sizes = Vec::new();
    for level in [Some(1), Some(19)] {
        let (buffer, mut rx, task) = start(BatcherConfig {
            codec: Codec::Zstd,
            compression_level: level,
            ..config(500, 1 << 20, 60_000)
        });
        for i in 0..1500 {
            buffer.send(line(i)).await.unwrap();
        }
        buffer.close();
        task.await.unwrap();
        let mut total = 0;
        let mut count = 0;
        while let Some(b) = rx.recv().await {
            let frame = decode_frame(&b.frame, &Limits::default()).unwrap();
            assert_eq!(frame.events.len(), 500);
            total += b.frame.len();
            count += 1;
        }
        assert_eq!(count, 3);
        sizes.push(total);
    }
    assert!(
        sizes[1] < sizes[0],
        "level 19 not smaller than 1: {sizes:?}"
    );
}

#[tokio::test]
async fn each_batch_counts_its_events_per_source() {
    let one = {
        let mut v = Vec::new();
        log(0).encode_into(&mut v);
        v.len()
    };
    // Room for two and a half events: every batch holds two, the third event
    // crosses the limit and starts the next batch.
    let (buffer, mut rx, task) = start(config(1000, one * 5 / 2, 60_000));
    let sources = [
        Source::File,
        Source::HostMetrics,
        Source::File,
        Source::HostMetrics,
        Source::HostMetrics,
        Source::File,
        Source::File,
    ];
    for (i, &source) in sources.iter().enumerate() {
        let e = Event::log(i as i64, "t", format!("line {i}"));
        buffer.send(Envelope::untracked(source, e)).await.unwrap();
    }
    buffer.close();
    task.await.unwrap();
    let mut got = Vec::new();
    while let Some(b) = rx.recv().await {
        assert_eq!(b.sources.total(), u64::from(b.event_count));
        got.push((
            b.sources.get(Source::File),
            b.sources.get(Source::HostMetrics),
        ));
    }
    // (file, host) per batch: F H | F H | H F | F.
    assert_eq!(got, vec![(1, 1), (1, 1), (1, 1), (1, 0)]);
}

#[tokio::test]
async fn an_idle_transport_gets_a_part_filled_batch_at_once_and_then_batches_fill() {
    let idle = Arc::new(DeliveryIdle::default());
    idle.set(true);
    // An interval of a minute: only idleness can close these batches.
    let (buffer, mut rx, task) = start_with(config(1000, 1 << 20, 60_000), idle.clone());
    buffer.send(log(0)).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("sent at once, not after the interval")
        .unwrap();
    assert_eq!(messages(&first), ["line 0"]);
    assert!(
        !idle.is_idle(),
        "the batcher clears the flag when it hands a batch over"
    );

    // Nothing is acknowledged yet: these wait in the open batch.
    for i in 1..4 {
        buffer.send(log(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.try_recv().is_err(), "no batch while one is in flight");
    // The acknowledgement makes delivery idle again: all three go together.
    idle.set(true);
    let second = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("sent when idle again")
        .unwrap();
    assert_eq!(messages(&second), ["line 1", "line 2", "line 3"]);
    buffer.close();
    task.await.unwrap();
}
