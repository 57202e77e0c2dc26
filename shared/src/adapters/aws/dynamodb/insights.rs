//! Insights' counters on DynamoDB (docs/data-model.md, "Insight counters"): nothing on the
//! send or verify path. The table's stream worker counts a batch's sends, verifies and
//! delivery outcomes (`workers::callbacks::count_insights`), one `ADD` per account and hour item
//! and per account and day item of one shard; a refusal is counted by the function that
//! refuses, one `ADD` to each of a random shard's hour and day items, at once; an undone send
//! takes its count back (`ADD -1`). Reads are one round of eventually consistent `Query`s, one
//! per shard.
//!
//! An item is `pk = INSIGHT#{account}#{shard}`, `sk = H#{YYYY-MM-DDTHH}` (an hour) or
//! `D#{YYYY-MM-DD}` (a day), with one number attribute per channel, country and count:
//! `{c}{CC}{m}`, `c` the channel's letter (`s`ms, `c`all, `e`mail, `w`hatsapp), `CC` the
//! country, `m` the count (`s`ends, `v`erified, `d`elivered, `u`ndelivered, `f`ailed, or a
//! refusal's code): `sUSs`, `eZZv`, `sDE477`.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use futures::{stream, StreamExt, TryStreamExt};

use super::{
    items::{attr, epoch_secs, Key},
    n, s, DynamoStore, Item,
};
use crate::domain::{
    error::{Error, Result},
    insights::{self, Cell, Counts, Granularity, DAY_MS, HOUR_MS, REFUSAL_CODES},
    otp::{Channel, Otp},
    time::{self, Millis},
};

/// Partitions of an account's insight counters. A stream batch writes one (its turn's), a
/// refusal a random one; a read queries all. At 10,000 pairs/s (~400 full batches/s of one
/// account, 2 items each, ~1–4 KB each) a shard takes ~50–200 WCU/s, under the 500 a key may.
pub const INSIGHT_SHARDS: u8 = 16;
/// Counters are kept this long after their hour or day: any range the API may ask for.
const KEEP_MS: Millis = insights::MAX_RANGE_MS + DAY_MS;
/// Attributes one `UpdateItem` adds at most (its expression stays well under 4 KB).
const ADDS_PER_UPDATE: usize = 100;
/// Queries in flight at once for one read.
const PARALLEL_READS: usize = INSIGHT_SHARDS as usize;

fn channel_letter(c: Channel) -> char {
    match c {
        Channel::Sms => 's',
        Channel::Call => 'c',
        Channel::Email => 'e',
        Channel::Whatsapp => 'w',
        Channel::Totp => 't',
        Channel::Passkey => 'p',
    }
}

fn channel_of(letter: char) -> Option<Channel> {
    Channel::ALL.into_iter().find(|c| channel_letter(*c) == letter)
}

/// The attributes and amounts of a cell's non-zero counts.
fn adds_of(cell: &Cell, sign: i64) -> Vec<(String, i64)> {
    let c = &cell.counts;
    let prefix = format!("{}{}", channel_letter(cell.channel), cell.country);
    let mut adds: Vec<(String, u64)> =
        vec![("s".into(), c.sends), ("v".into(), c.verified), ("d".into(), c.delivered), ("u".into(), c.undelivered)];
    adds.push(("f".into(), c.failed));
    adds.extend(REFUSAL_CODES.iter().zip(c.refused).map(|(code, n)| (code.to_string(), n)));
    adds.into_iter().filter(|(_, n)| *n > 0).map(|(m, v)| (format!("{prefix}{m}"), sign * v as i64)).collect()
}

/// Adds `by` to the count an attribute name names.
fn add_named(counts: &mut [i64; 10], metric: &str, by: i64) -> bool {
    let i = match metric {
        "s" => 0,
        "v" => 1,
        "d" => 2,
        "u" => 3,
        "f" => 4,
        code => match REFUSAL_CODES.iter().position(|c| c.to_string() == code) {
            Some(i) => 5 + i,
            None => return false,
        },
    };
    counts[i] += by;
    true
}

fn counts_of(c: &[i64; 10]) -> Counts {
    let v = |i: usize| c[i].max(0) as u64;
    Counts {
        sends: v(0),
        verified: v(1),
        delivered: v(2),
        undelivered: v(3),
        failed: v(4),
        refused: [v(5), v(6), v(7), v(8), v(9)],
    }
}

fn hour_sk(ms: Millis) -> String {
    format!("H#{}", &time::iso(insights::hour_of(ms))[..13])
}

fn day_sk(ms: Millis) -> String {
    format!("D#{}", time::day(ms))
}

/// The first millisecond a sort key names.
fn start_of(sk: &str) -> Option<Millis> {
    let (kind, at) = sk.split_once('#')?;
    let text = match kind {
        "H" => format!("{at}:00:00"),
        "D" => at.to_owned(),
        _ => return None,
    };
    time::parse_date_or_datetime(&text)
}

impl DynamoStore {
    /// Adds `cells` (`sign` -1: takes them back) to shard `shard`'s counters: per account, one
    /// `UpdateItem` for each hour item and each day item they fall in, all at once. Not
    /// idempotent: a batch counted again is counted twice. How many items it wrote.
    pub async fn add_insight_cells(&self, shard: u8, cells: &[Cell], sign: i64) -> Result<usize> {
        let mut items: BTreeMap<(String, String), (Millis, BTreeMap<String, i64>)> = BTreeMap::new();
        for cell in cells {
            let adds = adds_of(cell, sign);
            for (sk, end) in [
                (hour_sk(cell.hour_ms), cell.hour_ms + HOUR_MS),
                (day_sk(cell.hour_ms), insights::day_of(cell.hour_ms) + DAY_MS),
            ] {
                let (_, attrs) = items.entry((cell.account_sid.clone(), sk)).or_insert_with(|| (end, BTreeMap::new()));
                for (name, by) in &adds {
                    *attrs.entry(name.clone()).or_default() += by;
                }
            }
        }
        let writes: Vec<_> = items
            .into_iter()
            .flat_map(|((account, sk), (end, attrs))| {
                let key = Key::insight(&account, shard, &sk);
                let attrs: Vec<(String, i64)> = attrs.into_iter().filter(|(_, by)| *by != 0).collect();
                let chunks: Vec<Vec<(String, i64)>> = attrs.chunks(ADDS_PER_UPDATE).map(<[_]>::to_vec).collect();
                chunks.into_iter().map(move |chunk| (key.clone(), end, chunk))
            })
            .collect();
        let written = writes.len();
        futures::future::try_join_all(writes.into_iter().map(|(key, end, adds)| self.add_insight(key, end, adds)))
            .await?;
        Ok(written)
    }

    async fn add_insight(&self, key: Key, end_ms: Millis, adds: Vec<(String, i64)>) -> Result<()> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .expression_attribute_names("#ttl", attr::TTL)
            .expression_attribute_values(":ttl", n(epoch_secs(end_ms + KEEP_MS)));
        let mut clauses = Vec::with_capacity(adds.len());
        for (i, (name, by)) in adds.into_iter().enumerate() {
            clauses.push(format!("#a{i} :a{i}"));
            request = request
                .expression_attribute_names(format!("#a{i}"), name)
                .expression_attribute_values(format!(":a{i}"), n(by));
        }
        let request = request.update_expression(format!("ADD {} SET #ttl = :ttl", clauses.join(", ")));
        super::guard::send_add(request, "UpdateItem(insight)").await
    }

    /// An undone send's count taken back (it was counted off the stream, or will be: `ADD` is
    /// order-free). Logged, not failed: the send is undone either way.
    pub(super) async fn take_back_send(&self, otp: &Otp) {
        let shard = rand::random::<u8>() % INSIGHT_SHARDS;
        if let Err(e) = self.add_insight_cells(shard, &[insights::send_cell(otp)], -1).await {
            tracing::warn!(otp = %otp.sid, error = %e, "an undone send stays counted in insights");
        }
    }
}

#[async_trait::async_trait]
impl crate::ports::InsightsStore for DynamoStore {
    /// One random shard's hour and day items, `ADD`ed together (one round trip).
    async fn count_refusal(
        &self,
        account_sid: &str,
        at: Millis,
        channel: Channel,
        country: &str,
        code: u16,
    ) -> Result<()> {
        let Some(cell) = insights::refusal_cell(account_sid, at, channel, country, code) else { return Ok(()) };
        let shard = rand::random::<u8>() % INSIGHT_SHARDS;
        self.add_insight_cells(shard, &[cell], 1).await.map(drop)
    }

    /// Every shard's hour items (granularity hour) or day items (day) over the range, one
    /// eventually consistent `Query` each, all at once; shards summed (a shard may hold a
    /// negative count, an undo's: only sums mean anything).
    async fn insight_cells(
        &self,
        account_sid: &str,
        from_ms: Millis,
        to_ms: Millis,
        granularity: Granularity,
    ) -> Result<Vec<Cell>> {
        if to_ms <= from_ms {
            return Ok(vec![]);
        }
        let (first, last) = match granularity {
            Granularity::Hour => (hour_sk(from_ms), hour_sk(to_ms - 1)),
            Granularity::Day => (day_sk(from_ms), day_sk(to_ms - 1)),
        };
        let reads = (0..INSIGHT_SHARDS).map(|shard| {
            self.query_all_with(
                "Query(insights)",
                Key::insight_partition(account_sid, shard),
                "#sk BETWEEN :a AND :b",
                s(first.clone()),
                Some(s(last.clone())),
                false,
            )
        });
        let pages: Vec<Vec<Item>> = stream::iter(reads).buffer_unordered(PARALLEL_READS).try_collect().await?;
        let mut sums: HashMap<(Millis, Channel, String), [i64; 10]> = HashMap::new();
        for item in pages.iter().flatten() {
            let corrupt = || {
                tracing::error!(pk = ?item.get(attr::PK), "corrupt insight item");
                Error::Internal
            };
            let sk = item.get(attr::SK).and_then(|v| v.as_s().ok()).ok_or_else(corrupt)?;
            let at = start_of(sk).ok_or_else(corrupt)?;
            for (name, value) in item {
                if name == attr::PK || name == attr::SK || name == attr::TTL {
                    continue;
                }
                let (Some(channel), Some(country), Some(metric)) =
                    (name.chars().next().and_then(channel_of), name.get(1..3), name.get(3..))
                else {
                    return Err(corrupt());
                };
                let by = match value {
                    AttributeValue::N(v) => v.parse::<i64>().map_err(|_| corrupt())?,
                    _ => return Err(corrupt()),
                };
                let counts = sums.entry((at, channel, country.to_owned())).or_default();
                if !add_named(counts, metric, by) {
                    return Err(corrupt());
                }
            }
        }
        Ok(sums
            .into_iter()
            .map(|((hour_ms, channel, country), c)| Cell {
                account_sid: account_sid.to_owned(),
                hour_ms,
                channel,
                country,
                counts: counts_of(&c),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_name_their_hour_or_day_and_sort_by_time() {
        let at = 1_765_100_000_000; // 2025-12-07T09:33:20Z
        assert_eq!(hour_sk(at), "H#2025-12-07T09");
        assert_eq!(day_sk(at), "D#2025-12-07");
        assert_eq!(start_of(&hour_sk(at)), Some(insights::hour_of(at)));
        assert_eq!(start_of(&day_sk(at)), Some(insights::day_of(at)));
        assert!(hour_sk(at) < hour_sk(at + HOUR_MS) && hour_sk(at + 14 * HOUR_MS) < hour_sk(at + 15 * HOUR_MS));
    }

    #[test]
    fn a_cells_counts_are_attributes_that_read_back_as_the_same_counts() {
        let cell = Cell {
            account_sid: "AC1".into(),
            hour_ms: 0,
            channel: Channel::Whatsapp,
            country: "DE".into(),
            counts: Counts { sends: 3, verified: 2, failed: 1, refused: [0, 0, 0, 4, 0], ..Counts::default() },
        };
        let adds = adds_of(&cell, 1);
        assert_eq!(adds.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["wDEs", "wDEv", "wDEf", "wDE477"]);
        let mut counts = [0i64; 10];
        for (name, by) in &adds {
            assert!(add_named(&mut counts, &name[3..], *by));
        }
        assert_eq!(counts_of(&counts), cell.counts);
    }
}
