//! Workflow administration: create and update workflows; find, list and delete are the generic
//! ones of `definitions`, as for limits.

use async_trait::async_trait;

pub use super::definitions::find;
use super::{
    account::Account,
    definitions::{Definition, Scope},
    error::{Error, Result},
    ids::{self, new_sid},
    time::Millis,
    workflows::{validate_name, Step, WorkflowDef},
};
use crate::ports::{Deps, Store};

#[async_trait]
impl Definition for WorkflowDef {
    const PREFIX: &'static str = ids::WORKFLOW;

    fn not_found() -> Error {
        Error::WorkflowNotFound
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
        store.get_workflow(account_sid, sid).await
    }
    async fn load_all(store: &dyn Store, account_sid: &str) -> Result<Vec<Self>> {
        store.list_workflows(account_sid).await
    }
    async fn remove(store: &dyn Store, account_sid: &str, sid: &str) -> Result<Option<Self>> {
        store.delete_workflow(account_sid, sid).await
    }
}

/// A validated create request.
#[derive(Debug, Clone)]
pub struct NewWorkflow {
    pub name: String,
    pub steps: Vec<Step>,
    /// The steps as the client gave them (`workflows::parse_channels`).
    pub channels_json: String,
    pub description: Option<String>,
}

/// What an update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WorkflowChange {
    /// A workflow cannot be renamed; repeating its own name is accepted.
    pub name: Option<String>,
    pub steps: Option<(Vec<Step>, String)>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
}

pub async fn create(deps: &Deps, caller: &Account, target: &Account, new: NewWorkflow) -> Result<WorkflowDef> {
    validate_name(&new.name)?;
    let now = deps.clock.now_ms();
    let def = WorkflowDef {
        sid: new_sid(ids::WORKFLOW),
        account_sid: target.sid.clone(),
        created_by: caller.sid.clone(),
        name: new.name,
        steps: new.steps,
        channels_json: new.channels_json,
        description: new.description,
        created_ms: now,
        updated_ms: now,
    };
    deps.store.create_workflow(&def).await?;
    Ok(def)
}

pub async fn update(deps: &Deps, scope: Scope<'_>, sid: &str, change: WorkflowChange) -> Result<WorkflowDef> {
    if change.steps.is_none() && change.description.is_none() {
        return Err(Error::invalid("channels", "give channels or description to change"));
    }
    let mut def: WorkflowDef = find(deps, scope, sid).await?;
    if change.name.as_ref().is_some_and(|n| n != &def.name) {
        return Err(Error::invalid("name", "a workflow cannot be renamed; create a new one"));
    }
    if let Some((steps, json)) = change.steps {
        def.steps = steps;
        def.channels_json = json;
    }
    if let Some(description) = change.description {
        def.description = description;
    }
    def.updated_ms = deps.clock.now_ms().max(def.created_ms);
    deps.store.update_workflow(&def).await?;
    Ok(def)
}
