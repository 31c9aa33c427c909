//! `[collectors.logs.journald.filter]` against real journal files: a filtered entry
//! is checkpointed once the entry shipped before it is acknowledged, and never read
//! again.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::sync::Arc;

use super::testing::add_journal_file;
use super::tests::{dirs, seqs, settings, start};
use crate::collectors::logs::filter::{FilterConfig, FilterReason, LineFilter};
use crate::pipeline::Source;

/// A filter that ships only the entries whose sequence number ends with `digit`.
fn ending_with(digit: u64) -> Arc<LineFilter> {
    let config = FilterConfig {
        include: vec![format!(r"^entry seq=\d*{digit}\n")],
        ..FilterConfig::default()
    };
    Arc::new(LineFilter::new(&config).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_entries_are_checkpointed_after_the_entry_before_them() {
    let (_root, journal, state) = dirs();
    add_journal_file(&journal, "one", 0..50);
    let mut s = settings(&journal);
    s.filter = ending_with(0);
    let mut source = start(s.clone(), &state);
    // 0, 10, 20 acknowledged; 30 and 40 shipped, never acknowledged.
    let events = source.take(5, |n| n <= 20).await;
    assert_eq!(seqs(&events), vec![0, 10, 20, 30, 40]);
    source.assert_quiet().await;
    let (_, metrics) = source.stop().await;
    assert_eq!(
        metrics
            .filtered
            .get(Source::Journald, FilterReason::NotIncluded),
        45
    );
    assert_eq!(
        metrics.entries_read.get(),
        5,
        "read counts shipped entries only"
    );

    // Without the filter: 21..29 were consumed after 20, acknowledged with it; 30
    // was not acknowledged, so it and everything after it comes again.
    let mut source = start(settings(&journal), &state);
    let events = source.take(20, |_| true).await;
    assert_eq!(seqs(&events), (30..50).collect::<Vec<_>>());
    source.assert_quiet().await;
    source.stop().await;

    // Every entry filtered, nothing in flight: the last one is checkpointed anyway,
    // and nothing is read again.
    add_journal_file(&journal, "two", 51..59);
    let mut source = start(s.clone(), &state);
    source.assert_quiet().await;
    let (_, metrics) = source.stop().await;
    assert_eq!(
        metrics
            .filtered
            .get(Source::Journald, FilterReason::NotIncluded),
        8
    );
    add_journal_file(&journal, "three", 59..61);
    let mut source = start(settings(&journal), &state);
    assert_eq!(seqs(&source.take(2, |_| true).await), vec![59, 60]);
    source.assert_quiet().await;
    source.stop().await;
}
