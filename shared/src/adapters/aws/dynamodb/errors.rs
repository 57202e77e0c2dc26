//! SDK errors to `domain::Error`, through the SDK's typed variants: throttling, 5xx, network
//! and timeouts are `Unavailable`; requests DynamoDB refuses as malformed are `Internal` (a bug);
//! failed conditions are decided by each call site (`Contended`, a refusal, a domain error).

use aws_sdk_dynamodb::{
    error::{ProvideErrorMetadata, SdkError},
    operation::{
        batch_get_item::BatchGetItemError, delete_item::DeleteItemError, get_item::GetItemError,
        put_item::PutItemError, query::QueryError, transact_write_items::TransactWriteItemsError,
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
