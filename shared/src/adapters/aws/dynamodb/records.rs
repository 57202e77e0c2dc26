//! Session detail and usage records on DynamoDB (docs/data-model.md, "Records").
//!
//! - Search: `Query` of the account's OTP partition (`pk = OTP#{account}`, `sk = sid`, and a
//!   sid starts with its creation time), newest first (`ScanIndexForward=false`), the time
//!   range as `sk BETWEEN` the sid floors of its ends, everything else (service, to, channel,
//!   and the status as it is at read time) as a `FilterExpression`. One round trip a page, and
//!   no index for a send or a verify to write. A page position is turned back into the
//!   `ExclusiveStartKey` DynamoDB itself would give.
//! - Count: the same query with `Select=COUNT`.
//! - Usage: one round of `Query`s, one of each of the account's usage partitions (and the one
//!   from before they were spread), `sk BETWEEN {from}# AND {to}#~`.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use futures::{stream, FutureExt, StreamExt, TryStreamExt};

use super::{
    errors,
    items::{attr, esc, from_item, Item, Key, OtpItem, USAGE_SHARDS},
    n,
    otps::PENDING_AT_NOW,
    s, DynamoStore, Expr,
};
use crate::{
    domain::{
        error::{Error, Result},
        ids,
        otp::{Otp, OtpStatus},
        records::{OtpQuery, SearchFilter, Start},
        time::Millis,
        usage::{UsageCategory, UsageKey},
    },
    ports::{Counted, OtpStore, RecordStore},
};

/// The key condition every partition of a search is read with.
const KEY_CONDITION: &str = "#pk = :pk AND #sk BETWEEN :lo AND :hi";
/// What one partition's first read evaluates at least (with a filter: exactly): small, as
/// most partitions of a small account hold a few OTPs; each further read of a partition with
/// a filter evaluates `GROWTH` times more, up to `MAX_READ`.
const FIRST_READ: usize = 8;
const GROWTH: usize = 4;
const MAX_READ: usize = 1000;
/// Reads of one round in flight at once: a round of 257 partitions goes out in 5 waves, so
/// that a process does not open hundreds of connections at once (each new one a TLS handshake;
/// an emulator refuses them).
const PARALLEL_READS: usize = 64;

/// The reads of one search of one account: the filter, which every partition shares, and the
/// partitions with their sort-key bounds.
struct SearchPlan {
    filter: Option<String>,
    /// The filter's names and values, and `#pk`/`#sk`; each read adds `:pk`, `:lo` and `:hi`.
    expr: Expr,
    parts: Vec<Part>,
}

/// One partition a search reads: its key, and the sort-key bounds of the time range,
/// inclusive (no sid equals either: a bound is a sid's time part alone, or the prefix).
#[derive(Debug, Clone)]
struct Part {
    pk: String,
    lo: String,
    hi: String,
}

impl SearchPlan {
    /// None when the time range is empty. The partitions: the account's `ids::OTP_SHARDS`
    /// shards, then its old partition (OTPs from before sharding, until they expire).
    fn new(account_sid: &str, f: &SearchFilter, now: Millis, shards: usize) -> Option<Self> {
        if f.end_ms.is_some_and(|end| end < 0) {
            return None;
        }
        let from = f.start_ms.unwrap_or(0).max(0);
        let to = f.end_ms.map_or(Millis::MAX, |end| end.saturating_add(1));
        let (lo, hi) = (ids::otp_sid_floor(from), ids::otp_sid_floor(to));
        let mut parts: Vec<Part> = if lo < hi {
            (0..shards)
                .map(|shard| Part { pk: Key::otp_shard(account_sid, shard as u8), lo: lo.clone(), hi: hi.clone() })
                .collect()
        } else {
            vec![]
        };
        let (lo, hi) = (ids::legacy_otp_sid_floor(from), ids::legacy_otp_sid_floor(to));
        if lo < hi {
            parts.push(Part { pk: Key::legacy_otp_partition(account_sid), lo, hi });
        }
        if parts.is_empty() {
            return None;
        }
        let mut expr = Expr::default().name(attr::PK).name(attr::SK);
        let mut conditions: Vec<String> = vec![];
        if let Some(service) = &f.service {
            conditions.push("#service = :service".into());
            expr = expr.name("service").value(":service", s(service));
        }
        let to = f.to_variants();
        if !to.is_empty() {
            let placeholders: Vec<String> = (0..to.len()).map(|i| format!(":to{i}")).collect();
            conditions.push(format!("#to IN ({})", placeholders.join(", ")));
            expr = expr.name("to");
            for (p, v) in placeholders.iter().zip(to) {
                expr = expr.value(p, s(v));
            }
        }
        if let Some(channel) = f.channel {
            conditions.push("#channel = :channel".into());
            expr = expr.name("channel").value(":channel", s(channel.as_str()));
        }
        if let Some(status) = f.status {
            let (condition, e) = status_at(status, now, expr);
            conditions.push(condition);
            expr = e;
        }
        Some(SearchPlan { filter: (!conditions.is_empty()).then(|| conditions.join(" AND ")), expr, parts })
    }
}

/// The condition under which an OTP's status at `:now` is `status` (`Otp::status_at`): a
/// stored `pending` reads `canceled` from its supersede deadline on (if that came before its
/// expiry), else `expired` from its expiry on.
fn status_at(status: OtpStatus, now: Millis, expr: Expr) -> (String, Expr) {
    let expr = expr.name(attr::STATUS);
    let this = |e: Expr| e.value(":status", s(status.as_str()));
    let read_time = |e: Expr| {
        e.name(attr::EXPIRES_MS)
            .name(attr::CANCEL_AT_MS)
            .value(":pending", s(OtpStatus::Pending.as_str()))
            .value(":now", n(now))
    };
    match status {
        OtpStatus::Pending => (format!("({PENDING_AT_NOW})"), read_time(expr)),
        OtpStatus::Success | OtpStatus::Failed => ("#status = :status".into(), this(expr)),
        OtpStatus::Canceled => (
            "(#status = :status OR (#status = :pending AND #cancel_at_ms <= :now AND #cancel_at_ms < #expires_ms))"
                .into(),
            read_time(this(expr)),
        ),
        OtpStatus::Expired => (
            "(#status = :status OR (#status = :pending AND #expires_ms <= :now AND (attribute_not_exists(#cancel_at_ms) \
             OR #cancel_at_ms > :now OR #cancel_at_ms >= #expires_ms)))"
                .into(),
            read_time(this(expr)),
        ),
    }
}

/// Where one partition's reading stands.
struct Cursor {
    /// The `ExclusiveStartKey` of its next read (None: from its start).
    start: Option<Item>,
    /// Nothing more to read in it.
    done: bool,
    /// The last sort key it evaluated, once it has been read and has more.
    frontier: Option<String>,
    /// How many items its next read evaluates at most.
    limit: usize,
}

impl Cursor {
    /// A cursor on `part` from `start` (reading newest first unless `NewerThan`). DynamoDB
    /// refuses a start key outside the key condition: one beyond the range's reading end
    /// starts from the top, one before its start means nothing is left.
    fn new(part: &Part, start: &Start, limit: usize) -> Self {
        let at = |sid: &str| Some(Key { pk: part.pk.clone(), sk: esc(sid).into_owned() }.to_item());
        let (done, start) = match start {
            Start::Newest => (false, None),
            Start::OlderThan(m) => {
                let sk = esc(&m.sid);
                (*sk < *part.lo, if *sk <= *part.hi { at(&m.sid) } else { None })
            }
            Start::NewerThan(m) => {
                let sk = esc(&m.sid);
                (*sk > *part.hi, if *sk >= *part.lo { at(&m.sid) } else { None })
            }
        };
        Cursor { start, done, frontier: None, limit }
    }
}

/// A sort key as read from an item or a `LastEvaluatedKey`.
fn sort_key(item: &Item) -> Result<String> {
    item.get(attr::SK).and_then(|v| v.as_s().ok()).cloned().ok_or_else(|| {
        tracing::error!("an OTP item without a string sort key");
        Error::Internal
    })
}

impl DynamoStore {
    /// One read of one partition of a search (a count when `select` says so).
    async fn read_part(
        &self,
        plan: &SearchPlan,
        part: &Part,
        cursor_start: Option<Item>,
        forward: bool,
        limit: usize,
        select: Option<Select>,
    ) -> Result<aws_sdk_dynamodb::operation::query::QueryOutput> {
        let op = if select.is_some() { "Query(count)" } else { "Query(search)" };
        let expr = plan.expr.clone().value(":pk", s(&part.pk)).value(":lo", s(&part.lo)).value(":hi", s(&part.hi));
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression(KEY_CONDITION)
            .set_filter_expression(plan.filter.clone())
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .scan_index_forward(forward)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(cursor_start)
            .set_select(select)
            .send()
            .await
            .map_err(|e| errors::sdk(op, &e))
    }
}

#[async_trait]
impl RecordStore for DynamoStore {
    /// Every partition is read at once, a few items each (the newest of an account are spread
    /// evenly over its shards); the reads are merged in sid order; a partition is read again,
    /// with a larger limit, only while what it has not yet read could still belong on the page
    /// (its last key read is ahead of the page's last OTP so far). A small account's page is
    /// one round of reads; a page of a large one usually two.
    async fn search_otps(&self, account_sid: &str, q: &OtpQuery<'_>) -> Result<Vec<Otp>> {
        let Some(plan) = SearchPlan::new(account_sid, q.filter, q.now, self.otp_shards()) else { return Ok(vec![]) };
        if q.limit == 0 {
            return Ok(vec![]);
        }
        let forward = matches!(q.start, Start::NewerThan(_));
        // `a` comes before `b` in reading order.
        let before = |a: &str, b: &str| if forward { a < b } else { a > b };
        let first = if plan.filter.is_some() {
            FIRST_READ
        } else {
            // Twice a partition's share and a little: all of a small account's partitions in
            // one read, and a large one's newest rarely need a second.
            (2 * q.limit.div_ceil(plan.parts.len()) + 2).max(FIRST_READ).min(q.limit)
        };
        let mut cursors: Vec<Cursor> = plan.parts.iter().map(|p| Cursor::new(p, q.start, first)).collect();
        let mut found: Vec<(String, Otp)> = Vec::new();
        loop {
            let cutoff = (found.len() == q.limit).then(|| found[q.limit - 1].0.clone());
            let wanted: Vec<usize> = (0..cursors.len())
                .filter(|&i| {
                    let c = &cursors[i];
                    !c.done
                        && match (&c.frontier, &cutoff) {
                            (None, _) | (_, None) => true,
                            (Some(frontier), Some(cutoff)) => before(frontier, cutoff),
                        }
                })
                .collect();
            if wanted.is_empty() {
                break;
            }
            self.count_search_round();
            let reads = wanted.iter().map(|&i| {
                let (part, c) = (&plan.parts[i], &cursors[i]);
                let fut = self.read_part(&plan, part, c.start.clone(), forward, c.limit, None);
                async move { fut.await.map(|out| (i, out)) }.boxed()
            });
            let outs: Vec<_> =
                stream::iter(reads.collect::<Vec<_>>()).buffer_unordered(PARALLEL_READS).try_collect().await?;
            for (i, out) in outs {
                for item in out.items.unwrap_or_default() {
                    let sk = sort_key(&item)?;
                    found.push((sk, from_item::<OtpItem, Otp>(item)?));
                }
                let c = &mut cursors[i];
                match out.last_evaluated_key {
                    Some(key) if !key.is_empty() => {
                        c.frontier = Some(sort_key(&key)?);
                        c.start = Some(key);
                        c.limit = if plan.filter.is_some() { (c.limit * GROWTH).min(MAX_READ) } else { q.limit };
                    }
                    _ => c.done = true,
                }
            }
            found.sort_unstable_by(|a, b| if forward { a.0.cmp(&b.0) } else { b.0.cmp(&a.0) });
            found.truncate(q.limit);
        }
        Ok(found.into_iter().map(|(_, otp)| otp).collect())
    }

    /// Counts each partition newest first, sharing the `reads` out among the partitions that
    /// still have more, round by round (a partition reads at least one item a round, so a
    /// count may read up to one item per partition past `reads`).
    async fn count_otps(&self, account_sid: &str, filter: &SearchFilter, now: Millis, reads: u64) -> Result<Counted> {
        let Some(plan) = SearchPlan::new(account_sid, filter, now, self.otp_shards()) else {
            return Ok(Counted { matched: 0, complete: true });
        };
        let mut cursors: Vec<Cursor> = plan.parts.iter().map(|p| Cursor::new(p, &Start::Newest, 0)).collect();
        let (mut matched, mut left) = (0u64, reads);
        loop {
            let active: Vec<usize> = (0..cursors.len()).filter(|&i| !cursors[i].done).collect();
            if active.is_empty() {
                return Ok(Counted { matched, complete: true });
            }
            if left == 0 {
                // More in the range and nothing left to read: a lower bound. Reading exactly
                // `reads` counts as a bound too, as on the embedded store.
                return Ok(Counted { matched, complete: false });
            }
            let share = usize::try_from((left / active.len() as u64).max(1)).unwrap_or(usize::MAX);
            self.count_search_round();
            let reads = active.iter().map(|&i| {
                let fut =
                    self.read_part(&plan, &plan.parts[i], cursors[i].start.clone(), false, share, Some(Select::Count));
                async move { fut.await.map(|out| (i, out)) }.boxed()
            });
            let outs: Vec<_> =
                stream::iter(reads.collect::<Vec<_>>()).buffer_unordered(PARALLEL_READS).try_collect().await?;
            for (i, out) in outs {
                matched += u64::try_from(out.count).unwrap_or(0);
                left = left.saturating_sub(u64::try_from(out.scanned_count).unwrap_or(0));
                let c = &mut cursors[i];
                match out.last_evaluated_key {
                    Some(key) if !key.is_empty() => c.start = Some(key),
                    _ => c.done = true,
                }
            }
        }
    }

    async fn usage(&self, account_sid: &str, from_day: &str, to_day: &str) -> Result<Vec<(UsageKey, u64)>> {
        if from_day > to_day {
            return Ok(vec![]);
        }
        // Counters are updated in place: read them (strongly) as the last send left them, every
        // shard's partition and the one from before they were spread, in one round.
        self.count_search_round();
        let partitions = (0..USAGE_SHARDS as u8)
            .map(|shard| Key::usage_shard(account_sid, shard))
            .chain([Key::legacy_usage_partition(account_sid)]);
        let reads = partitions.map(|pk| {
            self.query_all(
                "Query(usage)",
                pk,
                "#sk BETWEEN :a AND :b",
                s(format!("{}#", esc(from_day))),
                Some(s(format!("{}#~", esc(to_day)))),
            )
            .boxed()
        });
        let pages: Vec<Vec<Item>> =
            stream::iter(reads.collect::<Vec<_>>()).buffer_unordered(PARALLEL_READS).try_collect().await?;
        let items: Vec<Item> = pages.into_iter().flatten().collect();
        // Shards are this adapter's business: the port gets one row per day and category.
        let mut rows = std::collections::HashMap::new();
        for item in &items {
            for (key, count) in usage_rows(account_sid, item)? {
                *rows.entry(key).or_insert(0) += count;
            }
        }
        Ok(rows.into_iter().collect())
    }
}

/// A usage item (`sk = {day}#{shard}`, one count per category attribute) as rows; the caller
/// sums shards.
fn usage_rows(account_sid: &str, item: &Item) -> Result<Vec<(UsageKey, u64)>> {
    let corrupt = || {
        tracing::error!(pk = ?item.get(attr::PK), "corrupt usage item");
        Error::Internal
    };
    let sk = item.get(attr::SK).and_then(|v| v.as_s().ok()).ok_or_else(corrupt)?;
    let mut parts = sk.split('#');
    let (Some(day), Some(_shard), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(corrupt());
    };
    let mut rows = Vec::new();
    for (name, value) in item {
        if name == attr::PK || name == attr::SK {
            continue;
        }
        let category = UsageCategory::parse(name).ok_or_else(corrupt)?;
        let AttributeValue::N(v) = value else { return Err(corrupt()) };
        let count = v.parse::<i64>().map_err(|_| corrupt())?.max(0) as u64;
        rows.push((UsageKey { account_sid: account_sid.to_owned(), day: day.to_owned(), category }, count));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sid of the form minted before sharding (no mark), created at `ms`.
    fn legacy_sid(ms: Millis) -> String {
        format!("{}{:012x}{}", ids::OTP, ms, "5a".repeat(10))
    }

    #[test]
    fn a_time_range_becomes_sort_key_bounds_that_hold_exactly_its_otps_in_every_partition() {
        let f = SearchFilter { start_ms: Some(1_000), end_ms: Some(2_000), ..Default::default() };
        let plan = SearchPlan::new("AC1", &f, 0, ids::OTP_SHARDS).unwrap();
        assert!(plan.filter.is_none(), "a time range alone needs no filter");
        // Every shard and then the old partition are read
        assert_eq!(plan.parts.len(), ids::OTP_SHARDS + 1);
        assert_eq!(plan.parts[7].pk, Key::otp_shard("AC1", 7));
        let (shard, legacy) = (&plan.parts[0], &plan.parts[ids::OTP_SHARDS]);
        assert_eq!(legacy.pk, Key::legacy_otp_partition("AC1"));
        for (created, inside) in [(0, false), (999, false), (1_000, true), (2_000, true), (2_001, false)] {
            for _ in 0..50 {
                let sk = ids::otp_sid(created);
                assert!(ids::otp_shard(&sk).is_some());
                assert_eq!(shard.lo <= sk && sk <= shard.hi, inside, "created {created}: {sk}");
            }
            let old = legacy_sid(created);
            assert_eq!(legacy.lo <= old && old <= legacy.hi, inside, "created {created}: {old}");
        }
        let open = SearchPlan::new("AC1", &SearchFilter::default(), 0, ids::OTP_SHARDS).unwrap();
        let (shard, legacy) = (&open.parts[0], &open.parts[ids::OTP_SHARDS]);
        for created in [0, 1, 1_700_000_000_000, (1 << 47) - 1] {
            let sk = ids::otp_sid(created);
            assert!(shard.lo <= sk && sk <= shard.hi, "created {created}: {sk}");
        }
        for created in [0, 1, 1_700_000_000_000, (1 << 41) - 1] {
            let old = legacy_sid(created);
            assert!(legacy.lo <= old && old <= legacy.hi, "created {created}: {old}");
        }
        let empty = SearchFilter { start_ms: Some(2_000), end_ms: Some(1_000), ..Default::default() };
        assert!(SearchPlan::new("AC1", &empty, 0, ids::OTP_SHARDS).is_none());
        // A range that starts past every old sid's time reads no old partition
        let late = SearchFilter { start_ms: Some(1 << 47), ..Default::default() };
        assert!(SearchPlan::new("AC1", &late, 0, ids::OTP_SHARDS).is_none_or(|p| p.parts.len() <= ids::OTP_SHARDS));
    }

    #[test]
    fn every_placeholder_a_filter_names_is_defined_and_every_defined_one_used() {
        for status in
            [OtpStatus::Pending, OtpStatus::Success, OtpStatus::Canceled, OtpStatus::Expired, OtpStatus::Failed]
        {
            let f = SearchFilter {
                status: Some(status),
                service: Some("2FA".into()),
                to: Some("14155550100".into()),
                channel: Some(crate::domain::otp::Channel::Sms),
                ..Default::default()
            };
            let plan = SearchPlan::new("AC1", &f, 5, 4).unwrap();
            let text = format!("{KEY_CONDITION} {}", plan.filter.as_deref().unwrap());
            let part = &plan.parts[0];
            let expr = plan.expr.clone().value(":pk", s(&part.pk)).value(":lo", s(&part.lo)).value(":hi", s(&part.hi));
            let names = expr.names().unwrap();
            let values = expr.values().unwrap();
            for name in names.keys() {
                assert!(text.contains(name.as_str()), "{status:?}: unused {name}");
            }
            for value in values.keys() {
                assert!(text.contains(value.as_str()), "{status:?}: unused {value}");
            }
            for token in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '#' || c == ':')) {
                if token.starts_with('#') {
                    assert!(names.contains_key(token), "{status:?}: undefined {token}");
                } else if token.starts_with(':') {
                    assert!(values.contains_key(token), "{status:?}: undefined {token}");
                }
            }
        }
    }
}
