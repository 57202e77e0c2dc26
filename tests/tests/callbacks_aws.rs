//! Callbacks, delivery receipts and expiry on the AWS path, all on moto: the OTP router over
//! DynamoDB + SNS + SES writes; the table's stream (read from moto's DynamoDB Streams API) is
//! fed to the callbacks handler, which calls a receiver on loopback (the test rules: deployed
//! workers take only public https URLs); failed calls go through SQS queues on moto; receipts in
//! the providers' own formats are fed to the receipts handler; the sweeper runs on a schedule
//! event. What is checked is what a user sees: the calls, their signatures, the session record.

mod common;
mod workflow_defs;

use std::{io::Write, sync::Arc, time::Duration};

use axum::{body::Body, http::Request};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use common::{
    receiver::{Call, Receiver},
    stream::streams,
};
use serde_json::{json, Value};
use tower::ServiceExt;
use twofa::adapters::router::{self, Route, Router};
use twofa::{
    adapters::{
        aws::{
            aws_config,
            dynamodb::{create_table_with_stream, DynamoStore},
            polly::PollyVoices,
            ses::SesEmail,
            sns::SnsSms,
            sqs::SqsCallbackQueue,
            voice::usable_voices,
            Calls,
        },
        clock::AdjustableClock,
        webhook::HttpWebhooks,
    },
    domain::{
        account::Account,
        callbacks::{
            self, CallbackEvent, CallbackMethod, CallbackTarget, DeadLetter, PendingCall, UrlRules, SWEEP_SLICES,
        },
        crypto::Keys,
        ids,
        otp::Channel,
        policy::SealedSecret,
        workflows::run_step,
    },
    ports::{AccountStore, CallPlacer, Clock, Deps, DispatchError, DispatchReceipt, OutboundMessage},
    workers::{callbacks::CallbackWorker, receipts::ReceiptWorker},
};

fn moto_url() -> String {
    std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL must point at moto: run `make test` (or `make moto-up` and eval `make moto-env`)")
}

/// SMS Voice v2's `SendVoiceMessage` as the OTP sees it: the call is placed and the provider
/// answers a message id of its own (the adapter itself is tested in channels_aws.rs).
struct VoiceProvider;

#[async_trait::async_trait]
impl CallPlacer for VoiceProvider {
    async fn place_call(&self, _: &OutboundMessage<'_>) -> Result<DispatchReceipt, DispatchError> {
        Ok(DispatchReceipt::new(uuid_like()))
    }
}

/// An id shaped like SMS Voice v2's message ids.
fn uuid_like() -> String {
    let h = ids::new_sid("");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

use workflow_defs::RecordingScheduler as Scheduled;

/// One deployment on moto: a table with its stream, the two callback queues, an account whose
/// callback is a receiver on loopback, and the handlers as the Lambdas run them.
struct World {
    deps: Deps,
    scheduled: Arc<Scheduled>,
    otp: axum::Router,
    records: axum::Router,
    ddb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    table: String,
    retry_url: String,
    dead_url: String,
    clock: Arc<AdjustableClock>,
    worker: CallbackWorker,
    receipts: ReceiptWorker,
    sid: String,
    token: String,
    secret: String,
    rx: Receiver,
    /// Stream records already fed to the worker (by sequence number).
    fed: std::sync::Mutex<std::collections::HashSet<String>>,
}

async fn world(answers: &[u16], method: CallbackMethod) -> World {
    world_with(answers, method, Arc::new(Keys::random())).await
}

/// `world` whose functions use `keys`.
async fn world_with(answers: &[u16], method: CallbackMethod, keys: Arc<Keys>) -> World {
    let _ = moto_url();
    let sdk = aws_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("twofa-cb-{}", ids::new_sid(""));
    create_table_with_stream(&ddb, &table).await.expect("create table");
    let ses = aws_sdk_ses::Client::new(&sdk);
    ses.verify_email_identity().email_address("otp@example.com").send().await.expect("verify sender");
    let store = Arc::new(DynamoStore::new(ddb.clone(), table.clone()));
    let rx = Receiver::start(answers).await;
    let token = ids::new_sid("");
    let mut account = Account::new(ids::new_sid(ids::ACCOUNT), &token, &keys, None, 0);
    let secret = callbacks::new_secret();
    account.policy.callback = Some(CallbackTarget { url: rx.url.clone(), method });
    account.policy.webhook_secret = Some(SealedSecret(callbacks::seal_secret(&keys, &account.sid, &secret)));
    store.put_account(&account).await.expect("account");
    let clock = Arc::new(AdjustableClock::default());
    let scheduled = Arc::new(Scheduled::default());
    let deps = Deps {
        store: store.clone(),
        dispatcher: Arc::new(Router::new(vec![
            Route::new(router::SNS, Channel::Sms, Arc::new(SnsSms::new(aws_sdk_sns::Client::new(&sdk), None))),
            Route::new(router::SES, Channel::Email, Arc::new(SesEmail::new(ses, None))),
            Route::new(
                router::END_USER_MESSAGING,
                Channel::Call,
                Arc::new(Calls {
                    voices: Arc::new(PollyVoices::new(aws_sdk_polly::Client::new(&sdk)).usable(usable_voices())),
                    placer: Arc::new(VoiceProvider),
                }),
            ),
        ])),
        clock: clock.clone(),
        keys: keys.clone(),
        scheduler: scheduled.clone(),
    };
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = |name: String| {
        let sqs = sqs.clone();
        async move { sqs.create_queue().queue_name(name).send().await.expect("queue").queue_url.expect("url") }
    };
    let retry_url = queue(format!("retry-{}", ids::new_sid(""))).await;
    let dead_url = queue(format!("dead-{}", ids::new_sid(""))).await;
    let worker = CallbackWorker {
        store: store.clone(),
        keys: keys.clone(),
        // A receiver on loopback needs the dev/test rules; `from_env` (deployed) is Public only.
        webhooks: Arc::new(HttpWebhooks::new(UrlRules::AnyHost)),
        queue: Arc::new(SqsCallbackQueue::new(sqs.clone(), retry_url.clone(), dead_url.clone(), clock.clone())),
        clock: clock.clone(),
    };
    World {
        deps: deps.clone(),
        scheduled,
        otp: twofa::http::otp::router(deps.clone()),
        records: twofa::http::records::router(deps),
        ddb,
        sqs,
        table,
        retry_url,
        dead_url,
        clock,
        worker,
        receipts: ReceiptWorker { store },
        sid: account.sid,
        token,
        secret,
        rx,
        fed: Default::default(),
    }
}

impl World {
    async fn call(&self, app: &axum::Router, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = B64.encode(format!("{}:{}", self.sid, self.token));
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("Authorization", format!("Basic {auth}"))
            .header("Content-Type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Send an OTP to `to` (SMS, or email for an address); its sid.
    async fn send(&self, to: &str, extra: Value) -> String {
        let mut body = json!({ "service": "2FA", "from": "Twofa", "to": to, "body": "Your code: {code}" });
        if to.contains('@') {
            body["from"] = json!("otp@example.com");
            body["channel"] = json!("email");
            body["subject"] = json!("Your code");
        }
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (status, body) = self.call(&self.otp, "POST", "/2fa/send", Some(body)).await;
        assert_eq!(status, 200, "{body}");
        body["requestID"].as_str().unwrap().to_owned()
    }

    /// `send` through another OTP router (another function's).
    async fn send_via(&self, otp: &axum::Router, to: &str) -> String {
        let body = json!({ "service": "2FA", "from": "Twofa", "to": to, "body": "Your code: {code}" });
        let (status, body) = self.call(otp, "POST", "/2fa/send", Some(body)).await;
        assert_eq!(status, 200, "{body}");
        body["requestID"].as_str().unwrap().to_owned()
    }

    /// The session record, as `GET /2fa/search/{sid}` shows it.
    async fn record(&self, sid: &str) -> Value {
        let (status, body) = self.call(&self.records, "GET", &format!("/2fa/search/{sid}"), None).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The first event of the session record: (channelStatus, targetSid, channelErrorCode).
    async fn channel_status(&self, sid: &str) -> (String, String, Value) {
        let r = self.record(sid).await;
        let e = &r["events"][0];
        (
            e["channelStatus"].as_str().unwrap().to_owned(),
            e["targetSid"].as_str().unwrap_or("").to_owned(),
            e["channelErrorCode"].clone(),
        )
    }

    /// Every stream record of the table not fed yet, as a Lambda DynamoDB event.
    async fn new_stream_records(&self) -> Value {
        let arn = self
            .ddb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .unwrap()
            .table
            .and_then(|t| t.latest_stream_arn)
            .expect("the table has a stream");
        let described = streams("DescribeStream", json!({ "StreamArn": arn })).await;
        let mut records = vec![];
        for shard in described["StreamDescription"]["Shards"].as_array().expect("shards") {
            let it = streams(
                "GetShardIterator",
                json!({ "StreamArn": arn, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON" }),
            )
            .await;
            let mut iterator = it["ShardIterator"].clone();
            loop {
                let page = streams("GetRecords", json!({ "ShardIterator": iterator })).await;
                let got = page["Records"].as_array().cloned().unwrap_or_default();
                if got.is_empty() {
                    break;
                }
                records.extend(got);
                iterator = page["NextShardIterator"].clone();
            }
        }
        let mut fed = self.fed.lock().unwrap();
        let fresh: Vec<Value> = records
            .into_iter()
            .filter(|r| fed.insert(r["dynamodb"]["SequenceNumber"].as_str().unwrap().to_owned()))
            .map(|mut r| {
                // DynamoDB (and so Lambda) gives epoch seconds here; moto an ISO date.
                r["dynamodb"]["ApproximateCreationDateTime"] = json!(self.clock.now_ms() / 1000);
                r["eventSourceARN"] = json!(arn);
                r
            })
            .collect();
        json!({ "Records": fresh })
    }

    /// Feed the stream's new records to the callbacks handler; its batch response.
    async fn feed_stream(&self) -> Value {
        let event = self.new_stream_records().await;
        self.worker.handle(event).await.expect("stream batch handled")
    }

    async fn receive(&self, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(10)
            .send()
            .await
            .expect("receive");
        out.messages.unwrap_or_default()
    }

    /// Messages on the queue right now (visible or delayed).
    async fn queued(&self, url: &str) -> u64 {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        let n =
            |k: aws_sdk_sqs::types::QueueAttributeName| attrs.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            + n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            + n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
    }

    /// Messages as Lambda's SQS event source hands them over.
    fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> Value {
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                json!({ "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
                        "attributes": {}, "messageAttributes": {}, "md5OfBody": m.md5_of_body(),
                        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:retry",
                        "awsRegion": "us-east-1" })
            })
            .collect();
        json!({ "Records": records })
    }
}

fn random_us_number() -> String {
    let digits: String =
        ids::new_sid("").chars().filter(char::is_ascii_digit).chain("0123456789".chars()).take(6).collect();
    format!("+14155{digits}")
}

/// The code in the last SMS moto's SNS "delivered" to `to`.
async fn sms_code(to: &str) -> String {
    let data: Value = reqwest::get(format!("{}/moto-api/data.json", moto_url())).await.unwrap().json().await.unwrap();
    let sms = data["sns"]["SMS"].as_array().expect("sns SMS list");
    let msg = sms.iter().rev().find(|m| m["phone_number"] == to).expect("an SMS to the number");
    msg["message"].as_str().unwrap().chars().filter(char::is_ascii_digit).collect()
}

fn statuses(calls: &[Call]) -> Vec<String> {
    calls.iter().map(Call::status).collect()
}

fn no_failures(response: &Value) -> bool {
    response["batchItemFailures"].as_array().is_some_and(Vec::is_empty)
}

/// The SNS message id of the last SMS moto "delivered" to `to`... is the SDR's targetSid: read
/// it from there, as an operator matching logs would.
async fn sms_log_line(w: &World, sid: &str, status: &str, response: &str) -> String {
    sms_log_line_of(w, sid, 0, status, response).await
}

/// `sms_log_line` for the dispatch of event `index` of the session record.
async fn sms_log_line_of(w: &World, sid: &str, index: usize, status: &str, response: &str) -> String {
    let event = w.record(sid).await["events"][index].clone();
    let (target, to) =
        (event["targetSid"].as_str().unwrap().to_owned(), event["recipient"].as_str().unwrap().to_owned());
    json!({
        "notification": { "messageId": target, "timestamp": "2026-12-01 19:40:34.558" },
        "delivery": { "phoneCarrier": "My Phone Carrier", "mnc": 270, "numberOfMessageParts": 1, "destination": to,
                      "priceInUSD": 0.00645, "smsType": "Transactional", "mcc": 310, "providerResponse": response,
                      "dwellTimeMs": 599, "dwellTimeMsUntilDeviceAck": 1344 },
        "status": status
    })
    .to_string()
}

/// A CloudWatch Logs subscription event: base64 of gzip of the log data, as Lambda gets it.
fn logs_event(lines: &[String]) -> Value {
    let events: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, m)| json!({ "id": format!("3719574358236401650{i}"), "timestamp": 1_764_617_634_558_i64, "message": m }))
        .collect();
    let data = json!({
        "messageType": "DATA_MESSAGE", "owner": "123456789012",
        "logGroup": "sns/us-east-1/123456789012/DirectPublishToPhoneNumber",
        "logStream": "8b3d2c6e-5c6b-4f0c-9d7e-0a1b2c3d4e5f", "subscriptionFilters": ["twofa-sms-receipts"],
        "logEvents": events
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data.to_string().as_bytes()).unwrap();
    json!({ "awslogs": { "data": B64.encode(gz.finish().unwrap()) } })
}

/// SES event publishing through SNS, as Lambda gets it from the topic.
fn ses_sns_event(notifications: &[Value]) -> Value {
    sns_event("twofa-email-events", notifications)
}

/// An SMS Voice v2 call event for `message_id`, as its configuration set's event destination
/// publishes it (the SNS message is this JSON).
fn voice_event(kind: &str, status: &str, description: &str, message_id: &str, to: &str) -> Value {
    json!({ "eventType": kind, "eventVersion": "1.0", "eventTimestamp": 1_764_618_034_558_i64,
        "isFinal": !matches!(kind, "VOICE_INITIATED" | "VOICE_RINGING" | "VOICE_ANSWERED"),
        "originationPhoneNumber": "+12065550152", "destinationPhoneNumber": to, "isoCountryCode": "US",
        "messageId": message_id, "messageRequestTimestamp": 1_764_618_000_170_i64, "messageStatus": status,
        "messageStatusDescription": description, "totalDurationInMinutes": 1, "totalMessagePrice": 0.013,
        "totalCarrierFee": 0.0, "context": {} })
}

/// SNS notifications of `topic`, as Lambda gets them from it.
fn sns_event(topic: &str, notifications: &[Value]) -> Value {
    let records: Vec<Value> = notifications
        .iter()
        .map(|n| {
            json!({ "EventSource": "aws:sns", "EventVersion": "1.0",
                "EventSubscriptionArn": format!("arn:aws:sns:us-east-1:123456789012:{topic}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55"),
                "Sns": { "Type": "Notification", "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                    "TopicArn": format!("arn:aws:sns:us-east-1:123456789012:{topic}"), "Subject": null,
                    "Message": n.to_string(), "Timestamp": "2026-12-01T19:40:00.000Z", "SignatureVersion": "1",
                    "Signature": "EXAMPLE", "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/cert.pem",
                    "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe", "MessageAttributes": {} } })
        })
        .collect();
    json!({ "Records": records })
}

fn ses_event(kind: &str, message_id: &str, extra: Value) -> Value {
    let mut n = json!({ "eventType": kind, "mail": { "timestamp": "2026-12-01T19:39:58.000Z", "source": "otp@example.com",
        "messageId": message_id, "destination": ["user@example.com"], "tags": { "ses:configuration-set": ["twofa-email-events"] } } });
    n.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    n
}

// ---- callbacks off the stream --------------------------------------------------------------

#[tokio::test]
async fn the_stream_of_a_send_and_a_verify_posts_signed_sent_and_verified_callbacks() {
    // Given an account whose callback is a POST receiver
    let w = world(&[], CallbackMethod::Post).await;
    let to = random_us_number();
    // When an SMS OTP is sent and verified through DynamoDB, SNS
    let sid = w.send(&to, json!({})).await;
    let code = sms_code(&to).await;
    let (status, _) = w.call(&w.otp, "POST", "/2fa/verify", Some(json!({ "requestId": sid, "code": code }))).await;
    assert_eq!(status, 200);
    // And the table's stream is handed to the callbacks function
    let response = w.feed_stream().await;
    // Then the receiver got `sent` and `verified`, both signed with the account's secret
    assert!(no_failures(&response), "{response}");
    let calls = w.rx.calls();
    let mut got = statuses(&calls);
    got.sort();
    assert_eq!(got, ["sent", "verified"], "one call per event, nothing for the account or counters");
    let (_, target, _) = w.channel_status(&sid).await;
    for call in &calls {
        assert!(call.signed_by(&w.secret), "{:?}", call.headers);
        assert_eq!(call.header("content-type"), "application/json");
        let f = call.fields();
        assert_eq!((f["requestID"].as_str(), f["accountSid"].as_str()), (Some(sid.as_str()), Some(w.sid.as_str())));
        assert_eq!((f["channel"].as_str(), f["to"].as_str()), (Some("sms"), Some(to.as_str())));
        assert_eq!(f["sid"], call.header("webhook-id"));
    }
    assert!(!target.is_empty(), "the SNS message id is the event's targetSid");
    // And a replay of the same records (a retried batch) tells the same events again, with the
    // same webhook-ids, so a receiver can drop the copies
    w.fed.lock().unwrap().clear();
    assert!(no_failures(&w.feed_stream().await));
    let again = w.rx.calls();
    assert_eq!(again.len(), 4);
    let ids = |c: &[Call]| {
        let mut v: Vec<String> = c.iter().map(|c| c.header("webhook-id").to_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&again[2..]), ids(&again[..2]));
}

#[tokio::test]
async fn a_get_callback_carries_the_fields_in_a_signed_query_string() {
    // Given an account whose callback is a GET receiver
    let w = world(&[], CallbackMethod::Get).await;
    // When an email OTP is sent and canceled, and the stream is handed on
    let sid = w.send(&format!("{}@example.com", ids::new_sid("u")), json!({})).await;
    let (status, _) = w.call(&w.otp, "POST", "/2fa/cancel", Some(json!({ "requestId": sid }))).await;
    assert_eq!(status, 200);
    assert!(no_failures(&w.feed_stream().await));
    // Then the receiver got `sent` and `canceled` as GET calls signed over the raw query string
    let calls = w.rx.calls();
    let mut got = statuses(&calls);
    got.sort();
    assert_eq!(got, ["canceled", "sent"]);
    for call in &calls {
        assert_eq!(call.method, "GET");
        assert!(call.body.is_empty());
        assert!(call.signed_by(&w.secret), "{}", call.query);
        assert_eq!(call.fields()["channel"], "email");
    }
}

#[tokio::test]
async fn a_failing_receiver_gets_the_call_again_off_the_retry_queue_with_the_same_webhook_id() {
    // Given a receiver that answers 500 once, then 200
    let w = world(&[500], CallbackMethod::Post).await;
    let sid = w.send(&random_us_number(), json!({})).await;
    // When the stream is handed on: the first call fails
    let t0 = w.clock.now_ms();
    assert!(no_failures(&w.feed_stream().await), "a failed call is queued, not a failed batch");
    let first = w.rx.calls();
    assert_eq!(statuses(&first), ["sent"]);
    // Then the call waits on the retry queue: attempt 1 made, due 5 s later
    let messages = w.receive(&w.retry_url).await;
    assert_eq!(messages.len(), 1);
    let call: PendingCall = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!((call.attempts, call.event.request_id.as_str()), (1, sid.as_str()));
    assert_eq!(call.last_error.as_deref(), Some("answered 500"));
    assert!((4_000..8_000).contains(&(call.due_ms - t0)), "due in about 5 s: {}", call.due_ms - t0);
    // When its time has come and the queue hands it to the function
    w.clock.advance_secs(5);
    let response = w.worker.handle(World::sqs_event(&messages)).await.unwrap();
    // Then the receiver gets the same event again, same webhook-id, and nothing is queued after
    assert!(no_failures(&response), "{response}");
    let calls = w.rx.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].header("webhook-id"), first[0].header("webhook-id"));
    assert_eq!(calls[1].body, first[0].body, "the same payload; only the signature's timestamp is new");
    assert!(calls[1].signed_by(&w.secret));
    for m in &messages {
        w.sqs
            .delete_message()
            .queue_url(&w.retry_url)
            .receipt_handle(m.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
    }
    assert_eq!(w.queued(&w.retry_url).await, 0);
    assert_eq!(w.queued(&w.dead_url).await, 0);
}

fn pending(w: &World, attempts: u32, due_in_s: i64) -> PendingCall {
    PendingCall {
        event: CallbackEvent {
            sid: format!("EV{}", ids::new_sid("")),
            request_id: ids::new_sid("OTP"),
            account_sid: w.sid.clone(),
            status: "sent".into(),
            channel: "sms".into(),
            to: "+14155550100".into(),
            at_ms: w.clock.now_ms(),
            error_code: None,
            error_message: None,
            target: None,
        },
        attempts,
        due_ms: w.clock.now_ms() + due_in_s * 1000,
        last_error: Some("answered 503".into()),
    }
}

fn message(call: &PendingCall) -> aws_sdk_sqs::types::Message {
    aws_sdk_sqs::types::Message::builder()
        .message_id(ids::new_sid(""))
        .receipt_handle("handle")
        .body(serde_json::to_string(call).unwrap())
        .build()
}

#[tokio::test]
async fn a_call_failing_its_last_retry_is_a_dead_letter_and_one_not_due_goes_back_without_a_call() {
    // Given a receiver that always answers 500
    let w = world(&[500; 4], CallbackMethod::Post).await;
    // When the queue hands over a call on its last retry (10 made) and one due in 2 hours
    let last = pending(&w, 10, 0);
    let later = pending(&w, 8, 7_200);
    let response = w.worker.handle(World::sqs_event(&[message(&last), message(&later)])).await.unwrap();
    assert!(no_failures(&response), "{response}");
    // Then only the due one is called, and it becomes a dead letter after its 11th call
    assert_eq!(w.rx.calls().len(), 1);
    assert_eq!(w.rx.calls()[0].header("webhook-id"), last.event.sid);
    let dead = w.receive(&w.dead_url).await;
    assert_eq!(dead.len(), 1);
    let letter: DeadLetter = serde_json::from_str(dead[0].body().unwrap()).unwrap();
    assert_eq!((letter.event.sid.as_str(), letter.attempts), (last.event.sid.as_str(), 11));
    assert_eq!((letter.url.as_deref(), letter.reason.as_str()), (Some(w.rx.url.as_str()), "answered 500"));
    // And the one not due is back on the retry queue unchanged (SQS delays 15 min at most: hops)
    assert_eq!(w.queued(&w.retry_url).await, 1);
    let back = tokio::time::timeout(Duration::from_secs(1), async { w.rx.calls().len() }).await.unwrap();
    assert_eq!(back, 1, "no call for the one not due");
}

#[tokio::test]
async fn a_record_whose_call_cannot_be_queued_is_reported_so_the_stream_resumes_from_it() {
    // Given a receiver answering 500, and a worker whose retry queue does not exist
    let mut w = world(&[500], CallbackMethod::Post).await;
    let missing = format!("{}/123456789012/no-such-queue-{}", moto_url(), ids::new_sid(""));
    w.worker.queue = Arc::new(SqsCallbackQueue::new(w.sqs.clone(), missing.clone(), missing, w.clock.clone()));
    let sid = w.send(&random_us_number(), json!({})).await;
    // When the stream is handed on: the `sent` call fails and cannot be queued
    let event = w.new_stream_records().await;
    let response = w.worker.handle(event.clone()).await.unwrap();
    // Then the batch names that record (the OTP's update to `sent`), not the ones before it
    let sent_record = event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dynamodb"]["NewImage"]["events"]["L"][0]["M"]["status"]["S"] == "sent")
        .expect("the record of the dispatch");
    assert_eq!(sent_record["dynamodb"]["NewImage"]["sid"]["S"], sid.as_str());
    assert_eq!(
        response["batchItemFailures"],
        json!([{ "itemIdentifier": sent_record["dynamodb"]["SequenceNumber"] }]),
        "{response}"
    );
    assert_eq!(w.rx.calls().len(), 1);
}

#[tokio::test]
async fn the_deployed_worker_never_calls_a_loopback_url_and_dead_letters_the_event() {
    // Given an account whose callback URL is on loopback (only a store write could put it
    // there: the API refuses it), and the worker as deployed
    let mut w = world(&[], CallbackMethod::Post).await;
    let sdk = aws_config().await;
    w.worker =
        CallbackWorker::deployed(&sdk, w.table.clone(), w.worker.keys.clone(), w.retry_url.clone(), w.dead_url.clone());
    w.send(&random_us_number(), json!({})).await;
    // When the stream is handed on
    assert!(no_failures(&w.feed_stream().await));
    // Then the receiver is never called, and the event is a dead letter saying why
    assert!(w.rx.calls().is_empty());
    let dead = w.receive(&w.dead_url).await;
    assert_eq!(dead.len(), 1);
    let letter: DeadLetter = serde_json::from_str(dead[0].body().unwrap()).unwrap();
    assert_eq!((letter.event.status.as_str(), letter.attempts), ("sent", 1));
    assert_eq!(letter.reason, "not a public https URL");
    assert_eq!(w.queued(&w.retry_url).await, 0, "a refused URL is not retried");
}

// ---- receipts --------------------------------------------------------------------------------

#[tokio::test]
async fn sns_sms_delivery_logs_move_the_event_to_delivered_once_and_late_receipts_change_nothing() {
    // Given an SMS OTP sent through SNS: its event is `sent`, with SNS's message id
    let w = world(&[], CallbackMethod::Post).await;
    let sid = w.send(&random_us_number(), json!({})).await;
    assert_eq!(w.channel_status(&sid).await.0, "sent");
    // When SNS's delivery-status log line reaches the receipts function (subscription filter)
    let ok = sms_log_line(&w, &sid, "SUCCESS", "Message has been accepted by phone carrier").await;
    let tally = w.receipts.handle(logs_event(std::slice::from_ref(&ok))).await.unwrap();
    // Then the session record shows it delivered
    assert_eq!(tally["applied"], 1, "{tally}");
    assert_eq!(w.channel_status(&sid).await.0, "delivered");
    // When the same line comes again, and a late failure for the same message
    let late = sms_log_line(&w, &sid, "FAILURE", "Phone is currently unreachable/unavailable").await;
    let tally = w.receipts.handle(logs_event(&[ok, late])).await.unwrap();
    // Then nothing changes
    assert_eq!((tally["applied"].as_u64(), tally["unchanged"].as_u64()), (Some(0), Some(2)), "{tally}");
    let (status, _, error) = w.channel_status(&sid).await;
    assert_eq!((status.as_str(), error), ("delivered", Value::Null));
    // And the stream tells the receiver `sent` and `delivered`, once each
    assert!(no_failures(&w.feed_stream().await));
    let mut got = statuses(&w.rx.calls());
    got.sort();
    assert_eq!(got, ["delivered", "sent"]);
}

#[tokio::test]
async fn an_sms_failure_log_is_undelivered_with_the_carriers_reason() {
    let w = world(&[], CallbackMethod::Post).await;
    let sid = w.send(&random_us_number(), json!({})).await;
    let line = sms_log_line(&w, &sid, "FAILURE", "Phone carrier has blocked this message").await;
    let tally = w.receipts.handle(logs_event(&[line])).await.unwrap();
    assert_eq!(tally["applied"], 1);
    let r = w.record(&sid).await;
    assert_eq!(r["events"][0]["channelStatus"], "undelivered");
    assert_eq!(r["events"][0]["channelErrorCode"], "SMS_FAILURE");
    assert_eq!(r["events"][0]["channelErrorMessage"], "Phone carrier has blocked this message");
}

#[tokio::test]
async fn ses_bounce_notifications_make_the_email_undelivered_and_a_late_delivery_changes_nothing() {
    // Given an email OTP sent through SES
    let w = world(&[], CallbackMethod::Post).await;
    let sid = w.send(&format!("{}@example.com", ids::new_sid("u")), json!({})).await;
    let (status, message_id, _) = w.channel_status(&sid).await;
    assert_eq!(status, "sent");
    // When SES publishes a permanent bounce (configuration set → SNS → the function)
    let bounce = ses_event(
        "Bounce",
        &message_id,
        json!({ "bounce": { "bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2026-12-01T19:40:00.000Z",
            "feedbackId": "0100018c-feedback", "bouncedRecipients": [{ "emailAddress": "user@example.com", "action": "failed",
            "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown" }] } }),
    );
    let tally = w.receipts.handle(ses_sns_event(&[bounce])).await.unwrap();
    assert_eq!(tally["applied"], 1, "{tally}");
    // Then the record shows it undelivered with the bounce
    let r = w.record(&sid).await;
    assert_eq!(r["events"][0]["channelStatus"], "undelivered");
    assert_eq!(r["events"][0]["channelErrorCode"], "SES_BOUNCE_PERMANENT");
    assert_eq!(r["events"][0]["channelErrorMessage"], "smtp; 550 5.1.1 user unknown");
    // When a delivery and a complaint for it arrive late, plus an open (no delivery news) and a
    // receipt for a message that is not ours
    let late = [
        ses_event("Delivery", &message_id, json!({ "delivery": { "smtpResponse": "250 ok" } })),
        ses_event("Complaint", &message_id, json!({ "complaint": { "complainedRecipients": [] } })),
        ses_event("Open", &message_id, json!({ "open": {} })),
        ses_event("Delivery", "0100018c-not-ours", json!({ "delivery": {} })),
    ];
    let tally = w.receipts.handle(ses_sns_event(&late)).await.unwrap();
    // Then nothing changes
    assert_eq!(tally, json!({ "applied": 0, "unchanged": 2, "unknown": 1, "ignored": 1 }));
    assert_eq!(w.record(&sid).await["events"][0]["channelStatus"], "undelivered");
}

#[tokio::test]
async fn concurrent_receipts_for_one_event_change_it_exactly_once() {
    // Given an SMS OTP sent through SNS
    let w = world(&[], CallbackMethod::Post).await;
    let sid = w.send(&random_us_number(), json!({})).await;
    let ok = sms_log_line(&w, &sid, "SUCCESS", "Message has been accepted by phone carrier").await;
    let failed = sms_log_line(&w, &sid, "FAILURE", "Unknown error attempting to reach phone").await;
    // When eight receipts for it (four of each outcome) are handled at once
    let handled = futures::future::join_all(
        (0..8usize)
            .map(|i| w.receipts.handle(logs_event(&[if i.is_multiple_of(2) { ok.clone() } else { failed.clone() }]))),
    )
    .await;
    // Then exactly one changed the event, and the record shows that one's outcome
    let applied: Vec<usize> =
        handled.iter().enumerate().filter(|(_, t)| t.as_ref().unwrap()["applied"] == 1).map(|(i, _)| i).collect();
    assert_eq!(applied.len(), 1, "{handled:?}");
    let expected = if applied[0].is_multiple_of(2) { "delivered" } else { "undelivered" };
    assert_eq!(w.channel_status(&sid).await.0, expected);
    // And the stream tells that one change once
    assert!(no_failures(&w.feed_stream().await));
    let mut got = statuses(&w.rx.calls());
    got.sort();
    let mut want = vec![expected.to_owned(), "sent".to_owned()];
    want.sort();
    assert_eq!(got, want);
}

/// A workflow of the account: `steps` as (channel, seconds after the previous step).
async fn workflow(w: &World, name: &str, steps: &[(Channel, u32)]) {
    let def = workflow_defs::workflow_def(&w.sid, name, steps, w.clock.now_ms());
    w.deps.store.create_workflow(&def).await.expect("workflow");
}

/// The channelStatus of every event of the session record, in order.
async fn channel_statuses(w: &World, sid: &str) -> Vec<String> {
    let r = w.record(sid).await;
    r["events"].as_array().unwrap().iter().map(|e| e["channelStatus"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn each_dispatch_of_a_workflow_gets_its_own_receipt_and_a_duplicate_changes_nothing() {
    // Given a workflow OTP whose two SMS steps both went out: the send's, then the second step
    // run as the step Lambda runs it, each with its own SNS message id
    let w = world(&[], CallbackMethod::Post).await;
    workflow(&w, "sms twice", &[(Channel::Sms, 0), (Channel::Sms, 30)]).await;
    let sid = w.send(&random_us_number(), json!({ "workflow": "sms twice" })).await;
    let run = w.scheduled.0.lock().unwrap().pop().expect("the second step is scheduled");
    w.clock.advance_secs(30);
    run_step(&w.deps, &run).await.expect("second step");
    let r = w.record(&sid).await;
    let ids: Vec<&str> = r["events"].as_array().unwrap().iter().map(|e| e["targetSid"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert_eq!(channel_statuses(&w, &sid).await, ["sent", "sent"]);
    // When the receipt of the FIRST dispatch arrives after the second went out
    let first = sms_log_line_of(&w, &sid, 0, "SUCCESS", "Message has been accepted by phone carrier").await;
    let tally = w.receipts.handle(logs_event(std::slice::from_ref(&first))).await.unwrap();
    // Then it moves the first event, and only it
    assert_eq!(tally["applied"], 1, "{tally}");
    assert_eq!(channel_statuses(&w, &sid).await, ["delivered", "sent"]);
    // When the second dispatch's receipt (a failure) arrives
    let second = sms_log_line_of(&w, &sid, 1, "FAILURE", "Phone is currently unreachable/unavailable").await;
    let tally = w.receipts.handle(logs_event(std::slice::from_ref(&second))).await.unwrap();
    // Then it moves the second event, with the carrier's reason
    assert_eq!(tally["applied"], 1, "{tally}");
    assert_eq!(channel_statuses(&w, &sid).await, ["delivered", "undelivered"]);
    let r = w.record(&sid).await;
    assert_eq!(r["events"][1]["channelErrorMessage"], "Phone is currently unreachable/unavailable");
    assert_eq!(r["events"][0]["channelErrorCode"], Value::Null);
    // When both come again
    let tally = w.receipts.handle(logs_event(&[first, second])).await.unwrap();
    // Then nothing changes
    assert_eq!((tally["applied"].as_u64(), tally["unchanged"].as_u64()), (Some(0), Some(2)), "{tally}");
    assert_eq!(channel_statuses(&w, &sid).await, ["delivered", "undelivered"]);
}

#[tokio::test]
async fn voice_call_events_make_the_call_delivered_or_undelivered_and_a_ringing_changes_nothing() {
    // Given two calls placed through SMS Voice v2: their events are `sent`, with its message ids
    let w = world(&[], CallbackMethod::Post).await;
    let (answered_to, busy_to) = (random_us_number(), random_us_number());
    let answered = w.send(&answered_to, json!({ "channel": "call" })).await;
    let busy = w.send(&busy_to, json!({ "channel": "call" })).await;
    let (status, answered_id, _) = w.channel_status(&answered).await;
    assert_eq!(status, "sent");
    let (_, busy_id, _) = w.channel_status(&busy).await;
    // When the configuration set's events come through SNS: the first call rings (not final)
    let ringing = voice_event("VOICE_RINGING", "RINGING", "The call is ringing", &answered_id, &answered_to);
    let tally = w.receipts.handle(sns_event("twofa-voice-events", &[ringing])).await.unwrap();
    // Then nothing changes
    assert_eq!(tally, json!({ "applied": 0, "unchanged": 0, "unknown": 0, "ignored": 1 }));
    assert_eq!(w.channel_status(&answered).await.0, "sent");
    // When the first call is completed and the second's line is busy
    let events = [
        voice_event("VOICE_COMPLETED", "COMPLETED", "The call was completed", &answered_id, &answered_to),
        voice_event("VOICE_BUSY", "BUSY", "The called party was busy", &busy_id, &busy_to),
    ];
    let tally = w.receipts.handle(sns_event("twofa-voice-events", &events)).await.unwrap();
    // Then the records show the first delivered and the second undelivered, with the reason
    assert_eq!(tally["applied"], 2, "{tally}");
    assert_eq!(w.channel_status(&answered).await, ("delivered".to_owned(), answered_id.clone(), Value::Null));
    let r = w.record(&busy).await;
    assert_eq!(r["events"][0]["channelStatus"], "undelivered");
    assert_eq!(r["events"][0]["channelErrorCode"], "VOICE_BUSY");
    assert_eq!(r["events"][0]["channelErrorMessage"], "The called party was busy");
    // When a late failure arrives for the completed call
    let late = voice_event("VOICE_FAILED", "FAILED", "The call failed", &answered_id, &answered_to);
    let tally = w.receipts.handle(sns_event("twofa-voice-events", &[late])).await.unwrap();
    // Then nothing changes
    assert_eq!(tally["unchanged"], 1, "{tally}");
    assert_eq!(w.channel_status(&answered).await.0, "delivered");
    // And the stream tells the receiver each call's `sent` and its outcome, once each
    assert!(no_failures(&w.feed_stream().await));
    let mut got = statuses(&w.rx.calls());
    got.sort();
    assert_eq!(got, ["delivered", "sent", "sent", "undelivered"]);
}

// ---- the expiry sweeper ----------------------------------------------------------------------

fn schedule() -> Value {
    json!({ "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "time": "2026-12-01T19:41:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/twofa-sweeper"], "detail": {} })
}

#[tokio::test]
async fn the_sweeper_expires_what_is_due_cancels_what_was_superseded_and_touches_nothing_else() {
    // Given four OTPs: one with a 30 s timeout, one verified, one superseded once the 20 s
    // guard time of its send is over, and the 10-minute one that superseded it
    let w = world(&[], CallbackMethod::Post).await;
    let short = w.send(&random_us_number(), json!({ "timeout": 30 })).await;
    let verified_to = random_us_number();
    let verified = w.send(&verified_to, json!({ "timeout": 30 })).await;
    let code = sms_code(&verified_to).await;
    let (status, _) = w.call(&w.otp, "POST", "/2fa/verify", Some(json!({ "requestId": verified, "code": code }))).await;
    assert_eq!(status, 200);
    let to = random_us_number();
    let old = w.send(&to, json!({ "timeout": 600, "guardTime": 20 })).await;
    w.clock.advance_secs(61); // past the default limit's minute
    let newer = w.send(&to, json!({ "timeout": 600 })).await;
    assert!(no_failures(&w.feed_stream().await));
    let before = w.rx.calls().len();
    // When the schedules run the sweeper, one invocation per slice of the due index (as
    // template.yaml deploys it), while the 30 s timeout and the guard time are over
    w.clock.advance_secs(30);
    let mut settled = 0;
    for slice in 0..SWEEP_SLICES {
        let swept = w.worker.handle(json!({ "sweep": { "slice": slice, "slices": SWEEP_SLICES } })).await.unwrap();
        settled += swept["settled"].as_u64().expect("how many were settled");
    }
    // Then the short one is expired and the superseded one canceled; the others are as they were
    assert_eq!(settled, 2);
    let status = |sid: String| {
        let w = &w;
        async move { w.record(&sid).await["status"].as_str().unwrap().to_owned() }
    };
    assert_eq!(status(short.clone()).await, "expired");
    assert_eq!(status(old.clone()).await, "canceled");
    assert_eq!(status(verified.clone()).await, "success");
    assert_eq!(status(newer.clone()).await, "pending");
    // And the receiver is told `expired` and `canceled`, nothing else
    assert!(no_failures(&w.feed_stream().await));
    let told: Vec<(String, String)> = w.rx.calls()[before..]
        .iter()
        .map(|c| (c.status(), c.fields()["requestID"].as_str().unwrap().to_owned()))
        .collect();
    let mut told = told;
    told.sort();
    let mut want = vec![("canceled".to_owned(), old), ("expired".to_owned(), short)];
    want.sort();
    assert_eq!(told, want);
    // And the next sweep finds nothing, invoked as the versions before slices were (every shard)
    assert_eq!(w.worker.handle(schedule()).await.unwrap(), json!({ "settled": 0 }));
}

#[tokio::test]
async fn keys_rotate_with_otps_workflows_and_callbacks_in_flight_and_a_retired_key_opens_nothing() {
    use twofa::{
        adapters::aws::secrets::{SecretKeyring, RETIRE_AFTER_MS},
        domain::{
            crypto::KEY_RETIRE_GRACE_MS,
            policy::{update_policy, PolicyUpdate, TestNumberInput},
        },
    };
    // Given a deployment whose secret is the bare string the template generates (key 0), its
    // functions using the keyring read from Secrets Manager on moto
    let sdk = aws_config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = format!("twofa-keys-{}", ids::new_sid(""));
    let arn = sm.create_secret().name(&name).secret_string(hex::encode([7u8; 32])).send().await.unwrap().arn.unwrap();
    let ring = SecretKeyring::new(sm.clone(), arn);
    let keys = Arc::new(ring.load().await.expect("the keyring"));
    let w = world_with(&[], CallbackMethod::Post, keys.clone()).await;
    let test_number = random_us_number();
    let tests = vec![TestNumberInput { to: test_number.clone(), code: "86420".into() }];
    update_policy(
        w.deps.store.as_ref(),
        &keys,
        &w.sid,
        PolicyUpdate { test_numbers: Some(tests), ..Default::default() },
    )
    .await
    .expect("a test number");
    // And, in flight under key 0: a pending OTP, a workflow OTP whose second step has not run,
    // a third OTP left pending, their callbacks not yet told, and a search page token
    let (a_to, c_to) = (random_us_number(), random_us_number());
    let a = w.send(&a_to, json!({})).await;
    let a_code = sms_code(&a_to).await;
    workflow(&w, "sms twice", &[(Channel::Sms, 0), (Channel::Sms, 30)]).await;
    let wf_to = random_us_number();
    let wf = w.send(&wf_to, json!({ "workflow": "sms twice" })).await;
    let wf_code = sms_code(&wf_to).await;
    let run = w.scheduled.0.lock().unwrap().pop().expect("the second step is scheduled");
    let c = w.send(&c_to, json!({})).await;
    let c_code = sms_code(&c_to).await;
    let (status, first_page) = w.call(&w.records, "GET", "/2fa/search?pageSize=1", None).await;
    assert_eq!(status, 200, "{first_page}");
    // (`next_page_uri` carries the sealed `pageToken`)
    let next_uri = first_page["next_page_uri"].as_str().expect("a next page").to_owned();
    assert!(next_uri.contains("pageToken="), "{next_uri}");
    let old_token_hash = w.deps.store.get_account(&w.sid).await.unwrap().unwrap().token_hash;

    // When the operator rotates (active at once here; the default waits for every function)
    // and the running functions read the keyring again
    let now = twofa::ports::Clock::now_ms(&twofa::ports::SystemClock);
    let key = ring.rotate(now, 0).await.expect("rotated");
    assert_eq!(key.kid, 1);
    keys.replace(ring.load().await.unwrap(), KEY_RETIRE_GRACE_MS);
    assert_eq!(keys.writer_kid(), 1);
    // Then a second rotation waits for the previous key to be retired
    assert!(ring.rotate(now, 0).await.unwrap_err().to_string().contains("retire it first"));
    // And everything made under key 0 keeps working: the token, the page token, the pending
    // code, the workflow's next step (the same code, opened from its sealed copy) and the
    // callbacks of events from before, signed with the webhook secret the account was given
    let (status, next) = w.call(&w.records, "GET", &next_uri, None).await;
    assert_eq!(status, 200, "{next}");
    assert!(next["twoFaOtpSdrs"][0]["sid"].is_string());
    assert_ne!(next["twoFaOtpSdrs"][0]["sid"], first_page["twoFaOtpSdrs"][0]["sid"]);
    let verify = |sid: &str, code: &str| json!({ "requestId": sid, "code": code });
    assert_eq!(w.call(&w.otp, "POST", "/2fa/verify", Some(verify(&a, &a_code))).await.0, 200);
    w.clock.advance_secs(30);
    run_step(&w.deps, &run).await.expect("second step");
    assert_eq!(sms_code(&wf_to).await, wf_code, "the step re-sent the code sealed under key 0");
    assert_eq!(w.call(&w.otp, "POST", "/2fa/verify", Some(verify(&wf, &wf_code))).await.0, 200);
    assert!(no_failures(&w.feed_stream().await));
    let calls = w.rx.calls();
    assert!(calls.len() >= 5 && calls.iter().all(|c| c.signed_by(&w.secret)), "{:?}", statuses(&calls));
    // And what is made now is under key 1: an OTP's code hash names it
    let b_to = random_us_number();
    let b = w.send(&b_to, json!({})).await;
    assert_eq!(w.deps.store.get_otp(&w.sid, &b).await.unwrap().unwrap().code_hash[0], 1);
    // And the test number's code, sealed under key 0, still verifies
    let t = w.send(&test_number, json!({})).await;
    assert_eq!(w.call(&w.otp, "POST", "/2fa/verify", Some(verify(&t, "86420"))).await.0, 200);

    // When the operator retires key 0 before a day has passed
    let admin_store = twofa::adapters::aws::dynamodb::DynamoStore::new(w.ddb.clone(), w.table.clone())
        .with_account_cache_ttl(Duration::ZERO);
    let early = ring.retire_previous(&admin_store, now + 60_000).await;
    // Then it is refused: OTPs under key 0 may still be pending
    assert!(early.unwrap_err().to_string().contains("may be pending"));
    // When it is retired a day later, and the functions read the keyring again
    let done = ring.retire_previous(&admin_store, now + RETIRE_AFTER_MS + 1).await.expect("retired").expect("a key");
    assert_eq!((done.kid, done.current, done.resealed), (0, 1, 3), "token, webhook secret, test code");
    keys.replace(ring.load().await.unwrap(), KEY_RETIRE_GRACE_MS);
    assert_eq!(keys.masters().len(), 1);
    // Then the running functions go on (an account cached before its token was sealed again
    // is read under key 0 for a minute more), and what was sealed again works
    let (status, _) = w.call(&w.records, "GET", "/2fa/search?pageSize=1", None).await;
    assert_eq!(status, 200, "the running function's cached account");
    let t = w.send(&test_number, json!({})).await;
    assert_eq!(w.call(&w.otp, "POST", "/2fa/verify", Some(verify(&t, "86420"))).await.0, 200);
    assert_eq!(w.call(&w.otp, "POST", "/2fa/verify", Some(verify(&b, &sms_code(&b_to).await))).await.0, 200);
    assert!(no_failures(&w.feed_stream().await));
    assert!(w.rx.calls().iter().all(|c| c.signed_by(&w.secret)));
    // When a function starts after the retirement (its keyring: key 1 alone; no cache)
    let fresh_keys = Arc::new(ring.load().await.unwrap());
    let fresh = Deps {
        store: Arc::new(twofa::adapters::aws::dynamodb::DynamoStore::new(w.ddb.clone(), w.table.clone())),
        keys: fresh_keys.clone(),
        ..w.deps.clone()
    };
    let (otp, records) = (twofa::http::otp::router(fresh.clone()), twofa::http::records::router(fresh.clone()));
    // Then the token, the webhook secret and the test code, sealed again, work under key 1
    let (status, _) = w.call(&records, "GET", "/2fa/search?pageSize=1", None).await;
    assert_eq!(status, 200, "the token sealed again under key 1");
    let t = w.send_via(&otp, &test_number).await;
    assert_eq!(w.call(&otp, "POST", "/2fa/verify", Some(verify(&t, "86420"))).await.0, 200);
    let account = fresh.store.get_account(&w.sid).await.unwrap().unwrap();
    let sealed = account.policy.webhook_secret.expect("a webhook secret");
    assert_eq!(
        callbacks::open_key(&fresh_keys, &w.sid, &sealed.0).unwrap(),
        callbacks::secret_key(&w.secret).unwrap(),
        "the secret the account was given, sealed again"
    );
    // And nothing under key 0 is accepted: the old page token, the token's old stored form,
    // and the code of the OTP still pending under it
    let (status, body) = w.call(&records, "GET", &next_uri, None).await;
    assert_eq!((status, body["message"].as_str().map(|m| m.contains("pageToken"))), (400, Some(true)), "{body}");
    assert!(!fresh_keys.token_matches(&w.sid, &w.token, &old_token_hash));
    let (status, body) = w.call(&otp, "POST", "/2fa/verify", Some(verify(&c, &c_code))).await;
    assert_ne!(status, 200, "{body}");
}

/// Counts the requests a Secrets Manager client sends (each attempt that reaches the wire).
#[derive(Debug, Default, Clone)]
struct SecretRequests(Arc<std::sync::atomic::AtomicUsize>);

impl SecretRequests {
    fn take(&self) -> usize {
        self.0.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

impl aws_sdk_secretsmanager::config::Intercept for SecretRequests {
    fn name(&self) -> &'static str {
        "tests::SecretRequests"
    }

    fn read_before_transmit(
        &self,
        _: &aws_sdk_secretsmanager::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_secretsmanager::config::RuntimeComponents,
        _: &mut aws_sdk_secretsmanager::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// A Secrets Manager client on moto that counts its requests, and a new secret holding `text`.
async fn counted_secret(text: &str) -> (aws_sdk_secretsmanager::Client, SecretRequests, String) {
    let sdk = aws_config().await;
    let requests = SecretRequests::default();
    let sm = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&sdk).interceptor(requests.clone()).build(),
    );
    let name = format!("twofa-keyring-{}", ids::new_sid(""));
    let arn = sm.create_secret().name(&name).secret_string(text).send().await.unwrap().arn.unwrap();
    requests.take();
    (sm, requests, arn)
}

/// The text of the secret's version at `stage`, or None when no version has it.
async fn stage_text(sm: &aws_sdk_secretsmanager::Client, arn: &str, stage: &str) -> Option<String> {
    match sm.get_secret_value().secret_id(arn).version_stage(stage).send().await {
        Ok(out) => out.secret_string().map(str::to_owned),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => None,
        Err(e) => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn a_keyring_is_read_with_one_request_never_rotated_rotated_or_retired() {
    use twofa::{
        adapters::{aws::secrets::SecretKeyring, aws::secrets::RETIRE_AFTER_MS, memory::MemoryStore},
        domain::crypto::Purpose,
    };
    // Given a secret as the template makes it (key 0, never rotated)
    let (sm, requests, arn) = counted_secret(&hex::encode([7u8; 32])).await;
    let ring = SecretKeyring::new(sm.clone(), &arn);
    // Then a function reads its keyring with one request (its cold start's one network call)
    let keys = ring.load().await.expect("the keyring");
    assert_eq!(requests.take(), 1);
    let sealed0 = keys.seal(Purpose::Code, b"1234", "OTP1");
    let hash0 = keys.hash_code("OTP1", "1234");
    // When the operator rotates (active at once)
    let now = twofa::ports::Clock::now_ms(&twofa::ports::SystemClock);
    assert_eq!(ring.rotate(now, 0).await.expect("rotated").kid, 1);
    requests.take();
    // Then the new version holds the previous key too, and one request reads both: the
    // keyring opens what either key made and writes with key 1
    let stored = ring.read().await.unwrap();
    assert_eq!(requests.take(), 1);
    assert_eq!(stored.requests, 1);
    assert_eq!((stored.current.kid, stored.previous.as_ref().map(|p| p.kid)), (1, Some(0)));
    let keys = ring.load().await.unwrap();
    assert_eq!(requests.take(), 1);
    assert_eq!(keys.writer_kid(), 1);
    let sealed1 = keys.seal(Purpose::Code, b"5678", "OTP2");
    assert_eq!(keys.open(Purpose::Code, &sealed0, "OTP1").unwrap(), b"1234");
    assert_eq!(keys.open(Purpose::Code, &sealed1, "OTP2").unwrap(), b"5678");
    assert!(keys.code_matches("OTP1", "1234", &hash0));
    // And `AWSPREVIOUS` is key 0 still, as functions of the version before read it
    assert_eq!(stage_text(&sm, &arn, "AWSPREVIOUS").await.as_deref(), Some(hex::encode([7u8; 32]).as_str()));
    // When the previous key is retired a day later
    let store = MemoryStore::new();
    let done = ring.retire_previous(&store, now + RETIRE_AFTER_MS + 1).await.expect("retired").expect("a key");
    assert_eq!((done.kid, done.current), (0, 1));
    requests.take();
    // Then one request reads key 1 alone: nothing under key 0 opens any more
    let keys = ring.load().await.unwrap();
    assert_eq!(requests.take(), 1);
    assert_eq!(keys.masters().len(), 1);
    assert!(keys.open(Purpose::Code, &sealed0, "OTP1").is_err());
    assert!(!keys.code_matches("OTP1", "1234", &hash0));
    assert_eq!(keys.open(Purpose::Code, &sealed1, "OTP2").unwrap(), b"5678");
    // And no version is `AWSPREVIOUS` (a function of the version before reads key 1 alone too)
    assert_eq!(stage_text(&sm, &arn, "AWSPREVIOUS").await, None);
    // And the next rotation keeps key 1 inside key 2's version
    ring.rotate(now + RETIRE_AFTER_MS + 2, 0).await.expect("rotated again");
    let stored = ring.read().await.unwrap();
    assert_eq!((stored.current.kid, stored.previous.map(|p| p.kid), stored.requests), (2, Some(1), 1));
}

#[tokio::test]
async fn a_keyring_rotated_before_the_previous_key_moved_inside_is_read_from_both_stages_until_retired() {
    use twofa::{
        adapters::{aws::secrets::SecretKeyring, aws::secrets::RETIRE_AFTER_MS, memory::MemoryStore},
        domain::crypto::Purpose,
    };
    // Given a stack rotated by the version before this one: key 1's version has no
    // `previous` field, key 0 (the template's string) is `AWSPREVIOUS`
    let zero = hex::encode([7u8; 32]);
    let (sm, requests, arn) = counted_secret(&zero).await;
    let sealed0 = Keys::from_master(zero.as_bytes()).unwrap().seal(Purpose::Code, b"1234", "OTP1");
    let now = twofa::ports::Clock::now_ms(&twofa::ports::SystemClock);
    let key1 = format!(r#"{{"kid":1,"key":"{}","activeFromMs":{now}}}"#, "02".repeat(32));
    sm.put_secret_value().secret_id(&arn).secret_string(&key1).send().await.unwrap();
    requests.take();
    let ring = SecretKeyring::new(sm.clone(), &arn);
    // Then its keyring is read from both stages (two requests), both keys in it
    let stored = ring.read().await.unwrap();
    assert_eq!((requests.take(), stored.requests), (2, 2));
    assert_eq!((stored.current.kid, stored.previous.as_ref().map(|p| p.kid)), (1, Some(0)));
    let keys = stored.keys().unwrap();
    assert_eq!(keys.open(Purpose::Code, &sealed0, "OTP1").unwrap(), b"1234");
    // And another rotation waits for key 0 to be retired
    assert!(ring.rotate(now, 0).await.unwrap_err().to_string().contains("retire it first"));
    // When key 0 is retired
    let done = ring.retire_previous(&MemoryStore::new(), now + RETIRE_AFTER_MS + 1).await.unwrap().unwrap();
    assert_eq!((done.kid, done.current), (0, 1));
    requests.take();
    // Then the keyring is key 1 alone, read with one request from now on
    let stored = ring.read().await.unwrap();
    assert_eq!((requests.take(), stored.current.kid, stored.previous.is_none()), (1, 1, true));
    assert!(stored.keys().unwrap().open(Purpose::Code, &sealed0, "OTP1").is_err());
    assert_eq!(stage_text(&sm, &arn, "AWSPREVIOUS").await, None);
}
