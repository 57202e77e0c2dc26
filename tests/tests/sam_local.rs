//! Black-box tests of the deployed shape: the API served by `sam local start-api` from
//! template.yaml (API Gateway HTTP API events as SAM builds them, each function in its Lambda
//! container), DynamoDB, SNS, SES and Secrets Manager from moto. Codes are read the way an
//! operator would: from what SNS/SES "delivered" (moto's `/moto-api/data.json`).
//!
//! SMS go out on two routes there: `sns` (moto) and `end-user-messaging` (the SMS Voice v2
//! stand-in beside moto, `infra/scripts/moto_serial_server.py`); accounts of their own, made
//! with twofa-admin as an operator would, pick them with their routing tables.
//!
//! Run by `make test-sam`, which starts the stack (`make local-aws`), runs these with
//! `--ignored` and stops everything. Ignored in `make test` (no Docker there); run by hand
//! without the stack's environment they fail, they never pass empty.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

struct Sam {
    base: String,
    moto: String,
    sid: String,
    token: String,
    http: reqwest::Client,
}

struct Resp {
    status: StatusCode,
    text: String,
    content_type: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }
    fn code(&self) -> i64 {
        self.json()["code"].as_i64().unwrap_or_else(|| panic!("no code in {}", self.text))
    }
    fn request_id(&self) -> String {
        assert_eq!(self.status, 200, "{}", self.text);
        self.json()["requestID"].as_str().unwrap_or_else(|| panic!("no requestID in {}", self.text)).to_owned()
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: these tests run against `make local-aws` (run them with `make test-sam`)")
    })
}

fn random_digits(n: usize) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut x = seed ^ (std::process::id() as u64).rotate_left(32);
    (0..n)
        .map(|_| {
            // xorshift: distinct numbers per call, no new dependency
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'0' + (x % 10) as u8)
        })
        .collect()
}

/// A number that can exist (+1 415 5xx xxxx) and that no other test sends to.
fn new_number() -> String {
    format!("+14155{}", random_digits(6))
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

impl Sam {
    fn new() -> Self {
        Sam {
            base: env("TWOFA_SAM_URL"),
            moto: env("TWOFA_MOTO_URL"),
            sid: env("TWOFA_ACCOUNT_SID"),
            token: env("TWOFA_AUTH_TOKEN"),
            // A cold container (first call of a function) takes a few seconds under sam local.
            http: reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)).build().unwrap(),
        }
    }

    async fn call_as(
        &self,
        auth: Option<(&str, &str)>,
        method: Method,
        path: &str,
        body: Option<(&str, &str)>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some((sid, token)) = auth {
            req = req.basic_auth(sid, Some(token));
        }
        if let Some((content_type, body)) = body {
            req = req.header("Content-Type", content_type).body(body.to_owned());
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status();
        let content_type =
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        Resp { status, text: resp.text().await.unwrap(), content_type }
    }

    async fn call(&self, method: Method, path: &str, body: Option<(&str, &str)>) -> Resp {
        self.call_as(Some((&self.sid, &self.token)), method, path, body).await
    }

    async fn post(&self, path: &str, body: &Value) -> Resp {
        self.call(Method::POST, path, Some(("application/json", &body.to_string()))).await
    }

    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }

    async fn send_sms(&self, to: &str, extra: Value) -> Resp {
        let mut body =
            json!({ "service": "2FA", "from": "Twofa", "to": to, "body": "Your verification code is: {code}" });
        body.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
        self.post("/2fa/send", &body).await
    }

    async fn moto_data(&self) -> Value {
        let url = format!("{}/moto-api/data.json", self.moto);
        self.http.get(&url).send().await.unwrap().json().await.unwrap()
    }

    /// The code of the newest SMS moto's SNS carried to `to`.
    async fn sms_code(&self, to: &str) -> String {
        let data = self.moto_data().await;
        let sms = data["sns"]["SMS"].as_array().expect("moto's sns.SMS list");
        let msg = sms.iter().rev().find(|m| m["phone_number"] == to).unwrap_or_else(|| panic!("no SMS to {to}"));
        digits(msg["message"].as_str().unwrap())
    }

    async fn sms_count(&self, to: &str) -> usize {
        let data = self.moto_data().await;
        data["sns"]["SMS"].as_array().map_or(0, |l| l.iter().filter(|m| m["phone_number"] == to).count())
    }

    /// The count of the one usage record `query` answers.
    async fn usage_count(&self, query: &str) -> u64 {
        let r = self.get(&format!("/2fa/usage/records{query}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let records = r.json()["usageRecords"].as_array().expect("usageRecords").clone();
        assert_eq!(records.len(), 1, "{records:?}");
        records[0]["count"].as_str().expect("count").parse().expect("count digits")
    }
}

#[tokio::test]
#[ignore = "needs the local stack: make test-sam"]
async fn sms_send_verify_through_sam_lambda_and_moto() {
    let sam = Sam::new();
    let to = new_number();
    // When an SMS OTP is sent through API Gateway to the otp function
    let r = sam.send_sms(&to, json!({})).await;
    let sid = r.request_id();
    assert!(sid.starts_with("OTP") && sid.len() == 35, "{sid}");
    assert_eq!(r.json(), json!({ "code": 200, "message": "OK", "requestID": sid }));
    // Then SNS carried the code to the number
    let code = sam.sms_code(&to).await;
    assert_eq!(code.len(), 6, "{code}");
    // And a wrong code is refused, the right one verifies once
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = sam.post("/2fa/verify", &json!({ "requestId": sid, "code": wrong })).await;
    assert_eq!(r.status.as_u16() / 100, 4, "{}", r.text);
    let r = sam.post("/2fa/verify", &json!({ "requestId": sid, "code": code })).await;
    assert_eq!((r.status.as_u16(), r.json()), (200, json!({ "code": 200, "message": "OK", "requestID": sid })));
    let r = sam.post("/2fa/verify", &json!({ "requestId": sid, "code": code })).await;
    assert_eq!((r.status.as_u16(), r.code()), (409, 471), "{}", r.text);
    // And the default limit (one send a number a minute) holds: nothing more is sent
    let r = sam.send_sms(&to, json!({})).await;
    assert_eq!((r.status.as_u16(), r.code()), (404, 453), "{}", r.text);
    assert_eq!(sam.sms_count(&to).await, 1);
}

#[tokio::test]
#[ignore = "needs the local stack: make test-sam"]
async fn json_and_xml_suffixes_and_form_bodies_reach_the_function() {
    let sam = Sam::new();
    let to = new_number();
    // A form body on the .json route, as the seeds' curl lines send it
    let form = format!("service=2FA&from=Twofa&to={}&body=Code%20%7Bcode%7D", to.replace('+', "%2B"));
    let r = sam.call(Method::POST, "/2fa/send.json", Some(("application/x-www-form-urlencoded", &form))).await;
    let sid = r.request_id();
    // Cancel on the .xml route answers XML
    let r = sam
        .call(Method::POST, "/2fa/cancel.xml", Some(("application/x-www-form-urlencoded", &format!("requestId={sid}"))))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.content_type, "application/xml");
    assert_eq!(
        r.text,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><TwoFactorResponse><code>200</code><message>canceled</message><requestID>{sid}</requestID></TwoFactorResponse>"#
        )
    );
    // And the canceled OTP no longer verifies
    let code = sam.sms_code(&to).await;
    let r = sam.post("/2fa/verify.json", &json!({ "requestId": sid, "code": code })).await;
    assert_eq!(r.status.as_u16() / 100, 4, "{}", r.text);
}

#[tokio::test]
#[ignore = "needs the local stack: make test-sam"]
async fn email_otp_through_ses_then_cancel() {
    let sam = Sam::new();
    let to = format!("u{}@example.com", random_digits(10));
    let before = sam.usage_count("?channel=email").await;
    let body = json!({ "service": "2FA", "channel": "email", "from": "otp@example.com", "to": to,
        "subject": "Your code", "body": "Code {code}" });
    let sid = sam.post("/2fa/send", &body).await.request_id();
    let data = sam.moto_data().await;
    let mail = data["ses"]["Message"]
        .as_array()
        .expect("moto's ses.Message list")
        .iter()
        .rev()
        .find(|m| m["destinations"]["ToAddresses"][0] == to.as_str())
        .cloned()
        .expect("an email to the address");
    assert_eq!(mail["subject"], "Your code");
    let r = sam.post("/2fa/cancel", &json!({ "requestId": sid })).await;
    assert_eq!((r.status.as_u16(), r.json()), (200, json!({ "code": 200, "message": "canceled", "requestID": sid })));
    // And the records function counts it
    assert_eq!(sam.usage_count("?channel=email").await, before + 1);
}

#[tokio::test]
#[ignore = "needs the local stack: make test-sam"]
async fn limits_crud_and_a_full_bucket_on_send() {
    let sam = Sam::new();
    let name = format!("per_phone_{}", random_digits(8));
    // Create (limits function), list, fetch
    let r =
        sam.post("/2fa/limits", &json!({ "name": name, "buckets": [{ "name": "b", "max": 1, "interval": 60 }] })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let limit = r.json()["data"].clone();
    let limit_sid = limit["sid"].as_str().expect("sid").to_owned();
    assert_eq!(limit["name"], name.as_str());
    let r = sam.get(&format!("/2fa/limits/{limit_sid}")).await;
    assert_eq!((r.status.as_u16(), r.json()["data"]["name"].clone()), (200, json!(name)), "{}", r.text);
    let r = sam.get("/2fa/limits/search?pageSize=100").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.json()["data"]["result"].as_array().unwrap().iter().any(|l| l["sid"] == limit_sid.as_str()),
        "{}",
        r.text
    );
    // A send naming it takes its one place; the next is refused (otp function)
    let key = new_number();
    let limits = Value::Object([(name.clone(), json!(key))].into_iter().collect());
    assert_eq!(sam.send_sms(&new_number(), json!({ "limits": limits })).await.status, 200);
    let r = sam.send_sms(&new_number(), json!({ "limits": limits })).await;
    assert_eq!(
        (r.status.as_u16(), r.text.clone()),
        (404, format!(r#"{{"code":454,"message":"Too many OTP requests: limit {name} exceeded","requestID":null}}"#))
    );
    // Update, then delete: a deleted limit is unknown
    let r = sam
        .call(
            Method::PUT,
            &format!("/2fa/limits/{limit_sid}"),
            Some(("application/json", &json!({ "description": "updated" }).to_string())),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.json()["data"]["description"].clone()), (200, json!("updated")), "{}", r.text);
    let r = sam.call(Method::DELETE, &format!("/2fa/limits/{limit_sid}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = sam.get(&format!("/2fa/limits/{limit_sid}")).await;
    assert_eq!(r.code(), 493, "{}", r.text);
}

#[tokio::test]
#[ignore = "needs the local stack: make test-sam"]
async fn records_show_the_session_and_its_checks() {
    let sam = Sam::new();
    let to = new_number();
    let sid = sam.send_sms(&to, json!({})).await.request_id();
    let code = sam.sms_code(&to).await;
    assert_eq!(sam.post("/2fa/verify", &json!({ "requestId": sid, "code": code })).await.status, 200);
    // One record (records function), by sid and by its .json form
    for path in [format!("/2fa/search/{sid}"), format!("/2fa/search/{sid}.json")] {
        let r = sam.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let sdr = r.json();
        assert_eq!(
            (&sdr["sid"], &sdr["status"], &sdr["accountSid"]),
            (&json!(sid), &json!("success"), &json!(sam.sid))
        );
        assert_eq!(sdr["checks"][0]["status"], "valid");
        assert_eq!(sdr["country"], "US");
        let event = &sdr["events"][0];
        assert_eq!(
            (&event["channel"], &event["channelStatus"], &event["recipient"]),
            (&json!("sms"), &json!("sent"), &json!(to)),
            "{sdr}"
        );
    }
    // The search lists it
    let r = sam.get("/2fa/search?status=success&pageSize=100").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["twoFaOtpSdrs"].as_array().unwrap().iter().any(|s| s["sid"] == sid.as_str()), "{}", r.text);
    // Usage by period, in XML too
    let r = sam.get("/2fa/usage/records/today.xml").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.content_type.contains("xml"), "{}", r.content_type);
}

#[tokio::test]
#[ignore = "needs the local stack: make test-sam"]
async fn auth_and_errors_as_a_client_sees_them() {
    let sam = Sam::new();
    // No credentials, wrong token: 401 from every function
    for (method, path) in [(Method::POST, "/2fa/send"), (Method::GET, "/2fa/limits"), (Method::GET, "/2fa/search")] {
        let r = sam.call_as(None, method.clone(), path, None).await;
        assert_eq!(r.status, 401, "{path}: {}", r.text);
        let r = sam.call_as(Some((&sam.sid, "wrong")), method, path, None).await;
        assert_eq!(r.status, 401, "{path}: {}", r.text);
    }
    // A bad number is a 400 naming `to`, before anything is sent
    let r = sam.send_sms("+15551234567", json!({})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.json()["message"].as_str().unwrap().contains("to"), "{}", r.text);
    // An unknown OTP is unknown
    let r = sam.post("/2fa/verify", &json!({ "requestId": format!("OTP{}", "0".repeat(32)), "code": "123456" })).await;
    assert_eq!(r.status.as_u16() / 100, 4, "{}", r.text);
}

impl Sam {
    async fn workflow(&self, channels: Value) -> String {
        let name = format!("wf_{}", random_digits(8));
        let r = self.post("/2fa/workflows", &json!({ "name": name, "channels": channels })).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["data"]["sid"].as_str().expect("sid").to_owned()
    }

    /// The emails moto's SES carried to `to`, oldest first.
    async fn emails_to(&self, to: &str) -> Vec<Value> {
        let data = self.moto_data().await;
        data["ses"]["Message"]
            .as_array()
            .map_or(vec![], |l| l.iter().filter(|m| m["destinations"]["ToAddresses"][0] == to).cloned().collect())
    }

    /// What the Lambda router handed to the step Lambda for `otp_sid`: (function, answer).
    async fn step_invocations(&self, otp_sid: &str) -> Vec<(String, Value)> {
        let url = format!("{}/_router/invocations", env("TWOFA_LAMBDA_ROUTER_URL"));
        let all: Vec<Value> = self.http.get(&url).send().await.unwrap().json().await.unwrap();
        all.into_iter()
            .filter(|r| r["payload"].as_str().is_some_and(|p| p.contains(otp_sid)))
            .map(|r| {
                let answer = serde_json::from_str(r["answer"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
                (r["function"].as_str().unwrap_or_default().to_owned(), answer)
            })
            .collect()
    }
}

#[tokio::test]
#[ignore = "needs the local stack: make test-sam"]
async fn a_workflow_falls_back_from_sms_to_email_through_step_functions_and_the_step_lambda() {
    let sam = Sam::new();
    // Given a workflow: an SMS at once, an email 3 s later (workflows function)
    let wf = sam.workflow(json!([{ "channel": "sms", "interval": 0 }, { "channel": "email", "interval": 3 }])).await;
    let (to, email) = (new_number(), format!("u{}@example.com", random_digits(10)));
    // When an OTP is sent with it and nobody verifies
    let extra = json!({ "workflow": wf, "email": email, "emailFrom": "otp@example.com", "subject": "Your code" });
    let sid = sam.send_sms(&to, extra).await.request_id();
    let code = sam.sms_code(&to).await;
    assert!(sam.emails_to(&email).await.is_empty(), "the email step waits its interval");
    // Then moto's state machine waits, invokes the step Lambda in its container, and the email
    // carries the same code
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mail = loop {
        if let Some(m) = sam.emails_to(&email).await.pop() {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "no email step within 90 s");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    };
    assert_eq!(mail["subject"], "Your code");
    assert!(mail["body"].as_str().unwrap_or_default().contains(&code), "{mail}");
    // (the email can reach moto before the router has noted the step's invocation, and
    // before the step has recorded its event: both are awaited, to the same deadline)
    let steps = loop {
        let steps = sam.step_invocations(&sid).await;
        if !steps.is_empty() || std::time::Instant::now() >= deadline {
            break steps;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0].0, "WorkflowStepFunction");
    assert_eq!(steps[0].1["more"], false, "{steps:?}");
    // And the record shows both dispatches, and the code still verifies
    let sdr = loop {
        let sdr = sam.get(&format!("/2fa/search/{sid}")).await.json();
        if sdr["events"].as_array().is_some_and(|e| e.len() >= 2) || std::time::Instant::now() >= deadline {
            break sdr;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    let channels: Vec<_> = sdr["events"].as_array().unwrap().iter().map(|e| e["channel"].clone()).collect();
    assert_eq!(channels, [json!("sms"), json!("email")], "{sdr}");
    let r = sam.post("/2fa/verify", &json!({ "requestId": sid, "code": code })).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
#[ignore = "needs the local stack: make test-sam"]
async fn verifying_after_the_first_step_stops_the_workflow() {
    let sam = Sam::new();
    // Given a workflow of two SMS, 3 s apart, and an OTP sent with it
    let wf = sam.workflow(json!([{ "channel": "sms", "interval": 0 }, { "channel": "sms", "interval": 3 }])).await;
    let to = new_number();
    let sid = sam.send_sms(&to, json!({ "workflow": wf })).await.request_id();
    // When the first code is verified before the second step is due
    let code = sam.sms_code(&to).await;
    let r = sam.post("/2fa/verify", &json!({ "requestId": sid, "code": code })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Then, well past the step's time, nothing more was sent
    tokio::time::sleep(std::time::Duration::from_secs(15)).await;
    assert_eq!(sam.sms_count(&to).await, 1);
    let sdr = sam.get(&format!("/2fa/search/{sid}")).await.json();
    assert_eq!(sdr["events"].as_array().unwrap().len(), 1, "{sdr}");
}

impl Sam {
    /// The WhatsApp messages the Social stand-in beside moto (moto_serial_server.py) was asked
    /// to send to `to` (Meta's `to`: the number without `+`).
    async fn whatsapp_to(&self, to: &str) -> Vec<Value> {
        let url = format!("{}/_twofa/social/messages", self.moto);
        let all: Value = self.http.get(&url).send().await.unwrap().json().await.unwrap();
        let to = to.trim_start_matches('+');
        all["Messages"].as_array().map_or(vec![], |l| {
            l.iter()
                .filter(|m| m["Message"]["to"].as_str().map(|t| t.trim_start_matches('+')) == Some(to))
                .cloned()
                .collect()
        })
    }
}

#[tokio::test]
#[ignore = "needs the local stack: make test-sam"]
async fn a_whatsapp_then_sms_workflow_sends_the_sms_only_when_whatsapp_was_not_verified() {
    let sam = Sam::new();
    // Given a workflow: WhatsApp at once, an SMS 3 s later
    let wf = sam.workflow(json!([{ "channel": "whatsapp", "interval": 0 }, { "channel": "sms", "interval": 3 }])).await;
    let to = new_number();
    // When an OTP is sent with it and nobody verifies
    let sid = sam.send_sms(&to, json!({ "workflow": wf })).await.request_id();
    // Then the WhatsApp step went through End User Messaging Social (its stand-in) at once
    let sent = sam.whatsapp_to(&to).await;
    assert_eq!(sent.len(), 1, "one WhatsApp message: {sent:?}");
    // And the SMS step follows through Step Functions and the step Lambda, with the same code
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while sam.sms_count(&to).await == 0 {
        assert!(std::time::Instant::now() < deadline, "no SMS step within 90 s");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let code = sam.sms_code(&to).await;
    assert!(sent[0]["Message"].to_string().contains(&code), "the WhatsApp message carried {code}: {}", sent[0]);
    let sdr = sam.get(&format!("/2fa/search/{sid}")).await.json();
    let channels: Vec<_> = sdr["events"].as_array().unwrap().iter().map(|e| e["channel"].clone()).collect();
    assert_eq!(channels, [json!("whatsapp"), json!("sms")], "{sdr}");
    let r = sam.post("/2fa/verify", &json!({ "requestId": sid, "code": code })).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Given a second OTP with the same workflow, to another number
    let to = new_number();
    let sid = sam.send_sms(&to, json!({ "workflow": wf })).await.request_id();
    // When its WhatsApp code is verified before the SMS step is due
    let sent = sam.whatsapp_to(&to).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let text = sent[0]["Message"].to_string();
    let r = sam.post("/2fa/verify", &json!({ "requestId": sid, "code": whatsapp_code(&text) })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Then, well past the step's time, no SMS was sent
    tokio::time::sleep(std::time::Duration::from_secs(15)).await;
    assert_eq!(sam.sms_count(&to).await, 0);
}

/// The code in a WhatsApp authentication template message (its body parameter's text).
fn whatsapp_code(message: &str) -> String {
    let v: Value = serde_json::from_str(message).unwrap();
    let components = v["template"]["components"].as_array().expect("template components");
    let body = components.iter().find(|c| c["type"] == "body").expect("a body component");
    body["parameters"][0]["text"].as_str().expect("the code").to_owned()
}

impl Sam {
    /// A new account on the stack (`twofa-admin account create`, then `account policy` with
    /// `policy`), as an operator makes one: run from the workspace's build beside this test,
    /// with the table and secret of `.run/local-aws.env`. Its policy is set before its first
    /// request, so no function holds an older copy of it.
    fn new_account(&self, policy: &Value) -> Sam {
        let admin = |args: &[&str]| -> String {
            // This test's binary is target/…/debug/deps/sam_local-…; the admin command is in
            // target/…/debug.
            let exe = std::env::current_exe().expect("the test's path");
            let bin = exe.parent().and_then(|deps| deps.parent()).expect("the build directory").join("twofa-admin");
            let out = std::process::Command::new(&bin)
                .args(args)
                .env("TWOFA_TABLE", env("TWOFA_TABLE"))
                .env("TWOFA_SECRET_ARN", env("TWOFA_SECRET_ARN"))
                .env("AWS_ENDPOINT_URL", &self.moto)
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_REGION", "us-east-1")
                .env("TWOFA_AWS_ATTEMPT_TIMEOUT_MS", "10000")
                .env("TWOFA_AWS_OPERATION_TIMEOUT_MS", "30000")
                .output()
                .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "twofa-admin {args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
            stdout
        };
        let created = admin(&["account", "create", "--email", "routes@example.com", "--any-sender"]);
        let field = |name: &str| {
            created
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {created}"))
                .to_owned()
        };
        let (sid, token) = (field("ACCOUNT_SID="), field("AUTH_TOKEN="));
        admin(&["account", "policy", &sid, "--json", &policy.to_string()]);
        Sam { base: self.base.clone(), moto: self.moto.clone(), sid, token, http: self.http.clone() }
    }

    async fn sms_voice(&self, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/_twofa/sms-voice/{path}", self.moto);
        let req = match body {
            Some(b) => self.http.post(&url).json(&b),
            None => self.http.get(&url),
        };
        let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(resp.status(), 200, "{url}");
        resp.json().await.unwrap()
    }

    /// The calls the SMS Voice v2 stand-in beside moto placed to `to`, oldest first.
    async fn calls_to(&self, to: &str) -> Vec<Value> {
        let all = self.sms_voice("messages", None).await;
        all["Messages"].as_array().map_or(vec![], |l| {
            l.iter()
                .filter(|m| m["Operation"] == "SendVoiceMessage" && m["Request"]["DestinationPhoneNumber"] == to)
                .cloned()
                .collect()
        })
    }

    /// The texts the End User Messaging SMS stand-in beside moto sent to `to`, oldest first.
    async fn texts_to(&self, to: &str) -> Vec<Value> {
        let all = self.sms_voice("messages", None).await;
        all["Messages"].as_array().map_or(vec![], |l| {
            l.iter()
                .filter(|m| m["Operation"] == "SendTextMessage" && m["Request"]["DestinationPhoneNumber"] == to)
                .cloned()
                .collect()
        })
    }

    /// The SMS the account was billed for today (0 before its first).
    async fn sms_usage(&self) -> u64 {
        let r = self.get("/2fa/usage/records/today?channel=sms").await;
        assert_eq!(r.status, 200, "{}", r.text);
        let records = r.json()["usageRecords"].as_array().expect("usageRecords").clone();
        records.iter().map(|r| r["count"].as_str().and_then(|c| c.parse::<u64>().ok()).expect("a count")).sum()
    }

    /// The session's events as (channel, status, route), after the code verified.
    async fn verified_events(&self, sid: &str, code: &str) -> Vec<(String, String, String)> {
        let r = self.post("/2fa/verify", &json!({ "requestId": sid, "code": code })).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let sdr = self.get(&format!("/2fa/search/{sid}")).await.json();
        assert_eq!(sdr["status"], "success", "{sdr}");
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        sdr["events"]
            .as_array()
            .unwrap_or_else(|| panic!("no events: {sdr}"))
            .iter()
            .map(|e| (text(&e["channel"]), text(&e["channelStatus"]), text(&e["route"])))
            .collect()
    }
}

fn sent(route: &str) -> Vec<(String, String, String)> {
    vec![("sms".to_owned(), "sent".to_owned(), route.to_owned())]
}

#[tokio::test]
#[ignore = "needs the local stack: make test-sam"]
async fn one_message_on_each_sms_route_and_a_route_down_fails_over() {
    let stack = Sam::new();
    // Given an account whose table sends SMS through SNS first, and one whose table sends them
    // through End User Messaging first (the stack has both routes; its default is sns)
    let sns_first = stack.new_account(&json!({ "routes": { "sms": { "*": ["sns", "end-user-messaging"] } } }));
    let eum_first = stack.new_account(&json!({ "routes": { "sms": { "*": ["end-user-messaging", "sns"] } } }));

    // When the first sends an SMS
    let to = new_number();
    let sid = sns_first.send_sms(&to, json!({})).await.request_id();
    // Then SNS carried it, End User Messaging did not, and its code verifies; its event names sns
    let code = stack.sms_code(&to).await;
    assert!(stack.texts_to(&to).await.is_empty());
    assert_eq!(sns_first.verified_events(&sid, &code).await, sent("sns"));

    // When the second sends an SMS
    let to = new_number();
    let sid = eum_first.send_sms(&to, json!({})).await.request_id();
    // Then End User Messaging SMS carried it, from the stack's origination identity, and SNS did not
    let texts = stack.texts_to(&to).await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    let request = &texts[0]["Request"];
    assert!(request["OriginationIdentity"].as_str().is_some_and(|o| o.starts_with("pool-")), "{request}");
    assert_eq!(stack.sms_count(&to).await, 0);
    // And its code verifies; its event names end-user-messaging
    let code = digits(request["MessageBody"].as_str().expect("MessageBody"));
    assert_eq!(code.len(), 6, "{request}");
    assert_eq!(eum_first.verified_events(&sid, &code).await, sent("end-user-messaging"));

    // Given End User Messaging throttling every attempt at a number (the SDK makes 3 per send)
    let to = new_number();
    stack.sms_voice("fail", Some(json!({ "Error": "ThrottlingException", "Times": 5, "Destination": to }))).await;
    let usage = eum_first.sms_usage().await;
    // When the second account sends to it
    let r = eum_first.send_sms(&to, json!({})).await;
    // Then the send succeeds through the next route of its table, SNS, once
    let sid = r.request_id();
    assert_eq!(stack.sms_count(&to).await, 1);
    assert!(stack.texts_to(&to).await.is_empty());
    // And the session has one event, on sns, whose code verifies, and one SMS is counted
    let code = stack.sms_code(&to).await;
    assert_eq!(eum_first.verified_events(&sid, &code).await, sent("sns"));
    assert_eq!(eum_first.sms_usage().await, usage + 1);
}

#[tokio::test]
#[ignore = "needs the local stack: make test-sam"]
async fn a_call_is_placed_through_the_stand_in_and_the_code_it_reads_verifies() {
    // Given the local stack, whose calls go to End User Messaging (the stand-in beside moto)
    let sam = Sam::new();
    let to = new_number();
    // When an OTP is sent by voice call
    let body = json!({ "service": "2FA", "channel": "call", "from": "Twofa", "to": to, "body": "Your code is {code}" });
    let r = sam.post("/2fa/send", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sid = r.request_id();
    // Then one call was placed, from the stack's caller number, reading SSML
    let calls = sam.calls_to(&to).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let request = &calls[0]["Request"];
    assert_eq!(
        (request["OriginationIdentity"].as_str(), request["MessageBodyTextType"].as_str()),
        (Some("+18005550199"), Some("SSML"))
    );
    // And the digits it reads, one by one, are the code: it verifies, and the event names the route
    let ssml = request["MessageBody"].as_str().unwrap();
    let code: String = ssml
        .split("<say-as interpret-as=\"digits\">")
        .skip(1)
        .filter_map(|s| s.chars().next().filter(char::is_ascii_digit))
        .take(6)
        .collect();
    assert_eq!(code.len(), 6, "{ssml}");
    let events = sam.verified_events(&sid, &code).await;
    assert_eq!(events, [("call".to_owned(), "sent".to_owned(), "end-user-messaging".to_owned())]);
}

#[tokio::test]
#[ignore = "needs the local stack: make test-sam"]
async fn a_factor_is_confirmed_challenged_verified_once_and_deleted_through_its_function() {
    use twofa::{
        domain::{factor::TotpParams, totp},
        ports::{Clock, SystemClock},
    };
    // The app's code `steps` time steps from now (the next step's is within the window, so
    // nothing waits for a step to end).
    let app_code = |seed: &[u8], steps: i64| {
        let params = TotpParams::default();
        totp::code(seed, &params, totp::step_at(&params, SystemClock.now_ms()) + steps)
    };
    let sam = Sam::new();
    let path = format!("/2fa/entities/sam-{}/factors", random_digits(8));
    // When a factor is created through API Gateway to the factors function
    let r = sam.post(&path, &json!({ "friendlyName": "Phone" })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.json()["data"].clone();
    let factor = data["sid"].as_str().unwrap().to_owned();
    let seed = common::base32_decode(data["secret"].as_str().unwrap());
    assert_eq!(data["status"], "unverified", "{data}");
    // And it is confirmed with the app's code, on the .json route
    let r = sam.post(&format!("{path}/{factor}/confirm.json"), &json!({ "code": app_code(&seed, 0) })).await;
    assert_eq!((r.status.as_u16(), r.json()["data"]["status"].as_str()), (200, Some("verified")), "{}", r.text);
    // And it is challenged, and the challenge verified by the otp function with the app's code
    let challenge = sam.post(&format!("{path}/{factor}/challenges"), &json!({})).await.request_id();
    let code = app_code(&seed, 1);
    let r = sam.post("/2fa/verify", &json!({ "requestId": challenge, "code": code })).await;
    // Then it is verified, once
    assert_eq!((r.status.as_u16(), r.json()), (200, json!({ "code": 200, "message": "OK", "requestID": challenge })));
    let r = sam.post("/2fa/verify", &json!({ "requestId": challenge, "code": code })).await;
    assert_eq!((r.status.as_u16(), r.code()), (409, 471), "{}", r.text);
    // And the same code is refused on a new challenge: a code counts once
    let second = sam.post(&format!("{path}/{factor}/challenges.json"), &json!({})).await.request_id();
    let r = sam.post("/2fa/verify", &json!({ "requestId": second, "code": code })).await;
    assert_eq!((r.status.as_u16(), r.code()), (401, 474), "{}", r.text);
    // And once deleted, the factor answers 404 (its .xml form too) and is listed no more
    let r = sam.call(Method::DELETE, &format!("{path}/{factor}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = sam.get(&format!("{path}/{factor}.xml")).await;
    assert_eq!((r.status.as_u16(), r.content_type.as_str()), (404, "application/xml"), "{}", r.text);
    let r = sam.get(&path).await;
    assert_eq!((r.status.as_u16(), &r.json()["data"]["factors"]), (200, &json!([])), "{}", r.text);
}

#[tokio::test]
#[ignore = "needs the local stack: make test-sam"]
async fn a_passkey_registers_and_signs_in_through_the_factors_function_and_a_stale_clone_is_refused() {
    use common::authenticator::Authenticator;
    const ORIGIN: &str = "https://app.example.com";
    // Given an account whose relying party is example.com (set by twofa-admin, as an operator does)
    let sam = Sam::new().new_account(&json!({ "passkeys": { "rpId": "example.com", "origins": [ORIGIN] } }));
    let path = format!("/2fa/entities/sam-{}/factors", random_digits(8));
    let mut key = Authenticator::new();
    // When a passkey factor is created and confirmed with the authenticator's answer
    let r = sam.post(&path, &json!({ "type": "passkey" })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.json()["data"].clone();
    let factor = data["sid"].as_str().unwrap().to_owned();
    let credential = key.register(&data["options"], ORIGIN);
    let r = sam.post(&format!("{path}/{factor}/confirm"), &json!({ "credential": credential })).await;
    assert_eq!((r.status.as_u16(), r.json()["data"]["status"].as_str()), (200, Some("verified")), "{}", r.text);
    // And a copy of its key is taken, and it signs in once
    let mut clone = key.clone_stale();
    let r = sam.post(&format!("{path}/{factor}/challenges"), &json!({})).await;
    let (challenge, options) = (r.request_id(), r.json()["options"].clone());
    let body = json!({ "requestId": challenge, "credential": key.assert(&options, ORIGIN) });
    let r = sam.post(&format!("{path}/{factor}/verify"), &body).await;
    // Then it is verified
    assert_eq!((r.status.as_u16(), r.json()), (200, json!({ "code": 200, "message": "OK", "requestID": challenge })));
    // And the copy, its counter stale, is refused on the next challenge
    let r = sam.post(&format!("{path}/{factor}/challenges.json"), &json!({})).await;
    let (second, options) = (r.request_id(), r.json()["options"].clone());
    let body = json!({ "requestId": second, "credential": clone.assert(&options, ORIGIN) });
    let r = sam.post(&format!("{path}/{factor}/verify"), &body).await;
    assert_eq!((r.status.as_u16(), r.code()), (401, 474), "{}", r.text);
}
