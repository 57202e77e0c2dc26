//! Pumping-guard counters: one item per account, country, ten-minute bucket and shard.

use serde::{Deserialize, Serialize};

use super::epoch_secs;
use crate::domain::{
    error::{Error, Result},
    guard::{GuardCount, GuardKey, BUCKET_MS, WINDOW_BUCKETS},
};

/// A pumping-guard counter, only ever changed with `ADD` (so it needs no read to write).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct GuardCounterItem {
    #[serde(default)]
    pub sends: i64,
    #[serde(default)]
    pub verifies: i64,
}

/// When a guard counter may go: an hour after its bucket left the window.
pub(crate) fn guard_ttl(k: &GuardKey) -> i64 {
    epoch_secs(k.bucket_end_ms() + WINDOW_BUCKETS * BUCKET_MS) + 3600
}

impl TryFrom<GuardCounterItem> for GuardCount {
    type Error = Error;
    fn try_from(i: GuardCounterItem) -> Result<Self> {
        Ok(GuardCount { sends: i.sends, verifies: i.verifies })
    }
}
