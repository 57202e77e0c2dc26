//! TEMPORARY STAND-IN (branch issue8-sfn only): the lead's `domain::workflows` replaces this
//! whole file on merge. It exists so the step Lambda, the state machine and the end-to-end
//! harness can be built and run before the real `run_step` lands, with its exact signature.
//!
//! It sends nothing and reads nothing: it answers the next step (`step + 1`, the same `wait`)
//! with `more` while fewer than `STAND_IN_STEPS` steps ran, so an execution started at step 1
//! makes exactly two step invocations. `tests/tests/workflow_sfn.rs` asserts on that count.

use crate::{
    domain::error::Result,
    ports::{Deps, StepRun},
};

/// Steps of the stand-in's pretend workflow.
pub const STAND_IN_STEPS: u32 = 3;

pub async fn run_step(_deps: &Deps, run: &StepRun) -> Result<StepRun> {
    let step = run.step + 1;
    Ok(StepRun { step, more: step < STAND_IN_STEPS, ..run.clone() })
}
