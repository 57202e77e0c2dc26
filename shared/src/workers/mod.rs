//! The Lambdas that are not HTTP: each takes the event its source delivers (a DynamoDB Stream
//! batch, an SQS batch, a schedule, a CloudWatch Logs subscription, an SNS notification) and
//! hands it to the domain. Each `functions/<name>/src/main.rs` is one call to a `run` here.

pub mod callbacks;
pub mod receipts;

use std::future::Future;

use serde_json::Value;

pub use crate::http::lambda::BoxError;

/// Serve `handler` for the life of the process: the raw JSON event in, JSON out (the event
/// source's batch response where it has one).
pub async fn serve<F, Fut>(handler: F) -> Result<(), BoxError>
where
    F: Fn(Value) -> Fut,
    Fut: Future<Output = Result<Value, BoxError>>,
{
    lambda_runtime::run(lambda_runtime::service_fn(|event: lambda_runtime::LambdaEvent<Value>| handler(event.payload)))
        .await
}

/// The `eventSource` of a batch's first record (`aws:dynamodb`, `aws:sqs`, `aws:sns`).
fn record_source(payload: &Value) -> Option<&str> {
    let first = payload.get("Records")?.as_array()?.first()?;
    first.get("eventSource").or_else(|| first.get("EventSource"))?.as_str()
}
