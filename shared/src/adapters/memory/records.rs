//! Session detail and usage records of the embedded store: the same answers as DynamoDB's
//! index query and usage query, read under the store's one lock.

use async_trait::async_trait;

use super::MemoryStore;
use crate::{
    domain::{
        error::Result,
        otp::Otp,
        records::{Mark, OtpQuery, SearchFilter, Start},
        time::Millis,
        usage::UsageKey,
    },
    ports::{Counted, RecordStore},
};

#[async_trait]
impl RecordStore for MemoryStore {
    async fn search_otps(&self, account_sid: &str, q: &OtpQuery<'_>) -> Result<Vec<Otp>> {
        let s = self.lock()?;
        let mut found: Vec<&Otp> = s
            .otps
            .values()
            .map(|o| &**o)
            .filter(|o| o.account_sid == account_sid && q.filter.matches(o, q.now))
            .filter(|o| match q.start {
                Start::Newest => true,
                Start::OlderThan(m) => Mark::of(o) < *m,
                Start::NewerThan(m) => Mark::of(o) > *m,
            })
            .collect();
        match q.start {
            Start::NewerThan(_) => found.sort_by_key(|o| Mark::of(o)),
            _ => found.sort_by_key(|o| std::cmp::Reverse(Mark::of(o))),
        }
        Ok(found.into_iter().take(q.limit).cloned().collect())
    }

    async fn count_otps(&self, account_sid: &str, filter: &SearchFilter, now: Millis, reads: u64) -> Result<Counted> {
        let s = self.lock()?;
        // As DynamoDB reads them: the range's OTPs by sid (time first), newest first.
        let mut in_range: Vec<&Otp> = s
            .otps
            .values()
            .filter(|o| o.account_sid == account_sid && filter.in_time_range(o.created_ms))
            .map(|o| &**o)
            .collect();
        // Exactly `reads` in the range is a bound too, as on DynamoDB.
        let complete = (in_range.len() as u64) < reads;
        if !complete {
            in_range.sort_unstable_by(|a, b| b.sid.cmp(&a.sid));
            in_range.truncate(reads as usize);
        }
        Ok(Counted { matched: in_range.iter().filter(|o| filter.matches(o, now)).count() as u64, complete })
    }

    async fn usage(&self, account_sid: &str, from_day: &str, to_day: &str) -> Result<Vec<(UsageKey, u64)>> {
        let s = self.lock()?;
        Ok(s.usage
            .iter()
            .filter(|(k, _)| k.account_sid == account_sid && from_day <= k.day.as_str() && k.day.as_str() <= to_day)
            .map(|(k, n)| (k.clone(), *n))
            .collect())
    }
}
