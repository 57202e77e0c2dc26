//! The limits and workflows pages, one implementation for both (`Managed`): a list with a
//! create form, and an edit page per definition, over the same domain functions as
//! `/2fa/limits` and `/2fa/workflows` (same validation, same messages).
//!
//! The pages show the signed-in account's own definitions only; a sid of any other account
//! (a parent's, a sibling's, a sub-account's) answers 404 as an unknown one.

use async_trait::async_trait;
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
};
use maud::{html, Markup};
use serde_json::Value;

use super::{alert, console_error, date, not_found, pager, status_of, PageParam};
use crate::{
    domain::{
        account::Account,
        definitions::{self, Definition, ListQuery, Page, Scope, Sort, SortKey, MAX_DESCRIPTION_LEN},
        error::{Error, Result},
        limit_admin::{self, LimitChange, NewLimit},
        limits::{self, LimitDef},
        workflow_admin::{self, NewWorkflow, WorkflowChange},
        workflows::{self, WorkflowDef},
    },
    http::console::{Posted, SignedIn},
    ports::Deps,
};

/// Rows on one page of a list (a row is at most ~1 KB: the page stays far under 150 KB).
pub const PAGE_ROWS: u64 = 100;
/// A description is shown up to this many characters in a list (in full on its page).
const SHORT_DESCRIPTION: usize = 80;

/// A kind of definition the console manages.
#[async_trait]
pub trait Managed: Definition + 'static {
    /// Where its pages live (`/console/limits`).
    const PATH: &'static str;
    /// The list page's title, and the table's id in lower case.
    const TITLE: &'static str;
    /// One of them, in a sentence (`limit`), and its page's title (`Limit`).
    const NOUN: &'static str;
    const ONE_TITLE: &'static str;
    const TABLE_ID: &'static str;
    /// The form field holding its JSON (`buckets`, `steps`), and what the API calls it.
    const FIELD: &'static str;
    const API_FIELD: &'static str;
    const FIELD_LABEL: &'static str;
    const CREATE_BUTTON: &'static str;
    /// An example for the JSON field.
    const EXAMPLE: &'static str;

    /// The JSON as the client gave it.
    fn json(&self) -> &str;
    fn description(&self) -> Option<&str>;
    /// One line saying what it does, for the list.
    fn summary(&self) -> String;
    async fn create(deps: &Deps, account: &Account, form: &Fields) -> Result<Self>;
    async fn update(deps: &Deps, account: &Account, sid: &str, form: &Fields) -> Result<Self>;
}

/// What a create or edit form gave.
#[derive(Debug, Default, Clone)]
pub struct Fields {
    pub name: String,
    pub description: String,
    pub json: String,
}

impl Fields {
    fn from_posted<T: Managed>(posted: &Posted) -> Self {
        let get = |n: &str| posted.form.get(n).unwrap_or_default().to_owned();
        Fields { name: get("name"), description: get("description"), json: get(T::FIELD) }
    }

    fn of<T: Managed>(def: &T) -> Self {
        Fields {
            name: def.name().to_owned(),
            description: def.description().unwrap_or_default().to_owned(),
            json: def.json().to_owned(),
        }
    }

    /// The description as the API takes it: empty is none, longer than the API's is a 400.
    fn description(&self) -> Result<Option<String>> {
        let d = self.description.trim();
        if d.chars().count() > MAX_DESCRIPTION_LEN {
            return Err(Error::invalid("description", format!("at most {MAX_DESCRIPTION_LEN} characters")));
        }
        Ok((!d.is_empty()).then(|| d.to_owned()))
    }

    /// The JSON field as the API's parameter: a string holding the array (required).
    fn json_value<T: Managed>(&self) -> Result<Value> {
        let j = self.json.trim();
        if j.is_empty() {
            return Err(Error::missing(T::API_FIELD));
        }
        Ok(Value::String(j.to_owned()))
    }

    fn name(&self, max: usize) -> Result<String> {
        let n = self.name.trim();
        if n.is_empty() {
            return Err(Error::missing("name"));
        }
        if n.chars().count() > max {
            return Err(Error::invalid("name", format!("at most {max} characters")));
        }
        Ok(n.to_owned())
    }
}

#[async_trait]
impl Managed for LimitDef {
    const PATH: &'static str = "/console/limits";
    const TITLE: &'static str = "Limits";
    const NOUN: &'static str = "limit";
    const ONE_TITLE: &'static str = "Limit";
    const TABLE_ID: &'static str = "limits";
    const FIELD: &'static str = "buckets";
    const API_FIELD: &'static str = "buckets";
    const FIELD_LABEL: &'static str = "Buckets (JSON)";
    const CREATE_BUTTON: &'static str = "Create limit";
    const EXAMPLE: &'static str =
        r#"[{"name":"per-minute","max":1,"interval":60},{"name":"per-hour","max":5,"interval":3600}]"#;

    fn json(&self) -> &str {
        &self.buckets_json
    }
    fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    fn summary(&self) -> String {
        self.buckets.iter().map(|b| format!("{} per {} s", b.max, b.interval_secs)).collect::<Vec<_>>().join(", ")
    }
    async fn create(deps: &Deps, account: &Account, form: &Fields) -> Result<Self> {
        let name = form.name(limits::MAX_NAME_LEN)?;
        let (buckets, buckets_json) = limits::parse_buckets(&form.json_value::<Self>()?)?;
        let new = NewLimit { name, buckets, buckets_json, description: form.description()? };
        limit_admin::create(deps, account, account, new).await
    }
    async fn update(deps: &Deps, account: &Account, sid: &str, form: &Fields) -> Result<Self> {
        let buckets = limits::parse_buckets(&form.json_value::<Self>()?)?;
        let change = LimitChange { name: None, buckets: Some(buckets), description: Some(form.description()?) };
        limit_admin::update(deps, Scope::Account(account), sid, change).await
    }
}

#[async_trait]
impl Managed for WorkflowDef {
    const PATH: &'static str = "/console/workflows";
    const TITLE: &'static str = "Workflows";
    const NOUN: &'static str = "workflow";
    const ONE_TITLE: &'static str = "Workflow";
    const TABLE_ID: &'static str = "workflows";
    const FIELD: &'static str = "steps";
    const API_FIELD: &'static str = "channels";
    const FIELD_LABEL: &'static str = "Steps (JSON)";
    const CREATE_BUTTON: &'static str = "Create workflow";
    const EXAMPLE: &'static str = r#"[{"channel":"sms","interval":0},{"channel":"call","interval":60}]"#;

    fn json(&self) -> &str {
        &self.channels_json
    }
    fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    fn summary(&self) -> String {
        self.steps
            .iter()
            .map(|s| format!("{} after {} s", s.channel.as_str(), s.interval_secs))
            .collect::<Vec<_>>()
            .join(", then ")
    }
    async fn create(deps: &Deps, account: &Account, form: &Fields) -> Result<Self> {
        let name = form.name(workflows::MAX_NAME_LEN)?;
        let (steps, channels_json) = workflows::parse_channels(&form.json_value::<Self>()?)?;
        let new = NewWorkflow { name, steps, channels_json, description: form.description()? };
        workflow_admin::create(deps, account, account, new).await
    }
    async fn update(deps: &Deps, account: &Account, sid: &str, form: &Fields) -> Result<Self> {
        let steps = workflows::parse_channels(&form.json_value::<Self>()?)?;
        let change = WorkflowChange { name: None, steps: Some(steps), description: Some(form.description()?) };
        workflow_admin::update(deps, Scope::Account(account), sid, change).await
    }
}

/// `GET {PATH}?page=N`: the account's definitions by name, a page at a time, and the create
/// form.
pub async fn list_page<T: Managed>(State(deps): State<Deps>, signed: SignedIn, Query(q): Query<PageParam>) -> Response {
    list_answer::<T>(&deps, &signed, q.number(), StatusCode::OK, None, &Fields::default()).await
}

/// The list page, with `alert` and the create form holding `form` when a create was refused.
async fn list_answer<T: Managed>(
    deps: &Deps,
    signed: &SignedIn,
    page: u64,
    status: StatusCode,
    alert: Option<&str>,
    form: &Fields,
) -> Response {
    let q = ListQuery {
        page,
        page_size: PAGE_ROWS,
        sort: Sort { key: SortKey::Name, descending: false },
        ..Default::default()
    };
    let found: Page<T> = match definitions::list(deps, &signed.account, false, &q).await {
        Ok(p) => p,
        Err(e) => return signed.error(e),
    };
    let body = html! {
        table id=(T::TABLE_ID) {
            thead { tr { th { "Name" } th { "Description" } th { (T::FIELD_LABEL.trim_end_matches(" (JSON)")) } th { "Created" } th { "" } } }
            tbody {
                @for d in &found.items {
                    tr data-name=(d.name()) data-sid=(d.sid()) {
                        td { (d.name()) }
                        td { (short(d.description().unwrap_or_default())) }
                        td { (d.summary()) }
                        td { (date(d.created_ms())) }
                        td {
                            a href={ (T::PATH) "/" (d.sid()) } { "Edit" }
                            " "
                            form.inline method="post" action={ (T::PATH) "/" (d.sid()) "/delete" } {
                                (signed.csrf_input())
                                button.danger type="submit" { "Delete" }
                            }
                        }
                    }
                }
                @if found.items.is_empty() {
                    tr { td colspan="5" { "No " (T::NOUN) "s yet." } }
                }
            }
        }
        (pager(T::PATH, page, PAGE_ROWS, found.total))
        h2 { "New " (T::NOUN) }
        (fields_form::<T>(signed, T::PATH, form, true, T::CREATE_BUTTON))
    };
    signed.page_with(status, T::TITLE, alert, body)
}

/// The form of one definition: name (create only), description, its JSON.
fn fields_form<T: Managed>(signed: &SignedIn, action: &str, form: &Fields, with_name: bool, button: &str) -> Markup {
    html! {
        form method="post" action=(action) {
            (signed.csrf_input())
            @if with_name {
                label for="name" { "Name" }
                input id="name" name="name" type="text" required maxlength="64" value=(form.name);
            }
            label for="description" { "Description" }
            input id="description" name="description" type="text" maxlength=(MAX_DESCRIPTION_LEN) value=(form.description);
            label for=(T::FIELD) { (T::FIELD_LABEL) }
            textarea id=(T::FIELD) name=(T::FIELD) rows="6" cols="60" required placeholder=(T::EXAMPLE) { (form.json) }
            button type="submit" { (button) }
        }
    }
}

/// `POST {PATH}`: create one; 303 back to the list, or the list again with what was wrong.
pub async fn create<T: Managed>(State(deps): State<Deps>, posted: Posted) -> Response {
    let form = Fields::from_posted::<T>(&posted);
    let signed = &posted.signed;
    match T::create(&deps, &signed.account, &form).await {
        Ok(def) => signed.done(T::PATH, &format!("Created {} {}.", T::NOUN, def.name())),
        Err(e) => {
            let e = console_error(e, &[(T::API_FIELD, T::FIELD)]);
            let status = status_of(&e);
            if status.is_server_error() {
                return signed.error(e);
            }
            list_answer::<T>(&deps, signed, 0, status, Some(&alert(&e)), &form).await
        }
    }
}

/// `GET {PATH}/{sid}`: the edit form.
pub async fn edit_page<T: Managed>(State(deps): State<Deps>, signed: SignedIn, Path(sid): Path<String>) -> Response {
    match definitions::find::<T>(&deps, Scope::Account(&signed.account), &sid).await {
        Ok(def) => edit_answer(&signed, &def, StatusCode::OK, None, &Fields::of(&def)),
        Err(e) => missing_or::<T>(&signed, e),
    }
}

fn edit_answer<T: Managed>(
    signed: &SignedIn,
    def: &T,
    status: StatusCode,
    alert: Option<&str>,
    form: &Fields,
) -> Response {
    let action = format!("{}/{}", T::PATH, def.sid());
    let body = html! {
        p { "Name: " strong data-field="name" { (def.name()) } " (" code { (def.sid()) } "), created " (date(def.created_ms())) ". A " (T::NOUN) " cannot be renamed." }
        (fields_form::<T>(signed, &action, form, false, "Save"))
        form.inline method="post" action={ (action) "/delete" } {
            (signed.csrf_input())
            button.danger type="submit" { "Delete" }
        }
        p { a href=(T::PATH) { "All " (T::NOUN) "s" } }
    };
    signed.page_with(status, T::ONE_TITLE, alert, body)
}

/// `POST {PATH}/{sid}`: save; 303 back to its page, or the form again with what was wrong.
pub async fn update<T: Managed>(State(deps): State<Deps>, Path(sid): Path<String>, posted: Posted) -> Response {
    let form = Fields::from_posted::<T>(&posted);
    let signed = &posted.signed;
    match T::update(&deps, &signed.account, &sid, &form).await {
        Ok(def) => signed.done(&format!("{}/{}", T::PATH, def.sid()), &format!("Saved {} {}.", T::NOUN, def.name())),
        Err(e) => {
            // The form again, over the stored definition (a 404 when there is none).
            let def = match definitions::find::<T>(&deps, Scope::Account(&signed.account), &sid).await {
                Ok(def) => def,
                Err(e) => return missing_or::<T>(signed, e),
            };
            let e = console_error(e, &[(T::API_FIELD, T::FIELD)]);
            let status = status_of(&e);
            if status.is_server_error() {
                return signed.error(e);
            }
            edit_answer(signed, &def, status, Some(&alert(&e)), &form)
        }
    }
}

/// `POST {PATH}/{sid}/delete`: 303 to the list.
pub async fn delete<T: Managed>(State(deps): State<Deps>, Path(sid): Path<String>, posted: Posted) -> Response {
    let signed = &posted.signed;
    match definitions::delete::<T>(&deps, Scope::Account(&signed.account), &sid).await {
        Ok(def) => signed.done(T::PATH, &format!("Deleted {} {}.", T::NOUN, def.name())),
        Err(e) => missing_or::<T>(signed, e),
    }
}

/// An unknown (or foreign) sid as a 404 page; any other error as the API answers it.
fn missing_or<T: Managed>(signed: &SignedIn, e: Error) -> Response {
    if e == T::not_found() {
        not_found(signed, T::ONE_TITLE, &format!("There is no such {}.", T::NOUN))
    } else {
        signed.error(e)
    }
}

fn short(text: &str) -> String {
    if text.chars().count() <= SHORT_DESCRIPTION {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(SHORT_DESCRIPTION - 1).collect();
    s.push('…');
    s
}
