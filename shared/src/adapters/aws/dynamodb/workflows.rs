//! Workflow definitions on DynamoDB (docs/data-model.md, "Workflows"): stored as limits are
//! (`named.rs`), by name and by sid in the account's `WF#` partition, always written together.

use async_trait::async_trait;

use super::DynamoStore;
use crate::{
    domain::{error::Result, workflows::WorkflowDef},
    ports::WorkflowStore,
};

#[async_trait]
impl WorkflowStore for DynamoStore {
    async fn create_workflow(&self, def: &WorkflowDef) -> Result<()> {
        self.create_def(def).await
    }

    async fn get_workflow(&self, account_sid: &str, sid: &str) -> Result<Option<WorkflowDef>> {
        self.get_def(account_sid, sid).await
    }

    async fn get_workflow_by_name(&self, account_sid: &str, name: &str) -> Result<Option<WorkflowDef>> {
        self.get_def_by_name(account_sid, name).await
    }

    async fn update_workflow(&self, def: &WorkflowDef) -> Result<()> {
        self.update_def(def).await
    }

    async fn delete_workflow(&self, account_sid: &str, sid: &str) -> Result<Option<WorkflowDef>> {
        self.delete_def(account_sid, sid).await
    }

    async fn list_workflows(&self, account_sid: &str) -> Result<Vec<WorkflowDef>> {
        self.list_defs(account_sid).await
    }
}
