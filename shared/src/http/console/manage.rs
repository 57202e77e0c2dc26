//! The console's management pages (docs/console.md): limits, workflows, account.
//!
//! Owned by the `console-manage` work; `super` (the console core) gives it what every page
//! needs, all in `crate::http::console`:
//!
//! - `SignedIn` (an axum extractor, `FromRequestParts<Deps>`): the signed-in session. Its
//!   fields: `account: Account` (the signed-in account, checked against its suspension and IP
//!   allow-list on this request), `csrf: String` (the session's CSRF token), `flash:
//!   Option<String>` (what the last change said, shown by the layout as `role="status"`).
//!   Not signed in (no cookie, ended or expired session): the extractor answers 303 to
//!   `/console/sign-in`; suspended or a refused address: a 403 page.
//!   - `signed.csrf_input() -> Markup`: the hidden `csrf` input every changing form carries.
//!   - `signed.page(title: &str, body: Markup) -> Response`: 200, the layout (nav, `<h1>`
//!     title, the flash) around `body`.
//!   - `signed.page_with(status: StatusCode, title: &str, alert: Option<&str>, body: Markup)
//!     -> Response`: the same with a status and an error shown as `role="alert"` (a form
//!     answered again with what was wrong).
//!   - `signed.error(e: Error) -> Response`: a domain error as a page (status as the API's,
//!     its message as the alert).
//!   - `signed.done(to: &str, message: &str) -> Response`: after a change, 303 to `to`
//!     (a `/console/...` path), whose page then shows `message` as `role="status"`.
//!   - `signed.check_csrf(given: Option<&str>) -> Result<(), Response>`: Err is the 403 page.
//! - `Posted` (an axum extractor, `FromRequest<Deps>`, for every POST): the session and the
//!   urlencoded form, its `csrf` already checked (403 page otherwise). `posted.signed:
//!   SignedIn`, `posted.form: Form` with `form.get(name) -> Option<&str>` (first value,
//!   trimmed of nothing), `form.all(name) -> Vec<&str>`.
//! - `layout(title: &str, signed: Option<&SignedIn>, alert: Option<&str>, body: Markup) ->
//!   Markup` and `respond(status: StatusCode, page: Markup) -> Response` for anything else.
//! - Templates are `maud::html!`; the stylesheet is `/console/assets/console.css`
//!   (`shared/src/http/console/console.css`; classes `.figures`, `.figure`, `table`,
//!   `form.inline`, `.danger`, `.secret` are styled). No inline style or script: the CSP
//!   forbids them.
//!
//! The console's security headers (CSP, nosniff, no-referrer, no-store) are added to every
//! route of this router by `super::routes()`; nothing to do here.

use axum::Router;

use crate::ports::Deps;

/// The management pages' routes (full paths, `/console/limits`...), merged into the console's.
pub fn router() -> Router<Deps> {
    Router::new()
}
