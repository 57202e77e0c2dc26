//! WhatsApp through AWS End User Messaging Social (`SendWhatsAppMessage`) on the AWS path:
//! DynamoDB on moto, and End User Messaging Social, which moto does not emulate, answered by
//! the stand-in in infra/scripts/moto_serial_server.py (the same endpoint: it speaks the
//! service's restJson1 wire protocol, `POST /v1/whatsapp/send`, records what was sent at
//! /_twofa/social/messages and fails on request). Receipts come back through the receipts
//! worker's SNS handling, as the WABA's event destination delivers Meta's status webhooks.

mod workflow_defs;

mod common;

use std::sync::Arc;

use common::aws::{self, moto_url, new_number};
use serde_json::{json, Value};
use twofa::adapters::router::{self, Route, Router};
use twofa::{
    adapters::aws::{
        dispatch_config,
        dynamodb::DynamoStore,
        ses::SesEmail,
        sns::SnsSms,
        whatsapp::{Whatsapp, WhatsappOrigin},
    },
    domain::{
        otp::{Channel, ChannelStatus},
        workflows::run_step,
    },
    ports::{Deps, OtpStore, WorkflowStore},
    workers::receipts::ReceiptWorker,
};
use workflow_defs::RecordingScheduler;

const PHONE_NUMBER_ID: &str = "phone-number-id-976c72a700aac43eaf573ae050example";
const TEMPLATE: &str = "twofa_code";

struct AwsApi {
    app: axum::Router,
    deps: Deps,
    scheduler: Arc<RecordingScheduler>,
    store: Arc<DynamoStore>,
    ddb: aws_sdk_dynamodb::Client,
    sid: String,
    token: String,
}

/// A deployment on moto, with WhatsApp configured or not.
async fn start(with_whatsapp: bool) -> AwsApi {
    let aws::Deployment { sdk, ddb, store, keys, account, token } = aws::deployment().await;
    let delivery = dispatch_config(&sdk);
    let origin = WhatsappOrigin {
        phone_number_id: PHONE_NUMBER_ID.into(),
        template: TEMPLATE.into(),
        languages: vec!["en_US".into(), "es".into()],
        meta_api_version: "v20.0".into(),
    };
    let mut routes = vec![
        Route::new(router::SNS, Channel::Sms, Arc::new(SnsSms::new(aws_sdk_sns::Client::new(&delivery), None))),
        Route::new(router::SES, Channel::Email, Arc::new(SesEmail::new(aws_sdk_ses::Client::new(&delivery), None))),
    ];
    if with_whatsapp {
        let whatsapp = Whatsapp::new(aws_sdk_socialmessaging::Client::new(&delivery), origin);
        routes.push(Route::new(router::END_USER_MESSAGING_SOCIAL, Channel::Whatsapp, Arc::new(whatsapp)));
    }
    let dispatcher = Router::new(routes);
    let scheduler = Arc::new(RecordingScheduler::default());
    let deps = Deps {
        store: store.clone(),
        dispatcher: Arc::new(dispatcher),
        clock: Arc::new(twofa::ports::SystemClock),
        keys: Arc::new(keys),
        scheduler: scheduler.clone(),
    };
    let app = twofa::http::otp::router(deps.clone());
    AwsApi { app, deps, scheduler, store, ddb, sid: account.sid, token }
}

impl AwsApi {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        aws::post(&self.app, &self.sid, &self.token, path, body).await
    }

    async fn whatsapp(&self, to: &str, extra: Value) -> (u16, Value) {
        let mut body = json!({ "service": "2FA", "channel": "whatsapp", "from": "Twofa", "to": to,
            "body": "Your code is {code}" });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        self.post("/2fa/send", body).await
    }

    async fn channel_status(&self, sid: &str) -> (ChannelStatus, Option<String>) {
        let otp = self.store.get_otp(&self.sid, sid).await.unwrap().unwrap();
        (otp.events[0].status, otp.events[0].error_code.clone())
    }

    /// The `MSG#` receipt lookup items in the table.
    async fn lookup_items(&self) -> usize {
        aws::lookup_items(&self.ddb, self.store.table()).await
    }
}

/// What the stand-in was asked to send to `to` (Meta's `to`, as the message JSON has it).
async fn sent_to(to: &str) -> Vec<Value> {
    aws::stand_in_messages("social").await.into_iter().filter(|m| m["Message"]["to"] == to).collect()
}

/// The stand-in answers the next `times` sends to `to` with `error`.
async fn fail_next(to: &str, error: &str, times: u32) {
    let status = reqwest::Client::new()
        .post(format!("{}/_twofa/social/fail", moto_url()))
        .json(&json!({ "Error": error, "Times": times, "To": to }))
        .send()
        .await
        .expect("the stand-in")
        .status();
    assert!(status.is_success());
}

/// A Meta status webhook as the WABA's SNS event destination hands it to the receipts function:
/// the End User Messaging Social header, the webhook entry as a JSON string.
fn status_event(message_id: &str, status: &str, callback: &Value, errors: Value) -> Value {
    status_event_with(
        "wamid.HBgLMTQxNTU1NTAxMDAVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA",
        message_id,
        status,
        callback,
        errors,
    )
}

/// `status_event` with Meta's message id `wamid` in the status.
fn status_event_with(wamid: &str, message_id: &str, status: &str, callback: &Value, errors: Value) -> Value {
    let entry = json!({ "id": "1234567890abcde", "changes": [{ "field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "15550000000", "phone_number_id": "abcde1234567890" },
        "statuses": [{ "id": wamid, "status": status,
            "timestamp": "1764617634", "recipient_id": "14155550100", "biz_opaque_callback_data": callback,
            "errors": errors }] } }] });
    let event = json!({
        "context": { "MetaWabaIds": [{ "wabaId": "1234567890abcde", "arn": "arn:aws:social-messaging:us-east-1:123456789012:waba/w" }],
            "MetaPhoneNumberIds": [{ "metaPhoneNumberId": "abcde1234567890", "arn": "arn:aws:social-messaging:us-east-1:123456789012:phone-number-id/p" }] },
        "whatsAppWebhookEntry": entry.to_string(), "aws_account_id": "123456789012",
        "message_timestamp": "2026-12-01T19:40:00.000Z", "messageId": message_id });
    json!({ "Records": [{ "EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:twofa-whatsapp-events:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
        "Sns": { "Type": "Notification", "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:twofa-whatsapp-events", "Subject": null,
            "Message": event.to_string(), "Timestamp": "2026-12-01T19:40:00.000Z", "SignatureVersion": "1",
            "Signature": "EXAMPLE", "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/cert.pem",
            "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe", "MessageAttributes": {} } }] })
}

#[tokio::test]
async fn a_whatsapp_goes_as_the_authentication_template_from_the_phone_number_and_its_code_verifies() {
    // Given a deployment with WhatsApp
    let api = start(true).await;
    let to = new_number();
    // When an OTP is sent on WhatsApp in Mexican Spanish
    let (status, body) = api.whatsapp(&to, json!({ "language": "es-MX" })).await;
    assert_eq!(status, 200, "{body}");
    let sid = body["requestID"].as_str().unwrap().to_owned();
    // Then one SendWhatsAppMessage went from the phone number id, as Meta's template message
    let sent = sent_to(&to).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (sent[0]["OriginationPhoneNumberId"].as_str(), sent[0]["MetaApiVersion"].as_str()),
        (Some(PHONE_NUMBER_ID), Some("v20.0"))
    );
    let m = &sent[0]["Message"];
    assert_eq!((m["messaging_product"].as_str(), m["type"].as_str()), (Some("whatsapp"), Some("template")));
    assert_eq!(m["template"]["name"], TEMPLATE);
    assert_eq!(m["template"]["language"]["code"], "es", "the template's language nearest the send's");
    // And the code is the body's parameter and the copy-code button's
    let components = m["template"]["components"].as_array().unwrap();
    assert_eq!(components[0]["type"], "body");
    let code = components[0]["parameters"][0]["text"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 6);
    assert_eq!((components[1]["type"].as_str(), components[1]["sub_type"].as_str()), (Some("button"), Some("url")));
    assert_eq!(components[1]["parameters"][0]["text"], code.as_str());
    // And the callback data names the OTP and its event, so no lookup item is written
    assert_eq!(m["biz_opaque_callback_data"], format!("{}|{sid}|0", api.sid));
    let otp = api.store.get_otp(&api.sid, &sid).await.unwrap().unwrap();
    assert_eq!(otp.events[0].status, ChannelStatus::Sent);
    assert_eq!(otp.events[0].target_sid.as_deref(), sent[0]["MessageId"].as_str());
    assert_eq!(api.lookup_items().await, 0, "no MSG# item on WhatsApp");
    // And the code verifies
    let (status, body) = api.post("/2fa/verify", json!({ "requestId": sid, "code": code })).await;
    assert_eq!((status, body), (200, json!({ "code": 200, "message": "OK", "requestID": sid })));
}

#[tokio::test]
async fn delivered_read_and_failed_statuses_move_the_channel_status() {
    // Given three WhatsApp messages sent
    let api = start(true).await;
    let worker = ReceiptWorker { store: api.store.clone() };
    let mut sent = Vec::new();
    for _ in 0..3 {
        let to = new_number();
        let (status, body) = api.whatsapp(&to, json!({})).await;
        assert_eq!(status, 200, "{body}");
        sent.push((body["requestID"].as_str().unwrap().to_owned(), sent_to(&to).await.remove(0)));
    }
    // When Meta's statuses come back: delivered, read, failed (not a WhatsApp user)
    let undeliverable =
        json!([{ "code": 131026, "title": "Message undeliverable", "message": "Message undeliverable" }]);
    let statuses = [("delivered", json!([])), ("read", json!([])), ("failed", undeliverable)];
    for ((_, m), (status, errors)) in sent.iter().zip(statuses) {
        let event =
            status_event(m["MessageId"].as_str().unwrap(), status, &m["Message"]["biz_opaque_callback_data"], errors);
        let tally = worker.handle(event).await.expect("receipts");
        assert_eq!(tally["applied"], 1, "{status}: {tally}");
    }
    // Then each OTP's event moved forward: read counts as delivered
    assert_eq!(api.channel_status(&sent[0].0).await, (ChannelStatus::Delivered, None));
    assert_eq!(api.channel_status(&sent[1].0).await, (ChannelStatus::Delivered, None));
    assert_eq!(api.channel_status(&sent[2].0).await, (ChannelStatus::Failed, Some("WHATSAPP_131026".into())));
    // And a `sent` status, a repeat, or one for another message changes nothing
    let (otp_sid, m) = &sent[0];
    let callback = &m["Message"]["biz_opaque_callback_data"];
    let tally =
        worker.handle(status_event(m["MessageId"].as_str().unwrap(), "sent", callback, json!([]))).await.unwrap();
    assert_eq!(tally["ignored"], 1, "{tally}");
    let tally =
        worker.handle(status_event(m["MessageId"].as_str().unwrap(), "read", callback, json!([]))).await.unwrap();
    assert_eq!(tally["unchanged"], 1, "{tally}");
    let forged = json!(format!("{}|{otp_sid}|0", api.sid));
    let tally = worker.handle(status_event("not-this-message", "failed", &forged, json!([]))).await.unwrap();
    assert_eq!(tally["unknown"], 1, "{tally}");
    assert_eq!(api.channel_status(otp_sid).await.0, ChannelStatus::Delivered);
}

#[tokio::test]
async fn a_status_naming_the_message_by_metas_id_alone_moves_it_too() {
    // Given a WhatsApp message sent, whose id from SendWhatsAppMessage is Meta's message id
    // (AWS does not say which id its event header's messageId is)
    let api = start(true).await;
    let worker = ReceiptWorker { store: api.store.clone() };
    let to = new_number();
    let (status, body) = api.whatsapp(&to, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let m = sent_to(&to).await.remove(0);
    let callback = &m["Message"]["biz_opaque_callback_data"];
    // When its status comes back with another id in the header and the sent id as Meta's
    let event =
        status_event_with(m["MessageId"].as_str().unwrap(), "an-aws-event-id", "delivered", callback, json!([]));
    let tally = worker.handle(event).await.expect("receipts");
    // Then the event moved forward
    assert_eq!(tally["applied"], 1, "{tally}");
    assert_eq!(api.channel_status(body["requestID"].as_str().unwrap()).await, (ChannelStatus::Delivered, None));
}

#[tokio::test]
async fn whatsapp_on_a_deployment_without_it_is_a_400_naming_channel_and_sends_nothing() {
    // Given a deployment with no WhatsApp phone number configured
    let api = start(false).await;
    let to = new_number();
    // When an OTP is sent on WhatsApp
    let (status, body) = api.whatsapp(&to, json!({})).await;
    // Then it is a 400 naming channel, and nothing went out
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["message"], "Invalid parameter: channel (whatsapp is not available in this deployment)");
    assert!(sent_to(&to).await.is_empty());
}

#[tokio::test]
async fn a_throttled_whatsapp_is_retried_and_a_refused_one_is_a_failed_event_not_retried() {
    let api = start(true).await;
    // Given Social throttling the first try to one number
    let throttled = new_number();
    fail_next(&throttled, "ThrottledRequestException", 1).await;
    // When a WhatsApp is sent there, then the SDK's retry sends it
    let (status, body) = api.whatsapp(&throttled, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sent_to(&throttled).await.len(), 1);
    // Given Social refusing another number's message
    let refused = new_number();
    fail_next(&refused, "InvalidParametersException", 1).await;
    // When a WhatsApp is sent there, then the OTP stands with a failed event, sent once only
    let (status, body) = api.whatsapp(&refused, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let sid = body["requestID"].as_str().unwrap();
    assert_eq!(api.channel_status(sid).await, (ChannelStatus::Failed, Some("InvalidParametersException".into())));
    assert!(sent_to(&refused).await.is_empty(), "not retried");
}

#[tokio::test]
async fn in_a_whatsapp_then_sms_workflow_the_sms_goes_only_when_the_whatsapp_code_was_not_verified() {
    // Given a workflow whatsapp, then sms 60 s later, on a deployment with WhatsApp
    let api = start(true).await;
    let wf = workflow_defs::workflow_def(&api.sid, "wa-sms", &[(Channel::Whatsapp, 0), (Channel::Sms, 60)], 0);
    api.store.create_workflow(&wf).await.unwrap();
    let (verified_to, silent_to) = (new_number(), new_number());
    let mut runs = Vec::new();
    for to in [&verified_to, &silent_to] {
        let (status, body) = api.whatsapp(to, json!({ "workflow": wf.sid })).await;
        assert_eq!(status, 200, "{body}");
        let run = api.scheduler.0.lock().unwrap().pop().expect("the sms step scheduled");
        runs.push((body["requestID"].as_str().unwrap().to_owned(), run));
    }
    // And the first user verifies the code the WhatsApp message carried
    let m = sent_to(&verified_to).await.remove(0);
    let code = m["Message"]["template"]["components"][0]["parameters"][0]["text"].as_str().unwrap().to_owned();
    let (status, body) = api.post("/2fa/verify", json!({ "requestId": runs[0].0, "code": code })).await;
    assert_eq!(status, 200, "{body}");
    // When each SMS step comes due (as the step Lambda runs it)
    for (_, run) in &runs {
        run_step(&api.deps, run).await.expect("step");
    }
    // Then the verified OTP has its WhatsApp event only, and the other an SMS sent after it
    let channels = |otp: &twofa::domain::otp::Otp| otp.events.iter().map(|e| e.channel).collect::<Vec<_>>();
    let verified = api.store.get_otp(&api.sid, &runs[0].0).await.unwrap().unwrap();
    assert_eq!(channels(&verified), [Channel::Whatsapp]);
    let silent = api.store.get_otp(&api.sid, &runs[1].0).await.unwrap().unwrap();
    assert_eq!(channels(&silent), [Channel::Whatsapp, Channel::Sms]);
    assert_eq!(silent.events[1].status, ChannelStatus::Sent, "handed to SNS");
    assert_eq!(sent_to(&silent_to).await.len(), 1, "one WhatsApp message, not two");
}

#[tokio::test]
async fn a_whatsapp_send_makes_one_write_fewer_than_an_sns_sms_and_its_receipt_no_read() {
    // Given a deployment with WhatsApp (SMS through SNS), its account read once (a warm process)
    let api = start(true).await;
    let worker = ReceiptWorker { store: api.store.clone() };
    let (status, body) = api.whatsapp(&new_number(), json!({})).await;
    assert_eq!(status, 200, "{body}");
    // When an SMS and a WhatsApp message are sent, each counted alone
    let mut sends = Vec::new();
    for channel in ["sms", "whatsapp"] {
        let to = new_number();
        let before = api.store.calls();
        let body = json!({ "service": "2FA", "channel": channel, "from": "Twofa", "to": to, "body": "Code {code}" });
        let (status, body) = api.post("/2fa/send", body).await;
        assert_eq!(status, 200, "{body}");
        let cost = api.store.calls() - before;
        sends.push((cost.writes(), cost.reads(), body["requestID"].as_str().unwrap().to_owned(), to));
    }
    let (sms, wa) = (&sends[0], &sends[1]);
    eprintln!("send round trips (writes, reads): SNS SMS ({}, {}), WhatsApp ({}, {})", sms.0, sms.1, wa.0, wa.1);
    // Then WhatsApp writes one item fewer (no MSG# lookup) and reads as much
    assert_eq!((wa.0 + 1, wa.1), (sms.0, sms.1));
    // And its receipt is one write with no read before it
    let m = sent_to(&wa.3).await.remove(0);
    let before = api.store.calls();
    let event = status_event(
        m["MessageId"].as_str().unwrap(),
        "delivered",
        &m["Message"]["biz_opaque_callback_data"],
        json!([]),
    );
    assert_eq!(worker.handle(event).await.unwrap()["applied"], 1);
    let receipt = api.store.calls() - before;
    assert_eq!((receipt.writes(), receipt.reads()), (1, 0));
}
