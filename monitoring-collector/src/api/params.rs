//! Strict query-string parsing shared by the handlers.
//!
//! Unknown parameters and repeats of single-valued ones are errors: a misspelt
//! `severty=error` silently returning every log would be worse than a 400. Empty
//! values (`q=`) count as absent, as HTML forms send them.

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;

use super::AppError;
use super::time::{parse_duration, parse_time};

/// The query string of one request.
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Checks the parameters against the names an endpoint takes; `repeatable` names
    /// may appear more than once.
    pub(crate) fn parse(
        query: Result<Query<Vec<(String, String)>>, QueryRejection>,
        allowed: &[&str],
        repeatable: &[&str],
    ) -> Result<Params, AppError> {
        let Query(pairs) =
            query.map_err(|e| AppError::BadRequest(format!("bad query string: {e}")))?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) && !repeatable.contains(&name.as_str()) {
                return Err(AppError::BadRequest(format!(
                    "unknown query parameter `{name}`; this endpoint takes {}",
                    allowed
                        .iter()
                        .chain(repeatable)
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if !repeatable.contains(&name.as_str()) && pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(AppError::BadRequest(format!(
                    "query parameter `{name}` is given more than once"
                )));
            }
        }
        Ok(Params { pairs })
    }

    /// The value of a single-valued parameter, if given and not empty.
    pub(crate) fn one(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every non-empty value of a repeatable parameter.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// A time parameter (RFC 3339 or Unix ms) in ns.
    pub(crate) fn time(&self, name: &str) -> Result<Option<i64>, AppError> {
        self.one(name)
            .map(|v| parse_time(v).map_err(|e| AppError::BadRequest(format!("`{name}`: {e}"))))
            .transpose()
    }

    /// A duration parameter in ns.
    pub(crate) fn duration(&self, name: &str) -> Result<Option<i64>, AppError> {
        self.one(name)
            .map(|v| parse_duration(v).map_err(|e| AppError::BadRequest(format!("`{name}`: {e}"))))
            .transpose()
    }

    /// A whole-number parameter within `min..=max`.
    pub(crate) fn number(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, AppError> {
        self.one(name)
            .map(|v| match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(AppError::BadRequest(format!(
                    "`{name}`: {v:?} is not a whole number between {min} and {max}"
                ))),
            })
            .transpose()
    }

    /// Optional `from` and `to` (RFC 3339 or Unix ms) in ns; `from` must come first.
    pub(crate) fn time_range(&self) -> Result<(Option<i64>, Option<i64>), AppError> {
        let from = self.time("from")?;
        let to = self.time("to")?;
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            return Err(AppError::BadRequest("`from` must be before `to`".into()));
        }
        Ok((from, to))
    }

    /// `limit`: `default` when absent, larger values clamped to `max`.
    pub(crate) fn limit(&self, default: u64, max: u64) -> Result<usize, AppError> {
        let limit = self
            .number("limit", 1, u64::MAX)?
            .unwrap_or(default)
            .min(max);
        Ok(usize::try_from(limit).unwrap_or(usize::MAX))
    }
}
