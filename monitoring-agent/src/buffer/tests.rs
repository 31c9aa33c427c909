//! Unit tests of the ring buffer: policies, wakeups, many producers, and the
//! per-source accounting of what each policy drops.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::collections::HashSet;
use std::time::Duration;

use monitoring_common::Event;

use super::*;
use crate::pipeline::Source;
use crate::telemetry::Telemetry;

fn env(i: i64) -> Envelope {
    Envelope::untracked(Source::File, Event::log(i, "test", i.to_string()))
}

fn env_of(source: Source, i: i64) -> Envelope {
    Envelope::untracked(source, Event::log(i, "test", i.to_string()))
}

/// `read == accepted-and-still-there + dropped` for one source.
fn assert_accounted(t: &Telemetry, source: Source, delivered: u64) {
    let read = t.sources.read.get(source);
    let dropped = t.dropped.total_for(source);
    assert_eq!(
        read,
        delivered + dropped,
        "{source:?}: read {read}, delivered {delivered}, dropped {dropped}"
    );
}

fn ts(e: &Envelope) -> i64 {
    e.to_event().unwrap().timestamp_ns
}

fn buffer(cap: usize, policy: WhenFull) -> (RingBuffer, Telemetry) {
    let t = Telemetry::new();
    (RingBuffer::new(cap, policy, t.buffer.clone()), t)
}

async fn drain(b: &RingBuffer) -> Vec<i64> {
    let mut out = Vec::new();
    while !b.is_empty() {
        b.recv_many(&mut out, 100).await;
    }
    out.iter().map(ts).collect()
}

#[tokio::test]
async fn drop_newest_refuses_and_counts() {
    let (b, t) = buffer(3, WhenFull::DropNewest);
    for i in 0..5 {
        b.send(env(i)).await.unwrap();
    }
    assert_eq!(drain(&b).await, vec![0, 1, 2]);
    assert_eq!(t.dropped.get(DropReason::DropNewest), 2);
    assert_eq!(t.buffer.received_events.get(), 3);
}

#[tokio::test]
async fn drop_oldest_evicts_and_counts() {
    let (b, t) = buffer(3, WhenFull::DropOldest);
    for i in 0..5 {
        b.send(env(i)).await.unwrap();
    }
    assert_eq!(drain(&b).await, vec![2, 3, 4]);
    assert_eq!(t.dropped.get(DropReason::DropOldest), 2);
}

#[tokio::test]
async fn block_waits_for_room_and_loses_nothing() {
    let (b, t) = buffer(2, WhenFull::Block);
    b.send(env(0)).await.unwrap();
    b.send(env(1)).await.unwrap();
    let sender = {
        let b = b.clone();
        tokio::spawn(async move { b.send(env(2)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!sender.is_finished(), "a full buffer under block must wait");
    let mut out = Vec::new();
    assert_eq!(b.recv_many(&mut out, 1).await, Some(1));
    sender.await.unwrap().unwrap();
    out.clear();
    b.recv_many(&mut out, 10).await;
    assert_eq!(out.iter().map(ts).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(t.buffer.blocked_sends.get(), 1);
    assert_eq!(
        t.dropped.get(DropReason::DropOldest) + t.dropped.get(DropReason::DropNewest),
        0
    );
}

#[tokio::test]
async fn close_wakes_blocked_senders_and_the_receiver_drains() {
    let (b, _t) = buffer(1, WhenFull::Block);
    b.send(env(0)).await.unwrap();
    let blocked = {
        let b = b.clone();
        tokio::spawn(async move { b.send(env(1)).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    b.close();
    assert_eq!(blocked.await.unwrap(), Err(Closed));
    assert_eq!(b.send(env(2)).await, Err(Closed));
    let mut out = Vec::new();
    assert_eq!(b.recv_many(&mut out, 10).await, Some(1));
    assert_eq!(b.recv_many(&mut out, 10).await, None);
}

#[tokio::test]
async fn receiver_wakes_on_send_and_on_close() {
    let (b, _t) = buffer(4, WhenFull::Block);
    let rx = {
        let b = b.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            let mut got = 0;
            while let Some(n) = b.recv_many(&mut out, 10).await {
                got += n;
            }
            got
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    b.send(env(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    b.send(env(2)).await.unwrap();
    b.close();
    assert_eq!(rx.await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_producers_one_consumer_under_block() {
    let (b, _t) = buffer(16, WhenFull::Block);
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let b = b.clone();
            tokio::spawn(async move {
                for i in 0..2_000 {
                    b.send(env(p * 1_000_000 + i)).await.unwrap();
                }
            })
        })
        .collect();
    let consumer = {
        let b = b.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            while b.recv_many(&mut out, 7).await.is_some() {}
            out
        })
    };
    for p in producers {
        p.await.unwrap();
    }
    b.close();
    let out = consumer.await.unwrap();
    assert_eq!(out.len(), 16_000);
    let seen: HashSet<i64> = out.iter().map(ts).collect();
    assert_eq!(seen.len(), 16_000);
    // Each producer's events stay in its own order.
    for p in 0..8 {
        let mine: Vec<i64> = out.iter().map(ts).filter(|t| t / 1_000_000 == p).collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_producers_drop_policies_account_for_every_event() {
    for policy in [WhenFull::DropOldest, WhenFull::DropNewest] {
        let (b, t) = buffer(8, policy);
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let b = b.clone();
                tokio::spawn(async move {
                    for i in 0..1_000 {
                        b.send(env(p * 10_000 + i)).await.unwrap();
                    }
                })
            })
            .collect();
        let mut out = Vec::new();
        for p in producers {
            p.await.unwrap();
        }
        b.close();
        while b.recv_many(&mut out, 3).await.is_some() {}
        let dropped = t.dropped.get(DropReason::DropOldest) + t.dropped.get(DropReason::DropNewest);
        assert_eq!(out.len() as u64 + dropped, 4_000, "{policy:?}");
    }
}

#[tokio::test]
async fn try_send_all_skips_a_whole_sample_under_block() {
    let (b, _t) = buffer(4, WhenFull::Block);
    b.send(env(0)).await.unwrap();
    let sample: Vec<_> = (1..5).map(env).collect();
    assert_eq!(b.try_send_all(sample).unwrap(), TrySendOutcome::Skipped);
    assert_eq!(b.len(), 1);
    let sample: Vec<_> = (1..4).map(env).collect();
    assert_eq!(b.try_send_all(sample).unwrap(), TrySendOutcome::Sent);
    assert_eq!(b.len(), 4);

    let (b, t) = buffer(2, WhenFull::DropNewest);
    let sample: Vec<_> = (0..3).map(env).collect();
    assert_eq!(b.try_send_all(sample).unwrap(), TrySendOutcome::Sent);
    assert_eq!(t.dropped.get(DropReason::DropNewest), 1);
    b.close();
    assert_eq!(b.try_send_all(vec![env(9)]), Err(Closed));
}

#[tokio::test]
async fn drop_newest_attributes_drops_to_the_refused_events_source() {
    let (b, t) = buffer(3, WhenFull::DropNewest);
    // Three file events fill it; the host event and one more file event are refused.
    for i in 0..3 {
        b.send(env_of(Source::File, i)).await.unwrap();
    }
    b.send(env_of(Source::HostMetrics, 3)).await.unwrap();
    b.send(env_of(Source::File, 4)).await.unwrap();
    assert_eq!(drain(&b).await, vec![0, 1, 2]);
    let d = &t.dropped;
    assert_eq!(d.get_source(DropReason::DropNewest, Source::File), 1);
    assert_eq!(d.get_source(DropReason::DropNewest, Source::HostMetrics), 1);
    assert_eq!(t.sources.read.get(Source::File), 4);
    assert_eq!(t.sources.read.get(Source::HostMetrics), 1);
    assert_accounted(&t, Source::File, 3);
    assert_accounted(&t, Source::HostMetrics, 0);
}

#[tokio::test]
async fn drop_oldest_attributes_drops_to_the_evicted_events_source() {
    let (b, t) = buffer(2, WhenFull::DropOldest);
    b.send(env_of(Source::HostMetrics, 0)).await.unwrap();
    b.send(env_of(Source::File, 1)).await.unwrap();
    // Evicts the host event, then the file event.
    b.send(env_of(Source::File, 2)).await.unwrap();
    b.send(env_of(Source::File, 3)).await.unwrap();
    assert_eq!(drain(&b).await, vec![2, 3]);
    let d = &t.dropped;
    assert_eq!(d.get_source(DropReason::DropOldest, Source::HostMetrics), 1);
    assert_eq!(d.get_source(DropReason::DropOldest, Source::File), 1);
    assert_accounted(&t, Source::File, 2);
    assert_accounted(&t, Source::HostMetrics, 0);
}

#[tokio::test]
async fn skipped_samples_count_as_read_and_dropped() {
    let (b, t) = buffer(3, WhenFull::Block);
    b.send(env_of(Source::File, 0)).await.unwrap();
    let sample: Vec<_> = (1..4).map(|i| env_of(Source::HostMetrics, i)).collect();
    assert_eq!(b.try_send_all(sample).unwrap(), TrySendOutcome::Skipped);
    let d = &t.dropped;
    assert_eq!(
        d.get_source(DropReason::SampleSkipped, Source::HostMetrics),
        3
    );
    assert_eq!(d.get_source(DropReason::SampleSkipped, Source::File), 0);
    let sample: Vec<_> = (4..6).map(|i| env_of(Source::HostMetrics, i)).collect();
    assert_eq!(b.try_send_all(sample).unwrap(), TrySendOutcome::Sent);
    assert_accounted(&t, Source::HostMetrics, 2);
    assert_accounted(&t, Source::File, 1);
    // A sender blocked on a full buffer and then closed out has read nothing.
    let blocked = {
        let b = b.clone();
        tokio::spawn(async move { b.send(env_of(Source::File, 9)).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    b.close();
    assert_eq!(blocked.await.unwrap(), Err(Closed));
    assert_accounted(&t, Source::File, 1);
}
