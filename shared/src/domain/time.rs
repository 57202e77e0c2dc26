//! Time is milliseconds since the Unix epoch (UTC) everywhere inside; these render it the way
//! the API shows it.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

pub type Millis = i64;

fn utc(ms: Millis) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// `2019-08-20 10:28:08`, as session detail records show dates.
pub fn sdr(ms: Millis) -> String {
    utc(ms).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `2021-02-04T03:52:09.400+0000`, as limits and workflows show dates.
pub fn iso(ms: Millis) -> String {
    utc(ms).format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// `2020-01-31`, the UTC day of an instant.
pub fn day(ms: Millis) -> String {
    utc(ms).format("%Y-%m-%d").to_string()
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
}
