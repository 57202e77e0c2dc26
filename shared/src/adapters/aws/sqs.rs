//! The callback retry queue on SQS: a call waiting for its next attempt is a message on the
//! retry queue, made visible at its due time; one given up is a message on the dead-letter
//! queue. SQS delays a message by at most 15 minutes, so a longer wait is several hops: the
//! consumer puts a message that is not due yet back with the rest of its delay
//! (`workers::callbacks`).

use std::sync::Arc;

use async_trait::async_trait;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::{
    domain::{
        callbacks::{DeadLetter, PendingCall},
        error::{Error, Result},
        time::Millis,
    },
    ports::{CallbackQueue, Clock},
};

/// The longest delay SQS takes for one message.
pub const MAX_DELAY_S: i64 = 900;

pub struct SqsCallbackQueue {
    client: aws_sdk_sqs::Client,
    retry_url: String,
    dead_url: String,
    clock: Arc<dyn Clock>,
}

impl SqsCallbackQueue {
    pub fn new(client: aws_sdk_sqs::Client, retry_url: String, dead_url: String, clock: Arc<dyn Clock>) -> Self {
        SqsCallbackQueue { client, retry_url, dead_url, clock }
    }

    async fn send(&self, url: &str, body: String, delay_s: i32) -> Result<()> {
        self.client.send_message().queue_url(url).message_body(body).delay_seconds(delay_s).send().await.map_err(
            |e| {
                tracing::warn!(error = %DisplayErrorContext(&e), "SQS unavailable");
                Error::Unavailable
            },
        )?;
        Ok(())
    }
}

/// The SQS delay that brings a message due at `due_ms` back at `now` or as close as one hop
/// gets (whole seconds, rounded up, at most `MAX_DELAY_S`).
pub fn hop_delay_s(due_ms: Millis, now: Millis) -> i32 {
    let wait_ms = (due_ms - now).max(0);
    (wait_ms.div_euclid(1000) + i64::from(wait_ms % 1000 != 0)).min(MAX_DELAY_S) as i32
}

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|_| Error::Internal)
}

#[async_trait]
impl CallbackQueue for SqsCallbackQueue {
    async fn later(&self, call: &PendingCall) -> Result<()> {
        let delay = hop_delay_s(call.due_ms, self.clock.now_ms());
        self.send(&self.retry_url, json(call)?, delay).await
    }

    async fn dead(&self, letter: &DeadLetter) -> Result<()> {
        self.send(&self.dead_url, json(letter)?, 0).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_longer_than_sqs_takes_is_cut_into_hops_of_at_most_15_minutes() {
        assert_eq!(hop_delay_s(5_000, 0), 5);
        assert_eq!(hop_delay_s(5_001, 0), 6);
        assert_eq!(hop_delay_s(0, 10_000), 0, "overdue: at once");
        assert_eq!(hop_delay_s(8 * 3600 * 1000, 0), 900);
    }
}
