//! The console's management pages (docs/console.md): limits, workflows, account.
//!
//! - `/console/limits`, `/console/limits/{sid}` (and `/delete`), the same for
//!   `/console/workflows` (`definitions`: one implementation for both);
//! - `/console/account` and its forms (`account`).
//!
//! Every page acts for the signed-in account only (a sub-account sees and edits itself, and
//! lists the accounts below it). Every change is a POST through `Posted` (its CSRF token
//! checked: 403 without), made by the same domain functions as the API and the admin command
//! (same validation, same messages), and answers 303 back to its page with a flash; bad input
//! answers its form again (4xx) with the message, naming the field, in `role="alert"`.
//!
//! The console core (`super`) gives what every page needs: `SignedIn` (the session: the
//! account, the CSRF token, the flash; `page`, `page_with`, `error`, `done`, `csrf_input`),
//! `Posted` (a POST's session and form, CSRF checked) and the layout.

mod account;
mod definitions;

use axum::{
    http::StatusCode,
    response::Response,
    routing::{get, post},
    Router,
};
use maud::{html, Markup};

use crate::{
    domain::{error::Error, limits::LimitDef, time::Millis, workflows::WorkflowDef},
    http::{console::SignedIn, error::status_and_code},
    ports::Deps,
};

/// The management pages' routes (full paths, `/console/limits`...), merged into the console's.
pub fn router() -> Router<Deps> {
    use definitions as d;
    Router::new()
        .route("/console/limits", get(d::list_page::<LimitDef>).post(d::create::<LimitDef>))
        .route("/console/limits/{sid}", get(d::edit_page::<LimitDef>).post(d::update::<LimitDef>))
        .route("/console/limits/{sid}/delete", post(d::delete::<LimitDef>))
        .route("/console/workflows", get(d::list_page::<WorkflowDef>).post(d::create::<WorkflowDef>))
        .route("/console/workflows/{sid}", get(d::edit_page::<WorkflowDef>).post(d::update::<WorkflowDef>))
        .route("/console/workflows/{sid}/delete", post(d::delete::<WorkflowDef>))
        .route("/console/account", get(account::page))
        .route("/console/account/geo", post(account::save_geo))
        .route("/console/account/guard", post(account::save_guard))
        .route("/console/account/test-numbers", post(account::add_test_number))
        .route("/console/account/test-numbers/remove", post(account::remove_test_number))
        .route("/console/account/policy", post(account::save_policy))
        .route("/console/account/callback", post(account::save_callback))
        .route("/console/account/rotate-secret", post(account::rotate_secret))
        .route("/console/account/allowed-ips", post(account::save_allowed_ips))
}

/// `?page=N` of a paged table: from 0; anything else is the first page (a link cut short
/// should not answer an error page).
#[derive(Debug, Default, serde::Deserialize)]
struct PageParam {
    page: Option<String>,
}

impl PageParam {
    fn number(&self) -> u64 {
        self.page.as_deref().and_then(|p| p.trim().parse().ok()).unwrap_or(0)
    }
}

/// The HTTP status the API answers `e` with.
fn status_of(e: &Error) -> StatusCode {
    status_and_code(e).0
}

/// `e` with its parameter named as the console's form names it (`channels` → `steps`, also
/// `channels[0].interval` → `steps[0].interval`).
fn console_error(e: Error, renames: &[(&str, &str)]) -> Error {
    match e {
        Error::InvalidParameter { param, reason } => {
            let param = renames
                .iter()
                .find_map(|(from, to)| {
                    param
                        .strip_prefix(from)
                        .filter(|rest| rest.is_empty() || rest.starts_with('['))
                        .map(|rest| format!("{to}{rest}"))
                })
                .map_or(param, Into::into);
            Error::InvalidParameter { param, reason }
        }
        e => e,
    }
}

/// What the alert of a refused change says: the API's message, naming the field where the
/// API's does not (a name already taken).
fn alert(e: &Error) -> String {
    match e {
        Error::LimitNameExists | Error::WorkflowNameExists => format!("Invalid parameter: name ({e})"),
        e => e.to_string(),
    }
}

/// A time as the pages show it: `2026-12-07 10:00 UTC`.
fn date(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// Links to the previous and next page of a list of `total` rows (`rel="prev"`/`"next"`).
fn pager(path: &str, page: u64, rows: u64, total: u64) -> Markup {
    let pages = total.div_ceil(rows).max(1);
    html! {
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if page > 0 { a rel="prev" href={ (path) "?page=" (page - 1) } { "Previous" } " " }
                "Page " (page.saturating_add(1).min(pages)) " of " (pages)
                @if page.saturating_add(1) < pages { " " a rel="next" href={ (path) "?page=" (page + 1) } { "Next" } }
            }
        }
    }
}

/// A 404 page saying `message`.
fn not_found(signed: &SignedIn, title: &str, message: &str) -> Response {
    signed.page_with(
        StatusCode::NOT_FOUND,
        title,
        Some(message),
        html! { p { a href="/console" { "Back to the console" } } },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(e: Error) -> String {
        match e {
            Error::InvalidParameter { param, .. } => param.into_owned(),
            e => panic!("not a parameter error: {e:?}"),
        }
    }

    #[test]
    fn an_api_parameter_is_named_as_the_console_form_names_it() {
        let renames = [("channels", "steps"), ("cidr", "allowedIps")];
        assert_eq!(param(console_error(Error::invalid("channels", "x"), &renames)), "steps");
        assert_eq!(param(console_error(Error::invalid("channels[2].interval", "x"), &renames)), "steps[2].interval");
        assert_eq!(param(console_error(Error::invalid("cidr", "x"), &renames)), "allowedIps");
        assert_eq!(param(console_error(Error::invalid("channelsX", "x"), &renames)), "channelsX", "a prefix only");
        assert_eq!(console_error(Error::Forbidden, &renames), Error::Forbidden);
    }

    #[test]
    fn a_taken_name_is_an_alert_naming_the_name_field() {
        assert!(alert(&Error::LimitNameExists).contains("name"));
        assert!(alert(&Error::WorkflowNameExists).contains("name"));
        assert_eq!(alert(&Error::invalid("buckets", "malformed JSON")), "Invalid parameter: buckets (malformed JSON)");
    }

    #[test]
    fn the_pager_links_only_to_pages_that_exist() {
        assert!(pager("/console/limits", 0, 100, 100).into_string().is_empty(), "one page: no pager");
        let first = pager("/console/limits", 0, 100, 101).into_string();
        assert!(first.contains(r#"rel="next" href="/console/limits?page=1""#) && !first.contains("prev"));
        let last = pager("/console/limits", 1, 100, 101).into_string();
        assert!(last.contains(r#"rel="prev" href="/console/limits?page=0""#) && !last.contains("next"));
        assert_eq!(PageParam { page: Some("x".into()) }.number(), 0);
        assert_eq!(PageParam { page: Some("3".into()) }.number(), 3);
    }
}
