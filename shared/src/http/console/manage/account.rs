//! The account page: geo permissions, pumping guard, test numbers, the policy as JSON, the
//! callback URL and its secret (shown once, when made), allowed IPs, and the sub-accounts.
//!
//! Every change goes through the domain's own functions, as the admin command and `POST
//! /dev/accounts` apply them (`policy::update_policy_with`, `account_admin::parse_allowed_ips`):
//! the same validation and the same messages. The signed-in account edits only itself.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts, Query, State},
    http::{request::Parts, StatusCode},
    response::Response,
};
use maud::html;
use serde_json::Value;

use super::{alert, console_error, date, pager, status_of, PageParam};
use crate::{
    domain::{
        account::Account,
        account_admin::parse_allowed_ips,
        error::{Error, Result},
        phone,
        policy::{
            self, senders, AccountPolicy, CountriesUpdate, GuardUpdate, PolicyUpdate, TestNumberInput, MAX_COUNTRIES,
        },
        providers::ProviderSecret,
    },
    http::{
        auth::ClientIp,
        console::{Posted, SignedIn},
    },
    ports::Deps,
};

const PATH: &str = "/console/account";
/// Sub-accounts on one page of the table.
pub const SUB_ACCOUNT_ROWS: u64 = 100;

/// The address a request came from, as `auth::Caller` reads it (None: unknown).
pub struct RequestIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for RequestIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> std::result::Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ClientIp>()
            .map(|c| c.0)
            .or_else(|| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()));
        Ok(RequestIp(ip))
    }
}

/// What the forms show: the account's values, or what the user typed into the form that
/// was refused.
#[derive(Debug, Default, Clone)]
struct Typed {
    sms: Option<String>,
    call: Option<String>,
    whatsapp: Option<String>,
    guard: Option<GuardTyped>,
    test_to: Option<String>,
    policy: Option<String>,
    callback_url: Option<String>,
    callback_method: Option<String>,
    allowed_ips: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct GuardTyped {
    enabled: bool,
    min_sends: String,
    min_verify_percent: String,
    account_min_sends: String,
    max_failed_verifies: String,
}

/// Secrets a change made, shown on its answer only.
#[derive(Default)]
struct Made {
    webhook: Option<String>,
    providers: Vec<ProviderSecret>,
}

/// `GET /console/account`.
pub async fn page(State(deps): State<Deps>, signed: SignedIn, Query(q): Query<PageParam>) -> Response {
    let account = signed.account.clone();
    answer(&deps, &signed, &account, q.number(), StatusCode::OK, None, &Typed::default(), Made::default()).await
}

/// The account page for `account`: `alert` and `typed` after a refused change, `made` after
/// one that made secrets (shown here, this once: the answer is not a redirect).
#[allow(clippy::too_many_arguments)]
async fn answer(
    deps: &Deps,
    signed: &SignedIn,
    account: &Account,
    page: u64,
    status: StatusCode,
    alert: Option<&str>,
    typed: &Typed,
    made: Made,
) -> Response {
    let subs = match deps.store.list_sub_accounts(&account.sid).await {
        Ok(mut s) => {
            s.sort_by(|a, b| (a.created_ms, &a.sid).cmp(&(b.created_ms, &b.sid)));
            s
        }
        Err(e) => return signed.error(e),
    };
    let p = &account.policy;
    let csrf = signed.csrf_input();
    let countries = |list: &Option<Vec<String>>| match list {
        None => String::new(),
        Some(l) if l.is_empty() => "none".to_owned(),
        Some(l) => l.join(", "),
    };
    let guard = typed.guard.clone().unwrap_or_else(|| GuardTyped {
        enabled: p.guard.enabled,
        min_sends: p.guard.min_sends.to_string(),
        min_verify_percent: p.guard.min_verify_percent.to_string(),
        account_min_sends: p.guard.account_min_sends.to_string(),
        max_failed_verifies: p.max_failed_verifies.to_string(),
    });
    let method = typed
        .callback_method
        .clone()
        .unwrap_or_else(|| p.callback.as_ref().map_or("POST", |c| c.method.as_str()).to_owned());
    let ips = account.allowed_ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let start = usize::try_from(page.saturating_mul(SUB_ACCOUNT_ROWS)).unwrap_or(usize::MAX);
    let shown = subs.iter().skip(start).take(SUB_ACCOUNT_ROWS as usize);
    let body = html! {
        @if let Some(secret) = &made.webhook {
            section.secret {
                p role="status" { "A new webhook secret: copy it now, it is not shown again." }
                code data-field="secret" { (secret) }
            }
        }
        @for s in &made.providers {
            section.secret {
                p role="status" { "A new secret for provider " (s.name) ": copy it now, it is not shown again." }
                code data-field="provider-secret" data-provider=(s.name) { (s.secret) }
            }
        }
        p {
            "Account " code data-field="accountSid" { (account.sid) }
            @if let Some(email) = &account.email { " (" (email) ")" }
            @if !account.ancestors.is_empty() { ", a sub-account" }
            ", created " (date(account.created_ms)) "."
        }

        h2 id="geo" { "Geo permissions" }
        p { "Countries each channel may send to: ISO codes separated by commas (US, GB). Empty: every country; " code { "none" } ": no country." }
        form method="post" action="/console/account/geo" {
            (csrf)
            label for="smsCountries" { "SMS countries" }
            input id="smsCountries" name="smsCountries" type="text" value=(typed.sms.clone().unwrap_or_else(|| countries(&p.sms_countries)));
            label for="callCountries" { "Call countries" }
            input id="callCountries" name="callCountries" type="text" value=(typed.call.clone().unwrap_or_else(|| countries(&p.call_countries)));
            label for="whatsappCountries" { "WhatsApp countries" }
            input id="whatsappCountries" name="whatsappCountries" type="text" value=(typed.whatsapp.clone().unwrap_or_else(|| countries(&p.whatsapp_countries)));
            button type="submit" { "Save geo permissions" }
        }

        h2 id="pumping-guard" { "Pumping guard" }
        p { "Sends to a country pause (477) when, over the last hour, at least the minimum were sent there and fewer than the percentage were verified; the same over all countries from the account-wide minimum. After the failed verifies in a row, sends to that destination answer 478." }
        form method="post" action="/console/account/guard" {
            (csrf)
            label for="enabled" {
                input id="enabled" name="enabled" type="checkbox" value="on" checked[guard.enabled];
                " Guard on"
            }
            label for="minSends" { "Minimum sends to a country" }
            input id="minSends" name="minSends" type="number" min="1" value=(guard.min_sends);
            label for="minVerifyPercent" { "Minimum verified (%)" }
            input id="minVerifyPercent" name="minVerifyPercent" type="number" min="0" max="100" value=(guard.min_verify_percent);
            label for="accountMinSends" { "Minimum sends, all countries" }
            input id="accountMinSends" name="accountMinSends" type="number" min="1" value=(guard.account_min_sends);
            label for="maxFailedVerifies" { "Failed verifies per destination" }
            input id="maxFailedVerifies" name="maxFailedVerifies" type="number" min="1" max="100" value=(guard.max_failed_verifies);
            button type="submit" { "Save pumping guard" }
        }

        h2 id="test-numbers" { "Test numbers" }
        p { "Destinations that receive nothing and verify with a fixed code (app reviewers, CI)." }
        table id="test-numbers" {
            thead { tr { th { "Destination" } th { "" } } }
            tbody {
                @for t in &p.test_destinations {
                    tr data-to=(t.to) {
                        td { (t.to) }
                        td {
                            form.inline method="post" action="/console/account/test-numbers/remove" {
                                (csrf)
                                input type="hidden" name="to" value=(t.to);
                                button.danger type="submit" { "Remove" }
                            }
                        }
                    }
                }
                @if p.test_destinations.is_empty() { tr { td colspan="2" { "None." } } }
            }
        }
        form method="post" action="/console/account/test-numbers" {
            (csrf)
            label for="testTo" { "Number or address" }
            input id="testTo" name="to" type="text" value=(typed.test_to.clone().unwrap_or_default());
            label for="testCode" { "Fixed code (4 to 10 digits)" }
            input id="testCode" name="code" type="password" inputmode="numeric" autocomplete="off";
            button type="submit" { "Add test number" }
        }

        h2 id="policy" { "Policy (JSON)" }
        p { "The whole policy as the admin command takes it; a field left out stays as it is. Test numbers and secrets are set above." }
        form method="post" action="/console/account/policy" {
            (csrf)
            label for="policy-json" { "Policy" }
            textarea id="policy-json" name="policy" rows="16" cols="72" { (typed.policy.clone().unwrap_or_else(|| editable_policy(p))) }
            button type="submit" { "Save policy" }
        }

        h2 id="callback" { "Callback" }
        p {
            "Where the account's OTP events are posted, signed with the webhook secret ("
            @if p.webhook_secret.is_some() { "one is set" } @else { "none yet" }
            "). Empty: no callback."
        }
        form method="post" action="/console/account/callback" {
            (csrf)
            label for="callbackUrl" { "Callback URL" }
            input id="callbackUrl" name="callbackUrl" type="url" value=(typed.callback_url.clone().unwrap_or_else(|| p.callback.as_ref().map(|c| c.url.clone()).unwrap_or_default()));
            label for="callbackMethod" { "Method" }
            select id="callbackMethod" name="callbackMethod" {
                option value="POST" selected[method == "POST"] { "POST" }
                option value="GET" selected[method == "GET"] { "GET" }
            }
            button type="submit" { "Save callback" }
        }
        form.inline method="post" action="/console/account/rotate-secret" {
            (csrf)
            button.danger type="submit" { "Rotate secret" }
        }

        h2 id="allowed-ips" { "Allowed IPs" }
        p { "Only these networks may use the account's credentials, here and on the API: addresses or CIDR blocks separated by commas. Empty: any address." }
        form method="post" action="/console/account/allowed-ips" {
            (csrf)
            label for="allowedIps" { "Allowed IPs" }
            input id="allowedIps" name="allowedIps" type="text" value=(typed.allowed_ips.clone().unwrap_or(ips));
            button type="submit" { "Save allowed IPs" }
        }

        h2 id="sub-accounts-heading" { "Sub-accounts" }
        table id="sub-accounts" {
            thead { tr { th { "Account SID" } th { "Email" } th { "Parent" } th { "Status" } th { "Created" } } }
            tbody {
                @for s in shown {
                    tr data-sid=(s.sid) {
                        td { code { (s.sid) } }
                        td { (s.email.as_deref().unwrap_or("")) }
                        td { code { (s.parent().unwrap_or("")) } }
                        td { @if s.suspended { "suspended" } @else { "active" } }
                        td { (date(s.created_ms)) }
                    }
                }
                @if subs.is_empty() { tr { td colspan="5" { "None." } } }
            }
        }
        (pager(PATH, page, SUB_ACCOUNT_ROWS, subs.len() as u64))
    };
    signed.page_with(status, "Account", alert, body)
}

/// The policy as the JSON form takes it: `view` without what is set elsewhere (test numbers,
/// the webhook secret's state).
fn editable_policy(p: &AccountPolicy) -> String {
    let mut v = p.view();
    if let Some(o) = v.as_object_mut() {
        o.remove("testNumbers");
        o.remove("webhookSecret");
    }
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// Apply `update` to the signed-in account as the admin command does (callback URLs as this
/// deployment takes them), refusing senders the account does not already have: the operator
/// grants senders; an account may only narrow its own.
async fn apply(deps: &Deps, account: &Account, update: PolicyUpdate) -> Result<(Account, Made)> {
    if let Some(list) = &update.senders {
        let wanted = senders::list(list, "senders")?;
        let own = account.policy.senders.as_deref();
        if let Some(r) = wanted.iter().find(|r| !senders::covers(own, r)) {
            return Err(Error::invalid(
                "senders",
                format!("{r} is not one of this account's senders (the operator grants senders)"),
            ));
        }
    }
    let rules = deps.dispatcher.callback_url_rules();
    let change = policy::update_policy_with(deps.store.as_ref(), &deps.keys, &account.sid, update, rules).await?;
    let mut after = account.clone();
    after.policy = change.policy;
    Ok((after, Made { webhook: change.webhook_secret.map(|s| s.0), providers: change.provider_secrets }))
}

/// After a change: 303 back with `message`, or, when it made secrets, the page with them
/// this once. A refused change: the page again with the alert and what was typed (never a
/// 5xx for bad input).
async fn finish(
    deps: &Deps,
    signed: &SignedIn,
    result: Result<(Account, Made)>,
    message: &str,
    typed: Typed,
    renames: &[(&str, &str)],
) -> Response {
    match result {
        Ok((after, made)) if made.webhook.is_some() || !made.providers.is_empty() => {
            answer(deps, signed, &after, 0, StatusCode::OK, None, &Typed::default(), made).await
        }
        Ok(_) => signed.done(PATH, message),
        Err(e) => {
            let e = console_error(e, renames);
            let status = status_of(&e);
            if status.is_server_error() {
                return signed.error(e);
            }
            answer(deps, signed, &signed.account, 0, status, Some(&alert(&e)), &typed, Made::default()).await
        }
    }
}

/// A comma-separated country list: empty, every country (None); `none`, none; else the codes.
fn country_list(raw: &str, param: &'static str) -> Result<Option<Vec<String>>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.eq_ignore_ascii_case("none") {
        return Ok(Some(vec![]));
    }
    let list: Vec<String> = raw
        .split([',', ' ', '\n', '\r', '\t'])
        .filter(|c| !c.trim().is_empty())
        .map(|c| phone::country_code(c, param))
        .collect::<Result<_>>()?;
    if list.len() > MAX_COUNTRIES {
        return Err(Error::invalid(param, format!("at most {MAX_COUNTRIES} countries")));
    }
    Ok(Some(list))
}

/// `POST /console/account/geo`: `smsCountries`, `callCountries`, `whatsappCountries`.
pub async fn save_geo(State(deps): State<Deps>, posted: Posted) -> Response {
    let f = &posted.form;
    let typed = Typed {
        sms: Some(f.get("smsCountries").unwrap_or_default().to_owned()),
        call: Some(f.get("callCountries").unwrap_or_default().to_owned()),
        whatsapp: Some(f.get("whatsappCountries").unwrap_or_default().to_owned()),
        ..Default::default()
    };
    let result = async {
        let update = PolicyUpdate {
            allowed_countries: Some(CountriesUpdate {
                sms: Some(country_list(typed.sms.as_deref().unwrap_or(""), "smsCountries")?),
                call: Some(country_list(typed.call.as_deref().unwrap_or(""), "callCountries")?),
                whatsapp: Some(country_list(typed.whatsapp.as_deref().unwrap_or(""), "whatsappCountries")?),
            }),
            ..Default::default()
        };
        apply(&deps, &posted.signed.account, update).await
    }
    .await;
    finish(&deps, &posted.signed, result, "Saved geo permissions.", typed, &[]).await
}

fn whole(raw: &str, param: &'static str) -> Result<u32> {
    raw.trim().parse::<u32>().map_err(|_| Error::invalid(param, "must be a whole number"))
}

/// `POST /console/account/guard`: `enabled` (a checkbox), `minSends`, `minVerifyPercent`,
/// `accountMinSends`, `maxFailedVerifies`.
pub async fn save_guard(State(deps): State<Deps>, posted: Posted) -> Response {
    let f = &posted.form;
    let get = |n: &str| f.get(n).unwrap_or_default().to_owned();
    let g = GuardTyped {
        enabled: f.get("enabled").is_some_and(|v| !v.is_empty() && v != "off"),
        min_sends: get("minSends"),
        min_verify_percent: get("minVerifyPercent"),
        account_min_sends: get("accountMinSends"),
        max_failed_verifies: get("maxFailedVerifies"),
    };
    let result = async {
        let percent = whole(&g.min_verify_percent, "minVerifyPercent")?;
        let update = PolicyUpdate {
            pumping_guard: Some(GuardUpdate {
                enabled: Some(g.enabled),
                min_sends: Some(whole(&g.min_sends, "minSends")?),
                min_verify_percent: Some(
                    u8::try_from(percent).map_err(|_| Error::invalid("minVerifyPercent", "must be 0 to 100"))?,
                ),
                account_min_sends: Some(whole(&g.account_min_sends, "accountMinSends")?),
            }),
            max_failed_verifies: Some(whole(&g.max_failed_verifies, "maxFailedVerifies")?),
            ..Default::default()
        };
        apply(&deps, &posted.signed.account, update).await
    }
    .await;
    let typed = Typed { guard: Some(g), ..Default::default() };
    finish(&deps, &posted.signed, result, "Saved the pumping guard.", typed, &[]).await
}

/// The account's test numbers with their codes, as an update takes them (their codes open
/// under this deployment's keys; one that does not is an internal error, not bad input).
fn current_tests(deps: &Deps, account: &Account) -> Result<Vec<TestNumberInput>> {
    account
        .policy
        .test_destinations
        .iter()
        .map(|t| {
            let code = t.code(&deps.keys, &account.sid).ok_or(Error::Internal)?;
            Ok(TestNumberInput { to: t.to.clone(), code: code.reveal().to_owned() })
        })
        .collect()
}

/// `POST /console/account/test-numbers`: add `to` with its fixed `code`.
pub async fn add_test_number(State(deps): State<Deps>, posted: Posted) -> Response {
    let to = posted.form.get("to").unwrap_or_default().trim().to_owned();
    let code = posted.form.get("code").unwrap_or_default().trim().to_owned();
    let account = &posted.signed.account;
    let result = async {
        if to.is_empty() {
            return Err(Error::missing("testNumbers"));
        }
        let mut list = current_tests(&deps, account)?;
        list.push(TestNumberInput { to: to.clone(), code });
        apply(&deps, account, PolicyUpdate { test_numbers: Some(list), ..Default::default() }).await
    }
    .await;
    let typed = Typed { test_to: Some(to.clone()), ..Default::default() };
    finish(&deps, &posted.signed, result, &format!("Added test number {to}."), typed, &[]).await
}

/// `POST /console/account/test-numbers/remove`: remove `to`.
pub async fn remove_test_number(State(deps): State<Deps>, posted: Posted) -> Response {
    let to = posted.form.get("to").unwrap_or_default().trim().to_owned();
    let account = &posted.signed.account;
    let result = async {
        let mut list = current_tests(&deps, account)?;
        let before = list.len();
        list.retain(|t| t.to != to);
        if list.len() == before {
            return Err(Error::invalid("testNumbers", format!("{to} is not a test number of this account")));
        }
        apply(&deps, account, PolicyUpdate { test_numbers: Some(list), ..Default::default() }).await
    }
    .await;
    finish(&deps, &posted.signed, result, &format!("Removed test number {to}."), Typed::default(), &[]).await
}

/// `POST /console/account/policy`: `policy`, JSON as the admin command takes it.
pub async fn save_policy(State(deps): State<Deps>, posted: Posted) -> Response {
    let text = posted.form.get("policy").unwrap_or_default().to_owned();
    let result = async {
        let value: Value =
            serde_json::from_str(&text).map_err(|e| Error::invalid("policy", format!("not JSON: {e}")))?;
        if !value.is_object() {
            return Err(Error::invalid("policy", "must be a JSON object"));
        }
        let update: PolicyUpdate =
            serde_json::from_value(value).map_err(|e| Error::invalid("policy", format!("not a policy: {e}")))?;
        apply(&deps, &posted.signed.account, update).await
    }
    .await;
    let typed = Typed { policy: Some(text), ..Default::default() };
    finish(&deps, &posted.signed, result, "Saved the policy.", typed, &[]).await
}

/// `POST /console/account/callback`: `callbackUrl` (empty: none) and `callbackMethod`. The
/// account's first callback gets a webhook secret, shown this once.
pub async fn save_callback(State(deps): State<Deps>, posted: Posted) -> Response {
    let url = posted.form.get("callbackUrl").unwrap_or_default().trim().to_owned();
    let method = posted.form.get("callbackMethod").unwrap_or_default().trim().to_owned();
    let update = PolicyUpdate {
        callback_url: Some((!url.is_empty()).then(|| url.clone())),
        callback_method: (!url.is_empty() && !method.is_empty()).then(|| method.clone()),
        ..Default::default()
    };
    let result = apply(&deps, &posted.signed.account, update).await;
    let message = if url.is_empty() { "Removed the callback." } else { "Saved the callback." };
    let typed = Typed {
        callback_url: Some(url),
        callback_method: (!method.is_empty()).then_some(method),
        ..Default::default()
    };
    finish(&deps, &posted.signed, result, message, typed, &[]).await
}

/// `POST /console/account/rotate-secret`: a new webhook secret, answered this once (the
/// answer is the page with it, not a redirect: a reload of the account page never shows it).
pub async fn rotate_secret(State(deps): State<Deps>, posted: Posted) -> Response {
    let update = PolicyUpdate { rotate_webhook_secret: true, ..Default::default() };
    let result = apply(&deps, &posted.signed.account, update).await;
    finish(&deps, &posted.signed, result, "Rotated the webhook secret.", Typed::default(), &[]).await
}

/// `POST /console/account/allowed-ips`: `allowedIps`, comma-separated addresses or CIDR
/// blocks (empty: any). A list that leaves out the address the change comes from is refused:
/// the console holds the list too, so saving it would lock the user out.
pub async fn save_allowed_ips(State(deps): State<Deps>, RequestIp(ip): RequestIp, posted: Posted) -> Response {
    let raw = posted.form.get("allowedIps").unwrap_or_default().to_owned();
    let account = &posted.signed.account;
    let result = async {
        let blocks: Vec<String> =
            raw.split([',', ' ', '\n', '\r', '\t']).filter(|b| !b.trim().is_empty()).map(str::to_owned).collect();
        let list = parse_allowed_ips(&blocks)?;
        if let (false, Some(ip)) = (list.is_empty(), ip) {
            if !list.iter().any(|n| n.contains(ip)) {
                return Err(Error::invalid(
                    "allowedIps",
                    format!("must include the address you are using ({ip}), or you could not sign in again"),
                ));
            }
        }
        deps.store.set_allowed_ips(account, &list).await?;
        let mut after = account.clone();
        after.allowed_ips = list;
        Ok((after, Made::default()))
    }
    .await;
    let typed = Typed { allowed_ips: Some(raw), ..Default::default() };
    finish(&deps, &posted.signed, result, "Saved allowed IPs.", typed, &[("cidr", "allowedIps")]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_country_field_is_every_country_when_empty_none_when_none_else_the_codes() {
        assert_eq!(country_list(" ", "smsCountries").unwrap(), None);
        assert_eq!(country_list("None", "smsCountries").unwrap(), Some(vec![]));
        assert_eq!(
            country_list("us, ca\nGB", "smsCountries").unwrap(),
            Some(vec!["US".into(), "CA".into(), "GB".into()])
        );
        assert!(matches!(country_list("US, USA", "callCountries").unwrap_err(),
            Error::InvalidParameter { param, .. } if param == "callCountries"));
    }

    #[test]
    fn the_policy_form_holds_what_a_policy_update_takes() {
        let text = editable_policy(&AccountPolicy::default());
        let update: PolicyUpdate = serde_json::from_str(&text).expect("the form's JSON is an update as it stands");
        assert!(update.test_numbers.is_none() && !update.rotate_webhook_secret);
    }
}
