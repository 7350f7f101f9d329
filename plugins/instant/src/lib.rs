//! Instants in the ISO-8601 form that Java's `Instant.toString()` writes.
//!
//! Owns parsing such strings into an [`Instant`] (seconds and nanoseconds
//! since the Unix epoch, compared as instants, never as text) and formatting
//! instants back to text. Shared by the merge plugin (which orders events by
//! their `timestamp`) and the producers (which stamp events). No
//! dependencies: the civil-date conversions are Howard Hinnant's
//! days-from-civil algorithms.
//!
//! Accepted: `YYYY-MM-DDTHH:MM:SS`, then an optional `.` with 1 to 9
//! fractional digits, then `Z` or a numeric offset `+hh:mm` / `-hh:mm`.
//! Years are four digits (0000-9999); there is no leap second.

use std::fmt;

/// A point in time: whole seconds since the Unix epoch plus nanoseconds.
///
/// The derived ordering compares seconds first, then nanoseconds, which is
/// chronological because `nanos` is always below one billion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    secs: i64,
    nanos: u32,
}

/// Why a timestamp did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError(&'static str);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ParseError {}

const NANOS_PER_SEC: u32 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

impl Instant {
    /// `secs` since the epoch plus `nanos`; `None` if `nanos` is one second
    /// or more.
    pub const fn new(secs: i64, nanos: u32) -> Option<Self> {
        if nanos < NANOS_PER_SEC {
            Some(Self { secs, nanos })
        } else {
            None
        }
    }

    /// The instant `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Self {
            secs: (ms / 1000) as i64,
            nanos: (ms % 1000) as u32 * 1_000_000,
        }
    }

    /// Whole seconds since the Unix epoch (negative before 1970).
    pub const fn secs(self) -> i64 {
        self.secs
    }

    /// Nanoseconds within the second, below one billion.
    pub const fn nanos(self) -> u32 {
        self.nanos
    }

    /// The same instant `ms` milliseconds later.
    pub const fn plus_millis(self, ms: u64) -> Self {
        let nanos = self.nanos as u64 + (ms % 1000) * 1_000_000;
        Self {
            secs: self.secs + (ms / 1000) as i64 + (nanos / NANOS_PER_SEC as u64) as i64,
            nanos: (nanos % NANOS_PER_SEC as u64) as u32,
        }
    }

    /// Parses `2026-11-24T08:00:00Z`, `2026-11-24T08:00:00.5Z`,
    /// `2026-11-24T08:00:00.123456789Z` or `2026-11-24T09:00:00+01:00`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let b = text.as_bytes();
        let year = digits(b, 0, 4).ok_or(ParseError("expected a four-digit year"))?;
        expect(b, 4, b'-', "expected '-' after the year")?;
        let month = digits(b, 5, 2).ok_or(ParseError("expected a two-digit month"))?;
        expect(b, 7, b'-', "expected '-' after the month")?;
        let day = digits(b, 8, 2).ok_or(ParseError("expected a two-digit day"))?;
        expect(b, 10, b'T', "expected 'T' between date and time")?;
        let hour = digits(b, 11, 2).ok_or(ParseError("expected a two-digit hour"))?;
        expect(b, 13, b':', "expected ':' after the hour")?;
        let minute = digits(b, 14, 2).ok_or(ParseError("expected two-digit minutes"))?;
        expect(b, 16, b':', "expected ':' after the minutes")?;
        let second = digits(b, 17, 2).ok_or(ParseError("expected two-digit seconds"))?;

        if !(1..=12).contains(&month) {
            return Err(ParseError("month out of range 01-12"));
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err(ParseError("day out of range for the month"));
        }
        if hour > 23 {
            return Err(ParseError("hour out of range 00-23"));
        }
        if minute > 59 {
            return Err(ParseError("minutes out of range 00-59"));
        }
        if second > 59 {
            return Err(ParseError("seconds out of range 00-59"));
        }

        let mut pos = 19;
        let mut nanos = 0u32;
        if b.get(pos) == Some(&b'.') {
            pos += 1;
            let start = pos;
            while let Some(d @ b'0'..=b'9') = b.get(pos) {
                if pos - start == 9 {
                    return Err(ParseError("more than 9 fractional digits"));
                }
                nanos = nanos * 10 + u32::from(d - b'0');
                pos += 1;
            }
            let count = pos - start;
            if count == 0 {
                return Err(ParseError("expected digits after '.'"));
            }
            nanos *= 10u32.pow(9 - count as u32);
        }

        let offset_secs: i64 = match b.get(pos) {
            Some(b'Z') => {
                pos += 1;
                0
            }
            Some(&sign @ (b'+' | b'-')) => {
                let hours =
                    digits(b, pos + 1, 2).ok_or(ParseError("expected a two-digit offset hour"))?;
                expect(b, pos + 3, b':', "expected ':' in the offset")?;
                let minutes =
                    digits(b, pos + 4, 2).ok_or(ParseError("expected two-digit offset minutes"))?;
                if hours > 18 || minutes > 59 || (hours == 18 && minutes > 0) {
                    return Err(ParseError("offset out of range -18:00..+18:00"));
                }
                pos += 6;
                let magnitude = i64::from(hours * 3600 + minutes * 60);
                if sign == b'+' { magnitude } else { -magnitude }
            }
            Some(_) => return Err(ParseError("expected 'Z' or an offset such as +01:00")),
            None => return Err(ParseError("missing zone: expected 'Z' or an offset")),
        };
        if pos != b.len() {
            return Err(ParseError("unexpected text after the zone"));
        }

        let days = days_from_civil(i64::from(year), month, day);
        let secs =
            days * SECS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
        Ok(Self { secs, nanos })
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, or with nine fractional digits when the
/// instant is not a whole millisecond: the text [`Instant::parse`] reads
/// back as the same instant.
impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.secs.div_euclid(SECS_PER_DAY);
        let of_day = self.secs.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60
        )?;
        if self.nanos.is_multiple_of(1_000_000) {
            write!(f, ".{:03}Z", self.nanos / 1_000_000)
        } else {
            write!(f, ".{:09}Z", self.nanos)
        }
    }
}

/// Formats `ms` milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_millis(ms: u64) -> String {
    Instant::from_millis(ms).to_string()
}

/// The `len` ASCII digits at `pos` as a number, or `None`.
fn digits(b: &[u8], pos: usize, len: usize) -> Option<u32> {
    let slice = b.get(pos..pos + len)?;
    slice.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn expect(b: &[u8], pos: usize, want: u8, reason: &'static str) -> Result<(), ParseError> {
    if b.get(pos) == Some(&want) {
        Ok(())
    } else {
        Err(ParseError(reason))
    }
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1-12).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = i64::from((month + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Instant {
        Instant::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    const BASE: i64 = 1_795_507_200; // 2026-11-24T08:00:00Z

    #[test]
    fn parses_whole_seconds() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Instant::new(0, 0).unwrap());
        assert_eq!(
            parse("2026-11-24T08:00:00Z"),
            Instant::new(BASE, 0).unwrap()
        );
        assert_eq!(
            parse("2000-02-29T23:59:59Z"),
            Instant::new(951_868_799, 0).unwrap()
        );
        assert_eq!(parse("1969-12-31T23:59:59Z"), Instant::new(-1, 0).unwrap());
    }

    #[test]
    fn parses_every_fraction_length() {
        let cases = [
            ("2026-11-24T08:00:00.5Z", 500_000_000),
            ("2026-11-24T08:00:00.250Z", 250_000_000),
            ("2026-11-24T08:00:00.123Z", 123_000_000),
            ("2026-11-24T08:00:00.123456Z", 123_456_000),
            ("2026-11-24T08:00:00.123456789Z", 123_456_789),
            ("2026-11-24T08:00:00.000000001Z", 1),
        ];
        for (text, nanos) in cases {
            assert_eq!(parse(text), Instant::new(BASE, nanos).unwrap(), "{text}");
        }
    }

    #[test]
    fn fraction_is_later_than_whole_second() {
        // As text "...:00.5Z" sorts before "...:00Z"; as instants it is later.
        assert!("2026-11-24T08:00:00.5Z" < "2026-11-24T08:00:00Z");
        assert!(parse("2026-11-24T08:00:00.5Z") > parse("2026-11-24T08:00:00Z"));
        assert!(parse("2026-11-24T08:00:02.250Z") > parse("2026-11-24T08:00:02Z"));
        assert!(parse("2026-11-24T08:00:00.999999999Z") < parse("2026-11-24T08:00:01Z"));
    }

    #[test]
    fn applies_numeric_offsets() {
        let utc = parse("2026-11-24T08:00:00Z");
        assert_eq!(parse("2026-11-24T09:00:00+01:00"), utc);
        assert_eq!(parse("2026-11-24T02:30:00-05:30"), utc);
        assert_eq!(parse("2026-11-24T08:00:00+00:00"), utc);
        assert_eq!(parse("2026-11-24T08:00:00-00:00"), utc);
        assert_eq!(
            parse("2026-11-25T00:00:00.5+16:00"),
            Instant::new(BASE, 500_000_000).unwrap()
        );
    }

    #[test]
    fn rejects_malformed_text() {
        let bad = [
            "",
            "yesterday",
            "2026-11-24",
            "2026-11-24T08:00",
            "2026-11-24T08:00:00",
            "2026-11-24 08:00:00Z",
            "2026-11-24t08:00:00Z",
            "2026-11-24T08:00:00z",
            "2026-11-24T08:00:00.Z",
            "2026-11-24T08:00:00.1234567890Z",
            "2026-11-24T08:00:00Zjunk",
            "2026-11-24T08:00:00+0100",
            "2026-11-24T08:00:00+1",
            "2026-11-24T08:00:00+19:00",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-00T00:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T08:60:00Z",
            "2026-11-24T08:00:60Z",
            "+2026-11-24T08:00:00Z",
            "2026-1-24T08:00:00Z",
            "２026-11-24T08:00:00Z",
        ];
        for text in bad {
            assert!(Instant::parse(text).is_err(), "{text:?} should not parse");
        }
        assert_eq!(
            Instant::parse("2026-11-24T08:00:00")
                .unwrap_err()
                .to_string(),
            "missing zone: expected 'Z' or an offset"
        );
    }

    #[test]
    fn accepts_leap_days() {
        assert!(Instant::parse("2024-02-29T00:00:00Z").is_ok());
        assert!(Instant::parse("2000-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn formats_millis() {
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_millis(1_795_507_200_005), "2026-11-24T08:00:00.005Z");
        assert_eq!(format_millis(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(
            format_millis(253_402_300_799_000),
            "9999-12-31T23:59:59.000Z"
        );
    }

    #[test]
    fn displays_nanoseconds_only_when_there_are_some() {
        assert_eq!(
            parse("2026-11-24T08:00:00.123456789Z").to_string(),
            "2026-11-24T08:00:00.123456789Z"
        );
        assert_eq!(
            parse("2026-11-24T09:00:00.5+01:00").to_string(),
            "2026-11-24T08:00:00.500Z"
        );
        assert_eq!(
            parse("1969-12-31T23:59:59.000000001Z").to_string(),
            "1969-12-31T23:59:59.000000001Z"
        );
    }

    #[test]
    fn adds_milliseconds_across_seconds() {
        let t = parse("2026-11-24T08:00:00.999999999Z").plus_millis(1);
        assert_eq!(t.to_string(), "2026-11-24T08:00:01.000999999Z");
        assert_eq!(
            parse("2026-11-24T08:00:00Z").plus_millis(61_001),
            parse("2026-11-24T08:01:01.001Z")
        );
    }

    #[test]
    fn format_and_parse_agree() {
        let mut ms = 0u64;
        while ms < 253_402_300_799_000 {
            let text = format_millis(ms);
            assert_eq!(parse(&text), Instant::from_millis(ms), "{text}");
            ms += 7_919_993_337; // about three months, odd milliseconds
        }
    }
}
