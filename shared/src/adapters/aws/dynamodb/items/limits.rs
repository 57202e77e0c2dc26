//! Limits and workflows (definitions stored twice, by name and by sid, in the account's
//! partition, one item shape for both: `DefinitionItem`) and the counters of limits' buckets.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{attr, channel, corrupt, epoch_secs, esc, Item, Key, LIMIT_NAME_PREFIX};
use crate::domain::{
    error::{Error, Result},
    limits::{Bucket, Counter, LimitDef},
    time::Millis,
    workflows::{Step, WorkflowDef},
};

// --- definitions (limits and workflows) ---------------------------------------------------

/// What a limit and a workflow item share: whose it is, its name and times, around the part
/// that is its own (`body`, flattened: the stored attributes are one flat map, as they were
/// when each had a struct of its own). Stored twice, whole, in the account's partition:
/// `NAME#{name}` (read by name on send) and `SID#{sid}` (read by sid on the API), both always
/// written in one transaction (`named.rs`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DefinitionItem<B> {
    pub pk: String,
    pub sk: String,
    pub sid: String,
    pub account_sid: String,
    pub created_by: String,
    pub name: String,
    #[serde(flatten)]
    pub body: B,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_ms: Millis,
    pub updated_ms: Millis,
}

/// The shared part of a definition, as the domain holds it.
pub(crate) struct Header {
    pub sid: String,
    pub account_sid: String,
    pub created_by: String,
    pub name: String,
    pub description: Option<String>,
    pub created_ms: Millis,
    pub updated_ms: Millis,
}

/// A domain definition stored as a `DefinitionItem`: its own part, its partition and what its
/// store operations are called and answer.
pub(crate) trait StoredDefinition: Sized + Send + Sync {
    type Body: Serialize + DeserializeOwned;
    /// Operation names, for logs and `CallCounts`.
    const CREATE: &'static str;
    const GET: &'static str;
    const GET_BY_NAME: &'static str;
    const UPDATE: &'static str;
    const DELETE: &'static str;
    const LIST: &'static str;
    /// The account's partition of definitions of this kind.
    fn partition(account_sid: &str) -> String;
    fn name_taken() -> Error;
    fn not_found() -> Error;
    fn header(&self) -> Header;
    fn body(&self) -> Self::Body;
    fn from_parts(header: Header, body: Self::Body) -> Result<Self>;

    fn by_name(account_sid: &str, name: &str) -> Key {
        Key::new(Self::partition(account_sid), format!("{LIMIT_NAME_PREFIX}{}", esc(name)))
    }
    fn by_sid(account_sid: &str, sid: &str) -> Key {
        Key::new(Self::partition(account_sid), format!("SID#{}", esc(sid)))
    }
}

/// The `Header` of a domain definition (limits and workflows name these fields alike).
macro_rules! header_of {
    ($def:expr) => {
        Header {
            sid: $def.sid.clone(),
            account_sid: $def.account_sid.clone(),
            created_by: $def.created_by.clone(),
            name: $def.name.clone(),
            description: $def.description.clone(),
            created_ms: $def.created_ms,
            updated_ms: $def.updated_ms,
        }
    };
}

impl<B> DefinitionItem<B> {
    pub fn new<T: StoredDefinition<Body = B>>(key: Key, def: &T) -> Self {
        let h = def.header();
        DefinitionItem {
            pk: key.pk,
            sk: key.sk,
            sid: h.sid,
            account_sid: h.account_sid,
            created_by: h.created_by,
            name: h.name,
            body: def.body(),
            description: h.description,
            created_ms: h.created_ms,
            updated_ms: h.updated_ms,
        }
    }

    pub fn into_def<T: StoredDefinition<Body = B>>(self) -> Result<T> {
        let header = Header {
            sid: self.sid,
            account_sid: self.account_sid,
            created_by: self.created_by,
            name: self.name,
            description: self.description,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
        };
        T::from_parts(header, self.body)
    }
}

// --- limits --------------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BucketItem {
    pub name: String,
    pub max: u32,
    pub interval_secs: u32,
}

/// A limit's own part: its buckets, and as the client wrote them.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LimitBody {
    pub buckets: Vec<BucketItem>,
    pub buckets_json: String,
}

pub(crate) type LimitItem = DefinitionItem<LimitBody>;

impl StoredDefinition for LimitDef {
    type Body = LimitBody;
    const CREATE: &'static str = "TransactWriteItems(create_limit)";
    const GET: &'static str = "GetItem(limit)";
    const GET_BY_NAME: &'static str = "GetItem(limit by name)";
    const UPDATE: &'static str = "TransactWriteItems(update_limit)";
    const DELETE: &'static str = "TransactWriteItems(delete_limit)";
    const LIST: &'static str = "Query(limits)";

    fn partition(account_sid: &str) -> String {
        Key::limits_partition(account_sid)
    }
    fn name_taken() -> Error {
        Error::LimitNameExists
    }
    fn not_found() -> Error {
        Error::LimitNotFound
    }
    fn header(&self) -> Header {
        header_of!(self)
    }
    fn body(&self) -> LimitBody {
        LimitBody {
            buckets: self
                .buckets
                .iter()
                .map(|b| BucketItem { name: b.name.clone(), max: b.max, interval_secs: b.interval_secs })
                .collect(),
            buckets_json: self.buckets_json.clone(),
        }
    }
    fn from_parts(h: Header, body: LimitBody) -> Result<Self> {
        Ok(LimitDef {
            sid: h.sid,
            account_sid: h.account_sid,
            created_by: h.created_by,
            name: h.name,
            buckets: body
                .buckets
                .into_iter()
                .map(|b| Bucket { name: b.name, max: b.max, interval_secs: b.interval_secs })
                .collect(),
            buckets_json: body.buckets_json,
            description: h.description,
            created_ms: h.created_ms,
            updated_ms: h.updated_ms,
        })
    }
}

impl TryFrom<LimitItem> for LimitDef {
    type Error = Error;
    fn try_from(i: LimitItem) -> Result<Self> {
        i.into_def()
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

/// A workflow's own part: its steps, and as the client wrote them.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkflowBody {
    pub steps: Vec<StepItem>,
    pub channels_json: String,
}

pub(crate) type WorkflowItem = DefinitionItem<WorkflowBody>;

impl StoredDefinition for WorkflowDef {
    type Body = WorkflowBody;
    const CREATE: &'static str = "TransactWriteItems(create_workflow)";
    const GET: &'static str = "GetItem(workflow)";
    const GET_BY_NAME: &'static str = "GetItem(workflow by name)";
    const UPDATE: &'static str = "TransactWriteItems(update_workflow)";
    const DELETE: &'static str = "TransactWriteItems(delete_workflow)";
    const LIST: &'static str = "Query(workflows)";

    fn partition(account_sid: &str) -> String {
        Key::workflows_partition(account_sid)
    }
    fn name_taken() -> Error {
        Error::WorkflowNameExists
    }
    fn not_found() -> Error {
        Error::WorkflowNotFound
    }
    fn header(&self) -> Header {
        header_of!(self)
    }
    fn body(&self) -> WorkflowBody {
        WorkflowBody {
            steps: self.steps.iter().map(StepItem::from).collect(),
            channels_json: self.channels_json.clone(),
        }
    }
    fn from_parts(h: Header, body: WorkflowBody) -> Result<Self> {
        Ok(WorkflowDef {
            sid: h.sid,
            account_sid: h.account_sid,
            created_by: h.created_by,
            name: h.name,
            steps: body.steps.into_iter().map(Step::try_from).collect::<Result<_>>()?,
            channels_json: body.channels_json,
            description: h.description,
            created_ms: h.created_ms,
            updated_ms: h.updated_ms,
        })
    }
}

impl TryFrom<WorkflowItem> for WorkflowDef {
    type Error = Error;
    fn try_from(i: WorkflowItem) -> Result<Self> {
        i.into_def()
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

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::AttributeValue as V;

    use super::*;
    use crate::adapters::aws::dynamodb::items::{from_item, to_item};
    use crate::domain::otp::Channel;

    fn names(item: &Item) -> Vec<&str> {
        let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn a_limit_is_stored_as_the_flat_item_it_always_was_and_reads_back() {
        // Given a limit with a bucket and a description
        let def = LimitDef {
            sid: "LM1".into(),
            account_sid: "AC1".into(),
            created_by: "AC0".into(),
            name: "Login".into(),
            buckets: vec![Bucket { name: "to".into(), max: 3, interval_secs: 60 }],
            buckets_json: r#"[{"name":"to"}]"#.into(),
            description: Some("d".into()),
            created_ms: 1,
            updated_ms: 2,
        };
        // When it is made an item by sid
        let item = to_item(&LimitItem::new(LimitDef::by_sid("AC1", "LM1"), &def)).unwrap();
        // Then its attributes are the ones items written before the shared shape have, and
        // the item reads back as the same limit
        assert_eq!(
            names(&item),
            [
                "account_sid",
                "buckets",
                "buckets_json",
                "created_by",
                "created_ms",
                "description",
                "name",
                "pk",
                "sid",
                "sk",
                "updated_ms"
            ]
        );
        assert_eq!((&item["pk"], &item["sk"]), (&V::S("LIMIT#AC1".into()), &V::S("SID#LM1".into())));
        assert_eq!(from_item::<LimitItem, LimitDef>(item).unwrap(), def);
    }

    #[test]
    fn a_workflow_is_stored_as_the_flat_item_it_always_was_and_reads_back() {
        // Given a workflow of two steps, without a description
        let def = WorkflowDef {
            sid: "WF1".into(),
            account_sid: "AC1".into(),
            created_by: "AC1".into(),
            name: "SMS then call".into(),
            steps: vec![
                Step { channel: Channel::Sms, interval_secs: 60 },
                Step { channel: Channel::Call, interval_secs: 0 },
            ],
            channels_json: "[]".into(),
            description: None,
            created_ms: 1,
            updated_ms: 1,
        };
        // When it is made an item by name
        let item = to_item(&WorkflowItem::new(WorkflowDef::by_name("AC1", "SMS then call"), &def)).unwrap();
        // Then its attributes are the old ones (no description when there is none), and it
        // reads back as the same workflow
        assert_eq!(
            names(&item),
            [
                "account_sid",
                "channels_json",
                "created_by",
                "created_ms",
                "name",
                "pk",
                "sid",
                "sk",
                "steps",
                "updated_ms"
            ]
        );
        assert_eq!((&item["pk"], &item["sk"]), (&V::S("WF#AC1".into()), &V::S("NAME#SMS then call".into())));
        assert_eq!(from_item::<WorkflowItem, WorkflowDef>(item).unwrap(), def);
    }
}
