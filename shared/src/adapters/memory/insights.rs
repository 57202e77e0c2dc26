//! Insights' counter cells on the embedded store: exact, counted under the store's one lock in
//! the same critical section as the change they count (a send, its undo, a verify, a message's
//! final status), and refusals as the send path refuses.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{MemoryStore, State};
use crate::{
    domain::{
        error::Result,
        insights::{self, Cell, Counts, Granularity, MAX_RANGE_MS},
        otp::Channel,
        time::Millis,
    },
    ports::InsightsStore,
};

/// (account, hour, channel's index in `Channel::ALL`, country) → counts: an account's cells
/// over a range are one ordered range of keys.
pub(crate) type Cells = BTreeMap<(String, Millis, u8, String), Counts>;

/// Cells are kept this long after their hour: any range the API may ask for, and a day more.
const KEEP_MS: Millis = MAX_RANGE_MS + insights::DAY_MS;

fn channel_index(c: Channel) -> u8 {
    Channel::ALL.iter().position(|x| *x == c).unwrap_or(0) as u8
}

impl State {
    /// Adds a cell's counts to its counter.
    pub(crate) fn count(&mut self, cell: Cell) {
        let key = (cell.account_sid, cell.hour_ms, channel_index(cell.channel), cell.country);
        self.insights.entry(key).or_default().add(&cell.counts);
    }

    /// Takes a send back (an undone send leaves no trace).
    pub(crate) fn uncount_send(&mut self, cell: &Cell) {
        let key = (cell.account_sid.clone(), cell.hour_ms, channel_index(cell.channel), cell.country.clone());
        if let Some(c) = self.insights.get_mut(&key) {
            c.sends = c.sends.saturating_sub(cell.counts.sends);
        }
    }

    /// Drops cells older than any range can reach.
    pub(crate) fn sweep_insights(&mut self, now: Millis) {
        self.insights.retain(|(_, hour, _, _), _| *hour + KEEP_MS > now);
    }
}

#[async_trait]
impl InsightsStore for MemoryStore {
    async fn count_refusal(
        &self,
        account_sid: &str,
        at: Millis,
        channel: Channel,
        country: &str,
        code: u16,
    ) -> Result<()> {
        if let Some(cell) = insights::refusal_cell(account_sid, at, channel, country, code) {
            self.lock()?.count(cell);
        }
        Ok(())
    }

    /// Exact, by hour whatever the granularity (the report sums them by day).
    async fn insight_cells(
        &self,
        account_sid: &str,
        from_ms: Millis,
        to_ms: Millis,
        _granularity: Granularity,
    ) -> Result<Vec<Cell>> {
        if to_ms <= from_ms {
            return Ok(vec![]);
        }
        let s = self.lock()?;
        let start = (account_sid.to_owned(), from_ms, 0, String::new());
        let end = (account_sid.to_owned(), to_ms, 0, String::new());
        Ok(s.insights
            .range(start..end)
            .map(|((account_sid, hour_ms, ch, country), counts)| Cell {
                account_sid: account_sid.clone(),
                hour_ms: *hour_ms,
                channel: Channel::ALL[usize::from(*ch)],
                country: country.clone(),
                counts: *counts,
            })
            .collect())
    }
}
