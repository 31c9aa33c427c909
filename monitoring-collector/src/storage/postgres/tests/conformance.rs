//! The shared conformance suite, against a fresh PostgreSQL store.

use super::TestDb;

#[test]
fn postgres_store_passes_the_conformance_suite() {
    let db = TestDb::new("conformance");
    let store = db.open();
    crate::storage::conformance::check(&store);
}
