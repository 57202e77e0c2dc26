//! The `Scheduler` on Step Functions: one execution of the workflow state machine
//! (`infra/statemachine/workflow.asl.json`) per OTP, named by the OTP sid, its input the
//! `StepRun` of the next step.

use async_trait::async_trait;
use aws_sdk_sfn::{
    error::{ProvideErrorMetadata, SdkError},
    operation::{start_execution::StartExecutionError, stop_execution::StopExecutionError},
};
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::{
    domain::error::{Error, Result},
    ports::{Scheduler, StepRun},
};

pub struct SfnScheduler {
    client: aws_sdk_sfn::Client,
    state_machine_arn: String,
}

impl SfnScheduler {
    /// `state_machine_arn`: `arn:<partition>:states:<region>:<account>:stateMachine:<name>`
    /// (`TWOFA_WORKFLOW_STATE_MACHINE_ARN`).
    pub fn new(client: aws_sdk_sfn::Client, state_machine_arn: impl Into<String>) -> Self {
        SfnScheduler { client, state_machine_arn: state_machine_arn.into() }
    }

    /// The ARN of the OTP's execution: Step Functions derives it from the machine's and the
    /// execution name, so `stop` needs no lookup.
    pub fn execution_arn(&self, otp_sid: &str) -> Result<String> {
        match self.state_machine_arn.split_once(":stateMachine:") {
            Some((prefix, name)) if !name.is_empty() && !name.contains(':') => {
                Ok(format!("{prefix}:execution:{name}:{otp_sid}"))
            }
            _ => {
                tracing::error!(arn = %self.state_machine_arn, "not a state machine ARN");
                Err(Error::Internal)
            }
        }
    }
}

#[async_trait]
impl Scheduler for SfnScheduler {
    async fn start(&self, run: &StepRun) -> Result<()> {
        let input = serde_json::to_string(run).map_err(|_| Error::Internal)?;
        let out = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(&run.otp_sid)
            .input(input)
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            // A retried start: the OTP's run exists (same input while running answers Ok
            // already; finished, or started with other input, answers this). Idempotent.
            Err(SdkError::ServiceError(ctx)) if matches!(ctx.err(), StartExecutionError::ExecutionAlreadyExists(_)) => {
                tracing::info!(otp = %run.otp_sid, "workflow execution already started");
                Ok(())
            }
            Err(err) => Err(sdk_error("StartExecution", &err, start_transient)),
        }
    }

    async fn stop(&self, _account_sid: &str, otp_sid: &str) -> Result<()> {
        let arn = self.execution_arn(otp_sid)?;
        match self.client.stop_execution().execution_arn(arn).send().await {
            Ok(_) => Ok(()),
            // No run (a one-step workflow, or already gone): nothing to stop. (Stopping an
            // execution that already ended answers success on moto; any other refusal comes
            // back as Internal, which callers of a best-effort stop log and ignore.)
            Err(SdkError::ServiceError(ctx)) if matches!(ctx.err(), StopExecutionError::ExecutionDoesNotExist(_)) => {
                Ok(())
            }
            Err(err) => Err(sdk_error("StopExecution", &err, stop_transient)),
        }
    }
}

/// Too many executions open at once: a quota that frees itself as executions end.
fn start_transient(e: &StartExecutionError) -> bool {
    matches!(e, StartExecutionError::ExecutionLimitExceeded(_))
}

fn stop_transient(_: &StopExecutionError) -> bool {
    false
}

/// Throttling, 5xx, transient codes, timeouts and unreachable endpoints are `Unavailable`
/// (nothing started or stopped: try again); any other refusal (bad ARN, missing machine,
/// denied) is a deployment bug, `Internal`.
fn sdk_error<E>(op: &'static str, err: &SdkError<E>, transient: fn(&E) -> bool) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
    match err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            let status = ctx.raw().status().as_u16();
            let code = e.code();
            let code_transient = code.is_some_and(|c| THROTTLING_ERRORS.contains(&c) || TRANSIENT_ERRORS.contains(&c));
            if transient(e) || code_transient || status >= 500 || status == 429 {
                tracing::warn!(op, error_code = code, status, "Step Functions unavailable");
                Error::Unavailable
            } else {
                tracing::error!(op, error_code = code, status, "Step Functions refused the request");
                Error::Internal
            }
        }
        SdkError::ConstructionFailure(_) => {
            tracing::error!(op, "Step Functions request could not be built");
            Error::Internal
        }
        // Timeouts, connection failures, unreadable responses.
        _ => {
            tracing::warn!(op, error = %DisplayErrorContext(err), "Step Functions unreachable");
            Error::Unavailable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler(arn: &str) -> SfnScheduler {
        let conf =
            aws_sdk_sfn::Config::builder().behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest()).build();
        SfnScheduler::new(aws_sdk_sfn::Client::from_conf(conf), arn)
    }

    #[test]
    fn the_execution_arn_is_the_machines_with_the_otp_sid() {
        let s = scheduler("arn:aws:states:eu-west-1:123456789012:stateMachine:twofa-Workflow-AbC");
        assert_eq!(
            s.execution_arn("OTP42").unwrap(),
            "arn:aws:states:eu-west-1:123456789012:execution:twofa-Workflow-AbC:OTP42"
        );
        let cn = scheduler("arn:aws-cn:states:cn-north-1:123456789012:stateMachine:m");
        assert_eq!(cn.execution_arn("OTP1").unwrap(), "arn:aws-cn:states:cn-north-1:123456789012:execution:m:OTP1");
    }

    #[test]
    fn a_malformed_machine_arn_is_internal() {
        assert_eq!(scheduler("arn:aws:states:eu-west-1:1:activity:x").execution_arn("OTP1"), Err(Error::Internal));
        assert_eq!(scheduler("arn:aws:states:eu-west-1:1:stateMachine:").execution_arn("OTP1"), Err(Error::Internal));
        assert_eq!(
            scheduler("arn:aws:states:eu-west-1:1:stateMachine:m:v1").execution_arn("OTP1"),
            Err(Error::Internal)
        );
    }
}
