//! Workflow fixtures for the tests that drive the store and the steps without the workflows
//! API: a definition written straight to a store, and a scheduler that only records.
#![allow(dead_code)]

use twofa::{
    domain::{
        ids,
        otp::Channel,
        time::Millis,
        workflows::{Step, WorkflowDef},
    },
    ports::{Scheduler, StepRun},
};

/// A scheduler that only records what it was asked to run (Step Functions on AWS); the tests
/// run the steps themselves, as the step Lambda would.
#[derive(Default)]
pub struct RecordingScheduler(pub std::sync::Mutex<Vec<StepRun>>);

#[async_trait::async_trait]
impl Scheduler for RecordingScheduler {
    async fn start(&self, run: &StepRun) -> twofa::Result<()> {
        self.0.lock().unwrap().push(run.clone());
        Ok(())
    }
    async fn stop(&self, _: &str, _: &str) -> twofa::Result<()> {
        Ok(())
    }
}

/// `steps` as (channel, seconds after the previous step).
pub fn workflow_def(account_sid: &str, name: &str, steps: &[(Channel, u32)], created_ms: Millis) -> WorkflowDef {
    WorkflowDef {
        sid: ids::new_sid(ids::WORKFLOW),
        account_sid: account_sid.to_owned(),
        created_by: account_sid.to_owned(),
        name: name.to_owned(),
        steps: steps.iter().map(|&(channel, interval_secs)| Step { channel, interval_secs }).collect(),
        channels_json: r#"[{"channel":"sms","interval":0}]"#.into(),
        description: Some("a workflow".into()),
        created_ms,
        updated_ms: created_ms,
    }
}
