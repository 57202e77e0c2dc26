//! `openapi.yaml` against the routers: every routed path is described and nothing else is
//! (paths from each router's `routes()`, the list its router is built from), every described
//! operation is served and every served method described (probed on the routers: a routed
//! method answers 401 without credentials, another one 405), and the error codes are
//! table of docs/api.md.

use std::collections::{BTreeMap, BTreeSet};

use axum::{body::Body, http::Request};
use serde_yaml::Value;
use tower::ServiceExt;
use twofa::{domain::crypto::Keys, http};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn spec() -> Value {
    let text = std::fs::read_to_string(root().join("openapi.yaml")).expect("openapi.yaml at the repository root");
    let mut spec: Value = serde_yaml::from_str(&text).expect("openapi.yaml is YAML");
    // The spec shares operations with YAML merge keys (`<<: *op`).
    spec.apply_merge().expect("merge keys");
    spec
}

/// Spec path → its methods, upper case.
fn spec_operations(spec: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let paths = spec["paths"].as_mapping().expect("paths");
    paths
        .iter()
        .map(|(path, item)| {
            let methods = METHODS.iter().filter(|m| item.get(m.to_ascii_lowercase()).is_some()).map(|m| m.to_string());
            (path.as_str().expect("a path").to_owned(), methods.collect())
        })
        .collect()
}

/// Every path the routers route.
fn router_paths() -> BTreeSet<String> {
    [
        http::otp::routes(),
        http::limits::routes(),
        http::workflows::routes(),
        http::records::routes(),
        http::factors::routes(),
    ]
    .iter()
    .flat_map(|r| r.paths().to_vec())
    .collect()
}

/// A spec path as the router that serves it names it: `…/{sid}.json` is served by `…/{sid}`
/// (the handler strips the suffix), so the spec's `.json`/`.xml` forms of a parameter map there.
fn routed_as(spec_path: &str) -> String {
    for suffix in [".json", ".xml"] {
        if let Some(base) = spec_path.strip_suffix(suffix).filter(|b| b.ends_with('}')) {
            return base.to_owned();
        }
    }
    spec_path.to_owned()
}

/// A request path for a spec path: parameters filled with values of their form.
fn concrete(spec_path: &str) -> String {
    spec_path
        .replace("/2fa/search/{sid}", &format!("/2fa/search/OTP{}", "0".repeat(32)))
        .replace("{sid}", &format!("LM{}", "0".repeat(32)))
        .replace("{subresource}", "daily")
        .replace("{provider}", "acme")
        .replace("{accountSid}", &format!("AC{}", "0".repeat(32)))
}

/// The merged routers, as the dev server serves them.
fn app() -> axum::Router {
    twofa_local::Dev::new(Keys::random()).app()
}

async fn status_without_credentials(app: &axum::Router, method: &str, path: &str) -> u16 {
    let req = Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
    app.clone().oneshot(req).await.unwrap().status().as_u16()
}

#[test]
fn every_routed_path_is_described_and_no_described_path_is_unrouted() {
    // Given the spec's paths and the routers' paths
    let described: BTreeSet<String> = spec_operations(&spec()).keys().map(|p| routed_as(p)).collect();
    let routed = router_paths();
    // Then they are the same set
    let missing: Vec<_> = routed.difference(&described).collect();
    let extra: Vec<_> = described.difference(&routed).collect();
    assert!(missing.is_empty(), "routed but not in openapi.yaml: {missing:?}");
    assert!(extra.is_empty(), "in openapi.yaml but not routed: {extra:?}");
    assert!(routed.len() >= 25, "the routers' path lists look truncated: {routed:?}");
}

#[test]
fn every_parameterised_path_is_described_with_its_json_and_xml_forms() {
    let described = spec_operations(&spec());
    for path in router_paths().iter().filter(|p| p.ends_with('}')) {
        for suffix in ["", ".json", ".xml"] {
            let form = format!("{path}{suffix}");
            assert_eq!(described.get(&form), described.get(path.as_str()), "{form}: same operations as {path}");
        }
    }
}

#[tokio::test]
async fn every_described_operation_is_served_and_every_served_method_is_described() {
    // Given the routers and the spec
    let app = app();
    let mut wrong = vec![];
    for (path, methods) in spec_operations(&spec()) {
        let target = concrete(&path);
        for method in METHODS {
            // When each method is asked for without credentials
            let status = status_without_credentials(&app, method, &target).await;
            // Then a described one reaches its handler (401), any other is refused (405)
            let want = if methods.contains(method) { 401 } else { 405 };
            if status != want {
                wrong.push(format!("{method} {target}: {status}, want {want}"));
            }
        }
    }
    assert!(wrong.is_empty(), "spec and routers disagree:\n{}", wrong.join("\n"));
}

#[test]
fn the_error_codes_are_the_api_references_table() {
    // Given the error table of docs/api.md (the API reference, in the repository)
    let api_md = std::fs::read_to_string(root().join("docs/api.md")).expect("docs/api.md (the API reference)");
    let table: BTreeSet<u64> = api_md
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            // `| code | HTTP | message | when |`
            (cells.len() >= 5 && cells[1].len() == 3 && cells[2].len() == 3)
                .then(|| cells[1].parse().ok().filter(|_| cells[2].parse::<u16>().is_ok()))
                .flatten()
        })
        .collect();
    assert!(table.len() >= 20, "docs/api.md's table not found: {table:?}");
    // Then the spec's error codes are exactly those
    let spec = spec();
    let codes: BTreeSet<u64> = spec["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
        .as_sequence()
        .expect("Error.code enum")
        .iter()
        .map(|c| c.as_u64().expect("a number"))
        .collect();
    assert_eq!(codes, table);
    // And each is in the code table of the description, with the reference's HTTP status
    let description = spec["components"]["schemas"]["Error"]["properties"]["code"]["description"].as_str().unwrap();
    for line in api_md.lines().filter(|l| table.iter().any(|c| l.starts_with(&format!("| {c} |")))) {
        let http_status = line.split('|').nth(2).unwrap().trim();
        let code = line.split('|').nth(1).unwrap().trim();
        assert!(description.contains(&format!("| {code} | {http_status} |")), "{code} ({http_status}) in the table");
    }
}

#[test]
fn every_operation_documents_the_authentication_failure() {
    let spec = spec();
    for (path, item) in spec["paths"].as_mapping().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method.to_ascii_lowercase()) {
                assert!(op["responses"].get("401").is_some(), "{method} {path:?} has no 401");
                assert!(op["responses"].get("200").is_some(), "{method} {path:?} has no 200");
            }
        }
    }
}
