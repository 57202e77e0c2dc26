//! Sign-in, sign-out and the session behind `SignedIn` (`domain::console`).

use axum::{
    extract::{Request, State},
    http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Router,
};
use maud::{html, Markup};

use super::{layout, read_form, respond, Posted, SignedIn, COOKIE, FLASH_COOKIE};
use crate::{
    domain::console::{self, ResumeError, SignInError, MAX_AGE_MS},
    http::auth::client_ip,
    ports::Deps,
};

pub(super) const SIGN_IN_PATH: &str = "/console/sign-in";
const WRONG: &str = "The account SID or auth token is wrong.";
const REFUSED: &str =
    "This account cannot use the console from here: it is suspended, or this address is not in its allowed IPs.";

pub(super) fn routes() -> Router<Deps> {
    Router::new().route(SIGN_IN_PATH, get(sign_in_page).post(sign_in)).route("/console/sign-out", post(sign_out))
}

async fn sign_in_page() -> Response {
    sign_in_form(StatusCode::OK, None, "")
}

fn sign_in_form(status: StatusCode, alert: Option<&str>, sid: &str) -> Response {
    let body: Markup = html! {
        form.stack method="post" action=(SIGN_IN_PATH) {
            label for="accountSid" { "Account SID" }
            input #accountSid type="text" name="accountSid" value=(sid) required autocomplete="username"
                spellcheck="false" autocapitalize="none";
            label for="authToken" { "Auth token" }
            input #authToken type="password" name="authToken" required autocomplete="current-password";
            button type="submit" { "Sign in" }
        }
    };
    respond(status, layout("Sign in", None, alert, body))
}

async fn sign_in(State(deps): State<Deps>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    // A sign-in posted from another site (login CSRF) is refused; browsers say where a form
    // came from.
    if cross_site(&parts.headers) {
        return sign_in_form(StatusCode::FORBIDDEN, Some("Sign in from the console's own page."), "");
    }
    let Ok(form) = read_form(body).await else {
        return sign_in_form(StatusCode::BAD_REQUEST, Some(WRONG), "");
    };
    let sid = form.get("accountSid").unwrap_or("").trim();
    let token = form.get("authToken").unwrap_or("");
    let now = deps.clock.now_ms();
    match console::sign_in(deps.store.as_ref(), &deps.keys, sid, token, client_ip(&parts), now).await {
        Ok((cookie, _)) => {
            let mut res = Redirect::to("/console/overview").into_response();
            set_cookie(&mut res, &session_cookie(&cookie));
            res
        }
        Err(SignInError::Wrong) => sign_in_form(StatusCode::UNAUTHORIZED, Some(WRONG), sid),
        Err(SignInError::Refused) => sign_in_form(StatusCode::FORBIDDEN, Some(REFUSED), sid),
        Err(SignInError::TooMany { retry_after_secs }) => {
            let minutes = retry_after_secs.div_ceil(60);
            let alert = format!(
                "Too many sign-in attempts. Try again in {minutes} minute{}.",
                if minutes == 1 { "" } else { "s" }
            );
            let mut res = sign_in_form(StatusCode::TOO_MANY_REQUESTS, Some(&alert), sid);
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            res
        }
        Err(SignInError::Failed(e)) => {
            tracing::warn!(error = %e, "console sign-in failed");
            sign_in_form(StatusCode::SERVICE_UNAVAILABLE, Some("Something failed on our side; try again."), sid)
        }
    }
}

/// Whether the browser says the request came from another site (`Sec-Fetch-Site`, or an
/// `Origin` naming another host than `Host`).
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if text("sec-fetch-site").is_some_and(|s| s == "cross-site" || s == "same-site") {
        return true;
    }
    match (text("origin"), text("host")) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) != Some(host),
        _ => false,
    }
}

async fn sign_out(State(deps): State<Deps>, headers: HeaderMap, posted: Posted) -> Response {
    drop(posted);
    if let Some(cookie) = cookie_value(&headers, COOKIE) {
        if let Err(e) = console::sign_out(deps.store.as_ref(), &deps.keys, cookie).await {
            tracing::warn!(error = %e, "console sign-out failed");
            return respond(
                StatusCode::SERVICE_UNAVAILABLE,
                layout("Sign out", None, Some("Something failed on our side; try again."), html! {}),
            );
        }
    }
    let mut res = Redirect::to(SIGN_IN_PATH).into_response();
    set_cookie(&mut res, &cleared(COOKIE));
    res
}

/// The signed-in session of a request, or what to answer instead.
pub(super) async fn signed_in(parts: &mut Parts, deps: &Deps) -> Result<SignedIn, Response> {
    let Some(cookie) = cookie_value(&parts.headers, COOKIE) else {
        return Err(Redirect::to(SIGN_IN_PATH).into_response());
    };
    let now = deps.clock.now_ms();
    match console::resume(deps.store.as_ref(), &deps.keys, cookie, client_ip(parts), now).await {
        Ok((account, id)) => {
            let session_key = id.key();
            let flash = cookie_value(&parts.headers, FLASH_COOKIE)
                .and_then(|v| console::open_flash(&deps.keys, &session_key, v));
            Ok(SignedIn { account, csrf: id.csrf(), flash, session_key, keys: deps.keys.clone() })
        }
        Err(ResumeError::SignedOut) => {
            let mut res = Redirect::to(SIGN_IN_PATH).into_response();
            set_cookie(&mut res, &cleared(COOKIE));
            Err(res)
        }
        Err(ResumeError::Refused) => {
            Err(respond(StatusCode::FORBIDDEN, layout("Forbidden", None, Some(REFUSED), html! {})))
        }
        Err(ResumeError::Failed(e)) => {
            tracing::warn!(error = %e, "console session read failed");
            Err(respond(
                StatusCode::SERVICE_UNAVAILABLE,
                layout("Unavailable", None, Some("Something failed on our side; try again."), html! {}),
            ))
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(super) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

fn attributes(max_age_secs: i64) -> String {
    format!("Path=/console; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age_secs}")
}

fn session_cookie(value: &str) -> String {
    format!("{COOKIE}={value}; {}", attributes(MAX_AGE_MS / 1000))
}

/// `Set-Cookie` of a flash saying `message`, bound to the session `session_key`.
pub(super) fn flash_cookie(keys: &crate::domain::crypto::Keys, session_key: &str, message: &str) -> String {
    format!("{FLASH_COOKIE}={}; {}", console::seal_flash(keys, session_key, message), attributes(60))
}

/// `Set-Cookie` that removes cookie `name`.
pub(super) fn cleared(name: &str) -> String {
    format!("{name}=; {}", attributes(0))
}

pub(super) fn set_cookie(res: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}
