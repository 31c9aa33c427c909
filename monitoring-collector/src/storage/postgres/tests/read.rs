//! Log searches, cursor paging, metric series and flows.

use super::*;
use crate::storage::conformance::{reads, store_tests};

#[test]
fn cursor_pages_return_every_record_once_in_both_orders() {
    let db = TestDb::new("paging");
    let store = db.open();
    reads::cursor_pages_over_equal_timestamps(&store, &|_| {}, &[1]);
    // Cursors of another shape (or another store's) are bad queries too.
    reads::assert_bad_cursors(&store, &["p1.1", "c1.1.2.3"]);
}

#[test]
fn text_search_matches_words_and_survives_punctuation() {
    let db = TestDb::new("text");
    reads::text_search_matches_words_and_survives_punctuation(&db.open());
    assert_eq!(db.count("logs"), 9, "nothing a search says is executed");
}

#[test]
fn a_trigram_index_serves_word_searches() {
    let db = TestDb::new("trigram");
    let store = db.open();
    assert!(store.schema.trigram_index, "the test server allows pg_trgm");
    let mut client = db.client();
    let indexes: Vec<String> = client
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE tablename = 'logs' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        indexes.contains(&"logs_message_trgm".to_string()),
        "{indexes:?}"
    );
    // The search's expression is the index's: with scans that ignore it ruled
    // out, the planner can still answer from it (which it prefers by itself once
    // a table is large and the word rare).
    let events = (0..5_000)
        .map(|i| {
            let rare = if i % 1_000 == 0 { " zyxwv" } else { "" };
            log(T0 + i, &format!("common line {i}{rare}"), None)
        })
        .collect();
    store.commit(&batch("a1", 1, T0, events)).unwrap();
    client
        .batch_execute("ANALYZE logs; SET enable_seqscan = off; SET enable_indexscan = off")
        .unwrap();
    let expr = store.schema.message_expr;
    let plan: Vec<String> = client
        .query(
            &format!(
                "EXPLAIN SELECT id FROM logs WHERE {expr} ~ $1 ORDER BY timestamp_ns DESC, id DESC LIMIT 101"
            ),
            &[&"(^|[^[:alnum:]])zyxwv($|[^[:alnum:]])"],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter()
            .any(|l| l.contains("Index Cond") && l.contains("~")),
        "{}",
        plan.join("\n")
    );
    let found = logs(
        &store,
        LogQuery {
            text: Some("ZYXWV".into()),
            ..all_logs()
        },
    );
    assert_eq!(found.len(), 5);
}

store_tests! {
    with_fresh;
    filters_by_severity_agent_source_and_time: reads::filters_by_severity_agent_source_and_time,
    // Buckets of a range wider than a bigint's difference are computed in numeric.
    metric_steps_average_samples_per_bucket_across_days: |s| {
        reads::metric_steps_average_samples_per_bucket(s);
        reads::metric_steps_over_the_whole_i64_range(s);
    },
    flows_come_newest_first_with_their_ties_ordered_and_filters_applied:
        reads::flows_in_order_and_filtered,
}
