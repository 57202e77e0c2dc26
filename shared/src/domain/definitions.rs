//! Named definitions an account keeps (limits, workflows): found by sid within an account or
//! its tree, listed with filters, sorting and pages, and the emails their answers show. One
//! implementation for both, through `Definition`.

use std::{cmp::Ordering, collections::HashMap};

use async_trait::async_trait;
use futures::{stream, StreamExt, TryStreamExt};

use super::{
    account::Account,
    error::{Error, Result},
    ids,
    time::Millis,
};
use crate::ports::{Deps, Store};

/// How many store reads run at once when a request spans several accounts.
const FAN_OUT: usize = 8;
pub const MAX_DESCRIPTION_LEN: usize = 1024;
pub const DEFAULT_PAGE_SIZE: u64 = 10;
pub const MAX_PAGE_SIZE: u64 = 1000;

/// A definition stored under the account it applies to, created by it or by an ancestor.
#[async_trait]
pub trait Definition: Sized + Clone + Send + Sync {
    /// Its sids' prefix (`LM`, `WF`).
    const PREFIX: &'static str;
    /// What an unknown or foreign sid answers.
    fn not_found() -> Error;
    fn sid(&self) -> &str;
    fn name(&self) -> &str;
    fn account_sid(&self) -> &str;
    fn created_by(&self) -> &str;
    fn created_ms(&self) -> Millis;
    async fn load(store: &dyn Store, account_sid: &str, sid: &str) -> Result<Option<Self>>;
    async fn load_all(store: &dyn Store, account_sid: &str) -> Result<Vec<Self>>;
    /// Delete it; the deleted definition, or None when it was already gone.
    async fn remove(store: &dyn Store, account_sid: &str, sid: &str) -> Result<Option<Self>>;
}

/// Where a definition sid is looked for.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Only this account (the request named it with `accountSid`).
    Account(&'a Account),
    /// This account, then every account below it (a parent may manage its sub-accounts'
    /// definitions by sid alone).
    Tree(&'a Account),
}

/// The definition `sid` within `scope`; unknown, malformed and foreign sids are all
/// `T::not_found()`.
pub async fn find<T: Definition>(deps: &Deps, scope: Scope<'_>, sid: &str) -> Result<T> {
    if !ids::is_sid(T::PREFIX, sid) {
        return Err(T::not_found());
    }
    let root = match scope {
        Scope::Account(a) | Scope::Tree(a) => a,
    };
    let store = deps.store.as_ref();
    if let Some(def) = T::load(store, &root.sid, sid).await? {
        return Ok(def);
    }
    if let Scope::Account(_) = scope {
        return Err(T::not_found());
    }
    let subs = store.list_sub_accounts(&root.sid).await?;
    let mut found =
        stream::iter(subs).map(|a| async move { T::load(store, &a.sid, sid).await }).buffer_unordered(FAN_OUT);
    while let Some(r) = found.next().await {
        if let Some(def) = r? {
            return Ok(def);
        }
    }
    Err(T::not_found())
}

/// Delete the definition `sid` within `scope` and answer it (as `find` finds it). OTPs already
/// sent with it keep their own copy.
pub async fn delete<T: Definition>(deps: &Deps, scope: Scope<'_>, sid: &str) -> Result<T> {
    let def: T = find(deps, scope, sid).await?;
    T::remove(deps.store.as_ref(), def.account_sid(), def.sid()).await?.ok_or_else(T::not_found)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Name,
    DateCreated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Sort { key: SortKey::DateCreated, descending: false }
    }
}

impl Sort {
    /// `name`, `dateCreated`, optionally `:asc` or `:desc` (case-insensitive).
    pub fn parse(s: &str) -> Option<Sort> {
        let (key, dir) = s.trim().split_once(':').unwrap_or((s.trim(), "asc"));
        let key = match key.to_ascii_lowercase().as_str() {
            "name" => SortKey::Name,
            "datecreated" => SortKey::DateCreated,
            _ => return None,
        };
        let descending = match dir.to_ascii_lowercase().as_str() {
            "asc" | "" => false,
            "desc" => true,
            _ => return None,
        };
        Some(Sort { key, descending })
    }
}

#[derive(Debug, Clone)]
pub struct ListQuery {
    /// From 0.
    pub page: u64,
    pub page_size: u64,
    /// Partial, case-insensitive match on the name.
    pub name: Option<String>,
    /// Created at or after (inclusive).
    pub start_ms: Option<Millis>,
    /// Created at or before (inclusive).
    pub end_ms: Option<Millis>,
    pub sort: Sort,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            page: 0,
            page_size: DEFAULT_PAGE_SIZE,
            name: None,
            start_ms: None,
            end_ms: None,
            sort: Sort::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Matches over all pages.
    pub total: u64,
}

/// The definitions of `root`, and of every account below it when `with_sub_accounts`,
/// filtered, sorted and cut to one page.
pub async fn list<T: Definition>(
    deps: &Deps,
    root: &Account,
    with_sub_accounts: bool,
    q: &ListQuery,
) -> Result<Page<T>> {
    let mut accounts = vec![root.sid.clone()];
    if with_sub_accounts {
        accounts.extend(deps.store.list_sub_accounts(&root.sid).await?.into_iter().map(|a| a.sid));
    }
    let store = deps.store.as_ref();
    let per_account: Vec<Vec<T>> = stream::iter(accounts)
        .map(|sid| async move { T::load_all(store, &sid).await })
        .buffered(FAN_OUT)
        .try_collect()
        .await?;
    let needle = q.name.as_deref().map(str::to_lowercase);
    let mut all: Vec<T> = per_account
        .into_iter()
        .flatten()
        .filter(|d| needle.as_deref().is_none_or(|n| d.name().to_lowercase().contains(n)))
        .filter(|d| q.start_ms.is_none_or(|s| d.created_ms() >= s))
        .filter(|d| q.end_ms.is_none_or(|e| d.created_ms() <= e))
        .collect();
    all.sort_by(|a, b| {
        let o = compare(q.sort.key, a, b);
        if q.sort.descending {
            o.reverse()
        } else {
            o
        }
    });
    let total = all.len() as u64;
    let start = q.page.saturating_mul(q.page_size);
    let items = all
        .into_iter()
        .skip(usize::try_from(start).unwrap_or(usize::MAX))
        .take(usize::try_from(q.page_size).unwrap_or(usize::MAX))
        .collect();
    Ok(Page { items, total })
}

/// A total order (ties broken by date, then sid) so pages never overlap.
fn compare<T: Definition>(key: SortKey, a: &T, b: &T) -> Ordering {
    let by_date = a.created_ms().cmp(&b.created_ms()).then_with(|| a.sid().cmp(b.sid()));
    match key {
        SortKey::DateCreated => by_date,
        SortKey::Name => {
            a.name().to_lowercase().cmp(&b.name().to_lowercase()).then_with(|| a.name().cmp(b.name())).then(by_date)
        }
    }
}

/// The email of every account the definitions mention (creator and target), reusing the accounts
/// the request already holds. An account that no longer exists has no email.
pub async fn emails<T: Definition>(
    deps: &Deps,
    known: &[&Account],
    defs: &[T],
) -> Result<HashMap<String, Option<String>>> {
    let mut out: HashMap<String, Option<String>> = known.iter().map(|a| (a.sid.clone(), a.email.clone())).collect();
    let mut missing: Vec<String> = defs
        .iter()
        .flat_map(|d| [d.account_sid().to_owned(), d.created_by().to_owned()])
        .filter(|sid| !out.contains_key(sid))
        .collect();
    missing.sort();
    missing.dedup();
    let fetched: Vec<(String, Option<String>)> = stream::iter(missing)
        .map(|sid| async move {
            let account = deps.store.get_account(&sid).await?;
            Ok::<_, Error>((sid, account.and_then(|a| a.email)))
        })
        .buffer_unordered(FAN_OUT)
        .try_collect()
        .await?;
    out.extend(fetched);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::limits::LimitDef;

    #[test]
    fn sort_by_parses_attribute_and_direction() {
        assert_eq!(Sort::parse("name"), Some(Sort { key: SortKey::Name, descending: false }));
        assert_eq!(Sort::parse("Name:desc"), Some(Sort { key: SortKey::Name, descending: true }));
        assert_eq!(Sort::parse("dateCreated:asc"), Some(Sort { key: SortKey::DateCreated, descending: false }));
        assert_eq!(Sort::parse("datecreated:DESC"), Some(Sort { key: SortKey::DateCreated, descending: true }));
        assert_eq!(Sort::parse("size"), None);
        assert_eq!(Sort::parse("name:sideways"), None);
    }

    fn def(name: &str, created_ms: Millis, sid: &str) -> LimitDef {
        LimitDef {
            sid: sid.into(),
            account_sid: "AC1".into(),
            created_by: "AC1".into(),
            name: name.into(),
            buckets: vec![],
            buckets_json: String::new(),
            description: None,
            created_ms,
            updated_ms: created_ms,
        }
    }

    #[test]
    fn name_order_ignores_case_and_ties_fall_back_to_date() {
        let a = def("alpha", 5, "LM1");
        let b = def("Beta", 1, "LM2");
        let b2 = def("Beta", 2, "LM0");
        assert_eq!(compare::<LimitDef>(SortKey::Name, &a, &b), Ordering::Less);
        assert_eq!(compare(SortKey::Name, &b, &b2), Ordering::Less);
        assert_eq!(compare(SortKey::DateCreated, &b, &a), Ordering::Less);
    }
}
