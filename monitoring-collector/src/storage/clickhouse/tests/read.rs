//! Log searches, cursor paging, metric series and flows.

use super::super::write::insert_events;
use super::*;
use crate::storage::conformance::{reads, store_tests};
use crate::storage::{FlowQuery, Order};

#[test]
fn cursor_pages_return_every_record_once_in_both_orders() {
    let db = TestDb::new("paging");
    let store = db.open();
    // One batch's events are also written on their own first: a crash before its
    // record, so that they are stored twice.
    // Pages of one record would be 5,000 HTTP round trips (about 50 s): left out.
    reads::cursor_pages_over_equal_timestamps(
        &store,
        &|b| {
            if b.sequence == 3 {
                insert_events(&store.client, b).unwrap();
            }
        },
        &[],
    );
}

store_tests! {
    with_fresh;
    text_search_matches_words_and_survives_punctuation:
        reads::text_search_matches_words_and_survives_punctuation,
    metric_steps_average_samples_per_bucket: |s| {
        reads::metric_steps_average_samples_per_bucket(s);
        reads::metric_steps_over_the_whole_i64_range(s);
    },
}

#[test]
fn filters_by_severity_agent_source_and_time() {
    let db = TestDb::new("filters");
    let store = db.open();
    reads::filters_by_severity_agent_source_and_time(&store);
    let oldest = logs(
        &store,
        LogQuery {
            limit: 2,
            order: Order::Asc,
            ..all_logs()
        },
    );
    // Equal times: the batch key (agent a1 before a2) decides.
    assert_eq!(oldest[0].message, "crit");
    assert_eq!(oldest[1].message, "a2 error");
}

#[test]
fn flows_come_newest_first_with_their_ties_ordered_and_filters_applied() {
    let db = TestDb::new("flows");
    let store = db.open();
    reads::flows_in_order_and_filtered(&store);
    // A batch written twice still gives each flow once, also under a limit.
    let [_, again] = reads::flow_batches();
    insert_events(&store.client, &again).unwrap();
    insert_events(&store.client, &again).unwrap();
    let all = FlowQuery {
        limit: 100,
        ..FlowQuery::default()
    };
    assert_eq!(reads::flow_bytes(&store, &all), [9, 5, 8, 2, 6, 4, 3, 1, 7]);
    let first4 = FlowQuery { limit: 4, ..all };
    assert_eq!(reads::flow_bytes(&store, &first4), [9, 5, 8, 2]);
}
