//! The operator console (issue 28, contract: docs/console.md): server-rendered pages under
//! `/console`, served by the `console` Lambda and by the dev server from this one router.
//! HTML from `maud` templates, one embedded stylesheet, charts drawn as SVG here, no script.
//!
//! What every page shares lives here: the router, the security headers, the layout, the
//! signed-in extractor (`SignedIn`), the POST form extractor that checks the CSRF token
//! (`Posted`), and the flash a change leaves for the page it redirects to. The management
//! pages are in `manage`; sign-in and the session in `session`.

// A page is what a refused request answers (an axum `Response`, as a handler returns it).
#![allow(clippy::result_large_err)]

mod charts;
pub mod manage;
mod overview;
mod session;
mod sessions;

use std::sync::Arc;

use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::get,
    Router,
};
use maud::{html, Markup, DOCTYPE};

use crate::{
    domain::{account::Account, crypto::Keys, error::Error},
    http::error::status_and_code,
    ports::Deps,
};

/// Where the console is mounted.
pub const BASE: &str = "/console";
/// The session cookie.
pub const COOKIE: &str = "twofa_console";
/// The cookie a change leaves for the page it redirects to (`SignedIn::done`), read once.
pub const FLASH_COOKIE: &str = "twofa_console_flash";
/// The stylesheet, the one asset.
pub const CSS_PATH: &str = "/console/assets/console.css";
const CSS: &str = include_str!("console.css");

/// The Content-Security-Policy of every console answer (docs/console.md "Security").
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// Every console page and its stylesheet.
fn pages() -> Router<Deps> {
    Router::new()
        .route(BASE, get(root))
        .route(CSS_PATH, get(stylesheet))
        .route("/console/assets/icon.svg", get(icon))
        .route("/console/overview", get(overview::page))
        .route("/console/sessions", get(sessions::list))
        .route("/console/sessions/{sid}", get(sessions::timeline))
        .merge(session::routes())
        .merge(manage::router())
}

/// The console's routes (full paths) with its security headers, for a server that mounts
/// several routers (the dev server): no fallback of its own.
pub fn routes() -> Router<Deps> {
    pages().layer(middleware::from_fn(security_headers))
}

/// The console alone (its Lambda): `routes()` with an HTML 404 for anything else.
pub fn router(deps: Deps) -> Router {
    pages().fallback(not_found).layer(middleware::from_fn(security_headers)).with_state(deps)
}

async fn root(signed: Option<SignedIn>) -> Response {
    match signed {
        Some(_) => Redirect::to("/console/overview").into_response(),
        None => Redirect::to("/console/sign-in").into_response(),
    }
}

async fn icon() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"))], "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\"><rect width=\"16\" height=\"16\" fill=\"#1f4e79\"/></svg>").into_response()
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        CSS,
    )
        .into_response()
}

async fn not_found() -> Response {
    respond(StatusCode::NOT_FOUND, layout("Not found", None, Some("There is no such page."), html! {}))
}

/// The headers of every console answer: the CSP, no sniffing, no referrer, no caching (but
/// the stylesheet's own), no framing.
async fn security_headers(req: Request, next: Next) -> Response {
    let had_flash = session::cookie_value(req.headers(), FLASH_COOKIE).is_some();
    let mut res = next.run(req).await;
    // A page has shown the flash: it is not shown again.
    if had_flash && res.status() != StatusCode::SEE_OTHER && !sets_cookie(&res, FLASH_COOKIE) {
        session::set_cookie(&mut res, &session::cleared(FLASH_COOKIE));
    }
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    res
}

fn sets_cookie(res: &Response, name: &str) -> bool {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.strip_prefix(name).is_some_and(|rest| rest.starts_with('='))))
}

/// An HTML answer.
pub fn respond(status: StatusCode, page: Markup) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], page.into_string())
        .into_response()
}

/// The page shell: the stylesheet, the nav (when signed in: Overview, Sessions, Limits,
/// Workflows, Account and the Sign out form), the `<h1>` title, the flash of the last change
/// (`role="status"`) and `alert` (`role="alert"`), then `body`.
pub fn layout(title: &str, signed: Option<&SignedIn>, alert: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · twofa console" }
                link rel="stylesheet" href=(CSS_PATH);
                link rel="icon" href="/console/assets/icon.svg";
            }
            body {
                @if let Some(s) = signed {
                    header {
                        nav aria-label="Console" {
                            a href="/console/overview" { "Overview" }
                            a href="/console/sessions" { "Sessions" }
                            a href="/console/limits" { "Limits" }
                            a href="/console/workflows" { "Workflows" }
                            a href="/console/account" { "Account" }
                            form.inline method="post" action="/console/sign-out" {
                                (s.csrf_input())
                                button type="submit" { "Sign out" }
                            }
                        }
                        p.who { "Signed in as " code { (s.account.sid) } }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(message) = signed.and_then(|s| s.flash.as_deref()) {
                        p.status role="status" { (message) }
                    }
                    @if let Some(alert) = alert {
                        p.alert role="alert" { (alert) }
                    }
                    (body)
                }
            }
        }
    }
}

/// The signed-in session of a request (an extractor): the account, checked on this request
/// against its suspension (and its ancestors') and IP allow-list as the API checks them, the
/// session's CSRF token, and the flash the last change left. Without a live session it answers
/// 303 to the sign-in page; a suspended account or a refused address answers a 403 page.
pub struct SignedIn {
    pub account: Account,
    pub csrf: String,
    pub flash: Option<String>,
    /// The session id's hash (what the flash is bound to).
    session_key: String,
    keys: Arc<Keys>,
}

impl SignedIn {
    /// The hidden `csrf` input every form that changes something carries.
    pub fn csrf_input(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    /// Ok when `given` is this session's CSRF token; else the 403 page.
    pub fn check_csrf(&self, given: Option<&str>) -> Result<(), Response> {
        match given {
            Some(g) if crate::domain::crypto::ct_eq(g.as_bytes(), self.csrf.as_bytes()) => Ok(()),
            _ => Err(respond(
                StatusCode::FORBIDDEN,
                layout(
                    "Forbidden",
                    Some(self),
                    Some("The form was stale or not ours: load the page and try again."),
                    html! {},
                ),
            )),
        }
    }

    /// 200: the layout around `body`.
    pub fn page(&self, title: &str, body: Markup) -> Response {
        self.page_with(StatusCode::OK, title, None, body)
    }

    /// The layout around `body`, answered with `status`, `alert` shown as `role="alert"`.
    pub fn page_with(&self, status: StatusCode, title: &str, alert: Option<&str>, body: Markup) -> Response {
        respond(status, layout(title, Some(self), alert, body))
    }

    /// A domain error as a page: the API's status, its message as the alert.
    pub fn error(&self, e: Error) -> Response {
        let (status, _) = status_and_code(&e);
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Forbidden",
            s if s.is_server_error() => "Unavailable",
            _ => "Error",
        };
        let message = if status.is_server_error() {
            "Something failed on our side; try again.".to_owned()
        } else {
            e.to_string()
        };
        self.page_with(status, title, Some(&message), html! {})
    }

    /// After a change: 303 to `to` (a `/console/...` path), whose page shows `message` as
    /// `role="status"` (once).
    pub fn done(&self, to: &str, message: &str) -> Response {
        let mut res = Redirect::to(to).into_response();
        if let Ok(v) = HeaderValue::from_str(&session::flash_cookie(&self.keys, &self.session_key, message)) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
        res
    }
}

impl FromRequestParts<Deps> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, deps: &Deps) -> Result<Self, Self::Rejection> {
        session::signed_in(parts, deps).await
    }
}

impl axum::extract::OptionalFromRequestParts<Deps> for SignedIn {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, deps: &Deps) -> Result<Option<Self>, Self::Rejection> {
        Ok(session::signed_in(parts, deps).await.ok())
    }
}

/// A POST's urlencoded fields, in order.
#[derive(Debug, Default, Clone)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// The largest form the console takes.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// A POST from a signed-in session (an extractor): its form, the `csrf` field checked
/// against the session's (a 403 page otherwise).
pub struct Posted {
    pub signed: SignedIn,
    pub form: Form,
}

impl FromRequest<Deps> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, deps: &Deps) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let signed = session::signed_in(&mut parts, deps).await?;
        let form = read_form(body)
            .await
            .map_err(|status| signed.page_with(status, "Error", Some("The form could not be read."), html! {}))?;
        signed.check_csrf(form.get("csrf"))?;
        Ok(Posted { signed, form })
    }
}

/// The urlencoded body, at most `MAX_FORM_BYTES`.
async fn read_form(body: axum::body::Body) -> Result<Form, StatusCode> {
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| StatusCode::PAYLOAD_TOO_LARGE)?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).map_err(|_| StatusCode::BAD_REQUEST)?;
    Ok(Form(pairs))
}
