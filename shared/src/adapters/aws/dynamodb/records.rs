//! Session detail and usage records on DynamoDB (docs/data-model.md, "Records").
//!
//! - Search: `Query` of the account's OTP partition (`pk = OTP#{account}`, `sk = sid`, and a
//!   sid starts with its creation time), newest first (`ScanIndexForward=false`), the time
//!   range as `sk BETWEEN` the sid floors of its ends, everything else (service, to, channel,
//!   and the status as it is at read time) as a `FilterExpression`. One round trip a page, and
//!   no index for a send or a verify to write. A page position is turned back into the
//!   `ExclusiveStartKey` DynamoDB itself would give.
//! - Count: the same query with `Select=COUNT`.
//! - Usage: one `Query` of the account's usage partition, `sk BETWEEN {from}# AND {to}#~`.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Select};

use super::{
    errors,
    items::{attr, esc, from_item, Item, Key, OtpItem},
    n,
    otps::PENDING_AT_NOW,
    s, DynamoStore, Expr,
};
use crate::{
    domain::{
        error::{Error, Result},
        ids,
        otp::{Otp, OtpStatus},
        records::{Mark, OtpQuery, SearchFilter, Start},
        time::Millis,
        usage::{UsageCategory, UsageKey},
    },
    ports::{Counted, RecordStore},
};

/// The key condition, filter and their placeholders of one search over one account.
struct SearchPlan {
    key_condition: &'static str,
    filter: Option<String>,
    expr: Expr,
    /// The sort key bounds of the time range, inclusive (no sid equals either: a bound is a
    /// sid's time part alone, or the prefix).
    lo: String,
    hi: String,
}

impl SearchPlan {
    /// None when the time range is empty.
    fn new(account_sid: &str, f: &SearchFilter, now: Millis) -> Option<Self> {
        let lo = match f.start_ms {
            Some(start) if start > 0 => ids::otp_sid_floor(start),
            _ => ids::OTP.to_owned(),
        };
        let hi = match f.end_ms {
            Some(end) if end < 0 => return None,
            Some(end) => ids::otp_sid_floor(end.saturating_add(1)),
            None => ids::otp_sid_floor(Millis::MAX),
        };
        if lo >= hi {
            return None;
        }
        let mut expr = Expr::default()
            .name(attr::PK)
            .name(attr::SK)
            .value(":pk", s(Key::otp_partition(account_sid)))
            .value(":lo", s(lo.clone()))
            .value(":hi", s(hi.clone()));
        let mut parts: Vec<String> = vec![];
        if let Some(service) = &f.service {
            parts.push("#service = :service".into());
            expr = expr.name("service").value(":service", s(service));
        }
        let to = f.to_variants();
        if !to.is_empty() {
            let placeholders: Vec<String> = (0..to.len()).map(|i| format!(":to{i}")).collect();
            parts.push(format!("#to IN ({})", placeholders.join(", ")));
            expr = expr.name("to");
            for (p, v) in placeholders.iter().zip(to) {
                expr = expr.value(p, s(v));
            }
        }
        if let Some(channel) = f.channel {
            parts.push("#channel = :channel".into());
            expr = expr.name("channel").value(":channel", s(channel.as_str()));
        }
        if let Some(status) = f.status {
            let (condition, e) = status_at(status, now, expr);
            parts.push(condition);
            expr = e;
        }
        Some(SearchPlan {
            key_condition: "#pk = :pk AND #sk BETWEEN :lo AND :hi",
            filter: (!parts.is_empty()).then(|| parts.join(" AND ")),
            expr,
            lo,
            hi,
        })
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

/// The `ExclusiveStartKey` of a position: what DynamoDB answers as `LastEvaluatedKey` after
/// the OTP at `mark`.
fn start_key(account_sid: &str, mark: &Mark) -> Item {
    Key::otp(account_sid, &mark.sid).to_item()
}

impl DynamoStore {
    fn search_query(&self, plan: &SearchPlan) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression(plan.key_condition)
            .set_filter_expression(plan.filter.clone())
            .set_expression_attribute_names(plan.expr.names())
            .set_expression_attribute_values(plan.expr.values())
    }
}

#[async_trait]
impl RecordStore for DynamoStore {
    async fn search_otps(&self, account_sid: &str, q: &OtpQuery<'_>) -> Result<Vec<Otp>> {
        let Some(plan) = SearchPlan::new(account_sid, q.filter, q.now) else { return Ok(vec![]) };
        if q.limit == 0 {
            return Ok(vec![]);
        }
        // DynamoDB refuses a start key outside the key condition: one beyond the range's
        // reading end starts from the top, one before its start means nothing is left.
        let (forward, mut start) = match q.start {
            Start::Newest => (false, None),
            Start::OlderThan(m) => {
                let sk = esc(&m.sid);
                if *sk < *plan.lo {
                    return Ok(vec![]);
                }
                (false, (*sk <= *plan.hi).then(|| start_key(account_sid, m)))
            }
            Start::NewerThan(m) => {
                let sk = esc(&m.sid);
                if *sk > *plan.hi {
                    return Ok(vec![]);
                }
                (true, (*sk >= *plan.lo).then(|| start_key(account_sid, m)))
            }
        };
        let mut found: Vec<Otp> = Vec::with_capacity(q.limit.min(1000));
        'pages: loop {
            // Without a filter every item read is a match: read exactly what is missing.
            // With one, `Limit` would count non-matches too; let each call read up to 1 MB.
            let limit = plan.filter.is_none().then(|| i32::try_from(q.limit - found.len()).unwrap_or(i32::MAX));
            let out = self
                .search_query(&plan)
                .scan_index_forward(forward)
                .set_limit(limit)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| errors::sdk("Query(search)", &e))?;
            for item in out.items.unwrap_or_default() {
                found.push(from_item::<OtpItem, Otp>(item)?);
                if found.len() == q.limit {
                    break 'pages;
                }
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(found)
    }

    async fn count_otps(&self, account_sid: &str, filter: &SearchFilter, now: Millis, reads: u64) -> Result<Counted> {
        let Some(plan) = SearchPlan::new(account_sid, filter, now) else {
            return Ok(Counted { matched: 0, complete: true });
        };
        let (mut matched, mut left) = (0u64, reads);
        let mut start = None;
        loop {
            // `Limit` bounds the items read (before the filter), newest first.
            let out = self
                .search_query(&plan)
                .select(Select::Count)
                .scan_index_forward(false)
                .limit(i32::try_from(left).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| errors::sdk("Query(count)", &e))?;
            matched += u64::try_from(out.count).unwrap_or(0);
            left = left.saturating_sub(u64::try_from(out.scanned_count).unwrap_or(0));
            match out.last_evaluated_key {
                // More in the range, none left to read: a lower bound.
                Some(key) if !key.is_empty() && left == 0 => return Ok(Counted { matched, complete: false }),
                Some(key) if !key.is_empty() => start = Some(key),
                // All read; exactly `reads` of them counts as a bound, as the embedded store does
                // (DynamoDB may or may not say more follow when a page ends at its limit).
                _ => return Ok(Counted { matched, complete: left > 0 }),
            }
        }
    }

    async fn usage(&self, account_sid: &str, from_day: &str, to_day: &str) -> Result<Vec<(UsageKey, u64)>> {
        if from_day > to_day {
            return Ok(vec![]);
        }
        // Counters are updated in place: read them (strongly) as the last send left them.
        let items = self
            .query_all(
                "Query(usage)",
                Key::usage_partition(account_sid),
                "#sk BETWEEN :a AND :b",
                s(format!("{}#", esc(from_day))),
                Some(s(format!("{}#~", esc(to_day)))),
            )
            .await?;
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

    #[test]
    fn a_time_range_becomes_sort_key_bounds_that_hold_exactly_its_otps() {
        let f = SearchFilter { start_ms: Some(1_000), end_ms: Some(2_000), ..Default::default() };
        let plan = SearchPlan::new("AC1", &f, 0).unwrap();
        assert!(plan.filter.is_none(), "a time range alone needs no filter");
        for (created, inside) in [(0, false), (999, false), (1_000, true), (2_000, true), (2_001, false)] {
            for _ in 0..50 {
                let sk = ids::otp_sid(created);
                assert_eq!(plan.lo <= sk && sk <= plan.hi, inside, "created {created}: {sk}");
            }
        }
        let open = SearchPlan::new("AC1", &SearchFilter::default(), 0).unwrap();
        for created in [0, 1, 1_700_000_000_000, (1 << 48) - 1] {
            let sk = ids::otp_sid(created);
            assert!(open.lo <= sk && sk <= open.hi, "created {created}: {sk}");
        }
        let empty = SearchFilter { start_ms: Some(2_000), end_ms: Some(1_000), ..Default::default() };
        assert!(SearchPlan::new("AC1", &empty, 0).is_none());
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
            let plan = SearchPlan::new("AC1", &f, 5).unwrap();
            let text = format!("{} {}", plan.key_condition, plan.filter.as_deref().unwrap());
            let names = plan.expr.names().unwrap();
            let values = plan.expr.values().unwrap();
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
