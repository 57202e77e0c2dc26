//! Sessions: the search of `/2fa/search` (same filters, same paging) and one OTP's timeline.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
};
use maud::{html, Markup};

use super::SignedIn;
use crate::{
    domain::{
        account::Account,
        error::{Error, Result},
        otp::{Channel, Otp, OtpStatus},
        records::{self, PageToken, SearchFilter, SearchRequest, DEFAULT_PAGE_SIZE},
        time::{self, Millis},
    },
    ports::Deps,
};

const PATH: &str = "/console/sessions";
/// The most rows a page shows (the API's `pageSize` goes to 1,000; a console page stays
/// within its 150 KB at 100).
pub const MAX_ROWS: u64 = 100;

/// The filters as the form sends them (every field text, so a bad one is named, not a 400
/// from the framework).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub(super) struct SearchParams {
    to: Option<String>,
    channel: Option<String>,
    status: Option<String>,
    #[serde(rename = "startDate")]
    start_date: Option<String>,
    #[serde(rename = "endDate")]
    end_date: Option<String>,
    #[serde(rename = "pageSize")]
    page_size: Option<String>,
    page: Option<String>,
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
    #[serde(rename = "subAccounts")]
    sub_accounts: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A parsed search: the filter, the page size and page, and the filters as query pairs (what
/// every page link carries, and what its token is bound to).
struct Search {
    filter: SearchFilter,
    page_size: u64,
    page: u64,
    sub_accounts: bool,
    pairs: Vec<(&'static str, String)>,
}

fn parse(p: &SearchParams) -> Result<Search> {
    let mut pairs = vec![];
    let to = given(&p.to).map(str::to_owned);
    if let Some(t) = &to {
        if t.len() > 254 {
            return Err(Error::invalid("to", "at most 254 characters"));
        }
        pairs.push(("to", t.clone()));
    }
    let channel = match given(&p.channel) {
        None => None,
        Some(c) => {
            pairs.push(("channel", c.to_owned()));
            Some(
                Channel::parse_any(c)
                    .ok_or_else(|| Error::invalid("channel", "must be sms, call, email, whatsapp, totp or passkey"))?,
            )
        }
    };
    let status = match given(&p.status) {
        None => None,
        Some(s) => {
            pairs.push(("status", s.to_owned()));
            Some(
                OtpStatus::parse(&s.to_ascii_lowercase())
                    .ok_or_else(|| Error::invalid("status", "must be pending, success, expired, canceled or failed"))?,
            )
        }
    };
    let date = |name: &'static str, v: Option<&str>, parse: fn(&str) -> Option<Millis>| {
        v.map(|v| parse(v).ok_or_else(|| Error::invalid(name, "must be a UTC date YYYY-MM-DD or date-time")))
            .transpose()
    };
    let start_ms = date("startDate", given(&p.start_date), records::parse_start)?;
    let end_ms = date("endDate", given(&p.end_date), records::parse_end)?;
    if let (Some(s), Some(e)) = (start_ms, end_ms) {
        if e < s {
            return Err(Error::invalid("endDate", "must not be before startDate"));
        }
    }
    pairs.extend(given(&p.start_date).map(|v| ("startDate", v.to_owned())));
    pairs.extend(given(&p.end_date).map(|v| ("endDate", v.to_owned())));
    let page_size = match given(&p.page_size) {
        None => DEFAULT_PAGE_SIZE,
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=MAX_ROWS).contains(n))
            .ok_or_else(|| Error::invalid("pageSize", format!("must be a whole number from 1 to {MAX_ROWS}")))?,
    };
    let page = match given(&p.page) {
        None => 0,
        Some(s) => s.parse::<u64>().map_err(|_| Error::invalid("page", "must be a whole number from 0"))?,
    };
    let sub_accounts = given(&p.sub_accounts).is_some_and(|v| v == "true" || v == "on");
    if sub_accounts {
        pairs.push(("subAccounts", "true".to_owned()));
    }
    let filter = SearchFilter { status, service: None, to, channel, start_ms, end_ms };
    Ok(Search { filter, page_size, page, sub_accounts, pairs })
}

fn query(pairs: &[(&str, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// The account, then (with `sub_accounts`) every account below it.
async fn tree(deps: &Deps, account: &Account, sub_accounts: bool) -> Result<Vec<String>> {
    let mut sids = vec![account.sid.clone()];
    if sub_accounts {
        let mut subs: Vec<String> =
            deps.store.list_sub_accounts(&account.sid).await?.into_iter().map(|a| a.sid).collect();
        subs.sort();
        sids.extend(subs);
    }
    Ok(sids)
}

pub(super) async fn list(State(deps): State<Deps>, signed: SignedIn, Query(p): Query<SearchParams>) -> Response {
    let search = match parse(&p) {
        Ok(s) => s,
        Err(e) => {
            let alert = e.to_string();
            return signed.page_with(StatusCode::BAD_REQUEST, "Sessions", Some(&alert), filters(&p));
        }
    };
    match search_page(&deps, &signed, &p, &search).await {
        Ok(body) => signed.page("Sessions", body),
        Err(e @ Error::InvalidParameter { .. }) => {
            let alert = e.to_string();
            signed.page_with(StatusCode::BAD_REQUEST, "Sessions", Some(&alert), filters(&p))
        }
        Err(e) => signed.error(e),
    }
}

async fn search_page(deps: &Deps, signed: &SignedIn, p: &SearchParams, s: &Search) -> Result<Markup> {
    let keys = deps.keys.as_ref();
    // A token opens only for this account and this very search (as the API's).
    let context = format!("console|{}|{}|{}", signed.account.sid, s.page_size, query(&s.pairs));
    let token = given(&p.page_token).map(|t| PageToken::open(t, keys, &context)).transpose()?;
    if let Some(t) = &token {
        if t.page != s.page {
            return Err(Error::invalid("pageToken", "belongs to another page"));
        }
    }
    let accounts = tree(deps, &signed.account, s.sub_accounts).await?;
    let req = SearchRequest { filter: s.filter.clone(), page: s.page, page_size: s.page_size, token };
    let found = records::search(deps, &accounts, &req).await?;
    let now = deps.clock.now_ms();
    let link = |page: u64, token: Option<&PageToken>| {
        let mut pairs = s.pairs.clone();
        pairs.push(("pageSize", s.page_size.to_string()));
        pairs.push(("page", page.to_string()));
        pairs.extend(token.map(|t| ("pageToken", t.seal(keys, &context))));
        format!("{PATH}?{}", query(&pairs))
    };
    let prev = (found.page > 0).then(|| link(found.page - 1, found.previous.as_ref()));
    let next = found.next.as_ref().map(|t| link(found.page + 1, Some(t)));
    let pages = found.total.div_ceil(s.page_size).max(1);
    Ok(html! {
        (filters(p))
        p { (found.total) " session" @if found.total != 1 { "s" } " · page " (found.page + 1) " of " (pages) }
        table #sessions {
            thead { tr { th { "OTP" } th { "Created (UTC)" } th { "Service" } th { "Channel" } th { "To" }
                th { "Country" } th { "Status" } } }
            tbody {
                @for otp in &found.otps {
                    tr data-sid=(otp.sid) {
                        td { a.mono href=(timeline_href(otp)) { (otp.sid) } }
                        td { time datetime=(time::iso(otp.created_ms)) { (time::sdr(otp.created_ms)) } }
                        td { (otp.service) }
                        td { (otp.delivery.channel.as_str()) }
                        td.mono { (mask(&otp.delivery.to)) }
                        td { (otp.country.as_deref().unwrap_or("–")) }
                        td { (otp.status_at(now).as_str()) }
                    }
                }
            }
        }
        @if found.otps.is_empty() { p { "No session matches." } }
        nav.pager aria-label="Pages" {
            @if let Some(href) = &prev { a href=(href) rel="prev" { "← Newer" } }
            @if let Some(href) = &next { a href=(href) rel="next" { "Older →" } }
        }
    })
}

fn timeline_href(otp: &Otp) -> String {
    format!("{PATH}/{}", otp.sid)
}

fn filters(p: &SearchParams) -> Markup {
    let v = |f: &Option<String>| f.clone().unwrap_or_default();
    let status = v(&p.status);
    let channel = v(&p.channel);
    html! {
        form.filters method="get" action=(PATH) {
            label for="to" { "To" input #to type="text" name="to" value=(v(&p.to)); }
            label for="channel" { "Channel"
                select #channel name="channel" {
                    option value="" { "any" }
                    @for c in Channel::ALL {
                        option value=(c.as_str()) selected[channel == c.as_str()] { (c.as_str()) }
                    }
                }
            }
            label for="status" { "Status"
                select #status name="status" {
                    option value="" { "any" }
                    @for s in ["pending", "success", "expired", "canceled", "failed"] {
                        option value=(s) selected[status == s] { (s) }
                    }
                }
            }
            label for="startDate" { "From" input #startDate type="date" name="startDate" value=(v(&p.start_date)); }
            label for="endDate" { "To date" input #endDate type="date" name="endDate" value=(v(&p.end_date)); }
            label for="pageSize" { "Per page"
                input #pageSize type="number" name="pageSize" min="1" max=(MAX_ROWS)
                    value=(p.page_size.clone().unwrap_or_else(|| DEFAULT_PAGE_SIZE.to_string()));
            }
            label for="subAccounts" { "Sub-accounts"
                input #subAccounts type="checkbox" name="subAccounts" value="true" checked[given(&p.sub_accounts).is_some()];
            }
            button type="submit" { "Search" }
        }
    }
}

/// A destination masked but for its last 4 characters.
pub fn mask(to: &str) -> String {
    let n = to.chars().count();
    let keep = n.min(4);
    let masked = n - keep;
    let tail: String = to.chars().skip(masked).collect();
    format!("{}{tail}", "•".repeat(masked))
}

/// One entry of a timeline.
struct Entry {
    at_ms: Millis,
    kind: &'static str,
    body: Markup,
}

pub(super) async fn timeline(State(deps): State<Deps>, signed: SignedIn, Path(sid): Path<String>) -> Response {
    // The account's own and its sub-accounts' OTPs (the tree it sees); anything else is the
    // same 404 as an unknown sid.
    let found = async {
        let accounts = tree(&deps, &signed.account, true).await?;
        records::find(&deps, &accounts, &sid).await
    }
    .await;
    let otp = match found {
        Ok(otp) => otp,
        Err(Error::NotFound) => {
            return signed.page_with(
                StatusCode::NOT_FOUND,
                "Not found",
                Some("There is no such session."),
                html! {
                    p { a href=(PATH) { "Back to sessions" } }
                },
            )
        }
        Err(e) => return signed.error(e),
    };
    let now = deps.clock.now_ms();
    let title = format!("Session {}", otp.sid);
    signed.page(&title, timeline_body(&otp, now))
}

fn timeline_body(otp: &Otp, now: Millis) -> Markup {
    let status = otp.status_at(now);
    let mut entries = vec![Entry {
        at_ms: otp.created_ms,
        kind: "send",
        body: html! { "Sent for service " code { (otp.service) } " by " (otp.delivery.channel.as_str())
        ", a " (otp.length) "-digit code valid until " (time::sdr(otp.expires_ms)) },
    }];
    for (i, e) in otp.events.iter().enumerate() {
        entries.push(Entry {
            at_ms: e.at_ms,
            kind: "event",
            body: html! {
                (e.channel.as_str()) " message " @if i > 0 { "(" (i + 1) ") " } "to " span.mono { (mask(&e.recipient)) }
                ": " strong data-status=(e.status.as_str()) { (e.status.as_str()) }
                @if let Some(route) = &e.route { " via " code { (route) } }
                @if e.error_code.is_some() || e.error_message.is_some() {
                    " — error " code { (e.error_code.as_deref().unwrap_or("")) } " " (e.error_message.as_deref().unwrap_or(""))
                }
            },
        });
    }
    if let Some(run) = &otp.workflow {
        for (i, step) in run.steps.iter().enumerate() {
            let due = run.due_ms(otp.created_ms, i);
            let state = if (i as u32) < run.sent {
                "sent"
            } else if status == OtpStatus::Pending {
                "scheduled"
            } else {
                "not sent"
            };
            entries.push(Entry {
                at_ms: due,
                kind: "step",
                body: html! { "Workflow step " (i + 1) " (" (step.channel.as_str()) ", after " (step.interval_secs) " s): " (state) },
            });
        }
    }
    for c in &otp.checks {
        entries.push(Entry {
            at_ms: c.at_ms,
            kind: "check",
            body: html! { "Code checked: " strong { @if c.valid { "valid" } @else { "invalid" } } },
        });
    }
    let end = otp.updated_at(now);
    match status {
        OtpStatus::Success => entries.push(Entry { at_ms: end, kind: "verified", body: html! { "Verified" } }),
        OtpStatus::Canceled => entries.push(Entry { at_ms: end, kind: "canceled", body: html! { "Canceled" } }),
        OtpStatus::Expired => entries.push(Entry { at_ms: end, kind: "expired", body: html! { "Expired" } }),
        OtpStatus::Failed => {
            entries.push(Entry { at_ms: end, kind: "failed", body: html! { "Failed: no attempts left" } })
        }
        OtpStatus::Pending => {}
    }
    // In time order; the send first, and the end last among ties.
    entries.sort_by_key(|e| (e.at_ms, matches!(e.kind, "verified" | "canceled" | "expired" | "failed")));
    html! {
        dl.facts {
            dt { "To" } dd.mono data-field="to" { (mask(&otp.delivery.to)) }
            dt { "Status" } dd data-field="status" { (status.as_str()) }
            dt { "Service" } dd { (otp.service) }
            dt { "Account" } dd.mono { (otp.account_sid) }
            dt { "Country" } dd { (otp.country.as_deref().unwrap_or("–")) }
            dt { "Attempts" } dd { (otp.checks.len()) }
        }
        h2 { "Timeline" }
        ol #timeline {
            @for e in &entries {
                li data-kind=(e.kind) {
                    time datetime=(time::iso(e.at_ms)) { (time::sdr(e.at_ms)) " UTC" }
                    (e.body)
                }
            }
        }
        p { a href=(PATH) { "Back to sessions" } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_shows_only_its_last_four_characters() {
        assert_eq!(mask("+14155550100"), "••••••••0100");
        assert_eq!(mask("a@b.io"), "••b.io");
        assert_eq!(mask("123"), "123");
    }

    #[test]
    fn filters_name_the_bad_parameter() {
        let p = SearchParams { channel: Some("fax".into()), ..Default::default() };
        assert!(parse(&p).err().unwrap().to_string().contains("channel"));
        for size in ["0", "101", "ten"] {
            let p = SearchParams { page_size: Some(size.into()), ..Default::default() };
            assert!(parse(&p).err().unwrap().to_string().contains("pageSize"), "{size}");
        }
        let p = SearchParams {
            start_date: Some("2026-12-05".into()),
            end_date: Some("2026-12-01".into()),
            ..Default::default()
        };
        assert!(parse(&p).err().unwrap().to_string().contains("endDate"));
    }
}
