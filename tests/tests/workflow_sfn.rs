//! The workflow state machine end to end on the emulated AWS stack: moto (Step Functions with
//! execution switched on) runs the real ASL of template.yaml, and its Lambda Task reaches the
//! real step Lambda binary (`functions/workflow-step` behind `cargo lambda watch`'s Runtime
//! API) through the Lambda router (`infra/scripts/workflow_e2e.sh`, started by `make test`).
//! Executions are started and stopped by the real `SfnScheduler`.
//! The OTPs are real: sent through the send use case on DynamoDB (moto), in the table and
//! under the key the step Lambda was started with; SMS land in moto's SNS, calls at the
//! router's SMS Voice v2 stand-in.

mod workflow_defs;
mod workflow_template;

use std::time::{Duration, Instant};

use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent, HistoryEventType, StateMachineType};
use serde_json::{json, Value};
use std::sync::Arc;

use twofa::adapters::router::{self, Route, Router};
use twofa::{
    adapters::aws::{
        aws_config,
        dynamodb::{create_table, DynamoStore},
        polly::PollyVoices,
        ses::SesEmail,
        sfn::SfnScheduler,
        sns::SnsSms,
        voice::{usable_voices, SmsVoiceCalls},
        Calls,
    },
    domain::{
        account::Account,
        crypto::Keys,
        error::Error,
        ids,
        otp::{Channel, ChannelStatus, Delivery},
        send::{send, SendRequest},
        usage::UsageCategory,
        verify::{cancel, verify, VerifyTarget},
    },
    ports::{AccountStore, Deps, OtpStore, RecordStore, Scheduler, StepRun, SystemClock, WorkflowStore},
};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `make test`, or moto.sh start + workflow_e2e.sh start and eval their env")
    })
}

struct Machine {
    sfn: aws_sdk_sfn::Client,
    arn: String,
    router: String,
}

/// A state machine on moto from the template's DefinitionUri, its step Lambda ARN the one the
/// router hands to the step Lambda.
async fn machine() -> Machine {
    let router = env("TWOFA_LAMBDA_ROUTER_URL");
    let function = env("TWOFA_WORKFLOW_STEP_FUNCTION");
    let sdk = aws_config().await;
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
    let step_arn = format!("arn:aws:lambda:{region}:123456789012:function:{function}");
    let sm = workflow_template::state_machine("WorkflowStateMachine");
    let definition = workflow_template::definition_with(&sm, &[("WorkflowStepFunctionArn", &step_arn)]);
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let created = sfn
        .create_state_machine()
        .name(format!("twofa-workflow-{}", ids::new_sid("")))
        .definition(definition)
        .role_arn("arn:aws:iam::123456789012:role/twofa-workflow")
        .r#type(StateMachineType::Standard)
        .send()
        .await
        .expect("moto creates the state machine from the template's definition");
    Machine { sfn, arn: created.state_machine_arn().to_string(), router }
}

impl Machine {
    fn scheduler(&self) -> SfnScheduler {
        SfnScheduler::new(self.sfn.clone(), self.arn.clone())
    }

    fn execution_arn(&self, otp_sid: &str) -> String {
        self.scheduler().execution_arn(otp_sid).unwrap()
    }

    /// Polls (1 s waits keep moto's single request thread free) until the execution ends.
    async fn finished(
        &self,
        otp_sid: &str,
        within: Duration,
    ) -> aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput {
        let deadline = Instant::now() + within;
        loop {
            let d = self.sfn.describe_execution().execution_arn(self.execution_arn(otp_sid)).send().await.unwrap();
            if d.status() != &ExecutionStatus::Running {
                return d;
            }
            assert!(Instant::now() < deadline, "execution {otp_sid} still running after {within:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn history(&self, otp_sid: &str) -> Vec<HistoryEvent> {
        let out = self.sfn.get_execution_history().execution_arn(self.execution_arn(otp_sid)).send().await.unwrap();
        out.events().to_vec()
    }

    /// The router answers the next invokes for this OTP with `faults` instead of the Lambda.
    async fn inject(&self, otp_sid: &str, faults: Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}/_router/faults", self.router))
            .json(&json!({"otpSid": otp_sid, "faults": faults}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }

    /// What the router handed to the step Lambda for this OTP: (event, answer, error type).
    async fn invocations(&self, otp_sid: &str) -> Vec<(Value, Value, Option<String>)> {
        let all: Vec<Value> =
            reqwest::get(format!("{}/_router/invocations", self.router)).await.unwrap().json().await.unwrap();
        all.into_iter()
            .filter_map(|r| {
                let event: Value = serde_json::from_str(r["payload"].as_str()?).ok()?;
                (event["otpSid"] == otp_sid).then(|| {
                    let answer = serde_json::from_str(r["answer"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
                    (event, answer, r["errorType"].as_str().map(String::from))
                })
            })
            .collect()
    }
}

fn count(events: &[HistoryEvent], ty: HistoryEventType) -> usize {
    events.iter().filter(|e| e.r#type() == &ty).count()
}

fn run(otp_sid: &str, wait: u32) -> StepRun {
    StepRun { account_sid: ids::new_sid(ids::ACCOUNT), otp_sid: otp_sid.into(), step: 1, wait, more: true }
}

/// The send side as the otp Lambda builds it, on the table and key the step Lambda uses, its
/// scheduler this machine's.
struct World {
    deps: Deps,
    store: Arc<DynamoStore>,
    account: Account,
}

async fn world(m: &Machine) -> World {
    let sdk = aws_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = env("TWOFA_WORKFLOW_TABLE");
    create_table(&ddb, &table).await.expect("the step Lambda's table");
    let keys = Keys::from_master(&hex_decode(&env("TWOFA_WORKFLOW_SECRET_KEY"))).expect("key");
    let store = Arc::new(DynamoStore::new(ddb, table));
    let account = Account::new(ids::new_sid(ids::ACCOUNT), "token", &keys, None, 0);
    store.put_account(&account).await.expect("account");
    let voice = aws_sdk_pinpointsmsvoicev2::config::Builder::from(&sdk).endpoint_url(&m.router).build();
    let dispatcher = Router::new(vec![
        Route::new(router::SNS, Channel::Sms, Arc::new(SnsSms::new(aws_sdk_sns::Client::new(&sdk), None))),
        Route::new(router::SES, Channel::Email, Arc::new(SesEmail::new(aws_sdk_ses::Client::new(&sdk), None))),
        Route::new(
            router::END_USER_MESSAGING,
            Channel::Call,
            Arc::new(Calls {
                voices: Arc::new(PollyVoices::new(aws_sdk_polly::Client::new(&sdk)).usable(usable_voices())),
                placer: Arc::new(SmsVoiceCalls::new(
                    aws_sdk_pinpointsmsvoicev2::Client::from_conf(voice),
                    "+18005550199".into(),
                    None,
                )),
            }),
        ),
    ]);
    let deps = Deps {
        store: store.clone(),
        dispatcher: Arc::new(dispatcher),
        clock: Arc::new(SystemClock),
        keys: Arc::new(keys),
        scheduler: Arc::new(m.scheduler()),
    };
    World { deps, store, account }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// A number that can exist (+1 415 5xx xxxx), new each time.
fn new_number() -> String {
    let digits: String =
        ids::new_sid("").chars().filter(char::is_ascii_digit).chain("000000".chars()).take(6).collect();
    format!("+14155{digits}")
}

impl World {
    /// Send an OTP to `to` delivered by a new workflow of these steps; its sid.
    async fn send(&self, to: &str, steps: &[(Channel, u32)]) -> String {
        let wf = workflow_defs::workflow_def(&self.account.sid, &ids::new_sid("wf"), steps, 0);
        self.store.create_workflow(&wf).await.unwrap();
        let req = SendRequest {
            service: "2FA".into(),
            delivery: Delivery::sms("Twofa", to, "Your code is {code}"),
            length: 6,
            timeout_secs: 300,
            guard_time: None,
            limits: vec![],
            idempotency_key: None,
            workflow: Some(wf.sid),
            email: None,
            email_from: None,
        };
        send(&self.deps, &self.account, req).await.expect("send")
    }

    async fn otp(&self, sid: &str) -> twofa::domain::otp::Otp {
        self.store.get_otp(&self.account.sid, sid).await.unwrap().expect("the OTP")
    }

    async fn usage(&self, channel: Channel) -> u64 {
        let day = twofa::domain::time::day(self.deps.clock.now_ms());
        let rows = self.store.usage(&self.account.sid, &day, &day).await.unwrap();
        rows.into_iter().find(|(k, _)| k.category == UsageCategory::Channel(channel)).map_or(0, |(_, n)| n)
    }
}

/// The SMS moto's SNS delivered to `to`, oldest first.
async fn sms_to(to: &str) -> Vec<String> {
    let data: Value =
        reqwest::get(format!("{}/moto-api/data.json", env("AWS_ENDPOINT_URL"))).await.unwrap().json().await.unwrap();
    data["sns"]["SMS"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|m| m["phone_number"] == to)
                .map(|m| m["message"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The calls the router's SMS Voice v2 stand-in received for `to`: their SSML.
async fn calls_to(m: &Machine, to: &str) -> Vec<String> {
    let all: Vec<Value> = reqwest::get(format!("{}/_router/calls", m.router)).await.unwrap().json().await.unwrap();
    all.iter()
        .filter(|c| c["request"]["DestinationPhoneNumber"] == to)
        .map(|c| c["request"]["MessageBody"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

#[tokio::test]
async fn sms_sms_call_sends_all_three_through_the_real_state_machine_when_nobody_verifies() {
    // Given the send use case with the Step Functions scheduler, and a workflow sms, sms, call
    let m = machine().await;
    let w = world(&m).await;
    let to = new_number();
    // When an OTP is sent with it
    let sid = w.send(&to, &[(Channel::Sms, 0), (Channel::Sms, 1), (Channel::Call, 1)]).await;
    // Then the first SMS went out with the send, and the execution runs the other two
    let done = m.finished(&sid, Duration::from_secs(120)).await;
    assert_eq!(done.status(), &ExecutionStatus::Succeeded, "{:?}", done.cause());
    let sms = sms_to(&to).await;
    assert_eq!(sms.len(), 2, "{sms:?}");
    let code = digits(&sms[0]);
    assert_eq!(digits(&sms[1]), code, "the same code");
    let calls = calls_to(&m, &to).await;
    assert_eq!(calls.len(), 1);
    let spoken: String =
        calls[0].split("<say-as interpret-as=\"digits\">").skip(1).filter_map(|s| s.chars().next()).collect();
    assert_eq!(spoken, code, "the call reads the same code");
    // And the step Lambda saw each later step once, in order
    let steps: Vec<u64> =
        m.invocations(&sid).await.iter().map(|(event, _, _)| event["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [1, 2]);
    // And each step is one event of the session, and counted in usage for its channel
    let otp = w.otp(&sid).await;
    let channels: Vec<Channel> = otp.events.iter().map(|e| e.channel).collect();
    assert_eq!(channels, [Channel::Sms, Channel::Sms, Channel::Call]);
    assert!(otp.events.iter().all(|e| e.status == ChannelStatus::Sent), "{:?}", otp.events);
    assert_eq!((w.usage(Channel::Sms).await, w.usage(Channel::Call).await), (2, 1));
    // Started again once finished (a send retried late): ExecutionAlreadyExists is success,
    // and nothing runs again.
    m.scheduler().start(&run(&sid, 0)).await.expect("a late retried start is success");
    assert_eq!(m.invocations(&sid).await.len(), 2);
}

#[tokio::test]
async fn verifying_after_the_first_step_stops_the_rest_on_aws() {
    let m = machine().await;
    let w = world(&m).await;
    let to = new_number();
    // The second step waits 6 s, and the code is read from the OTP's sealed copy rather than from
    // moto's data dump (which can take seconds on 2 loaded cores): the verify must come first.
    let sid = w.send(&to, &[(Channel::Sms, 0), (Channel::Sms, 6), (Channel::Call, 2)]).await;
    let otp = w.otp(&sid).await;
    let code =
        String::from_utf8(w.deps.keys.open(twofa::domain::crypto::Purpose::Code, &otp.sealed_code, &sid).unwrap())
            .unwrap();
    // When the first SMS's code is verified
    verify(&w.deps, &w.account, VerifyTarget::RequestId(sid.clone()), &code).await.expect("verify");
    // Then the execution ends without sending anything more
    let done = m.finished(&sid, Duration::from_secs(60)).await;
    assert_ne!(done.status(), &ExecutionStatus::Failed, "{:?}", done.cause());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sms_to(&to).await.len(), 1);
    assert!(calls_to(&m, &to).await.is_empty());
    assert_eq!(w.otp(&sid).await.events.len(), 1);
}

#[tokio::test]
async fn cancel_stops_the_rest_on_aws() {
    let m = machine().await;
    let w = world(&m).await;
    let to = new_number();
    let sid = w.send(&to, &[(Channel::Sms, 0), (Channel::Call, 4)]).await;
    cancel(&w.deps, &w.account, &sid).await.expect("cancel");
    let done = m.finished(&sid, Duration::from_secs(60)).await;
    assert_ne!(done.status(), &ExecutionStatus::Failed, "{:?}", done.cause());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(calls_to(&m, &to).await.is_empty());
    assert_eq!(w.otp(&sid).await.events.len(), 1);
}

#[tokio::test]
async fn stop_aborts_a_waiting_execution_before_its_step() {
    let m = machine().await;
    let otp = ids::new_sid("OTP");
    m.scheduler().start(&run(&otp, 2)).await.expect("start");
    m.scheduler().stop("AC", &otp).await.expect("stop");
    let done = m.finished(&otp, Duration::from_secs(30)).await;
    assert_eq!(done.status(), &ExecutionStatus::Aborted);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(m.invocations(&otp).await.is_empty(), "a stopped run invokes no step");
    // Stopping again, or an OTP that never had a run, is fine.
    m.scheduler().stop("AC", &otp).await.expect("stop twice");
    m.scheduler().stop("AC", &ids::new_sid("OTP")).await.expect("stop without a run");
}

#[tokio::test]
async fn a_step_lambda_failure_ends_in_the_fail_state_without_retries() {
    // An event the step Lambda cannot read (no accountSid): its runtime answers a function
    // error that is not Retryable, so the Catch sends the execution to Failed at once.
    let m = machine().await;
    let otp = ids::new_sid("OTP");
    m.sfn
        .start_execution()
        .state_machine_arn(&m.arn)
        .name(&otp)
        .input(json!({"otpSid": otp, "step": 1, "wait": 0}).to_string())
        .send()
        .await
        .unwrap();
    let done = m.finished(&otp, Duration::from_secs(60)).await;
    assert_eq!(done.status(), &ExecutionStatus::Failed);
    assert_eq!(done.error(), Some("StepFailed"));
    let calls = m.invocations(&otp).await;
    assert_eq!(calls.len(), 1, "not retried");
    assert!(calls[0].2.as_deref().is_some_and(|t| t.contains("DeserializeError")), "{:?}", calls[0].2);
    let history = m.history(&otp).await;
    assert_eq!(count(&history, HistoryEventType::TaskFailed), 1);
    assert_eq!(count(&history, HistoryEventType::FailStateEntered), 1);
}

#[tokio::test]
async fn retryable_step_errors_and_lambda_throttling_are_retried_then_the_step_runs() {
    // The step Lambda answering Retryable (nothing sent), then Lambda throttling the invoke:
    // both retried by the Task's Retry, then the real Lambda runs the step.
    let m = machine().await;
    let otp = ids::new_sid("OTP");
    m.inject(&otp, json!([{"errorType": "Retryable"}, {"awsError": "TooManyRequestsException", "status": 429}])).await;
    m.scheduler().start(&run(&otp, 0)).await.expect("start");
    let done = m.finished(&otp, Duration::from_secs(90)).await;
    assert_eq!(done.status(), &ExecutionStatus::Succeeded, "{:?}", done.cause());
    let calls = m.invocations(&otp).await;
    let errors: Vec<Option<&str>> = calls.iter().map(|(_, _, e)| e.as_deref()).collect();
    assert_eq!(errors, [Some("Retryable"), Some("TooManyRequestsException"), None]);
    let steps: Vec<u64> = calls.iter().map(|(event, _, _)| event["step"].as_u64().unwrap()).collect();
    // The real step finds no such OTP and ends the run.
    assert_eq!(steps, [1, 1, 1], "the same step is retried until it runs");
    assert_eq!(count(&m.history(&otp).await, HistoryEventType::TaskFailed), 2);
}

#[tokio::test]
async fn a_step_failed_for_good_is_not_retried() {
    let m = machine().await;
    let otp = ids::new_sid("OTP");
    m.inject(&otp, json!([{"errorType": "StepFailed"}])).await;
    m.scheduler().start(&run(&otp, 0)).await.expect("start");
    let done = m.finished(&otp, Duration::from_secs(60)).await;
    assert_eq!((done.status(), done.error()), (&ExecutionStatus::Failed, Some("StepFailed")));
    assert_eq!(m.invocations(&otp).await.len(), 1);
}

#[tokio::test]
async fn scheduler_errors_are_domain_errors() {
    let m = machine().await;
    // A machine that is not there: a deployment bug, not "retry later".
    let missing = SfnScheduler::new(m.sfn.clone(), format!("{}-gone", m.arn));
    assert_eq!(missing.start(&run(&ids::new_sid("OTP"), 1)).await, Err(Error::Internal));
    // Step Functions unreachable: retryable, nothing started.
    // (On the client's own config: AWS_ENDPOINT_URL would win over the shared config's.)
    let conf = aws_sdk_sfn::config::Builder::from(&aws_config().await).endpoint_url("http://127.0.0.1:9").build();
    let down = SfnScheduler::new(aws_sdk_sfn::Client::from_conf(conf), m.arn.clone());
    assert_eq!(down.start(&run(&ids::new_sid("OTP"), 1)).await, Err(Error::Unavailable));
    assert_eq!(down.stop("AC", &ids::new_sid("OTP")).await, Err(Error::Unavailable));
}
