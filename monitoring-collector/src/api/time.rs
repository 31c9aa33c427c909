//! Times and durations as the API reads and writes them: RFC 3339 (always UTC with
//! nanoseconds on output; any offset on input), Unix milliseconds, and step
//! durations like `30s` or `5m`.
//!
//! A few dozen lines of civil-date arithmetic (Howard Hinnant's `days_from_civil`)
//! instead of a date-time dependency: only these conversions are needed.

/// Nanoseconds per second.
const NS_PER_SEC: i64 = 1_000_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `2024-05-06T07:08:09.123456789Z` for a time in ns since the epoch.
pub fn format_rfc3339_nanos(ns: i64) -> String {
    let secs = ns.div_euclid(NS_PER_SEC);
    let frac = ns.rem_euclid(NS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Parses a time given as Unix milliseconds (`1715000000000`) or RFC 3339
/// (`2024-05-06T07:08:09Z`, `2024-05-06T09:08:09.5+02:00`) into ns since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .ok()
            .and_then(|ms| ms.checked_mul(1_000_000))
            .ok_or_else(|| format!("{s:?} is out of range as Unix milliseconds"));
    }
    parse_rfc3339(s).ok_or_else(|| {
        format!("{s:?} is neither RFC 3339 (2024-05-06T07:08:09Z) nor Unix milliseconds")
    })
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60
    {
        return None;
    }
    let mut i = 19;
    let mut frac_ns = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        // Digits past nanoseconds are dropped (truncated), as they cannot be stored.
        let mut scale = 100_000_000;
        for &digit in &b[start..i] {
            frac_ns += i64::from(digit - b'0') * scale;
            scale /= 10;
        }
    }
    let offset_secs = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    // A leap second (:60) is folded into the next second, as Unix time does.
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    secs.checked_mul(NS_PER_SEC)?.checked_add(frac_ns)
}

/// Parses a step: plain seconds (`30`, `0.5`) or a number with a unit
/// (`500ms`, `30s`, `5m`, `1h`, `1d`, `1w`), into ns. Must be positive.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit_ns: f64 = match unit {
        "" | "s" => 1e9,
        "ms" => 1e6,
        "m" => 60e9,
        "h" => 3600e9,
        "d" => 86_400e9,
        "w" => 604_800e9,
        _ => {
            return Err(format!(
                "{s:?} is not a duration (seconds, or a number with ms, s, m, h, d or w)"
            ));
        }
    };
    let value: f64 = number.parse().map_err(|_| {
        format!("{s:?} is not a duration (seconds, or a number with ms, s, m, h, d or w)")
    })?;
    let ns = value * unit_ns;
    if !(1e6..=1e18).contains(&ns) {
        return Err(format!("{s:?} must be between 1ms and about 31 years"));
    }
    Ok(ns as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_nanoseconds_in_utc() {
        assert_eq!(format_rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_rfc3339_nanos(1_715_000_000_123_456_789),
            "2024-05-06T12:53:20.123456789Z"
        );
        assert_eq!(format_rfc3339_nanos(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            format_rfc3339_nanos(951_782_400 * NS_PER_SEC),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn parses_rfc3339_and_unix_millis() {
        assert_eq!(parse_time("1715000000123"), Ok(1_715_000_000_123_000_000));
        assert_eq!(
            parse_time("2024-05-06T12:53:20Z"),
            Ok(1_715_000_000 * NS_PER_SEC)
        );
        assert_eq!(
            parse_time("2024-05-06T14:53:20.5+02:00"),
            Ok(1_715_000_000 * NS_PER_SEC + 500_000_000)
        );
        assert_eq!(
            parse_time("2024-05-06 12:53:20.123456789z"),
            Ok(1_715_000_000_123_456_789)
        );
        assert_eq!(parse_time("1969-12-31T23:59:59.999999999Z"), Ok(-1));
        for bad in [
            "",
            "yesterday",
            "2024-02-30T00:00:00Z",
            "2024-05-06T12:53:20",
            "2024-05-06T12:53:20.Z",
            "99999999999999999999",
        ] {
            assert!(parse_time(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn formatting_and_parsing_agree() {
        for ns in [
            0,
            1,
            -1,
            1_715_000_000_123_456_789,
            4_102_444_799_999_999_999,
            -2_208_988_800_000_000_000,
        ] {
            assert_eq!(parse_time(&format_rfc3339_nanos(ns)), Ok(ns), "{ns}");
        }
    }

    #[test]
    fn parses_steps() {
        assert_eq!(parse_duration("30"), Ok(30 * NS_PER_SEC));
        assert_eq!(parse_duration("30s"), Ok(30 * NS_PER_SEC));
        assert_eq!(parse_duration("5m"), Ok(300 * NS_PER_SEC));
        assert_eq!(parse_duration("1h"), Ok(3600 * NS_PER_SEC));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("0.5"), Ok(500_000_000));
        for bad in ["", "0", "-5s", "5 minutes", "1e3", "s"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }
}
