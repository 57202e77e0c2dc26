//! Accounts on DynamoDB (docs/data-model.md, "Accounts"), with a short per-process cache.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{
    errors::Reason,
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
/// How long a process remembers that a sid names no account (never longer than the cache's
/// TTL, so none when accounts are not cached): requests repeating an unknown sid cost one
/// GetItem per this long instead of one each. Short, because an account created by another
/// process (`twofa-admin`) is refused by a process that remembered its miss until it lapses;
/// one created by this process (`put_account`) is usable at once.
const UNKNOWN_ACCOUNT_TTL: Duration = Duration::from_secs(5);
/// At most this many remembered unknown sids (~1 MB), so a flood of random sids cannot grow
/// the process: when full, the lapsed ones go, and all of them if that frees less than half.
const UNKNOWN_ACCOUNT_MAX: usize = 10_000;

#[derive(Default)]
pub(super) struct AccountCache {
    pub(super) ttl: Duration,
    pub(super) entries: std::sync::Mutex<HashMap<String, (std::time::Instant, Account)>>,
    pub(super) unknown: std::sync::Mutex<Unknown>,
}

/// Sids read from DynamoDB and found to name no account, with when.
#[derive(Default)]
pub(super) struct Unknown {
    entries: HashMap<String, Instant>,
    /// Accounts this process created so far: a read that began before one of them may have
    /// missed it, so its miss is not remembered.
    created: u64,
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

    fn unknown_ttl(&self) -> Duration {
        self.ttl.min(UNKNOWN_ACCOUNT_TTL)
    }

    /// `None` when `sid` was found to name no account less than `unknown_ttl` ago; else a
    /// mark to give `remember_unknown` after reading it.
    fn unknown_mark(&self, sid: &str) -> Option<u64> {
        let Ok(unknown) = self.unknown.lock() else { return Some(u64::MAX) };
        match unknown.entries.get(sid) {
            Some(at) if at.elapsed() < self.unknown_ttl() => None,
            _ => Some(unknown.created),
        }
    }

    /// Remember that `sid` names no account, unless this process created an account since
    /// `mark` (its read may have begun before that account was written).
    fn remember_unknown(&self, sid: &str, mark: u64) {
        let ttl = self.unknown_ttl();
        if ttl.is_zero() {
            return;
        }
        let Ok(mut unknown) = self.unknown.lock() else { return };
        if unknown.created != mark {
            return;
        }
        if unknown.entries.len() >= UNKNOWN_ACCOUNT_MAX {
            unknown.entries.retain(|_, at| at.elapsed() < ttl);
            if unknown.entries.len() >= UNKNOWN_ACCOUNT_MAX / 2 {
                unknown.entries.clear();
            }
        }
        unknown.entries.insert(sid.to_owned(), Instant::now());
    }

    /// An account `sid` was (or may have been) created by this process: no longer unknown.
    fn created(&self, sid: &str) {
        if let Ok(mut unknown) = self.unknown.lock() {
            unknown.created = unknown.created.wrapping_add(1);
            unknown.entries.remove(sid);
        }
    }
}

#[async_trait]
impl AccountStore for DynamoStore {
    async fn get_account(&self, sid: &str) -> Result<Option<Account>> {
        if let Some(account) = self.accounts.get(sid) {
            return Ok(Some(account));
        }
        // An unknown sid is remembered briefly too, so repeating it is not a read each time.
        let Some(mark) = self.accounts.unknown_mark(sid) else { return Ok(None) };
        // Eventually consistent: accounts are written once and read on every request.
        let account: Option<Account> = self
            .get("GetItem(account)", &Key::account(sid), false)
            .await?
            .map(from_item::<AccountItem, _>)
            .transpose()?;
        match &account {
            Some(a) => self.accounts.put(a),
            None => self.accounts.remember_unknown(sid, mark),
        }
        Ok(account)
    }

    async fn get_account_fresh(&self, sid: &str) -> Result<Option<Account>> {
        let account: Option<Account> = self
            .get("GetItem(account)", &Key::account(sid), true)
            .await?
            .map(from_item::<AccountItem, _>)
            .transpose()?;
        // What is stored now is what this process caches from now on.
        match &account {
            Some(a) => self.accounts.put(a),
            None => self.accounts.forget(sid),
        }
        Ok(account)
    }

    async fn put_account(&self, account: &Account) -> Result<()> {
        let result = self.create_account(account).await;
        // Whatever the answer (a timeout may have written it; `Contended`: it exists), this
        // process no longer takes the sid for unknown.
        self.accounts.created(&account.sid);
        result
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
        // A new version of the policy, written only over the one read (absent: 0, accounts
        // stored before versions), so a change from a stale read cannot undo another one.
        let read = account.policy_version;
        set.push("#policy_version = :next_version".to_owned());
        expr = expr.name("policy_version").value(":next_version", number(read.saturating_add(1)));
        let mut update = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            update = format!("{update} REMOVE {}", remove.join(", "));
        }
        let own_condition = if read == 0 {
            "attribute_exists(pk) AND (attribute_not_exists(#policy_version) OR #policy_version = :read_version)"
        } else {
            "#policy_version = :read_version"
        };
        let own = self.update(
            &Key::account(&account.sid),
            &update,
            Some(own_condition),
            expr.clone().value(":read_version", number(read)),
        )?;
        // The account and its copies under its ancestors, together (the copies carry the
        // version too, as they carry the rest of the account).
        let copies = account.ancestors.iter().map(|a| {
            self.update(&Key::sub_account(a, &account.sid), &update, Some("attribute_exists(pk)"), expr.clone())
        });
        let tx = std::iter::once(Ok(own)).chain(copies).collect::<Result<Vec<_>>>()?;
        let result = self.transact("TransactWriteItems(set_policy)", tx).await;
        self.accounts.forget(&account.sid);
        match result {
            Ok(()) => Ok(()),
            // The account's own condition: gone, or its policy changed since it was read.
            Err(TransactError::Canceled(reasons)) if reasons.first() == Some(&Reason::ConditionFailed) => {
                match self.get_account_fresh(&account.sid).await? {
                    None => Err(Error::NotFound),
                    Some(_) => Err(Error::Contended),
                }
            }
            // A copy missing under an ancestor: the tree is not whole.
            Err(TransactError::Canceled(reasons)) if reasons.contains(&Reason::ConditionFailed) => Err(Error::NotFound),
            Err(e) => Err(e.into()),
        }
    }
}

fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

impl DynamoStore {
    /// The account's item, and its copies under its ancestors, if it does not exist yet.
    async fn create_account(&self, account: &Account) -> Result<()> {
        let item = to_item(&AccountItem::new(Key::account(&account.sid), account))?;
        if account.ancestors.is_empty() {
            return self.put_new("PutItem(account)", item).await;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> AccountCache {
        AccountCache { ttl: ACCOUNT_CACHE_TTL, ..Default::default() }
    }

    #[test]
    fn a_flood_of_unknown_sids_stays_within_the_bound() {
        // Given a cache remembering unknown sids
        let cache = cache();
        // When many more distinct unknown sids than the bound are remembered
        for i in 0..3 * UNKNOWN_ACCOUNT_MAX {
            let sid = format!("AC{i:032x}");
            let mark = cache.unknown_mark(&sid).expect("not remembered yet");
            cache.remember_unknown(&sid, mark);
            // Then it never holds more than the bound
            assert!(cache.unknown.lock().unwrap().entries.len() <= UNKNOWN_ACCOUNT_MAX);
        }
        // And the latest one is still remembered
        assert_eq!(cache.unknown_mark(&format!("AC{:032x}", 3 * UNKNOWN_ACCOUNT_MAX - 1)), None);
    }

    #[test]
    fn a_miss_read_before_a_creation_is_not_remembered() {
        // Given a read of an unknown sid that began before this process created that account
        let cache = cache();
        let mark = cache.unknown_mark("ACx").unwrap();
        cache.created("ACx");
        // When its miss comes back
        cache.remember_unknown("ACx", mark);
        // Then the sid is not taken for unknown
        assert!(cache.unknown_mark("ACx").is_some());
    }

    #[test]
    fn nothing_is_remembered_when_accounts_are_not_cached() {
        // Given a cache with a zero TTL
        let cache = AccountCache::default();
        // When an unknown sid is read
        let mark = cache.unknown_mark("ACx").unwrap();
        cache.remember_unknown("ACx", mark);
        // Then the next request reads it again
        assert!(cache.unknown_mark("ACx").is_some());
    }
}
