//! Session detail records (SDRs) and usage records: search filters and paging, the SDR view of
//! an OTP, and usage aggregation. Plain Rust; the stores read (`ports::RecordStore`).
//!
//! Order: newest first by (`created_ms`, `sid`), a total order (sids are unique), which is also
//! the order of DynamoDB's `gsi1sk`. A page position (`Mark`) is the last OTP a page showed,
//! so a following page starts strictly after it, whatever was created meanwhile.

use std::collections::BTreeMap;

use base64::Engine;
use chrono::{Datelike, Days, Months, NaiveDate};
use futures::{stream, StreamExt, TryStreamExt};

use super::{
    crypto::{Keys, Purpose},
    error::{Error, Result},
    ids,
    otp::{Channel, ChannelEvent, Otp, OtpStatus},
    time::{self, Millis},
    usage::{UsageCategory, UsageKey},
};
use crate::ports::{Counted, Deps};

pub const DEFAULT_PAGE_SIZE: u64 = 10;
pub const MAX_PAGE_SIZE: u64 = 1000;
/// How many store reads run at once when a search spans several accounts.
const FAN_OUT: usize = 8;
/// The most records a page asked for by number may skip (reading them to get there).
pub const MAX_SKIP: u64 = 10_000;

/// The records a first page's `total` reads per account, about: the newest 10,000 of the
/// search's time range (on DynamoDB shared out over the account's partitions, plus at most one
/// a partition and round; about 1,250 RRU for 1 KB records, eventually consistent).
/// `total` is exact when the range holds fewer; otherwise it counts the matches among those
/// (a lower bound), and the pages go on past it (`nextPageUri`).
pub const COUNT_READS: u64 = 10_000;

/// What a page token is sealed for (with the account and the search it belongs to).
const TOKEN_CONTEXT: &str = "pageToken";
const TOKEN_VERSION: &str = "1";
/// `/2fa/usage/records/daily` without dates covers this many days before today, and today
/// (the seed's daily example starts its range 30 days back).
pub const DAILY_DEFAULT_DAYS: u64 = 30;

// --- search ------------------------------------------------------------------------------------

/// Which OTPs a search returns; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// Compared with the status true at read time (`Otp::status_at`).
    pub status: Option<OtpStatus>,
    pub service: Option<String>,
    /// The destination; a phone number also matches with or without its leading `+`.
    pub to: Option<String>,
    /// The channel the OTP was sent on.
    pub channel: Option<Channel>,
    /// Inclusive bounds on `created_ms`.
    pub start_ms: Option<Millis>,
    pub end_ms: Option<Millis>,
}

impl SearchFilter {
    /// The destinations `to` matches: `+14155550100` and `14155550100` are the same number.
    pub fn to_variants(&self) -> Vec<String> {
        let Some(to) = self.to.as_deref() else { return vec![] };
        let digits = to.strip_prefix('+').unwrap_or(to);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            vec![format!("+{digits}"), digits.to_owned()]
        } else {
            vec![to.to_owned()]
        }
    }

    /// True when something besides the time range filters (a store then reads past
    /// non-matching OTPs to fill a page).
    pub fn is_selective(&self) -> bool {
        self.status.is_some() || self.service.is_some() || self.to.is_some() || self.channel.is_some()
    }

    pub fn in_time_range(&self, created_ms: Millis) -> bool {
        self.start_ms.is_none_or(|s| created_ms >= s) && self.end_ms.is_none_or(|e| created_ms <= e)
    }

    pub fn matches(&self, otp: &Otp, now: Millis) -> bool {
        self.in_time_range(otp.created_ms)
            && self.status.is_none_or(|s| otp.status_at(now) == s)
            && self.service.as_deref().is_none_or(|s| otp.service == s)
            && self.channel.is_none_or(|c| otp.delivery.channel == c)
            && (self.to.is_none() || self.to_variants().contains(&otp.delivery.to))
    }
}

/// `startTime`: a date (its midnight) or a date-time, UTC.
pub fn parse_start(s: &str) -> Option<Millis> {
    time::parse_date_or_datetime(s)
}

/// `endTime`, inclusive: a date covers that whole day, a date-time its whole second (dates
/// are shown to the second), unless it gives fractions.
pub fn parse_end(s: &str) -> Option<Millis> {
    let s = s.trim();
    if let Some(day) = time::parse_day(s) {
        let next = day.checked_add_days(Days::new(1))?;
        return Some(next.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis() - 1);
    }
    let ms = time::parse_date_or_datetime(s)?;
    Some(if s.contains('.') { ms } else { ms + 999 })
}

/// A position in the newest-first order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark {
    pub created_ms: Millis,
    pub sid: String,
}

impl Mark {
    pub fn of(otp: &Otp) -> Self {
        Mark { created_ms: otp.created_ms, sid: otp.sid.clone() }
    }
}

/// Where a store read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// From the newest, newest first.
    Newest,
    /// Strictly older than the mark, newest first (the next page).
    OlderThan(Mark),
    /// Strictly newer than the mark, oldest first (the previous page, read backwards).
    NewerThan(Mark),
}

/// One store read: up to `limit` OTPs of one account matching `filter` at `now`, from `start`.
#[derive(Debug, Clone)]
pub struct OtpQuery<'a> {
    pub filter: &'a SearchFilter,
    pub now: Millis,
    pub start: &'a Start,
    pub limit: usize,
}

/// Where a next or previous page starts, and what the first page counted: sealed into the
/// opaque `pageToken` so following it costs one read per account, and no count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    pub page: u64,
    /// `OlderThan` or `NewerThan`.
    pub start: Start,
    pub total: u64,
}

impl PageToken {
    /// base64url of the position sealed (AES-GCM) for `context`: the account and the search
    /// (filters, page size). Another account's or another search's token does not open.
    pub fn seal(&self, keys: &Keys, context: &str) -> String {
        let (dir, mark) = match &self.start {
            Start::OlderThan(m) => ("o", Some(m)),
            Start::NewerThan(m) => ("n", Some(m)),
            Start::Newest => ("f", None),
        };
        let (created, sid) = mark.map_or((0, ""), |m| (m.created_ms, m.sid.as_str()));
        let text = format!("{TOKEN_VERSION}|{}|{dir}|{created}|{sid}|{}", self.page, self.total);
        let sealed = keys.seal(Purpose::PageToken, text.as_bytes(), &token_aad(context));
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed)
    }

    /// The token, or a 400 naming `pageToken` when it is malformed, forged, or not this
    /// search's.
    pub fn open(token: &str, keys: &Keys, context: &str) -> Result<Self> {
        let bad = || Error::invalid("pageToken", "not a page token of this search; start again from page 0");
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| bad())?;
        let plain = keys.open(Purpose::PageToken, &sealed, &token_aad(context)).map_err(|_| bad())?;
        let text = String::from_utf8(plain).map_err(|_| bad())?;
        let parts: Vec<&str> = text.split('|').collect();
        let [TOKEN_VERSION, page, dir, created, sid, total] = parts[..] else { return Err(bad()) };
        let mark = Mark { created_ms: created.parse().map_err(|_| bad())?, sid: sid.to_owned() };
        let start = match dir {
            "o" => Start::OlderThan(mark),
            "n" => Start::NewerThan(mark),
            _ => return Err(bad()),
        };
        Ok(PageToken { page: page.parse().map_err(|_| bad())?, start, total: total.parse().map_err(|_| bad())? })
    }
}

fn token_aad(context: &str) -> String {
    format!("{TOKEN_CONTEXT}\0{context}")
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub filter: SearchFilter,
    /// From 0.
    pub page: u64,
    pub page_size: u64,
    /// Where this page starts, when the client followed a next/previous URI.
    pub token: Option<PageToken>,
}

#[derive(Debug, Clone)]
pub struct SearchPage {
    pub otps: Vec<Otp>,
    pub page: u64,
    pub total: u64,
    pub has_next: bool,
    /// Where the next page starts (when there is one).
    pub next: Option<PageToken>,
    /// Where the previous page starts, for pages past the second (page 0 needs no token).
    pub previous: Option<PageToken>,
}

/// One page of the OTPs of `accounts` (the acting account, then any sub-accounts), newest
/// first. Without a token: every account is counted (the total), then the first
/// `(page + 1) * page_size + 1` matches of each are read and merged. With a token: one read
/// of `page_size + 1` per account from the token's position, and the total from the token.
pub async fn search(deps: &Deps, accounts: &[String], req: &SearchRequest) -> Result<SearchPage> {
    let now = deps.clock.now_ms();
    let size = req.page_size.clamp(1, MAX_PAGE_SIZE) as usize;
    let (page, total, start, skip) = match &req.token {
        Some(t) => (t.page, t.total, t.start.clone(), 0),
        None => {
            // A page reached by number reads every record before it: past `MAX_SKIP` records
            // the pageToken walk (one page's read each) is the way, so no request costs more
            // than a bounded read.
            let skip = req.page.saturating_mul(size as u64);
            if skip > MAX_SKIP {
                return Err(Error::invalid(
                    "page",
                    format!(
                        "page × pageSize must be at most {MAX_SKIP}: follow nextPageUri (its pageToken) to go deeper"
                    ),
                ));
            }
            let counted = count(deps, accounts, &req.filter, now).await?;
            let total = counted.matched;
            if counted.complete && skip >= total {
                // Past the end: nothing to read.
                return Ok(SearchPage {
                    otps: vec![],
                    page: req.page,
                    total,
                    has_next: false,
                    next: None,
                    previous: None,
                });
            }
            (req.page, total, Start::Newest, skip as usize)
        }
    };
    // One more than the page, to know whether another page follows in the reading direction.
    let limit = skip + size + 1;
    let q = OtpQuery { filter: &req.filter, now, start: &start, limit };
    let per_account: Vec<Vec<Otp>> = stream::iter(accounts.to_vec())
        .map(|sid| {
            let q = q.clone();
            async move { deps.store.search_otps(&sid, &q).await }
        })
        .buffered(FAN_OUT)
        .try_collect()
        .await?;
    let backwards = matches!(start, Start::NewerThan(_));
    let mut all: Vec<Otp> = per_account.into_iter().flatten().collect();
    if backwards {
        all.sort_by_key(Mark::of);
    } else {
        all.sort_by_key(|o| std::cmp::Reverse(Mark::of(o)));
    }
    let mut otps: Vec<Otp> = all.into_iter().skip(skip).take(size + 1).collect();
    let more = otps.len() > size;
    otps.truncate(size);
    // Read backwards, a previous page is the one before a page the client has seen.
    let has_next = if backwards {
        otps.reverse();
        !otps.is_empty()
    } else {
        more
    };
    let next = match otps.last() {
        Some(last) if has_next => Some(PageToken { page: page + 1, start: Start::OlderThan(Mark::of(last)), total }),
        _ => None,
    };
    let previous = match otps.first() {
        Some(first) if page >= 2 => Some(PageToken { page: page - 1, start: Start::NewerThan(Mark::of(first)), total }),
        _ => None,
    };
    Ok(SearchPage { otps, page, total, has_next, next, previous })
}

/// The matches of every account, each counted among at most `COUNT_READS` records.
async fn count(deps: &Deps, accounts: &[String], filter: &SearchFilter, now: Millis) -> Result<Counted> {
    let counts: Vec<Counted> = stream::iter(accounts.to_vec())
        .map(|sid| async move { deps.store.count_otps(&sid, filter, now, COUNT_READS).await })
        .buffered(FAN_OUT)
        .try_collect()
        .await?;
    Ok(Counted { matched: counts.iter().map(|c| c.matched).sum(), complete: counts.iter().all(|c| c.complete) })
}

/// The OTP `sid` of the first of `accounts` that has it (the acting account first). Unknown,
/// malformed and other accounts' sids are all `Error::NotFound`.
pub async fn find(deps: &Deps, accounts: &[String], sid: &str) -> Result<Otp> {
    if !ids::is_sid(ids::OTP, sid) {
        return Err(Error::NotFound);
    }
    let mut found = stream::iter(accounts.to_vec())
        .map(|account| async move { deps.store.get_otp(&account, sid).await })
        .buffered(FAN_OUT);
    while let Some(otp) = found.next().await {
        if let Some(otp) = otp? {
            return Ok(otp);
        }
    }
    Err(Error::NotFound)
}

// --- the SDR view --------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdrCheck {
    pub sid: String,
    pub date_received: String,
    pub valid: bool,
    /// The code entered (None only if its sealed copy does not open, which is a bug).
    pub code: Option<String>,
}

/// An OTP as its session detail record shows it, true at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdr {
    pub sid: String,
    pub service: String,
    pub account_sid: String,
    pub date_created: String,
    pub date_updated: String,
    pub status: OtpStatus,
    pub checks: Vec<SdrCheck>,
    pub events: Vec<ChannelEvent>,
    /// The destination's country (ISO 3166-1 alpha-2), for phone numbers.
    pub country: Option<String>,
}

impl Sdr {
    pub fn of(otp: &Otp, now: Millis, keys: &Keys) -> Self {
        let checks = otp
            .checks
            .iter()
            .map(|c| SdrCheck {
                sid: c.sid.clone(),
                date_received: time::sdr(c.at_ms),
                valid: c.valid,
                code: match keys.open(Purpose::Code, &c.sealed_code, &otp.sid) {
                    Ok(code) => String::from_utf8(code).ok(),
                    // Sealed under a key retired since: the record stays, without the code.
                    Err(_) if keys.under_retired_key(&c.sealed_code) => None,
                    Err(_) => {
                        tracing::error!(otp = %otp.sid, check = %c.sid, "a check's code does not open");
                        None
                    }
                },
            })
            .collect();
        Sdr {
            sid: otp.sid.clone(),
            service: otp.service.clone(),
            account_sid: otp.account_sid.clone(),
            date_created: time::sdr(otp.created_ms),
            date_updated: time::sdr(otp.updated_at(now)),
            status: otp.status_at(now),
            checks,
            events: otp.events.clone(),
            country: otp.country.clone(),
        }
    }
}

// --- usage -------------------------------------------------------------------------------------------

/// `/2fa/usage/records` (a range) and its subresources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsagePeriod {
    Range,
    Daily,
    Monthly,
    Yearly,
    Today,
    Yesterday,
    ThisMonth,
    LastMonth,
    AllTime,
}

impl UsagePeriod {
    pub fn parse(subresource: &str) -> Option<Self> {
        Some(match subresource.to_ascii_lowercase().as_str() {
            "daily" => UsagePeriod::Daily,
            "monthly" => UsagePeriod::Monthly,
            "yearly" => UsagePeriod::Yearly,
            "today" => UsagePeriod::Today,
            "yesterday" => UsagePeriod::Yesterday,
            "thismonth" => UsagePeriod::ThisMonth,
            "lastmonth" => UsagePeriod::LastMonth,
            "alltime" => UsagePeriod::AllTime,
            _ => return None,
        })
    }

    pub fn as_str(self) -> Option<&'static str> {
        Some(match self {
            UsagePeriod::Range => return None,
            UsagePeriod::Daily => "daily",
            UsagePeriod::Monthly => "monthly",
            UsagePeriod::Yearly => "yearly",
            UsagePeriod::Today => "today",
            UsagePeriod::Yesterday => "yesterday",
            UsagePeriod::ThisMonth => "thismonth",
            UsagePeriod::LastMonth => "lastmonth",
            UsagePeriod::AllTime => "alltime",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRequest {
    pub period: UsagePeriod,
    pub category: UsageCategory,
    /// Inclusive; used by the range, daily, monthly and yearly forms (the others name their
    /// own period).
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
}

/// Inclusive days; `from` None = since the beginning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from: Option<NaiveDate>,
    pub to: NaiveDate,
}

impl Span {
    /// The span `req` covers on `today`. Without dates: the range and the monthly and yearly
    /// forms cover all time, daily the last 30 days; a missing end is today.
    pub fn of(req: &UsageRequest, today: NaiveDate) -> Span {
        let first_of_month = today.with_day(1).unwrap_or(today);
        match req.period {
            UsagePeriod::Today => Span { from: Some(today), to: today },
            UsagePeriod::Yesterday => {
                let y = today.pred_opt().unwrap_or(today);
                Span { from: Some(y), to: y }
            }
            UsagePeriod::ThisMonth => Span { from: Some(first_of_month), to: today },
            UsagePeriod::LastMonth => {
                let last = first_of_month.pred_opt().unwrap_or(first_of_month);
                Span { from: last.with_day(1), to: last }
            }
            UsagePeriod::AllTime => Span { from: None, to: today },
            UsagePeriod::Daily if req.start.is_none() => {
                Span { from: today.checked_sub_days(Days::new(DAILY_DEFAULT_DAYS)), to: req.end.unwrap_or(today) }
            }
            UsagePeriod::Range | UsagePeriod::Daily | UsagePeriod::Monthly | UsagePeriod::Yearly => {
                Span { from: req.start, to: req.end.unwrap_or_else(|| today.max(req.start.unwrap_or(today))) }
            }
        }
    }
}

/// One usage record: the count of `category` over `start..=end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub category: UsageCategory,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub count: u64,
}

/// The usage records of `account_sid`: one store read of its day counters over the span, then
/// sums (never a read of sessions).
pub async fn usage(
    deps: &Deps,
    account_sid: &str,
    account_created_ms: Millis,
    req: &UsageRequest,
) -> Result<Vec<UsageRecord>> {
    let today = time::parse_day(&time::day(deps.clock.now_ms())).ok_or(Error::Internal)?;
    let span = Span::of(req, today);
    if span.from.is_some_and(|f| f > span.to) {
        return Ok(vec![]);
    }
    let from = span.from.map_or_else(|| "0000-01-01".to_owned(), |d| d.format("%Y-%m-%d").to_string());
    let rows = deps.store.usage(account_sid, &from, &span.to.format("%Y-%m-%d").to_string()).await?;
    let created = time::parse_day(&time::day(account_created_ms));
    Ok(aggregate(&rows, req, span, created))
}

/// Sum the day counters `rows` of `req.category` into the records `req.period` asks for:
/// one per day / month / year with a count (oldest first), or one over the whole span. An
/// open start is shown as the account's first day (or the first day with usage, if earlier).
pub fn aggregate(
    rows: &[(UsageKey, u64)],
    req: &UsageRequest,
    span: Span,
    account_created: Option<NaiveDate>,
) -> Vec<UsageRecord> {
    let days: BTreeMap<NaiveDate, u64> = rows
        .iter()
        .filter(|(k, _)| k.category == req.category)
        .filter_map(|(k, n)| Some((time::parse_day(&k.day)?, *n)))
        .filter(|(d, _)| span.from.is_none_or(|f| *d >= f) && *d <= span.to)
        .fold(BTreeMap::new(), |mut m, (d, n)| {
            *m.entry(d).or_default() += n;
            m
        });
    let clip = |start: NaiveDate, end: NaiveDate| UsageRecord {
        category: req.category,
        start: span.from.map_or(start, |f| start.max(f)),
        end: end.min(span.to),
        count: 0,
    };
    let bucketed = |bucket: fn(NaiveDate) -> (NaiveDate, NaiveDate)| {
        let mut out: Vec<UsageRecord> = vec![];
        for (day, n) in &days {
            let (start, end) = bucket(*day);
            match out.last_mut() {
                Some(r) if r.start <= *day && *day <= r.end => r.count += n,
                _ => out.push(UsageRecord { count: *n, ..clip(start, end) }),
            }
        }
        out.retain(|r| r.count > 0);
        out
    };
    match req.period {
        UsagePeriod::Daily => bucketed(|d| (d, d)),
        UsagePeriod::Monthly => bucketed(month_of),
        UsagePeriod::Yearly => bucketed(year_of),
        _ => {
            let first_use = days.keys().next().copied();
            let start = span.from.unwrap_or_else(|| match (account_created, first_use) {
                (Some(c), Some(u)) => c.min(u),
                (c, u) => c.or(u).unwrap_or(span.to).min(span.to),
            });
            vec![UsageRecord { category: req.category, start, end: span.to, count: days.values().sum() }]
        }
    }
}

fn month_of(d: NaiveDate) -> (NaiveDate, NaiveDate) {
    let first = d.with_day(1).unwrap_or(d);
    let last = first.checked_add_months(Months::new(1)).and_then(|n| n.pred_opt()).unwrap_or(d);
    (first, last)
}

fn year_of(d: NaiveDate) -> (NaiveDate, NaiveDate) {
    let first = NaiveDate::from_ymd_opt(d.year(), 1, 1).unwrap_or(d);
    let last = NaiveDate::from_ymd_opt(d.year(), 12, 31).unwrap_or(d);
    (first, last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::otp::tests::otp_at;

    fn day(s: &str) -> NaiveDate {
        time::parse_day(s).unwrap()
    }

    #[test]
    fn status_filter_matches_the_status_true_at_read_time() {
        let otp = otp_at(0);
        let expired = SearchFilter { status: Some(OtpStatus::Expired), ..Default::default() };
        let pending = SearchFilter { status: Some(OtpStatus::Pending), ..Default::default() };
        assert!(pending.matches(&otp, 299_999) && !expired.matches(&otp, 299_999));
        assert!(expired.matches(&otp, 300_000) && !pending.matches(&otp, 300_000));
        let superseded = Otp { cancel_at_ms: Some(10_000), ..otp_at(0) };
        let canceled = SearchFilter { status: Some(OtpStatus::Canceled), ..Default::default() };
        assert!(canceled.matches(&superseded, 10_000));
        assert!(canceled.matches(&superseded, 900_000), "canceled before it expired stays canceled");
        assert!(!expired.matches(&superseded, 900_000));
    }

    #[test]
    fn to_matches_a_number_with_or_without_plus_and_other_filters_exactly() {
        let otp = otp_at(1_000);
        let f = |to: &str| SearchFilter { to: Some(to.into()), ..Default::default() };
        assert!(f("14155550100").matches(&otp, 0));
        assert!(f("+14155550100").matches(&otp, 0));
        assert!(!f("+14155550101").matches(&otp, 0));
        let svc = SearchFilter { service: Some("other".into()), ..Default::default() };
        assert!(!svc.matches(&otp, 0));
        let ch = SearchFilter { channel: Some(Channel::Email), ..Default::default() };
        assert!(!ch.matches(&otp, 0));
        let range = SearchFilter { start_ms: Some(1_000), end_ms: Some(1_000), ..Default::default() };
        assert!(range.matches(&otp, 0), "both bounds are inclusive");
    }

    #[test]
    fn end_time_covers_the_whole_day_or_second_it_names() {
        assert_eq!(parse_end("2021-02-04"), Some(1_612_483_200_000 - 1));
        assert_eq!(parse_end("2021-02-04T03:52:09"), Some(1_612_410_729_999));
        assert_eq!(parse_end("2021-02-04T03:52:09.100"), Some(1_612_410_729_100));
        assert_eq!(parse_end("yesterday"), None);
        assert_eq!(parse_start("2021-02-04"), Some(1_612_396_800_000));
    }

    #[test]
    fn page_tokens_open_only_for_their_account_and_search() {
        let keys = Keys::random();
        let token = PageToken {
            page: 3,
            start: Start::OlderThan(Mark { created_ms: 1_700_000_000_123, sid: "OTPabc".into() }),
            total: 42,
        };
        let text = token.seal(&keys, "AC1|status=success");
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "URL-safe: {text}");
        assert_eq!(PageToken::open(&text, &keys, "AC1|status=success").unwrap(), token);
        let param = |e: Error| matches!(e, Error::InvalidParameter { ref param, .. } if param == "pageToken");
        assert!(param(PageToken::open(&text, &keys, "AC2|status=success").unwrap_err()), "another account");
        assert!(param(PageToken::open(&text, &keys, "AC1|status=failed").unwrap_err()), "another search");
        assert!(param(PageToken::open(&text, &Keys::random(), "AC1|status=success").unwrap_err()), "another key");
        assert!(param(PageToken::open("not-a-token", &keys, "AC1").unwrap_err()));
        let mut tampered = text.into_bytes();
        tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
        assert!(param(
            PageToken::open(std::str::from_utf8(&tampered).unwrap(), &keys, "AC1|status=success").unwrap_err()
        ));
    }

    fn rows(list: &[(&str, UsageCategory, u64)]) -> Vec<(UsageKey, u64)> {
        list.iter()
            .map(|(d, c, n)| (UsageKey { account_sid: "AC1".into(), day: (*d).into(), category: *c }, *n))
            .collect()
    }

    fn req(period: UsagePeriod, category: UsageCategory) -> UsageRequest {
        UsageRequest { period, category, start: None, end: None }
    }

    #[test]
    fn daily_monthly_and_yearly_records_sum_day_counters_of_one_category() {
        let (all, sms) = (UsageCategory::All, UsageCategory::Channel(Channel::Sms));
        let r = rows(&[
            ("2019-08-05", all, 7),
            ("2019-08-05", sms, 9),
            ("2019-08-19", all, 4),
            ("2019-08-20", all, 3),
            ("2019-09-01", all, 0),
            ("2020-01-02", all, 5),
        ]);
        let span = Span { from: Some(day("2019-08-01")), to: day("2020-12-31") };
        let daily = aggregate(&r, &req(UsagePeriod::Daily, all), span, None);
        let got: Vec<_> = daily.iter().map(|r| (r.start.to_string(), r.end.to_string(), r.count)).collect();
        assert_eq!(
            got,
            [
                ("2019-08-05".into(), "2019-08-05".into(), 7),
                ("2019-08-19".into(), "2019-08-19".into(), 4),
                ("2019-08-20".into(), "2019-08-20".into(), 3),
                ("2020-01-02".into(), "2020-01-02".into(), 5),
            ]
        );
        let monthly = aggregate(&r, &req(UsagePeriod::Monthly, all), span, None);
        let got: Vec<_> = monthly.iter().map(|r| (r.start.to_string(), r.end.to_string(), r.count)).collect();
        assert_eq!(
            got,
            [("2019-08-01".into(), "2019-08-31".into(), 14), ("2020-01-01".into(), "2020-01-31".into(), 5)]
        );
        let yearly = aggregate(&r, &req(UsagePeriod::Yearly, all), span, None);
        assert_eq!(yearly.iter().map(|r| r.count).collect::<Vec<_>>(), [14, 5]);
        assert_eq!(yearly[1].end, day("2020-12-31"));
        let sms_total = aggregate(&r, &req(UsagePeriod::Range, sms), span, None);
        assert_eq!(
            sms_total,
            [UsageRecord { category: sms, start: day("2019-08-01"), end: day("2020-12-31"), count: 9 }]
        );
    }

    #[test]
    fn buckets_are_clipped_to_the_requested_span() {
        let r = rows(&[("2019-08-05", UsageCategory::All, 2), ("2019-08-25", UsageCategory::All, 3)]);
        let span = Span { from: Some(day("2019-08-10")), to: day("2019-08-28") };
        let monthly = aggregate(&r, &req(UsagePeriod::Monthly, UsageCategory::All), span, None);
        assert_eq!(
            monthly,
            [UsageRecord { category: UsageCategory::All, start: day("2019-08-10"), end: day("2019-08-28"), count: 3 }]
        );
    }

    #[test]
    fn spans_of_the_named_periods() {
        let today = day("2020-03-15");
        let span = |p| Span::of(&req(p, UsageCategory::All), today);
        assert_eq!(span(UsagePeriod::Today), Span { from: Some(today), to: today });
        assert_eq!(span(UsagePeriod::Yesterday), Span { from: Some(day("2020-03-14")), to: day("2020-03-14") });
        assert_eq!(span(UsagePeriod::ThisMonth), Span { from: Some(day("2020-03-01")), to: today });
        assert_eq!(span(UsagePeriod::LastMonth), Span { from: Some(day("2020-02-01")), to: day("2020-02-29") });
        assert_eq!(span(UsagePeriod::AllTime), Span { from: None, to: today });
        assert_eq!(span(UsagePeriod::Daily), Span { from: Some(day("2020-02-14")), to: today });
        assert_eq!(span(UsagePeriod::Range), Span { from: None, to: today });
        let jan = Span::of(&req(UsagePeriod::LastMonth, UsageCategory::All), day("2020-01-10"));
        assert_eq!(jan, Span { from: Some(day("2019-12-01")), to: day("2019-12-31") });
    }

    #[test]
    fn an_open_start_shows_the_accounts_first_day() {
        let r = rows(&[("2020-03-02", UsageCategory::All, 2)]);
        let span = Span { from: None, to: day("2020-03-15") };
        let all = aggregate(&r, &req(UsagePeriod::AllTime, UsageCategory::All), span, Some(day("2020-03-01")));
        assert_eq!(
            all,
            [UsageRecord { category: UsageCategory::All, start: day("2020-03-01"), end: day("2020-03-15"), count: 2 }]
        );
        let none = aggregate(&[], &req(UsagePeriod::AllTime, UsageCategory::All), span, None);
        assert_eq!(none[0].start, day("2020-03-15"));
        assert_eq!(none[0].count, 0);
    }
}
