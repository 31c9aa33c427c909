//! Loading TOML configuration the same way in both programs.
//!
//! `${VAR}` and `${VAR:-default}` are expanded from the environment first (`$$` is a
//! literal `$`), then the text is deserialised into a `deny_unknown_fields` struct and
//! validated. Every error names the file, the line and the key, so that an operator
//! can go straight to it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// One thing wrong with a configuration, found by [`Validate::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `buffer.max_events`.
    pub key: String,
    /// What is wrong, as a sentence an operator can act on.
    pub message: String,
}

impl Problem {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A configuration that can check itself. Pure: no I/O, every problem at once.
pub trait Validate {
    /// All problems found; empty when the configuration is usable.
    fn validate(&self) -> Vec<Problem>;
}

/// A located problem: where it is and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// 1-based line, when the key could be found in the file.
    pub line: Option<usize>,
    /// Dotted key path, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read configuration: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Syntax, type, unknown-key, environment or validation problems.
    #[error("{}", render(path, problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, in file order where known.
        problems: Vec<Located>,
    },
}

fn render(path: &Path, problems: &[Located]) -> String {
    let mut s = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str(&path.display().to_string());
        if let Some(line) = p.line {
            s.push_str(&format!(":{line}"));
        }
        s.push_str(": ");
        if let Some(key) = &p.key {
            s.push_str(&format!("key `{key}`: "));
        }
        s.push_str(&p.message);
    }
    s
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Reads, expands, parses and validates a configuration file.
pub fn load<T: DeserializeOwned + Validate>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Expands, parses and validates configuration text; `path` is only used in errors.
pub fn parse<T: DeserializeOwned + Validate>(text: &str, path: &Path) -> Result<T, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        path: path.to_path_buf(),
        problems,
    };
    let expanded =
        expand_env(text, |name| std::env::var(name).ok()).map_err(|p| invalid(vec![p]))?;
    let config: T = toml::from_str(&expanded).map_err(|e| {
        let (line, key) = match e.span() {
            Some(span) => {
                let line = line_of(&expanded, span.start);
                let key = key_at(&expanded, span.start);
                (Some(line), key)
            }
            None => (None, None),
        };
        invalid(vec![Located {
            line,
            key,
            message: e.message().trim().to_string(),
        }])
    })?;
    let problems = config.validate();
    if problems.is_empty() {
        return Ok(config);
    }
    let mut located: Vec<Located> = problems
        .into_iter()
        .map(|p| Located {
            line: find_key_line(text, &p.key),
            key: Some(p.key),
            message: p.message,
        })
        .collect();
    located.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    Err(invalid(located))
}

/// Expands `${VAR}`, `${VAR:-default}` and `$$` in values; comments are left alone.
/// An unset variable without a default is an error naming it and its line; an empty
/// one takes the default, as in the shell. Values never span lines in practice; if
/// one does, later line numbers shift, which is why expansion keeps everything else
/// byte for byte.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, Located> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Plain,
        Comment,
        Basic,
        Literal,
        MultiBasic,
        MultiLiteral,
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut state = State::Plain;
    let mut copied = 0; // text[copied..i] is still to be copied to `out`
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let step = match (state, bytes[i]) {
            (State::Comment, b'\n') => {
                state = State::Plain;
                1
            }
            (State::Comment, _) => 1,
            (_, b'$') => {
                out.push_str(&text[copied..i]);
                let used = expand_one(text, i, &lookup, &mut out)?;
                copied = i + used;
                used
            }
            (State::Plain, b'#') => {
                state = State::Comment;
                1
            }
            (State::Plain, b'"') if rest.starts_with("\"\"\"") => {
                state = State::MultiBasic;
                3
            }
            (State::Plain, b'\'') if rest.starts_with("\'\'\'") => {
                state = State::MultiLiteral;
                3
            }
            (State::Plain, b'"') => {
                state = State::Basic;
                1
            }
            (State::Plain, b'\'') => {
                state = State::Literal;
                1
            }
            (State::Basic | State::MultiBasic, b'\\') => 2,
            (State::Basic, b'"')
            | (State::Literal, b'\'')
            | (State::Basic | State::Literal, b'\n') => {
                state = State::Plain;
                1
            }
            (State::MultiBasic, b'"') if rest.starts_with("\"\"\"") => {
                state = State::Plain;
                3
            }
            (State::MultiLiteral, b'\'') if rest.starts_with("\'\'\'") => {
                state = State::Plain;
                3
            }
            _ => 1,
        };
        i += step;
    }
    out.push_str(&text[copied.min(text.len())..]);
    Ok(out)
}

/// Expands the reference starting with the `$` at `at`; returns the bytes it used.
fn expand_one(
    text: &str,
    at: usize,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<usize, Located> {
    let err = |message: String| Located {
        line: Some(line_of(text, at)),
        key: None,
        message,
    };
    let after = &text[at + 1..];
    if after.starts_with('$') {
        out.push('$');
        return Ok(2);
    }
    let Some(body) = after.strip_prefix('{') else {
        out.push('$');
        return Ok(1);
    };
    let Some(end) = body.find('}') else {
        return Err(err(
            "unterminated `${` (write `$$` for a literal dollar sign)".into(),
        ));
    };
    let expr = &body[..end];
    let (name, default) = match expr.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (expr, None),
    };
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(err(format!(
            "`${{{expr}}}` is not a valid variable reference"
        )));
    }
    match (
        lookup(name).filter(|v| !v.is_empty() || default.is_none()),
        default,
    ) {
        (Some(v), _) => out.push_str(&v),
        (None, Some(d)) => out.push_str(d),
        (None, None) => {
            return Err(err(format!(
                "environment variable {name} is not set (use ${{{name}:-default}} to give a default)"
            )));
        }
    }
    Ok(2 + end + 1)
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The table header in force before `offset`, e.g. `buffer.disk` for `[buffer.disk]`.
fn table_at(text: &str, offset: usize) -> Option<String> {
    // Whole lines before the one holding `offset`, nearest first.
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find_map(header_name)
}

fn header_name(line: &str) -> Option<String> {
    let line = line.split('#').next().unwrap_or("").trim();
    let inner = line
        .strip_prefix("[[")
        .and_then(|l| l.strip_suffix("]]"))
        .or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')))?;
    Some(inner.trim().replace(' ', ""))
}

/// The dotted path of the key whose name starts at `offset`, if the span points at one.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = offset.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[line_start..];
    let line = line.lines().next().unwrap_or("");
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    Some(match table_at(text, line_start) {
        Some(table) => match array_index(&text[..line_start], &table) {
            Some(i) => format!("{table}[{i}].{key}"),
            None => format!("{table}.{key}"),
        },
        None => key.to_string(),
    })
}

/// The index of the last `[[table]]` element in `before`, if `table` is an array of
/// tables there.
fn array_index(before: &str, table: &str) -> Option<usize> {
    let header = |l: &str| {
        let l = l.split('#').next().unwrap_or("").trim();
        l.starts_with("[[") && header_name(l).as_deref() == Some(table)
    };
    before.lines().filter(|l| header(l)).count().checked_sub(1)
}

/// Best-effort line of a dotted key: the key's own line under its table header, or the
/// header's line for a table-level problem. A key in an array of tables names its
/// element by index (`storage.sinks[1].url`: `url` under the second `[[storage.sinks]]`,
/// or that header when the key is missing).
pub fn find_key_line(text: &str, key: &str) -> Option<usize> {
    let (table, leaf) = match key.rsplit_once('.') {
        Some((t, l)) => (Some(t), l),
        None => (None, key),
    };
    let element = table
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.rsplit_once('['))
        .and_then(|(name, i)| Some((name, i.parse::<usize>().ok()?)));
    let (table, index) = match element {
        Some((name, i)) => (Some(name), Some(i)),
        None => (table.map(|t| t.split('[').next().unwrap_or(t)), None),
    };
    let leaf = leaf.split('[').next().unwrap_or(leaf);
    // Top-level keys come before any header.
    let mut in_table = table.is_none();
    let mut seen = 0;
    let mut header_line = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(h) = header_name(line) {
            let matches = Some(h.as_str()) == table;
            in_table = match index {
                Some(n) if matches => {
                    seen += 1;
                    seen == n + 1
                }
                Some(_) => false,
                None => matches,
            };
            let is_header = match index {
                Some(_) => in_table,
                None => Some(h.as_str()) == table.or(Some(key)),
            };
            if is_header && header_line.is_none() {
                header_line = Some(i + 1);
            }
            continue;
        }
        if in_table
            && let Some((k, _)) = line.split_once('=')
            && k.trim().trim_matches('"') == leaf
        {
            return Some(i + 1);
        }
    }
    header_line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        server: Server,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Server {
        #[allow(dead_code)]
        addr: String,
        #[serde(default)]
        workers: usize,
    }

    impl Validate for Conf {
        fn validate(&self) -> Vec<Problem> {
            let mut p = Vec::new();
            if self.server.workers == 0 {
                p.push(Problem::new("server.workers", "must be at least 1"));
            }
            p
        }
    }

    fn lookup(name: &str) -> Option<String> {
        (name == "HOME_DIR").then(|| "/home/x".to_string())
    }

    #[test]
    fn expands_variables_and_defaults() {
        assert_eq!(
            expand_env("a=${HOME_DIR}/b", lookup).as_deref(),
            Ok("a=/home/x/b")
        );
        assert_eq!(expand_env("${NOPE:-d}", lookup).as_deref(), Ok("d"));
        assert_eq!(expand_env("$$5 and $x", lookup).as_deref(), Ok("$5 and $x"));
        let err = expand_env("\n\nx=${NOPE}", lookup).expect_err("unset accepted");
        assert_eq!(err.line, Some(3));
        assert!(err.message.contains("NOPE"));
        assert!(expand_env("${unterminated", lookup).is_err());
        // Comments are not expanded; strings and bare values are.
        let text =
            "# uses ${NOPE}\na = \"${HOME_DIR}#x\" # ${NOPE}\nb = '${HOME_DIR}'\nc = ${NOPE:-3}\n";
        assert_eq!(
            expand_env(text, lookup).as_deref(),
            Ok("# uses ${NOPE}\na = \"/home/x#x\" # ${NOPE}\nb = '/home/x'\nc = 3\n")
        );
        let escaped = "a = \"q\\\" ${HOME_DIR}\" # ${NOPE}\n";
        assert_eq!(
            expand_env(escaped, lookup).as_deref(),
            Ok("a = \"q\\\" /home/x\" # ${NOPE}\n")
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "[server]\naddr = \"x\"\nworkrs = 2\n";
        let err = parse::<Conf>(text, Path::new("c.toml")).expect_err("accepted");
        let msg = err.to_string();
        assert!(
            msg.starts_with("c.toml:3: key `server.workrs`: unknown field"),
            "{msg}"
        );
    }

    #[test]
    fn type_errors_are_located() {
        let text = "[server]\naddr = 5\nworkers = 1\n";
        let msg = parse::<Conf>(text, Path::new("c.toml"))
            .expect_err("accepted")
            .to_string();
        assert!(msg.starts_with("c.toml:2: key `server.addr`"), "{msg}");
    }

    #[test]
    fn keys_of_arrays_of_tables_are_located_in_their_element() {
        let text = "[[s]]\na = 1\n\n[[s]]\nb = 2\n\n[t]\na = 3\n\n[[s]]\na = 4\n";
        assert_eq!(find_key_line(text, "s[0].a"), Some(2));
        assert_eq!(
            find_key_line(text, "s[1].a"),
            Some(4),
            "missing: the element's header"
        );
        assert_eq!(find_key_line(text, "s[1].b"), Some(5));
        assert_eq!(find_key_line(text, "s[2].a"), Some(11));
        assert_eq!(find_key_line(text, "t.a"), Some(8));
        assert_eq!(find_key_line(text, "s[3].a"), None);
        assert_eq!(
            key_at(text, text.find("b = 2").unwrap_or(0)).as_deref(),
            Some("s[1].b")
        );
        assert_eq!(
            key_at(text, text.find("a = 3").unwrap_or(0)).as_deref(),
            Some("t.a")
        );
    }

    #[test]
    fn validation_problems_are_located() {
        let text = "# comment\n[server]\naddr = \"x\"\nworkers = 0\n";
        let msg = parse::<Conf>(text, Path::new("c.toml"))
            .expect_err("accepted")
            .to_string();
        assert_eq!(msg, "c.toml:4: key `server.workers`: must be at least 1");
    }
}
