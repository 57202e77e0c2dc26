//! The pumping guard's counters on DynamoDB (docs/data-model.md, "Pumping-guard counters"),
//! off the request path: a send reads its windows eventually consistent, kept a short time per
//! process (`GuardCache`); the table's stream worker writes them, one `ADD` per counter per
//! batch (`add_guard_counts`), never in a transaction. See `domain::guard` for what that costs
//! in exactness.

use std::{collections::HashMap, sync::Arc, sync::Mutex, time::Duration};

use aws_sdk_dynamodb::operation::update_item::{builders::UpdateItemFluentBuilder, UpdateItemError};

use super::{
    backoff, errors,
    items::{attr, from_item, guard_ttl, GuardCounterItem, Key},
    n, DynamoStore,
};
use crate::{
    domain::{
        error::{Error, Result},
        guard::{GuardCount, GuardKey, GUARD_CACHE_MS},
        time::Millis,
    },
    ports::{Clock, SystemClock},
};

/// Windows kept at most (~100 keys each): past it the cache starts over.
const GUARD_CACHE_MAX: usize = 10_000;
/// Tries of one counter's `ADD` that meets a transaction on the item (an undo's).
const MAX_ADD_ROUNDS: u32 = 5;

/// One window as read: (account, country, its newest bucket, its number of counters).
type WindowId = (String, String, i64, usize);
/// A window's counters as read, and when.
type Window = (Millis, Vec<Option<GuardCount>>);

/// The windows this process read, with when (by `clock`).
pub(super) struct GuardCache {
    ttl_ms: Millis,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<WindowId, Window>>,
    /// Held through a read (when caching): concurrent sends that find a window stale wait for
    /// the first one's read and take its copy, rather than all read it (a cold process under
    /// a burst would read each counter once per request in flight).
    reading: tokio::sync::Mutex<()>,
}

impl Default for GuardCache {
    fn default() -> Self {
        GuardCache::new(Duration::from_millis(GUARD_CACHE_MS as u64), Arc::new(SystemClock))
    }
}

impl GuardCache {
    pub(super) fn new(ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        GuardCache { ttl_ms: ttl.as_millis() as Millis, clock, entries: Mutex::default(), reading: Default::default() }
    }

    fn get(&self, id: &WindowId, now: Millis) -> Option<Vec<Option<GuardCount>>> {
        let entries = self.entries.lock().ok()?;
        let (at, counts) = entries.get(id)?;
        (now - at < self.ttl_ms).then(|| counts.clone())
    }

    fn put(&self, id: WindowId, now: Millis, counts: Vec<Option<GuardCount>>) {
        if self.ttl_ms <= 0 {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= GUARD_CACHE_MAX {
                entries.clear();
            }
            entries.insert(id, (now, counts));
        }
    }
}

/// `keys` cut into their windows: runs of one account and country, as `guard::windows` lists.
fn windows(keys: &[GuardKey]) -> Vec<(WindowId, &[GuardKey])> {
    keys.chunk_by(|a, b| a.account_sid == b.account_sid && a.country == b.country)
        .map(|w| {
            let newest = w.iter().map(|k| k.bucket).max().unwrap_or_default();
            ((w[0].account_sid.clone(), w[0].country.clone(), newest, w.len()), w)
        })
        .collect()
}

impl DynamoStore {
    /// The counters at `keys`, in that order: from this process's copy of each window while it
    /// is younger than the cache's time, else read (eventually consistent: half a unit a key,
    /// and a window counts what the stream counted some time ago anyway), all stale windows in
    /// one request of up to 100 keys.
    pub(super) async fn guard_window(&self, keys: &[GuardKey]) -> Result<Vec<Option<GuardCount>>> {
        if keys.is_empty() {
            return Ok(vec![]);
        }
        let windows = windows(keys);
        let cached_at = |now| -> Vec<Option<Vec<Option<GuardCount>>>> {
            windows.iter().map(|(id, _)| self.guard.get(id, now)).collect()
        };
        let mut now = self.guard.clock.now_ms();
        let mut cached = cached_at(now);
        let _turn = match self.guard.ttl_ms > 0 && cached.iter().any(Option::is_none) {
            true => {
                let turn = self.guard.reading.lock().await;
                // A read that was in flight may have brought the window meanwhile.
                now = self.guard.clock.now_ms();
                cached = cached_at(now);
                Some(turn)
            }
            false => None,
        };
        let stale: Vec<Key> = windows
            .iter()
            .zip(&cached)
            .filter(|(_, c)| c.is_none())
            .flat_map(|((_, w), _)| w.iter().map(Key::guard))
            .collect();
        let found = if stale.is_empty() { HashMap::new() } else { self.batch_get_with(&stale, false).await? };
        let mut out = Vec::with_capacity(keys.len());
        for ((id, w), cached) in windows.into_iter().zip(cached) {
            let counts = match cached {
                Some(counts) => counts,
                None => {
                    let counts: Vec<Option<GuardCount>> = w
                        .iter()
                        .map(|k| found.get(&Key::guard(k)).cloned().map(from_item::<GuardCounterItem, _>).transpose())
                        .collect::<Result<_>>()?;
                    self.guard.put(id, now, counts.clone());
                    counts
                }
            };
            out.extend(counts);
        }
        Ok(out)
    }

    /// Add `counts` to the pumping guard's counters, each in the shard its key names: one
    /// `UpdateItem` (`ADD`, atomic, so concurrent batches on one counter all count) per
    /// counter, all at once. Not idempotent: a batch counted again is counted twice.
    pub async fn add_guard_counts(&self, counts: &[(GuardKey, GuardCount)]) -> Result<()> {
        futures::future::try_join_all(counts.iter().map(|(k, c)| self.add_guard_count(k, *c))).await.map(drop)
    }

    async fn add_guard_count(&self, key: &GuardKey, count: GuardCount) -> Result<()> {
        let mut adds = vec![];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Key::guard(key).to_item()))
            .expression_attribute_names("#ttl", attr::TTL)
            .expression_attribute_values(":ttl", n(guard_ttl(key)));
        for (name, by) in [(attr::SENDS, count.sends), (attr::VERIFIES, count.verifies)] {
            if by != 0 {
                adds.push(format!("#{name} :{name}"));
                request = request
                    .expression_attribute_names(format!("#{name}"), name)
                    .expression_attribute_values(format!(":{name}"), n(by));
            }
        }
        if adds.is_empty() {
            return Ok(());
        }
        let request = request.update_expression(format!("ADD {} SET #ttl = :ttl", adds.join(", ")));
        send_add(request, "UpdateItem(guard_count)").await
    }
}

/// Sends a counter's `ADD` (no condition: only a transaction on the same item can refuse it),
/// tried again after a `TransactionConflict` up to `MAX_ADD_ROUNDS` times, then `Contended`.
/// The pumping guard's counters and the insight counters both count this way.
pub(super) async fn send_add(request: UpdateItemFluentBuilder, op: &'static str) -> Result<()> {
    for round in 0..MAX_ADD_ROUNDS {
        match request.clone().send().await {
            Ok(_) => return Ok(()),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::TransactionConflictException(_)) if round + 1 < MAX_ADD_ROUNDS => {
                    backoff(round + 1).await
                }
                Some(UpdateItemError::TransactionConflictException(_)) => return Err(Error::Contended),
                _ => return Err(errors::sdk(op, &e)),
            },
        }
    }
    Err(Error::Contended)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::guard;

    #[test]
    fn a_sends_keys_fall_into_its_two_windows_each_named_by_its_newest_bucket() {
        let keys = guard::windows("AC1", "DE", 10 * guard::BUCKET_MS);
        let w = windows(&keys);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].0, ("AC1".to_owned(), "DE".to_owned(), 10, keys.len() / 2));
        assert_eq!(w[1].0 .1, guard::ACCOUNT_WIDE);
        assert_eq!(w[0].1.len() + w[1].1.len(), keys.len());
    }
}
