//! Log search across day files, with full-text matching and keyset paging.
//!
//! Results are ordered by the key `(timestamp_ns, partition day, row id)`, which is
//! unique and stable (rows are never updated), so a cursor holding the last key of a
//! page resumes exactly after it: no record is skipped or repeated, however many
//! share a timestamp or however they spread over files.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use monitoring_common::Severity;
use rusqlite::types::Value;
use rusqlite::{Connection, params};

use super::error::{StorageResult, db_at};
use super::partition::{Kind, Partition};
use crate::storage::{LogPage, LogQuery, LogRecord, Order, StorageError};

/// Where a record sits in the total order of results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    ts: i64,
    day: i64,
    id: i64,
}

impl Key {
    /// The opaque cursor text for this key.
    fn encode(self) -> String {
        format!("c1.{}.{}.{}", self.ts, self.day, self.id)
    }

    fn decode(text: &str) -> StorageResult<Key> {
        let bad = || StorageError::BadQuery(format!("invalid cursor {text:?}"));
        let mut parts = text.strip_prefix("c1.").ok_or_else(bad)?.split('.');
        let mut next =
            || -> StorageResult<i64> { parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad) };
        let key = Key {
            ts: next()?,
            day: next()?,
            id: next()?,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(key)
    }
}

/// How the text of a query is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TextFilter {
    /// No text given.
    None,
    /// An FTS5 expression built by [`text_filter`].
    Fts(String),
    /// Text without any word character (`::`, `->`): the tokenizer drops such
    /// characters, so it is matched as a plain substring instead.
    Substring(String),
}

/// Turns user text into a safe FTS5 expression: each whitespace-separated word
/// becomes a quoted phrase (inner quotes doubled), and the phrases are ANDed, so
/// punctuation never reaches the FTS parser as syntax. A trailing `*` on a word
/// keeps its meaning of a prefix search.
pub(crate) fn text_filter(text: Option<&str>) -> TextFilter {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return TextFilter::None;
    };
    let phrases: Vec<String> = text
        .split_whitespace()
        .filter_map(|word| {
            let (word, prefix) = match word.strip_suffix('*') {
                Some(stem) if !stem.is_empty() => (stem, "*"),
                _ => (word, ""),
            };
            // A word the tokenizer reads as no token would be an empty phrase.
            word.chars()
                .any(char::is_alphanumeric)
                .then(|| format!("\"{}\"{prefix}", word.replace('"', "\"\"")))
        })
        .collect();
    if phrases.is_empty() {
        TextFilter::Substring(text.to_string())
    } else {
        TextFilter::Fts(phrases.join(" AND "))
    }
}

/// Runs a log query over `partitions` (any order).
pub(crate) fn query_logs(
    partitions: Vec<Arc<Partition>>,
    query: &LogQuery,
) -> StorageResult<LogPage> {
    let cursor = query.cursor.as_deref().map(Key::decode).transpose()?;
    if query.limit == 0 {
        return Ok(LogPage {
            logs: Vec::new(),
            next_cursor: None,
        });
    }
    let text = text_filter(query.text.as_deref());
    // The cursor narrows the time range too, which prunes whole files.
    let (mut from, mut to) = (query.from_ns, query.to_ns);
    if let Some(c) = cursor {
        match query.order {
            Order::Asc => from = Some(from.map_or(c.ts, |f| f.max(c.ts))),
            Order::Desc => {
                let end = c.ts.saturating_add(1);
                to = Some(to.map_or(end, |t| t.min(end)));
            }
        }
    }
    let mut candidates: Vec<(Arc<Partition>, (i64, i64))> = partitions
        .into_iter()
        .filter(|p| p.overlaps(Kind::Log, from, to))
        .filter_map(|p| p.bounds(Kind::Log).map(|b| (p, b)))
        .collect();
    // Visit the files most likely to hold the first results first, so that the
    // rest can often be skipped once a full page is known.
    match query.order {
        Order::Asc => candidates.sort_by_key(|(_, (min, _))| *min),
        Order::Desc => candidates.sort_by_key(|(_, (_, max))| std::cmp::Reverse(*max)),
    }
    let want = query.limit.saturating_add(1);
    let mut rows: Vec<(Key, LogRecord)> = Vec::new();
    for (partition, (min, max)) in candidates {
        if rows.len() >= want {
            let last = rows[want - 1].0.ts;
            let beyond = match query.order {
                Order::Asc => min > last,
                Order::Desc => max < last,
            };
            if beyond {
                break;
            }
        }
        let scan = Scan {
            query,
            text: &text,
            cursor,
            from,
            to,
            limit: want,
        };
        let found = query_partition(&partition, &scan)?;
        rows.extend(found);
        match query.order {
            Order::Asc => rows.sort_by_key(|(key, _)| *key),
            Order::Desc => rows.sort_by_key(|(key, _)| std::cmp::Reverse(*key)),
        }
        rows.truncate(want);
    }
    let next_cursor = (rows.len() > query.limit).then(|| rows[query.limit - 1].0.encode());
    rows.truncate(query.limit);
    Ok(LogPage {
        logs: rows.into_iter().map(|(_, r)| r).collect(),
        next_cursor,
    })
}

/// Matches of a full-text query up to which the FTS index drives the search (all
/// matches fetched, then sorted by time). Past it, the time index drives it and
/// each row is checked against the matches, which stops after `limit` rows instead
/// of sorting every match of a common word on every page.
const FTS_DRIVEN_MAX: i64 = 10_000;

/// One file's part of a log query.
struct Scan<'a> {
    query: &'a LogQuery,
    text: &'a TextFilter,
    cursor: Option<Key>,
    from: Option<i64>,
    to: Option<i64>,
    limit: usize,
}

impl Scan<'_> {
    /// The SQL for the file of `day` and its arguments. Only fixed fragments enter
    /// the text; everything from the query is bound.
    fn sql(&self, day: i64, fts_driven: bool) -> (String, Vec<Value>) {
        let mut sql = String::from(
            "SELECT id, timestamp_ns, agent_id, source, severity, message, labels, fields FROM logs WHERE 1 = 1",
        );
        let mut args: Vec<Value> = Vec::new();
        let mut push = |clause: &str, values: &[Value]| {
            sql.push_str(clause);
            args.extend_from_slice(values);
        };
        match self.text {
            TextFilter::None => {}
            // `+id` keeps the planner from driving the search by the match list.
            TextFilter::Fts(expr) => push(
                if fts_driven {
                    " AND id IN (SELECT rowid FROM logs_fts WHERE logs_fts MATCH ?)"
                } else {
                    " AND +id IN (SELECT rowid FROM logs_fts WHERE logs_fts MATCH ?)"
                },
                &[Value::Text(expr.clone())],
            ),
            TextFilter::Substring(s) => {
                push(" AND instr(message, ?) > 0", &[Value::Text(s.clone())])
            }
        }
        let query = self.query;
        if let Some(agent) = &query.agent {
            push(" AND agent_id = ?", &[Value::Text(agent.clone())]);
        }
        if let Some(source) = &query.source {
            push(" AND source = ?", &[Value::Text(source.clone())]);
        }
        if let Some(code) = query.max_severity_code {
            push(" AND severity <= ?", &[Value::Integer(i64::from(code))]);
        }
        if let Some(from) = self.from {
            push(" AND timestamp_ns >= ?", &[Value::Integer(from)]);
        }
        if let Some(to) = self.to {
            push(" AND timestamp_ns < ?", &[Value::Integer(to)]);
        }
        if let Some(c) = self.cursor {
            // Rows of other files share a timestamp with the cursor row but sort by day.
            let (ts, id) = (Value::Integer(c.ts), Value::Integer(c.id));
            match (query.order, day.cmp(&c.day)) {
                (Order::Asc, Ordering::Greater) => push(" AND timestamp_ns >= ?", &[ts]),
                (Order::Asc, Ordering::Less) => push(" AND timestamp_ns > ?", &[ts]),
                (Order::Asc, Ordering::Equal) => {
                    push(" AND (timestamp_ns, id) > (?, ?)", &[ts, id])
                }
                (Order::Desc, Ordering::Greater) => push(" AND timestamp_ns < ?", &[ts]),
                (Order::Desc, Ordering::Less) => push(" AND timestamp_ns <= ?", &[ts]),
                (Order::Desc, Ordering::Equal) => {
                    push(" AND (timestamp_ns, id) < (?, ?)", &[ts, id])
                }
            }
        }
        let limit = Value::Integer(i64::try_from(self.limit).unwrap_or(i64::MAX));
        match query.order {
            Order::Asc => push(" ORDER BY timestamp_ns ASC, id ASC LIMIT ?", &[limit]),
            Order::Desc => push(" ORDER BY timestamp_ns DESC, id DESC LIMIT ?", &[limit]),
        }
        (sql, args)
    }
}

/// Whether a full-text query has few enough matches in this file to drive the search.
fn few_matches(conn: &Connection, path: &Path, text: &TextFilter) -> StorageResult<bool> {
    let TextFilter::Fts(expr) = text else {
        return Ok(false);
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT count(*) FROM (SELECT rowid FROM logs_fts WHERE logs_fts MATCH ?1 LIMIT ?2)",
        )
        .map_err(db_at("searching logs", path))?;
    let n: i64 = stmt
        .query_row(params![expr, FTS_DRIVEN_MAX + 1], |r| r.get(0))
        .map_err(db_at("searching logs", path))?;
    Ok(n <= FTS_DRIVEN_MAX)
}

/// The first `limit` matching rows of one file after the cursor.
fn query_partition(partition: &Partition, scan: &Scan<'_>) -> StorageResult<Vec<(Key, LogRecord)>> {
    let day = partition.day;
    partition.with_reader(|conn| {
        let err = || db_at("searching logs", &partition.path);
        let fts_driven = few_matches(conn, &partition.path, scan.text)?;
        let (sql, args) = scan.sql(day, fts_driven);
        let mut stmt = conn.prepare_cached(&sql).map_err(err())?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                let id: i64 = r.get(0)?;
                let ts: i64 = r.get(1)?;
                let severity: Option<i64> = r.get(4)?;
                let labels: String = r.get(6)?;
                let fields: String = r.get(7)?;
                let record = LogRecord {
                    timestamp_ns: ts,
                    agent_id: r.get(2)?,
                    source: r.get(3)?,
                    severity: severity
                        .and_then(|c| u8::try_from(c).ok())
                        .and_then(Severity::from_code)
                        .map(|s| s.as_str().to_string()),
                    message: r.get(5)?,
                    labels: serde_json::from_str::<BTreeMap<String, String>>(&labels)
                        .unwrap_or_default(),
                    fields: serde_json::from_str(&fields).unwrap_or_default(),
                };
                Ok((Key { ts, day, id }, record))
            })
            .map_err(err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn words_become_quoted_phrases() {
        assert_eq!(text_filter(None), TextFilter::None);
        assert_eq!(text_filter(Some("  ")), TextFilter::None);
        assert_eq!(
            text_filter(Some("error")),
            TextFilter::Fts("\"error\"".into())
        );
        assert_eq!(
            text_filter(Some("error: (foo")),
            TextFilter::Fts("\"error:\" AND \"(foo\"".into())
        );
        assert_eq!(
            text_filter(Some("say \"hi\" conn*")),
            TextFilter::Fts("\"say\" AND \"\"\"hi\"\"\" AND \"conn\"*".into())
        );
        assert_eq!(
            text_filter(Some("a :: b")),
            TextFilter::Fts("\"a\" AND \"b\"".into())
        );
        assert_eq!(
            text_filter(Some(" -> ")),
            TextFilter::Substring("->".into())
        );
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let key = Key {
            ts: -5,
            day: 20_000,
            id: 7,
        };
        assert_eq!(Key::decode(&key.encode()).unwrap(), key);
        for bad in ["", "c1.", "c1.1.2", "c1.1.2.3.4", "x.1.2.3", "c1.a.b.c"] {
            assert!(
                matches!(Key::decode(bad), Err(StorageError::BadQuery(_))),
                "{bad}"
            );
        }
    }
}
