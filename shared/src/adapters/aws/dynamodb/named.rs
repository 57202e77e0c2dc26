//! Definitions kept twice in one partition, by name (unique) and by sid, always written
//! together: limits and workflows (docs/data-model.md, "Limits" and "Workflows").

use super::{
    errors::Reason,
    items::{attr, Item, Key},
    s, DynamoStore, Expr, TransactError,
};
use crate::domain::error::{Error, Result};

/// Read-then-transact rounds of a delete.
const MAX_DELETE_ROUNDS: u32 = 4;

/// One definition's two items and their keys.
pub(super) struct Named {
    pub sid: String,
    pub by_name: Key,
    pub by_sid: Key,
}

impl DynamoStore {
    /// Both items, only if neither exists: `exists` when the name is taken.
    pub(super) async fn create_named(
        &self,
        op: &'static str,
        name_item: Item,
        sid_item: Item,
        exists: Error,
    ) -> Result<()> {
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
    pub(super) async fn update_named(
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
    pub(super) async fn delete_named<T, F, Fut>(&self, op: &'static str, read: F) -> Result<Option<T>>
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
