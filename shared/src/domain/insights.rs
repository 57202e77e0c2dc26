//! Insights (ours, issue 28): what an account's verifications did over a time range, by hour,
//! channel and destination country, from counters kept as sends, verifies and receipts happen
//! (never a scan of OTPs). The console's overview draws these same numbers.
//!
//! The data types and the pure aggregation live here; the stores keep the counter cells
//! (`ports::InsightsStore`).

use std::collections::BTreeMap;

use super::{otp::Channel, time::Millis};

/// The refusals insights count, by API code: the default limit (453), a named limit (454),
/// geo permissions (476), the pumping guard (477), the failure budget (478).
pub const REFUSAL_CODES: [u16; 5] = [453, 454, 476, 477, 478];

/// One hour in milliseconds: the cells' grain.
pub const HOUR_MS: Millis = 3_600_000;
/// One day in milliseconds.
pub const DAY_MS: Millis = 24 * HOUR_MS;
/// The longest range one request may ask for (a custom range in the console included).
pub const MAX_RANGE_MS: Millis = 93 * DAY_MS;

/// Counters of one cell (or a sum of cells).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// OTPs created (a send that answered 200), by the OTP's first channel.
    pub sends: u64,
    /// OTPs verified, by the same channel as their send.
    pub verified: u64,
    /// Messages whose delivery report said delivered, by the message's channel.
    pub delivered: u64,
    /// Messages reported undelivered.
    pub undelivered: u64,
    /// Messages that failed (refused by the route or reported failed).
    pub failed: u64,
    /// Sends refused, in `REFUSAL_CODES` order.
    pub refused: [u64; 5],
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.sends += other.sends;
        self.verified += other.verified;
        self.delivered += other.delivered;
        self.undelivered += other.undelivered;
        self.failed += other.failed;
        for (a, b) in self.refused.iter_mut().zip(other.refused) {
            *a += b;
        }
    }

    /// Verified per send, 0–1; None without sends.
    pub fn conversion_rate(&self) -> Option<f64> {
        (self.sends > 0).then(|| self.verified as f64 / self.sends as f64)
    }

    /// Delivered per message with a final report, 0–1; None without reports.
    pub fn delivery_rate(&self) -> Option<f64> {
        let reported = self.delivered + self.undelivered + self.failed;
        (reported > 0).then(|| self.delivered as f64 / reported as f64)
    }

    /// The count of refusals with this API code (0 for a code insights do not count).
    pub fn refused_with(&self, code: u16) -> u64 {
        REFUSAL_CODES.iter().position(|c| *c == code).map_or(0, |i| self.refused[i])
    }

    pub fn refusals(&self) -> u64 {
        self.refused.iter().sum()
    }
}

/// The counters of one account in one UTC hour, for one channel and one destination country
/// (`ZZ`: none or unknown, as email has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub account_sid: String,
    /// The hour's first millisecond.
    pub hour_ms: Millis,
    pub channel: Channel,
    pub country: String,
    pub counts: Counts,
}

/// How a report's series is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
}

impl Granularity {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hour" => Some(Granularity::Hour),
            "day" => Some(Granularity::Day),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }

    pub fn step_ms(self) -> Millis {
        match self {
            Granularity::Hour => HOUR_MS,
            Granularity::Day => DAY_MS,
        }
    }
}

/// What to report: `[from_ms, to_ms)`, both on the granularity's boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsightsQuery {
    pub from_ms: Millis,
    pub to_ms: Millis,
    pub granularity: Granularity,
    pub channel: Option<Channel>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<String>,
}

/// The report the insights API answers and the console draws.
#[derive(Debug, Clone, PartialEq)]
pub struct InsightsReport {
    pub query: InsightsQuery,
    pub totals: Counts,
    /// Every period of the range, in order, zeros included.
    pub series: Vec<(Millis, Counts)>,
    /// Every channel with a count, in `Channel::ALL` order.
    pub channels: Vec<(Channel, Counts)>,
    /// Every country with a count, most sends first, then by code.
    pub countries: Vec<(String, Counts)>,
}

/// Sums cells into a report. Cells outside the query (range, channel, country) are left out.
pub fn report(query: &InsightsQuery, cells: &[Cell]) -> InsightsReport {
    let step = query.granularity.step_ms();
    let periods = ((query.to_ms - query.from_ms).max(0) + step - 1) / step;
    let mut series: Vec<(Millis, Counts)> =
        (0..periods).map(|i| (query.from_ms + i * step, Counts::default())).collect();
    let mut totals = Counts::default();
    let mut channels: BTreeMap<usize, Counts> = BTreeMap::new();
    let mut countries: BTreeMap<&str, Counts> = BTreeMap::new();
    for cell in cells {
        let in_range = cell.hour_ms >= query.from_ms && cell.hour_ms < query.to_ms;
        let channel_ok = query.channel.is_none_or(|c| c == cell.channel);
        let country_ok = query.country.as_deref().is_none_or(|c| c == cell.country);
        if !(in_range && channel_ok && country_ok) {
            continue;
        }
        let i = ((cell.hour_ms - query.from_ms) / step) as usize;
        if let Some((_, counts)) = series.get_mut(i) {
            counts.add(&cell.counts);
        }
        totals.add(&cell.counts);
        let c = Channel::ALL.iter().position(|c| *c == cell.channel).unwrap_or(0);
        channels.entry(c).or_default().add(&cell.counts);
        countries.entry(cell.country.as_str()).or_default().add(&cell.counts);
    }
    let channels = channels.into_iter().map(|(i, counts)| (Channel::ALL[i], counts)).collect();
    let mut countries: Vec<(String, Counts)> = countries.into_iter().map(|(c, n)| (c.to_string(), n)).collect();
    countries.sort_by(|a, b| b.1.sends.cmp(&a.1.sends).then_with(|| a.0.cmp(&b.0)));
    InsightsReport { query: query.clone(), totals, series, channels, countries }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(hour: Millis, channel: Channel, country: &str, sends: u64, verified: u64) -> Cell {
        Cell {
            account_sid: "AC1".into(),
            hour_ms: hour * HOUR_MS,
            channel,
            country: country.into(),
            counts: Counts { sends, verified, ..Counts::default() },
        }
    }

    #[test]
    fn a_report_sums_cells_per_period_channel_and_country_and_leaves_out_what_is_outside() {
        // Given cells over three hours, one of them outside the range
        let cells = [
            cell(0, Channel::Sms, "US", 4, 3),
            cell(1, Channel::Sms, "GB", 2, 1),
            cell(1, Channel::Call, "US", 1, 1),
            cell(5, Channel::Sms, "US", 9, 9),
        ];
        let query = InsightsQuery {
            from_ms: 0,
            to_ms: 3 * HOUR_MS,
            granularity: Granularity::Hour,
            channel: None,
            country: None,
        };
        // When they are reported
        let r = report(&query, &cells);
        // Then every hour is a period, and the sums are by channel and country
        assert_eq!(r.series.len(), 3);
        assert_eq!(r.series[1].1.sends, 3);
        assert_eq!(r.series[2].1, Counts::default());
        assert_eq!(r.totals.sends, 7);
        assert_eq!(r.totals.conversion_rate(), Some(5.0 / 7.0));
        assert_eq!(
            r.channels.iter().map(|(c, n)| (*c, n.sends)).collect::<Vec<_>>(),
            [(Channel::Sms, 6), (Channel::Call, 1)]
        );
        assert_eq!(r.countries.iter().map(|(c, n)| (c.as_str(), n.sends)).collect::<Vec<_>>(), [("US", 5), ("GB", 2)]);
    }

    #[test]
    fn rates_are_none_without_a_denominator() {
        assert_eq!(Counts::default().conversion_rate(), None);
        assert_eq!(Counts::default().delivery_rate(), None);
        let c = Counts { delivered: 3, undelivered: 1, refused: [0, 2, 0, 0, 1], ..Counts::default() };
        assert_eq!(c.delivery_rate(), Some(0.75));
        assert_eq!(c.refused_with(454), 2);
        assert_eq!(c.refusals(), 3);
    }
}
