//! SMS through AWS End User Messaging SMS (`SendTextMessage`) on the AWS path: DynamoDB on
//! moto, and End User Messaging, which moto does not emulate, answered by the stand-in in
//! infra/scripts/moto_serial_server.py (the same endpoint: it speaks the service's awsJson1_0
//! wire protocol, records what was sent at /_twofa/sms-voice/messages and fails on request).
//! Receipts come back through the receipts worker's SNS handling, as the configuration set's
//! SNS event destination delivers them.

mod workflow_defs;

mod common;

use std::sync::Arc;

use common::aws::{self, moto_url, new_number};
use serde_json::{json, Value};
use twofa::{
    adapters::aws::{
        dispatch_config,
        dynamodb::DynamoStore,
        eum_sms::{EumSms, SmsOrigin},
        polly::PollyVoices,
        ses::SesEmail,
        sns::SnsSms,
        voice::{usable_voices, SmsVoiceCalls},
        Calls,
    },
    adapters::router::{self, Route, Router},
    domain::{
        account::Account,
        ids,
        otp::{Channel, ChannelStatus, Delivery},
        policy::{self, PolicyUpdate},
        send::{send, SendRequest},
        usage::UsageCategory,
        workflows::run_step,
    },
    ports::{Deps, OtpStore, RecordStore, SystemClock, WorkflowStore},
    workers::receipts::ReceiptWorker,
};

use workflow_defs::RecordingScheduler;

const POOL: &str = "pool-2a6a1e9b3f7c4d2e8f0a1b2c3d4e5f60";
const CONFIG_SET: &str = "twofa-sms-events";
const PROTECT: &str = "protect-e06e5d722c31455286262a108e7d863d";
const CALLER: &str = "+18005550199";

struct AwsApi {
    app: axum::Router,
    deps: Deps,
    account: Account,
    scheduler: Arc<RecordingScheduler>,
    store: Arc<DynamoStore>,
    ddb: aws_sdk_dynamodb::Client,
    sid: String,
    token: String,
}

/// The SMS route a deployment under test takes by default (it has both: tables can name either).
#[derive(Clone, Copy, PartialEq)]
enum SmsVia {
    Sns,
    EndUserMessaging,
}

async fn start() -> AwsApi {
    start_on(SmsVia::EndUserMessaging).await
}

async fn start_on(via: SmsVia) -> AwsApi {
    let aws::Deployment { sdk, ddb, store, keys, account, token } = aws::deployment().await;
    let delivery = dispatch_config(&sdk);
    let origin = SmsOrigin {
        origination_identity: POOL.into(),
        configuration_set: Some(CONFIG_SET.into()),
        protect_configuration: Some(PROTECT.into()),
    };
    let eum = EumSms::new(aws_sdk_pinpointsmsvoicev2::Client::new(&delivery), origin);
    let sns = SnsSms::new(aws_sdk_sns::Client::new(&delivery), None);
    let mut sms = vec![
        Route::new(router::END_USER_MESSAGING, Channel::Sms, Arc::new(eum)),
        Route::new(router::SNS, Channel::Sms, Arc::new(sns)),
    ];
    if via == SmsVia::Sns {
        sms.reverse();
    }
    let calls = Calls {
        voices: Arc::new(PollyVoices::new(aws_sdk_polly::Client::new(&delivery)).usable(usable_voices())),
        // (through the same stand-in: moto has no SMS Voice v2 of its own)
        placer: Arc::new(SmsVoiceCalls::new(aws_sdk_pinpointsmsvoicev2::Client::new(&delivery), CALLER.into(), None)),
    };
    let ses = SesEmail::new(aws_sdk_ses::Client::new(&delivery), None);
    let dispatcher = Router::new(
        sms.into_iter()
            .chain([
                Route::new(router::SES, Channel::Email, Arc::new(ses)),
                Route::new(router::END_USER_MESSAGING, Channel::Call, Arc::new(calls)),
            ])
            .collect(),
    );
    let scheduler = Arc::new(RecordingScheduler::default());
    let deps = Deps {
        store: store.clone(),
        dispatcher: Arc::new(dispatcher),
        clock: Arc::new(SystemClock),
        keys: Arc::new(keys),
        scheduler: scheduler.clone(),
    };
    let app = twofa::http::otp::router(deps.clone());
    AwsApi { app, deps, scheduler, store, ddb, sid: account.sid.clone(), account, token }
}

impl AwsApi {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        aws::post(&self.app, &self.sid, &self.token, path, body).await
    }

    async fn sms(&self, to: &str, timeout: u32) -> (u16, Value) {
        let body = json!({ "service": "2FA", "channel": "sms", "from": "Twofa", "to": to,
            "body": "Your code is {code}", "timeout": timeout });
        self.post("/2fa/send", body).await
    }

    /// The `MSG#` receipt lookup items in the table.
    async fn lookup_items(&self) -> usize {
        aws::lookup_items(&self.ddb, self.store.table()).await
    }
}

/// What the stand-in was asked to send to `to`.
async fn sent_to(to: &str) -> Vec<Value> {
    aws::stand_in_messages("sms-voice")
        .await
        .into_iter()
        .filter(|m| m["Request"]["DestinationPhoneNumber"] == to)
        .collect()
}

/// The stand-in answers the next `times` sends to `to` with `error`.
async fn fail_next(to: &str, error: &str, times: u32) {
    let status = reqwest::Client::new()
        .post(format!("{}/_twofa/sms-voice/fail", moto_url()))
        .json(&json!({ "Error": error, "Times": times, "Destination": to }))
        .send()
        .await
        .expect("the stand-in")
        .status();
    assert!(status.is_success());
}

/// A text event as the configuration set's SNS event destination hands it to the receipts
/// function, with the `context` the text was sent with.
fn text_event(kind: &str, message_id: &str, context: &Value) -> Value {
    let event = json!({ "eventType": kind, "eventVersion": "1.0", "eventTimestamp": 1_764_617_634_558_i64,
        "isFinal": true, "originationPhoneNumber": "+18445550123", "isoCountryCode": "US",
        "messageId": message_id, "messageRequestTimestamp": 1_764_617_630_170_i64, "messageEncoding": "GSM",
        "messageType": "TRANSACTIONAL", "messageStatus": kind.trim_start_matches("TEXT_"),
        "messageStatusDescription": "The carrier could not be reached", "context": context,
        "totalMessageParts": 1, "totalMessagePrice": 0.00581, "totalCarrierFee": 0.003 });
    json!({ "Records": [{ "EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:twofa-sms-events:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
        "Sns": { "Type": "Notification", "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:twofa-sms-events", "Subject": null,
            "Message": event.to_string(), "Timestamp": "2026-12-01T19:40:00.000Z", "SignatureVersion": "1",
            "Signature": "EXAMPLE", "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/cert.pem",
            "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe", "MessageAttributes": {} } }] })
}

#[tokio::test]
async fn an_sms_goes_transactional_from_the_pool_with_its_ttl_and_context_and_its_code_verifies() {
    // Given a deployment that sends SMS through End User Messaging
    let api = start().await;
    let to = new_number();
    // When an OTP with a 5-minute timeout is sent
    let (status, body) = api.sms(&to, 300).await;
    assert_eq!(status, 200, "{body}");
    let sid = body["requestID"].as_str().unwrap().to_owned();
    // Then one SendTextMessage went, with everything the deployment configured
    let sent = sent_to(&to).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (message_id, req) = (sent[0]["MessageId"].as_str().unwrap(), &sent[0]["Request"]);
    assert_eq!(sent[0]["Operation"], "SendTextMessage");
    assert_eq!(req["OriginationIdentity"], POOL);
    assert_eq!(req["ConfigurationSetName"], CONFIG_SET);
    assert_eq!(req["ProtectConfigurationId"], PROTECT);
    assert_eq!(req["MessageType"], "TRANSACTIONAL");
    let ttl = req["TimeToLive"].as_i64().unwrap();
    assert!((299..=300).contains(&ttl), "the OTP's time left: {ttl}");
    // And its context names the OTP and its event, for the receipts
    assert_eq!(req["Context"], json!({ "accountSid": api.sid, "otpSid": sid, "event": "0" }));
    // And the event records the provider's message id, with no receipt lookup item written
    let otp = api.store.get_otp(&api.sid, &sid).await.unwrap().unwrap();
    assert_eq!(otp.events[0].status, ChannelStatus::Sent);
    assert_eq!(otp.events[0].target_sid.as_deref(), Some(message_id));
    assert_eq!(api.lookup_items().await, 0, "no MSG# item on this route");
    // And the code the text carried verifies
    let text = req["MessageBody"].as_str().unwrap();
    let code: String = text.chars().filter(char::is_ascii_digit).collect();
    let (status, body) = api.post("/2fa/verify", json!({ "requestId": sid, "code": code })).await;
    assert_eq!((status, body), (200, json!({ "code": 200, "message": "OK", "requestID": sid })));
}

#[tokio::test]
async fn text_events_move_the_channel_status_forward_by_their_context_alone() {
    // Given two texts sent through End User Messaging
    let api = start().await;
    let worker = ReceiptWorker { store: api.store.clone() };
    let (delivered_to, unreachable_to) = (new_number(), new_number());
    let mut sent = Vec::new();
    for to in [&delivered_to, &unreachable_to] {
        let (status, body) = api.sms(to, 600).await;
        assert_eq!(status, 200, "{body}");
        let m = sent_to(to).await.remove(0);
        sent.push((body["requestID"].as_str().unwrap().to_owned(), m));
    }
    // When the configuration set's events come back: delivered for one, carrier unreachable
    // for the other, each with the context its text was sent with
    for ((_, m), kind) in sent.iter().zip(["TEXT_DELIVERED", "TEXT_CARRIER_UNREACHABLE"]) {
        let event = text_event(kind, m["MessageId"].as_str().unwrap(), &m["Request"]["Context"]);
        let tally = worker.handle(event).await.expect("receipts");
        assert_eq!(tally["applied"], 1, "{kind}: {tally}");
    }
    // Then each OTP's event moved forward, with no lookup item ever written
    let delivered = api.store.get_otp(&api.sid, &sent[0].0).await.unwrap().unwrap();
    assert_eq!(delivered.events[0].status, ChannelStatus::Delivered);
    let failed = api.store.get_otp(&api.sid, &sent[1].0).await.unwrap().unwrap();
    assert_eq!(failed.events[0].status, ChannelStatus::Undelivered);
    assert_eq!(failed.events[0].error_code.as_deref(), Some("TEXT_CARRIER_UNREACHABLE"));
    assert_eq!(api.lookup_items().await, 0);
    // And a repeat changes nothing, and an event whose context names another message's event
    // (or is forged) is unknown, not applied
    let (otp_sid, m) = &sent[0];
    let again = worker.handle(text_event("TEXT_BLOCKED", m["MessageId"].as_str().unwrap(), &m["Request"]["Context"]));
    assert_eq!(again.await.unwrap()["unchanged"], 1);
    let forged = json!({ "accountSid": api.sid, "otpSid": otp_sid, "event": "0" });
    let tally = worker.handle(text_event("TEXT_BLOCKED", "not-this-message", &forged)).await.unwrap();
    assert_eq!(tally["unknown"], 1, "{tally}");
}

#[tokio::test]
async fn a_throttled_text_is_retried_within_the_request_and_sent() {
    // Given End User Messaging throttling the first call
    let api = start().await;
    let to = new_number();
    fail_next(&to, "ThrottlingException", 1).await;
    // When an SMS is sent, then the SDK's retry sends it
    let (status, body) = api.sms(&to, 600).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sent_to(&to).await.len(), 1);
}

#[tokio::test]
async fn end_user_messaging_still_throttling_answers_503_and_the_send_is_undone_as_on_sns() {
    // Given End User Messaging throttling every try of one request
    let api = start().await;
    let to = new_number();
    fail_next(&to, "ThrottlingException", 3).await;
    // When an SMS is sent, then it is a 503 and nothing was sent
    let (status, body) = api.sms(&to, 600).await;
    assert_eq!(status, 503, "{body}");
    assert!(sent_to(&to).await.is_empty());
    // And nothing of it is left: the same number is admitted at once once the service is back
    let (status, body) = api.sms(&to, 600).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_text_end_user_messaging_refuses_is_a_failed_event_and_is_not_retried() {
    // Given End User Messaging refusing the destination
    let api = start().await;
    let to = new_number();
    fail_next(&to, "ValidationException", 1).await;
    // When an SMS is sent, then the OTP stands with a failed event, and the refusal was final
    let (status, body) = api.sms(&to, 600).await;
    assert_eq!(status, 200, "{body}");
    let otp = api.store.get_otp(&api.sid, body["requestID"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(otp.events[0].status, ChannelStatus::Failed);
    assert_eq!(otp.events[0].error_code.as_deref(), Some("ValidationException"));
    // (the one refusal was used up by this send: had it been retried, the retry would be sent)
    assert!(sent_to(&to).await.is_empty(), "not retried");
}

#[tokio::test]
async fn a_send_through_end_user_messaging_makes_one_write_fewer_than_through_sns_and_its_receipt_no_read() {
    let mut costs = Vec::new();
    for route in [SmsVia::Sns, SmsVia::EndUserMessaging] {
        // Given a deployment on each route, and the sender's account read once (a warm process)
        let api = start_on(route).await;
        let worker = ReceiptWorker { store: api.store.clone() };
        let (status, body) = api.sms(&new_number(), 600).await;
        assert_eq!(status, 200, "{body}");
        // When an OTP is sent, and its delivery receipt comes back
        let to = new_number();
        let before = api.store.calls();
        let (status, body) = api.sms(&to, 600).await;
        assert_eq!(status, 200, "{body}");
        let sid = body["requestID"].as_str().unwrap().to_owned();
        let otp = api.store.get_otp(&api.sid, &sid).await.unwrap().unwrap();
        let message_id = otp.events[0].target_sid.clone().unwrap();
        let pair = api.store.calls() - before;
        let before = api.store.calls();
        let receipt = match route {
            SmsVia::EndUserMessaging => {
                let ctx = json!({ "accountSid": api.sid, "otpSid": sid, "event": "0" });
                worker.handle(text_event("TEXT_DELIVERED", &message_id, &ctx)).await.unwrap()
            }
            SmsVia::Sns => {
                let log = json!({ "notification": { "messageId": message_id }, "delivery": {}, "status": "SUCCESS" });
                let data = gzip_logs(&log.to_string());
                worker.handle(json!({ "awslogs": { "data": data } })).await.unwrap()
            }
        };
        assert_eq!(receipt["applied"], 1, "{receipt}");
        let receipt_cost = api.store.calls() - before;
        // (the send's own calls, less the test's own get_otp; a verify is the same on both)
        costs.push((pair.writes(), pair.reads() - 1, receipt_cost.writes(), receipt_cost.reads()));
    }
    // Then the send writes one item fewer on End User Messaging (no MSG# put), and its receipt
    // reads nothing before its one write
    let (sns, eum) = (costs[0], costs[1]);
    eprintln!("send round trips (writes, reads), receipt (writes, reads): SNS {sns:?}, End User Messaging {eum:?}");
    assert_eq!(eum.0 + 1, sns.0, "one write request fewer per send");
    assert_eq!(eum.1, sns.1, "the same reads per send");
    assert_eq!((sns.2, sns.3), (1, 1), "an SNS receipt: GetItem(MSG#) then UpdateItem");
    assert_eq!((eum.2, eum.3), (1, 0), "an End User Messaging receipt: the UpdateItem alone");
}

/// A CloudWatch Logs subscription payload (base64 of gzip) of one SNS delivery-status line.
fn gzip_logs(message: &str) -> String {
    use base64::Engine;
    use std::io::Write;
    let logs = json!({ "messageType": "DATA_MESSAGE", "owner": "123456789012",
        "logGroup": "sns/us-east-1/123456789012/DirectPublishToPhoneNumber", "logStream": "s",
        "subscriptionFilters": ["twofa"], "logEvents": [{ "id": "1", "timestamp": 1_764_617_634_558_i64, "message": message }] });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(logs.to_string().as_bytes()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
}

#[tokio::test]
async fn a_call_against_moto_is_placed_through_the_stand_in() {
    // Given a deployment whose SMS Voice v2 endpoint is moto's (as under make local-aws)
    let api = start().await;
    let to = new_number();
    // When a call is sent, then it is placed: SendVoiceMessage answered by the stand-in
    let body = json!({ "service": "2FA", "channel": "call", "from": "Twofa", "to": to, "body": "Your code is {code}" });
    let (status, body) = api.post("/2fa/send", body).await;
    assert_eq!(status, 200, "{body}");
    let sent = sent_to(&to).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["Operation"], "SendVoiceMessage");
    assert_eq!(sent[0]["Request"]["OriginationIdentity"], CALLER);
    assert_eq!(sent[0]["Request"]["MessageBodyTextType"], "SSML");
}

#[tokio::test]
async fn a_workflows_later_sms_step_names_its_own_event_and_its_receipt_moves_that_one() {
    // Given a workflow sms, sms on End User Messaging, its first step sent with the OTP
    let api = start().await;
    let to = new_number();
    let wf = workflow_defs::workflow_def(&api.sid, &ids::new_sid("wf"), &[(Channel::Sms, 0), (Channel::Sms, 1)], 0);
    api.store.create_workflow(&wf).await.unwrap();
    let req = SendRequest {
        service: "2FA".into(),
        delivery: Delivery::sms("Twofa", &to, "Your code is {code}"),
        length: 6,
        timeout_secs: 300,
        guard_time: None,
        limits: vec![],
        idempotency_key: None,
        workflow: Some(wf.sid),
        email: None,
        email_from: None,
    };
    let sid = send(&api.deps, &api.account, req).await.expect("send");
    // When the scheduled second step runs (as the step Lambda would)
    let run = api.scheduler.0.lock().unwrap().pop().expect("the second step scheduled");
    run_step(&api.deps, &run).await.expect("step");
    // Then each text's context names its own event
    let sent = sent_to(&to).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    let events: Vec<&str> = sent.iter().map(|m| m["Request"]["Context"]["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["0", "1"]);
    let ttl = sent[1]["Request"]["TimeToLive"].as_i64().unwrap();
    assert!(ttl <= 300, "the OTP's time left at the step: {ttl}");
    // And the second text's receipt moves the second event only
    let m = &sent[1];
    let event = text_event("TEXT_DELIVERED", m["MessageId"].as_str().unwrap(), &m["Request"]["Context"]);
    let tally = ReceiptWorker { store: api.store.clone() }.handle(event).await.unwrap();
    assert_eq!(tally["applied"], 1, "{tally}");
    let otp = api.store.get_otp(&api.sid, &sid).await.unwrap().unwrap();
    let statuses: Vec<ChannelStatus> = otp.events.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [ChannelStatus::Sent, ChannelStatus::Delivered]);
    assert_eq!(api.lookup_items().await, 0);
}

// ---- routing tables: End User Messaging and SNS side by side ---------------------------------

impl AwsApi {
    /// This account's routing table set to `routes` (what `twofa-admin account policy` does).
    async fn set_routes(&self, routes: Value) {
        let update: PolicyUpdate = serde_json::from_value(json!({ "routes": routes })).unwrap();
        policy::update_policy(self.store.as_ref(), &self.deps.keys, &self.sid, update).await.expect("policy");
    }

    /// The account's SMS sent today, as usage counts them.
    async fn sms_usage(&self) -> u64 {
        let day = twofa::domain::time::day(self.deps.clock.now_ms());
        let rows = self.store.usage(&self.sid, &day, &day).await.unwrap();
        rows.iter().filter(|(k, _)| k.category == UsageCategory::Channel(Channel::Sms)).map(|(_, n)| n).sum()
    }
}

/// What moto's SNS published to `to`.
async fn published_to(to: &str) -> Vec<Value> {
    let data: Value = reqwest::get(format!("{}/moto-api/data.json", moto_url())).await.unwrap().json().await.unwrap();
    data["sns"]["SMS"].as_array().cloned().unwrap_or_default().into_iter().filter(|m| m["phone_number"] == to).collect()
}

#[tokio::test]
async fn with_end_user_messaging_throttled_the_table_fails_over_to_sns_which_sends_once() {
    // Given a table End User Messaging then SNS, and End User Messaging throttling every try
    let api = start().await;
    api.set_routes(json!({ "sms": { "*": ["end-user-messaging", "sns"] } })).await;
    let to = new_number();
    fail_next(&to, "ThrottlingException", 3).await;
    // When an SMS is sent
    let (status, body) = api.sms(&to, 600).await;
    assert_eq!(status, 200, "{body}");
    let sid = body["requestID"].as_str().unwrap();
    // Then SNS carried it, once; End User Messaging sent nothing
    assert!(sent_to(&to).await.is_empty());
    let published = published_to(&to).await;
    assert_eq!(published.len(), 1, "{published:?}");
    // And the OTP has one event, sent by SNS, and usage counts one SMS
    let otp = api.store.get_otp(&api.sid, sid).await.unwrap().unwrap();
    assert_eq!(otp.events.len(), 1);
    assert_eq!((otp.events[0].status, otp.events[0].route.as_deref()), (ChannelStatus::Sent, Some("sns")));
    assert_eq!(api.sms_usage().await, 1);
    // And its code verifies
    let code: String = published[0]["message"].as_str().unwrap().chars().filter(char::is_ascii_digit).collect();
    let (status, body) = api.post("/2fa/verify", json!({ "requestId": sid, "code": code })).await;
    assert_eq!((status, body["code"].clone()), (200, json!(200)), "{body}");
}

#[tokio::test]
async fn a_refusal_by_end_user_messaging_does_not_fail_over_to_sns() {
    // Given a table End User Messaging then SNS, and End User Messaging refusing the number
    let api = start().await;
    api.set_routes(json!({ "sms": { "*": ["end-user-messaging", "sns"] } })).await;
    let to = new_number();
    fail_next(&to, "ValidationException", 1).await;
    // When an SMS is sent, then the OTP stands with a failed event of End User Messaging
    let (status, body) = api.sms(&to, 600).await;
    assert_eq!(status, 200, "{body}");
    let otp = api.store.get_otp(&api.sid, body["requestID"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(
        (otp.events[0].status, otp.events[0].route.as_deref()),
        (ChannelStatus::Failed, Some("end-user-messaging"))
    );
    // And SNS sent nothing
    assert!(published_to(&to).await.is_empty());
}

#[tokio::test]
async fn a_table_by_country_sends_each_number_by_its_route_and_the_records_name_them() {
    // Given US numbers through SNS and the rest through End User Messaging
    let api = start().await;
    api.set_routes(json!({ "sms": { "US": ["sns"], "*": ["end-user-messaging"] } })).await;
    // When one SMS goes to a US number and one to a UK number
    let us = new_number();
    let uk = format!("+4474001{}", &us[us.len() - 5..]);
    let (s1, b1) = api.sms(&us, 600).await;
    let (s2, b2) = api.sms(&uk, 600).await;
    assert_eq!((s1, s2), (200, 200), "{b1} {b2}");
    // Then SNS carried the US one and End User Messaging the UK one
    assert_eq!((published_to(&us).await.len(), sent_to(&us).await.len()), (1, 0));
    assert_eq!((published_to(&uk).await.len(), sent_to(&uk).await.len()), (0, 1));
    for (body, route) in [(b1, "sns"), (b2, "end-user-messaging")] {
        let otp = api.store.get_otp(&api.sid, body["requestID"].as_str().unwrap()).await.unwrap().unwrap();
        assert_eq!(otp.events[0].route.as_deref(), Some(route));
    }
}
