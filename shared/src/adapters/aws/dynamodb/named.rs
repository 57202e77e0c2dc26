//! Definitions kept twice in one partition, by name (unique) and by sid, always written
//! together: limits and workflows (docs/data-model.md, "Limits" and "Workflows").

use super::{
    errors::Reason,
    items::{attr, from_item, to_item, DefinitionItem, Item, Key, StoredDefinition, LIMIT_NAME_PREFIX},
    s, DynamoStore, Expr, TransactError,
};
use crate::domain::error::{Error, Result};

/// Read-then-transact rounds of a delete.
const MAX_DELETE_ROUNDS: u32 = 4;

/// One definition's two items and their keys.
struct Named {
    pub sid: String,
    pub by_name: Key,
    pub by_sid: Key,
}

/// A definition's two items: by name and by sid.
fn items_of<T: StoredDefinition>(def: &T) -> Result<(Item, Item)> {
    let h = def.header();
    Ok((
        to_item(&DefinitionItem::new(T::by_name(&h.account_sid, &h.name), def))?,
        to_item(&DefinitionItem::new(T::by_sid(&h.account_sid, &h.sid), def))?,
    ))
}

fn def_of<T>(item: Item) -> Result<T>
where
    T: StoredDefinition + TryFrom<DefinitionItem<T::Body>, Error = Error>,
{
    from_item::<DefinitionItem<T::Body>, T>(item)
}

/// The store's operations on definitions, one implementation for limits and workflows (the
/// ports `LimitStore` and `WorkflowStore` are these, by name).
impl DynamoStore {
    pub(super) async fn create_def<T: StoredDefinition>(&self, def: &T) -> Result<()> {
        let (by_name, by_sid) = items_of(def)?;
        self.create_named(T::CREATE, by_name, by_sid, T::name_taken()).await
    }

    pub(super) async fn get_def<T>(&self, account_sid: &str, sid: &str) -> Result<Option<T>>
    where
        T: StoredDefinition + TryFrom<DefinitionItem<T::Body>, Error = Error>,
    {
        self.get(T::GET, &T::by_sid(account_sid, sid), true).await?.map(def_of).transpose()
    }

    pub(super) async fn get_def_by_name<T>(&self, account_sid: &str, name: &str) -> Result<Option<T>>
    where
        T: StoredDefinition + TryFrom<DefinitionItem<T::Body>, Error = Error>,
    {
        self.get(T::GET_BY_NAME, &T::by_name(account_sid, name), true).await?.map(def_of).transpose()
    }

    pub(super) async fn update_def<T: StoredDefinition>(&self, def: &T) -> Result<()> {
        let (by_name, by_sid) = items_of(def)?;
        self.update_named(T::UPDATE, &def.header().sid, by_name, by_sid, T::not_found()).await
    }

    pub(super) async fn delete_def<T>(&self, account_sid: &str, sid: &str) -> Result<Option<T>>
    where
        T: StoredDefinition + TryFrom<DefinitionItem<T::Body>, Error = Error>,
    {
        self.delete_named(T::DELETE, || async {
            Ok(self.get_def::<T>(account_sid, sid).await?.map(|def| {
                let named = Named {
                    sid: sid.to_owned(),
                    by_name: T::by_name(account_sid, &def.header().name),
                    by_sid: T::by_sid(account_sid, sid),
                };
                (def, named)
            }))
        })
        .await
    }

    /// Every definition of the account, oldest first.
    pub(super) async fn list_defs<T>(&self, account_sid: &str) -> Result<Vec<T>>
    where
        T: StoredDefinition + TryFrom<DefinitionItem<T::Body>, Error = Error>,
    {
        let items = self.query_prefix(T::LIST, T::partition(account_sid), LIMIT_NAME_PREFIX).await?;
        let mut defs = items.into_iter().map(def_of::<T>).collect::<Result<Vec<_>>>()?;
        defs.sort_by_cached_key(|d| {
            let h = d.header();
            (h.created_ms, h.sid)
        });
        Ok(defs)
    }

    /// Both items, only if neither exists: `exists` when the name is taken.
    async fn create_named(&self, op: &'static str, name_item: Item, sid_item: Item, exists: Error) -> Result<()> {
        let tx = vec![
            self.put(name_item, "attribute_not_exists(pk)", Expr::default())?,
            self.put(sid_item, "attribute_not_exists(pk)", Expr::default())?,
        ];
        match self.transact(op, tx).await {
            Ok(()) => Ok(()),
            Err(TransactError::Canceled(reasons)) if reasons.first() == Some(&Reason::ConditionFailed) => Err(exists),
            Err(e) => Err(e.into()),
        }
    }

    /// Replace both items, only while both are still this sid's (the name is immutable): `gone`
    /// when it was deleted meanwhile.
    async fn update_named(
        &self,
        op: &'static str,
        sid: &str,
        name_item: Item,
        sid_item: Item,
        gone: Error,
    ) -> Result<()> {
        let same_sid = Expr::default().name(attr::SID).value(":sid", s(sid));
        let tx =
            vec![self.put(name_item, "#sid = :sid", same_sid.clone())?, self.put(sid_item, "#sid = :sid", same_sid)?];
        match self.transact(op, tx).await {
            Ok(()) => Ok(()),
            Err(TransactError::Canceled(reasons)) if reasons.contains(&Reason::ConditionFailed) => Err(gone),
            Err(e) => Err(e.into()),
        }
    }

    /// Read the definition (`read`, for its name), then delete both items in one transaction,
    /// each conditioned on still belonging to its sid; again if a concurrent change got there
    /// first. The deleted definition, or None if there was none.
    async fn delete_named<T, F, Fut>(&self, op: &'static str, read: F) -> Result<Option<T>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Option<(T, Named)>>>,
    {
        for _ in 0..MAX_DELETE_ROUNDS {
            let Some((def, named)) = read().await? else {
                return Ok(None);
            };
            let same_sid = Expr::default().name(attr::SID).value(":sid", s(&named.sid));
            let tx = vec![
                self.delete(&named.by_sid, Some("#sid = :sid"), same_sid.clone())?,
                self.delete(&named.by_name, Some("#sid = :sid"), same_sid)?,
            ];
            match self.transact(op, tx).await {
                Ok(()) => return Ok(Some(def)),
                Err(TransactError::Canceled(_)) => continue,
                Err(TransactError::Other(e)) => return Err(e),
            }
        }
        Err(Error::Contended)
    }
}
