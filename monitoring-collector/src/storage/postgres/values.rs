//! Values on their way into and out of PostgreSQL: bound parameters of queries
//! built from optional filters, text PostgreSQL can hold, unsigned numbers.

use std::borrow::Cow;
use std::collections::BTreeMap;

use monitoring_common::Value;
use monitoring_common::event::{Fields, Labels};
use postgres::types::ToSql;

/// The bound parameters of a statement being built: [`Args::bind`] keeps a value
/// and gives its placeholder, so that no value ever enters the SQL text.
#[derive(Default)]
pub(crate) struct Args {
    values: Vec<Box<dyn ToSql + Sync>>,
}

impl Args {
    /// Keeps `value`; returns its placeholder (`$n`).
    pub(crate) fn bind(&mut self, value: impl ToSql + Sync + 'static) -> String {
        self.values.push(Box::new(value));
        format!("${}", self.values.len())
    }

    /// The values, in placeholder order.
    pub(crate) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values.iter().map(|v| &**v as _).collect()
    }
}

/// The replacement for NUL, which PostgreSQL text and jsonb cannot hold.
const NUL_STANDIN: &str = "\u{FFFD}";

/// `s` with every NUL replaced by U+FFFD. Stored text and query text pass through
/// this alike, so a search for text with a NUL finds what was stored for it.
pub(crate) fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', NUL_STANDIN))
    } else {
        Cow::Borrowed(s)
    }
}

/// Labels without NUL in keys or values (borrowed in the usual case of none).
pub(crate) fn labels(labels: &Labels) -> Cow<'_, Labels> {
    if labels
        .iter()
        .any(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        Cow::Owned(
            labels
                .iter()
                .map(|(k, v)| (text(k).into_owned(), text(v).into_owned()))
                .collect(),
        )
    } else {
        Cow::Borrowed(labels)
    }
}

/// Fields without NUL in keys or string values.
pub(crate) fn fields(fields: &Fields) -> Cow<'_, Fields> {
    let has_nul = |(k, v): (&String, &Value)| {
        k.contains('\0') || matches!(v, Value::Str(s) if s.contains('\0'))
    };
    if !fields.iter().any(has_nul) {
        return Cow::Borrowed(fields);
    }
    let cleaned: BTreeMap<String, Value> = fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Str(s) => Value::Str(text(s).into_owned()),
                other => other.clone(),
            };
            (text(k).into_owned(), v)
        })
        .collect();
    Cow::Owned(cleaned)
}

/// Stream ids and sequences are stored bit for bit in `bigint`.
pub(crate) fn as_sql(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

/// Counters past `i64::MAX` saturate (as in the sqlite store).
pub(crate) fn saturate(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Stored counters are never negative.
pub(crate) fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_replaced_everywhere_and_only_then_copied() {
        assert!(matches!(text("plain"), Cow::Borrowed(_)));
        assert_eq!(text("a\0b"), "a\u{FFFD}b");
        let clean = Labels::from([("k".to_string(), "v".to_string())]);
        assert!(matches!(labels(&clean), Cow::Borrowed(_)));
        let dirty = Labels::from([("k\0".to_string(), "v\0".to_string())]);
        assert_eq!(
            labels(&dirty).into_owned(),
            Labels::from([("k\u{FFFD}".to_string(), "v\u{FFFD}".to_string())])
        );
        let f = Fields::from([
            ("n".to_string(), Value::Int(1)),
            ("s".to_string(), Value::Str("x\0".into())),
        ]);
        let cleaned = fields(&f).into_owned();
        assert_eq!(cleaned["s"], Value::Str("x\u{FFFD}".into()));
        assert_eq!(cleaned["n"], Value::Int(1));
        assert_eq!(as_sql(u64::MAX), -1);
        assert_eq!(saturate(u64::MAX), i64::MAX);
        assert_eq!(unsigned(-5), 0);
    }
}
