//! Limit administration: create, find, update, delete and list limits.
//!
//! A send looks its limits up by (acting account, name), so a limit is stored under the
//! account it applies to (its target, `LimitDef::account_sid`), whoever created it
//! (`LimitDef::created_by`). Names are unique per target account. A caller reaches the limits
//! of its own account and of every account below it; any other sid answers like an unknown one.

use std::{cmp::Ordering, collections::HashMap};

use futures::{stream, StreamExt, TryStreamExt};

use super::{
    account::Account,
    error::{Error, Result},
    ids::{self, new_sid},
    limits::{is_valid_limit_name, Bucket, LimitDef},
    time::Millis,
};
use crate::ports::Deps;

/// How many store reads run at once when a request spans several accounts.
const FAN_OUT: usize = 8;
pub const MAX_DESCRIPTION_LEN: usize = 1024;
pub const DEFAULT_PAGE_SIZE: u64 = 10;
pub const MAX_PAGE_SIZE: u64 = 1000;

/// A validated create request.
#[derive(Debug, Clone)]
pub struct NewLimit {
    pub name: String,
    pub buckets: Vec<Bucket>,
    /// The buckets as the client gave them (see `limits::parse_buckets`).
    pub buckets_json: String,
    pub description: Option<String>,
}

/// What an update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct LimitChange {
    /// A limit cannot be renamed; repeating its own name is accepted.
    pub name: Option<String>,
    pub buckets: Option<(Vec<Bucket>, String)>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
}

/// Where a limit sid is looked for.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Only this account (the request named it with `accountSid`).
    Account(&'a Account),
    /// This account, then every account below it (a parent may manage its sub-accounts'
    /// limits by sid alone).
    Tree(&'a Account),
}

pub async fn create(deps: &Deps, caller: &Account, target: &Account, new: NewLimit) -> Result<LimitDef> {
    if !is_valid_limit_name(&new.name) {
        return Err(Error::invalid("name", "must be 1 to 64 letters, digits, '_', '.' or '-'"));
    }
    let now = deps.clock.now_ms();
    let def = LimitDef {
        sid: new_sid(ids::LIMIT),
        account_sid: target.sid.clone(),
        created_by: caller.sid.clone(),
        name: new.name,
        buckets: new.buckets,
        buckets_json: new.buckets_json,
        description: new.description,
        created_ms: now,
        updated_ms: now,
    };
    deps.store.create_limit(&def).await?;
    Ok(def)
}

/// The limit `sid` within `scope`; unknown, malformed and foreign sids are all
/// `Error::LimitNotFound`.
pub async fn find(deps: &Deps, scope: Scope<'_>, sid: &str) -> Result<LimitDef> {
    if !ids::is_sid(ids::LIMIT, sid) {
        return Err(Error::LimitNotFound);
    }
    let root = match scope {
        Scope::Account(a) | Scope::Tree(a) => a,
    };
    if let Some(def) = deps.store.get_limit(&root.sid, sid).await? {
        return Ok(def);
    }
    if let Scope::Account(_) = scope {
        return Err(Error::LimitNotFound);
    }
    let subs = deps.store.list_sub_accounts(&root.sid).await?;
    let mut found =
        stream::iter(subs).map(|a| async move { deps.store.get_limit(&a.sid, sid).await }).buffer_unordered(FAN_OUT);
    while let Some(r) = found.next().await {
        if let Some(def) = r? {
            return Ok(def);
        }
    }
    Err(Error::LimitNotFound)
}

pub async fn update(deps: &Deps, scope: Scope<'_>, sid: &str, change: LimitChange) -> Result<LimitDef> {
    if change.buckets.is_none() && change.description.is_none() {
        return Err(Error::invalid("buckets", "give buckets or description to change"));
    }
    let mut def = find(deps, scope, sid).await?;
    if change.name.as_ref().is_some_and(|n| n != &def.name) {
        return Err(Error::invalid("name", "a limit cannot be renamed; create a new one"));
    }
    if let Some((buckets, json)) = change.buckets {
        def.buckets = buckets;
        def.buckets_json = json;
    }
    if let Some(description) = change.description {
        def.description = description;
    }
    def.updated_ms = deps.clock.now_ms().max(def.created_ms);
    deps.store.update_limit(&def).await?;
    Ok(def)
}

/// Delete and answer the deleted limit.
pub async fn delete(deps: &Deps, scope: Scope<'_>, sid: &str) -> Result<LimitDef> {
    let def = find(deps, scope, sid).await?;
    deps.store.delete_limit(&def.account_sid, &def.sid).await?.ok_or(Error::LimitNotFound)
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
pub struct LimitPage {
    pub items: Vec<LimitDef>,
    /// Matches over all pages.
    pub total: u64,
}

/// The limits of `root`, and of every account below it when `with_sub_accounts`, filtered,
/// sorted and cut to one page.
pub async fn list(deps: &Deps, root: &Account, with_sub_accounts: bool, q: &ListQuery) -> Result<LimitPage> {
    let mut accounts = vec![root.sid.clone()];
    if with_sub_accounts {
        accounts.extend(deps.store.list_sub_accounts(&root.sid).await?.into_iter().map(|a| a.sid));
    }
    let per_account: Vec<Vec<LimitDef>> = stream::iter(accounts)
        .map(|sid| async move { deps.store.list_limits(&sid).await })
        .buffered(FAN_OUT)
        .try_collect()
        .await?;
    let needle = q.name.as_deref().map(str::to_lowercase);
    let mut all: Vec<LimitDef> = per_account
        .into_iter()
        .flatten()
        .filter(|d| needle.as_deref().is_none_or(|n| d.name.to_lowercase().contains(n)))
        .filter(|d| q.start_ms.is_none_or(|s| d.created_ms >= s))
        .filter(|d| q.end_ms.is_none_or(|e| d.created_ms <= e))
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
    Ok(LimitPage { items, total })
}

/// A total order (ties broken by date, then sid) so pages never overlap.
fn compare(key: SortKey, a: &LimitDef, b: &LimitDef) -> Ordering {
    let by_date = a.created_ms.cmp(&b.created_ms).then_with(|| a.sid.cmp(&b.sid));
    match key {
        SortKey::DateCreated => by_date,
        SortKey::Name => {
            a.name.to_lowercase().cmp(&b.name.to_lowercase()).then_with(|| a.name.cmp(&b.name)).then(by_date)
        }
    }
}

/// The email of every account the limits mention (creator and target), reusing the accounts
/// the request already holds. An account that no longer exists has no email.
pub async fn emails(deps: &Deps, known: &[&Account], defs: &[LimitDef]) -> Result<HashMap<String, Option<String>>> {
    let mut out: HashMap<String, Option<String>> = known.iter().map(|a| (a.sid.clone(), a.email.clone())).collect();
    let mut missing: Vec<String> = defs
        .iter()
        .flat_map(|d| [d.account_sid.clone(), d.created_by.clone()])
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
        assert_eq!(compare(SortKey::Name, &a, &b), Ordering::Less);
        assert_eq!(compare(SortKey::Name, &b, &b2), Ordering::Less);
        assert_eq!(compare(SortKey::DateCreated, &b, &a), Ordering::Less);
    }
}
