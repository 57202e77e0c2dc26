//! The one place where a domain error becomes an HTTP status, an API code and a message.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use crate::domain::{error::Error, verify::Rejection};

/// (HTTP status, API code) of each error, as API.md lists them.
pub fn status_and_code(e: &Error) -> (StatusCode, u16) {
    use Error::*;
    let (status, code) = match e {
        InvalidParameter { .. } => (400, 400),
        Unauthenticated => (401, 401),
        Forbidden => (403, 403),
        NotFound => (404, 404),
        MethodNotAllowed => (405, 405),
        PayloadTooLarge => (413, 413),
        TooManyToDestination => (404, 453),
        LimitExceeded(_) => (404, 454),
        OtpNotFound => (404, 470),
        CountryNotAllowed(_) => (403, 476),
        SendsPaused(_) => (429, 477),
        TooManyFailures => (429, 478),
        AlreadyVerified => (409, 471),
        Expired => (410, 472),
        Canceled => (409, 473),
        InvalidCode => (401, 474),
        MaxAttempts => (429, 475),
        CancelNotFound => (404, 490),
        LimitNameExists => (409, 492),
        LimitNotFound => (409, 493),
        UnknownLimitName(_) | WorkflowNameExists => (409, 495),
        WorkflowNotFound => (409, 499),
        FactorNotFound => (404, 480),
        Internal => (500, 500),
        Unavailable | Contended => (503, 503),
    };
    (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), code)
}

/// The API code a response carries (its `code`), for the request metrics.
#[derive(Debug, Clone, Copy)]
pub struct ApiCode(pub u16);

/// An error as the client sees it: `{"code":N,"message":"…","requestID":null|"OTP…"}`.
#[derive(Debug)]
pub struct ApiError(pub Rejection);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e.into())
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError(r)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Rejection { error, request_id } = self.0;
        let (status, code) = status_and_code(&error);
        if status.is_server_error() {
            tracing::warn!(code, error = ?error, "request failed");
        }
        let body = json!({ "code": code, "message": error.to_string(), "requestID": request_id });
        let mut resp = (status, Json(body)).into_response();
        resp.extensions_mut().insert(ApiCode(code));
        if error == Error::Unauthenticated {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"2fa\""));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_codes_keep_their_seed_http_statuses() {
        assert_eq!(status_and_code(&Error::TooManyToDestination), (StatusCode::NOT_FOUND, 453));
        assert_eq!(status_and_code(&Error::OtpNotFound), (StatusCode::NOT_FOUND, 470));
        assert_eq!(status_and_code(&Error::AlreadyVerified), (StatusCode::CONFLICT, 471));
        assert_eq!(status_and_code(&Error::InvalidCode), (StatusCode::UNAUTHORIZED, 474));
        assert_eq!(status_and_code(&Error::CancelNotFound), (StatusCode::NOT_FOUND, 490));
        assert_eq!(status_and_code(&Error::LimitNameExists), (StatusCode::CONFLICT, 492));
        assert_eq!(status_and_code(&Error::LimitNotFound), (StatusCode::CONFLICT, 493));
        assert_eq!(status_and_code(&Error::UnknownLimitName("x".into())), (StatusCode::CONFLICT, 495));
        assert_eq!(status_and_code(&Error::WorkflowNotFound), (StatusCode::CONFLICT, 499));
    }

    #[test]
    fn contention_that_escapes_is_a_503() {
        assert_eq!(status_and_code(&Error::Contended), (StatusCode::SERVICE_UNAVAILABLE, 503));
        assert_eq!(Error::Contended.to_string(), "Service unavailable, retry");
    }
}
