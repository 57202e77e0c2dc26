//! HTTP: one axum router per endpoint group, mounted unchanged by the Lambdas and the dev
//! server, plus what they share (input, auth, errors, response format).

pub mod auth;
pub mod console;
pub mod definitions;
pub mod error;
pub mod factors;
pub mod format;
#[cfg(feature = "aws")]
pub mod lambda;
pub mod limits;
pub mod metrics;
pub mod otp;
pub mod params;
pub mod receipts;
pub mod records;
#[cfg(feature = "aws")]
pub mod step_lambda;
pub mod workflows;

use axum::{
    http::{StatusCode, Uri},
    middleware,
    routing::MethodRouter,
    Router,
};

use crate::{
    domain::{account::Account, error::Error},
    ports::Deps,
};
pub use error::ApiError;

/// A router and every path it routes, so the paths can be held against `openapi.yaml`
/// (`tests/tests/openapi.rs`): each router module builds its router from `routes()`.
#[derive(Default)]
pub struct Routes {
    router: Router<Deps>,
    paths: Vec<String>,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn route(mut self, path: &str, handler: MethodRouter<Deps>) -> Self {
        self.router = self.router.route(path, handler);
        self.paths.push(path.to_owned());
        self
    }

    /// `path` and its `.json` / `.xml` twins.
    pub fn with_suffixes(self, path: &str, handler: MethodRouter<Deps>) -> Self {
        self.route(path, handler.clone())
            .route(&format!("{path}.json"), handler.clone())
            .route(&format!("{path}.xml"), handler)
    }

    /// Both groups' routes in one router, so a server of several groups (the dev server) wraps
    /// them in one set of layers rather than one per group: each layer costs every request a
    /// clone of the boxed service and a boxed future.
    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.paths.extend(other.paths);
        self
    }

    /// Every path routed, as given to axum (`{sid}` for a parameter).
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// The router, finished as every router is (`finish`).
    pub fn finish(self, deps: Deps) -> Router {
        finish(self.router, deps)
    }
}

/// Register `path` and its `.json` / `.xml` twins.
pub fn route_with_suffixes(router: Router<Deps>, path: &str, handler: MethodRouter<Deps>) -> Router<Deps> {
    router
        .route(path, handler.clone())
        .route(&format!("{path}.json"), handler.clone())
        .route(&format!("{path}.xml"), handler)
}

/// A path segment without its `.json`/`.xml` suffix (`/2fa/search/{sid}.json`).
pub fn strip_format_suffix(segment: &str) -> &str {
    segment.strip_suffix(".json").or_else(|| segment.strip_suffix(".xml")).unwrap_or(segment)
}

/// What every router gets: JSON 404/405 envelopes and XML negotiation, with the state bound.
pub fn finish(router: Router<Deps>, deps: Deps) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(format::negotiate))
        .with_state(deps)
}

async fn not_found(_uri: Uri) -> ApiError {
    Error::NotFound.into()
}

async fn method_not_allowed() -> ApiError {
    Error::MethodNotAllowed.into()
}

/// The account a request acts for (`accountSid`, a sub-account of the caller, or the caller).
pub async fn acting_for<'a>(
    deps: &Deps,
    caller: &'a Account,
    account_sid: Option<&str>,
) -> Result<std::borrow::Cow<'a, Account>, Error> {
    crate::domain::account::act_for(deps.store.as_ref(), caller, account_sid).await
}

/// `{"code":200,"message":…,"requestID":…}`, the OTP operations' envelope.
pub fn otp_ok(message: &str, sid: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    (StatusCode::OK, axum::Json(OtpOk { code: 200, message, request_id: sid })).into_response()
}

/// The envelope `otp_ok` writes, serialized straight from its fields (no JSON map to build).
#[derive(serde::Serialize)]
struct OtpOk<'a> {
    code: u16,
    message: &'a str,
    #[serde(rename = "requestID")]
    request_id: &'a str,
}
