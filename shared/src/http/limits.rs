//! The limits endpoint group: create, update, delete, fetch and list limits.
//!
//! `POST /2fa/limits`, `PUT|DELETE|GET /2fa/limits/{sid}`, `GET /2fa/limits/search/{sid}` and
//! `GET /2fa/limits/search` (also `GET /2fa/limits`, ours), each with `.json`/`.xml` twins.
//! Answers `{"data":{…},"code":200,"message":"OK"}` with the limit in the seed shape.

use std::collections::HashMap;

use axum::{
    extract::{Path, State},
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Map, Value};

use crate::{
    domain::{
        account::Account,
        error::{Error, Result},
        limit_admin::{
            self, LimitChange, ListQuery, NewLimit, Scope, Sort, DEFAULT_PAGE_SIZE, MAX_DESCRIPTION_LEN, MAX_PAGE_SIZE,
        },
        limits::{parse_buckets, Bucket, LimitDef, MAX_NAME_LEN},
        time::{self, parse_date_or_datetime},
    },
    http::{acting_for, auth::Caller, params::Params, strip_format_suffix, ApiError, Routes},
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

type Answer = std::result::Result<Json<Value>, ApiError>;

async fn create_limit(State(deps): State<Deps>, Caller(caller): Caller, p: Params) -> Answer {
    let name = p.bounded("name", MAX_NAME_LEN, true)?.unwrap_or_default();
    let (buckets, buckets_json) = buckets_param(&p)?.ok_or_else(|| Error::missing("buckets"))?;
    let description = p.bounded("description", MAX_DESCRIPTION_LEN, false)?;
    let target = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let new = NewLimit { name, buckets, buckets_json, description };
    let def = limit_admin::create(&deps, &caller, &target, new).await?;
    one(&deps, &[&caller, &target], &def).await
}

async fn fetch_limit(State(deps): State<Deps>, Caller(caller): Caller, Path(sid): Path<String>, p: Params) -> Answer {
    let explicit = explicit_account(&deps, &caller, &p).await?;
    let def = limit_admin::find(&deps, scope(&caller, explicit.as_ref()), strip_format_suffix(&sid)).await?;
    one(&deps, &[&caller], &def).await
}

async fn update_limit(State(deps): State<Deps>, Caller(caller): Caller, Path(sid): Path<String>, p: Params) -> Answer {
    let change =
        LimitChange { name: p.opt("name")?, buckets: buckets_param(&p)?, description: description_change(&p)? };
    let explicit = explicit_account(&deps, &caller, &p).await?;
    let def = limit_admin::update(&deps, scope(&caller, explicit.as_ref()), strip_format_suffix(&sid), change).await?;
    one(&deps, &[&caller], &def).await
}

async fn delete_limit(State(deps): State<Deps>, Caller(caller): Caller, Path(sid): Path<String>, p: Params) -> Answer {
    let explicit = explicit_account(&deps, &caller, &p).await?;
    let def = limit_admin::delete(&deps, scope(&caller, explicit.as_ref()), strip_format_suffix(&sid)).await?;
    one(&deps, &[&caller], &def).await
}

async fn list_limits(State(deps): State<Deps>, Caller(caller): Caller, p: Params) -> Answer {
    let page = p.int("page", 0, i64::MAX)?.unwrap_or(0) as u64;
    let page_size = p.int("pageSize", 1, MAX_PAGE_SIZE as i64)?.map_or(DEFAULT_PAGE_SIZE, |n| n as u64);
    let name = p.bounded("name", MAX_NAME_LEN, false)?;
    let start = p.opt("startTime")?;
    let end = p.opt("endTime")?;
    let start_ms = start.as_deref().map(|s| date_param("startTime", s)).transpose()?;
    let end_ms = end.as_deref().map(|s| date_param("endTime", s)).transpose()?;
    if let (Some(s), Some(e)) = (start_ms, end_ms) {
        if e < s {
            return Err(Error::invalid("endTime", "must not be before startTime").into());
        }
    }
    let sort_text = match p.opt("SortBy")? {
        Some(s) => Some(s),
        None => p.opt("sortBy")?,
    };
    let sort = match sort_text.as_deref() {
        None => Sort::default(),
        Some(s) => Sort::parse(s)
            .ok_or_else(|| Error::invalid("SortBy", "must be name or dateCreated, optionally with :asc or :desc"))?,
    };
    let sub_accounts = p.boolean("subAccounts")?.unwrap_or(false);
    let account_sid = p.opt("accountSid")?;
    let root = acting_for(&deps, &caller, account_sid.as_deref()).await?;

    let q = ListQuery { page, page_size, name: name.clone(), start_ms, end_ms, sort };
    let found = limit_admin::list(&deps, &root, sub_accounts, &q).await?;
    let emails = limit_admin::emails(&deps, &[&caller, &root], &found.items).await?;

    // The filters ride along on every page URI, so following one lists the same set.
    let mut filters: Vec<(&str, String)> = vec![];
    filters.extend(name.map(|v| ("name", v)));
    filters.extend(start.map(|v| ("startTime", v)));
    filters.extend(end.map(|v| ("endTime", v)));
    filters.extend(sort_text.map(|v| ("SortBy", v)));
    filters.extend(account_sid.map(|v| ("accountSid", v)));
    if sub_accounts {
        filters.push(("subAccounts", "true".to_owned()));
    }

    let returned = found.items.len() as u64;
    let first = page.saturating_mul(page_size);
    let num_pages = found.total.div_ceil(page_size);
    let mut data = Map::new();
    data.insert("result".into(), Value::Array(found.items.iter().map(|d| limit_value(d, &emails)).collect()));
    data.insert("pageSize".into(), json!(page_size));
    data.insert("total".into(), json!(found.total));
    data.insert("page".into(), json!(page));
    data.insert("numPages".into(), json!(num_pages));
    data.insert("start".into(), json!(first));
    data.insert("end".into(), json!(first.saturating_add(returned.max(1) - 1)));
    data.insert("firstPageUri".into(), json!(page_uri(0, page_size, &filters)));
    // Only when there is a next page (the seed's single-page list has none).
    if page.saturating_add(1) < num_pages {
        data.insert("nextPageUri".into(), json!(page_uri(page + 1, page_size, &filters)));
    }
    data.insert("uri".into(), json!(page_uri(page, page_size, &filters)));
    Ok(ok(Value::Object(data)))
}

/// `buckets`, as a real array or a string holding one: the buckets and the text to echo.
fn buckets_param(p: &Params) -> Result<Option<(Vec<Bucket>, String)>> {
    match p.0.get("buckets") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => parse_buckets(v).map(Some),
    }
}

/// Absent: unchanged; null or empty: cleared; text: replaced.
fn description_change(p: &Params) -> Result<Option<Option<String>>> {
    match p.0.get("description") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(_) => Ok(Some(p.bounded("description", MAX_DESCRIPTION_LEN, false)?)),
    }
}

/// The account `accountSid` names (a sub-account of the caller, else 403), if given.
async fn explicit_account(deps: &Deps, caller: &Account, p: &Params) -> Result<Option<Account>> {
    match p.opt("accountSid")? {
        Some(sid) => Ok(Some(acting_for(deps, caller, Some(&sid)).await?)),
        None => Ok(None),
    }
}

/// With `accountSid`: that account only. Without: the caller and its sub-accounts.
fn scope<'a>(caller: &'a Account, explicit: Option<&'a Account>) -> Scope<'a> {
    match explicit {
        Some(a) => Scope::Account(a),
        None => Scope::Tree(caller),
    }
}

fn date_param(name: &'static str, s: &str) -> Result<i64> {
    parse_date_or_datetime(s)
        .ok_or_else(|| Error::invalid(name, "must be a UTC date YYYY-MM-DD or date-time YYYY-MM-DDTHH:MM:SS"))
}

fn page_uri(page: u64, page_size: u64, filters: &[(&str, String)]) -> String {
    let mut pairs: Vec<(&str, String)> = vec![("pageSize", page_size.to_string()), ("page", page.to_string())];
    pairs.extend(filters.iter().cloned());
    format!("{SEARCH_PATH}?{}", serde_urlencoded::to_string(&pairs).unwrap_or_default())
}

async fn one(deps: &Deps, known: &[&Account], def: &LimitDef) -> Answer {
    let emails = limit_admin::emails(deps, known, std::slice::from_ref(def)).await?;
    Ok(ok(limit_value(def, &emails)))
}

fn ok(data: Value) -> Json<Value> {
    Json(json!({ "data": data, "code": 200, "message": "OK" }))
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
