//! Workflow definitions in the embedded store: unique names per account, as on DynamoDB.

use async_trait::async_trait;

use super::MemoryStore;
use crate::{
    domain::{
        error::{Error, Result},
        workflows::WorkflowDef,
    },
    ports::WorkflowStore,
};

#[async_trait]
impl WorkflowStore for MemoryStore {
    async fn create_workflow(&self, def: &WorkflowDef) -> Result<()> {
        let mut s = self.lock()?;
        if s.workflows.values().any(|w| w.account_sid == def.account_sid && w.name == def.name) {
            return Err(Error::WorkflowNameExists);
        }
        s.workflows.insert((def.account_sid.clone(), def.sid.clone()), def.clone());
        Ok(())
    }

    async fn get_workflow(&self, account_sid: &str, sid: &str) -> Result<Option<WorkflowDef>> {
        Ok(self.lock()?.workflows.get(&(account_sid.to_owned(), sid.to_owned())).cloned())
    }

    async fn get_workflow_by_name(&self, account_sid: &str, name: &str) -> Result<Option<WorkflowDef>> {
        let s = self.lock()?;
        Ok(s.workflows.values().find(|w| w.account_sid == account_sid && w.name == name).cloned())
    }

    async fn update_workflow(&self, def: &WorkflowDef) -> Result<()> {
        let mut s = self.lock()?;
        match s.workflows.get_mut(&(def.account_sid.clone(), def.sid.clone())) {
            Some(w) => {
                *w = def.clone();
                Ok(())
            }
            None => Err(Error::WorkflowNotFound),
        }
    }

    async fn delete_workflow(&self, account_sid: &str, sid: &str) -> Result<Option<WorkflowDef>> {
        Ok(self.lock()?.workflows.remove(&(account_sid.to_owned(), sid.to_owned())))
    }

    async fn list_workflows(&self, account_sid: &str) -> Result<Vec<WorkflowDef>> {
        let s = self.lock()?;
        let mut v: Vec<_> = s.workflows.values().filter(|w| w.account_sid == account_sid).cloned().collect();
        v.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then_with(|| a.sid.cmp(&b.sid)));
        Ok(v)
    }
}
