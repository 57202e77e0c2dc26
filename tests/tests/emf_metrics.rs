//! The functions' CloudWatch embedded-metric-format lines, captured: the OTP router wrapped as
//! `http::lambda::run` wraps it (request lines) over a metered dispatcher (dispatch lines), on
//! the embedded adapters. Each line must be EMF CloudWatch accepts: `_aws.CloudWatchMetrics`
//! naming the namespace, dimension sets and metrics, every dimension and metric a top-level
//! member with its value.

use std::sync::{Arc, Mutex};

use axum::{body::Body, http::Request};
use serde_json::{json, Value};
use tower::ServiceExt;
use twofa::{
    adapters::{
        emf::{MeteredDispatcher, Sink},
        outbox::OutboxMode,
    },
    domain::crypto::Keys,
    http::metrics::with_metrics,
    ports::Deps,
};
use twofa_local::{hex_token, Dev};

struct Harness {
    app: axum::Router,
    dev: Dev,
    lines: Arc<Mutex<Vec<String>>>,
    sid: String,
    token: String,
}

async fn given_a_metered_otp_router() -> Harness {
    let dev = Dev::new(Keys::random());
    let token = hex_token();
    let account = dev.create_account(None, &token, None).await.unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let captured = lines.clone();
    let sink: Sink = Arc::new(move |line: &str| captured.lock().unwrap().push(line.to_owned()));
    let deps = Deps {
        dispatcher: Arc::new(MeteredDispatcher::new(dev.deps.dispatcher.clone(), sink.clone(), "twofa-test")),
        ..dev.deps.clone()
    };
    let app = with_metrics(twofa::http::otp::router(deps), sink, "twofa-test");
    Harness { app, dev, lines, sid: account.sid, token }
}

impl Harness {
    async fn post(&self, path: &str, body: Value) -> Value {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.sid, self.token));
        let req = Request::post(path)
            .header("Authorization", format!("Basic {auth}"))
            .header("Content-Type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    async fn send(&self, to: &str, channel: &str) -> Value {
        let mut body =
            json!({ "service": "2FA", "from": "Twofa", "to": to, "body": "Code {code}", "channel": channel });
        if channel == "email" {
            body["from"] = json!("otp@example.com");
            body["subject"] = json!("Your code");
        }
        self.post("/2fa/send", body).await
    }

    /// The lines written so far, parsed, and forgotten.
    fn take(&self) -> Vec<Value> {
        let lines = std::mem::take(&mut *self.lines.lock().unwrap());
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON line ({e}): {l}")))
            .collect()
    }
}

/// Checks the EMF shape of `line` and answers (dimensions, metric values) by name.
fn emf(line: &Value) -> (Value, Value) {
    let aws = &line["_aws"];
    assert!(aws["Timestamp"].as_u64().is_some_and(|t| t > 1_700_000_000_000), "Timestamp in ms: {line}");
    let directives = aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics");
    assert_eq!(directives.len(), 1, "{line}");
    let d = &directives[0];
    assert_eq!(d["Namespace"], "twofa-test");
    let mut dims = serde_json::Map::new();
    for set in d["Dimensions"].as_array().expect("Dimensions") {
        for name in set.as_array().expect("a dimension set") {
            let name = name.as_str().unwrap();
            let value = line[name].as_str().unwrap_or_else(|| panic!("dimension {name} is a top-level string: {line}"));
            dims.insert(name.into(), value.into());
        }
    }
    let mut values = serde_json::Map::new();
    for m in d["Metrics"].as_array().expect("Metrics") {
        let name = m["Name"].as_str().expect("Name");
        assert!(["Count", "Milliseconds"].contains(&m["Unit"].as_str().unwrap()), "{m}");
        let v = line[name].as_f64().unwrap_or_else(|| panic!("metric {name} is a top-level number: {line}"));
        values.insert(name.into(), v.into());
    }
    (Value::Object(dims), Value::Object(values))
}

#[tokio::test]
async fn a_send_writes_a_dispatch_line_of_its_channel_and_a_request_line() {
    // Given the metered router
    let h = given_a_metered_otp_router().await;
    // When an SMS and an email OTP are sent
    let sms = h.send("+14155550100", "sms").await;
    assert_eq!(sms["code"], 200, "{sms}");
    let email = h.send("user@example.com", "email").await;
    assert_eq!(email["code"], 200, "{email}");
    // Then each wrote a dispatch line for its channel, then a request line
    let lines = h.take();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let (dims, values) = emf(&lines[0]);
    assert_eq!(dims, json!({ "Channel": "sms", "Outcome": "ok", "Route": "outbox" }));
    assert_eq!((values["Dispatches"].clone(), values["DispatchFailures"].clone()), (json!(1.0), json!(0.0)));
    assert!(values["DispatchLatency"].as_f64().unwrap() >= 0.0);
    let (dims, values) = emf(&lines[1]);
    assert_eq!(dims, json!({ "Operation": "send", "Code": "200" }));
    assert_eq!((values["Requests"].clone(), values["Failures"].clone()), (json!(1.0), json!(0.0)));
    assert!(values["Latency"].as_f64().unwrap() >= 0.0);
    assert_eq!(emf(&lines[2]).0, json!({ "Channel": "email", "Outcome": "ok", "Route": "outbox" }));
    // And no line carries the destination or the code
    let text = format!("{lines:?}");
    assert!(!text.contains("4155550100") && !text.contains("user@example.com"));
}

#[tokio::test]
async fn verifies_and_their_failures_are_counted_by_api_code() {
    // Given an OTP sent
    let h = given_a_metered_otp_router().await;
    let sid = h.send("+14155550101", "sms").await["requestID"].as_str().unwrap().to_owned();
    let body = h.dev.outbox.messages(Some("+14155550101"))[0].body.clone();
    let code: String = body.chars().filter(char::is_ascii_digit).collect();
    h.take();
    // When a wrong code and then the right one are given
    let wrong = if code.starts_with('0') { code.replacen('0', "1", 1) } else { format!("0{}", &code[1..]) };
    h.post("/2fa/verify.json", json!({ "requestId": sid, "code": wrong })).await;
    h.post("/2fa/verify", json!({ "requestId": sid, "code": code })).await;
    // Then two verify lines: a failure with its code 474, then a success
    let lines = h.take();
    let seen: Vec<(Value, Value)> = lines.iter().map(emf).collect();
    assert_eq!(seen[0].0, json!({ "Operation": "verify", "Code": "474" }));
    assert_eq!(seen[0].1["Failures"], json!(1.0));
    assert_eq!(seen[1].0, json!({ "Operation": "verify", "Code": "200" }));
    assert_eq!(seen[1].1["Failures"], json!(0.0));
}

#[tokio::test]
async fn provider_refusals_and_outages_are_dispatch_failures_with_their_outcome() {
    // Given a provider that refuses messages, then one that is down
    let h = given_a_metered_otp_router().await;
    h.dev.outbox.set_mode(OutboxMode::Reject);
    h.send("+14155550102", "sms").await;
    h.dev.outbox.set_mode(OutboxMode::Down);
    let down = h.send("+14155550103", "sms").await;
    // Then the dispatch lines say rejected and unavailable, and the outage's request a 503
    assert_eq!(down["code"], 503);
    let seen: Vec<(Value, Value)> = h.take().iter().map(emf).collect();
    let dispatches: Vec<&(Value, Value)> = seen.iter().filter(|(d, _)| d.get("Channel").is_some()).collect();
    assert_eq!(dispatches[0].0["Outcome"], "rejected");
    assert_eq!(dispatches[0].1["DispatchFailures"], json!(1.0));
    assert_eq!(dispatches.last().unwrap().0["Outcome"], "unavailable");
    let last = seen.last().unwrap();
    assert_eq!(last.0, json!({ "Operation": "send", "Code": "503" }));
    assert_eq!(last.1["Failures"], json!(1.0));
}
