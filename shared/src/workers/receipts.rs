//! `functions/receipts`: delivery receipts from the providers, in the formats they send them.
//!
//! - SMS: SNS writes one delivery-status log line per message to CloudWatch Logs
//!   (`sns/<region>/<account>/DirectPublishToPhoneNumber[/Failure]`); a subscription filter
//!   hands them here (base64 of gzip of `{"logEvents": [{"message": …}]}`, decoded by
//!   `aws_lambda_events`). Each message is `{"notification": {"messageId"}, "delivery":
//!   {"destination", "providerResponse", …}, "status": "SUCCESS" | "FAILURE"}`.
//! - Email: SES event publishing (a configuration set) → an SNS topic → here; each SNS message
//!   is `{"eventType": "Delivery" | "Bounce" | "Complaint" | …, "mail": {"messageId"}, …}`
//!   (identity notifications say `notificationType` instead; both are read).
//! - Voice calls: AWS End User Messaging SMS and Voice v2 (a configuration set's event
//!   destination) → an SNS topic → here; each SNS message is the event itself, `{"eventType":
//!   "VOICE_COMPLETED" | …, "isFinal", "messageId", "messageStatus",
//!   "messageStatusDescription", …}`.
//! - SMS through End User Messaging SMS: the same configuration set's event destination; its
//!   text events (`"TEXT_DELIVERED" | "TEXT_TTL_EXPIRED" | …`) carry the `context` the text was
//!   sent with, which names the OTP and event: no lookup by message id.
//! - WhatsApp through End User Messaging Social: the WABA's event destination → an SNS topic →
//!   here; each SNS message is `{"context": {…}, "whatsAppWebhookEntry": "<Meta's webhook
//!   entry, as a JSON string>", "messageId", …}`. The entry's `changes[].value.statuses[]` are
//!   Meta's status events (`sent`, `delivered`, `read`, `failed`), each echoing the
//!   `biz_opaque_callback_data` the message was sent with, which names the OTP and event.
//!
//! Each becomes a `domain::receipts::Receipt` on the event whose `targetSid` is that id.

use std::sync::Arc;

use aws_lambda_events::{cloudwatch_logs::LogsEvent, sns::SnsEvent};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{record_source, BoxError};
use crate::{
    adapters::aws::{
        aws_config,
        dynamodb::DynamoStore,
        eum_sms::{CONTEXT_ACCOUNT, CONTEXT_EVENT, CONTEXT_OTP},
    },
    domain::{
        otp::ChannelStatus,
        receipts::{self, Receipt, ReceiptOutcome, ReceiptTarget},
    },
    ports::ReceiptStore,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SmsLog {
    notification: SmsNotification,
    #[serde(default)]
    delivery: SmsDelivery,
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SmsNotification {
    message_id: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SmsDelivery {
    provider_response: Option<String>,
}

/// The receipt in one SNS SMS delivery-status log message; None for anything else.
pub fn sms_receipt(message: &str) -> Option<Receipt> {
    let log: SmsLog = serde_json::from_str(message).ok()?;
    let (status, error_code) = match log.status.as_str() {
        "SUCCESS" => (ChannelStatus::Delivered, None),
        // SNS handed it to the carrier, which did not deliver it (unreachable, blocked,
        // invalid, opted out: the provider response says which).
        "FAILURE" => (ChannelStatus::Undelivered, Some("SMS_FAILURE".to_owned())),
        _ => return None,
    };
    let error_message = error_code.as_ref().and(log.delivery.provider_response);
    Some(Receipt::by_id(log.notification.message_id, status, error_code, error_message))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesNotification {
    event_type: Option<String>,
    notification_type: Option<String>,
    mail: SesMail,
    bounce: Option<SesBounce>,
    reject: Option<SesReject>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesMail {
    message_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesBounce {
    bounce_type: Option<String>,
    bounce_sub_type: Option<String>,
    #[serde(default)]
    bounced_recipients: Vec<SesBouncedRecipient>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesBouncedRecipient {
    diagnostic_code: Option<String>,
}

#[derive(Deserialize)]
struct SesReject {
    reason: Option<String>,
}

/// The receipt in one SES notification; None for events that say nothing of delivery
/// (send, open, click, delivery delay: still on its way).
pub fn ses_receipt(message: &str) -> Option<Receipt> {
    let n: SesNotification = serde_json::from_str(message).ok()?;
    let kind = n.event_type.or(n.notification_type)?;
    let (status, error_code, error_message) = match kind.as_str() {
        "Delivery" => (ChannelStatus::Delivered, None, None),
        // A complaint comes from a mailbox the message reached.
        "Complaint" => (ChannelStatus::Delivered, None, None),
        "Bounce" => {
            let b = n.bounce?;
            let kind = b.bounce_type.unwrap_or_else(|| "Undetermined".into());
            let detail = b.bounced_recipients.into_iter().find_map(|r| r.diagnostic_code).or(b.bounce_sub_type);
            (ChannelStatus::Undelivered, Some(format!("SES_BOUNCE_{}", kind.to_ascii_uppercase())), detail)
        }
        "Reject" => (ChannelStatus::Failed, Some("SES_REJECT".to_owned()), n.reject.and_then(|r| r.reason)),
        "Rendering Failure" | "RenderingFailure" => {
            (ChannelStatus::Failed, Some("SES_RENDERING_FAILURE".to_owned()), None)
        }
        _ => return None,
    };
    Some(Receipt::by_id(n.mail.message_id, status, error_code, error_message))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VoiceEvent {
    event_type: String,
    message_id: String,
    message_status: Option<String>,
    message_status_description: Option<String>,
}

/// The receipt in one SMS Voice v2 voice event; None for the call's progress (initiated,
/// ringing: not its outcome yet) and for anything that is not a voice event.
pub fn voice_receipt(message: &str) -> Option<Receipt> {
    let e: VoiceEvent = serde_json::from_str(message).ok()?;
    let status = match e.event_type.as_str() {
        // The call was picked up and the message played (possibly to voicemail: as SMS,
        // "delivered" is the provider's, not that a person heard it).
        "VOICE_COMPLETED" | "VOICE_ANSWERED" => ChannelStatus::Delivered,
        // The destination was reached and did not take the call, or not within its time to live.
        "VOICE_BUSY" | "VOICE_NO_ANSWER" | "VOICE_TTL_EXPIRED" => ChannelStatus::Undelivered,
        // The call could not be made (the number, the network, the message).
        "VOICE_FAILED" => ChannelStatus::Failed,
        // VOICE_INITIATED, VOICE_RINGING, and types not known here.
        _ => return None,
    };
    let error_code = (status != ChannelStatus::Delivered).then(|| e.event_type.clone());
    let error_message = error_code.as_ref().and(e.message_status_description.or(e.message_status));
    Some(Receipt::by_id(e.message_id, status, error_code, error_message))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TextEvent {
    event_type: String,
    message_id: String,
    message_status_description: Option<String>,
    #[serde(default)]
    context: std::collections::HashMap<String, String>,
}

/// The receipt in one End User Messaging SMS text event; None for a text still on its way
/// (queued, pending) and anything that is not a text event. The `context` the text was sent
/// with names its OTP and event (`adapters::aws::eum_sms::context`).
pub fn text_receipt(message: &str) -> Option<Receipt> {
    let e: TextEvent = serde_json::from_str(message).ok()?;
    let status = match e.event_type.as_str() {
        // Accepted by the handset or, where the country gives no more, by its carrier (as an
        // SNS `SUCCESS`).
        "TEXT_DELIVERED" | "TEXT_SUCCESSFUL" => ChannelStatus::Delivered,
        // It went out and did not arrive: blocked by the handset or carrier, not delivered in
        // its time to live (the OTP's), the carrier or handset unreachable, filtered as spam.
        "TEXT_BLOCKED"
        | "TEXT_CARRIER_BLOCKED"
        | "TEXT_TTL_EXPIRED"
        | "TEXT_CARRIER_UNREACHABLE"
        | "TEXT_UNREACHABLE"
        | "TEXT_SPAM"
        | "TEXT_UNKNOWN" => ChannelStatus::Undelivered,
        // It could not be sent at all: the number, the message, or the protect configuration.
        "TEXT_INVALID" | "TEXT_INVALID_MESSAGE" | "TEXT_PROTECT_BLOCKED" => ChannelStatus::Failed,
        // TEXT_QUEUED, TEXT_PENDING, voice events and types not known here.
        _ => return None,
    };
    let error_code = (status != ChannelStatus::Delivered).then(|| e.event_type.clone());
    let error_message = error_code.as_ref().and(e.message_status_description);
    let target = (|| {
        Some(ReceiptTarget {
            account_sid: e.context.get(CONTEXT_ACCOUNT)?.clone(),
            otp_sid: e.context.get(CONTEXT_OTP)?.clone(),
            event: e.context.get(CONTEXT_EVENT)?.parse().ok()?,
        })
    })();
    Some(Receipt {
        provider_id: e.message_id,
        status,
        error_code,
        error_message,
        target,
        also_id: None,
        account_sid: None,
    })
}

/// The receipt in one SNS message of the receipts topics: an SES notification, or an End User
/// Messaging SMS and Voice v2 voice or text event.
pub fn sns_receipt(message: &str) -> Option<Receipt> {
    ses_receipt(message).or_else(|| voice_receipt(message)).or_else(|| text_receipt(message))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SocialEvent {
    whats_app_webhook_entry: String,
    message_id: Option<String>,
}

#[derive(Deserialize, Default)]
struct WebhookEntry {
    #[serde(default)]
    changes: Vec<WebhookChange>,
}

#[derive(Deserialize)]
struct WebhookChange {
    #[serde(default)]
    value: WebhookValue,
}

#[derive(Deserialize, Default)]
struct WebhookValue {
    #[serde(default)]
    statuses: Vec<WhatsappStatus>,
}

#[derive(Deserialize)]
struct WhatsappStatus {
    /// Meta's id of the message (`wamid.…`).
    #[serde(default)]
    id: Option<String>,
    status: String,
    biz_opaque_callback_data: Option<String>,
    #[serde(default)]
    errors: Vec<WhatsappError>,
}

#[derive(Deserialize)]
struct WhatsappError {
    code: Option<i64>,
    title: Option<String>,
    message: Option<String>,
}

/// The receipts in one End User Messaging Social event (None: not one); a status still on its
/// way (`sent`) or not ours reads as no receipt. The event's `messageId` is the one
/// `SendWhatsAppMessage` answered (the event's `targetSid`); the status's
/// `biz_opaque_callback_data` (`adapters::aws::whatsapp::callback_data`) names the OTP and event.
pub fn whatsapp_receipts(message: &str) -> Option<Vec<Option<Receipt>>> {
    let e: SocialEvent = serde_json::from_str(message).ok()?;
    let entry: WebhookEntry = serde_json::from_str(&e.whats_app_webhook_entry).unwrap_or_default();
    let statuses: Vec<WhatsappStatus> = entry.changes.into_iter().flat_map(|c| c.value.statuses).collect();
    if statuses.is_empty() {
        // An incoming message or another notification: nothing of a delivery.
        return Some(vec![None]);
    }
    let provider_id = e.message_id.unwrap_or_default();
    Some(statuses.into_iter().map(|s| whatsapp_status(&provider_id, s)).collect())
}

fn whatsapp_status(provider_id: &str, s: WhatsappStatus) -> Option<Receipt> {
    let status = match s.status.as_str() {
        // Read implies delivered (Meta may send `read` alone when both happen at once).
        "delivered" | "read" => ChannelStatus::Delivered,
        "failed" => ChannelStatus::Failed,
        // `sent` (to WhatsApp's servers: the event is `sent` already) and anything new.
        _ => return None,
    };
    let error = (status == ChannelStatus::Failed).then(|| s.errors.into_iter().next()).flatten();
    let error_code = (status == ChannelStatus::Failed).then(|| {
        format!("WHATSAPP_{}", error.as_ref().and_then(|e| e.code).map_or("FAILED".into(), |c| c.to_string()))
    });
    let error_message = error.and_then(|e| e.message.or(e.title));
    let target = s.biz_opaque_callback_data.as_deref().and_then(|data| {
        let mut parts = data.split('|');
        let (account, otp, event) = (parts.next()?, parts.next()?, parts.next()?.parse().ok()?);
        Some(ReceiptTarget { account_sid: account.to_owned(), otp_sid: otp.to_owned(), event })
    });
    // AWS does not say whether `SendWhatsAppMessage`'s `messageId` (the event's `targetSid`) is
    // the event header's `messageId` or Meta's `wamid`: either matches.
    let also_id = s.id.filter(|id| id != provider_id);
    Some(Receipt {
        provider_id: provider_id.to_owned(),
        status,
        error_code,
        error_message,
        target,
        also_id,
        account_sid: None,
    })
}

/// How one invocation went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub applied: usize,
    pub unchanged: usize,
    pub unknown: usize,
    /// Messages that carry no receipt.
    pub ignored: usize,
}

pub struct ReceiptWorker {
    pub store: Arc<dyn ReceiptStore>,
}

impl ReceiptWorker {
    pub async fn from_env() -> Result<Self, BoxError> {
        let table = std::env::var("TWOFA_TABLE").map_err(|_| "TWOFA_TABLE is not set")?;
        let sdk = aws_config().await;
        Ok(ReceiptWorker { store: Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table)) })
    }

    /// Every receipt of one invocation. Each is applied even if an earlier one failed; then
    /// a failure fails the invocation, so Lambda delivers it again (the receipts already
    /// applied then change nothing).
    pub async fn handle(&self, payload: Value) -> Result<Value, BoxError> {
        let receipts: Vec<Option<Receipt>> = if payload.get("awslogs").is_some() {
            // Its decoder (base64, gzip, JSON) borrows from the text: read it from text.
            let event: LogsEvent = serde_json::from_str(&payload.to_string())?;
            event.aws_logs.data.log_events.iter().map(|e| sms_receipt(&e.message)).collect()
        } else if record_source(&payload) == Some("aws:sns") {
            let event: SnsEvent = serde_json::from_value(payload)?;
            event
                .records
                .iter()
                .flat_map(|r| whatsapp_receipts(&r.sns.message).unwrap_or_else(|| vec![sns_receipt(&r.sns.message)]))
                .collect()
        } else {
            return Err("not a CloudWatch Logs or SNS event".into());
        };
        let mut tally = Tally::default();
        let mut failed = None;
        for receipt in receipts {
            let Some(receipt) = receipt else {
                tally.ignored += 1;
                continue;
            };
            match receipts::apply(self.store.as_ref(), &receipt).await {
                Ok(ReceiptOutcome::Applied) => tally.applied += 1,
                Ok(ReceiptOutcome::Unchanged) => tally.unchanged += 1,
                Ok(ReceiptOutcome::Unknown) => tally.unknown += 1,
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            return Err(format!("a receipt could not be recorded: {e}").into());
        }
        Ok(
            json!({ "applied": tally.applied, "unchanged": tally.unchanged, "unknown": tally.unknown, "ignored": tally.ignored }),
        )
    }
}

/// `functions/receipts`.
pub async fn run() -> Result<(), BoxError> {
    crate::http::lambda::init_tracing();
    let worker = Arc::new(ReceiptWorker::from_env().await?);
    super::serve(move |payload| {
        let worker = worker.clone();
        async move { worker.handle(payload).await }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sns_sms_delivery_logs_read_as_delivered_or_undelivered() {
        let ok = r#"{"notification":{"messageId":"34d9b400-c6dd-5444-820d-fbeb0f1f54cf","timestamp":"2026-12-01 10:00:00.558"},
            "delivery":{"phoneCarrier":"My Phone Carrier","mnc":270,"numberOfMessageParts":1,"destination":"+14155550100",
            "priceInUSD":0.00645,"smsType":"Transactional","mcc":310,"providerResponse":"Message has been accepted by phone carrier",
            "dwellTimeMs":599,"dwellTimeMsUntilDeviceAck":1344},"status":"SUCCESS"}"#;
        let r = sms_receipt(ok).unwrap();
        assert_eq!(
            (r.provider_id.as_str(), r.status, r.error_code),
            ("34d9b400-c6dd-5444-820d-fbeb0f1f54cf", ChannelStatus::Delivered, None)
        );
        let failed = ok
            .replace("SUCCESS", "FAILURE")
            .replace("Message has been accepted by phone carrier", "Phone is currently unreachable/unavailable");
        let r = sms_receipt(&failed).unwrap();
        assert_eq!(r.status, ChannelStatus::Undelivered);
        assert_eq!(r.error_message.as_deref(), Some("Phone is currently unreachable/unavailable"));
        assert_eq!(sms_receipt("not json"), None);
    }

    #[test]
    fn ses_events_read_as_receipts_and_others_are_ignored() {
        let bounce = r#"{"eventType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General",
            "bouncedRecipients":[{"emailAddress":"x@example.com","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}]},
            "mail":{"messageId":"0100018c-abc","destination":["x@example.com"]}}"#;
        let r = ses_receipt(bounce).unwrap();
        assert_eq!((r.status, r.error_code.as_deref()), (ChannelStatus::Undelivered, Some("SES_BOUNCE_PERMANENT")));
        assert_eq!(r.error_message.as_deref(), Some("smtp; 550 5.1.1 user unknown"));
        let delivered = r#"{"notificationType":"Delivery","mail":{"messageId":"0100018c-abc"},"delivery":{"smtpResponse":"250 ok"}}"#;
        assert_eq!(ses_receipt(delivered).unwrap().status, ChannelStatus::Delivered);
        assert_eq!(ses_receipt(r#"{"eventType":"Open","mail":{"messageId":"m"}}"#), None);
    }

    /// An SMS Voice v2 voice event as its event destination publishes it.
    fn voice_event(kind: &str, status: &str, description: &str) -> String {
        serde_json::json!({
            "eventType": kind, "eventVersion": "1.0", "eventTimestamp": 1_764_617_634_558_i64,
            "isFinal": !matches!(kind, "VOICE_INITIATED" | "VOICE_RINGING" | "VOICE_ANSWERED"),
            "originationPhoneNumber": "+12065550152", "destinationPhoneNumber": "+14255550156",
            "isoCountryCode": "US", "messageId": "862a8790-60c0-4430-9b2b-658bdexample",
            "messageRequestTimestamp": 1_764_617_630_170_i64, "messageStatus": status,
            "messageStatusDescription": description, "totalDurationInMinutes": 1,
            "totalMessagePrice": 0.013, "totalCarrierFee": 0.0
        })
        .to_string()
    }

    #[test]
    fn final_voice_events_read_as_delivered_undelivered_or_failed() {
        let cases = [
            ("VOICE_COMPLETED", "COMPLETED", ChannelStatus::Delivered, None),
            ("VOICE_ANSWERED", "ANSWERED", ChannelStatus::Delivered, None),
            ("VOICE_BUSY", "BUSY", ChannelStatus::Undelivered, Some("VOICE_BUSY")),
            ("VOICE_NO_ANSWER", "NO_ANSWER", ChannelStatus::Undelivered, Some("VOICE_NO_ANSWER")),
            ("VOICE_TTL_EXPIRED", "TTL_EXPIRED", ChannelStatus::Undelivered, Some("VOICE_TTL_EXPIRED")),
            ("VOICE_FAILED", "FAILED", ChannelStatus::Failed, Some("VOICE_FAILED")),
        ];
        for (kind, status, want, code) in cases {
            let r = voice_receipt(&voice_event(kind, status, "The call ended")).unwrap_or_else(|| panic!("{kind}"));
            assert_eq!(r.provider_id, "862a8790-60c0-4430-9b2b-658bdexample", "{kind}");
            assert_eq!((r.status, r.error_code.as_deref()), (want, code), "{kind}");
            // The provider's description only explains an outcome that is not a delivery.
            assert_eq!(r.error_message.is_some(), code.is_some(), "{kind}");
        }
    }

    #[test]
    fn a_call_in_progress_or_an_unknown_event_is_no_receipt() {
        for kind in ["VOICE_INITIATED", "VOICE_RINGING", "VOICE_SOMETHING_NEW", "TEXT_DELIVERED"] {
            assert_eq!(voice_receipt(&voice_event(kind, "X", "")), None, "{kind}");
        }
        assert_eq!(voice_receipt(r#"{"eventType":"VOICE_COMPLETED"}"#), None, "no message id");
        assert_eq!(voice_receipt("not json"), None);
    }

    /// An End User Messaging SMS text event as its SNS event destination publishes it.
    fn text_event(kind: &str, context: Value) -> String {
        json!({
            "eventType": kind, "eventVersion": "1.0", "eventTimestamp": 1_764_617_634_558_i64,
            "isFinal": true, "originationPhoneNumber": "+12065550152", "destinationPhoneNumber": "+14255550156",
            "isoCountryCode": "US", "mcc": "310", "mnc": "800", "messageId": "9539975a-e71f-45f3-b496-8d98dc098a77",
            "messageRequestTimestamp": 1_764_617_630_170_i64, "messageEncoding": "GSM",
            "messageType": "TRANSACTIONAL", "messageStatus": kind.trim_start_matches("TEXT_"),
            "messageStatusDescription": "Message has been accepted by phone", "context": context,
            "totalMessageParts": 1, "totalMessagePrice": 0.00581, "totalCarrierFee": 0.003
        })
        .to_string()
    }

    #[test]
    fn text_events_read_as_receipts_that_name_their_otp_and_event() {
        let ctx = json!({"accountSid": "AC1", "otpSid": "OT1", "event": "2"});
        let cases = [
            ("TEXT_DELIVERED", ChannelStatus::Delivered),
            ("TEXT_SUCCESSFUL", ChannelStatus::Delivered),
            ("TEXT_TTL_EXPIRED", ChannelStatus::Undelivered),
            ("TEXT_BLOCKED", ChannelStatus::Undelivered),
            ("TEXT_CARRIER_UNREACHABLE", ChannelStatus::Undelivered),
            ("TEXT_INVALID", ChannelStatus::Failed),
            ("TEXT_PROTECT_BLOCKED", ChannelStatus::Failed),
        ];
        for (kind, want) in cases {
            let r = sns_receipt(&text_event(kind, ctx.clone())).unwrap_or_else(|| panic!("{kind}"));
            assert_eq!((r.provider_id.as_str(), r.status), ("9539975a-e71f-45f3-b496-8d98dc098a77", want), "{kind}");
            assert_eq!(
                r.target,
                Some(ReceiptTarget { account_sid: "AC1".into(), otp_sid: "OT1".into(), event: 2 }),
                "{kind}"
            );
            assert_eq!(r.error_code.is_some(), want != ChannelStatus::Delivered, "{kind}");
        }
        for kind in ["TEXT_QUEUED", "TEXT_PENDING", "TEXT_SOMETHING_NEW"] {
            assert_eq!(text_receipt(&text_event(kind, ctx.clone())), None, "{kind}: not an outcome");
        }
        // A text sent with no (or another) context is still a receipt, found by its message id.
        assert_eq!(text_receipt(&text_event("TEXT_DELIVERED", json!({"other": "x"}))).unwrap().target, None);
    }

    /// An End User Messaging Social event carrying one Meta status webhook, as its SNS event
    /// destination publishes it.
    fn whatsapp_event(status: &str, callback: &str, errors: Value) -> String {
        let entry = json!({
            "id": "1234567890abcde",
            "changes": [{ "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": { "display_phone_number": "15550000000", "phone_number_id": "abcde1234567890" },
                "statuses": [{
                    "id": "wamid.HBgLMTQxNTU1NTAxMDAVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA", "status": status,
                    "timestamp": "1764617634", "recipient_id": "14155550100",
                    "biz_opaque_callback_data": callback, "errors": errors
                }]
            }}]
        });
        json!({
            "context": { "MetaWabaIds": [{ "wabaId": "1234567890abcde", "arn": "arn:aws:social-messaging:us-east-1:123456789012:waba/w" }],
                         "MetaPhoneNumberIds": [{ "metaPhoneNumberId": "abcde1234567890", "arn": "arn:aws:social-messaging:us-east-1:123456789012:phone-number-id/p" }] },
            "whatsAppWebhookEntry": entry.to_string(),
            "aws_account_id": "123456789012",
            "message_timestamp": "2026-12-01T10:00:00.000Z",
            "messageId": "6d69f07a-c317-4278-9d5c-6a84078419ec"
        })
        .to_string()
    }

    #[test]
    fn whatsapp_statuses_read_as_receipts_that_name_their_otp_and_event() {
        let target = Some(ReceiptTarget { account_sid: "AC1".into(), otp_sid: "OT1".into(), event: 0 });
        for (status, want) in [("delivered", ChannelStatus::Delivered), ("read", ChannelStatus::Delivered)] {
            let got = whatsapp_receipts(&whatsapp_event(status, "AC1|OT1|0", json!([]))).unwrap();
            let r = got[0].clone().unwrap_or_else(|| panic!("{status}"));
            assert_eq!(
                (r.provider_id.as_str(), r.status, r.error_code),
                ("6d69f07a-c317-4278-9d5c-6a84078419ec", want, None)
            );
            assert_eq!(r.target, target, "{status}");
        }
        let errors = json!([{ "code": 131026, "title": "Message undeliverable", "message": "Message undeliverable" }]);
        let failed = whatsapp_receipts(&whatsapp_event("failed", "AC1|OT1|0", errors)).unwrap()[0].clone().unwrap();
        assert_eq!((failed.status, failed.error_code.as_deref()), (ChannelStatus::Failed, Some("WHATSAPP_131026")));
        assert_eq!(failed.error_message.as_deref(), Some("Message undeliverable"));
        // `sent` says no more than the event does already.
        assert_eq!(whatsapp_receipts(&whatsapp_event("sent", "AC1|OT1|0", json!([]))).unwrap(), vec![None]);
        // Not a Social event: the other readers take it.
        assert_eq!(whatsapp_receipts(r#"{"eventType":"Delivery","mail":{"messageId":"m"}}"#), None);
    }

    #[test]
    fn an_sns_message_is_read_as_ses_or_voice() {
        let busy = voice_event("VOICE_BUSY", "BUSY", "The line was busy");
        let r = sns_receipt(&busy).unwrap();
        assert_eq!((r.status, r.error_message.as_deref()), (ChannelStatus::Undelivered, Some("The line was busy")));
        let delivered = r#"{"eventType":"Delivery","mail":{"messageId":"0100018c-abc"}}"#;
        assert_eq!(sns_receipt(delivered).unwrap().provider_id, "0100018c-abc");
    }
}
