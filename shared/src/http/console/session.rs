//! Sign-in, sign-out and the session behind `SignedIn`.

use axum::{
    http::{request::Parts, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::get,
    Router,
};
use maud::html;

use super::{layout, respond, SignedIn};
use crate::{domain::crypto::Keys, ports::Deps};

pub(super) fn routes() -> Router<Deps> {
    Router::new().route("/console/sign-in", get(sign_in_page))
}

async fn sign_in_page() -> Response {
    respond(StatusCode::OK, layout("Sign in", None, None, html! {}))
}

/// The signed-in session of a request, or what to answer instead.
pub(super) async fn signed_in(_parts: &mut Parts, _deps: &Deps) -> Result<SignedIn, Response> {
    Err(Redirect::to("/console/sign-in").into_response())
}

/// The `Set-Cookie` value of a flash saying `message`, bound to the session `session_key`.
pub(super) fn flash_cookie(_keys: &Keys, _session_key: &str, _message: &str) -> String {
    String::new()
}
