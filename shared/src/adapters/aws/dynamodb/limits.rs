//! Limit definitions on DynamoDB (docs/data-model.md, "Limits"): one item by name (unique
//! names) and one by sid, always written together (`named`).

use async_trait::async_trait;

use super::{
    items::{from_item, to_item, Key, LimitItem, LIMIT_NAME_PREFIX},
    named::Named,
    DynamoStore,
};
use crate::{
    domain::{
        error::{Error, Result},
        limits::LimitDef,
    },
    ports::LimitStore,
};

fn items(def: &LimitDef) -> Result<(super::items::Item, super::items::Item)> {
    Ok((
        to_item(&LimitItem::new(Key::limit_by_name(&def.account_sid, &def.name), def))?,
        to_item(&LimitItem::new(Key::limit_by_sid(&def.account_sid, &def.sid), def))?,
    ))
}

#[async_trait]
impl LimitStore for DynamoStore {
    async fn create_limit(&self, def: &LimitDef) -> Result<()> {
        let (by_name, by_sid) = items(def)?;
        self.create_named("TransactWriteItems(create_limit)", by_name, by_sid, Error::LimitNameExists).await
    }

    async fn get_limit(&self, account_sid: &str, sid: &str) -> Result<Option<LimitDef>> {
        self.get("GetItem(limit)", &Key::limit_by_sid(account_sid, sid), true)
            .await?
            .map(from_item::<LimitItem, _>)
            .transpose()
    }

    async fn update_limit(&self, def: &LimitDef) -> Result<()> {
        let (by_name, by_sid) = items(def)?;
        self.update_named("TransactWriteItems(update_limit)", &def.sid, by_name, by_sid, Error::LimitNotFound).await
    }

    async fn delete_limit(&self, account_sid: &str, sid: &str) -> Result<Option<LimitDef>> {
        self.delete_named("TransactWriteItems(delete_limit)", || async {
            Ok(self.get_limit(account_sid, sid).await?.map(|def| {
                let named = Named {
                    sid: def.sid.clone(),
                    by_name: Key::limit_by_name(account_sid, &def.name),
                    by_sid: Key::limit_by_sid(account_sid, sid),
                };
                (def, named)
            }))
        })
        .await
    }

    async fn list_limits(&self, account_sid: &str) -> Result<Vec<LimitDef>> {
        let items = self.query_prefix("Query(limits)", Key::limits_partition(account_sid), LIMIT_NAME_PREFIX).await?;
        let mut defs = items.into_iter().map(from_item::<LimitItem, LimitDef>).collect::<Result<Vec<_>>>()?;
        defs.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then_with(|| a.sid.cmp(&b.sid)));
        Ok(defs)
    }
}
