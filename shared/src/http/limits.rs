//! The limits endpoint group: create, update, delete, fetch and list limits.
//!
//! `POST /2fa/limits`, `PUT|DELETE|GET /2fa/limits/{sid}`, `GET /2fa/limits/search/{sid}` and
//! `GET /2fa/limits/search` (also `GET /2fa/limits`, ours), each with `.json`/`.xml` twins.
//! Answers `{"data":{…},"code":200,"message":"OK"}` with the limit in the seed shape.

use std::collections::HashMap;

use axum::{
    extract::{Path, State},
    routing::{get, post},
    Router,
};
use serde_json::{json, Value};

use crate::{
    domain::{
        error::{Error, Result},
        limit_admin::{self, LimitChange, NewLimit, MAX_DESCRIPTION_LEN},
        limits::{parse_buckets, Bucket, LimitDef, MAX_NAME_LEN},
        time,
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

/// Where the list lives; the seeds print `/2falimits/search/`, we print the real path.
const SEARCH_PATH: &str = "/2fa/limits/search";

pub fn router(deps: Deps) -> Router {
    routes().finish(deps)
}

/// Every route of the group (and its paths, for the OpenAPI check).
pub fn routes() -> Routes {
    Routes::new()
        .with_suffixes("/2fa/limits", post(create_limit).get(list_limits))
        .with_suffixes(SEARCH_PATH, get(list_limits))
        // The seeds' page URIs end the path with a slash.
        .route("/2fa/limits/search/", get(list_limits))
        .route("/2fa/limits/search/{sid}", get(fetch_limit))
        .route("/2fa/limits/{sid}", get(fetch_limit).put(update_limit).delete(delete_limit))
}

async fn create_limit(State(deps): State<Deps>, Caller(caller): Caller, p: Params) -> Answer {
    let name = p.bounded("name", MAX_NAME_LEN, true)?.unwrap_or_default();
    let (buckets, buckets_json) = buckets_param(&p)?.ok_or_else(|| Error::missing("buckets"))?;
    let description = p.bounded("description", MAX_DESCRIPTION_LEN, false)?;
    let target = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let new = NewLimit { name, buckets, buckets_json, description };
    let def = limit_admin::create(&deps, &caller, &target, new).await?;
    one(&deps, &[&caller, &target], &def, limit_value).await
}

async fn fetch_limit(State(deps): State<Deps>, Caller(caller): Caller, Path(sid): Path<String>, p: Params) -> Answer {
    by_sid(&deps, &caller, &sid, &p, BySid::Fetch, limit_value).await
}

async fn update_limit(State(deps): State<Deps>, Caller(caller): Caller, Path(sid): Path<String>, p: Params) -> Answer {
    let change =
        LimitChange { name: p.opt("name")?, buckets: buckets_param(&p)?, description: description_change(&p)? };
    let explicit = explicit_account(&deps, &caller, &p).await?;
    let def = limit_admin::update(&deps, scope(&caller, explicit.as_ref()), strip_format_suffix(&sid), change).await?;
    one(&deps, &[&caller], &def, limit_value).await
}

async fn delete_limit(State(deps): State<Deps>, Caller(caller): Caller, Path(sid): Path<String>, p: Params) -> Answer {
    by_sid(&deps, &caller, &sid, &p, BySid::Delete, limit_value).await
}

async fn list_limits(State(deps): State<Deps>, Caller(caller): Caller, p: Params) -> Answer {
    list_page::<LimitDef>(&deps, &caller, &p, SEARCH_PATH, limit_value).await
}

/// `buckets`, as a real array or a string holding one: the buckets and the text to echo.
fn buckets_param(p: &Params) -> Result<Option<(Vec<Bucket>, String)>> {
    match p.get("buckets") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => parse_buckets(v).map(Some),
    }
}

/// The limit in the seed shape, fields in the seed's order.
fn limit_value(def: &LimitDef, emails: &HashMap<String, Option<String>>) -> Value {
    let email = |sid: &str| emails.get(sid).cloned().flatten();
    json!({
        "sid": def.sid,
        "name": def.name,
        "buckets": def.buckets_json,
        "description": def.description,
        "accountSid": def.created_by,
        "accountEmail": email(&def.created_by),
        "targetAccountSid": def.account_sid,
        "targetAccountEmail": email(&def.account_sid),
        "uri": format!("/2fa/limits/search/{}", def.sid),
        "dateCreated": time::iso(def.created_ms),
        "dateUpdated": time::iso(def.updated_ms),
    })
}
