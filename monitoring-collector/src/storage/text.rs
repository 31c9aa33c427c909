//! What the `q` of a log search means, for every store alike.
//!
//! The text is split on whitespace into words; every word must match. A word matches
//! a message that holds its tokens (runs of letters and digits, compared without
//! case) one after the other, separated only by non-token characters: `user-1`
//! matches `User 1` and `user_1` but not `user12`. A trailing `*` makes the last
//! token a prefix. Text without any letter or digit (`::`, `->`) is matched as a
//! plain substring instead. This is SQLite FTS5's `unicode61` phrase matching,
//! which the embedded store uses; the server stores match the same way with
//! regular expressions built from the tokens (which hold only letters and digits,
//! so nothing a user types reaches the expression as syntax).

/// A parsed search text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextQuery {
    /// No text given: everything matches.
    None,
    /// Every word must match.
    Words(Vec<Word>),
    /// No letter or digit anywhere: a plain, case-sensitive substring.
    Substring(String),
}

/// One word of the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// Its tokens, lowercased, in order; never empty.
    pub tokens: Vec<String>,
    /// The last token is a prefix (the word ended in `*`).
    pub prefix: bool,
}

impl Word {
    /// A POSIX extended regular expression (as PostgreSQL's `~*` and RE2 take it)
    /// matching a lowercased message that holds this word.
    pub fn regex(&self) -> String {
        const SEP: &str = "[^[:alnum:]]";
        let mut re = format!("(^|{SEP})");
        re.push_str(&self.tokens.join(&format!("{SEP}+")));
        if !self.prefix {
            re.push_str(&format!("($|{SEP})"));
        }
        re
    }
}

/// Parses the `q` parameter.
pub fn parse(text: Option<&str>) -> TextQuery {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return TextQuery::None;
    };
    let words: Vec<Word> = text
        .split_whitespace()
        .filter_map(|word| {
            let (word, prefix) = match word.strip_suffix('*') {
                Some(stem) if !stem.is_empty() => (stem, true),
                _ => (word, false),
            };
            let tokens = tokens(word);
            (!tokens.is_empty()).then_some(Word { tokens, prefix })
        })
        .collect();
    if words.is_empty() {
        TextQuery::Substring(text.to_string())
    } else {
        TextQuery::Words(words)
    }
}

/// The lowercased runs of letters and digits of `text`.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_tokens_and_fallback() {
        assert_eq!(parse(None), TextQuery::None);
        assert_eq!(parse(Some("  ")), TextQuery::None);
        assert_eq!(parse(Some("::")), TextQuery::Substring("::".into()));
        let TextQuery::Words(words) = parse(Some("User-1 err* ->")) else {
            panic!("expected words");
        };
        assert_eq!(words.len(), 2);
        assert_eq!(words[0].tokens, ["user", "1"]);
        assert!(!words[0].prefix);
        assert_eq!(words[1].tokens, ["err"]);
        assert!(words[1].prefix);
        assert_eq!(
            words[0].regex(),
            "(^|[^[:alnum:]])user[^[:alnum:]]+1($|[^[:alnum:]])"
        );
        assert_eq!(words[1].regex(), "(^|[^[:alnum:]])err");
    }
}
