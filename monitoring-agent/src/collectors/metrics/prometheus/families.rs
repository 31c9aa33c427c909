//! From exposition lines to metric samples: groups the `_bucket`, `_sum` and
//! `_count` lines of a histogram (and the quantiles of a summary) into one value per
//! label set, using the `# TYPE` lines, and checks what the formats require.
//!
//! A malformed exposition is an error naming its line: the scrape fails as a whole
//! rather than shipping a histogram without its buckets.

use std::collections::{HashMap, HashSet};

use monitoring_common::event::{Labels, MetricValue};

use super::exposition::{FamilyType, Format, Line, RawSample, parse_float, parse_line};

/// One metric sample read from an exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name: the sample's own name for counters, gauges and untyped
    /// metrics (`http_requests_total`), the family name for histograms and summaries.
    pub name: String,
    /// The labels, without `le` or `quantile` for histograms and summaries.
    pub labels: Labels,
    /// The value; untyped, info and stateset samples are gauges.
    pub value: MetricValue,
    /// Milliseconds since the epoch, when the exposition gave a timestamp.
    pub timestamp_ms: Option<i64>,
}

/// Why an exposition was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExpositionError {
    /// A line does not follow the format.
    #[error("line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// More samples than the configured limit.
    #[error("more than {limit} samples (sample_limit)")]
    TooManySamples {
        /// The limit.
        limit: usize,
    },
    /// An OpenMetrics exposition without its final `# EOF`: the body was cut short.
    #[error("OpenMetrics exposition does not end with # EOF (truncated?)")]
    MissingEof,
}

/// A histogram or summary being assembled from its lines.
#[derive(Debug)]
struct Group {
    name: String,
    labels: Labels,
    kind: FamilyType,
    timestamp_ms: Option<i64>,
    count: Option<f64>,
    sum: f64,
    /// `(le, cumulative count)` or `(quantile, value)`.
    points: Vec<(f64, f64)>,
}

/// Where each output sample comes from, in order of first appearance.
enum Slot {
    Done(Sample),
    Group(usize),
}

/// Parses a whole exposition into samples, in the order they first appear.
pub fn parse(
    text: &str,
    format: Format,
    sample_limit: usize,
) -> Result<Vec<Sample>, ExpositionError> {
    let mut types: HashMap<String, FamilyType> = HashMap::new();
    let mut families_with_samples: HashSet<String> = HashSet::new();
    let mut slots: Vec<Slot> = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut group_index: HashMap<(String, Labels), usize> = HashMap::new();
    let mut raw_samples = 0usize;
    let mut eof = false;

    for (index, line) in text.split('\n').enumerate() {
        let number = index + 1;
        let err = |message: String| ExpositionError::Line {
            line: number,
            message,
        };
        if eof {
            if line.trim().is_empty() {
                continue;
            }
            return Err(err("content after # EOF".into()));
        }
        match parse_line(line, format).map_err(err)? {
            Line::Nothing => {}
            Line::Eof => eof = true,
            Line::Type(name, kind) => {
                if families_with_samples.contains(&name) {
                    return Err(err(format!("# TYPE for {name:?} after its samples")));
                }
                if types.insert(name.clone(), kind).is_some() {
                    return Err(err(format!("second # TYPE for {name:?}")));
                }
            }
            Line::Sample(raw) => {
                raw_samples += 1;
                if raw_samples > sample_limit {
                    return Err(ExpositionError::TooManySamples {
                        limit: sample_limit,
                    });
                }
                let (family, kind, suffix) = family_of(&raw.name, &types);
                families_with_samples.insert(family.to_owned());
                match grouped_part(kind, suffix) {
                    None => slots.push(Slot::Done(plain(raw, kind))),
                    Some(part) => {
                        let family = family.to_owned();
                        add_to_group(
                            raw,
                            family,
                            kind,
                            part,
                            &mut groups,
                            &mut group_index,
                            &mut slots,
                        )
                        .map_err(err)?;
                    }
                }
            }
        }
    }
    if format == Format::OpenMetrics && !eof {
        return Err(ExpositionError::MissingEof);
    }
    let mut groups: Vec<Option<Group>> = groups.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        match slot {
            Slot::Done(sample) => out.push(sample),
            Slot::Group(i) => {
                if let Some(group) = groups.get_mut(i).and_then(Option::take) {
                    out.push(finish(group));
                }
            }
        }
    }
    Ok(out)
}

/// The family a sample belongs to, its type and the suffix that names its part.
fn family_of<'a>(
    name: &'a str,
    types: &HashMap<String, FamilyType>,
) -> (&'a str, FamilyType, &'static str) {
    const SUFFIXES: [&str; 8] = [
        "_bucket", "_count", "_sum", "_total", "_created", "_gcount", "_gsum", "_info",
    ];
    for suffix in SUFFIXES {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some(&kind) = types.get(base)
            && accepts(kind, suffix)
        {
            return (base, kind, suffix);
        }
    }
    match types.get(name) {
        Some(&kind) if accepts(kind, "") => (name, kind, ""),
        _ => (name, FamilyType::Untyped, ""),
    }
}

/// Whether a family of type `kind` has samples named with `suffix`.
fn accepts(kind: FamilyType, suffix: &str) -> bool {
    match kind {
        FamilyType::Counter => matches!(suffix, "" | "_total" | "_created"),
        FamilyType::Histogram => matches!(suffix, "_bucket" | "_count" | "_sum" | "_created"),
        FamilyType::GaugeHistogram => matches!(suffix, "_bucket" | "_gcount" | "_gsum"),
        FamilyType::Summary => matches!(suffix, "" | "_count" | "_sum" | "_created"),
        FamilyType::Info => matches!(suffix, "" | "_info"),
        FamilyType::Gauge | FamilyType::StateSet | FamilyType::Untyped => suffix.is_empty(),
    }
}

/// Which part of a histogram or summary a sample is; `None` for a sample that stands
/// alone (`_created` included: a creation time, kept as a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Point,
    Count,
    Sum,
}

fn grouped_part(kind: FamilyType, suffix: &str) -> Option<Part> {
    match (kind, suffix) {
        (FamilyType::Histogram | FamilyType::GaugeHistogram, "_bucket") => Some(Part::Point),
        (FamilyType::Summary, "") => Some(Part::Point),
        (
            FamilyType::Histogram | FamilyType::GaugeHistogram | FamilyType::Summary,
            "_count" | "_gcount",
        ) => Some(Part::Count),
        (
            FamilyType::Histogram | FamilyType::GaugeHistogram | FamilyType::Summary,
            "_sum" | "_gsum",
        ) => Some(Part::Sum),
        _ => None,
    }
}

fn plain(raw: RawSample, kind: FamilyType) -> Sample {
    let value = match kind {
        FamilyType::Counter if !raw.name.ends_with("_created") => {
            MetricValue::Counter { value: raw.value }
        }
        _ => MetricValue::Gauge { value: raw.value },
    };
    Sample {
        name: raw.name,
        labels: raw.labels,
        value,
        timestamp_ms: raw.timestamp_ms,
    }
}

fn add_to_group(
    mut raw: RawSample,
    family: String,
    kind: FamilyType,
    part: Part,
    groups: &mut Vec<Group>,
    index: &mut HashMap<(String, Labels), usize>,
    slots: &mut Vec<Slot>,
) -> Result<(), String> {
    let point_label = if kind == FamilyType::Summary {
        "quantile"
    } else {
        "le"
    };
    let point = if part == Part::Point {
        let text = raw
            .labels
            .remove(point_label)
            .ok_or_else(|| format!("{:?} has no {point_label:?} label", raw.name))?;
        let at = parse_float(&text)
            .filter(|v| !v.is_nan())
            .ok_or_else(|| format!("{:?}: invalid {point_label} {text:?}", raw.name))?;
        Some(at)
    } else {
        None
    };
    let key = (family, raw.labels);
    let i = match index.get(&key) {
        Some(&i) => i,
        None => {
            let i = groups.len();
            groups.push(Group {
                name: key.0.clone(),
                labels: key.1.clone(),
                kind,
                timestamp_ms: raw.timestamp_ms,
                count: None,
                sum: 0.0,
                points: Vec::new(),
            });
            index.insert(key, i);
            slots.push(Slot::Group(i));
            i
        }
    };
    let group = &mut groups[i];
    match (part, point) {
        (Part::Point, Some(at)) => {
            if kind != FamilyType::Summary && !(raw.value >= 0.0 && raw.value.is_finite()) {
                return Err(format!("bucket count {} is not a count", raw.value));
            }
            group.points.push((at, raw.value));
        }
        (Part::Count, _) => {
            if !(raw.value >= 0.0 && raw.value.is_finite()) {
                return Err(format!("count {} is not a count", raw.value));
            }
            group.count = Some(raw.value);
        }
        (Part::Sum, _) | (Part::Point, None) => group.sum = raw.value,
    }
    Ok(())
}

fn finish(mut group: Group) -> Sample {
    group.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let value = if group.kind == FamilyType::Summary {
        MetricValue::Summary {
            count: as_count(group.count.unwrap_or(0.0)),
            sum: group.sum,
            quantiles: group.points,
        }
    } else {
        // Without a `_count` line, the +Inf bucket (or the widest one) holds it.
        let count = group
            .count
            .or_else(|| group.points.last().map(|p| p.1))
            .unwrap_or(0.0);
        MetricValue::Histogram {
            count: as_count(count),
            sum: group.sum,
            buckets: group
                .points
                .into_iter()
                .map(|(le, n)| (le, as_count(n)))
                .collect(),
        }
    };
    Sample {
        name: group.name,
        labels: group.labels,
        value,
        timestamp_ms: group.timestamp_ms,
    }
}

/// Counts are written as floats (`1.5e+06`); checked finite and non-negative where
/// read (a float too large for u64 saturates).
fn as_count(value: f64) -> u64 {
    value.round() as u64
}
