//! What the limits and workflows endpoint groups share: the envelope, the list page with its
//! filters, sorting and URIs, `accountSid` scoping, description changes.

use std::collections::HashMap;

use axum::Json;
use serde_json::{json, Map, Value};

use crate::{
    domain::{
        account::Account,
        definitions::{
            self, Definition, ListQuery, Page, Scope, Sort, DEFAULT_PAGE_SIZE, MAX_DESCRIPTION_LEN, MAX_PAGE_SIZE,
        },
        error::{Error, Result},
        time::parse_date_or_datetime,
    },
    http::{acting_for, params::Params, strip_format_suffix, ApiError},
    ports::Deps,
};

/// Names of limits and workflows are at most this long (a filter longer matches nothing).
const MAX_NAME_LEN: usize = 64;

pub type Answer = std::result::Result<Json<Value>, ApiError>;

/// A page of definitions in the seeds' list shape: `result`, paging fields and URIs that carry
/// the filters, so following one lists the same set. `search_path`: where the list lives.
pub async fn list_page<T: Definition>(
    deps: &Deps,
    caller: &Account,
    p: &Params,
    search_path: &str,
    render: fn(&T, &HashMap<String, Option<String>>) -> Value,
) -> Answer {
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
    let root = acting_for(deps, caller, account_sid.as_deref()).await?;

    let q = ListQuery { page, page_size, name: name.clone(), start_ms, end_ms, sort };
    let found: Page<T> = definitions::list(deps, &root, sub_accounts, &q).await?;
    let emails = definitions::emails(deps, &[caller, &root], &found.items).await?;

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
    data.insert("result".into(), Value::Array(found.items.iter().map(|d| render(d, &emails)).collect()));
    data.insert("pageSize".into(), json!(page_size));
    data.insert("total".into(), json!(found.total));
    data.insert("page".into(), json!(page));
    data.insert("numPages".into(), json!(num_pages));
    data.insert("start".into(), json!(first));
    data.insert("end".into(), json!(first.saturating_add(returned.max(1) - 1)));
    data.insert("firstPageUri".into(), json!(page_uri(search_path, 0, page_size, &filters)));
    // Only when there is a next page (the seed's single-page list has none).
    if page.saturating_add(1) < num_pages {
        data.insert("nextPageUri".into(), json!(page_uri(search_path, page + 1, page_size, &filters)));
    }
    data.insert("uri".into(), json!(page_uri(search_path, page, page_size, &filters)));
    Ok(ok(Value::Object(data)))
}

/// Absent: unchanged; null or empty: cleared; text: replaced.
pub fn description_change(p: &Params) -> Result<Option<Option<String>>> {
    match p.get("description") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(_) => Ok(Some(p.bounded("description", MAX_DESCRIPTION_LEN, false)?)),
    }
}

/// The account `accountSid` names (a sub-account of the caller, else 403), if given.
pub async fn explicit_account(deps: &Deps, caller: &Account, p: &Params) -> Result<Option<Account>> {
    match p.opt("accountSid")? {
        Some(sid) => Ok(Some(acting_for(deps, caller, Some(&sid)).await?.into_owned())),
        None => Ok(None),
    }
}

/// With `accountSid`: that account only. Without: the caller and its sub-accounts.
pub fn scope<'a>(caller: &'a Account, explicit: Option<&'a Account>) -> Scope<'a> {
    match explicit {
        Some(a) => Scope::Account(a),
        None => Scope::Tree(caller),
    }
}

fn date_param(name: &'static str, s: &str) -> Result<i64> {
    parse_date_or_datetime(s)
        .ok_or_else(|| Error::invalid(name, "must be a UTC date YYYY-MM-DD or date-time YYYY-MM-DDTHH:MM:SS"))
}

fn page_uri(search_path: &str, page: u64, page_size: u64, filters: &[(&str, String)]) -> String {
    let mut pairs: Vec<(&str, String)> = vec![("pageSize", page_size.to_string()), ("page", page.to_string())];
    pairs.extend(filters.iter().cloned());
    format!("{search_path}?{}", serde_urlencoded::to_string(&pairs).unwrap_or_default())
}

/// What a request does to one definition it names by sid.
#[derive(Debug, Clone, Copy)]
pub enum BySid {
    /// `GET …/{sid}`
    Fetch,
    /// `DELETE …/{sid}` (answers the deleted definition)
    Delete,
}

/// `GET` / `DELETE …/{sid}` of a definition group: the definition within the request's scope
/// (`accountSid`, else the caller's tree), as `render` shows it.
pub async fn by_sid<T: Definition>(
    deps: &Deps,
    caller: &Account,
    sid: &str,
    p: &Params,
    action: BySid,
    render: fn(&T, &HashMap<String, Option<String>>) -> Value,
) -> Answer {
    let explicit = explicit_account(deps, caller, p).await?;
    let (scope, sid) = (scope(caller, explicit.as_ref()), strip_format_suffix(sid));
    let def: T = match action {
        BySid::Fetch => definitions::find(deps, scope, sid).await?,
        BySid::Delete => definitions::delete(deps, scope, sid).await?,
    };
    one(deps, &[caller], &def, render).await
}

/// One definition in the envelope, with the emails it shows.
pub async fn one<T: Definition>(
    deps: &Deps,
    known: &[&Account],
    def: &T,
    render: fn(&T, &HashMap<String, Option<String>>) -> Value,
) -> Answer {
    let emails = definitions::emails(deps, known, std::slice::from_ref(def)).await?;
    Ok(ok(render(def, &emails)))
}

pub fn ok(data: Value) -> Json<Value> {
    Json(json!({ "data": data, "code": 200, "message": "OK" }))
}
