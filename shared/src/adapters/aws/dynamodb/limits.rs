//! Limit definitions on DynamoDB (docs/data-model.md, "Limits"): one item by name (unique
//! names) and one by sid, always written together.

use async_trait::async_trait;

use super::{
    errors::Reason,
    items::{attr, from_item, to_item, Key, LimitItem, LIMIT_NAME_PREFIX},
    s, DynamoStore, Expr, TransactError,
};
use crate::{
    domain::{
        error::{Error, Result},
        limits::LimitDef,
    },
    ports::LimitStore,
};

/// Read-then-transact rounds of a limit delete.
const MAX_DELETE_ROUNDS: u32 = 4;

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
