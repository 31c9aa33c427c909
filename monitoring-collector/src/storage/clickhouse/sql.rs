//! How values enter SQL text. ClickHouse 18.16 has no query parameters over HTTP
//! (they came in 19.x), so every string from outside goes through [`quote`], the
//! one function that makes a string literal, and numbers are formatted from Rust
//! integers ([`int`], [`uint`]), never taken from user text.

/// A ClickHouse string literal holding exactly `s`.
///
/// Backslash and single quote are backslash-escaped; control bytes (which include
/// NUL) become `\xHH`, so that the query text holds none of them raw. Everything
/// else, multi-byte UTF-8 included, is copied as it is. The tests check the round
/// trip against the server for arbitrary strings.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A signed integer literal. Negative numbers are parenthesised so that they can
/// follow an operator (`x - (-5)`).
pub(crate) fn int(v: i64) -> String {
    if v < 0 {
        format!("({v})")
    } else {
        v.to_string()
    }
}

/// An unsigned integer literal.
pub(crate) fn uint(v: u64) -> String {
    v.to_string()
}

/// A quoted identifier. The names quoted here are the store's own table names and
/// a database name checked to be letters, digits and underscores; the escaping is a
/// second line of defence.
pub(crate) fn ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_quotes_backslashes_and_control_bytes() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("it's"), r"'it\'s'");
        assert_eq!(quote(r"a\b"), r"'a\\b'");
        assert_eq!(quote("a\0b\n\x7f"), r"'a\x00b\x0A\x7F'");
        assert_eq!(quote("é ✓"), "'é ✓'");
        assert_eq!(int(-5), "(-5)");
        assert_eq!(int(i64::MIN), "(-9223372036854775808)");
        assert_eq!(uint(u64::MAX), "18446744073709551615");
        assert_eq!(ident("logs"), "`logs`");
        assert_eq!(ident("a`b"), r"`a\`b`");
    }
}
