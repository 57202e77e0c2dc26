//! SMS through AWS End User Messaging SMS (Pinpoint SMS and Voice v2 `SendTextMessage`):
//! transactional, from the deployment's origination identity (a number, sender id or pool), in
//! its configuration set and protect configuration, valid until the OTP expires, with the OTP
//! and event in the message's `Context`. The configuration set's events echo that context, so
//! a receipt finds its event without the `MSG#` lookup item an SNS send writes
//! (`workers::receipts::text_receipt`).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_pinpointsmsvoicev2::{
    error::ProvideErrorMetadata,
    operation::send_text_message::SendTextMessageError,
    types::{ConflictExceptionReason, MessageType},
    Client,
};

use super::{sns::e164, unmodeled_is_refusal};
use crate::ports::{DispatchError, DispatchReceipt, Dispatcher, OutboundMessage};

/// The `Context` keys a text is sent with, and its events come back with.
pub const CONTEXT_ACCOUNT: &str = "accountSid";
pub const CONTEXT_OTP: &str = "otpSid";
pub const CONTEXT_EVENT: &str = "event";

/// `TimeToLive`'s bounds (seconds), as the API takes it.
pub const MIN_TTL_SECS: u32 = 5;
pub const MAX_TTL_SECS: u32 = 259_200;

/// Where texts go from and what they are sent in: the deployment's End User Messaging setup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmsOrigin {
    /// A phone number, sender id or pool (its id, name or ARN).
    pub origination_identity: String,
    /// Whose event destination gives the texts' receipts; none: no receipts.
    pub configuration_set: Option<String>,
    /// Which countries may be sent to, and what is blocked (SMS pumping protection).
    pub protect_configuration: Option<String>,
}

pub struct EumSms {
    client: Client,
    origin: SmsOrigin,
}

impl EumSms {
    pub fn new(client: Client, origin: SmsOrigin) -> Self {
        EumSms { client, origin }
    }
}

/// What a text carries for its receipts: the OTP's account and sid and the event's index.
pub fn context(msg: &OutboundMessage<'_>) -> HashMap<String, String> {
    HashMap::from([
        (CONTEXT_ACCOUNT.to_owned(), msg.account_sid.to_owned()),
        (CONTEXT_OTP.to_owned(), msg.request_id.to_owned()),
        (CONTEXT_EVENT.to_owned(), msg.event_index.to_string()),
    ])
}

/// The OTP's time left, within what `TimeToLive` takes.
pub fn time_to_live(ttl_secs: u32) -> i32 {
    ttl_secs.clamp(MIN_TTL_SECS, MAX_TTL_SECS) as i32
}

#[async_trait]
impl Dispatcher for EumSms {
    async fn dispatch(&self, msg: &OutboundMessage<'_>) -> Result<DispatchReceipt, DispatchError> {
        let result = self
            .client
            .send_text_message()
            .destination_phone_number(e164(msg.to))
            .origination_identity(&self.origin.origination_identity)
            .message_body(&msg.text)
            .message_type(MessageType::Transactional)
            .time_to_live(time_to_live(msg.ttl_secs))
            .set_context(Some(context(msg)))
            .set_configuration_set_name(self.origin.configuration_set.clone())
            .set_protect_configuration_id(self.origin.protect_configuration.clone())
            .send()
            .await;
        match result {
            Ok(out) => {
                let provider_id = out.message_id.unwrap_or_default();
                tracing::info!(request_id = %msg.request_id, event = %msg.event_sid, message_id = %provider_id, "sms sent through End User Messaging");
                Ok(DispatchReceipt { provider_id, receipts_name_event: true, route: None, account_provider: false })
            }
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let Some(err) = e.as_service_error() else {
                    let failure = super::unanswered(&e);
                    tracing::warn!(request_id = %msg.request_id, ?failure, "End User Messaging unreachable");
                    return Err(failure);
                };
                let code = err.code().unwrap_or("SMS_ERROR").to_owned();
                let refused = match err {
                    // The destination or the message (an invalid number, a country the protect
                    // configuration blocks, a body too long): this text will never go.
                    SendTextMessageError::ValidationException(_) => true,
                    // The destination opted out: final too. Other conflicts are our resources'
                    // state (a pool or number being changed, deleted): not this message's.
                    SendTextMessageError::ConflictException(c) => {
                        c.reason() == Some(&ConflictExceptionReason::DestinationPhoneNumberOptedOut)
                    }
                    // Throttled, failing, or our own configuration (permissions, spend limit, an
                    // origination identity that is gone): not this message's fault.
                    SendTextMessageError::ThrottlingException(_)
                    | SendTextMessageError::InternalServerException(_)
                    | SendTextMessageError::AccessDeniedException(_)
                    | SendTextMessageError::ServiceQuotaExceededException(_)
                    | SendTextMessageError::ResourceNotFoundException(_) => false,
                    _ => unmodeled_is_refusal(err.code(), status),
                };
                if refused {
                    tracing::info!(request_id = %msg.request_id, code = %code, "End User Messaging refused the sms");
                    Err(DispatchError::rejected(code, "The SMS provider refused the message or the destination number"))
                } else {
                    tracing::warn!(request_id = %msg.request_id, code = %code, ?status, "End User Messaging unavailable");
                    Err(DispatchError::Unavailable)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_to_live_is_the_otps_time_left_within_the_apis_bounds() {
        assert_eq!(time_to_live(600), 600);
        assert_eq!(time_to_live(0), 5, "an OTP about to expire still gets the least the API takes");
        assert_eq!(time_to_live(u32::MAX), 259_200);
    }
}
