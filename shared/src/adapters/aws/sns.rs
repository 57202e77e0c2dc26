//! SMS through SNS `Publish`, transactional, with an alphanumeric sender id where one applies.

use async_trait::async_trait;
use aws_sdk_sns::{
    error::ProvideErrorMetadata, operation::publish::PublishError, types::MessageAttributeValue, Client,
};

use super::unmodeled_is_refusal;
use crate::ports::{DispatchError, DispatchReceipt, Dispatcher, OutboundMessage};

const SMS_TYPE: &str = "AWS.SNS.SMS.SMSType";
const SENDER_ID: &str = "AWS.SNS.SMS.SenderID";
const ORIGINATION_NUMBER: &str = "AWS.MM.SMS.OriginationNumber";

pub struct SnsSms {
    client: Client,
    default_sender_id: Option<String>,
}

impl SnsSms {
    /// `default_sender_id` is used when a message's `from` is not a sender id itself; an
    /// invalid one is ignored.
    pub fn new(client: Client, default_sender_id: Option<String>) -> Self {
        SnsSms { client, default_sender_id: default_sender_id.filter(|s| is_sender_id(s)) }
    }

    fn sender_id<'a>(&'a self, from: &'a str) -> Option<&'a str> {
        if is_sender_id(from) {
            Some(from)
        } else {
            self.default_sender_id.as_deref()
        }
    }
}

/// An alphanumeric sender id as SNS takes it: 1 to 11 ASCII letters and digits, at least one
/// letter (a phone number is not one).
pub fn is_sender_id(s: &str) -> bool {
    (1..=11).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric())
        && s.bytes().any(|b| b.is_ascii_alphabetic())
}

/// A phone number to send from (a long code, toll-free number or short code): digits with an
/// optional `+`, 3 to 15 of them.
pub fn is_origination_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    (3..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The `from` of an SMS as SNS takes it: a number as the origination number (E.164 when it is
/// a full number, a short code as it is), an alphanumeric as the sender id.
fn origination(from: &str) -> String {
    if from.len() > 6 {
        e164(from)
    } else {
        from.to_owned()
    }
}

/// E.164 with its `+` (the API accepts numbers without it).
pub fn e164(to: &str) -> String {
    if to.starts_with('+') {
        to.to_owned()
    } else {
        format!("+{to}")
    }
}

fn string_attribute(value: &str) -> Result<MessageAttributeValue, DispatchError> {
    MessageAttributeValue::builder().data_type("String").string_value(value).build().map_err(|e| {
        tracing::error!(error = %e, "cannot build an SNS message attribute");
        DispatchError::Unavailable
    })
}

#[async_trait]
impl Dispatcher for SnsSms {
    async fn dispatch(&self, msg: &OutboundMessage<'_>) -> Result<DispatchReceipt, DispatchError> {
        let mut publish = self
            .client
            .publish()
            .phone_number(e164(msg.to))
            .message(&msg.text)
            .message_attributes(SMS_TYPE, string_attribute("Transactional")?);
        if is_origination_number(msg.from) {
            publish = publish.message_attributes(ORIGINATION_NUMBER, string_attribute(&origination(msg.from))?);
        } else if let Some(sender) = self.sender_id(msg.from) {
            publish = publish.message_attributes(SENDER_ID, string_attribute(sender)?);
        }
        match publish.send().await {
            Ok(out) => {
                let provider_id = out.message_id.unwrap_or_default();
                tracing::info!(request_id = %msg.request_id, event = %msg.event_sid, message_id = %provider_id, "sms published");
                Ok(DispatchReceipt::new(provider_id))
            }
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let Some(err) = e.as_service_error() else {
                    let failure = super::unanswered(&e);
                    tracing::warn!(request_id = %msg.request_id, ?failure, "SNS unreachable");
                    return Err(failure);
                };
                let code = err.code().unwrap_or("SNS_ERROR").to_owned();
                let refused = match err {
                    PublishError::InvalidParameterException(_)
                    | PublishError::InvalidParameterValueException(_)
                    | PublishError::EndpointDisabledException(_)
                    | PublishError::ValidationException(_)
                    | PublishError::NotFoundException(_)
                    | PublishError::PlatformApplicationDisabledException(_) => true,
                    // Transient, or our configuration (permissions, KMS): not this message's fault.
                    PublishError::InternalErrorException(_)
                    | PublishError::AuthorizationErrorException(_)
                    | PublishError::InvalidSecurityException(_)
                    | PublishError::KmsAccessDeniedException(_)
                    | PublishError::KmsDisabledException(_)
                    | PublishError::KmsInvalidStateException(_)
                    | PublishError::KmsNotFoundException(_)
                    | PublishError::KmsOptInRequired(_)
                    | PublishError::KmsThrottlingException(_) => false,
                    _ => unmodeled_is_refusal(err.code(), status),
                };
                if refused {
                    tracing::info!(request_id = %msg.request_id, code = %code, "SNS refused the sms");
                    Err(DispatchError::rejected(code, "The SMS provider refused the message or the destination number"))
                } else {
                    tracing::warn!(request_id = %msg.request_id, code = %code, ?status, "SNS unavailable");
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
    fn sender_ids_are_short_alphanumerics_with_a_letter() {
        assert!(is_sender_id("Twofa"));
        assert!(is_sender_id("MyBank24"));
        assert!(!is_sender_id("14155550100"), "a number is not a sender id");
        assert!(!is_sender_id("+14155550100"));
        assert!(!is_sender_id("TwelveChars1"));
        assert!(!is_sender_id("My Bank"));
        assert!(!is_sender_id(""));
    }

    #[test]
    fn numeric_senders_are_origination_numbers() {
        assert!(is_origination_number("+14155550100"));
        assert!(is_origination_number("14155550100"));
        assert!(is_origination_number("24365"), "a short code");
        assert!(!is_origination_number("Twofa"));
        assert!(!is_origination_number("+1 415"));
        assert_eq!(origination("14155550100"), "+14155550100");
        assert_eq!(origination("24365"), "24365");
    }

    #[test]
    fn numbers_get_their_plus() {
        assert_eq!(e164("919960639901"), "+919960639901");
        assert_eq!(e164("+14155550100"), "+14155550100");
    }
}
