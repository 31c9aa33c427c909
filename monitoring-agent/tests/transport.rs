//! Buffer → batcher → transport against a real WebSocket collector that answers as
//! each test chooses: acknowledgement order, retry-later, rejection, dropped
//! connections, batching and compression.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::time::{Duration, Instant};

use common::pipeline::{Options, start};
use common::{TestCollector, eventually};
use monitoring_agent::pipeline::{Source, SourceProgress};
use monitoring_agent::telemetry::DropReason;
use monitoring_agent::transport::DrainReport;
use monitoring_common::protocol::Codec;

#[tokio::test]
async fn out_of_order_acks_apply_nothing_until_the_gap_is_filled() {
    let mut collector = TestCollector::start().await;
    let p = start(collector.url(), Options::default());
    let progress = SourceProgress::new(0);
    for offset in [10, 20, 30] {
        p.send_tracked(&progress, offset).await;
    }
    let f1 = collector.next_frame(5).await;
    let f2 = collector.next_frame(5).await;
    let f3 = collector.next_frame(5).await;
    assert_eq!((f1.seq(), f2.seq(), f3.seq()), (1, 2, 3));
    f3.ok();
    f2.ok();
    eventually(5, "two acks counted", || {
        p.telemetry.transport.acked_batches.get() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        progress.acked(),
        0,
        "batch 1 is not acknowledged: nothing may move"
    );
    f1.ok();
    eventually(5, "checkpoint at 30", || progress.acked() == 30).await;
    assert_eq!(p.finish().await, DrainReport::default());
}

#[tokio::test]
async fn marks_apply_only_after_ack_and_in_sequence_order() {
    let mut collector = TestCollector::start().await;
    let p = start(collector.url(), Options::default());
    let progress = SourceProgress::new(0);
    for offset in [100, 200] {
        p.send_tracked(&progress, offset).await;
    }
    let f1 = collector.next_frame(5).await;
    let f2 = collector.next_frame(5).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(progress.acked(), 0, "sent is not acknowledged");
    f1.ok();
    eventually(5, "checkpoint at 100", || progress.acked() == 100).await;
    f2.ok();
    eventually(5, "checkpoint at 200", || progress.acked() == 200).await;
    p.finish().await;
}

#[tokio::test]
async fn retry_later_resends_the_same_batch_after_the_delay() {
    let mut collector = TestCollector::start().await;
    let p = start(collector.url(), Options::default());
    let progress = SourceProgress::new(0);
    p.send_tracked(&progress, 42).await;
    let first = collector.next_frame(5).await;
    let asked = Instant::now();
    first.retry_later(300);
    let again = collector.next_frame(5).await;
    assert!(
        asked.elapsed() >= Duration::from_millis(290),
        "resent after {:?}",
        asked.elapsed()
    );
    assert_eq!(again.id(), first.id());
    assert_eq!(again.frame.events, first.frame.events);
    assert_eq!(progress.acked(), 0);
    again.ok();
    eventually(5, "checkpoint at 42", || progress.acked() == 42).await;
    // Sent counts resends; acknowledged counts each event once.
    let s = &p.telemetry.sources;
    assert_eq!(s.sent.get(Source::File), 2);
    assert_eq!(s.acked.get(Source::File), 1);
    assert_eq!(s.read.get(Source::File), 1);
    let resent = p
        .telemetry
        .transport
        .resent_batches
        .get_or_create(&[("reason", "retry_later")])
        .get();
    assert_eq!(resent, 1);
    p.finish().await;
}

#[tokio::test]
async fn a_dropped_connection_reconnects_and_resends_unacked_batches_with_their_sequence() {
    let mut collector = TestCollector::start().await;
    let p = start(collector.url(), Options::default());
    let progress = SourceProgress::new(0);
    for offset in [1, 2, 3] {
        p.send_tracked(&progress, offset).await;
    }
    let first = collector.next_connection(5).await;
    let f1 = collector.next_frame(5).await;
    let f2 = collector.next_frame(5).await;
    let f3 = collector.next_frame(5).await;
    f1.ok();
    eventually(5, "checkpoint at 1", || progress.acked() == 1).await;
    f1.disconnect();
    let second = collector.next_connection(10).await;
    assert_ne!(first.conn, second.conn);
    let r2 = collector.next_frame(5).await;
    let r3 = collector.next_frame(5).await;
    assert_eq!(r2.conn, second.conn);
    assert_eq!(
        (r2.id(), r3.id()),
        (f2.id(), f3.id()),
        "same stream and sequence after reconnect"
    );
    assert_eq!(r2.frame.events, f2.frame.events);
    r3.ok();
    r2.ok();
    eventually(5, "checkpoint at 3", || progress.acked() == 3).await;
    let t = &p.telemetry.transport;
    assert_eq!(
        t.resent_batches
            .get_or_create(&[("reason", "reconnect")])
            .get(),
        2
    );
    assert_eq!(t.disconnects.get(), 1);
    assert!(p.status.connected());
    // New batches continue the sequence on the new connection.
    p.send_tracked(&progress, 4).await;
    let f4 = collector.next_frame(5).await;
    assert_eq!(f4.seq(), 4);
    f4.ok();
    p.finish().await;
}

#[tokio::test]
async fn a_rejected_batch_is_counted_and_does_not_block() {
    let mut collector = TestCollector::start().await;
    let p = start(
        collector.url(),
        Options {
            max_batch_events: 2,
            ..Options::default()
        },
    );
    let progress = SourceProgress::new(0);
    for offset in [1, 2, 3, 4] {
        p.send_tracked(&progress, offset).await;
    }
    let poison = collector.next_frame(5).await;
    let good = collector.next_frame(5).await;
    poison.reject("malformed event 1");
    good.ok();
    eventually(5, "checkpoint past both batches", || progress.acked() == 4).await;
    assert_eq!(p.telemetry.dropped.get(DropReason::Rejected), 2);
    assert_eq!(
        p.telemetry
            .dropped
            .get_source(DropReason::Rejected, Source::File),
        2
    );
    assert_eq!(p.telemetry.transport.rejected_batches.get(), 1);
    // Per source: read == acked + dropped, and both batches were sent once.
    let s = &p.telemetry.sources;
    assert_eq!(s.read.get(Source::File), 4);
    assert_eq!(s.sent.get(Source::File), 4);
    assert_eq!(s.acked.get(Source::File), 2);
    // It is not resent.
    collector.expect_no_frame(300).await;
    p.finish().await;
}

#[tokio::test]
async fn batches_flush_by_size() {
    let mut collector = TestCollector::start().await;
    let p = start(
        collector.url(),
        Options {
            max_batch_events: 5,
            ..Options::default()
        },
    );
    for i in 0..12 {
        p.send_log(&format!("m{i}")).await;
    }
    let a = collector.next_frame(5).await;
    let b = collector.next_frame(5).await;
    assert_eq!((a.frame.events.len(), b.frame.events.len()), (5, 5));
    // The last two wait for the (long) interval; nothing else comes meanwhile.
    collector.expect_no_frame(300).await;
    a.ok();
    b.ok();
    let finishing = tokio::spawn(p.finish());
    let c = collector.next_frame(5).await;
    assert_eq!(c.messages(), vec!["m10", "m11"]);
    c.ok();
    assert_eq!(finishing.await.unwrap(), DrainReport::default());
}

#[tokio::test]
async fn batches_flush_by_bytes() {
    let mut collector = TestCollector::start().await;
    let p = start(
        collector.url(),
        Options {
            max_batch_events: 1000,
            max_batch_bytes: 2048,
            ..Options::default()
        },
    );
    let line = "x".repeat(600);
    for _ in 0..7 {
        p.send_log(&line).await;
    }
    // 600-byte messages: three fit under 2 KiB, the fourth starts the next batch.
    let a = collector.next_frame(5).await;
    let b = collector.next_frame(5).await;
    assert_eq!((a.frame.events.len(), b.frame.events.len()), (3, 3));
    assert!(a.frame.header.uncompressed_len <= 2048);
    a.ok();
    b.ok();
    let finishing = tokio::spawn(p.finish());
    let c = collector.next_frame(5).await;
    assert_eq!(c.frame.events.len(), 1);
    c.ok();
    assert_eq!(finishing.await.unwrap(), DrainReport::default());
}

#[tokio::test]
async fn with_nothing_in_flight_a_line_goes_at_once_then_batches_flush_by_time() {
    let mut collector = TestCollector::start().await;
    let p = start(
        collector.url(),
        Options {
            max_batch_events: 1000,
            flush_interval: Duration::from_millis(300),
            ..Options::default()
        },
    );
    collector.next_connection(5).await;
    // Delivery is idle: the first line does not wait for the interval.
    let started = Instant::now();
    p.send_log("first").await;
    let first = collector.next_frame(5).await;
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "an idle agent held a line for {:?}",
        started.elapsed()
    );
    assert_eq!(first.messages(), vec!["first"]);
    // It stays unacknowledged: the next lines fill a batch until the interval.
    let started = Instant::now();
    for i in 0..3 {
        p.send_log(&format!("t{i}")).await;
    }
    let f = collector.next_frame(5).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(290),
        "flushed after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "flushed after {waited:?}");
    assert_eq!(f.messages(), vec!["t0", "t1", "t2"]);
    first.ok();
    f.ok();
    p.finish().await;
}

#[tokio::test]
async fn the_codec_in_the_header_matches_the_configuration() {
    for codec in [
        Codec::None,
        Codec::Gzip,
        Codec::Zstd,
        Codec::Snappy,
        Codec::Lz4,
    ] {
        let mut collector = TestCollector::start().await;
        let p = start(
            collector.url(),
            Options {
                codec,
                ..Options::default()
            },
        );
        p.send_log("compressed").await;
        let f = collector.next_frame(5).await;
        assert_eq!(f.frame.header.codec, codec);
        assert_eq!(f.messages(), vec!["compressed"]);
        f.ok();
        p.finish().await;
    }
}

#[tokio::test]
async fn the_token_and_agent_id_travel_in_headers_not_the_url() {
    let mut collector = TestCollector::start().await;
    let p = start(
        collector.url(),
        Options {
            token: Some("tok-123".into()),
            ..Options::default()
        },
    );
    let c = collector.next_connection(5).await;
    assert_eq!(c.authorization.as_deref(), Some("Bearer tok-123"));
    assert_eq!(c.agent_id.as_deref(), Some("test-agent"));
    assert_eq!(c.uri, "/ingest");
    p.finish().await;
}

#[tokio::test]
async fn the_window_bounds_batches_in_flight() {
    let mut collector = TestCollector::start().await;
    let p = start(
        collector.url(),
        Options {
            max_in_flight: 2,
            ..Options::default()
        },
    );
    for i in 0..4 {
        p.send_log(&format!("w{i}")).await;
    }
    let a = collector.next_frame(5).await;
    let _b = collector.next_frame(5).await;
    collector.expect_no_frame(300).await;
    assert_eq!(p.status.in_flight(), 2);
    a.ok();
    let c = collector.next_frame(5).await;
    assert_eq!(c.seq(), 3);
    p.drain.cancel();
    p.buffer.close();
}

#[tokio::test]
async fn shutdown_gives_up_at_the_deadline_and_reports_what_is_unacknowledged() {
    let mut collector = TestCollector::start().await;
    let p = start(
        collector.url(),
        Options {
            shutdown_timeout: Duration::from_millis(500),
            ..Options::default()
        },
    );
    let progress = SourceProgress::new(0);
    p.send_tracked(&progress, 5).await;
    p.send_tracked(&progress, 6).await;
    let _never_acked = collector.next_frame(5).await;
    let started = Instant::now();
    let report = p.finish().await;
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(report.unacked_batches, 2);
    assert_eq!(report.unacked_events, 2);
    assert_eq!(
        progress.acked(),
        0,
        "nothing acknowledged, nothing checkpointed"
    );
}

#[tokio::test]
async fn a_collector_that_is_down_at_start_is_reached_when_it_comes_up() {
    // Reserve a port, then start nothing on it for a while.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = start(format!("ws://127.0.0.1:{port}/ingest"), Options::default());
    p.send_log("waiting").await;
    eventually(5, "failed attempts", || {
        p.telemetry
            .transport
            .connects
            .get_or_create(&[("result", "error")])
            .get()
            >= 2
    })
    .await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let (stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
    use futures_util::StreamExt;
    let msg = ws.next().await.unwrap().unwrap();
    let frame = monitoring_common::protocol::frame::decode_frame(
        &msg.into_data(),
        &monitoring_common::protocol::Limits::default(),
    )
    .unwrap();
    assert_eq!(frame.header.sequence, 1);
    p.drain.cancel();
    p.buffer.close();
}
