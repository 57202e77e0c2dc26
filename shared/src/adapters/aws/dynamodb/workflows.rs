//! Workflow definitions on DynamoDB (docs/data-model.md, "Workflows"): stored like limits, by
//! name and by sid in the account's `WF#` partition, always written together (`named`).

use async_trait::async_trait;

use super::{
    items::{from_item, to_item, Item, Key, WorkflowItem, LIMIT_NAME_PREFIX},
    named::Named,
    DynamoStore,
};
use crate::{
    domain::{
        error::{Error, Result},
        workflows::WorkflowDef,
    },
    ports::WorkflowStore,
};

fn items(def: &WorkflowDef) -> Result<(Item, Item)> {
    Ok((
        to_item(&WorkflowItem::new(Key::workflow_by_name(&def.account_sid, &def.name), def))?,
        to_item(&WorkflowItem::new(Key::workflow_by_sid(&def.account_sid, &def.sid), def))?,
    ))
}

#[async_trait]
impl WorkflowStore for DynamoStore {
    async fn create_workflow(&self, def: &WorkflowDef) -> Result<()> {
        let (by_name, by_sid) = items(def)?;
        self.create_named("TransactWriteItems(create_workflow)", by_name, by_sid, Error::WorkflowNameExists).await
    }

    async fn get_workflow(&self, account_sid: &str, sid: &str) -> Result<Option<WorkflowDef>> {
        self.get("GetItem(workflow)", &Key::workflow_by_sid(account_sid, sid), true)
            .await?
            .map(from_item::<WorkflowItem, _>)
            .transpose()
    }

    async fn get_workflow_by_name(&self, account_sid: &str, name: &str) -> Result<Option<WorkflowDef>> {
        self.get("GetItem(workflow by name)", &Key::workflow_by_name(account_sid, name), true)
            .await?
            .map(from_item::<WorkflowItem, _>)
            .transpose()
    }

    async fn update_workflow(&self, def: &WorkflowDef) -> Result<()> {
        let (by_name, by_sid) = items(def)?;
        self.update_named("TransactWriteItems(update_workflow)", &def.sid, by_name, by_sid, Error::WorkflowNotFound)
            .await
    }

    async fn delete_workflow(&self, account_sid: &str, sid: &str) -> Result<Option<WorkflowDef>> {
        self.delete_named("TransactWriteItems(delete_workflow)", || async {
            Ok(self.get_workflow(account_sid, sid).await?.map(|def| {
                let named = Named {
                    sid: def.sid.clone(),
                    by_name: Key::workflow_by_name(account_sid, &def.name),
                    by_sid: Key::workflow_by_sid(account_sid, sid),
                };
                (def, named)
            }))
        })
        .await
    }

    async fn list_workflows(&self, account_sid: &str) -> Result<Vec<WorkflowDef>> {
        let items =
            self.query_prefix("Query(workflows)", Key::workflows_partition(account_sid), LIMIT_NAME_PREFIX).await?;
        let mut defs = items.into_iter().map(from_item::<WorkflowItem, WorkflowDef>).collect::<Result<Vec<_>>>()?;
        defs.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then_with(|| a.sid.cmp(&b.sid)));
        Ok(defs)
    }
}
