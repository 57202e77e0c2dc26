//! Limit administration: create and update limits; find, list and delete are the generic
//! ones of `definitions`.
//!
//! A send looks its limits up by (acting account, name), so a limit is stored under the
//! account it applies to (its target, `LimitDef::account_sid`), whoever created it
//! (`LimitDef::created_by`). Names are unique per target account. A caller reaches the limits
//! of its own account and of every account below it; any other sid answers like an unknown one.

use async_trait::async_trait;

pub use super::definitions::{
    emails, find, list, ListQuery, Page, Scope, Sort, SortKey, DEFAULT_PAGE_SIZE, MAX_DESCRIPTION_LEN, MAX_PAGE_SIZE,
};
use super::{
    account::Account,
    definitions::Definition,
    error::{Error, Result},
    ids::{self, new_sid},
    limits::{is_valid_limit_name, Bucket, LimitDef},
    time::Millis,
};
use crate::ports::{Deps, Store};

#[async_trait]
impl Definition for LimitDef {
    const PREFIX: &'static str = ids::LIMIT;

    fn not_found() -> Error {
        Error::LimitNotFound
    }
    fn sid(&self) -> &str {
        &self.sid
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn account_sid(&self) -> &str {
        &self.account_sid
    }
    fn created_by(&self) -> &str {
        &self.created_by
    }
    fn created_ms(&self) -> Millis {
        self.created_ms
    }
    async fn load(store: &dyn Store, account_sid: &str, sid: &str) -> Result<Option<Self>> {
        store.get_limit(account_sid, sid).await
    }
    async fn load_all(store: &dyn Store, account_sid: &str) -> Result<Vec<Self>> {
        store.list_limits(account_sid).await
    }
    async fn remove(store: &dyn Store, account_sid: &str, sid: &str) -> Result<Option<Self>> {
        store.delete_limit(account_sid, sid).await
    }
}

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

pub async fn update(deps: &Deps, scope: Scope<'_>, sid: &str, change: LimitChange) -> Result<LimitDef> {
    if change.buckets.is_none() && change.description.is_none() {
        return Err(Error::invalid("buckets", "give buckets or description to change"));
    }
    let mut def: LimitDef = find(deps, scope, sid).await?;
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
