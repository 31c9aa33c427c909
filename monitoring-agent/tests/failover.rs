//! Buffer → batcher → transport against two real WebSocket collectors: the transport
//! moves to the next endpoint when a connection fails, resends its window there with
//! the same (stream, sequence), stays with the endpoint that works, and counts it all
//! per endpoint.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::time::{Duration, Instant};

use common::pipeline::{Options, Pipeline, start_many};
use common::{TestCollector, eventually};
use monitoring_agent::pipeline::SourceProgress;
use monitoring_agent::transport::DrainReport;

/// `monitoring_agent_collector_connected{endpoint}`.
fn connected(p: &Pipeline, url: &str) -> i64 {
    let e = &p.telemetry.transport.endpoints;
    e.connected.get_or_create(&[("endpoint", url.into())]).get()
}

/// `monitoring_agent_collector_connects_total{endpoint, result}`.
fn connects(p: &Pipeline, url: &str, result: &str) -> u64 {
    let e = &p.telemetry.transport.endpoints;
    e.connects
        .get_or_create(&[("endpoint", url.into()), ("result", result.into())])
        .get()
}

/// `monitoring_agent_collector_failures_total{endpoint, reason}`.
fn failures(p: &Pipeline, url: &str, reason: &str) -> u64 {
    let e = &p.telemetry.transport.endpoints;
    e.failures
        .get_or_create(&[("endpoint", url.into()), ("reason", reason.into())])
        .get()
}

/// A URL on a loopback port nothing listens on (bound, then released).
fn closed_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("ws://127.0.0.1:{port}/ingest")
}

#[tokio::test]
async fn a_lost_connection_fails_over_to_the_next_endpoint_and_resends_the_window() {
    let mut a = TestCollector::start().await;
    let mut b = TestCollector::start().await;
    let p = start_many(vec![a.url(), b.url()], Options::default());
    let progress = SourceProgress::new(0);
    for offset in [1, 2, 3] {
        p.send_tracked(&progress, offset).await;
    }
    a.next_connection(5).await;
    let f1 = a.next_frame(5).await;
    let f2 = a.next_frame(5).await;
    let f3 = a.next_frame(5).await;
    f1.ok();
    eventually(5, "checkpoint at 1", || progress.acked() == 1).await;
    assert_eq!(
        p.status.endpoint(),
        Some(a.url()),
        "the first endpoint first"
    );
    assert_eq!((connected(&p, &a.url()), connected(&p, &b.url())), (1, 0));

    // The first collector drops the connection: the second gets the window at once.
    let cut = Instant::now();
    f1.disconnect();
    b.next_connection(10).await;
    let r2 = b.next_frame(5).await;
    let r3 = b.next_frame(5).await;
    println!("failed over from a to b in {:?}", cut.elapsed());
    assert_eq!(
        (r2.id(), r3.id()),
        (f2.id(), f3.id()),
        "same stream and sequence on the other collector"
    );
    assert_eq!(r2.frame.events, f2.frame.events);
    r3.ok();
    r2.ok();
    eventually(5, "checkpoint at 3", || progress.acked() == 3).await;
    assert_eq!(p.status.endpoint(), Some(b.url()));
    assert_eq!((connected(&p, &a.url()), connected(&p, &b.url())), (0, 1));
    assert_eq!(failures(&p, &a.url(), "dropped"), 1);
    assert_eq!(connects(&p, &b.url(), "ok"), 1);

    // It stays with the collector that works, although the first one is up again.
    p.send_tracked(&progress, 4).await;
    let f4 = b.next_frame(5).await;
    assert_eq!(f4.seq(), 4);
    a.expect_no_frame(300).await;
    assert!(a.connections.try_recv().is_err(), "no move back to a");

    // Now the second one fails: the list wraps around to the first.
    f4.disconnect();
    let again = a.next_connection(10).await;
    assert_eq!(again.conn, 1, "a second connection to a");
    let r4 = a.next_frame(5).await;
    assert_eq!(r4.id(), f4.id());
    r4.ok();
    eventually(5, "checkpoint at 4", || progress.acked() == 4).await;
    assert_eq!(p.status.endpoint(), Some(a.url()));
    assert_eq!(connects(&p, &a.url(), "ok"), 2);
    assert_eq!(failures(&p, &b.url(), "dropped"), 1);
    // The aggregate series keep counting across endpoints.
    assert_eq!(p.telemetry.transport.disconnects.get(), 2);
    let text = p.telemetry.encode();
    let series = format!(
        "monitoring_agent_collector_connected{{endpoint=\"{}\"}} 1",
        a.url()
    );
    assert!(text.contains(&series), "{series} missing:\n{text}");
    assert_eq!(p.finish().await, DrainReport::default());
}

#[tokio::test]
async fn a_refused_endpoint_is_skipped_and_counted() {
    let dead = closed_port_url();
    let mut b = TestCollector::start().await;
    let p = start_many(vec![dead.clone(), b.url()], Options::default());
    p.send_log("past the dead one").await;
    b.next_connection(5).await;
    let f = b.next_frame(5).await;
    assert_eq!(f.messages(), ["past the dead one"]);
    f.ok();
    eventually(5, "acknowledged", || {
        p.telemetry.transport.acked_batches.get() == 1
    })
    .await;
    assert_eq!(connects(&p, &dead, "error"), 1, "tried once, first");
    assert_eq!(failures(&p, &dead, "connect"), 1);
    assert_eq!(connects(&p, &b.url(), "ok"), 1);
    assert_eq!((connected(&p, &dead), connected(&p, &b.url())), (0, 1));
    assert_eq!(p.status.endpoint(), Some(b.url()));
    assert_eq!(p.finish().await, DrainReport::default());
}

#[tokio::test]
async fn with_every_endpoint_down_attempts_alternate_and_back_off() {
    let (a, b) = (closed_port_url(), closed_port_url());
    let p = start_many(vec![a.clone(), b.clone()], Options::default());
    p.send_log("nowhere to go").await;
    eventually(10, "three failed rounds", || connects(&p, &b, "error") >= 3).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ea, eb) = (connects(&p, &a, "error"), connects(&p, &b, "error"));
    println!("failed attempts: a {ea}, b {eb}");
    // In order, one round after another: never more than one apart.
    assert!(ea.abs_diff(eb) <= 1, "a {ea} b {eb}");
    // A round is followed by a growing wait (ceilings 100, 200, 400 ms...): far
    // fewer attempts than a loop without backoff would make in these seconds.
    assert!(ea + eb < 60, "a {ea} b {eb}: no backoff between rounds?");
    assert!(!p.status.connected());
    assert_eq!(p.status.endpoint(), None);
    assert_eq!(failures(&p, &a, "connect"), ea);
    p.drain.cancel();
    p.buffer.close();
}
