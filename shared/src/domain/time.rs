//! Time is milliseconds since the Unix epoch (UTC) everywhere inside; these render it the way
//! the API shows it.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

pub type Millis = i64;

fn utc(ms: Millis) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// The last ms of 9999-12-31: up to it every instant from the epoch on is written by `write`;
/// others (never a real OTP's) go through chrono, whose answers `write` matches exactly.
const FAST_UNTIL_MS: Millis = 253_402_300_799_999;

/// Parts of a UTC instant that are written: `date`, then `Some(sep)` with the time, then
/// the milliseconds. Every send renders a day or two of these, and chrono's `format` parses
/// its pattern on each call (~3 % of a dev-server send's CPU): this writes the digits straight.
fn write(ms: Millis, time_sep: Option<char>, millis: bool, chrono_fmt: &str) -> String {
    if !(0..=FAST_UNTIL_MS).contains(&ms) {
        return utc(ms).format(chrono_fmt).to_string();
    }
    let (days, in_day) = (ms / 86_400_000, ms % 86_400_000);
    let (y, m, d) = civil_from_days(days);
    let mut out = String::with_capacity(28);
    let two = |out: &mut String, n: i64| {
        out.push(char::from(b'0' + (n / 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
    };
    two(&mut out, y / 100);
    two(&mut out, y % 100);
    out.push('-');
    two(&mut out, m);
    out.push('-');
    two(&mut out, d);
    if let Some(sep) = time_sep {
        let secs = in_day / 1000;
        out.push(sep);
        two(&mut out, secs / 3600);
        out.push(':');
        two(&mut out, secs / 60 % 60);
        out.push(':');
        two(&mut out, secs % 60);
        if millis {
            let frac = in_day % 1000;
            out.push('.');
            out.push(char::from(b'0' + (frac / 100) as u8));
            two(&mut out, frac % 100);
            out.push_str("+0000");
        }
    }
    out
}

/// Year, month, day of the `days`-th day after 1970-01-01 (days >= 0), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2019-08-20 10:28:08`, as session detail records show dates.
pub fn sdr(ms: Millis) -> String {
    write(ms, Some(' '), false, "%Y-%m-%d %H:%M:%S")
}

/// `2021-02-04T03:52:09.400+0000`, as limits and workflows show dates.
pub fn iso(ms: Millis) -> String {
    write(ms, Some('T'), true, "%Y-%m-%dT%H:%M:%S%.3f+0000")
}

/// `2020-01-31`, the UTC day of an instant.
pub fn day(ms: Millis) -> String {
    write(ms, None, false, "%Y-%m-%d")
}

pub fn parse_day(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// A date (`2018-10-05`, midnight) or date-time (`2018-10-05T22:45:32`, `2018-10-05 22:45:32`),
/// in UTC, as the search filters take them.
pub fn parse_date_or_datetime(s: &str) -> Option<Millis> {
    let s = s.trim();
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), fmt) {
            return Some(dt.and_utc().timestamp_millis());
        }
    }
    parse_day(s).map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_seed_formats() {
        let ms = 1_612_410_729_400; // 2021-02-04T03:52:09.400Z
        assert_eq!(iso(ms), "2021-02-04T03:52:09.400+0000");
        assert_eq!(sdr(ms), "2021-02-04 03:52:09");
        assert_eq!(day(ms), "2021-02-04");
    }

    #[test]
    fn parses_dates_and_date_times_as_utc() {
        assert_eq!(parse_date_or_datetime("2021-02-04"), Some(1_612_396_800_000));
        assert_eq!(parse_date_or_datetime("2021-02-04T03:52:09"), Some(1_612_410_729_000));
        assert_eq!(parse_date_or_datetime("2021-02-04 03:52:09"), Some(1_612_410_729_000));
        assert_eq!(parse_date_or_datetime("04/02/2021"), None);
    }

    fn chrono_says(ms: Millis, fmt: &str) -> String {
        utc(ms).format(fmt).to_string()
    }

    #[test]
    fn the_written_dates_are_chronos_at_the_edges_of_days_months_years_and_the_range() {
        // Given instants at every kind of boundary (leap days, centuries, the fast path's ends)
        let edges = [
            0,
            1,
            86_399_999,
            86_400_000,
            951_782_400_000,   // 2000-02-29
            4_107_542_399_999, // 2100-02-28T23:59:59.999
            4_107_542_400_000, // 2100-03-01 (not a leap year)
            FAST_UNTIL_MS,
            FAST_UNTIL_MS + 1,
            -1,
            -86_400_001,
            i64::MIN,
            i64::MAX,
        ];
        for ms in edges {
            // Then each rendering is chrono's, to the character
            assert_eq!(sdr(ms), chrono_says(ms, "%Y-%m-%d %H:%M:%S"), "sdr {ms}");
            assert_eq!(iso(ms), chrono_says(ms, "%Y-%m-%dT%H:%M:%S%.3f+0000"), "iso {ms}");
            assert_eq!(day(ms), chrono_says(ms, "%Y-%m-%d"), "day {ms}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_written_dates_are_chronos_for_any_instant(ms in -FAST_UNTIL_MS..2 * FAST_UNTIL_MS) {
            proptest::prop_assert_eq!(sdr(ms), chrono_says(ms, "%Y-%m-%d %H:%M:%S"));
            proptest::prop_assert_eq!(iso(ms), chrono_says(ms, "%Y-%m-%dT%H:%M:%S%.3f+0000"));
            proptest::prop_assert_eq!(day(ms), chrono_says(ms, "%Y-%m-%d"));
        }
    }
}
