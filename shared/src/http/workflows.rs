//! The workflows endpoint group: create, update, delete, fetch and list workflows.
//!
//! `POST /2fa/workflows`, `PUT|DELETE|GET /2fa/workflows/{sid}`, `GET /2fa/workflows/search/{sid}`
//! and `GET /2fa/workflows/search` (also `GET /2fa/workflows`, ours), each with `.json`/`.xml`
//! twins. Answers `{"data":{…},"code":200,"message":"OK"}` with the workflow in the seed shape:
//! `channels` always an array, as the client wrote its steps.

use std::collections::HashMap;

use axum::{
    extract::{Path, State},
    routing::{get, post},
    Router,
};
use serde_json::{json, Value};

use crate::{
    domain::{
        definitions::MAX_DESCRIPTION_LEN,
        error::{Error, Result},
        time,
        workflow_admin::{self, NewWorkflow, WorkflowChange},
        workflows::{parse_channels, Step, WorkflowDef, MAX_NAME_LEN},
    },
    http::{
        acting_for,
        auth::Caller,
        definitions::{by_sid, description_change, explicit_account, list_page, one, scope, Answer, BySid},
        params::Params,
        strip_format_suffix, Routes,
    },
    ports::Deps,
};

const SEARCH_PATH: &str = "/2fa/workflows/search";

pub fn router(deps: Deps) -> Router {
    routes().finish(deps)
}

/// Every route of the group (and its paths, for the OpenAPI check).
pub fn routes() -> Routes {
    Routes::new()
        .with_suffixes("/2fa/workflows", post(create_workflow).get(list_workflows))
        .with_suffixes(SEARCH_PATH, get(list_workflows))
        // The seeds' page URIs end the path with a slash.
        .route("/2fa/workflows/search/", get(list_workflows))
        .route("/2fa/workflows/search/{sid}", get(fetch_workflow))
        .route("/2fa/workflows/{sid}", get(fetch_workflow).put(update_workflow).delete(delete_workflow))
}

async fn create_workflow(State(deps): State<Deps>, Caller(caller): Caller, p: Params) -> Answer {
    let name = p.bounded("name", MAX_NAME_LEN, true)?.unwrap_or_default();
    let (steps, channels_json) = channels_param(&p)?.ok_or_else(|| Error::missing("channels"))?;
    let description = p.bounded("description", MAX_DESCRIPTION_LEN, false)?;
    let target = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let def = workflow_admin::create(&deps, &caller, &target, NewWorkflow { name, steps, channels_json, description })
        .await?;
    one(&deps, &[&caller, &target], &def, workflow_value).await
}

async fn fetch_workflow(
    State(deps): State<Deps>,
    Caller(caller): Caller,
    Path(sid): Path<String>,
    p: Params,
) -> Answer {
    by_sid(&deps, &caller, &sid, &p, BySid::Fetch, workflow_value).await
}

async fn update_workflow(
    State(deps): State<Deps>,
    Caller(caller): Caller,
    Path(sid): Path<String>,
    p: Params,
) -> Answer {
    let change =
        WorkflowChange { name: p.opt("name")?, steps: channels_param(&p)?, description: description_change(&p)? };
    let explicit = explicit_account(&deps, &caller, &p).await?;
    let def =
        workflow_admin::update(&deps, scope(&caller, explicit.as_ref()), strip_format_suffix(&sid), change).await?;
    one(&deps, &[&caller], &def, workflow_value).await
}

async fn delete_workflow(
    State(deps): State<Deps>,
    Caller(caller): Caller,
    Path(sid): Path<String>,
    p: Params,
) -> Answer {
    by_sid(&deps, &caller, &sid, &p, BySid::Delete, workflow_value).await
}

async fn list_workflows(State(deps): State<Deps>, Caller(caller): Caller, p: Params) -> Answer {
    list_page::<WorkflowDef>(&deps, &caller, &p, SEARCH_PATH, workflow_value).await
}

/// `channels`, as a real array or a string holding one: the steps and the array to echo.
fn channels_param(p: &Params) -> Result<Option<(Vec<Step>, String)>> {
    match p.get("channels") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => parse_channels(v).map(Some),
    }
}

/// The workflow in the seed shape, fields in the seed's order.
fn workflow_value(def: &WorkflowDef, emails: &HashMap<String, Option<String>>) -> Value {
    let email = |sid: &str| emails.get(sid).cloned().flatten();
    let channels: Value = serde_json::from_str(&def.channels_json).unwrap_or(Value::Array(vec![]));
    json!({
        "sid": def.sid,
        "name": def.name,
        "channels": channels,
        "description": def.description,
        "accountSid": def.created_by,
        "accountEmail": email(&def.created_by),
        "targetAccountSid": def.account_sid,
        "targetAccountEmail": email(&def.account_sid),
        "uri": format!("{SEARCH_PATH}/{}", def.sid),
        "dateCreated": time::iso(def.created_ms),
        "dateUpdated": time::iso(def.updated_ms),
    })
}
