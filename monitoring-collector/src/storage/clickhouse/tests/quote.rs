//! The quoting function against the server: `SELECT <quoted>` gives back the
//! original string, for arbitrary text and for the characters that matter.

use proptest::prelude::*;

use super::super::client::Client;
use super::super::rowbinary::RowReader;
use super::super::sql::quote;
use super::*;

/// Asks the server for the literals of `strings` and checks each comes back as it was.
fn round_trip(client: &Client, strings: &[String]) {
    let literals: Vec<String> = strings.iter().map(|s| quote(s)).collect();
    let answer = client
        .query(&format!("SELECT {} FORMAT RowBinary", literals.join(", ")))
        .unwrap_or_else(|e| panic!("server rejected {literals:?}: {e}"));
    let mut r = RowReader::new(&answer);
    for s in strings {
        assert_eq!(&r.string().unwrap(), s, "literal {}", quote(s));
    }
    assert!(r.at_end());
}

#[test]
fn quoted_strings_come_back_unchanged_from_the_server() {
    let db = TestDb::new("quote");
    let special: Vec<String> = [
        "",
        "'",
        "\\",
        "\\'",
        "'\\",
        "\0",
        "a\0b",
        "\\0",
        "\\x41",
        "\x01\x1f\x7f",
        "\n\r\t",
        "''; DROP DATABASE system; --",
        "é✓𝄞\u{80}\u{9f}\u{feff}\u{10ffff}",
        "\\N",
        "?",
        "{x}",
        "`backtick`",
        "\"double\"",
        "\u{0}\u{1}x",
        "\\\\\\",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    round_trip(&db.client, &special);

    let config = ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    };
    proptest!(config, |(strings in prop::collection::vec(any::<String>(), 1..8))| {
        round_trip(&db.client, &strings);
    });
    // Strings made only of the characters with a meaning in a literal.
    let config = ProptestConfig {
        cases: 100,
        ..ProptestConfig::default()
    };
    proptest!(config, |(s in "[\\\\'\"\0\x01x0-9a-f\n]{0,40}")| {
        round_trip(&db.client, &[s]);
    });
}
