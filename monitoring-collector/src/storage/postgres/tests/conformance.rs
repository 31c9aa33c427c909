//! The shared conformance suite, against a fresh PostgreSQL store.

use super::{PostgresConfig, PostgresStore, TestDb};

#[test]
fn postgres_store_passes_the_conformance_suite() {
    let db = TestDb::new("conformance");
    let store = db.open();
    crate::storage::conformance::check(&store);
}

/// Without the trigram index (`[storage] text_index = false`) searches scan and
/// still answer the same; the index an earlier start made is dropped.
#[test]
fn without_the_text_index_the_answers_are_the_same() {
    let db = TestDb::new("no_text_index");
    drop(db.open());
    let indexes = |db: &TestDb| -> i64 {
        db.client()
            .query_one(
                "SELECT count(*) FROM pg_indexes WHERE indexname = 'logs_message_trgm'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!(indexes(&db), 1, "made by default");
    let config = PostgresConfig {
        text_index: false,
        ..db.config()
    };
    let store = PostgresStore::open(&config).unwrap();
    assert_eq!(indexes(&db), 0, "dropped");
    crate::storage::conformance::check(&store);
}
