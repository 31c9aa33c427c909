//! The shared conformance suite (`storage/conformance.rs`) against this store.

use super::*;

#[test]
fn passes_the_conformance_suite() {
    let db = TestDb::new("conformance");
    crate::storage::conformance::check(&db.open());
}
