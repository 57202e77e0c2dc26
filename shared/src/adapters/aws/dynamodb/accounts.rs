//! Accounts on DynamoDB (docs/data-model.md, "Accounts"), with a short per-process cache.

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;

use super::{
    errors::{self, Reason},
    items::{from_item, to_item, AccountItem, Key, PolicyItem, SUB_ACCOUNT_PREFIX},
    DynamoStore, Expr, TransactError,
};
use crate::{
    domain::{
        account::Account,
        error::{Error, Result},
        policy::AccountPolicy,
    },
    ports::AccountStore,
};

/// How long a process keeps an account it read. Accounts are read on every request (auth) and
/// change rarely; caching them makes verify one round trip on a warm Lambda. The price: a
/// suspension or token change takes up to this long to reach every process.
pub const ACCOUNT_CACHE_TTL: Duration = Duration::from_secs(30);
/// Beyond this many cached accounts the cache starts afresh (a Lambda serves few accounts).
const ACCOUNT_CACHE_MAX: usize = 10_000;

#[derive(Default)]
pub(super) struct AccountCache {
    pub(super) ttl: Duration,
    pub(super) entries: std::sync::Mutex<HashMap<String, (std::time::Instant, Account)>>,
}

impl AccountCache {
    fn get(&self, sid: &str) -> Option<Account> {
        let entries = self.entries.lock().ok()?;
        let (at, account) = entries.get(sid)?;
        (at.elapsed() < self.ttl).then(|| account.clone())
    }

    /// Drop `sid` from this process's cache (after this process changed it).
    pub(super) fn forget(&self, sid: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(sid);
        }
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

    async fn set_policy(&self, account: &Account, policy: &AccountPolicy) -> Result<()> {
        // The policy's attributes: those it has are set, the others removed (back to default).
        let values = to_item(&PolicyItem::from(policy))?;
        let mut expr = Expr::default();
        let (mut set, mut remove) = (vec![], vec![]);
        for name in PolicyItem::ATTRIBUTES {
            expr = expr.name(name);
            match values.get(name) {
                Some(v) => {
                    set.push(format!("#{name} = :{name}"));
                    expr = expr.value(&format!(":{name}"), v.clone());
                }
                None => remove.push(format!("#{name}")),
            }
        }
        let mut update = String::new();
        if !set.is_empty() {
            update = format!("SET {}", set.join(", "));
        }
        if !remove.is_empty() {
            update = format!("{update} REMOVE {}", remove.join(", "));
        }
        // The account and its copies under its ancestors, together.
        let keys = std::iter::once(Key::account(&account.sid))
            .chain(account.ancestors.iter().map(|a| Key::sub_account(a, &account.sid)));
        let tx = keys
            .map(|k| self.update(&k, update.trim(), Some("attribute_exists(pk)"), expr.clone()))
            .collect::<Result<Vec<_>>>()?;
        let result = self.transact("TransactWriteItems(set_policy)", tx).await;
        self.accounts.forget(&account.sid);
        match result {
            Ok(()) => Ok(()),
            Err(TransactError::Canceled(reasons)) if reasons.contains(&Reason::ConditionFailed) => Err(Error::NotFound),
            Err(e) => Err(e.into()),
        }
    }
}
