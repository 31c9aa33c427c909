//! The line grammar of the Prometheus text exposition format 0.0.4 and of OpenMetrics
//! text 1.0: one line becomes a [`Line`] (a `# TYPE`, a sample, or nothing).
//!
//! The two formats differ in small ways that matter: OpenMetrics timestamps are
//! seconds (with a fraction) where 0.0.4 has integer milliseconds, OpenMetrics ends
//! with `# EOF` and may append an exemplar (` # {labels} value`) to a sample, and
//! OpenMetrics has more types (`info`, `stateset`, `gaugehistogram`, `unknown`).
//! Grouping lines into metric families is [`super::families`]' job.

use monitoring_common::event::Labels;

/// Which text format a body is in (from the response's `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`, also used when nothing is declared.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` header declares; 0.0.4 unless it says OpenMetrics.
    pub fn from_content_type(content_type: Option<&str>) -> Format {
        match content_type {
            Some(ct)
                if ct
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/openmetrics-text") =>
            {
                Format::OpenMetrics
            }
            _ => Format::Prometheus,
        }
    }
}

/// The declared type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyType {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// OpenMetrics `gaugehistogram` (`_gcount`, `_gsum`).
    GaugeHistogram,
    /// `summary`.
    Summary,
    /// OpenMetrics `info` (`_info` samples of value 1).
    Info,
    /// OpenMetrics `stateset` (one sample per state, 0 or 1).
    StateSet,
    /// `untyped` (0.0.4) or `unknown` (OpenMetrics), and samples with no `# TYPE`.
    Untyped,
}

impl FamilyType {
    fn parse(word: &str) -> Option<FamilyType> {
        Some(match word {
            "counter" => FamilyType::Counter,
            "gauge" => FamilyType::Gauge,
            "histogram" => FamilyType::Histogram,
            "gaugehistogram" => FamilyType::GaugeHistogram,
            "summary" => FamilyType::Summary,
            "info" => FamilyType::Info,
            "stateset" => FamilyType::StateSet,
            "untyped" | "unknown" => FamilyType::Untyped,
            _ => return None,
        })
    }
}

/// One sample line: `name{labels} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSample {
    /// The sample's name (`http_requests_total`, `latency_bucket`).
    pub name: String,
    /// Its labels, unescaped.
    pub labels: Labels,
    /// Its value (`NaN` and infinities allowed).
    pub value: f64,
    /// Its timestamp in milliseconds since the Unix epoch, if given.
    pub timestamp_ms: Option<i64>,
}

/// What one line says.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// Empty, a comment, `# HELP` or `# UNIT`: nothing to keep.
    Nothing,
    /// `# TYPE name type`.
    Type(String, FamilyType),
    /// A sample.
    Sample(RawSample),
    /// OpenMetrics `# EOF`: the end of the exposition.
    Eof,
}

/// Parses one line (without its newline).
pub fn parse_line(line: &str, format: Format) -> Result<Line, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if let Some(comment) = line.strip_prefix('#') {
        return parse_comment(comment, format);
    }
    if line.trim().is_empty() {
        return Ok(Line::Nothing);
    }
    parse_sample(line, format).map(Line::Sample)
}

fn parse_comment(comment: &str, format: Format) -> Result<Line, String> {
    let mut words = comment.split_ascii_whitespace();
    match (words.next(), format) {
        (Some("EOF"), Format::OpenMetrics) if words.next().is_none() => Ok(Line::Eof),
        (Some("TYPE"), _) => {
            let name = words.next().ok_or("# TYPE without a metric name")?;
            check_metric_name(name)?;
            let word = words.next().ok_or("# TYPE without a type")?;
            let kind = FamilyType::parse(word).ok_or_else(|| format!("unknown type {word:?}"))?;
            if words.next().is_some() {
                return Err("# TYPE has more than a name and a type".into());
            }
            Ok(Line::Type(name.to_owned(), kind))
        }
        (Some("HELP" | "UNIT"), _) => match words.next() {
            Some(name) => check_metric_name(name).map(|()| Line::Nothing),
            None => Err("# HELP or # UNIT without a metric name".into()),
        },
        // Any other comment is free text.
        _ => Ok(Line::Nothing),
    }
}

/// A cursor over a sample line.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn skip_blanks(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let end = self
            .rest
            .find(|c: char| !keep(c))
            .unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        word
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if (c.is_ascii_alphabetic() || c == '_' || c == ':') && chars.all(is_name_char) => {
            Ok(())
        }
        _ => Err(format!("invalid metric name {name:?}")),
    }
}

fn parse_sample(line: &str, format: Format) -> Result<RawSample, String> {
    let mut cur = Cursor { rest: line };
    cur.skip_blanks();
    let name = cur.take_while(is_name_char);
    if name.is_empty() {
        return Err("a sample line must start with a metric name".into());
    }
    check_metric_name(name)?;
    cur.skip_blanks();
    let labels = if cur.eat('{') {
        parse_labels(&mut cur)?
    } else {
        Labels::new()
    };
    cur.skip_blanks();
    let value = cur.take_while(|c| !c.is_ascii_whitespace());
    if value.is_empty() {
        return Err(format!("sample {name:?} has no value"));
    }
    let value = parse_float(value).ok_or_else(|| format!("invalid value {value:?}"))?;
    cur.skip_blanks();
    let mut timestamp_ms = None;
    if !cur.rest.is_empty() && !cur.rest.starts_with('#') {
        let ts = cur.take_while(|c| !c.is_ascii_whitespace());
        timestamp_ms = Some(parse_timestamp(ts, format)?);
        cur.skip_blanks();
    }
    match (cur.rest.is_empty(), format) {
        (true, _) => {}
        // An exemplar: `# {trace_id="..."} 0.5 [ts]`; not kept.
        (false, Format::OpenMetrics) if cur.rest.starts_with("# {") => {}
        (false, _) => return Err(format!("unexpected {:?} after the value", cur.rest)),
    }
    Ok(RawSample {
        name: name.to_owned(),
        labels,
        value,
        timestamp_ms,
    })
}

/// Parses `a="x",b="y"}` (the `{` already eaten); a trailing comma is allowed.
fn parse_labels(cur: &mut Cursor<'_>) -> Result<Labels, String> {
    let mut labels = Labels::new();
    loop {
        cur.skip_blanks();
        if cur.eat('}') {
            return Ok(labels);
        }
        let name = cur.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("invalid label name at {:?}", truncate(cur.rest)));
        }
        cur.skip_blanks();
        if !cur.eat('=') {
            return Err(format!("label {name:?} has no '='"));
        }
        cur.skip_blanks();
        if !cur.eat('"') {
            return Err(format!("the value of label {name:?} is not quoted"));
        }
        let value = parse_label_value(cur).map_err(|e| format!("label {name:?}: {e}"))?;
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name:?} appears twice"));
        }
        cur.skip_blanks();
        if !cur.eat(',') {
            cur.skip_blanks();
            if cur.eat('}') {
                return Ok(labels);
            }
            return Err(format!(
                "expected ',' or '}}' after label {name:?}, found {:?}",
                truncate(cur.rest)
            ));
        }
    }
}

/// Reads an escaped label value up to its closing quote (`\\`, `\"` and `\n`).
fn parse_label_value(cur: &mut Cursor<'_>) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = cur.rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                cur.rest = &cur.rest[i + 1..];
                return Ok(out);
            }
            '\\' => match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, other)) => return Err(format!("invalid escape \\{other}")),
                None => break,
            },
            _ => out.push(c),
        }
    }
    Err("unterminated quoted value".into())
}

/// A sample value: a Go-style float, `+Inf`, `-Inf` or `NaN` (any case).
pub fn parse_float(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        "+inf" | "inf" => return Some(f64::INFINITY),
        "-inf" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    // Rust's parser also takes "infinity" and the like, handled above; what remains
    // must look like a number.
    if !text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
    {
        return None;
    }
    text.parse().ok()
}

/// Milliseconds since the epoch: 0.0.4 has integer milliseconds, OpenMetrics
/// (fractional) seconds.
fn parse_timestamp(text: &str, format: Format) -> Result<i64, String> {
    let bad = || format!("invalid timestamp {text:?}");
    match format {
        Format::Prometheus => text.parse::<i64>().map_err(|_| bad()),
        Format::OpenMetrics => {
            let secs = parse_float(text)
                .filter(|s| s.is_finite())
                .ok_or_else(bad)?;
            let ms = (secs * 1000.0).round();
            if ms.abs() > i64::MAX as f64 / 2.0 {
                return Err(bad());
            }
            Ok(ms as i64)
        }
    }
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(20) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}
