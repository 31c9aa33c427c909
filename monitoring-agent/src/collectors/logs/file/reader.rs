//! Splitting file bytes into lines: the hot path of the source.
//!
//! Bytes arrive in large chunks; complete lines are handed out straight from the chunk
//! (no copy) and only a line that spans two chunks is assembled in a buffer, which is
//! bounded by `max_line_bytes`. A line ends at `\n`; a `\r` just before it is dropped.
//! A line without its `\n` yet is held until it arrives. A longer line is cut at a
//! character boundary and the rest skipped up to its `\n`, and it is only handed out
//! then, so that the offset just past it is a real line start to resume from.

use memchr::memchr;

/// One complete line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Line<'a> {
    /// The line's bytes without `\r\n` / `\n`, cut to `max_line_bytes`.
    pub text: &'a [u8],
    /// File offset of its first byte.
    pub start: u64,
    /// File offset just past its `\n`: where reading resumes after it.
    pub end: u64,
    /// Whether it was longer than `max_line_bytes` and cut.
    pub truncated: bool,
}

impl Line<'_> {
    /// The text as an owned string, invalid UTF-8 replaced. Nearly every line is
    /// valid, and `str::from_utf8` checks it several times faster than the lossy
    /// scan, which only an invalid line then pays for.
    pub fn to_text(&self) -> String {
        match std::str::from_utf8(self.text) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(self.text).into_owned(),
        }
    }
}

/// Turns consecutive chunks of one file into lines, keeping the offsets exact.
#[derive(Debug)]
pub(super) struct LineSplitter {
    max: usize,
    /// Start of the line being assembled.
    line_start: u64,
    /// Offset just past the last byte fed.
    pos: u64,
    /// The unfinished line's first bytes: at most `max + 1` of them, the one extra
    /// telling a line of exactly `max` bytes plus `\r` from a longer one.
    partial: Vec<u8>,
    /// Length of the unfinished line so far (may exceed what `partial` keeps).
    partial_len: u64,
    /// Its last byte, to recognise a `\r` that `partial` did not keep.
    last_byte: Option<u8>,
}

impl LineSplitter {
    /// A splitter whose next byte is at file offset `start`, a line start.
    pub fn new(start: u64, max_line_bytes: usize) -> LineSplitter {
        LineSplitter {
            max: max_line_bytes.max(1),
            line_start: start,
            pos: start,
            partial: Vec::new(),
            partial_len: 0,
            last_byte: None,
        }
    }

    /// Offset just past the last byte fed: where the next chunk must be read from.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Offset of the first byte not yet part of a complete line.
    #[cfg(test)]
    pub fn line_start(&self) -> u64 {
        self.line_start
    }

    /// Feeds the next chunk of the file and calls `emit` for every line it completes.
    pub fn feed(&mut self, chunk: &[u8], mut emit: impl FnMut(Line<'_>)) {
        let mut rest = chunk;
        while let Some(i) = memchr(b'\n', rest) {
            let seg = &rest[..i];
            let end = self.pos + i as u64 + 1;
            if self.partial_len == 0 {
                let (text, truncated) =
                    finish(seg, seg.len() as u64, seg.last().copied(), self.max);
                emit(Line {
                    text,
                    start: self.line_start,
                    end,
                    truncated,
                });
            } else {
                self.append(seg);
                let (text, truncated) =
                    finish(&self.partial, self.partial_len, self.last_byte, self.max);
                emit(Line {
                    text,
                    start: self.line_start,
                    end,
                    truncated,
                });
                self.partial.clear();
                self.partial_len = 0;
                self.last_byte = None;
            }
            self.pos = end;
            self.line_start = end;
            rest = &rest[i + 1..];
        }
        if !rest.is_empty() {
            self.append(rest);
            self.pos += rest.len() as u64;
        }
    }

    /// Hands out the unfinished line as if complete (its newline has not come and
    /// the caller gave up waiting); the bytes after it start a new line. Returns
    /// whether there was one.
    pub fn flush(&mut self, mut emit: impl FnMut(Line<'_>)) -> bool {
        if self.partial_len == 0 {
            return false;
        }
        let (text, truncated) = finish(&self.partial, self.partial_len, self.last_byte, self.max);
        emit(Line {
            text,
            start: self.line_start,
            end: self.pos,
            truncated,
        });
        self.partial.clear();
        self.partial_len = 0;
        self.last_byte = None;
        self.line_start = self.pos;
        true
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = (self.max + 1).saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.partial_len += bytes.len() as u64;
        if let Some(&b) = bytes.last() {
            self.last_byte = Some(b);
        }
    }
}

/// The text of a complete line of `len` bytes whose first bytes are `kept` (all of
/// them, or at least `max + 1`) and whose last byte is `last`.
fn finish(kept: &[u8], len: u64, last: Option<u8>, max: usize) -> (&[u8], bool) {
    let content_len = if last == Some(b'\r') { len - 1 } else { len };
    if content_len <= max as u64 {
        // content_len <= max, and kept holds min(len, max + 1) >= content_len bytes.
        return (&kept[..content_len as usize], false);
    }
    (&kept[..char_floor(kept, max)], true)
}

/// The largest cut `<= max` that does not split a UTF-8 sequence (`bytes` has more
/// than `max` bytes). Invalid input is cut at `max`: it is replaced lossily anyway.
fn char_floor(bytes: &[u8], max: usize) -> usize {
    let mut cut = max;
    // A continuation byte (0b10xx_xxxx) at the cut belongs to a character that
    // started before it; back up to that start, at most three bytes.
    while cut > 0 && max - cut < 3 && bytes.get(cut).is_some_and(|b| b & 0xC0 == 0x80) {
        cut -= 1;
    }
    if bytes.get(cut).is_some_and(|b| b & 0xC0 == 0x80) {
        max
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` and returns (text, start, end, truncated) per line.
    fn split(chunks: &[&[u8]], max: usize) -> (Vec<(String, u64, u64, bool)>, LineSplitter) {
        let mut s = LineSplitter::new(0, max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |l| {
                out.push((
                    String::from_utf8_lossy(l.text).into_owned(),
                    l.start,
                    l.end,
                    l.truncated,
                ))
            });
        }
        (out, s)
    }

    fn texts(lines: &[(String, u64, u64, bool)]) -> Vec<&str> {
        lines.iter().map(|l| l.0.as_str()).collect()
    }

    #[test]
    fn lf_and_crlf_with_partial_last_line() {
        let (lines, s) = split(&[b"one\ntwo\r\nthr", b"ee\r", b"\nfour"], 100);
        assert_eq!(texts(&lines), vec!["one", "two", "three"]);
        assert_eq!(lines[0].1..lines[0].2, 0..4);
        assert_eq!(lines[1].1..lines[1].2, 4..9);
        assert_eq!(lines[2].1..lines[2].2, 9..16);
        assert_eq!(s.line_start(), 16);
        assert_eq!(s.position(), 20);
    }

    #[test]
    fn only_the_cr_before_lf_is_stripped() {
        let (lines, _) = split(&[b"a\rb\r\r\n\r\n\n"], 100);
        assert_eq!(texts(&lines), vec!["a\rb\r", "", ""]);
    }

    #[test]
    fn every_split_point_gives_the_same_lines() {
        let input: &[u8] = b"alpha\r\nbeta\n\ngamma delta\r\nx\n";
        let (whole, _) = split(&[input], 8);
        for i in 0..=input.len() {
            let (parts, _) = split(&[&input[..i], &input[i..]], 8);
            assert_eq!(parts, whole, "split at {i}");
        }
    }

    #[test]
    fn long_lines_are_cut_counted_and_resume_after_newline() {
        let (lines, s) = split(&[b"0123456789abc\nok\n"], 5);
        assert_eq!(texts(&lines), vec!["01234", "ok"]);
        assert!(lines[0].3 && !lines[1].3);
        assert_eq!(lines[0].2, 14);
        assert_eq!(s.line_start(), 17);
        // Across chunks, with bounded memory.
        let (lines, s) = split(&[b"0123", b"456789", b"abcdef", b"\r\nend\n"], 5);
        assert_eq!(texts(&lines), vec!["01234", "end"]);
        assert!(lines[0].3);
        assert!(s.partial.capacity() < 64);
    }

    #[test]
    fn exactly_max_with_crlf_is_not_truncated() {
        let (lines, _) = split(&[b"12345\r", b"\n"], 5);
        assert_eq!(lines, vec![("12345".into(), 0, 7, false)]);
        let (lines, _) = split(&[b"123456\r\n"], 5);
        assert_eq!(lines, vec![("12345".into(), 0, 8, true)]);
    }

    #[test]
    fn truncation_never_splits_a_character() {
        // "é" is two bytes; a cut at 5 would fall inside the third one.
        let (lines, _) = split(&["abééé\n".as_bytes()], 5);
        assert_eq!(texts(&lines), vec!["abé"]);
        let (lines, _) = split(&["€€€\n".as_bytes()], 4);
        assert_eq!(texts(&lines), vec!["€"]);
    }

    #[test]
    fn invalid_utf8_is_kept_lossily() {
        let (lines, _) = split(&[b"ok \xff\xfe bytes\n"], 100);
        assert_eq!(texts(&lines), vec!["ok \u{FFFD}\u{FFFD} bytes"]);
        let mut s = LineSplitter::new(0, 100);
        let mut owned = Vec::new();
        s.feed(b"ok \xff bytes\nvalid \xc3\xa9\n", |l| {
            owned.push(l.to_text())
        });
        assert_eq!(owned, vec!["ok \u{FFFD} bytes", "valid \u{e9}"]);
    }

    #[test]
    fn a_flushed_partial_line_ends_where_the_next_line_starts() {
        let mut s = LineSplitter::new(0, 100);
        let mut lines = Vec::new();
        let mut collect = |l: Line<'_>| {
            lines.push((String::from_utf8_lossy(l.text).into_owned(), l.start, l.end))
        };
        s.feed(b"one\ntw", &mut collect);
        assert!(s.flush(&mut collect));
        assert!(!s.flush(&mut collect));
        s.feed(b"o\n", &mut collect);
        assert_eq!(
            lines,
            vec![
                ("one".into(), 0, 4),
                ("tw".into(), 4, 6),
                ("o".into(), 6, 8)
            ]
        );
    }

    #[test]
    fn starts_at_the_given_offset() {
        let mut s = LineSplitter::new(1000, 10);
        let mut ends = Vec::new();
        s.feed(b"a\nb\n", |l| ends.push((l.start, l.end)));
        assert_eq!(ends, vec![(1000, 1002), (1002, 1004)]);
    }
}
