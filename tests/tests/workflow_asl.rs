//! The workflow state machine's definition, read as template.yaml deploys it: it parses, every
//! transition names a state, every substitution is provided (and used), the Retry/Catch match
//! the step Lambda's error types, and each step costs at most 4 state transitions.

mod workflow_template;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use twofa::http::step_lambda::{RETRYABLE, STEP_FAILED};
use workflow_template::{definition_with, placeholders, state_machine};

fn definition() -> (workflow_template::StateMachine, Value) {
    let sm = state_machine("WorkflowStateMachine");
    let text = definition_with(&sm, &[]);
    let asl: Value = serde_json::from_str(&text).expect("the ASL is JSON");
    (sm, asl)
}

fn states(asl: &Value) -> &serde_json::Map<String, Value> {
    asl["States"].as_object().expect("States is an object")
}

/// Every state a state can go to next.
fn targets(state: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |v: &Value| out.extend(v.as_str().map(String::from));
    push(&state["Next"]);
    push(&state["Default"]);
    for list in ["Choices", "Catch"] {
        for entry in state[list].as_array().into_iter().flatten() {
            push(&entry["Next"]);
        }
    }
    out
}

#[test]
fn the_template_wires_a_standard_machine_to_the_definition_file() {
    let (sm, _) = definition();
    assert_eq!(sm.definition_uri, "infra/statemachine/workflow.asl.json");
    assert_eq!(sm.kind.as_deref(), Some("STANDARD"), "Standard: waits of minutes, exactly-once steps");
}

#[test]
fn every_transition_names_a_state_and_every_state_is_reached() {
    let (_, asl) = definition();
    let states = states(&asl);
    let start = asl["StartAt"].as_str().expect("StartAt");
    assert!(states.contains_key(start), "StartAt {start} is not a state");
    let mut reached = BTreeSet::from([start.to_string()]);
    for (name, state) in states {
        let ty = state["Type"].as_str().unwrap_or_else(|| panic!("{name} has no Type"));
        let next = targets(state);
        for t in &next {
            assert!(states.contains_key(t), "{name} goes to {t}, which is not a state");
        }
        let terminal = matches!(ty, "Succeed" | "Fail") || state["End"] == Value::Bool(true);
        assert!(terminal || !next.is_empty(), "{name} neither ends nor goes anywhere");
        reached.extend(next);
    }
    let all: BTreeSet<String> = states.keys().cloned().collect();
    assert_eq!(reached, all, "states nothing goes to");
}

#[test]
fn every_substitution_is_provided_by_the_template_and_used() {
    let (sm, _) = definition();
    let raw = std::fs::read_to_string(workflow_template::root().join(&sm.definition_uri)).unwrap();
    let used: BTreeSet<String> = placeholders(&raw).into_iter().collect();
    let provided: BTreeSet<String> = sm.substitutions.iter().map(|(k, _)| k.clone()).collect();
    assert!(!used.is_empty(), "the definition names its step Lambda through a substitution");
    assert_eq!(used, provided, "placeholders in the ASL vs DefinitionSubstitutions in template.yaml");
    let values: BTreeMap<_, _> = sm.substitutions.iter().cloned().collect();
    assert_eq!(values["WorkflowStepFunctionArn"], "!GetAtt WorkflowStepFunction.Arn");
}

#[test]
fn the_step_task_retries_what_the_step_lambda_calls_retryable_and_fails_on_the_rest() {
    let (_, asl) = definition();
    let states = states(&asl);
    let (name, task) = states.iter().find(|(_, s)| s["Type"] == "Task").expect("a Task state");
    assert_eq!(task["Parameters"]["FunctionName"], "${WorkflowStepFunctionArn}");
    assert_eq!(task["Parameters"]["Payload.$"], "$", "the step Lambda gets the whole state");
    assert_eq!(task["OutputPath"], "$.Payload", "its answer replaces the state");
    let retried: Vec<&str> = task["Retry"]
        .as_array()
        .expect("Retry")
        .iter()
        .flat_map(|r| r["ErrorEquals"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()))
        .collect();
    for e in [RETRYABLE, "Lambda.ServiceException", "Lambda.TooManyRequestsException"] {
        assert!(retried.contains(&e), "{name} does not retry {e}");
    }
    assert!(!retried.contains(&STEP_FAILED) && !retried.contains(&"States.ALL"), "a failed step is never retried");
    let catch = &task["Catch"].as_array().expect("Catch")[0];
    assert_eq!(catch["ErrorEquals"][0], "States.ALL");
    assert_eq!(states[catch["Next"].as_str().unwrap()]["Type"], "Fail");
}

#[test]
fn a_step_costs_three_transitions_and_the_end_one_more() {
    // Follow the happy path from StartAt: through the Task's Next and the Choice's `more`
    // branch back to the start (one step), then its Default to the end.
    let (_, asl) = definition();
    let states = states(&asl);
    let start = asl["StartAt"].as_str().unwrap();
    assert_eq!(states[start]["Type"], "Wait");
    assert_eq!(states[start]["SecondsPath"], "$.wait");
    let mut path = vec![start.to_string()];
    let mut at = start;
    let end = loop {
        let s = &states[at];
        at = match s["Type"].as_str().unwrap() {
            "Choice" => {
                let c = &s["Choices"][0];
                assert_eq!((c["Variable"].as_str(), c["BooleanEquals"].as_bool()), (Some("$.more"), Some(true)));
                let back = c["Next"].as_str().unwrap();
                assert_eq!(back, start, "more steps go back to the Wait");
                break s["Default"].as_str().unwrap();
            }
            _ => s["Next"].as_str().unwrap(),
        };
        path.push(at.to_string());
    };
    assert_eq!(path.len(), 3, "states entered per step: {path:?}");
    assert_eq!(states[end]["Type"], "Succeed");
    // README: a 3-step workflow runs steps 2 and 3 here: 2 * 3 + 1 = 7 transitions.
    assert_eq!(path.len() + 1, 4, "at most 4 transitions per step: its 3 and the final Succeed");
}
