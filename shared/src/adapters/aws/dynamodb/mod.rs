//! The DynamoDB store: one table, every state change a conditional write, every multi-item
//! change one `TransactWriteItems`. Same conditions and answers as `adapters::memory`.
//!
//! docs/data-model.md lists the items, keys and access patterns with their round trips.

mod calls;
mod errors;
mod items;
mod records;
mod table;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    operation::{put_item::PutItemError, transact_write_items::TransactWriteItemsError, update_item::UpdateItemError},
    types::{
        AttributeValue, Delete, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
    },
    Client,
};
use rand::Rng;

pub use calls::CallCounts;
pub use table::create_table;

use self::{
    calls::{CountCalls, Counters},
    errors::{canceled, Reason},
    items::{
        attr, from_item, to_item, to_value, usage_shard, AccountItem, CheckItem, CounterItem, DestinationItem,
        EventItem, IdempotencyItem, Item, Key, LimitItem, OtpItem, LIMIT_NAME_PREFIX, SUB_ACCOUNT_PREFIX, USAGE_SHARDS,
    },
};
use crate::{
    domain::{
        account::Account,
        error::{Error, Result},
        idempotency::WINDOW_MS,
        limits::{Counter, CounterKey, CounterOp, LimitDef},
        otp::{ChannelEvent, Check, Destination, Otp, OtpStatus, MAX_ATTEMPTS},
        time::Millis,
        usage::UsageKey,
    },
    ports::{AccountStore, CancelWrite, LimitStore, OtpStore, SendPlan, SendSnapshot, VerifyWrite},
};

/// `TransactWriteItems` takes at most this many items.
const MAX_TRANSACTION_ITEMS: usize = 100;
/// `BatchGetItem` takes at most this many keys.
const MAX_BATCH_KEYS: usize = 100;
/// Rounds of `UnprocessedKeys` retries before a batch read gives up.
const MAX_BATCH_ROUNDS: u32 = 8;
/// Rounds of an undo that drops the parts whose condition no longer holds.
const MAX_UNDO_ROUNDS: u32 = 8;
/// Read-then-transact rounds of a limit delete.
const MAX_DELETE_ROUNDS: u32 = 4;

/// The DynamoDB store. Cheap to share: one per process, behind an `Arc`.
pub struct DynamoStore {
    client: Client,
    table: String,
    calls: Arc<Counters>,
    accounts: AccountCache,
}

/// How long a process keeps an account it read. Accounts are read on every request (auth) and
/// change rarely; caching them makes verify one round trip on a warm Lambda. The price: a
/// suspension or token change takes up to this long to reach every process.
pub const ACCOUNT_CACHE_TTL: Duration = Duration::from_secs(30);
/// Beyond this many cached accounts the cache starts afresh (a Lambda serves few accounts).
const ACCOUNT_CACHE_MAX: usize = 10_000;

#[derive(Default)]
struct AccountCache {
    ttl: Duration,
    entries: std::sync::Mutex<HashMap<String, (std::time::Instant, Account)>>,
}

impl AccountCache {
    fn get(&self, sid: &str) -> Option<Account> {
        let entries = self.entries.lock().ok()?;
        let (at, account) = entries.get(sid)?;
        (at.elapsed() < self.ttl).then(|| account.clone())
    }

    fn put(&self, account: &Account) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= ACCOUNT_CACHE_MAX {
                entries.clear();
            }
            entries.insert(account.sid.clone(), (std::time::Instant::now(), account.clone()));
        }
    }
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
        }
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

    /// The usage count of one account, day and category (0 when nothing was counted).
    pub async fn usage_count(&self, key: &UsageKey) -> Result<u64> {
        #[derive(serde::Deserialize)]
        struct UsageItem {
            #[serde(default)]
            count: i64,
        }
        // Item by item, not through the usage query, so the suite checks the items themselves.
        let mut total = 0;
        for shard in 0..USAGE_SHARDS as u8 {
            let Some(item) = self.get("GetItem(usage)", &Key::usage(key, shard), true).await? else {
                continue;
            };
            let usage: UsageItem = serde_dynamo::from_item(item).map_err(|e| {
                tracing::error!(error = %e, "corrupt usage item");
                Error::Internal
            })?;
            total += u64::try_from(usage.count).unwrap_or(0);
        }
        Ok(total)
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
                let request = KeysAndAttributes::builder().set_keys(Some(pending)).consistent_read(true).build();
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

    /// The writes of `commit_send`, each with its condition, in one list.
    fn commit_items(&self, plan: &SendPlan) -> Result<Vec<TransactWriteItem>> {
        let otp = &plan.otp;
        let acct = &otp.account_sid;
        let mut tx = Vec::with_capacity(6 + plan.counters.len());
        tx.push(self.put(to_item(&OtpItem::from(otp))?, "attribute_not_exists(pk)", Expr::default())?);

        // The key's first use, or a use after its record's window ended (TTL is lazy).
        if let Some(r) = &plan.idempotency {
            tx.push(self.put(
                to_item(&IdempotencyItem::new(acct, r))?,
                "attribute_not_exists(pk) OR #created_ms <= :stale",
                Expr::default().name(attr::CREATED_MS).value(":stale", n(r.created_ms - WINDOW_MS)),
            )?);
        }

        let dkey = Key::destination(acct, &otp.service, &otp.delivery.to);
        let dest = to_item(&DestinationItem::new(dkey, &plan.destination))?;
        tx.push(match &plan.expected_current {
            Some(current) => self.put(
                dest,
                "#current = :expected",
                Expr::default().name(attr::CURRENT).value(":expected", s(current)),
            )?,
            None => self.put(dest, "attribute_not_exists(pk)", Expr::default())?,
        });

        if let Some(old) = &plan.supersede {
            tx.push(self.update(
                &Key::otp(acct, &old.sid),
                "SET #cancel_at_ms = :t",
                Some("attribute_exists(pk)"),
                Expr::default().name(attr::CANCEL_AT_MS).value(":t", n(old.cancel_at_ms)),
            )?);
        }

        for op in &plan.counters {
            tx.push(match op {
                CounterOp::Open { key, window_end_ms, now_ms } => self.put(
                    to_item(&CounterItem::opened(Key::counter(key), *window_end_ms))?,
                    "attribute_not_exists(pk) OR #window_end_ms <= :now",
                    Expr::default().name(attr::WINDOW_END_MS).value(":now", n(*now_ms)),
                )?,
                CounterOp::Increment { key, window_end_ms, max } => self.update(
                    &Key::counter(key),
                    "SET #count = #count + :one",
                    Some("#window_end_ms = :end AND #count < :max"),
                    Expr::default()
                        .name(attr::COUNT)
                        .name(attr::WINDOW_END_MS)
                        .value(":one", n(1))
                        .value(":end", n(*window_end_ms))
                        .value(":max", n(*max)),
                )?,
            });
        }

        let shard = usage_shard(&otp.sid);
        for usage in &plan.usage {
            tx.push(self.update(
                &Key::usage(usage, shard),
                "ADD #count :one",
                None,
                Expr::default().name(attr::COUNT).value(":one", n(1)),
            )?);
        }
        Ok(tx)
    }

    /// The reverse of `commit_items`, each part conditioned on still being what the send wrote.
    fn undo_items(&self, plan: &SendPlan) -> Result<Vec<TransactWriteItem>> {
        let otp = &plan.otp;
        let acct = &otp.account_sid;
        let mut tx = Vec::with_capacity(6 + plan.counters.len());
        tx.push(self.delete(&Key::otp(acct, &otp.sid), None, Expr::default())?);

        if let Some(r) = &plan.idempotency {
            tx.push(self.delete(
                &Key::idempotency(acct, &r.key),
                Some("#otp_sid = :sid"),
                Expr::default().name(attr::OTP_SID).value(":sid", s(&otp.sid)),
            )?);
        }

        // The pointer goes back to the OTP it pointed at (without guard data, as the memory
        // store does), or away, but only while it still points at this send's OTP.
        let dkey = Key::destination(acct, &otp.service, &otp.delivery.to);
        let is_ours = Expr::default().name(attr::CURRENT).value(":new", s(&otp.sid));
        tx.push(match &plan.supersede {
            Some(old) => self.update(
                &dkey,
                "SET #current = :old REMOVE #previous_sid, #previous_cancel_at_ms",
                Some("#current = :new"),
                is_ours.name(attr::PREVIOUS_SID).name(attr::PREVIOUS_CANCEL_AT_MS).value(":old", s(&old.sid)),
            )?,
            None => self.delete(&dkey, Some("#current = :new"), is_ours)?,
        });

        if let Some(old) = &plan.supersede {
            tx.push(self.update(
                &Key::otp(acct, &old.sid),
                "REMOVE #cancel_at_ms",
                Some("#cancel_at_ms = :t"),
                Expr::default().name(attr::CANCEL_AT_MS).value(":t", n(old.cancel_at_ms)),
            )?);
        }

        for op in &plan.counters {
            tx.push(
                self.update(
                    &Key::counter(op.key()),
                    "ADD #count :minus_one",
                    Some("#window_end_ms = :end AND #count > :zero"),
                    Expr::default()
                        .name(attr::COUNT)
                        .name(attr::WINDOW_END_MS)
                        .value(":minus_one", n(-1))
                        .value(":end", n(op.window_end_ms()))
                        .value(":zero", n(0)),
                )?,
            );
        }

        for usage in &plan.usage {
            tx.push(self.update(
                &Key::usage(usage, usage_shard(&otp.sid)),
                "ADD #count :minus_one",
                Some("#count > :zero"),
                Expr::default().name(attr::COUNT).value(":minus_one", n(-1)).value(":zero", n(0)),
            )?);
        }
        Ok(tx)
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
                .consistent_read(true)
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

    /// One conditional `UpdateItem` of an OTP that answers the item as it was when the
    /// condition fails (`ALL_OLD`), so a refusal costs no second read. `Ok(None)` = written.
    async fn update_otp_or_old(
        &self,
        op: &'static str,
        key: &Key,
        update: &str,
        condition: &str,
        expr: Expr,
    ) -> Result<Option<Option<Otp>>> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => match c.item() {
                    Some(item) => Ok(Some(Some(from_item::<OtpItem, _>(item.clone())?))),
                    None => Ok(Some(None)),
                },
                Some(UpdateItemError::TransactionConflictException(_)) => Err(Error::Contended),
                _ => Err(errors::sdk(op, &e)),
            },
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

/// The condition under which an OTP is pending at `:now` (what every OTP state change needs).
const PENDING_AT_NOW: &str =
    "#status = :pending AND #expires_ms > :now AND (attribute_not_exists(#cancel_at_ms) OR #cancel_at_ms > :now)";

fn pending_at(now: Millis) -> Expr {
    Expr::default()
        .name(attr::STATUS)
        .name(attr::EXPIRES_MS)
        .name(attr::CANCEL_AT_MS)
        .value(":pending", s(OtpStatus::Pending.as_str()))
        .value(":now", n(now))
}

/// `:check`, a one-element list to append, and `:empty` for an OTP without checks yet.
fn with_check(expr: Expr, check: &Check) -> Result<Expr> {
    Ok(expr
        .name(attr::CHECKS)
        .value(":check", AttributeValue::L(vec![to_value(&CheckItem::from(check))?]))
        .value(":empty", AttributeValue::L(vec![])))
}

#[async_trait]
impl AccountStore for DynamoStore {
    async fn get_account(&self, sid: &str) -> Result<Option<Account>> {
        if let Some(account) = self.accounts.get(sid) {
            return Ok(Some(account));
        }
        // Eventually consistent: accounts are written once and read on every request. Unknown
        // sids are not cached, so an account created meanwhile is found on the next request.
        let account: Option<Account> = self
            .get("GetItem(account)", &Key::account(sid), false)
            .await?
            .map(from_item::<AccountItem, _>)
            .transpose()?;
        if let Some(a) = &account {
            self.accounts.put(a);
        }
        Ok(account)
    }

    async fn put_account(&self, account: &Account) -> Result<()> {
        let item = to_item(&AccountItem::new(Key::account(&account.sid), account))?;
        if account.ancestors.is_empty() {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            return match result {
                Ok(_) => Ok(()),
                Err(e) => match e.as_service_error() {
                    Some(
                        PutItemError::ConditionalCheckFailedException(_)
                        | PutItemError::TransactionConflictException(_),
                    ) => Err(Error::Contended),
                    _ => Err(errors::sdk("PutItem(account)", &e)),
                },
            };
        }
        // A sub-account also leaves a copy in each ancestor's partition, all in one
        // transaction, so `list_sub_accounts` is one Query.
        let mut tx = vec![self.put(item, "attribute_not_exists(pk)", Expr::default())?];
        for ancestor in &account.ancestors {
            let copy = AccountItem::new(Key::sub_account(ancestor, &account.sid), account);
            tx.push(self.put(to_item(&copy)?, "attribute_not_exists(pk)", Expr::default())?);
        }
        Ok(self.transact("TransactWriteItems(put_account)", tx).await?)
    }

    async fn list_sub_accounts(&self, ancestor_sid: &str) -> Result<Vec<Account>> {
        let items =
            self.query_prefix("Query(sub_accounts)", Key::account_partition(ancestor_sid), SUB_ACCOUNT_PREFIX).await?;
        items.into_iter().map(from_item::<AccountItem, _>).collect()
    }
}

#[async_trait]
impl OtpStore for DynamoStore {
    async fn send_snapshot(
        &self,
        account_sid: &str,
        service: &str,
        to: &str,
        limit_names: &[String],
        counters: &[CounterKey],
        idempotency_key: Option<&str>,
    ) -> Result<SendSnapshot> {
        let dkey = Key::destination(account_sid, service, to);
        let lkeys: Vec<Key> = limit_names.iter().map(|name| Key::limit_by_name(account_sid, name)).collect();
        let ckeys: Vec<Key> = counters.iter().map(Key::counter).collect();
        let ikey = idempotency_key.map(|k| Key::idempotency(account_sid, k));
        let all: Vec<Key> = std::iter::once(dkey.clone())
            .chain(lkeys.iter().cloned())
            .chain(ckeys.iter().cloned())
            .chain(ikey.iter().cloned())
            .collect();
        let found = self.batch_get(&all).await?;
        let get = |k: &Key| found.get(k).cloned();
        Ok(SendSnapshot {
            destination: get(&dkey).map(from_item::<DestinationItem, _>).transpose()?,
            limits: lkeys.iter().map(|k| get(k).map(from_item::<LimitItem, _>).transpose()).collect::<Result<_>>()?,
            counters: ckeys
                .iter()
                .map(|k| get(k).map(from_item::<CounterItem, _>).transpose())
                .collect::<Result<_>>()?,
            idempotency: ikey.as_ref().and_then(get).map(from_item::<IdempotencyItem, _>).transpose()?,
        })
    }

    async fn get_counters(&self, keys: &[CounterKey]) -> Result<Vec<Option<Counter>>> {
        let keys: Vec<Key> = keys.iter().map(Key::counter).collect();
        if keys.is_empty() {
            return Ok(vec![]);
        }
        let found = self.batch_get(&keys).await?;
        keys.iter().map(|k| found.get(k).cloned().map(from_item::<CounterItem, _>).transpose()).collect()
    }

    async fn commit_send(&self, plan: &SendPlan) -> Result<()> {
        let items = self.commit_items(plan)?;
        // A fresh token per commit attempt: a re-planned attempt is a different transaction.
        let token = Some(crate::domain::ids::new_sid(""));
        Ok(self.transact_with_token("TransactWriteItems(commit_send)", items, token).await?)
    }

    async fn undo_send(&self, plan: &SendPlan) -> Result<()> {
        // Like the memory store, each part is undone only if it is still what the send wrote;
        // a transaction fails whole, so parts whose condition fails are dropped and the rest
        // is tried again.
        let mut items = self.undo_items(plan)?;
        for round in 0..MAX_UNDO_ROUNDS {
            if items.is_empty() {
                return Ok(());
            }
            match self.transact("TransactWriteItems(undo_send)", items.clone()).await {
                Ok(()) => return Ok(()),
                Err(TransactError::Canceled(reasons)) => match canceled(&reasons) {
                    Error::Contended => {
                        let before = items.len();
                        let mut reasons = reasons.iter();
                        items.retain(|_| reasons.next() != Some(&Reason::ConditionFailed));
                        if items.len() == before {
                            // Only conflicts with concurrent transactions: same items again.
                            backoff(round + 1).await;
                        }
                    }
                    e => return Err(e),
                },
                Err(TransactError::Other(e)) => return Err(e),
            }
        }
        Err(Error::Unavailable)
    }

    async fn update_event(&self, account_sid: &str, otp_sid: &str, index: usize, event: &ChannelEvent) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Key::otp(account_sid, otp_sid).to_item()))
            .update_expression(format!("SET #events[{index}] = :event"))
            .condition_expression("attribute_exists(pk) AND size(#events) > :index")
            .expression_attribute_names("#events", attr::EVENTS)
            .expression_attribute_values(":event", to_value(&EventItem::from(event))?)
            .expression_attribute_values(":index", n(index))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(
                    UpdateItemError::ConditionalCheckFailedException(_)
                    | UpdateItemError::TransactionConflictException(_),
                ) => Err(Error::Contended),
                _ => Err(errors::sdk("UpdateItem(event)", &e)),
            },
        }
    }

    async fn get_otp(&self, account_sid: &str, otp_sid: &str) -> Result<Option<Otp>> {
        self.get("GetItem(otp)", &Key::otp(account_sid, otp_sid), true).await?.map(from_item::<OtpItem, _>).transpose()
    }

    async fn get_destination(&self, account_sid: &str, service: &str, to: &str) -> Result<Option<Destination>> {
        self.get("GetItem(destination)", &Key::destination(account_sid, service, to), true)
            .await?
            .map(from_item::<DestinationItem, _>)
            .transpose()
    }

    async fn verify_code(
        &self,
        account_sid: &str,
        otp_sid: &str,
        code_hash: &[u8],
        check: &Check,
        now: Millis,
    ) -> Result<VerifyWrite> {
        let expr = with_check(pending_at(now), check)?
            .name(attr::UPDATED_MS)
            .name(attr::ATTEMPTS)
            .name(attr::CODE_HASH)
            .value(":success", s(OtpStatus::Success.as_str()))
            .value(":max", n(MAX_ATTEMPTS))
            .value(":hash", AttributeValue::B(code_hash.to_vec().into()));
        let written = self
            .update_otp_or_old(
                "UpdateItem(verify)",
                &Key::otp(account_sid, otp_sid),
                "SET #status = :success, #updated_ms = :now, #checks = list_append(if_not_exists(#checks, :empty), :check)",
                &format!("attribute_exists(pk) AND {PENDING_AT_NOW} AND #attempts < :max AND #code_hash = :hash"),
                expr,
            )
            .await?;
        Ok(match written {
            None => VerifyWrite::Verified,
            Some(old) => VerifyWrite::Refused(old),
        })
    }

    async fn record_invalid_check(
        &self,
        account_sid: &str,
        otp_sid: &str,
        check: &Check,
        seen_attempts: u32,
        now: Millis,
    ) -> Result<()> {
        let fails = seen_attempts + 1 >= MAX_ATTEMPTS;
        let mut expr = with_check(pending_at(now), check)?
            .name(attr::ATTEMPTS)
            .value(":one", n(1))
            .value(":seen", n(seen_attempts));
        let mut update = String::from(
            "SET #attempts = #attempts + :one, #checks = list_append(if_not_exists(#checks, :empty), :check)",
        );
        if fails {
            expr = expr.name(attr::UPDATED_MS).value(":failed", s(OtpStatus::Failed.as_str()));
            update.push_str(", #status = :failed, #updated_ms = :now");
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Key::otp(account_sid, otp_sid).to_item()))
            .update_expression(update)
            .condition_expression(format!("{PENDING_AT_NOW} AND #attempts = :seen"))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(
                    UpdateItemError::ConditionalCheckFailedException(_)
                    | UpdateItemError::TransactionConflictException(_),
                ) => Err(Error::Contended),
                _ => Err(errors::sdk("UpdateItem(invalid_check)", &e)),
            },
        }
    }

    async fn cancel_otp(&self, account_sid: &str, otp_sid: &str, now: Millis) -> Result<CancelWrite> {
        let expr = pending_at(now).name(attr::UPDATED_MS).value(":canceled", s(OtpStatus::Canceled.as_str()));
        let written = self
            .update_otp_or_old(
                "UpdateItem(cancel)",
                &Key::otp(account_sid, otp_sid),
                "SET #status = :canceled, #updated_ms = :now",
                PENDING_AT_NOW,
                expr,
            )
            .await?;
        Ok(match written {
            None => CancelWrite::Canceled,
            Some(old) => CancelWrite::Refused(old),
        })
    }
}

#[async_trait]
impl LimitStore for DynamoStore {
    async fn create_limit(&self, def: &LimitDef) -> Result<()> {
        let by_name = Key::limit_by_name(&def.account_sid, &def.name);
        let by_sid = Key::limit_by_sid(&def.account_sid, &def.sid);
        let tx = vec![
            self.put(to_item(&LimitItem::new(by_name, def))?, "attribute_not_exists(pk)", Expr::default())?,
            self.put(to_item(&LimitItem::new(by_sid, def))?, "attribute_not_exists(pk)", Expr::default())?,
        ];
        match self.transact("TransactWriteItems(create_limit)", tx).await {
            Ok(()) => Ok(()),
            Err(TransactError::Canceled(reasons)) if reasons.first() == Some(&Reason::ConditionFailed) => {
                Err(Error::LimitNameExists)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn get_limit(&self, account_sid: &str, sid: &str) -> Result<Option<LimitDef>> {
        self.get("GetItem(limit)", &Key::limit_by_sid(account_sid, sid), true)
            .await?
            .map(from_item::<LimitItem, _>)
            .transpose()
    }

    async fn update_limit(&self, def: &LimitDef) -> Result<()> {
        // The name is immutable: the NAME item must still be this limit's.
        let same_sid = Expr::default().name(attr::SID).value(":sid", s(&def.sid));
        let tx = vec![
            self.put(
                to_item(&LimitItem::new(Key::limit_by_name(&def.account_sid, &def.name), def))?,
                "#sid = :sid",
                same_sid.clone(),
            )?,
            self.put(
                to_item(&LimitItem::new(Key::limit_by_sid(&def.account_sid, &def.sid), def))?,
                "#sid = :sid",
                same_sid,
            )?,
        ];
        match self.transact("TransactWriteItems(update_limit)", tx).await {
            Ok(()) => Ok(()),
            Err(TransactError::Canceled(reasons)) if reasons.contains(&Reason::ConditionFailed) => {
                Err(Error::LimitNotFound)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_limit(&self, account_sid: &str, sid: &str) -> Result<Option<LimitDef>> {
        // Read the SID item for the name, then delete both items in one transaction, each
        // conditioned on still belonging to this sid.
        for _ in 0..MAX_DELETE_ROUNDS {
            let Some(def) = self.get_limit(account_sid, sid).await? else {
                return Ok(None);
            };
            let same_sid = Expr::default().name(attr::SID).value(":sid", s(&def.sid));
            let tx = vec![
                self.delete(&Key::limit_by_sid(account_sid, sid), Some("#sid = :sid"), same_sid.clone())?,
                self.delete(&Key::limit_by_name(account_sid, &def.name), Some("#sid = :sid"), same_sid)?,
            ];
            match self.transact("TransactWriteItems(delete_limit)", tx).await {
                Ok(()) => return Ok(Some(def)),
                Err(TransactError::Canceled(_)) => continue,
                Err(TransactError::Other(e)) => return Err(e),
            }
        }
        Err(Error::Contended)
    }

    async fn list_limits(&self, account_sid: &str) -> Result<Vec<LimitDef>> {
        let items = self.query_prefix("Query(limits)", Key::limits_partition(account_sid), LIMIT_NAME_PREFIX).await?;
        let mut defs = items.into_iter().map(from_item::<LimitItem, LimitDef>).collect::<Result<Vec<_>>>()?;
        defs.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then_with(|| a.sid.cmp(&b.sid)));
        Ok(defs)
    }
}
