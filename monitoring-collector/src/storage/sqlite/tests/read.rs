//! Log searches, cursor paging, time pruning, metric series and flows.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::*;
use crate::storage::conformance::{reads, store_tests};
use crate::storage::{MetricQuery, Order};

store_tests! {
    with_fresh;
    cursor_pages_return_every_record_once_in_both_orders:
        |s| reads::cursor_pages_over_equal_timestamps(s, &|_| {}, &[1]),
    text_search_matches_words_and_survives_punctuation:
        reads::text_search_matches_words_and_survives_punctuation,
    filters_by_severity_agent_source_and_time: reads::filters_by_severity_agent_source_and_time,
    metric_steps_average_samples_per_bucket_across_files: |s| {
        reads::metric_steps_average_samples_per_bucket(s);
        reads::metric_steps_over_the_whole_i64_range(s);
    },
    flows_come_newest_first_with_their_ties_ordered_and_filters_applied:
        reads::flows_in_order_and_filtered,
}

#[test]
fn queries_skip_day_files_outside_the_time_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Day 0 holds events of day 0; day 1 holds events of day 1 and a late one from
    // five days before.
    store
        .commit(&batch("a1", 1, T0, vec![log(T0 + SEC, "day0", None)]))
        .unwrap();
    let late = log(T0 - 5 * NS_PER_DAY, "late", None);
    let day1 = vec![log(T0 + NS_PER_DAY + SEC, "day1", None), late];
    store
        .commit(&batch("a1", 2, T0 + NS_PER_DAY, day1))
        .unwrap();
    let parts = store.partitions.all();
    let reads = || -> Vec<usize> {
        parts
            .iter()
            .map(|p| p.reads.load(Ordering::Relaxed))
            .collect()
    };

    let before = reads();
    let found = logs(
        &store,
        LogQuery {
            from_ns: Some(T0 + NS_PER_DAY),
            ..all_logs()
        },
    );
    assert_eq!(
        found.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(),
        ["day1"]
    );
    let after = reads();
    assert_eq!(after[0], before[0], "day 0 must not be read");
    assert_eq!(after[1], before[1] + 1);

    let found = logs(
        &store,
        LogQuery {
            to_ns: Some(T0 - NS_PER_DAY),
            ..all_logs()
        },
    );
    assert_eq!(
        found.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(),
        ["late"]
    );
    assert_eq!(reads()[0], after[0], "day 0 must not be read");

    // Metric queries prune the same way, and logs do not widen metric bounds.
    let before = reads();
    store
        .query_metrics(&MetricQuery {
            name: "x".into(),
            from_ns: 0,
            to_ns: i64::MAX,
            ..MetricQuery::default()
        })
        .unwrap();
    assert_eq!(reads(), before);
}

#[test]
fn text_search_pages_through_a_word_in_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // More matches than the FTS index drives (so the time index does), written
    // newest first so that row order and time order disagree.
    for seq in 0..11_i64 {
        let events = (0..1_000)
            .map(|i| {
                let n = seq * 1_000 + i;
                let rare = if n % 1_000 == 0 { " rare" } else { "" };
                log(
                    T0 + (10 - seq) * 1_000 + i,
                    &format!("common line {n}{rare}"),
                    None,
                )
            })
            .collect();
        store.commit(&batch("a1", seq as u64, T0, events)).unwrap();
    }
    for order in [Order::Desc, Order::Asc] {
        let mut seen = HashSet::new();
        let mut last: Option<i64> = None;
        let mut cursor = None;
        loop {
            let page = store
                .query_logs(&LogQuery {
                    text: Some("common".into()),
                    limit: 3_000,
                    order,
                    cursor: cursor.take(),
                    ..LogQuery::default()
                })
                .unwrap();
            for r in page.logs {
                if let Some(prev) = last {
                    match order {
                        Order::Desc => assert!(r.timestamp_ns <= prev),
                        Order::Asc => assert!(r.timestamp_ns >= prev),
                    }
                }
                last = Some(r.timestamp_ns);
                assert!(seen.insert(r.message));
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen.len(), 11_000, "{order:?}");
    }
    let rare = store
        .query_logs(&LogQuery {
            text: Some("RARE common".into()),
            limit: 100,
            ..LogQuery::default()
        })
        .unwrap();
    assert_eq!(rare.logs.len(), 11);
    assert_eq!(rare.next_cursor, None);
}
