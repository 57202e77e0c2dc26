//! WhatsApp through AWS End User Messaging Social (`SendWhatsAppMessage`): the code in the
//! deployment's authentication template (Meta fixes its words; the copy-code or one-tap
//! button carries the code), from the deployment's WhatsApp phone number. The message's
//! `biz_opaque_callback_data` names the OTP and event, and Meta echoes it in every status
//! webhook, so a receipt finds its event without a `MSG#` lookup item
//! (`workers::receipts::whatsapp_receipts`).

use async_trait::async_trait;
use aws_sdk_socialmessaging::{
    error::ProvideErrorMetadata, operation::send_whats_app_message::SendWhatsAppMessageError, primitives::Blob, Client,
};
use serde_json::{json, Value};

use super::unmodeled_is_refusal;
use crate::ports::{DispatchError, DispatchReceipt, Dispatcher, OutboundMessage};

/// The Graph API version the message JSON is written for.
pub const DEFAULT_META_API_VERSION: &str = "v20.0";

/// The deployment's WhatsApp setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatsappOrigin {
    /// The WhatsApp phone number messages come from: its End User Messaging Social id
    /// (`phone-number-id-…`) or ARN.
    pub phone_number_id: String,
    /// The approved authentication template (copy-code, or one-tap when made with the app's
    /// package name and signature hash).
    pub template: String,
    /// The languages the template is approved in (Meta's codes: `en_US`, `es`, `pt_BR`), the
    /// first the fallback.
    pub languages: Vec<String>,
    pub meta_api_version: String,
}

pub struct Whatsapp {
    client: Client,
    origin: WhatsappOrigin,
}

impl Whatsapp {
    pub fn new(client: Client, origin: WhatsappOrigin) -> Self {
        Whatsapp { client, origin }
    }
}

/// The template language for a send in `language` (`pt-BR`): the same tag, else the same
/// language (`pt`, `pt_PT`), else the first the template has.
pub fn template_language<'a>(languages: &'a [String], language: &str) -> &'a str {
    let wanted = language.replace('-', "_");
    let primary = wanted.split('_').next().unwrap_or_default();
    let same_primary = |l: &&String| l.split('_').next().is_some_and(|p| p.eq_ignore_ascii_case(primary));
    languages
        .iter()
        .find(|l| l.eq_ignore_ascii_case(&wanted))
        .or_else(|| languages.iter().find(same_primary))
        .or(languages.first())
        .map_or("en_US", String::as_str)
}

/// What names the OTP and event in a status webhook: `accountSid|otpSid|event`.
pub fn callback_data(msg: &OutboundMessage<'_>) -> String {
    format!("{}|{}|{}", msg.account_sid, msg.request_id, msg.event_index)
}

/// The Meta message JSON of an authentication template carrying `code`: the body's one
/// parameter and the button's (copy-code and one-tap buttons are of sub-type `url`).
pub fn template_message(origin: &WhatsappOrigin, msg: &OutboundMessage<'_>, code: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": msg.to,
        "type": "template",
        "biz_opaque_callback_data": callback_data(msg),
        "template": {
            "name": origin.template,
            "language": { "code": template_language(&origin.languages, msg.language) },
            "components": [
                { "type": "body", "parameters": [{ "type": "text", "text": code }] },
                { "type": "button", "sub_type": "url", "index": "0", "parameters": [{ "type": "text", "text": code }] },
            ],
        },
    })
}

#[async_trait]
impl Dispatcher for Whatsapp {
    async fn dispatch(&self, msg: &OutboundMessage<'_>) -> Result<DispatchReceipt, DispatchError> {
        let body = template_message(&self.origin, msg, msg.code).to_string();
        let result = self
            .client
            .send_whats_app_message()
            .origination_phone_number_id(&self.origin.phone_number_id)
            .meta_api_version(&self.origin.meta_api_version)
            .message(Blob::new(body.into_bytes()))
            .send()
            .await;
        match result {
            Ok(out) => {
                let provider_id = out.message_id.unwrap_or_default();
                tracing::info!(request_id = %msg.request_id, event = %msg.event_sid, message_id = %provider_id, "whatsapp sent");
                Ok(DispatchReceipt { provider_id, receipts_name_event: true, route: None, account_provider: false })
            }
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let Some(err) = e.as_service_error() else {
                    let failure = super::unanswered(&e);
                    tracing::warn!(request_id = %msg.request_id, ?failure, "End User Messaging Social unreachable");
                    return Err(failure);
                };
                let code = err.code().unwrap_or("WHATSAPP_ERROR").to_owned();
                let refused = match err {
                    // The destination or the message (not a number WhatsApp takes, a template
                    // Meta refuses for it): this message will never go.
                    SendWhatsAppMessageError::ValidationException(_)
                    | SendWhatsAppMessageError::InvalidParametersException(_) => true,
                    // Meta or AWS failing or throttling, or our own setup (permissions, a
                    // phone number id that is gone): not this message's fault.
                    SendWhatsAppMessageError::DependencyException(_)
                    | SendWhatsAppMessageError::InternalServiceException(_)
                    | SendWhatsAppMessageError::ThrottledRequestException(_)
                    | SendWhatsAppMessageError::AccessDeniedException(_)
                    | SendWhatsAppMessageError::ResourceNotFoundException(_) => false,
                    _ => unmodeled_is_refusal(err.code(), status),
                };
                if refused {
                    tracing::info!(request_id = %msg.request_id, code = %code, "End User Messaging Social refused the whatsapp message");
                    Err(DispatchError::rejected(code, "WhatsApp refused the message or the destination number"))
                } else {
                    tracing::warn!(request_id = %msg.request_id, code = %code, ?status, "End User Messaging Social unavailable");
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
    fn the_template_language_is_the_sends_then_its_language_then_the_first() {
        let langs = ["en_US", "es", "pt_BR"].map(String::from);
        assert_eq!(template_language(&langs, "pt-BR"), "pt_BR");
        assert_eq!(template_language(&langs, "es-MX"), "es");
        assert_eq!(template_language(&langs, "pt-PT"), "pt_BR");
        assert_eq!(template_language(&langs, "ja-JP"), "en_US");
    }
}
