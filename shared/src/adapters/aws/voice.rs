//! Voice calls through Amazon Pinpoint SMS and Voice v2 `SendVoiceMessage`: the SSML read by
//! the chosen Polly voice, from the origination identity the deployment was given.

use async_trait::async_trait;
use aws_sdk_pinpointsmsvoicev2::{
    error::ProvideErrorMetadata,
    operation::send_voice_message::SendVoiceMessageError,
    types::{VoiceId, VoiceMessageBodyTextType},
    Client,
};

use super::{sns::e164, unmodeled_is_refusal};
use crate::ports::{CallPlacer, DispatchError, DispatchReceipt, OutboundMessage};

/// The Polly voices SMS Voice v2 can read in (its `VoiceId` values, upper case).
pub fn usable_voices() -> &'static [&'static str] {
    VoiceId::values()
}

pub struct SmsVoiceCalls {
    client: Client,
    /// A phone number, its id or ARN, or a pool: what the call comes from.
    origination: String,
    configuration_set: Option<String>,
}

impl SmsVoiceCalls {
    pub fn new(client: Client, origination: String, configuration_set: Option<String>) -> Self {
        SmsVoiceCalls { client, origination, configuration_set }
    }
}

#[async_trait]
impl CallPlacer for SmsVoiceCalls {
    async fn place_call(&self, msg: &OutboundMessage<'_>) -> Result<DispatchReceipt, DispatchError> {
        let (Some(ssml), Some(voice)) = (&msg.ssml, &msg.voice_id) else {
            tracing::error!(request_id = %msg.request_id, "a call without SSML or voice");
            return Err(DispatchError::Unavailable);
        };
        let result = self
            .client
            .send_voice_message()
            .destination_phone_number(e164(msg.to))
            .origination_identity(&self.origination)
            .message_body(ssml)
            .message_body_text_type(VoiceMessageBodyTextType::Ssml)
            .voice_id(VoiceId::from(voice.to_ascii_uppercase().as_str()))
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await;
        match result {
            Ok(out) => {
                let provider_id = out.message_id.unwrap_or_default();
                tracing::info!(request_id = %msg.request_id, event = %msg.event_sid, message_id = %provider_id, "call placed");
                Ok(DispatchReceipt::new(provider_id))
            }
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let Some(err) = e.as_service_error() else {
                    let failure = super::unanswered(&e);
                    tracing::warn!(request_id = %msg.request_id, ?failure, "SMS Voice unreachable");
                    return Err(failure);
                };
                let code = err.code().unwrap_or("VOICE_ERROR").to_owned();
                let refused = match err {
                    // The destination or the message: this call will never go through.
                    SendVoiceMessageError::ValidationException(_) => true,
                    // Throttled, failing, or our own configuration (permissions, quota, an
                    // origination identity that is gone): not this message's fault.
                    SendVoiceMessageError::ThrottlingException(_)
                    | SendVoiceMessageError::InternalServerException(_)
                    | SendVoiceMessageError::AccessDeniedException(_)
                    | SendVoiceMessageError::ServiceQuotaExceededException(_)
                    | SendVoiceMessageError::ResourceNotFoundException(_)
                    | SendVoiceMessageError::ConflictException(_) => false,
                    _ => unmodeled_is_refusal(err.code(), status),
                };
                if refused {
                    tracing::info!(request_id = %msg.request_id, code = %code, "SMS Voice refused the call");
                    Err(DispatchError::rejected(code, "The voice provider refused the call or the destination number"))
                } else {
                    tracing::warn!(request_id = %msg.request_id, code = %code, ?status, "SMS Voice unavailable");
                    Err(DispatchError::Unavailable)
                }
            }
        }
    }
}
