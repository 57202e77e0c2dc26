//! Limit definitions on DynamoDB (docs/data-model.md, "Limits"): one item by name (unique
//! names) and one by sid, always written together; stored as workflows are (`named.rs`).

use async_trait::async_trait;

use super::DynamoStore;
use crate::{
    domain::{error::Result, limits::LimitDef},
    ports::LimitStore,
};

#[async_trait]
impl LimitStore for DynamoStore {
    async fn create_limit(&self, def: &LimitDef) -> Result<()> {
        self.create_def(def).await
    }

    async fn get_limit(&self, account_sid: &str, sid: &str) -> Result<Option<LimitDef>> {
        self.get_def(account_sid, sid).await
    }

    async fn update_limit(&self, def: &LimitDef) -> Result<()> {
        self.update_def(def).await
    }

    async fn delete_limit(&self, account_sid: &str, sid: &str) -> Result<Option<LimitDef>> {
        self.delete_def(account_sid, sid).await
    }

    async fn list_limits(&self, account_sid: &str) -> Result<Vec<LimitDef>> {
        self.list_defs(account_sid).await
    }
}
