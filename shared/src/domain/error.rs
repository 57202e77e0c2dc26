//! The one error type of the service. `http::error` maps each variant to its HTTP status, API
//! code and message, in exactly one place.

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Missing or invalid input; names the parameter.
    #[error("Invalid parameter: {param} ({reason})")]
    InvalidParameter { param: Cow<'static, str>, reason: Cow<'static, str> },
    #[error("Authentication failed")]
    Unauthenticated,
    #[error("Forbidden")]
    Forbidden,
    #[error("Not found")]
    NotFound,
    #[error("Method not allowed")]
    MethodNotAllowed,
    #[error("Payload too large")]
    PayloadTooLarge,
    /// The default limit: one OTP per minute per destination.
    #[error("Too many OTP request to same destination Number")]
    TooManyToDestination,
    #[error("Too many OTP requests: limit {0} exceeded")]
    LimitExceeded(String),
    /// The account's geo permissions do not include the destination's country (ISO code).
    #[error("Destination country not allowed: {0}")]
    CountryNotAllowed(String),
    /// The pumping guard paused sends to this country for the account.
    #[error("Sends to {0} paused: low verification rate")]
    SendsPaused(String),
    /// The destination's failed verifies reached the account's budget: sends to it wait for
    /// a successful verify, the operator, or a day without failures.
    #[error("Too many failed verifications for this destination")]
    TooManyFailures,
    #[error("Invalid OTP Unique Id")]
    OtpNotFound,
    #[error("OTP is already verified")]
    AlreadyVerified,
    #[error("OTP has expired")]
    Expired,
    #[error("OTP is canceled")]
    Canceled,
    #[error("Invalid OTP Code")]
    InvalidCode,
    #[error("Max verification attempts reached")]
    MaxAttempts,
    /// Cancel of an unknown requestId (the seeds give cancel its own code).
    #[error("Invalid OTP Unique Id")]
    CancelNotFound,
    #[error("Limit with that Name already exists")]
    LimitNameExists,
    #[error("Invalid Limit Id")]
    LimitNotFound,
    #[error("Invalid Limit Name: {0}")]
    UnknownLimitName(String),
    #[error("Workflow with that name already exists")]
    WorkflowNameExists,
    #[error("Invalid Workflow Id")]
    WorkflowNotFound,
    /// No such factor for this entity (ours: `domain::factors`).
    #[error("Invalid Factor Id")]
    FactorNotFound,
    /// A bug or an impossible state; nothing about it reaches the client.
    #[error("Internal error")]
    Internal,
    /// A dependency failed or throttled; the operation left nothing half-written.
    #[error("Service unavailable, retry")]
    Unavailable,
    /// A conditional write lost to a concurrent one. The use cases read again and retry; one
    /// that escapes answers like `Unavailable`.
    #[error("Service unavailable, retry")]
    Contended,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(param: impl Into<Cow<'static, str>>, reason: impl Into<Cow<'static, str>>) -> Self {
        Error::InvalidParameter { param: param.into(), reason: reason.into() }
    }

    pub fn missing(param: impl Into<Cow<'static, str>>) -> Self {
        Error::invalid(param, "required")
    }
}
