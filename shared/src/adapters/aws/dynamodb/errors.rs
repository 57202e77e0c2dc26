//! SDK errors to `domain::Error`, through the SDK's typed variants: throttling, 5xx, network
//! and timeouts are `Unavailable`; requests DynamoDB refuses as malformed are `Internal` (a bug);
//! failed conditions are decided by each call site (`Contended`, a refusal, a domain error).

use aws_sdk_dynamodb::{
    error::{ProvideErrorMetadata, SdkError},
    operation::{
        batch_get_item::BatchGetItemError, delete_item::DeleteItemError, get_item::GetItemError,
        put_item::PutItemError, query::QueryError, scan::ScanError, transact_write_items::TransactWriteItemsError,
        update_item::UpdateItemError,
    },
    types::CancellationReason,
};

use aws_smithy_types::error::display::DisplayErrorContext;

use crate::domain::error::Error;

/// Errors that say "not now" rather than "never".
pub(crate) trait Transient {
    fn transient(&self) -> bool;
}

macro_rules! transient {
    ($($ty:ty),* $(,)?) => {$(
        impl Transient for $ty {
            fn transient(&self) -> bool {
                matches!(
                    self,
                    Self::InternalServerError(_)
                        | Self::ProvisionedThroughputExceededException(_)
                        | Self::RequestLimitExceeded(_)
                        | Self::ThrottlingException(_)
                        | Self::InvalidEndpointException(_)
                )
            }
        }
    )*};
}

transient!(
    GetItemError,
    BatchGetItemError,
    QueryError,
    ScanError,
    PutItemError,
    UpdateItemError,
    DeleteItemError,
    TransactWriteItemsError,
);

/// Any SDK failure that no call site handles itself.
pub(crate) fn sdk<E>(op: &'static str, err: &SdkError<E>) -> Error
where
    E: Transient + ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            let status = ctx.raw().status().as_u16();
            if e.transient() || status >= 500 {
                tracing::warn!(op, code = e.code(), status, "DynamoDB unavailable");
                Error::Unavailable
            } else if key_too_large(e.code(), e.message()) {
                // Input made a key longer than DynamoDB takes (every bound the API checks keeps
                // keys far below it, so a missing bound): the caller's request, not a 5xx.
                tracing::error!(op, code = e.code(), status, "a key over DynamoDB's size limit");
                Error::invalid("request", "a value is too long to be stored")
            } else {
                tracing::error!(op, code = e.code(), status, "DynamoDB refused the request");
                Error::Internal
            }
        }
        SdkError::ConstructionFailure(_) => {
            tracing::error!(op, "DynamoDB request could not be built");
            Error::Internal
        }
        // Timeouts, connection failures, unreadable responses.
        _ => {
            tracing::warn!(op, error = %DisplayErrorContext(err), "DynamoDB unreachable");
            Error::Unavailable
        }
    }
}

/// DynamoDB's `ValidationException` for a key over its limits (2,048 bytes of partition key,
/// 1,024 of sort key): "Size of hashkey has exceeded the maximum size limit of 2048 bytes",
/// "Aggregated size of all range keys has exceeded the size limit of 1024 bytes".
fn key_too_large(code: Option<&str>, message: Option<&str>) -> bool {
    let message = message.unwrap_or_default().to_ascii_lowercase();
    code == Some("ValidationException") && message.contains("size") && message.contains("key")
}

/// What one item of a canceled transaction says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// This item was fine; another one canceled the transaction.
    None,
    ConditionFailed,
    /// A concurrent transaction or write touched the item.
    Conflict,
    Throttled,
    /// A malformed request (validation, item too large...): a bug.
    Invalid,
}

impl From<&CancellationReason> for Reason {
    fn from(r: &CancellationReason) -> Self {
        // The reason codes are DynamoDB's documented `CancellationReason.Code` values.
        match r.code().unwrap_or("None") {
            "None" => Reason::None,
            "ConditionalCheckFailed" => Reason::ConditionFailed,
            "TransactionConflict" => Reason::Conflict,
            "ThrottlingError" | "ProvisionedThroughputExceeded" | "RequestLimitExceeded" => Reason::Throttled,
            other => {
                tracing::error!(reason = other, "DynamoDB canceled a transaction as invalid");
                Reason::Invalid
            }
        }
    }
}

/// The general meaning of a cancellation: failed conditions and conflicts are `Contended`.
pub(crate) fn canceled(reasons: &[Reason]) -> Error {
    if reasons.contains(&Reason::Invalid) {
        Error::Internal
    } else if reasons.contains(&Reason::Throttled) {
        tracing::warn!("DynamoDB transaction throttled");
        Error::Unavailable
    } else {
        Error::Contended
    }
}

/// A conditional `UpdateItem`'s outcome: applied (true), or its condition did not hold
/// (false); a transaction in flight on the item is `Contended`.
pub(crate) fn conditional<T>(
    out: std::result::Result<T, SdkError<UpdateItemError>>,
    op: &'static str,
) -> Result<bool, Error> {
    match out {
        Ok(_) => Ok(true),
        Err(e) => match e.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(false),
            Some(UpdateItemError::TransactionConflictException(_)) => Err(Error::Contended),
            _ => Err(sdk(op, &e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::{body::SdkBody, error::ErrorMetadata};

    use super::*;

    fn validation(message: &str) -> SdkError<QueryError, Response> {
        let meta = ErrorMetadata::builder().code("ValidationException").message(message).build();
        SdkError::service_error(
            QueryError::generic(meta),
            Response::new(StatusCode::try_from(400).unwrap(), SdkBody::empty()),
        )
    }

    #[test]
    fn a_key_over_dynamodbs_size_limit_is_the_callers_400_and_any_other_refusal_a_bug() {
        // Given DynamoDB's answers to a 2 KB partition key and a 1 KB sort key (moto checks
        // neither size, so the mapping is tested here)
        for message in [
            "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of 2048 bytes",
            "One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size limit of 1024 bytes",
        ] {
            // Then each answers 400, not 500
            assert!(matches!(sdk("Query", &validation(message)), Error::InvalidParameter { .. }), "{message}");
        }
        // And a malformed expression (our bug) stays Internal
        assert_eq!(sdk("Query", &validation("Invalid KeyConditionExpression: Syntax error")), Error::Internal);
    }
}
