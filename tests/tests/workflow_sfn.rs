//! The workflow state machine end to end on the emulated AWS stack: moto (Step Functions with
//! execution switched on) runs the real ASL of template.yaml, and its Lambda Task reaches the
//! real step Lambda binary (`functions/workflow-step` under `cargo lambda watch`) through the
//! Lambda router (`infra/scripts/workflow_e2e.sh`, started by `make test`). Executions are
//! started and stopped by the real `SfnScheduler`.
//!
//! TODO(lead, on merge of `domain::workflows::run_step`): the happy path below counts the
//! stand-in's two steps; give it a real OTP sent with a workflow (in TWOFA_WORKFLOW_TABLE,
//! keys from TWOFA_WORKFLOW_SECRET_KEY) and assert sends, events and usage per step.

mod workflow_template;

use std::time::{Duration, Instant};

use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent, HistoryEventType, StateMachineType};
use serde_json::{json, Value};
use twofa::{
    adapters::aws::{aws_config, sfn::SfnScheduler},
    domain::{error::Error, ids},
    ports::{Scheduler, StepRun},
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
/// router hands to cargo lambda watch.
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

#[tokio::test]
async fn an_execution_waits_invokes_the_real_step_lambda_per_step_and_succeeds() {
    let m = machine().await;
    let otp = ids::new_sid("OTP");
    let started = Instant::now();
    m.scheduler().start(&run(&otp, 1)).await.expect("start");
    // A retried start (same OTP, same input, still running) starts nothing new.
    m.scheduler().start(&run(&otp, 1)).await.expect("a retried start is success");

    let done = m.finished(&otp, Duration::from_secs(90)).await;
    assert_eq!(done.status(), &ExecutionStatus::Succeeded, "{:?}", done.cause());
    // The stand-in advances 1 -> 2 -> 3 and stops: two waits of 1 s, two invocations.
    assert!(started.elapsed() >= Duration::from_secs(2), "the Wait states waited");
    let output: StepRun = serde_json::from_str(done.output().unwrap()).unwrap();
    assert_eq!((output.otp_sid.as_str(), output.step, output.more), (otp.as_str(), 3, false));
    let history = m.history(&otp).await;
    assert_eq!(count(&history, HistoryEventType::TaskSucceeded), 2);
    assert_eq!(count(&history, HistoryEventType::WaitStateEntered), 2);

    let calls = m.invocations(&otp).await;
    let steps: Vec<u64> = calls.iter().map(|(event, _, _)| event["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [1, 2], "the step Lambda saw each step once, in order");
    assert!(calls.iter().all(|(_, _, error)| error.is_none()));
    assert_eq!(calls[1].1["step"], 3, "the Lambda's answer is the next state");

    // Started again once finished (a send retried late): ExecutionAlreadyExists is success,
    // and nothing runs again.
    m.scheduler().start(&run(&otp, 1)).await.expect("a late retried start is success");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(m.invocations(&otp).await.len(), 2);
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
    assert_eq!(errors, [Some("Retryable"), Some("TooManyRequestsException"), None, None]);
    let steps: Vec<u64> = calls.iter().map(|(event, _, _)| event["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [1, 1, 1, 2], "the same step is retried, then the next one runs");
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
