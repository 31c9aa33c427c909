//! The severity of a log line read from its text, for the agent's `min_severity`
//! filter and the collector's classification.
//!
//! Two passes over the start of the line, no allocation:
//! 1. An explicit level wins: a level word in capitals (`ERROR`, `WARN`, `INFO`),
//!    in brackets or after `level=` (`[error]`, `<warn>`, `level=info`), or a
//!    single-letter Android level after the pid and tid fields (`1702 2395 D Tag:`).
//!    So `INFO instruction cache parity error corrected` is info, not an error.
//! 2. Otherwise the most severe keyword found anywhere in the first
//!    [`SCAN_BYTES`]: emerg, alert, crit/critical/fatal/panic, err/error/exception,
//!    fail/failed/failure, warn/warning, and their case variants, unless the word is
//!    part of a name (joined by `-`, `_`, `/` or a digit: `libgpg-error-dev`,
//!    `error_count=0`, `non-fatal`).
//!
//! A line with neither has no severity (`None`): the caller decides what that means.

use crate::event::Severity;

/// How much of a line is looked at: levels and keywords sit near the start.
pub const SCAN_BYTES: usize = 512;

/// The severity `line` states or suggests, if any.
pub fn detect(line: &str) -> Option<Severity> {
    let text = head(line);
    explicit(text).or_else(|| keywords(text))
}

fn head(line: &str) -> &str {
    if line.len() <= SCAN_BYTES {
        return line;
    }
    let mut end = SCAN_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

/// The ASCII words of `text` with the byte before and after each.
fn words(text: &str) -> impl Iterator<Item = (u8, &str, u8)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() && !bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        if i >= bytes.len() {
            return None;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let before = if start == 0 { b' ' } else { bytes[start - 1] };
        let after = bytes.get(i).copied().unwrap_or(b' ');
        Some((before, &text[start..i], after))
    })
}

/// A level name (not a mere keyword): what a logger writes as the level.
fn level_word(word: &str) -> Option<Severity> {
    let mut lower = [0u8; 11];
    if word.len() > lower.len() {
        return None;
    }
    for (d, s) in lower.iter_mut().zip(word.bytes()) {
        *d = s.to_ascii_lowercase();
    }
    Some(match &lower[..word.len()] {
        b"emerg" | b"emergency" => Severity::Emergency,
        b"alert" => Severity::Alert,
        b"crit" | b"critical" | b"fatal" | b"panic" => Severity::Critical,
        b"err" | b"error" | b"severe" => Severity::Error,
        b"warn" | b"warning" => Severity::Warning,
        b"notice" => Severity::Notice,
        b"info" | b"information" => Severity::Info,
        b"debug" | b"fine" => Severity::Debug,
        b"trace" | b"finest" | b"verbose" => Severity::Trace,
        _ => return None,
    })
}

fn explicit(text: &str) -> Option<Severity> {
    if let Some(level) = android_level(text) {
        return Some(level);
    }
    for (before, word, after) in words(text) {
        let Some(level) = level_word(word) else {
            continue;
        };
        let capitals = word.len() > 1 && word.bytes().all(|b| b.is_ascii_uppercase());
        let bracketed = matches!((before, after), (b'[', b']') | (b'<', b'>') | (b'(', b')'));
        let assigned = before == b'=' && text_before_is_level_key(text, word);
        if capitals || bracketed || assigned {
            return Some(level);
        }
    }
    None
}

/// Whether `word` (a slice of `text`) follows `level=` or `severity=`.
fn text_before_is_level_key(text: &str, word: &str) -> bool {
    let offset = word.as_ptr() as usize - text.as_ptr() as usize;
    let before = text[..offset.saturating_sub(1)].to_ascii_lowercase();
    before.ends_with("level") || before.ends_with("severity") || before.ends_with("lvl")
}

/// `03-17 16:13:38.811  1702  2395 D WindowManager: ...`: a lone V/D/I/W/E/F/A after
/// two numeric fields (pid and tid), in the first few fields.
fn android_level(text: &str) -> Option<Severity> {
    let mut numeric_run = 0;
    for field in text.split_ascii_whitespace().take(6) {
        if numeric_run >= 2 && field.len() == 1 {
            return match field.as_bytes()[0] {
                b'V' => Some(Severity::Trace),
                b'D' => Some(Severity::Debug),
                b'I' => Some(Severity::Info),
                b'W' => Some(Severity::Warning),
                b'E' => Some(Severity::Error),
                b'F' | b'A' => Some(Severity::Critical),
                _ => None,
            };
        }
        if field.bytes().all(|b| b.is_ascii_digit()) {
            numeric_run += 1;
        } else {
            numeric_run = 0;
        }
    }
    None
}

fn keywords(text: &str) -> Option<Severity> {
    let mut best: Option<Severity> = None;
    for (before, word, after) in words(text) {
        if joins(before) || joins(after) {
            continue;
        }
        let found = level_word(word)
            .filter(|s| *s <= Severity::Warning)
            .or_else(|| keyword(word));
        if let Some(found) = found
            && best.is_none_or(|b| found < b)
        {
            best = Some(found);
            if found == Severity::Emergency {
                break;
            }
        }
    }
    best
}

/// Whether a byte next to a word makes the word part of a longer name.
fn joins(byte: u8) -> bool {
    matches!(byte, b'-' | b'_' | b'/') || byte.is_ascii_digit()
}

/// Words that suggest a severity without being a level name.
fn keyword(word: &str) -> Option<Severity> {
    let mut lower = [0u8; 10];
    if word.len() > lower.len() {
        return None;
    }
    for (d, s) in lower.iter_mut().zip(word.bytes()) {
        *d = s.to_ascii_lowercase();
    }
    match &lower[..word.len()] {
        b"errors" | b"exception" | b"fail" | b"failed" | b"fails" | b"failure" | b"failures" => {
            Some(Severity::Error)
        }
        b"warnings" => Some(Severity::Warning),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_levels_win_over_keywords() {
        let cases = [
            (
                "2015-10-18 18:01:47,978 INFO [main] MRAppMaster: Created",
                Some(Severity::Info),
            ),
            (
                "RAS KERNEL INFO instruction cache parity error corrected",
                Some(Severity::Info),
            ),
            (
                "[Sun Dec 04 04:47:44 2005] [error] mod_jk child in error state 6",
                Some(Severity::Error),
            ),
            (
                "[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok",
                Some(Severity::Notice),
            ),
            (
                "03-17 16:13:38.811  1702  2395 D WindowManager: freezing",
                Some(Severity::Debug),
            ),
            (
                "03-17 16:13:38.811  1702  2395 E AndroidRuntime: FATAL",
                Some(Severity::Error),
            ),
            (
                "ts=2024 level=warn msg=\"disk slow\"",
                Some(Severity::Warning),
            ),
            (
                "{\"severity\":\"x\", \"lvl\":1} level=error",
                Some(Severity::Error),
            ),
            (
                "17/06/09 20:10:40 WARN storage.BlockManager: lost",
                Some(Severity::Warning),
            ),
            (
                "2015-07-29 17:41:44,747 - INFO  [QuorumPeer] - Notification",
                Some(Severity::Info),
            ),
            (
                "Dec 10 kernel: <crit> temperature above threshold",
                Some(Severity::Critical),
            ),
            (
                "java.util.logging SEVERE: out of memory",
                Some(Severity::Error),
            ),
            ("Processed 3 A records", None),
        ];
        for (line, want) in cases {
            assert_eq!(detect(line), want, "{line}");
        }
    }

    #[test]
    fn keywords_when_no_level_is_stated() {
        let cases = [
            (
                "sshd(pam_unix)[19939]: authentication failure; logname=",
                Some(Severity::Error),
            ),
            (
                "reverse mapping checking getaddrinfo failed - POSSIBLE BREAK-IN",
                Some(Severity::Error),
            ),
            (
                "kernel: Warning: unable to open an initial console",
                Some(Severity::Warning),
            ),
            (
                "nginx: an error occurred, then a panic",
                Some(Severity::Critical),
            ),
            ("java.lang.NullPointerException at Foo.bar", None),
            ("Unhandled exception in thread main", Some(Severity::Error)),
            ("Accepted password for root from 1.2.3.4", None),
            ("the terrorist threat level is low", None),
            ("informational: nothing happened", None),
            (
                "2025-06-24 10:00:01 status installed libgpg-error-dev:amd64 1.46-1",
                None,
            ),
            ("retries done, error_count=0", None),
            ("non-fatal: cache miss", None),
            (
                "open /var/log/nginx/error.log failed",
                Some(Severity::Error),
            ),
            ("job ended: error.", Some(Severity::Error)),
        ];
        for (line, want) in cases {
            assert_eq!(detect(line), want, "{line}");
        }
    }

    #[test]
    fn long_lines_are_scanned_at_their_start_only() {
        let line = format!("{} error", "x ".repeat(SCAN_BYTES));
        assert_eq!(detect(&line), None);
        let multibyte = "é".repeat(SCAN_BYTES);
        assert_eq!(detect(&multibyte), None);
    }

    /// The loghub samples state their level in a known field: the detected
    /// severity must agree with it on every line.
    #[test]
    fn every_loghub_line_with_a_level_field_is_classified_by_it() {
        use std::collections::BTreeMap;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/loghub");
        // (file, expected count per severity)
        let cases: [(&str, &[(Severity, usize)]); 6] = [
            (
                "Apache_2k.log",
                &[(Severity::Error, 595), (Severity::Notice, 1405)],
            ),
            (
                "Hadoop_2k.log",
                &[
                    (Severity::Critical, 2),
                    (Severity::Error, 150),
                    (Severity::Warning, 808),
                    (Severity::Info, 1040),
                ],
            ),
            (
                "HDFS_2k.log",
                &[(Severity::Warning, 80), (Severity::Info, 1920)],
            ),
            ("Spark_2k.log", &[(Severity::Info, 2000)]),
            (
                "Zookeeper_2k.log",
                &[
                    (Severity::Error, 13),
                    (Severity::Warning, 1318),
                    (Severity::Info, 669),
                ],
            ),
            (
                "Android_2k.log",
                &[
                    (Severity::Error, 3),
                    (Severity::Warning, 170),
                    (Severity::Info, 920),
                    (Severity::Debug, 650),
                    (Severity::Trace, 257),
                ],
            ),
        ];
        for (file, want) in cases {
            let text =
                std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            let mut got: BTreeMap<Option<Severity>, usize> = BTreeMap::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                *got.entry(detect(line)).or_default() += 1;
            }
            let want: BTreeMap<Option<Severity>, usize> =
                want.iter().map(|(s, n)| (Some(*s), *n)).collect();
            assert_eq!(got, want, "{file}");
        }
    }
}
