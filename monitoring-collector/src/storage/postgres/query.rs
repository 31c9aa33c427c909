//! Log search: filters, the meaning of `q` from `storage::text`, and keyset paging.
//!
//! Results are ordered by `(timestamp_ns, id)`, unique and stable (rows are never
//! updated, and `id` comes from one sequence across partitions), so a cursor
//! holding the last key of a page resumes exactly after it however many records
//! share a timestamp. Words are matched with `~` against the lowercased message,
//! the regular expression bound as a parameter (a trigram index serves it where
//! `pg_trgm` exists); text without a token is a plain `strpos` substring.

use std::collections::BTreeMap;

use monitoring_common::Severity;
use serde_json::Value as Json;

use super::pool::Conn;
use super::values::{Args, text};
use crate::storage::text::{self, TextQuery};
use crate::storage::{LogPage, LogQuery, LogRecord, Order, StorageError};

/// Where a record sits in the order of results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    ts: i64,
    id: i64,
}

impl Key {
    /// The opaque cursor text for this key.
    fn encode(self) -> String {
        format!("p1.{}.{}", self.ts, self.id)
    }

    /// Reads a cursor made by [`Key::encode`]; anything else is a bad query.
    pub(crate) fn decode(text: &str) -> Result<Key, StorageError> {
        let bad = || StorageError::BadQuery(format!("invalid cursor {text:?}"));
        let mut parts = text.strip_prefix("p1.").ok_or_else(bad)?.split('.');
        let mut next = || -> Result<i64, StorageError> {
            parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)
        };
        let key = Key {
            ts: next()?,
            id: next()?,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(key)
    }
}

/// The statement for `query` after `cursor`, fetching `limit + 1` rows to learn
/// whether there is a next page. Only fixed fragments enter the text.
fn build(message_expr: &str, query: &LogQuery, cursor: Option<Key>) -> (String, Args) {
    let mut sql = String::from(
        "SELECT id, timestamp_ns, agent_id, source, severity, message, labels, fields
         FROM logs WHERE TRUE",
    );
    let mut args = Args::default();
    match text::parse(query.text.as_deref()) {
        TextQuery::None => {}
        TextQuery::Words(words) => {
            for word in words {
                let re = args.bind(word.regex());
                sql.push_str(&format!(" AND {message_expr} ~ {re}"));
            }
        }
        TextQuery::Substring(s) => {
            let s = args.bind(text(&s).into_owned());
            sql.push_str(&format!(" AND strpos(message, {s}) > 0"));
        }
    }
    if let Some(agent) = &query.agent {
        let a = args.bind(text(agent).into_owned());
        sql.push_str(&format!(" AND agent_id = {a}"));
    }
    if let Some(source) = &query.source {
        let s = args.bind(text(source).into_owned());
        sql.push_str(&format!(" AND source = {s}"));
    }
    if let Some(code) = query.max_severity_code {
        let c = args.bind(i16::from(code));
        sql.push_str(&format!(" AND severity <= {c}"));
    }
    if let Some(from) = query.from_ns {
        let f = args.bind(from);
        sql.push_str(&format!(" AND timestamp_ns >= {f}"));
    }
    if let Some(to) = query.to_ns {
        let t = args.bind(to);
        sql.push_str(&format!(" AND timestamp_ns < {t}"));
    }
    let (cmp, dir) = match query.order {
        Order::Asc => (">", "ASC"),
        Order::Desc => ("<", "DESC"),
    };
    if let Some(c) = cursor {
        let (ts, id) = (args.bind(c.ts), args.bind(c.id));
        sql.push_str(&format!(" AND (timestamp_ns, id) {cmp} ({ts}, {id})"));
    }
    let limit = args.bind(i64::try_from(query.limit.saturating_add(1)).unwrap_or(i64::MAX));
    sql.push_str(&format!(
        " ORDER BY timestamp_ns {dir}, id {dir} LIMIT {limit}"
    ));
    (sql, args)
}

/// Runs a log query (its cursor already checked: see [`Key::decode`]).
pub(crate) fn query_logs(
    conn: &mut Conn,
    message_expr: &str,
    query: &LogQuery,
    cursor: Option<Key>,
) -> Result<LogPage, postgres::Error> {
    if query.limit == 0 {
        return Ok(LogPage {
            logs: Vec::new(),
            next_cursor: None,
        });
    }
    let (sql, args) = build(message_expr, query, cursor);
    let statement = conn.prepare(&sql)?;
    let rows = conn.client.query(&statement, &args.refs())?;
    let mut found: Vec<(Key, LogRecord)> = Vec::with_capacity(rows.len());
    for r in rows {
        let severity: Option<i16> = r.try_get(4)?;
        let labels: Json = r.try_get(6)?;
        let fields: Json = r.try_get(7)?;
        let key = Key {
            id: r.try_get(0)?,
            ts: r.try_get(1)?,
        };
        found.push((
            key,
            LogRecord {
                timestamp_ns: key.ts,
                agent_id: r.try_get(2)?,
                source: r.try_get(3)?,
                severity: severity
                    .and_then(|c| u8::try_from(c).ok())
                    .and_then(Severity::from_code)
                    .map(|s| s.as_str().to_string()),
                message: r.try_get(5)?,
                labels: serde_json::from_value::<BTreeMap<String, String>>(labels)
                    .unwrap_or_default(),
                fields: match fields {
                    Json::Object(map) => map,
                    _ => serde_json::Map::new(),
                },
            },
        ));
    }
    let next_cursor = (found.len() > query.limit).then(|| found[query.limit - 1].0.encode());
    found.truncate(query.limit);
    Ok(LogPage {
        logs: found.into_iter().map(|(_, r)| r).collect(),
        next_cursor,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let key = Key { ts: -5, id: 7 };
        assert_eq!(Key::decode(&key.encode()).unwrap(), key);
        for bad in [
            "", "p1.", "p1.1", "p1.1.2.3", "c1.1.2.3", "p1.a.b", "p1.1.x",
        ] {
            assert!(
                matches!(Key::decode(bad), Err(StorageError::BadQuery(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn user_text_is_only_ever_bound() {
        let query = LogQuery {
            text: Some("it's'; DROP TABLE logs; --".into()),
            agent: Some("a'b".into()),
            source: Some("$1".into()),
            limit: 10,
            ..LogQuery::default()
        };
        let (sql, args) = build("lower(message)", &query, Some(Key { ts: 1, id: 2 }));
        assert!(!sql.contains("DROP") && !sql.contains("a'b"), "{sql}");
        assert_eq!(args.refs().len(), 4 + 1 + 1 + 2 + 1, "{sql}");
        assert!(
            sql.ends_with("ORDER BY timestamp_ns DESC, id DESC LIMIT $9"),
            "{sql}"
        );
    }
}
