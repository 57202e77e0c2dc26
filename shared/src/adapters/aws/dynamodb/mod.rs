//! The DynamoDB store: one table, every state change a conditional write, every multi-item
//! change one `TransactWriteItems`. Same conditions and answers as `adapters::memory`.
//!
//! docs/data-model.md lists the items, keys and access patterns with their round trips.

mod account_admin;
mod accounts;
mod calls;
mod console;
mod errors;
mod expiry;
mod factors;
mod guard;
mod insights;
mod items;
mod limits;
mod named;
mod otps;
mod receipts;
mod records;
mod stream;
mod table;
mod workflows;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use aws_sdk_dynamodb::{
    operation::transact_write_items::TransactWriteItemsError,
    types::{AttributeValue, Delete, KeysAndAttributes, Put, TransactWriteItem, Update},
    Client,
};
use rand::Rng;

pub use accounts::ACCOUNT_CACHE_TTL;
pub use calls::CallCounts;
pub use insights::INSIGHT_SHARDS;
pub use items::{due_shard_of, usage_item, usage_shard, DUE_SHARDS, USAGE_ITEMS, USAGE_SHARDS};
pub use stream::{otp_from_image, otp_item, says_guarded};
pub use table::{create_table, create_table_with_stream, GSI1, GSI2};

use self::{
    accounts::AccountCache,
    calls::{CountCalls, Counters},
    errors::{canceled, Reason},
    items::{attr, Item, Key},
};
use crate::domain::{
    error::{Error, Result},
    usage::UsageKey,
};

/// `TransactWriteItems` takes at most this many items.
const MAX_TRANSACTION_ITEMS: usize = 100;
/// `BatchGetItem` takes at most this many keys.
const MAX_BATCH_KEYS: usize = 100;
/// Rounds of `UnprocessedKeys` retries before a batch read gives up.
const MAX_BATCH_ROUNDS: u32 = 8;

/// The DynamoDB store. Cheap to share: one per process, behind an `Arc`.
pub struct DynamoStore {
    client: Client,
    table: String,
    calls: Arc<Counters>,
    accounts: AccountCache,
    /// Partitions a fresh OTP of an account may land in (`OtpStore::otp_shards`).
    otp_shards: usize,
    guard: guard::GuardCache,
}

impl DynamoStore {
    /// The store on `table`. The client is re-built with an interceptor that counts requests
    /// (see `calls`); everything else about it (endpoint, credentials, retries) is kept.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        let calls = Arc::new(Counters::default());
        let conf = client.config().to_builder().interceptor(CountCalls(calls.clone())).build();
        DynamoStore {
            client: Client::from_conf(conf),
            table: table.into(),
            calls,
            accounts: AccountCache { ttl: ACCOUNT_CACHE_TTL, ..Default::default() },
            otp_shards: crate::domain::ids::OTP_SHARDS,
            guard: guard::GuardCache::default(),
        }
    }

    /// The same store spreading fresh OTPs over `shards` partitions per account (a power of two
    /// up to `ids::OTP_SHARDS`; anything else keeps the default). Search reads that many, so
    /// the count may be raised on a running table but not lowered: OTPs in shards above a
    /// lowered count still verify, but no longer show in search.
    pub fn with_otp_shards(mut self, shards: usize) -> Self {
        if crate::domain::ids::valid_shard_count(shards) {
            self.otp_shards = shards;
        }
        self
    }

    /// The same store with the pumping guard's windows kept for `ttl` per process (zero: read
    /// on every guarded send; the default is `guard::GUARD_CACHE_MS`), timed by `clock`.
    pub fn with_guard_cache(mut self, ttl: Duration, clock: Arc<dyn crate::ports::Clock>) -> Self {
        self.guard = guard::GuardCache::new(ttl, clock);
        self
    }

    /// The same store with accounts cached for `ttl` (zero: read on every request).
    pub fn with_account_cache_ttl(mut self, ttl: Duration) -> Self {
        self.accounts.ttl = ttl;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// DynamoDB requests this store has sent so far (SDK retries included), by operation.
    pub fn calls(&self) -> CallCounts {
        self.calls.snapshot()
    }

    fn count_search_round(&self) {
        self.calls.count_search_round();
    }

    /// The usage count of one account, day and category (0 when nothing was counted).
    pub async fn usage_count(&self, key: &UsageKey) -> Result<u64> {
        // Partition by partition, not through the usage query, so the suite checks the items
        // themselves: the day's items (`{day}#{item}`) of each of the account's partitions.
        let mut total = 0;
        for shard in 0..USAGE_SHARDS as u8 {
            let pk = Key::usage_shard(&key.account_sid, shard);
            let day = s(format!("{}#", items::esc(&key.day)));
            for item in self.query_all("Query(usage)", pk, "begins_with(#sk, :a)", day, None).await? {
                total += Self::usage_count_of(&item, key)?;
            }
        }
        Ok(total)
    }

    /// One usage item's count of `key`'s category.
    fn usage_count_of(item: &Item, key: &UsageKey) -> Result<u64> {
        let count = match item.get(key.category.as_str()) {
            None => 0,
            Some(AttributeValue::N(v)) => v.parse::<i64>().map_err(|_| Error::Internal)?,
            Some(_) => {
                tracing::error!("corrupt usage item");
                return Err(Error::Internal);
            }
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// `PutItem` of an item whose key must be new: `Error::Contended` when it is taken (or a
    /// transaction holds it).
    async fn put_new(&self, op: &'static str, item: Item) -> Result<()> {
        use aws_sdk_dynamodb::operation::put_item::PutItemError;
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(
                    PutItemError::ConditionalCheckFailedException(_) | PutItemError::TransactionConflictException(_),
                ) => Err(Error::Contended),
                _ => Err(errors::sdk(op, &e)),
            },
        }
    }

    async fn get(&self, op: &'static str, key: &Key, consistent: bool) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| errors::sdk(op, &e))?;
        Ok(out.item)
    }

    /// Strongly consistent `BatchGetItem` of `keys` (duplicates allowed), one request per 100
    /// distinct keys, `UnprocessedKeys` asked again with backoff.
    async fn batch_get(&self, keys: &[Key]) -> Result<HashMap<Key, Item>> {
        self.batch_get_with(keys, true).await
    }

    /// `batch_get`, strongly consistent or not.
    async fn batch_get_with(&self, keys: &[Key], consistent: bool) -> Result<HashMap<Key, Item>> {
        let mut seen = HashSet::new();
        let unique: Vec<&Key> = keys.iter().filter(|k| seen.insert(*k)).collect();
        let mut found = HashMap::with_capacity(unique.len());
        for chunk in unique.chunks(MAX_BATCH_KEYS) {
            let mut pending: Vec<Item> = chunk.iter().map(|k| k.to_item()).collect();
            let mut round = 0;
            while !pending.is_empty() {
                if round == MAX_BATCH_ROUNDS {
                    tracing::warn!(keys = pending.len(), "DynamoDB left keys unprocessed");
                    return Err(Error::Unavailable);
                }
                if round > 0 {
                    backoff(round).await;
                }
                let request = KeysAndAttributes::builder().set_keys(Some(pending)).consistent_read(consistent).build();
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request.map_err(build_error)?)
                    .send()
                    .await
                    .map_err(|e| errors::sdk("BatchGetItem", &e))?;
                let items = out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default();
                for item in items {
                    if let Some(key) = Key::of(&item) {
                        found.insert(key, item);
                    }
                }
                pending =
                    out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).map(|ka| ka.keys).unwrap_or_default();
                round += 1;
            }
        }
        Ok(found)
    }

    async fn transact(&self, op: &'static str, items: Vec<TransactWriteItem>) -> Result<(), TransactError> {
        self.transact_with_token(op, items, None).await
    }

    /// With a client request token, the SDK's own retry of a transaction whose first attempt
    /// was applied but whose answer was lost succeeds instead of failing its conditions (which
    /// would make a committed send look contended and answer 503).
    async fn transact_with_token(
        &self,
        op: &'static str,
        items: Vec<TransactWriteItem>,
        token: Option<String>,
    ) -> Result<(), TransactError> {
        if items.len() > MAX_TRANSACTION_ITEMS {
            return Err(TransactError::Other(Error::invalid(
                "limits",
                "too many buckets in one send (a send changes at most 100 items at once)",
            )));
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .set_client_request_token(token)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    Err(TransactError::Canceled(c.cancellation_reasons().iter().map(Reason::from).collect()))
                }
                _ => Err(TransactError::Other(errors::sdk(op, &e))),
            },
        }
    }

    fn put(&self, item: Item, condition: &str, expr: Expr) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn update(&self, key: &Key, update: &str, condition: Option<&str>, expr: Expr) -> Result<TransactWriteItem> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .update_expression(update)
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn delete(&self, key: &Key, condition: Option<&str>, expr: Expr) -> Result<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Every item of partition `pk` whose sort key starts with `prefix` (consistent, all pages).
    async fn query_prefix(&self, op: &'static str, pk: String, prefix: &str) -> Result<Vec<Item>> {
        self.query_all(op, pk, "begins_with(#sk, :a)", s(prefix), None).await
    }

    /// Every item of partition `pk` whose sort key meets `sk_condition` (over `#sk`, `:a` and
    /// optionally `:b`), strongly consistent, following every page.
    async fn query_all(
        &self,
        op: &'static str,
        pk: String,
        sk_condition: &str,
        a: AttributeValue,
        b: Option<AttributeValue>,
    ) -> Result<Vec<Item>> {
        self.query_all_with(op, pk, sk_condition, a, b, true).await
    }

    /// `query_all`, strongly consistent or not.
    async fn query_all_with(
        &self,
        op: &'static str,
        pk: String,
        sk_condition: &str,
        a: AttributeValue,
        b: Option<AttributeValue>,
        consistent: bool,
    ) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(format!("#pk = :pk AND {sk_condition}"))
                .expression_attribute_names("#pk", attr::PK)
                .expression_attribute_names("#sk", attr::SK)
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":a", a.clone())
                .consistent_read(consistent)
                .set_exclusive_start_key(start.take());
            if let Some(b) = &b {
                query = query.expression_attribute_values(":b", b.clone());
            }
            let out = query.send().await.map_err(|e| errors::sdk(op, &e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }
}

/// A transaction that did not happen: canceled with per-item reasons, or failed otherwise.
enum TransactError {
    Canceled(Vec<Reason>),
    Other(Error),
}

impl From<TransactError> for Error {
    fn from(e: TransactError) -> Self {
        match e {
            TransactError::Canceled(reasons) => canceled(&reasons),
            TransactError::Other(e) => e,
        }
    }
}

/// Expression attribute names and values of one statement (only the ones it uses: DynamoDB
/// rejects unused ones).
#[derive(Default, Clone)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    /// `#attr` stands for `attr`.
    fn name(mut self, attr: &str) -> Self {
        self.names.insert(format!("#{attr}"), attr.to_owned());
        self
    }

    /// `placeholder` (`#...`) stands for `attr`: for names that are not identifiers (a
    /// destination item's `svc:{service}`).
    fn alias(mut self, placeholder: &str, attr: &str) -> Self {
        self.names.insert(placeholder.to_owned(), attr.to_owned());
        self
    }

    fn value(mut self, placeholder: &str, v: AttributeValue) -> Self {
        self.values.insert(placeholder.to_owned(), v);
        self
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn build_error(e: aws_smithy_types::error::operation::BuildError) -> Error {
    tracing::error!(error = %e, "cannot build a DynamoDB request");
    Error::Internal
}

async fn backoff(round: u32) {
    let cap_ms = (10u64 << round.min(5)).min(250);
    let ms = rand::thread_rng().gen_range(1..=cap_ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
