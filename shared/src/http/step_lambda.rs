//! The workflow step Lambda (`functions/workflow-step`): the state machine's Task invokes it
//! with the `StepRun` state, it runs `domain::workflows::run_step` and answers the next
//! `StepRun`. Its errors carry the type the state machine's Retry/Catch match on.

use std::sync::Arc;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};

use crate::{
    domain::{error::Error, workflows},
    http::lambda::{init_tracing, parts_from_env, AfterSecret, BoxError},
    ports::{Deps, StepRun},
};

/// The error type the state machine retries (`infra/statemachine/workflow.asl.json`):
/// nothing was sent, the same step may run again.
pub const RETRYABLE: &str = "Retryable";
/// Any other failure: the execution ends in its Fail state.
pub const STEP_FAILED: &str = "StepFailed";

/// A step that did not complete, as the state machine sees it.
#[derive(Debug)]
pub struct StepError(pub Error);

impl StepError {
    pub fn retryable(&self) -> bool {
        matches!(self.0, Error::Unavailable | Error::Contended)
    }
}

impl From<StepError> for Diagnostic {
    fn from(e: StepError) -> Diagnostic {
        let error_type = if e.retryable() { RETRYABLE } else { STEP_FAILED };
        // The domain's message only: it never holds a code or a secret.
        Diagnostic { error_type: error_type.into(), error_message: e.0.to_string() }
    }
}

/// One invocation.
pub async fn handle(deps: &Deps, run: &StepRun) -> Result<StepRun, StepError> {
    match workflows::run_step(deps, run).await {
        Ok(next) => Ok(next),
        Err(e) => {
            tracing::warn!(otp = %run.otp_sid, step = run.step, error = %e, "workflow step failed");
            Err(StepError(e))
        }
    }
}

/// Tracing, adapters (once per process), then serve step invocations for the life of the
/// process (from the first on, once the master secret has arrived: a step that finds it
/// unreadable is `Retryable`, nothing sent).
pub async fn run() -> Result<(), BoxError> {
    init_tracing();
    let (parts, sdk) = parts_from_env().await?;
    let deps = Arc::new(AfterSecret::start(&sdk, move |keys| parts.clone().with_keys(keys)));
    lambda_runtime::run(service_fn(|event: LambdaEvent<StepRun>| {
        let deps = deps.clone();
        async move { handle(deps.get().await.map_err(StepError)?, &event.payload).await }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagnostic(e: Error) -> Diagnostic {
        StepError(e).into()
    }

    #[test]
    fn unavailable_and_contended_are_retryable_everything_else_fails_the_step() {
        assert_eq!(diagnostic(Error::Unavailable).error_type, RETRYABLE);
        assert_eq!(diagnostic(Error::Contended).error_type, RETRYABLE);
        for e in [Error::Internal, Error::OtpNotFound, Error::Expired, Error::WorkflowNotFound, Error::missing("to")] {
            assert_eq!(diagnostic(e).error_type, STEP_FAILED);
        }
    }

    #[test]
    fn the_step_run_json_is_what_the_state_machine_passes() {
        let run: StepRun =
            serde_json::from_str(r#"{"accountSid":"AC1","otpSid":"OTP1","step":1,"wait":2,"more":true}"#).unwrap();
        assert_eq!(run, StepRun { account_sid: "AC1".into(), otp_sid: "OTP1".into(), step: 1, wait: 2, more: true });
    }
}
