//! The timestamp readers on every loghub format and ISO 8601 variants.

use super::*;

/// 2026-11-30T00:00:00Z: the event time used to guess missing years.
const EVENT_NS: i64 = 1_795_996_800 * 1_000_000_000;

#[test]
fn each_loghub_format_and_iso_variants() {
    let cases: &[(&str, Option<(&str, usize)>)] = &[
        (
            "2015-10-18 18:01:47,978 INFO",
            Some(("2015-10-18T18:01:47.978Z", 23)),
        ),
        (
            "2024-05-01T12:00:00.5+02:00 x",
            Some(("2024-05-01T12:00:00.5+02:00", 27)),
        ),
        (
            "2024-05-01T12:00:00-0130",
            Some(("2024-05-01T12:00:00-01:30", 24)),
        ),
        ("2024-05-01T12:00:00Z", Some(("2024-05-01T12:00:00Z", 20))),
        (
            "[Sun Dec 04 04:47:44 2005] [notice]",
            Some(("2005-12-04T04:47:44Z", 26)),
        ),
        ("081109 203615 148 INFO", Some(("2008-11-09T20:36:15Z", 13))),
        ("17/06/09 20:10:40 INFO", Some(("2017-06-09T20:10:40Z", 17))),
        (
            "03-17 16:13:38.811  1702",
            Some(("2026-03-17T16:13:38.811Z", 18)),
        ),
        (
            "- 1117838570 2005.06.03 R02",
            Some(("2005-06-03T22:42:50Z", 23)),
        ),
        (
            "KERNDTLB 1117838570 2005.06.03 R02",
            Some(("2005-06-03T22:42:50Z", 30)),
        ),
        ("Jun 14 15:16:01 combo", Some(("2026-06-14T15:16:01Z", 15))),
        (
            "Jul  1 09:00:55 calvisitor",
            Some(("2026-07-01T09:00:55Z", 15)),
        ),
        // December read in November 2026 is from 2025.
        ("Dec 10 06:55:46 LabSZ", Some(("2025-12-10T06:55:46Z", 15))),
        // Malformed: impossible dates and times, wrong separators, short lines.
        ("2015-13-18 18:01:47", None),
        ("2015-02-30 18:01:47", None),
        ("2015-10-18 25:01:47", None),
        ("2015/10/18 18:01:47", None),
        ("2015-10-18", None),
        ("Foo 14 15:16:01 x", None),
        ("Jun 14 15:16", None),
        ("[Sun Dec 04 04:47:44 2005", None),
        ("1234567 203615", None),
        ("0811092 03615", None),
        ("- 11178385 2005.06.03", None),
        ("", None),
        ("é", None),
    ];
    for (line, want) in cases {
        let got = at_start(line, EVENT_NS).map(|(s, n)| (s.to_rfc3339(), n));
        let want = want.map(|(s, n)| (s.to_string(), n));
        assert_eq!(got, want, "{line:?}");
    }
}

#[test]
fn epoch_numbers_by_magnitude() {
    let cases = [
        (1_717_200_000.0, Some("2024-06-01T00:00:00Z")),
        (1_717_200_000.25, Some("2024-06-01T00:00:00.250Z")),
        (1_717_200_000_123.0, Some("2024-06-01T00:00:00.123Z")),
        (1_717_200_000_123_456.0, Some("2024-06-01T00:00:00.123456Z")),
        (1.7172e18, Some("2024-06-01T00:00:00.000000000Z")),
        (-1.0, None),
        (f64::NAN, None),
        (1e30, None),
    ];
    for (value, want) in cases {
        assert_eq!(from_epoch_guess(value).as_deref(), want, "{value}");
    }
}

#[test]
fn civil_conversion_round_trips() {
    for days in (-800_000..800_000).step_by(997) {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
    }
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
}

#[test]
fn leap_day_without_a_year_takes_the_last_leap_year_only_if_near() {
    // 2026 is not a leap year and 2025 neither: 02-29 has no year to live in.
    assert_eq!(at_start("02-29 10:00:00.000 1 2 I x", EVENT_NS), None);
    let in_2024 = 1_717_200_000 * 1_000_000_000; // 2024-06-01
    let (stamp, _) = at_start("02-29 10:00:00.000 1 2 I x", in_2024).expect("2024 is leap");
    assert_eq!(stamp.to_rfc3339(), "2024-02-29T10:00:00.000Z");
}
