//! Insights (ours, issue 28): what an account's verifications did over a time range, by hour,
//! channel and destination country, from counters kept as sends, verifies and receipts happen
//! (never a scan of OTPs). The console's overview draws these same numbers.
//!
//! The data types, the pure aggregation, the counts each OTP change brings (`changes`, shared
//! by the embedded store and the DynamoDB stream worker) and the API's parameters
//! (`query_of`) live here; the stores keep the counter cells (`ports::InsightsStore`).
//!
//! What counts where: every count of an OTP goes to the hour it was **sent** (its
//! `created_ms`), its first channel (a delivery outcome: the message's own channel) and its
//! destination country (`ZZ` for email or none): so a period's conversion is "of the OTPs
//! sent then, how many were verified", never above 1. A refusal counts in the hour it was
//! refused. OTPs to an account's test destinations count as sends and verifies like any other
//! (they are the account's traffic; the usage API shows them apart as `test`); they have no
//! delivery outcome.

use std::collections::BTreeMap;

use super::{
    error::{Error, Result},
    otp::{Channel, ChannelStatus, Otp},
    time::{self, Millis},
};
use crate::ports::Deps;

/// The refusals insights count, by API code: the default limit (453), a named limit (454),
/// geo permissions (476), the pumping guard (477), the failure budget (478).
pub const REFUSAL_CODES: [u16; 5] = [453, 454, 476, 477, 478];

/// One hour in milliseconds: the cells' grain.
pub const HOUR_MS: Millis = 3_600_000;
/// One day in milliseconds.
pub const DAY_MS: Millis = 24 * HOUR_MS;
/// The longest range one request may ask for (a custom range in the console included).
pub const MAX_RANGE_MS: Millis = 93 * DAY_MS;
/// The longest range reported by hour (168 periods); longer ones are by day.
pub const MAX_HOURLY_RANGE_MS: Millis = 7 * DAY_MS;
/// Without `granularity`, ranges up to this long are by hour, longer ones by day.
pub const DEFAULT_HOURLY_UP_TO_MS: Millis = 72 * HOUR_MS;
/// The country of a cell without one (email) or with none of ISO 3166's (non-geographic).
pub const NO_COUNTRY: &str = "ZZ";

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
    /// Of `totals.verified`, those of channels that send nothing (factors' challenges).
    pub verified_sending_nothing: u64,
}

impl InsightsReport {
    /// The share of verifications that sent nothing (none verified: None).
    pub fn sent_nothing_share(&self) -> Option<f64> {
        (self.totals.verified > 0).then(|| self.verified_sending_nothing as f64 / self.totals.verified as f64)
    }
}

/// Sums cells into a report. Cells outside the query (range, channel, country) are left out.
pub fn report(query: &InsightsQuery, cells: &[Cell]) -> InsightsReport {
    let step = query.granularity.step_ms();
    let periods = ((query.to_ms - query.from_ms).max(0) + step - 1) / step;
    let mut series: Vec<(Millis, Counts)> =
        (0..periods).map(|i| (query.from_ms + i * step, Counts::default())).collect();
    let mut totals = Counts::default();
    let mut verified_sending_nothing = 0;
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
        if !cell.channel.sends() {
            verified_sending_nothing += cell.counts.verified;
        }
        let c = Channel::ALL.iter().position(|c| *c == cell.channel).unwrap_or(0);
        channels.entry(c).or_default().add(&cell.counts);
        countries.entry(cell.country.as_str()).or_default().add(&cell.counts);
    }
    let channels = channels.into_iter().map(|(i, counts)| (Channel::ALL[i], counts)).collect();
    let mut countries: Vec<(String, Counts)> = countries.into_iter().map(|(c, n)| (c.to_string(), n)).collect();
    countries.sort_by(|a, b| b.1.sends.cmp(&a.1.sends).then_with(|| a.0.cmp(&b.0)));
    InsightsReport { query: query.clone(), totals, series, channels, countries, verified_sending_nothing }
}

/// The first millisecond of the UTC hour of `ms`.
pub fn hour_of(ms: Millis) -> Millis {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// The first millisecond of the UTC day of `ms`.
pub fn day_of(ms: Millis) -> Millis {
    ms.div_euclid(DAY_MS) * DAY_MS
}

/// A cell's country: the destination's ISO 3166-1 alpha-2 code, else `ZZ` (email, or a
/// non-geographic number).
pub fn country_of(country: Option<&str>) -> String {
    match country {
        Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) => c.to_owned(),
        _ => NO_COUNTRY.to_owned(),
    }
}

/// The channel an OTP's send counts under: its first step's (a workflow's first step may
/// wait, so it is not always among its events yet).
pub fn first_channel(otp: &Otp) -> Channel {
    otp.workflow
        .as_ref()
        .and_then(|w| w.steps.first().map(|s| s.channel))
        .or_else(|| otp.events.first().map(|e| e.channel))
        .unwrap_or(otp.delivery.channel)
}

fn cell_of(otp: &Otp, channel: Channel, counts: Counts) -> Cell {
    Cell {
        account_sid: otp.account_sid.clone(),
        hour_ms: hour_of(otp.created_ms),
        channel,
        country: country_of(otp.country.as_deref()),
        counts,
    }
}

/// The send of `otp`: one in its sending hour, first channel and country.
pub fn send_cell(otp: &Otp) -> Cell {
    cell_of(otp, first_channel(otp), Counts { sends: 1, ..Counts::default() })
}

/// The verify of `otp`: counted where its send is.
pub fn verified_cell(otp: &Otp) -> Cell {
    cell_of(otp, first_channel(otp), Counts { verified: 1, ..Counts::default() })
}

/// A message of `otp` on `channel` whose status went from `old` (None: a new message) to
/// `new`: counted once, when it first reaches a final status (delivered, undelivered or
/// failed, a route's refusal at send included).
pub fn outcome_cell(otp: &Otp, channel: Channel, old: Option<ChannelStatus>, new: ChannelStatus) -> Option<Cell> {
    let is_final =
        |s: ChannelStatus| matches!(s, ChannelStatus::Delivered | ChannelStatus::Undelivered | ChannelStatus::Failed);
    if !is_final(new) || old.is_some_and(is_final) {
        return None;
    }
    let mut counts = Counts::default();
    match new {
        ChannelStatus::Delivered => counts.delivered = 1,
        ChannelStatus::Undelivered => counts.undelivered = 1,
        _ => counts.failed = 1,
    }
    Some(cell_of(otp, channel, counts))
}

/// A send refused with `code` (one of `REFUSAL_CODES`; None for another code), in the hour
/// it was refused.
pub fn refusal_cell(account_sid: &str, at: Millis, channel: Channel, country: &str, code: u16) -> Option<Cell> {
    let i = REFUSAL_CODES.iter().position(|c| *c == code)?;
    let mut counts = Counts::default();
    counts.refused[i] = 1;
    Some(Cell {
        account_sid: account_sid.to_owned(),
        hour_ms: hour_of(at),
        channel,
        country: country_of(Some(country)),
        counts,
    })
}

/// Every count one change of an OTP brings (`old` None: it was created): its send, its verify,
/// each message's first final status. The embedded store counts these as it writes; the
/// DynamoDB stream worker off the table's stream, from the same function.
pub fn changes(old: Option<&Otp>, new: &Otp) -> Vec<Cell> {
    let mut cells = vec![];
    if old.is_none() {
        cells.push(send_cell(new));
    }
    let success = |o: &Otp| o.status == super::otp::OtpStatus::Success;
    if success(new) && !old.is_some_and(success) {
        cells.push(verified_cell(new));
    }
    for (i, e) in new.events.iter().enumerate() {
        let before = old.and_then(|o| o.events.get(i)).map(|e| e.status);
        cells.extend(outcome_cell(new, e.channel, before, e.status));
    }
    cells
}

/// Sums cells of one account, hour (or any one key), channel and country into one each.
pub fn merge(cells: impl IntoIterator<Item = Cell>) -> Vec<Cell> {
    let mut merged: BTreeMap<(String, Millis, usize, String), Counts> = BTreeMap::new();
    for c in cells {
        let ch = Channel::ALL.iter().position(|x| *x == c.channel).unwrap_or(0);
        merged.entry((c.account_sid, c.hour_ms, ch, c.country)).or_default().add(&c.counts);
    }
    merged
        .into_iter()
        .map(|((account_sid, hour_ms, ch, country), counts)| Cell {
            account_sid,
            hour_ms,
            channel: Channel::ALL[ch],
            country,
            counts,
        })
        .collect()
}

/// The insights API's parameters as given (each None when absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct InsightsParams<'a> {
    /// `24h`, `7d` or `30d` (default `24h` when neither `from` nor `to` is given).
    pub range: Option<&'a str>,
    /// A UTC date (`2026-12-01`, midnight) or date-time (`2026-12-01T10:00:00`).
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    /// `hour` or `day`.
    pub granularity: Option<&'a str>,
    pub channel: Option<&'a str>,
    pub country: Option<&'a str>,
}

/// The query the parameters ask for at `now`, or `Error::InvalidParameter` naming the first bad
/// one (an HTTP 400). The console's overview reads its own parameters through this too.
///
/// - `range=24h`: the 24 whole hours ending with the current one; `7d` / `30d`: that many whole
///   UTC days ending today. Not with `from`/`to`.
/// - `from` and `to` (both, or neither): `from` rounds down and `to` up to the granularity's
///   boundary; `from < to`, at most `MAX_RANGE_MS` apart.
/// - `granularity`: `hour` (for a range up to `MAX_HOURLY_RANGE_MS`) or `day`; default `hour`
///   up to `DEFAULT_HOURLY_UP_TO_MS`, else `day`.
/// - `channel`: `sms`, `call`, `email`, `whatsapp`; `country`: ISO 3166-1 alpha-2 (any case).
pub fn query_of(p: &InsightsParams<'_>, now: Millis) -> Result<InsightsQuery> {
    let granularity = p
        .granularity
        .map(|g| Granularity::parse(g.trim()).ok_or_else(|| Error::invalid("granularity", "must be hour or day")))
        .transpose()?;
    let channel = p
        .channel
        .map(|c| {
            Channel::parse_any(c.trim())
                .ok_or_else(|| Error::invalid("channel", "must be sms, call, email, whatsapp, totp or passkey"))
        })
        .transpose()?;
    let country = p
        .country
        .map(|c| {
            let c = c.trim();
            (c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
                .then(|| c.to_ascii_uppercase())
                .ok_or_else(|| Error::invalid("country", "must be an ISO 3166-1 alpha-2 country code"))
        })
        .transpose()?;
    let (from_ms, to_ms, default_granularity) = match (p.range, p.from, p.to) {
        (Some(_), Some(_), _) => return Err(Error::invalid("range", "give range, or from and to, not both")),
        (Some(_), None, Some(_)) => return Err(Error::invalid("range", "give range, or from and to, not both")),
        (None, Some(_), None) => return Err(Error::invalid("to", "required with from")),
        (None, None, Some(_)) => return Err(Error::invalid("from", "required with to")),
        (range, None, None) => {
            let hour = hour_of(now);
            let day = day_of(now);
            match range.map(str::trim).unwrap_or("24h") {
                "24h" => (hour - 23 * HOUR_MS, hour + HOUR_MS, Granularity::Hour),
                "7d" => (day - 6 * DAY_MS, day + DAY_MS, Granularity::Day),
                "30d" => (day - 29 * DAY_MS, day + DAY_MS, Granularity::Day),
                _ => return Err(Error::invalid("range", "must be 24h, 7d or 30d")),
            }
        }
        (None, Some(from), Some(to)) => {
            let parse = |name: &'static str, s: &str| {
                time::parse_date_or_datetime(s).ok_or_else(|| {
                    Error::invalid(name, "must be a UTC date YYYY-MM-DD or date-time YYYY-MM-DDTHH:MM:SS")
                })
            };
            let (from, to) = (parse("from", from)?, parse("to", to)?);
            if to <= from {
                return Err(Error::invalid("to", "must be after from"));
            }
            let g = if to - from <= DEFAULT_HOURLY_UP_TO_MS { Granularity::Hour } else { Granularity::Day };
            (from, to, g)
        }
    };
    let granularity = granularity.unwrap_or(default_granularity);
    let step = granularity.step_ms();
    let from_ms = from_ms.div_euclid(step) * step;
    let to_ms = (to_ms + step - 1).div_euclid(step) * step;
    if to_ms - from_ms > MAX_RANGE_MS {
        let name = if p.range.is_some() { "range" } else { "to" };
        return Err(Error::invalid(name, "at most 93 days after from"));
    }
    if granularity == Granularity::Hour && to_ms - from_ms > MAX_HOURLY_RANGE_MS {
        return Err(Error::invalid("granularity", "must be day for a range over 7 days"));
    }
    Ok(InsightsQuery { from_ms, to_ms, granularity, channel, country })
}

/// The insights of `account_sid` (the acting account, already checked to be the caller's or
/// one of its tree's): one read of its cells over the range, summed.
pub async fn insights(deps: &Deps, account_sid: &str, q: &InsightsQuery) -> Result<InsightsReport> {
    let cells = deps.store.insight_cells(account_sid, q.from_ms, q.to_ms, q.granularity).await?;
    Ok(report(q, &cells))
}

/// Counts a refused send, if `error` is one of the refusals insights count. A store that cannot
/// count it is logged and otherwise ignored: the refusal is answered all the same.
pub async fn count_refusal(deps: &Deps, account_sid: &str, channel: Channel, country: Option<&str>, error: &Error) {
    let code = match error {
        Error::TooManyToDestination => 453,
        Error::LimitExceeded(_) => 454,
        Error::CountryNotAllowed(_) => 476,
        Error::SendsPaused(_) => 477,
        Error::TooManyFailures => 478,
        _ => return,
    };
    let country = country_of(country);
    let now = deps.clock.now_ms();
    let counted = tokio::time::timeout(
        REFUSAL_COUNT_TIMEOUT,
        deps.store.count_refusal(account_sid, now, channel, &country, code),
    );
    match counted.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(account = %account_sid, code, error = %e, "refusal not counted in insights"),
        Err(_) => tracing::warn!(account = %account_sid, code, "refusal not counted in insights: the store was slow"),
    }
}

/// The longest a refusal waits for its count (one write, normally a few ms): a store that is
/// slow or down costs the refusal at most this, never its answer.
pub const REFUSAL_COUNT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

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

#[cfg(test)]
mod query_tests {
    use super::*;

    const NOW: Millis = 20_000 * DAY_MS + 10 * HOUR_MS + 1_234; // 10:00:01.234 one day

    fn q(p: InsightsParams<'_>) -> Result<InsightsQuery> {
        query_of(&p, NOW)
    }

    #[test]
    fn the_named_ranges_end_with_the_current_hour_or_day() {
        let h = q(InsightsParams::default()).unwrap();
        assert_eq!(
            (h.from_ms, h.to_ms, h.granularity),
            (hour_of(NOW) - 23 * HOUR_MS, hour_of(NOW) + HOUR_MS, Granularity::Hour)
        );
        let d = q(InsightsParams { range: Some("30d"), ..Default::default() }).unwrap();
        assert_eq!(
            (d.to_ms - d.from_ms, d.to_ms, d.granularity),
            (30 * DAY_MS, day_of(NOW) + DAY_MS, Granularity::Day)
        );
    }

    #[test]
    fn a_custom_range_is_rounded_out_and_its_granularity_follows_its_length() {
        let p =
            InsightsParams { from: Some("2024-10-01T10:30:00"), to: Some("2024-10-01T12:10:00"), ..Default::default() };
        let r = q(p).unwrap();
        assert_eq!(((r.to_ms - r.from_ms) / HOUR_MS, r.granularity), (3, Granularity::Hour));
        let p = InsightsParams { from: Some("2024-10-01"), to: Some("2024-10-05"), ..Default::default() };
        assert_eq!(q(p).unwrap().granularity, Granularity::Day);
        let p = InsightsParams { from: Some("2024-10-01"), to: Some("2025-01-02"), ..Default::default() };
        assert_eq!(q(p).unwrap().to_ms - q(p).unwrap().from_ms, MAX_RANGE_MS);
    }

    #[test]
    fn a_bad_parameter_is_named() {
        let named = |p: InsightsParams<'_>| match q(p) {
            Err(Error::InvalidParameter { param, .. }) => param,
            other => panic!("{other:?}"),
        };
        assert_eq!(named(InsightsParams { range: Some("1w"), ..Default::default() }), "range");
        assert_eq!(named(InsightsParams { from: Some("2024-10-01"), ..Default::default() }), "to");
        assert_eq!(
            named(InsightsParams { from: Some("2024-10-01"), to: Some("2025-01-03"), ..Default::default() }),
            "to"
        );
        assert_eq!(
            named(InsightsParams { range: Some("30d"), granularity: Some("hour"), ..Default::default() }),
            "granularity"
        );
        assert_eq!(named(InsightsParams { country: Some("U1"), ..Default::default() }), "country");
        assert_eq!(named(InsightsParams { channel: Some("fax"), ..Default::default() }), "channel");
    }

    #[test]
    fn an_otps_changes_count_its_send_verify_and_each_messages_first_final_status_once() {
        use crate::domain::otp::{tests::otp_at, OtpStatus};
        let mut otp = otp_at(NOW);
        otp.country = Some("GB".into());
        otp.events.push(crate::domain::otp::ChannelEvent {
            sid: "EV0".into(),
            at_ms: NOW,
            channel: Channel::Sms,
            sender: "Twofa".into(),
            recipient: "+447400123456".into(),
            target_sid: Some("SM0".into()),
            status: ChannelStatus::Sent,
            error_code: None,
            error_message: None,
            encoding: None,
            segments: None,
            route: None,
        });
        let sent = changes(None, &otp);
        assert_eq!((sent.len(), sent[0].counts.sends, sent[0].country.as_str()), (1, 1, "GB"));
        assert_eq!(sent[0].hour_ms, hour_of(NOW));
        let mut later = otp.clone();
        later.status = OtpStatus::Success;
        later.events[0].status = ChannelStatus::Delivered;
        let cells = merge(changes(Some(&otp), &later));
        assert_eq!(cells.len(), 1);
        assert_eq!((cells[0].counts.verified, cells[0].counts.sends), (1, 0));
        assert_eq!(cells[0].counts.delivered, 1);
        // The same change seen again (nothing new) counts nothing
        assert!(changes(Some(&later), &later).is_empty());
    }
}
