//! Black-box tests of the workflows API (/2fa/workflows) and of sends delivered by a workflow,
//! over HTTP against the dev server, whose scheduler runs the later steps on the dev clock.

mod common;

use common::{assert_400_naming, Api, Resp};
use futures::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use twofa::domain::ids;

/// The seed's create body ("Create a Workflow"): `channels` a string with escaped quotes.
const SEED_CREATE: &str = r#"{
"name": "Workflow SSV",
"channels": "[{ \"channel\":\"sms\", \"interval\":\"0\"}, { \"channel\":\"sms\", \"interval\":\"60\"}, { \"channel\":\"voice\", \"interval\":\"60\"}]",
"description": "Workflow to send SMS, SMS and then Voice"
}"#;
/// The seed's update body ("Update a Workflow").
const SEED_UPDATE: &str = r#"{
"channels": "[{ \"channel\":\"sms\", \"interval\":\"0\"}, { \"channel\":\"sms\", \"interval\":\"60\"}, { \"channel\":\"voice\", \"interval\":\"120\"}]",
"description": "Workflow to send SMS, SMS and then Voice after double the time period"
}"#;
const INVALID_WORKFLOW_ID: &str = r#"{"code":499,"message":"Invalid Workflow Id","requestID":null}"#;
const TO: &str = "+14155550100";

fn steps(intervals: &[(&str, u32)]) -> Value {
    Value::Array(intervals.iter().map(|(c, i)| json!({ "channel": c, "interval": i })).collect())
}

async fn create(api: &Api, name: &str, channels: Value) -> Resp {
    api.post("/2fa/workflows", &json!({ "name": name, "channels": channels })).await
}

async fn created(api: &Api, name: &str, channels: Value) -> String {
    let r = create(api, name, channels).await;
    assert_eq!(r.status, 200, "create {name}: {}", r.text);
    r.json()["data"]["sid"].as_str().unwrap().to_owned()
}

/// What the outbox holds for `to`, oldest first: (channel, body).
fn sent_to(api: &Api, to: &str) -> Vec<(String, String)> {
    let mut v: Vec<_> = api.dev.outbox.messages(Some(to)).into_iter().map(|m| (m.channel.to_owned(), m.body)).collect();
    v.reverse();
    v
}

fn channels_sent(api: &Api, to: &str) -> Vec<String> {
    sent_to(api, to).into_iter().map(|(c, _)| c).collect()
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

// ---- the API, seed flows -------------------------------------------------------------------

#[tokio::test]
async fn seed_create_answers_the_seed_shape_with_channels_as_an_array() {
    // Given the seed's create request, channels as a string
    let api = Api::start().await;
    // When it is posted
    let r = api.call(Method::POST, "/2fa/workflows", Some(SEED_CREATE), "application/json").await;
    // Then the seed's response: channels echoed as an array, as written, the seed's fields in
    // order, then our dates
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let d = &v["data"];
    let sid = d["sid"].as_str().unwrap();
    assert!(ids::is_sid("WF", sid), "{sid}");
    let created = d["dateCreated"].as_str().unwrap();
    let expected = format!(
        concat!(
            r#"{{"data":{{"sid":"{sid}","name":"Workflow SSV","channels":[{{"channel":"sms","interval":"0"}},"#,
            r#"{{"channel":"sms","interval":"60"}},{{"channel":"voice","interval":"60"}}],"#,
            r#""description":"Workflow to send SMS, SMS and then Voice","accountSid":"{acct}","accountEmail":null,"#,
            r#""targetAccountSid":"{acct}","targetAccountEmail":null,"uri":"/2fa/workflows/search/{sid}","#,
            r#""dateCreated":"{created}","dateUpdated":"{created}"}},"code":200,"message":"OK"}}"#
        ),
        sid = sid,
        acct = api.sid,
        created = created,
    );
    assert_eq!(r.text, expected);
    // And the same name again is the seed's 495
    let r = api.call(Method::POST, "/2fa/workflows", Some(SEED_CREATE), "application/json").await;
    assert_eq!(
        (r.status.as_u16(), r.text.as_str()),
        (409, r#"{"code":495,"message":"Workflow with that name already exists","requestID":null}"#)
    );
}

#[tokio::test]
async fn seed_update_get_list_and_delete() {
    let api = Api::start().await;
    let r = api.call(Method::POST, "/2fa/workflows", Some(SEED_CREATE), "application/json").await;
    let sid = r.json()["data"]["sid"].as_str().unwrap().to_owned();
    // When the seed's update is put
    api.advance(60).await;
    let r = api.call(Method::PUT, &format!("/2fa/workflows/{sid}"), Some(SEED_UPDATE), "application/json").await;
    // Then the third step waits 120 s, the description changed and dateUpdated moved
    assert_eq!(r.status, 200, "{}", r.text);
    let d = r.json()["data"].clone();
    assert_eq!(d["channels"][2], json!({ "channel": "voice", "interval": "120" }));
    assert_eq!(d["description"], "Workflow to send SMS, SMS and then Voice after double the time period");
    assert_ne!(d["dateUpdated"], d["dateCreated"]);
    // And the single GET and the list show it so
    let one = api.get(&format!("/2fa/workflows/search/{sid}")).await;
    assert_eq!(one.json()["data"], d);
    created(&api, "Workflow SVV", steps(&[("sms", 0), ("voice", 60), ("voice", 60)])).await;
    let list = api.get("/2fa/workflows/search?pageSize=2&page=0").await.json();
    let data = &list["data"];
    assert_eq!(data["result"].as_array().unwrap().len(), 2);
    assert_eq!(
        (data["total"].clone(), data["numPages"].clone(), data["pageSize"].clone()),
        (json!(2), json!(1), json!(2))
    );
    assert_eq!(data["firstPageUri"], "/2fa/workflows/search?pageSize=2&page=0");
    assert_eq!(data["result"][0], d);
    // When it is deleted, Then the answer is the deleted workflow and it is gone
    let r = api.call(Method::DELETE, &format!("/2fa/workflows/{sid}"), None, "application/json").await;
    assert_eq!(r.json()["data"], d);
    let r = api.get(&format!("/2fa/workflows/search/{sid}")).await;
    assert_eq!((r.status.as_u16(), r.text.as_str()), (409, INVALID_WORKFLOW_ID));
    let r = api.call(Method::DELETE, &format!("/2fa/workflows/{sid}"), None, "application/json").await;
    assert_eq!(r.text, INVALID_WORKFLOW_ID);
}

#[tokio::test]
async fn another_accounts_workflow_answers_like_an_unknown_one_and_a_parent_reaches_its_sub_accounts() {
    let api = Api::start().await;
    let (other, token) = api.other_account().await;
    let r = api
        .post_as(&other, &token, "/2fa/workflows", &json!({ "name": "theirs", "channels": steps(&[("sms", 0)]) }))
        .await;
    let theirs = r.json()["data"]["sid"].as_str().unwrap().to_owned();
    for (method, path) in [
        (Method::GET, format!("/2fa/workflows/search/{theirs}")),
        (Method::PUT, format!("/2fa/workflows/{theirs}")),
        (Method::DELETE, format!("/2fa/workflows/{theirs}")),
        (Method::GET, "/2fa/workflows/search/WF00000000000000000000000000000000".to_owned()),
    ] {
        let r = api.call(method, &path, Some(r#"{"description":"x"}"#), "application/json").await;
        assert_eq!(r.text, INVALID_WORKFLOW_ID, "{path}");
    }
    // A send naming it is refused the same way, and nothing is sent
    let r = api.send_to(TO, json!({ "workflow": theirs })).await;
    assert_eq!(r.text, INVALID_WORKFLOW_ID);
    // A parent manages its sub-account's workflow by sid, and lists it with subAccounts
    let (sub, _) = api.sub_account(&api.sid).await;
    let r = api
        .post("/2fa/workflows", &json!({ "name": "sub", "channels": steps(&[("sms", 0)]), "accountSid": sub }))
        .await;
    let sub_wf = r.json()["data"]["sid"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["data"]["targetAccountSid"], sub.as_str());
    assert_eq!(api.get(&format!("/2fa/workflows/search/{sub_wf}")).await.status, 200);
    let list = api.get("/2fa/workflows/search?subAccounts=true").await.json();
    assert_eq!(list["data"]["total"], 1);
}

#[tokio::test]
async fn bad_workflows_are_a_400_naming_the_field() {
    let api = Api::start().await;
    assert_400_naming(&create(&api, "w", json!([])).await, "channels");
    let eleven: Vec<(&str, u32)> = (0..11).map(|_| ("sms", 1)).collect();
    assert_400_naming(&create(&api, "w", steps(&eleven)).await, "channels");
    assert_400_naming(&create(&api, "w", steps(&[("fax", 0)])).await, "channels[0].channel");
    assert_400_naming(&create(&api, "w", json!([{ "channel": "sms", "interval": -1 }])).await, "channels[0].interval");
    assert_400_naming(
        &create(&api, "w", json!([{ "channel": "sms", "interval": "soon" }])).await,
        "channels[0].interval",
    );
    assert_400_naming(&create(&api, "w", steps(&[("sms", 0), ("call", 86_401)])).await, "channels");
    assert_400_naming(&api.post("/2fa/workflows", &json!({ "name": "w" })).await, "channels");
    assert_400_naming(&create(&api, "", steps(&[("sms", 0)])).await, "name");
    assert_eq!(api.get("/2fa/workflows/search").await.json()["data"]["total"], 0, "none was created");
}

// ---- running one ---------------------------------------------------------------------------

#[tokio::test]
async fn sms_sms_call_sends_every_step_on_time_with_one_code_when_nobody_verifies() {
    // Given the seed's SMS, SMS, voice workflow (0 s, 60 s, 60 s)
    let api = Api::start().await;
    let wf = created(&api, "Workflow SSV", steps(&[("sms", 0), ("sms", 60), ("voice", 60)])).await;
    // When an OTP is sent with it
    let r = api.send_to(TO, json!({ "workflow": wf })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sid = r.request_id();
    // Then the first SMS goes out at once, and nothing else yet
    assert_eq!(channels_sent(&api, TO), ["sms"]);
    api.advance(59).await;
    assert_eq!(channels_sent(&api, TO), ["sms"], "the second step waits its 60 s");
    // And each later step goes out its interval after the one before
    api.advance(1).await;
    assert_eq!(channels_sent(&api, TO), ["sms", "sms"]);
    api.advance(60).await;
    assert_eq!(channels_sent(&api, TO), ["sms", "sms", "call"]);
    // All with the same code
    let sent = sent_to(&api, TO);
    let code = digits(&sent[0].1);
    assert_eq!(digits(&sent[1].1), code);
    assert_eq!(digits(&sent[2].1), code, "the call reads the same digits");
    // And the session record shows one event per step, the usage one per step and channel
    let sdr = api.get(&format!("/2fa/search/{sid}")).await.json();
    let events: Vec<&str> = sdr["events"].as_array().unwrap().iter().map(|e| e["channel"].as_str().unwrap()).collect();
    assert_eq!(events, ["sms", "sms", "call"]);
    assert!(sdr["events"].as_array().unwrap().iter().all(|e| e["channelStatus"] == "sent"));
    for (channel, count) in [("sms", "2"), ("call", "1"), ("All", "1")] {
        let usage = api.get(&format!("/2fa/usage/records/today?channel={channel}")).await.json();
        assert_eq!(usage["usageRecords"][0]["count"], count, "{channel}: {usage}");
    }
    // And the code still verifies once
    assert_eq!(api.verify(&sid, &code).await.status, 200);
}

#[tokio::test]
async fn verifying_after_the_first_step_stops_the_rest() {
    let api = Api::start().await;
    let wf = created(&api, "w", steps(&[("sms", 0), ("sms", 30), ("call", 30)])).await;
    let sid = api.send_to(TO, json!({ "workflow": wf })).await.request_id();
    let code = api.code_of(&sid).await;
    assert_eq!(api.verify(&sid, &code).await.status, 200);
    api.advance(120).await;
    assert_eq!(channels_sent(&api, TO), ["sms"]);
}

#[tokio::test]
async fn cancel_stops_the_rest() {
    let api = Api::start().await;
    let wf = created(&api, "w", steps(&[("sms", 0), ("sms", 30), ("call", 30)])).await;
    let sid = api.send_to(TO, json!({ "workflow": wf })).await.request_id();
    api.advance(30).await;
    assert_eq!(channels_sent(&api, TO), ["sms", "sms"]);
    assert_eq!(api.post("/2fa/cancel", &json!({ "requestId": sid })).await.status, 200);
    api.advance(60).await;
    assert_eq!(channels_sent(&api, TO), ["sms", "sms"]);
}

#[tokio::test]
async fn a_step_after_the_otps_expiry_is_not_sent() {
    // Given a 60 s OTP and a workflow whose third step falls at 90 s
    let api = Api::start().await;
    let wf = created(&api, "w", steps(&[("sms", 0), ("sms", 45), ("call", 45)])).await;
    api.send_to(TO, json!({ "workflow": wf, "timeout": 60 })).await.request_id();
    api.advance(45).await;
    assert_eq!(channels_sent(&api, TO), ["sms", "sms"]);
    // When its time comes, Then it is not sent: the OTP has expired
    api.advance(45).await;
    assert_eq!(channels_sent(&api, TO), ["sms", "sms"]);
    assert!(api.dev.scheduler.waiting().is_empty(), "nothing left waiting");
}

#[tokio::test]
async fn a_first_step_that_waits_sends_nothing_at_once() {
    let api = Api::start().await;
    let wf = created(&api, "later", steps(&[("sms", 10), ("call", 10)])).await;
    let r = api.send_to(TO, json!({ "workflow": "later" })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(channels_sent(&api, TO).is_empty());
    api.advance(10).await;
    assert_eq!(channels_sent(&api, TO), ["sms"]);
    api.advance(10).await;
    assert_eq!(channels_sent(&api, TO), ["sms", "call"]);
    let _ = wf;
}

#[tokio::test]
async fn email_steps_go_to_email_and_need_it_and_a_subject_before_anything_is_sent() {
    let api = Api::start().await;
    let wf = created(&api, "sms-then-email", steps(&[("sms", 0), ("email", 30)])).await;
    // Without email, or without subject, a 400 naming it, and nothing sent
    assert_400_naming(&api.send_to(TO, json!({ "workflow": wf, "subject": "Code" })).await, "email");
    let r = api.send_to(TO, json!({ "workflow": wf, "email": "u@example.com", "emailFrom": "otp@example.com" })).await;
    assert_400_naming(&r, "subject");
    assert!(api.dev.outbox.messages(None).is_empty());
    // With both, the email step goes to the address, from the sender address
    let r = api
        .send_to(
            TO,
            json!({ "workflow": wf, "email": "u@example.com", "emailFrom": "otp@example.com", "subject": "Code" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    api.advance(30).await;
    let mail = &api.dev.outbox.messages(Some("u@example.com"))[0];
    assert_eq!((mail.channel, mail.from.as_str(), mail.subject.as_deref()), ("email", "otp@example.com", Some("Code")));
    assert_eq!(digits(&mail.body), digits(&sent_to(&api, TO)[0].1));
}

#[tokio::test]
async fn limits_count_once_per_send_not_per_step() {
    // Given the default limit (1 per minute per destination) and a 3-step workflow
    let api = Api::start().await;
    let wf = created(&api, "w", steps(&[("sms", 0), ("sms", 20), ("sms", 20)])).await;
    assert_eq!(api.send_to(TO, json!({ "workflow": wf })).await.status, 200);
    // When every step has gone out within the minute, Then a new send is still refused once,
    // and the next minute admits one
    api.advance(40).await;
    assert_eq!(channels_sent(&api, TO).len(), 3);
    assert_eq!(api.send_to(TO, json!({})).await.code(), 453);
    api.advance(21).await;
    assert_eq!(api.send_to(TO, json!({})).await.status, 200);
}

#[tokio::test]
async fn twenty_concurrent_workflows_do_not_interfere() {
    let api = Api::start().await;
    let wf = created(&api, "w", steps(&[("sms", 0), ("call", 30)])).await;
    let numbers: Vec<String> = (0..20).map(|i| format!("+1415555{:04}", 200 + i)).collect();
    let sends = join_all(numbers.iter().map(|to| api.send_to(to, json!({ "workflow": wf })))).await;
    assert!(sends.iter().all(|r| r.status == 200));
    // Half of them are verified before the second step
    for (r, _) in sends.iter().zip(&numbers).take(10) {
        let sid = r.request_id();
        let code = api.code_of(&sid).await;
        assert_eq!(api.verify(&sid, &code).await.status, 200);
    }
    api.advance(30).await;
    for (i, to) in numbers.iter().enumerate() {
        let expected: &[&str] = if i < 10 { &["sms"] } else { &["sms", "call"] };
        assert_eq!(channels_sent(&api, to), expected, "{to}");
        let sent = sent_to(&api, to);
        assert!(sent.iter().all(|(_, b)| digits(b) == digits(&sent[0].1)), "each OTP keeps its own code");
    }
}

#[tokio::test]
async fn a_multi_step_workflow_needs_a_deployment_that_runs_them_and_a_one_step_one_does_not() {
    let api = Api::start().await;
    // A one-step workflow by name is an ordinary send on its channel
    created(&api, "just-call", steps(&[("call", 0)])).await;
    let r = api.send_to(TO, json!({ "workflow": "just-call" })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(channels_sent(&api, TO), ["call"]);
    // An unknown name is 499
    assert_eq!(api.send_to("+14155550111", json!({ "workflow": "nope" })).await.text, INVALID_WORKFLOW_ID);
}
