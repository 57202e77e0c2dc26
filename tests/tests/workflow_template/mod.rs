//! The workflow state machine as template.yaml deploys it: the `DefinitionUri` file of the
//! `WorkflowStateMachine` resource, and its `DefinitionSubstitutions`. A light line-based read
//! of the template (YAML parsers choke on CloudFormation's `!Ref`/`!GetAtt` tags, and this
//! block is plain `key: value` lines).

// Shared by workflow_asl and workflow_sfn, each using a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub struct StateMachine {
    /// The ASL file, relative to the repository root (`DefinitionUri`).
    pub definition_uri: String,
    /// `DefinitionSubstitutions`: name and the raw YAML value (`!GetAtt WorkflowStepFunction.Arn`).
    pub substitutions: Vec<(String, String)>,
    /// `Type` under `Properties` (`STANDARD` / `EXPRESS`).
    pub kind: Option<String>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The resource `logical_id` under `Resources:`.
pub fn state_machine(logical_id: &str) -> StateMachine {
    let text = std::fs::read_to_string(root().join("template.yaml")).expect("read template.yaml");
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| indent(l) == 2 && l.trim() == format!("{logical_id}:"))
        .unwrap_or_else(|| panic!("template.yaml has no resource {logical_id}"));
    // The resource's lines: until the next line at its indent or less (blank lines aside).
    let body: Vec<&str> =
        lines[start + 1..].iter().take_while(|l| l.trim().is_empty() || indent(l) > 2).copied().collect();
    let field =
        |name: &str| body.iter().find_map(|l| l.trim().strip_prefix(&format!("{name}:")).map(|v| v.trim().to_string()));
    assert_eq!(
        field("Type").as_deref(),
        Some("AWS::Serverless::StateMachine"),
        "{logical_id} is not a SAM state machine"
    );
    let definition_uri = field("DefinitionUri").expect("DefinitionUri");
    let kind = body
        .iter()
        .find(|l| indent(l) == 6 && l.trim().starts_with("Type:"))
        .map(|l| l.trim()["Type:".len()..].trim().to_string());
    let mut substitutions = Vec::new();
    if let Some(at) = body.iter().position(|l| l.trim() == "DefinitionSubstitutions:") {
        let base = indent(body[at]);
        for l in body[at + 1..].iter().take_while(|l| l.trim().is_empty() || indent(l) > base) {
            if let Some((k, v)) = l.trim().split_once(':') {
                substitutions.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    StateMachine { definition_uri, substitutions, kind }
}

/// Every `${name}` in `text`, in order of appearance.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let end = after.find('}').expect("unclosed ${ in the definition");
        out.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    out
}

/// The definition with `values` put in for its placeholders, as CloudFormation does.
pub fn definition_with(sm: &StateMachine, values: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(root().join(&sm.definition_uri)).expect("read the DefinitionUri file");
    for (name, value) in values {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    text
}
