//! Limits and workflows (definitions stored twice, by name and by sid, in the account's
//! partition) and the counters of limits' buckets.

use serde::{Deserialize, Serialize};

use super::{attr, channel, corrupt, epoch_secs, Item, Key};
use crate::domain::{
    error::{Error, Result},
    limits::{Bucket, Counter, LimitDef},
    time::Millis,
    workflows::{Step, WorkflowDef},
};

// --- limits --------------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BucketItem {
    pub name: String,
    pub max: u32,
    pub interval_secs: u32,
}

/// A limit. Stored twice, whole, under the same partition: `NAME#{name}` (read by name on
/// send) and `SID#{sid}` (read by sid on the API); both always written in one transaction.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LimitItem {
    pub pk: String,
    pub sk: String,
    pub sid: String,
    pub account_sid: String,
    pub created_by: String,
    pub name: String,
    pub buckets: Vec<BucketItem>,
    pub buckets_json: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_ms: Millis,
    pub updated_ms: Millis,
}

impl LimitItem {
    pub fn new(key: Key, d: &LimitDef) -> Self {
        LimitItem {
            pk: key.pk,
            sk: key.sk,
            sid: d.sid.clone(),
            account_sid: d.account_sid.clone(),
            created_by: d.created_by.clone(),
            name: d.name.clone(),
            buckets: d
                .buckets
                .iter()
                .map(|b| BucketItem { name: b.name.clone(), max: b.max, interval_secs: b.interval_secs })
                .collect(),
            buckets_json: d.buckets_json.clone(),
            description: d.description.clone(),
            created_ms: d.created_ms,
            updated_ms: d.updated_ms,
        }
    }
}

impl TryFrom<LimitItem> for LimitDef {
    type Error = Error;
    fn try_from(i: LimitItem) -> Result<Self> {
        Ok(LimitDef {
            sid: i.sid,
            account_sid: i.account_sid,
            created_by: i.created_by,
            name: i.name,
            buckets: i
                .buckets
                .into_iter()
                .map(|b| Bucket { name: b.name, max: b.max, interval_secs: b.interval_secs })
                .collect(),
            buckets_json: i.buckets_json,
            description: i.description,
            created_ms: i.created_ms,
            updated_ms: i.updated_ms,
        })
    }
}

// --- workflows -----------------------------------------------------------------------------

/// One step of a workflow: its channel and interval.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StepItem {
    pub channel: String,
    pub interval_secs: u32,
}

impl From<&Step> for StepItem {
    fn from(s: &Step) -> Self {
        StepItem { channel: s.channel.as_str().to_owned(), interval_secs: s.interval_secs }
    }
}

impl TryFrom<StepItem> for Step {
    type Error = Error;
    fn try_from(s: StepItem) -> Result<Self> {
        Ok(Step { channel: channel(&s.channel)?, interval_secs: s.interval_secs })
    }
}

/// A workflow definition, stored twice like a limit: `NAME#{name}` (a send names it) and
/// `SID#{sid}` (the API), always written together.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkflowItem {
    pub pk: String,
    pub sk: String,
    pub sid: String,
    pub account_sid: String,
    pub created_by: String,
    pub name: String,
    pub steps: Vec<StepItem>,
    pub channels_json: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_ms: Millis,
    pub updated_ms: Millis,
}

impl WorkflowItem {
    pub fn new(key: Key, d: &WorkflowDef) -> Self {
        WorkflowItem {
            pk: key.pk,
            sk: key.sk,
            sid: d.sid.clone(),
            account_sid: d.account_sid.clone(),
            created_by: d.created_by.clone(),
            name: d.name.clone(),
            steps: d.steps.iter().map(StepItem::from).collect(),
            channels_json: d.channels_json.clone(),
            description: d.description.clone(),
            created_ms: d.created_ms,
            updated_ms: d.updated_ms,
        }
    }
}

impl TryFrom<WorkflowItem> for WorkflowDef {
    type Error = Error;
    fn try_from(i: WorkflowItem) -> Result<Self> {
        Ok(WorkflowDef {
            sid: i.sid,
            account_sid: i.account_sid,
            created_by: i.created_by,
            name: i.name,
            steps: i.steps.into_iter().map(Step::try_from).collect::<Result<_>>()?,
            channels_json: i.channels_json,
            description: i.description,
            created_ms: i.created_ms,
            updated_ms: i.updated_ms,
        })
    }
}

// --- counters ------------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CounterItem {
    pub pk: String,
    pub sk: String,
    pub count: u32,
    pub window_end_ms: Millis,
    pub ttl: i64,
}

impl CounterItem {
    /// A window opened with its first count; the item expires a minute after the window.
    pub fn opened(key: Key, window_end_ms: Millis) -> Self {
        CounterItem { pk: key.pk, sk: key.sk, count: 1, window_end_ms, ttl: epoch_secs(window_end_ms) + 60 }
    }
}

impl TryFrom<CounterItem> for Counter {
    type Error = Error;
    fn try_from(i: CounterItem) -> Result<Self> {
        Ok(Counter { count: i.count, window_end_ms: i.window_end_ms })
    }
}

/// The counter an item holds (`count`, `window_end_ms`): a `CTR#` item's, or a destination
/// item's default limit; None for a destination that has never had one.
pub(crate) fn counter_of(item: &Item) -> Result<Option<Counter>> {
    let number = |name: &str| item.get(name).map(|v| v.as_n().ok().and_then(|n| n.parse::<i64>().ok()));
    match (number(attr::COUNT), number(attr::WINDOW_END_MS)) {
        (None, None) => Ok(None),
        (Some(Some(count)), Some(Some(window_end_ms))) => match u32::try_from(count) {
            Ok(count) => Ok(Some(Counter { count, window_end_ms })),
            Err(_) => corrupt("count")(),
        },
        _ => corrupt("counter")(),
    }
}
