//! The delivery adapters on the AWS path: voice calls with their voice chosen from Polly's
//! `DescribeVoices` (moto serves Polly) and placed through SMS Voice v2 `SendVoiceMessage`, and
//! SNS's SMS attributes. SMS Voice v2 has no emulator, so its client (and, for the attributes
//! moto does not keep, SNS's) is pointed at a local stand-in that records each signed request
//! the SDK sends and answers as the service would, including throttling and outages.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use axum::{body::Body, extract::State, http::Request, response::Response};
use serde_json::{json, Value};
use tower::ServiceExt;
use twofa::adapters::router::{self, Route, Router};
use twofa::domain::otp::Channel;
use twofa::{
    adapters::aws::{
        aws_config, dispatch_config,
        dynamodb::{create_table, DynamoStore},
        polly::PollyVoices,
        ses::SesEmail,
        sns::SnsSms,
        voice::{usable_voices, SmsVoiceCalls},
        Calls,
    },
    domain::{
        account::Account,
        crypto::Keys,
        ids,
        otp::ChannelStatus,
        voice::{choose, Gender},
    },
    ports::{AccountStore, Deps, NoScheduler, OtpStore, SystemClock, VoiceCatalog},
};

const ORIGINATION: &str = "+18005550199";

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
struct Recorded {
    target: Option<String>,
    authorization: String,
    body: String,
}

/// A canned answer: status, content type, body.
type Answer = (u16, &'static str, String);

#[derive(Default)]
struct StandInState {
    seen: Vec<Recorded>,
    /// Answers for the next requests, in order; then `default`.
    queue: VecDeque<Answer>,
    default: Option<Answer>,
}

#[derive(Clone, Default)]
struct StandIn(Arc<Mutex<StandInState>>);

impl StandIn {
    /// Serves on a free loopback port; answers `default` unless told otherwise.
    async fn start(default: Answer) -> (StandIn, String) {
        let stand_in = StandIn::default();
        stand_in.0.lock().unwrap().default = Some(default);
        let app = axum::Router::new().fallback(record).with_state(stand_in.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (stand_in, url)
    }

    fn then(&self, answers: impl IntoIterator<Item = Answer>) {
        self.0.lock().unwrap().queue.extend(answers);
    }

    fn seen(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().seen.clone()
    }
}

async fn record(State(s): State<StandIn>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let target = header("x-amz-target");
    let authorization = header("authorization").unwrap_or_default();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let answer = {
        let mut state = s.0.lock().unwrap();
        state.seen.push(Recorded { target, authorization, body: String::from_utf8_lossy(&bytes).into_owned() });
        let default = state.default.clone().unwrap();
        state.queue.pop_front().unwrap_or(default)
    };
    let (status, content_type, body) = answer;
    let mut resp = Response::builder().status(status).header("content-type", content_type);
    // awsJson errors name their type in a header as well as in the body.
    if let Some(kind) = serde_json::from_str::<Value>(&body).ok().and_then(|v| v["__type"].as_str().map(str::to_owned))
    {
        resp = resp.header("x-amzn-errortype", kind);
    }
    resp.body(Body::from(body)).unwrap()
}

const JSON: &str = "application/x-amz-json-1.0";

fn voice_ok(id: &str) -> Answer {
    (200, JSON, json!({ "MessageId": id }).to_string())
}

fn voice_error(status: u16, kind: &str) -> Answer {
    (status, JSON, json!({ "__type": kind, "Message": "from the stand-in" }).to_string())
}

struct AwsApi {
    app: axum::Router,
    store: Arc<DynamoStore>,
    sid: String,
    token: String,
}

/// The OTP router over DynamoDB on moto, Polly on moto, SMS Voice v2 (and SNS, when `sns` is
/// given) at stand-ins.
async fn start(voice_url: &str, sns_url: Option<&str>) -> AwsApi {
    start_with(voice_url, sns_url, None).await
}

/// `start`, the calls placed in the SMS Voice v2 configuration set `voice_configuration_set`.
async fn start_with(voice_url: &str, sns_url: Option<&str>, voice_configuration_set: Option<&str>) -> AwsApi {
    let sdk = aws_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("twofa-{}", ids::new_sid(""));
    create_table(&ddb, &table).await.expect("create table");
    let keys = Keys::random();
    let store = Arc::new(DynamoStore::new(ddb, table));
    let token = ids::new_sid("");
    let account = Account::new(ids::new_sid(ids::ACCOUNT), &token, &keys, None, 0);
    store.put_account(&account).await.expect("account");
    let delivery = dispatch_config(&sdk);
    let voice_conf = aws_sdk_pinpointsmsvoicev2::config::Builder::from(&delivery).endpoint_url(voice_url).build();
    let sns = match sns_url {
        Some(url) => {
            aws_sdk_sns::Client::from_conf(aws_sdk_sns::config::Builder::from(&delivery).endpoint_url(url).build())
        }
        None => aws_sdk_sns::Client::new(&delivery),
    };
    let dispatcher = Router::new(vec![
        Route::new(router::SNS, Channel::Sms, Arc::new(SnsSms::new(sns, None))),
        Route::new(router::SES, Channel::Email, Arc::new(SesEmail::new(aws_sdk_ses::Client::new(&delivery), None))),
        Route::new(
            router::END_USER_MESSAGING,
            Channel::Call,
            Arc::new(Calls {
                voices: Arc::new(PollyVoices::new(aws_sdk_polly::Client::new(&delivery)).usable(usable_voices())),
                placer: Arc::new(SmsVoiceCalls::new(
                    aws_sdk_pinpointsmsvoicev2::Client::from_conf(voice_conf),
                    ORIGINATION.into(),
                    voice_configuration_set.map(str::to_owned),
                )),
            }),
        ),
    ]);
    let deps = Deps {
        store: store.clone(),
        dispatcher: Arc::new(dispatcher),
        clock: Arc::new(SystemClock),
        keys: Arc::new(keys),
        scheduler: Arc::new(NoScheduler),
    };
    AwsApi { app: twofa::http::otp::router(deps), store, sid: account.sid, token }
}

impl AwsApi {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.sid, self.token));
        let req = Request::post(path)
            .header("Authorization", format!("Basic {auth}"))
            .header("Content-Type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn call(&self, to: &str, extra: Value) -> (u16, Value) {
        let mut body =
            json!({ "service": "2FA", "channel": "call", "from": "Twofa", "to": to, "body": "Your code is {code}" });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        self.post("/2fa/send", body).await
    }
}

/// A number that can exist (+1 415 5xx xxxx), new each time.
fn new_number() -> String {
    let digits: String = ids::new_sid("").chars().filter(char::is_ascii_digit).collect();
    format!("+14155{}", &format!("{digits}000000")[..6])
}

#[tokio::test]
async fn polly_describe_voices_is_what_the_choice_is_made_from() {
    // Given Polly's catalog as moto serves it (DescribeVoices, really called)
    let sdk = aws_config().await;
    assert!(std::env::var("AWS_ENDPOINT_URL").is_ok(), "AWS_ENDPOINT_URL must point at moto: run `make test`");
    let all = PollyVoices::new(aws_sdk_polly::Client::new(&sdk)).voices().await.expect("DescribeVoices");
    // Then it holds voices no built-in list has, and they drive the choice
    assert!(all.len() > 60, "{} voices", all.len());
    assert_eq!(choose(&all, "en-US", Gender::Female).unwrap().id, "Danielle", "neural, first by id");
    assert_eq!(choose(&all, "ja-JP", Gender::Female).unwrap().id, "Kazuha");
    // And restricted to the voices SMS Voice v2 reads in, the choice changes accordingly
    let usable = PollyVoices::new(aws_sdk_polly::Client::new(&sdk)).usable(usable_voices()).voices().await.unwrap();
    assert!(usable.len() < all.len());
    assert_eq!(choose(&usable, "en-US", Gender::Female).unwrap().id, "Ivy");
    assert_eq!(choose(&usable, "ja-JP", Gender::Female).unwrap().id, "Mizuki");
    assert_eq!(choose(&usable, "ja-JP", Gender::Male).unwrap().id, "Takumi");
}

#[tokio::test]
async fn a_call_is_placed_with_ssml_in_the_chosen_voice_from_the_origination_identity() {
    // Given the AWS adapters with SMS Voice v2 at a stand-in
    let (voice, url) = StandIn::start(voice_ok("call-1")).await;
    let api = start(&url, None).await;
    let to = new_number();
    // When the seed's call example is sent, in Japanese, a man's voice, twice, with markup in it
    let (status, body) = api
        .call(&to, json!({ "language": "awspolly.ja-JP", "voice": "man", "repeat": 2, "body": "認証 <b>&</b> {code}" }))
        .await;
    assert_eq!(status, 200, "{body}");
    let sid = body["requestID"].as_str().unwrap().to_owned();
    // Then one signed SendVoiceMessage went out, with the SSML, the voice Polly offered, the
    // destination and the origination identity
    let seen = voice.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target.as_deref(), Some("PinpointSMSVoiceV2.SendVoiceMessage"));
    assert!(seen[0].authorization.starts_with("AWS4-HMAC-SHA256 Credential="), "{}", seen[0].authorization);
    assert!(seen[0].authorization.contains("/sms-voice/aws4_request"), "{}", seen[0].authorization);
    let req: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(req["DestinationPhoneNumber"], to.as_str());
    assert_eq!(req["OriginationIdentity"], ORIGINATION);
    assert_eq!(req["MessageBodyTextType"], "SSML");
    assert_eq!(req["VoiceId"], "TAKUMI");
    assert_eq!(req.get("ConfigurationSetName"), None, "no configuration set configured");
    let ssml = req["MessageBody"].as_str().unwrap();
    assert!(ssml.starts_with("<speak><p>認証 &lt;b&gt;&amp;&lt;/b&gt; "), "{ssml}");
    assert_eq!(ssml.matches("<p>").count(), 2);
    // And the code it reads verifies; the session's event names the call's message id
    let code: String =
        ssml.split("<say-as interpret-as=\"digits\">").skip(1).filter_map(|s| s.chars().next()).take(6).collect();
    let (status, _) = api.post("/2fa/verify", json!({ "requestId": sid, "code": code })).await;
    assert_eq!(status, 200);
    let otp = api.store.get_otp(&api.sid, &sid).await.unwrap().unwrap();
    assert_eq!((otp.events[0].target_sid.as_deref(), otp.events[0].status), (Some("call-1"), ChannelStatus::Sent));
}

#[tokio::test]
async fn a_call_is_placed_in_the_configured_configuration_set_whose_events_are_the_receipts() {
    // Given the AWS adapters configured with the stack's voice configuration set
    let (voice, url) = StandIn::start(voice_ok("call-2")).await;
    let api = start_with(&url, None, Some("twofa-VoiceConfigurationSet-1A2B3C")).await;
    // When a call is sent
    let (status, body) = api.call(&new_number(), json!({})).await;
    assert_eq!(status, 200, "{body}");
    // Then SendVoiceMessage names the configuration set, so its outcome comes back as events
    let seen = voice.seen();
    assert_eq!(seen.len(), 1);
    let req: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(req["ConfigurationSetName"], "twofa-VoiceConfigurationSet-1A2B3C");
}

#[tokio::test]
async fn a_language_no_voice_speaks_is_a_400_naming_language_and_no_call_is_placed() {
    let (voice, url) = StandIn::start(voice_ok("never")).await;
    let api = start(&url, None).await;
    let (status, body) = api.call(&new_number(), json!({ "language": "xx-XX" })).await;
    assert_eq!((status, body["message"].clone()), (400, json!("Invalid parameter: language (no voice speaks xx-XX)")));
    assert!(voice.seen().is_empty());
}

#[tokio::test]
async fn a_throttled_call_is_retried_inside_the_request_and_placed() {
    // Given SMS Voice v2 throttling twice, then answering
    let (voice, url) = StandIn::start(voice_ok("call-3")).await;
    voice.then([voice_error(400, "ThrottlingException"), voice_error(400, "ThrottlingException")]);
    let api = start(&url, None).await;
    // When a call is sent
    let started = std::time::Instant::now();
    let (status, body) = api.call(&new_number(), json!({})).await;
    // Then the third try placed it, within the 1.5 s retry budget
    assert_eq!(status, 200, "{body}");
    assert_eq!(voice.seen().len(), 3);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_call_provider_still_down_after_three_tries_answers_503_and_the_send_is_undone() {
    // Given SMS Voice v2 failing on every try
    let (voice, url) = StandIn::start(voice_error(500, "InternalServerException")).await;
    let api = start(&url, None).await;
    let to = new_number();
    // When a call is sent
    let (status, body) = api.call(&to, json!({})).await;
    // Then three tries were made and the client is told to retry
    assert_eq!((status, body["code"].clone()), (503, json!(503)), "{body}");
    assert_eq!(voice.seen().len(), 3);
    // And nothing of the send is left: once the provider is back, the same number is admitted
    // at once (the per-minute default limit was not consumed)
    voice.0.lock().unwrap().default = Some(voice_ok("call-4"));
    let (status, body) = api.call(&to, json!({})).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_call_the_provider_refuses_is_a_failed_event_and_is_not_retried() {
    let (voice, url) = StandIn::start(voice_error(400, "ValidationException")).await;
    let api = start(&url, None).await;
    let (status, body) = api.call(&new_number(), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(voice.seen().len(), 1, "a refusal is final");
    let sid = body["requestID"].as_str().unwrap();
    let otp = api.store.get_otp(&api.sid, sid).await.unwrap().unwrap();
    assert_eq!(otp.events[0].status, ChannelStatus::Failed);
    assert_eq!(otp.events[0].error_code.as_deref(), Some("ValidationException"));
}

const SNS_OK: &str = r#"<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>sms-1</MessageId></PublishResult><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></PublishResponse>"#;
const SNS_THROTTLED: &str = r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r2</RequestId></ErrorResponse>"#;

/// The message attributes of an SNS Publish form body, as name → value.
fn sns_attributes(form: &str) -> Vec<(String, String)> {
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(form).unwrap();
    let get = |k: String| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    (1..=10)
        .map_while(|i| {
            let name = get(format!("MessageAttributes.entry.{i}.Name"))?;
            Some((name, get(format!("MessageAttributes.entry.{i}.Value.StringValue")).unwrap_or_default()))
        })
        .collect()
}

#[tokio::test]
async fn a_numeric_from_goes_as_origination_number_and_an_alphanumeric_one_as_sender_id() {
    // Given SNS at a stand-in
    let (sns, url) = StandIn::start((200, "text/xml", SNS_OK.into())).await;
    let (_, voice_url) = StandIn::start(voice_ok("unused")).await;
    let api = start(&voice_url, Some(&url)).await;
    // When one SMS is sent from a number and another from a name
    for (from, to) in [("18005550100", new_number()), ("Twofa", new_number())] {
        let (status, body) =
            api.post("/2fa/send", json!({ "service": "2FA", "from": from, "to": to, "body": "Code {code}" })).await;
        assert_eq!(status, 200, "{body}");
    }
    // Then SNS got each sender in its own attribute
    let seen = sns.seen();
    assert_eq!(seen.len(), 2);
    let first = sns_attributes(&seen[0].body);
    let second = sns_attributes(&seen[1].body);
    assert!(first.contains(&("AWS.MM.SMS.OriginationNumber".into(), "+18005550100".into())), "{first:?}");
    assert!(!first.iter().any(|(n, _)| n == "AWS.SNS.SMS.SenderID"));
    assert!(second.contains(&("AWS.SNS.SMS.SenderID".into(), "Twofa".into())), "{second:?}");
    assert!(second.contains(&("AWS.SNS.SMS.SMSType".into(), "Transactional".into())));
}

#[tokio::test]
async fn a_throttled_sms_is_retried_and_sent() {
    let (sns, url) = StandIn::start((200, "text/xml", SNS_OK.into())).await;
    sns.then([(400, "text/xml", SNS_THROTTLED.into())]);
    let (_, voice_url) = StandIn::start(voice_ok("unused")).await;
    let api = start(&voice_url, Some(&url)).await;
    let (status, body) =
        api.post("/2fa/send", json!({ "service": "2FA", "from": "Twofa", "to": new_number(), "body": "{code}" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sns.seen().len(), 2);
}
