//! Delivery routing on the dev server (issue 27): an account's routing table picks, per
//! channel and country, the routes its messages take, in order; a route that is down falls
//! through to the next; a refusal is final. The dev server has two SMS routes into its
//! outbox, `outbox` and `outbox-backup`, each of which `/dev/outbox/mode` can take down.

mod common;

use common::{Api, Resp};
use serde_json::{json, Value};

const US: &str = "+14155550100";
const GB: &str = "+447400123456";

/// `POST /dev/accounts` (no auth: dev only) updating this account's policy with `body`.
async fn set_policy(api: &Api, body: Value) -> reqwest::Response {
    let mut body = body;
    body["accountSid"] = json!(api.sid);
    api.http.post(format!("{}/dev/accounts", api.base)).json(&body).send().await.expect("dev/accounts")
}

async fn set_routes(api: &Api, routes: Value) {
    let r = set_policy(api, json!({ "routes": routes })).await;
    assert_eq!(r.status().as_u16(), 200);
    let policy: Value = r.json().await.unwrap();
    assert_eq!(policy["policy"]["routes"], routes, "the table reads back as set");
}

/// `mode` (deliver, reject, down) for one outbox route.
async fn route_mode(api: &Api, route: &str, mode: &str) {
    let body = json!({ "mode": mode, "route": route });
    let r = api.http.post(format!("{}/dev/outbox/mode", api.base)).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// What the outbox holds for `to`, oldest first: (route, body).
fn sent_to(api: &Api, to: &str) -> Vec<(String, String)> {
    let mut v: Vec<_> = api.dev.outbox.messages(Some(to)).into_iter().map(|m| (m.route, m.body)).collect();
    v.reverse();
    v
}

async fn event(api: &Api, sid: &str) -> Value {
    let r = api.get(&format!("/2fa/search/{sid}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["events"][0].clone()
}

async fn sms_usage(api: &Api) -> Value {
    api.get("/2fa/usage/records/today?channel=sms").await.json()["usageRecords"][0]["count"].clone()
}

fn sent(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.text);
    r.request_id()
}

#[tokio::test]
async fn without_a_table_an_sms_takes_the_deployments_route_and_says_so() {
    // Given an account with no routing table
    let api = Api::start().await;
    // When it sends an SMS
    let sid = sent(&api.send_to(US, json!({})).await);
    // Then the outbox shows the route it went by, and so does the record's event
    assert_eq!(sent_to(&api, US).iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(), ["outbox"]);
    assert_eq!(event(&api, &sid).await["route"], "outbox");
}

#[tokio::test]
async fn a_table_routes_by_the_numbers_country_with_a_star_for_the_rest() {
    // Given UK numbers through the backup route and every other country through the first
    let api = Api::start().await;
    set_routes(&api, json!({ "sms": { "GB": ["outbox-backup"], "*": ["outbox"] } })).await;
    // When an SMS goes to a UK number and one to a US number
    let uk = sent(&api.send_to(GB, json!({})).await);
    let us = sent(&api.send_to(US, json!({})).await);
    // Then each went by its country's route
    assert_eq!(sent_to(&api, GB)[0].0, "outbox-backup");
    assert_eq!(sent_to(&api, US)[0].0, "outbox");
    assert_eq!(
        (event(&api, &uk).await["route"].clone(), event(&api, &us).await["route"].clone()),
        (json!("outbox-backup"), json!("outbox"))
    );
}

#[tokio::test]
async fn a_route_that_is_down_falls_through_to_the_next_which_sends_once_and_its_code_verifies() {
    // Given a table outbox then outbox-backup, and the first route down
    let api = Api::start().await;
    set_routes(&api, json!({ "sms": { "*": ["outbox", "outbox-backup"] } })).await;
    route_mode(&api, "outbox", "down").await;
    // When an SMS is sent
    let sid = sent(&api.send_to(US, json!({})).await);
    // Then one message went out, by the second route; one event names it; usage counts one SMS
    let out = sent_to(&api, US);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, "outbox-backup");
    let r = api.get(&format!("/2fa/search/{sid}")).await.json();
    assert_eq!(r["events"].as_array().unwrap().len(), 1);
    assert_eq!(
        (r["events"][0]["route"].clone(), r["events"][0]["channelStatus"].clone()),
        (json!("outbox-backup"), json!("sent"))
    );
    assert_eq!(sms_usage(&api).await, json!("1"));
    // And the code it carries verifies
    let code: String = out[0].1.chars().filter(char::is_ascii_digit).collect();
    let v = api.verify(&sid, &code).await;
    assert_eq!((v.status.as_u16(), v.code()), (200, 200), "{}", v.text);
}

#[tokio::test]
async fn a_refusal_is_final_and_the_failed_event_names_the_route_that_refused() {
    // Given a table outbox then outbox-backup, and the first route refusing messages
    let api = Api::start().await;
    set_routes(&api, json!({ "sms": { "*": ["outbox", "outbox-backup"] } })).await;
    route_mode(&api, "outbox", "reject").await;
    // When an SMS is sent
    let sid = sent(&api.send_to(US, json!({})).await);
    // Then nothing went out by the second route: the OTP stands with a failed event of the first
    assert!(sent_to(&api, US).is_empty());
    let e = event(&api, &sid).await;
    assert_eq!((e["channelStatus"].clone(), e["route"].clone()), (json!("failed"), json!("outbox")), "{e}");
    assert_eq!(e["channelErrorCode"], "30008");
}

#[tokio::test]
async fn every_route_down_answers_503_and_leaves_nothing_behind() {
    // Given both routes of the table down
    let api = Api::start().await;
    set_routes(&api, json!({ "sms": { "*": ["outbox-backup", "outbox"] } })).await;
    route_mode(&api, "outbox", "down").await;
    route_mode(&api, "outbox-backup", "down").await;
    // When an SMS is sent, then it is a 503, nothing was sent and nothing counted
    let r = api.send_to(US, json!({})).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(sent_to(&api, US).is_empty());
    assert_eq!(sms_usage(&api).await, json!("0"));
    // And once a route is back, the same number is sent to at once
    route_mode(&api, "outbox-backup", "deliver").await;
    sent(&api.send_to(US, json!({})).await);
    assert_eq!(sent_to(&api, US)[0].0, "outbox-backup");
}

#[tokio::test]
async fn a_workflows_later_step_takes_the_table_too() {
    // Given a table sending SMS by the backup route, and a workflow email then SMS a minute later
    let api = Api::start().await;
    set_routes(&api, json!({ "sms": { "*": ["outbox-backup"] } })).await;
    let steps = json!([{ "channel": "email", "interval": 0 }, { "channel": "sms", "interval": 60 }]);
    let r = api.post("/2fa/workflows", &json!({ "name": "email-then-sms", "channels": steps })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // When an OTP is sent by that workflow and its SMS step comes due
    let body = json!({ "workflow": "email-then-sms", "email": "a@example.com", "emailFrom": "otp@example.com",
        "subject": "Your code" });
    let sid = sent(&api.send_to(US, body).await);
    api.advance(60).await;
    // Then the email went by the outbox and the SMS by the table's route
    let r = api.get(&format!("/2fa/search/{sid}")).await.json();
    let routes: Vec<(Value, Value)> =
        r["events"].as_array().unwrap().iter().map(|e| (e["channel"].clone(), e["route"].clone())).collect();
    assert_eq!(routes, [(json!("email"), json!("outbox")), (json!("sms"), json!("outbox-backup"))], "{r}");
}

#[tokio::test]
async fn a_bad_table_is_refused_naming_routes_and_null_clears_it() {
    let api = Api::start().await;
    for bad in [
        json!({ "fax": { "*": ["outbox"] } }),
        json!({ "sms": { "USA": ["outbox"] } }),
        json!({ "sms": { "*": [] } }),
        json!({ "sms": { "*": ["outbox", "outbox"] } }),
        json!({ "sms": { "*": ["not a name"] } }),
    ] {
        // When a malformed table is set, then it is refused naming the parameter
        let r = set_policy(&api, json!({ "routes": bad })).await;
        assert_eq!(r.status().as_u16(), 400, "{bad}");
        let text = r.text().await.unwrap();
        assert!(text.contains("routes"), "{bad}: {text}");
    }
    // And `null` clears a table
    set_routes(&api, json!({ "sms": { "*": ["outbox-backup"] } })).await;
    set_routes(&api, json!({})).await;
    let r = set_policy(&api, json!({ "routes": null })).await;
    let policy: Value = r.json().await.unwrap();
    assert_eq!(policy["policy"]["routes"], json!({}));
}

#[tokio::test]
async fn a_route_name_the_deployment_lacks_is_skipped() {
    // Given a table naming a route this deployment does not have before one it has
    let api = Api::start().await;
    set_routes(&api, json!({ "sms": { "*": ["acme", "outbox-backup"] } })).await;
    // When an SMS is sent, then it goes by the route the deployment has
    sent(&api.send_to(US, json!({})).await);
    assert_eq!(sent_to(&api, US)[0].0, "outbox-backup");
}
