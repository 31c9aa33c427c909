//! Multiline merging: consecutive lines of one file that belong together (a Java or
//! Python stack trace, a wrapped message) become one event.
//!
//! A line either starts a new event or continues the pending one, decided by
//! `[collectors.logs.multiline]` `start_pattern` and `continuation_pattern`. The
//! pending event is handed out when the next event starts, when it reaches
//! `max_lines` or `max_line_bytes`, or when no line has joined it for `timeout_ms`
//! (the last event of a burst must not wait for the next burst). Its end offset is
//! that of its last line, so a checkpoint never lands inside an event: after a
//! restart the whole event is read again.

use std::time::{Duration, Instant};

use regex::Regex;

use super::config::MultilineConfig;

/// The compiled rule.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    start: Option<Regex>,
    continuation: Option<Regex>,
    /// Most lines in one event.
    pub max_lines: usize,
    /// Longest time an event waits for another line.
    pub timeout: Duration,
}

impl Rule {
    /// The rule of `config`, or `None` when multiline merging is off (no pattern).
    /// Patterns were checked by validation; a pattern that fails to compile here is
    /// an error for the caller to report.
    pub fn new(config: &MultilineConfig) -> Result<Option<Rule>, regex::Error> {
        let compile = |p: &Option<String>| p.as_deref().map(Regex::new).transpose();
        let (start, continuation) = (
            compile(&config.start_pattern)?,
            compile(&config.continuation_pattern)?,
        );
        if start.is_none() && continuation.is_none() {
            return Ok(None);
        }
        Ok(Some(Rule {
            start,
            continuation,
            max_lines: config.max_lines.max(1),
            timeout: Duration::from_millis(config.timeout_ms),
        }))
    }

    /// Whether `line` joins the event before it: it matches the continuation pattern,
    /// or there is a start pattern and it does not match it.
    fn continues(&self, line: &str) -> bool {
        if self.continuation.as_ref().is_some_and(|c| c.is_match(line)) {
            return true;
        }
        self.start.as_ref().is_some_and(|s| !s.is_match(line))
    }
}

/// A merged event, ready to ship.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Merged {
    /// The lines joined with `\n`.
    pub message: String,
    /// Offset of its first line.
    pub start: u64,
    /// Offset just past its last line.
    pub end: u64,
    /// Whether it was cut at `max_bytes`.
    pub truncated: bool,
}

/// The event being assembled for one file.
#[derive(Debug)]
struct Pending {
    merged: Merged,
    lines: usize,
    since: Instant,
}

/// Merges the lines of one file.
#[derive(Debug)]
pub(super) struct Merger {
    rule: Rule,
    max_bytes: usize,
    pending: Option<Pending>,
}

impl Merger {
    /// A merger cutting events at `max_bytes` (the line limit applies to events too).
    pub fn new(rule: Rule, max_bytes: usize) -> Merger {
        Merger {
            rule,
            max_bytes,
            pending: None,
        }
    }

    /// Takes the next line; returns the events it completes (the pending one when
    /// this line starts a new event, or this one when it fills the pending event).
    pub fn push(&mut self, line: &str, start: u64, end: u64, now: Instant) -> Option<Merged> {
        let done = match self.pending.as_mut() {
            Some(p) if self.rule.continues(line) => {
                p.lines += 1;
                p.merged.end = end;
                append(&mut p.merged, line, self.max_bytes);
                if p.lines < self.rule.max_lines {
                    p.since = now;
                    return None;
                }
                return self.pending.take().map(|p| p.merged);
            }
            _ => self.pending.take().map(|p| p.merged),
        };
        let mut merged = Merged {
            message: String::new(),
            start,
            end,
            truncated: false,
        };
        push_str_capped(&mut merged, line, self.max_bytes);
        self.pending = Some(Pending {
            merged,
            lines: 1,
            since: now,
        });
        done
    }

    /// The pending event, if no line joined it for the timeout.
    pub fn due(&mut self, now: Instant) -> Option<Merged> {
        match &self.pending {
            Some(p) if now.duration_since(p.since) >= self.rule.timeout => {
                self.pending.take().map(|p| p.merged)
            }
            _ => None,
        }
    }

    /// The pending event, whatever its age.
    pub fn take(&mut self) -> Option<Merged> {
        self.pending.take().map(|p| p.merged)
    }

    /// Whether an event is being assembled.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }
}

fn append(merged: &mut Merged, line: &str, max: usize) {
    if merged.truncated {
        return;
    }
    if merged.message.len() >= max {
        merged.truncated = true;
        return;
    }
    merged.message.push('\n');
    push_str_capped(merged, line, max);
}

/// Appends as much of `s` as fits in `max` bytes, at a character boundary.
fn push_str_capped(merged: &mut Merged, s: &str, max: usize) {
    let room = max.saturating_sub(merged.message.len());
    if s.len() <= room {
        merged.message.push_str(s);
        return;
    }
    let mut cut = room;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    merged.message.push_str(&s[..cut]);
    merged.truncated = true;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(start: Option<&str>, continuation: Option<&str>, max_lines: usize) -> Rule {
        Rule::new(&MultilineConfig {
            start_pattern: start.map(str::to_string),
            continuation_pattern: continuation.map(str::to_string),
            max_lines,
            timeout_ms: 1000,
        })
        .unwrap()
        .unwrap()
    }

    /// Feeds lines (each `len + 1` bytes with its newline) and returns the events
    /// completed, then the one left pending.
    fn merge(merger: &mut Merger, lines: &[&str]) -> Vec<Merged> {
        let now = Instant::now();
        let mut offset = 0;
        let mut out = Vec::new();
        for line in lines {
            let end = offset + line.len() as u64 + 1;
            out.extend(merger.push(line, offset, end, now));
            offset = end;
        }
        out.extend(merger.take());
        out
    }

    #[test]
    fn a_java_stack_trace_is_one_event() {
        let mut m = Merger::new(rule(Some(r"^\d{4}-\d{2}-\d{2}"), None, 500), 10_000);
        let lines = [
            "2024-01-01 10:00:00 ERROR boom",
            "java.lang.IllegalStateException: bad",
            "\tat com.example.A.run(A.java:10)",
            "\tat com.example.B.main(B.java:3)",
            "2024-01-01 10:00:01 INFO next",
        ];
        let events = merge(&mut m, &lines);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].message, lines[..4].join("\n"));
        let end: u64 = lines[..4].iter().map(|l| l.len() as u64 + 1).sum();
        assert_eq!((events[0].start, events[0].end), (0, end));
        assert_eq!(events[1].message, lines[4]);
        assert_eq!(events[1].start, end);
    }

    #[test]
    fn a_python_traceback_by_continuation_pattern() {
        let mut m = Merger::new(rule(None, Some(r"^(\s|Traceback)"), 500), 10_000);
        let lines = [
            "ERROR handler failed",
            "Traceback (most recent call last):",
            "  File \"app.py\", line 3, in <module>",
            "    main()",
            "ValueError: nope",
        ];
        let events = merge(&mut m, &lines);
        let texts: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(texts, vec![lines[..4].join("\n").as_str(), lines[4]]);
    }

    #[test]
    fn max_lines_and_max_bytes_bound_an_event() {
        let mut m = Merger::new(rule(Some("^S"), None, 3), 10_000);
        let events = merge(&mut m, &["S1", "a", "b", "c", "d"]);
        let texts: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(texts, vec!["S1\na\nb", "c\nd"]);

        let mut m = Merger::new(rule(Some("^S"), None, 100), 6);
        let events = merge(&mut m, &["S1", "abcdef", "x", "S2"]);
        assert_eq!(events[0].message, "S1\nabc");
        assert!(events[0].truncated);
        assert_eq!(events[0].end, 3 + 7 + 2);
        assert_eq!(events[1].message, "S2");
    }

    #[test]
    fn a_pending_event_is_due_after_the_timeout() {
        let mut m = Merger::new(rule(Some("^S"), None, 100), 100);
        let t0 = Instant::now();
        assert_eq!(m.push("S1", 0, 3, t0), None);
        assert_eq!(m.push("cont", 3, 8, t0), None);
        assert_eq!(m.due(t0 + Duration::from_millis(999)), None);
        assert!(m.is_pending());
        let due = m.due(t0 + Duration::from_millis(1000)).unwrap();
        assert_eq!((due.message.as_str(), due.end), ("S1\ncont", 8));
        assert!(!m.is_pending());
    }

    #[test]
    fn no_pattern_means_no_merging() {
        let config = MultilineConfig::default();
        assert!(Rule::new(&config).unwrap().is_none());
    }
}
