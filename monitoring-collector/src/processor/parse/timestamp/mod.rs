//! Timestamps at the start of log lines, turned into RFC 3339 for the `log_time` field.
//!
//! Each format is recognised by fixed byte positions (digits, separators), never by a
//! regular expression: this runs on every log line. The formats are the ones the
//! loghub samples show, plus RFC 3339 / ISO 8601, which covers Hadoop and Zookeeper:
//!
//! | example                           | seen in                |
//! |-----------------------------------|------------------------|
//! | `2015-10-18 18:01:47,978`         | Hadoop, Zookeeper, ISO |
//! | `[Sun Dec 04 04:47:44 2005]`      | Apache                 |
//! | `081109 203615`                   | HDFS                   |
//! | `17/06/09 20:10:40`               | Spark                  |
//! | `03-17 16:13:38.811` (no year)    | Android                |
//! | `- 1117838570 2005.06.03 ...`     | BGL (Unix seconds)     |
//! | `Jun 14 15:16:01` (no year)       | syslog files (`syslog`)|
//!
//! A time without a zone is taken as UTC. A date without a year gets the year of the
//! event's own timestamp, or the year before when that would put it in the future
//! (a December line read in January).

/// A calendar time as written in a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    /// Digits of the fraction as written (0: none), so `,978` stays milliseconds.
    frac_digits: u8,
    /// Offset east of UTC in minutes; `None` is UTC written as `Z`.
    offset_minutes: Option<i32>,
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// The month (1-12) named by a three-letter English abbreviation.
pub fn month(name: &[u8]) -> Option<u32> {
    let name: &[u8; 3] = name.get(..3)?.try_into().ok()?;
    MONTHS
        .iter()
        .position(|m| *m == name)
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

impl Stamp {
    fn new(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<Stamp> {
        let valid = (1..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && hour < 24
            && minute < 60
            && second <= 60;
        valid.then_some(Stamp {
            year,
            month,
            day,
            hour,
            minute,
            second,
            nanos: 0,
            frac_digits: 0,
            offset_minutes: None,
        })
    }

    /// A stamp for Unix seconds, in UTC.
    fn from_unix(secs: i64) -> Option<Stamp> {
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let rem = secs.rem_euclid(86_400) as u32;
        Stamp::new(year, month, day, rem / 3600, rem / 60 % 60, rem % 60)
    }

    /// Seconds since the epoch, as if the stamp were UTC (for the year guess only).
    fn unix_secs_utc(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour * 3600 + self.minute * 60 + self.second)
    }

    /// The stamp in RFC 3339.
    pub fn to_rfc3339(&self) -> String {
        // Written digit by digit: this runs once per parsed line, and `format!`
        // costs several times more.
        let mut out = String::with_capacity(36);
        let year = u32::try_from(self.year.clamp(0, 9999)).unwrap_or(0);
        push_digits(&mut out, year, 4);
        for (sep, value) in [
            ('-', self.month),
            ('-', self.day),
            ('T', self.hour),
            (':', self.minute),
            (':', self.second),
        ] {
            out.push(sep);
            push_digits(&mut out, value, 2);
        }
        if self.frac_digits > 0 {
            let digits = u32::from(self.frac_digits.min(9));
            out.push('.');
            push_digits(
                &mut out,
                self.nanos / 10u32.pow(9 - digits),
                digits as usize,
            );
        }
        match self.offset_minutes {
            None | Some(0) => out.push('Z'),
            Some(m) => {
                out.push(if m < 0 { '-' } else { '+' });
                let m = m.unsigned_abs();
                push_digits(&mut out, m / 60, 2);
                out.push(':');
                push_digits(&mut out, m % 60, 2);
            }
        }
        out
    }
}

/// Appends `value` as exactly `width` decimal digits (zero-padded, high digits cut).
fn push_digits(out: &mut String, value: u32, width: usize) {
    for i in (0..width).rev() {
        let digit = value / 10u32.pow(i as u32) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// An epoch number as JSON loggers write it, in RFC 3339: seconds, milliseconds,
/// microseconds or nanoseconds, told apart by magnitude (all after 1973 read right).
pub fn from_epoch_guess(value: f64) -> Option<String> {
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let (scale, digits) = if value < 1e11 {
        (1e0, 0)
    } else if value < 1e14 {
        (1e3, 3)
    } else if value < 1e17 {
        (1e6, 6)
    } else {
        (1e9, 9)
    };
    let secs = (value / scale).floor();
    // Past year 9999 is not a time anyone logs.
    if secs > 253_402_300_799.0 {
        return None;
    }
    let frac = value - secs * scale;
    let mut stamp = Stamp::from_unix(secs as i64)?;
    if digits > 0 {
        stamp.nanos = ((frac * (1e9 / scale)).round() as u32).min(999_999_999);
        stamp.frac_digits = digits;
    } else if value.fract() != 0.0 {
        stamp.nanos = ((value.fract() * 1e3).round() as u32).min(999) * 1_000_000;
        stamp.frac_digits = 3;
    }
    stamp.offset_minutes = Some(0);
    Some(stamp.to_rfc3339())
}

/// Reads `n` ASCII digits at `at`.
fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    s.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// A day written as two digits or as a space and a digit (`Jul  1`).
fn padded_day(b: &[u8], at: usize) -> Option<u32> {
    match b.get(at)? {
        b' ' => digits(b, at + 1, 1),
        _ => digits(b, at, 2),
    }
}

fn byte_is(b: &[u8], at: usize, want: u8) -> bool {
    b.get(at) == Some(&want)
}

/// `hh:mm:ss` at `at`.
fn clock(b: &[u8], at: usize) -> Option<(u32, u32, u32)> {
    (byte_is(b, at + 2, b':') && byte_is(b, at + 5, b':')).then_some(())?;
    Some((
        digits(b, at, 2)?,
        digits(b, at + 3, 2)?,
        digits(b, at + 6, 2)?,
    ))
}

/// A fraction (`.978`, `,978`) at `at`: (nanos, digits, bytes consumed).
fn fraction(b: &[u8], at: usize) -> (u32, u8, usize) {
    if !matches!(b.get(at), Some(b'.' | b',')) {
        return (0, 0, 0);
    }
    let mut n = 0usize;
    let mut nanos = 0u32;
    while let Some(c) = b.get(at + 1 + n).filter(|c| c.is_ascii_digit()) {
        if n < 9 {
            nanos = nanos * 10 + u32::from(c - b'0');
        }
        n += 1;
        if n > 12 {
            break;
        }
    }
    if n == 0 {
        return (0, 0, 0);
    }
    let kept = n.min(9);
    nanos *= 10u32.pow(9 - kept as u32);
    (nanos, kept as u8, n + 1)
}

/// The year a year-less date most likely has, given the event's time.
fn guess_year(event_ns: i64, mut stamp: Stamp) -> Option<Stamp> {
    let event_secs = event_ns.div_euclid(1_000_000_000);
    let (year, _, _) = civil_from_days(event_secs.div_euclid(86_400));
    stamp.year = year;
    // 29 February only exists in some years: the check is redone for each guess.
    let fits = |s: &Stamp| s.day <= days_in_month(s.year, s.month);
    if !fits(&stamp) || stamp.unix_secs_utc() > event_secs + 2 * 86_400 {
        stamp.year = year - 1;
    }
    // An event time far outside the calendar gives no usable year.
    ((1..=9999).contains(&stamp.year) && fits(&stamp)).then_some(stamp)
}

/// A timestamp at the start of `line`; `event_ns` supplies missing years.
/// Returns the stamp and how many bytes it took.
pub fn at_start(line: &str, event_ns: i64) -> Option<(Stamp, usize)> {
    let b = line.as_bytes();
    match b.first()? {
        b'0'..=b'9' => iso(b)
            .or_else(|| spark(b))
            .or_else(|| hdfs(b))
            .or_else(|| android(b, event_ns)),
        b'[' => apache(b),
        b'-' | b'A'..=b'Z' => bgl(b).or_else(|| syslog(b, event_ns)),
        _ => None,
    }
}

/// RFC 3339 and its ISO 8601 relatives: `2015-10-18 18:01:47,978`,
/// `2024-05-01T12:00:00.5+02:00`.
pub fn iso(b: &[u8]) -> Option<(Stamp, usize)> {
    (byte_is(b, 4, b'-') && byte_is(b, 7, b'-') && matches!(b.get(10), Some(b'T' | b't' | b' ')))
        .then_some(())?;
    let (h, mi, s) = clock(b, 11)?;
    let mut stamp = Stamp::new(
        i64::from(digits(b, 0, 4)?),
        digits(b, 5, 2)?,
        digits(b, 8, 2)?,
        h,
        mi,
        s,
    )?;
    let mut at = 19;
    let (nanos, frac_digits, used) = fraction(b, at);
    (stamp.nanos, stamp.frac_digits) = (nanos, frac_digits);
    at += used;
    match b.get(at) {
        Some(b'Z' | b'z') => {
            stamp.offset_minutes = Some(0);
            at += 1;
        }
        Some(&sign @ (b'+' | b'-')) => {
            let hours = digits(b, at + 1, 2);
            let (minutes, len) = if byte_is(b, at + 3, b':') {
                (digits(b, at + 4, 2), 6)
            } else {
                (digits(b, at + 3, 2), 5)
            };
            if let (Some(hh), Some(mm)) = (hours, minutes)
                && hh < 24
                && mm < 60
            {
                let m = (hh * 60 + mm) as i32;
                stamp.offset_minutes = Some(if sign == b'-' { -m } else { m });
                at += len;
            }
        }
        _ => {}
    }
    Some((stamp, at))
}

/// Spark: `17/06/09 20:10:40` (yy/MM/dd).
fn spark(b: &[u8]) -> Option<(Stamp, usize)> {
    (byte_is(b, 2, b'/') && byte_is(b, 5, b'/') && byte_is(b, 8, b' ')).then_some(())?;
    let (h, mi, s) = clock(b, 9)?;
    let year = 2000 + i64::from(digits(b, 0, 2)?);
    Some((
        Stamp::new(year, digits(b, 3, 2)?, digits(b, 6, 2)?, h, mi, s)?,
        17,
    ))
}

/// HDFS: `081109 203615` (yyMMdd HHmmss).
fn hdfs(b: &[u8]) -> Option<(Stamp, usize)> {
    (byte_is(b, 6, b' ') && !b.get(13).is_some_and(u8::is_ascii_digit)).then_some(())?;
    let year = 2000 + i64::from(digits(b, 0, 2)?);
    let stamp = Stamp::new(
        year,
        digits(b, 2, 2)?,
        digits(b, 4, 2)?,
        digits(b, 7, 2)?,
        digits(b, 9, 2)?,
        digits(b, 11, 2)?,
    )?;
    Some((stamp, 13))
}

/// Android logcat: `03-17 16:13:38.811` (MM-dd, no year).
fn android(b: &[u8], event_ns: i64) -> Option<(Stamp, usize)> {
    (byte_is(b, 2, b'-') && byte_is(b, 5, b' ')).then_some(())?;
    let (h, mi, s) = clock(b, 6)?;
    // Any leap year, so that 02-29 is accepted until the year is known.
    let mut stamp = Stamp::new(2000, digits(b, 0, 2)?, digits(b, 3, 2)?, h, mi, s)?;
    let (nanos, frac_digits, used) = fraction(b, 14);
    (stamp.nanos, stamp.frac_digits) = (nanos, frac_digits);
    Some((guess_year(event_ns, stamp)?, 14 + used))
}

/// Apache: `[Sun Dec 04 04:47:44 2005]`.
fn apache(b: &[u8]) -> Option<(Stamp, usize)> {
    (byte_is(b, 4, b' ') && byte_is(b, 8, b' ') && byte_is(b, 11, b' ') && byte_is(b, 25, b']'))
        .then_some(())?;
    let month = month(b.get(5..8)?)?;
    let (h, mi, s) = clock(b, 12)?;
    let year = i64::from(digits(b, 21, 4)?);
    Some((Stamp::new(year, month, padded_day(b, 9)?, h, mi, s)?, 26))
}

/// BGL: an alert tag (`-` or capitals), Unix seconds, then `yyyy.mm.dd`.
fn bgl(b: &[u8]) -> Option<(Stamp, usize)> {
    let tag = b.iter().take(16).position(|&c| c == b' ')?;
    b[..tag]
        .iter()
        .all(|&c| c == b'-' || c.is_ascii_uppercase())
        .then_some(())?;
    let at = tag + 1;
    (byte_is(b, at + 10, b' ') && byte_is(b, at + 15, b'.') && byte_is(b, at + 18, b'.'))
        .then_some(())?;
    let secs = (0..10).try_fold(0i64, |acc, i| {
        let c = *b.get(at + i)?;
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })?;
    Some((Stamp::from_unix(secs)?, at + 21))
}

/// Syslog's `Mmm dd hh:mm:ss` (no year), as RFC 3164 and rsyslog files write it.
pub fn syslog(b: &[u8], event_ns: i64) -> Option<(Stamp, usize)> {
    (byte_is(b, 3, b' ') && byte_is(b, 6, b' ')).then_some(())?;
    let month = month(b.get(..3)?)?;
    let (h, mi, s) = clock(b, 7)?;
    let stamp = Stamp::new(2000, month, padded_day(b, 4)?, h, mi, s)?;
    Some((guess_year(event_ns, stamp)?, 15))
}

#[cfg(test)]
mod tests;
