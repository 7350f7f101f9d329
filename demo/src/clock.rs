//! The `updatedAt` instants: UTC ISO-8601 with milliseconds, as Java's
//! `Instant.toString()` writes them (`2026-11-24T08:00:00.123Z`), read back
//! with 0 to 9 fractional digits. Milliseconds since the Unix epoch inside.
//! No time zones, no dates before 1970.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now (0 for a clock set before 1970).
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `2026-11-24T08:00:00.000Z` for 1795507200000. Always three fractional
/// digits, so that instants also sort as text.
pub fn format_millis(millis: u64) -> String {
    let secs = millis / 1000;
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60,
        millis % 1000
    )
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` (digits
/// past the third are dropped), or `None` for anything else.
pub fn parse_millis(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let [year, month, day] = fields::<3>(date, '-', &[4, 2, 2])?;
    let [hour, minute, second] = fields::<3>(clock, ':', &[2, 2, 2])?;
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
        || fraction.len() > 9
        || (time.contains('.') && fraction.is_empty())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let millis = format!("{fraction:0<3}")[..3].parse::<u64>().ok()?;
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// `N` unsigned numbers separated by `sep`, each exactly `widths[i]` digits.
fn fields<const N: usize>(text: &str, sep: char, widths: &[usize; N]) -> Option<[u64; N]> {
    let mut out = [0; N];
    let mut parts = text.split(sep);
    for (slot, &width) in out.iter_mut().zip(widths) {
        let part = parts.next()?;
        if part.len() != width || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// The two conversions below are Howard Hinnant's `days_from_civil` and
// `civil_from_days` (http://howardhinnant.github.io/date_algorithms.html),
// restricted to dates from 1970 on.

/// Days since 1970-01-01 of a (valid) date on or after it.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `days` after 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_millis(1_795_507_200_000), "2026-11-24T08:00:00.000Z");
        assert_eq!(format_millis(951_868_799_123), "2000-02-29T23:59:59.123Z");
        assert_eq!(format_millis(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn parses_what_java_writes() {
        assert_eq!(
            parse_millis("2026-11-24T08:00:00Z"),
            Some(1_795_507_200_000)
        );
        assert_eq!(
            parse_millis("2026-11-24T08:00:00.5Z"),
            Some(1_795_507_200_500)
        );
        assert_eq!(
            parse_millis("2026-11-24T08:00:00.123456789Z"),
            Some(1_795_507_200_123)
        );
        assert_eq!(parse_millis("2000-02-29T23:59:59Z"), Some(951_868_799_000));
    }

    #[test]
    fn round_trips_every_day_for_three_centuries() {
        for days in (0..110_000u64).step_by(7) {
            let millis = days * 86_400_000 + 45_296_789;
            assert_eq!(parse_millis(&format_millis(millis)), Some(millis));
        }
    }

    #[test]
    fn refuses_what_is_not_an_instant() {
        for bad in [
            "",
            "2026-11-24",
            "2026-11-24T08:00:00",
            "2026-11-24T08:00:00+01:00",
            "2026-11-24 08:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T08:00:00.Z",
            "2026-11-24T08:00:00.1234567890Z",
            "2026-1-24T08:00:00Z",
            "1969-12-31T23:59:59Z",
            "+2026-11-24T08:00:00Z",
        ] {
            assert_eq!(parse_millis(bad), None, "{bad:?}");
        }
    }
}
