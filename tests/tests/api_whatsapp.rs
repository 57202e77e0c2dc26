//! WhatsApp as a channel on the dev server: a send, a workflow `whatsapp → sms`, geo
//! permissions and the pumping guard by the number's country, and usage by channel, as a
//! developer sees them over HTTP and in `/dev/outbox`.

mod common;

use common::Api;
use serde_json::{json, Value};

const TO: &str = "+14155550100";

fn whatsapp(extra: Value) -> Value {
    let mut body = json!({ "channel": "whatsapp" });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
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

/// `POST /dev/accounts` (no auth: dev only) with `body`; answers the new account's sid and token.
async fn dev_account(api: &Api, body: Value) -> (String, String) {
    let r = api.http.post(format!("{}/dev/accounts", api.base)).json(&body).send().await.expect("dev/accounts");
    assert_eq!(r.status().as_u16(), 200);
    let acct: Value = r.json().await.expect("JSON");
    (acct["accountSid"].as_str().unwrap().to_owned(), acct["authToken"].as_str().unwrap().to_owned())
}

fn send_body(channel: &str, to: &str) -> Value {
    json!({ "service": "2FA", "channel": channel, "from": "Twofa", "to": to, "body": "Code {code}" })
}

async fn usage(api: &Api, channel: &str) -> Value {
    api.get(&format!("/2fa/usage/records/today?channel={channel}")).await.json()["usageRecords"][0].clone()
}

#[tokio::test]
async fn a_whatsapp_send_shows_in_the_outbox_as_whatsapp_and_its_code_verifies() {
    // Given the dev server
    let api = Api::start().await;
    // When an OTP is sent on WhatsApp (the number written without its +)
    let r = api.send_to("14155550100", whatsapp(json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sid = r.request_id();
    // Then the outbox shows one WhatsApp message to the number in E.164 with the code
    let sent = sent_to(&api, TO);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, "whatsapp");
    let code = digits(&sent[0].1);
    assert_eq!(code.len(), 6, "{}", sent[0].1);
    // And the session record names the channel and the number's country
    let sdr = api.get(&format!("/2fa/search/{sid}")).await.json();
    assert_eq!((sdr["events"][0]["channel"].as_str(), sdr["country"].as_str()), (Some("whatsapp"), Some("US")));
    // And the code verifies
    assert_eq!(api.verify(&sid, &code).await.status, 200);
}

#[tokio::test]
async fn whatsapp_is_counted_as_its_own_channel_in_usage() {
    // Given two WhatsApp sends and one SMS
    let api = Api::start().await;
    for to in ["+14155550101", "+14155550102"] {
        assert_eq!(api.send_to(to, whatsapp(json!({}))).await.status, 200);
    }
    assert_eq!(api.send_to("+14155550103", json!({})).await.status, 200);
    // When today's usage is read by channel
    let (wa, sms, all) = (usage(&api, "whatsapp").await, usage(&api, "sms").await, usage(&api, "All").await);
    // Then WhatsApp counts its two, SMS its one, and All the three OTPs
    assert_eq!((wa["category"].as_str(), wa["count"].as_str()), (Some("whatsapp"), Some("2")), "{wa}");
    assert_eq!(wa["unit"], "Messages");
    assert_eq!(sms["count"], "1", "{sms}");
    assert_eq!(all["count"], "3", "{all}");
}

#[tokio::test]
async fn a_whatsapp_to_something_that_is_not_a_phone_number_is_a_400_naming_to() {
    let api = Api::start().await;
    let r = api.send_to("u@example.com", whatsapp(json!({}))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.json()["message"].as_str().unwrap().starts_with("Invalid parameter: to"), "{}", r.text);
    assert!(api.dev.outbox.messages(None).is_empty());
}

#[tokio::test]
async fn the_sms_step_of_whatsapp_then_sms_goes_only_when_the_whatsapp_code_was_not_verified_in_time() {
    // Given a workflow whatsapp, then sms 60 s later
    let api = Api::start().await;
    let r = api
        .post(
            "/2fa/workflows",
            &json!({ "name": "wa-sms", "channels": [
            { "channel": "whatsapp", "interval": 0 }, { "channel": "sms", "interval": 60 } ] }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let wf = r.json()["data"]["sid"].as_str().unwrap().to_owned();
    let (verified_to, silent_to) = ("+14155550110", "+14155550111");
    // When one user verifies the WhatsApp code within the interval and another does not
    let verified = api.send_to(verified_to, json!({ "workflow": wf })).await.request_id();
    let silent = api.send_to(silent_to, json!({ "workflow": wf })).await.request_id();
    assert_eq!(channels_sent(&api, verified_to), ["whatsapp"]);
    assert_eq!(channels_sent(&api, silent_to), ["whatsapp"]);
    api.advance(30).await;
    let code = digits(&sent_to(&api, verified_to)[0].1);
    assert_eq!(api.verify(&verified, &code).await.status, 200);
    api.advance(30).await;
    // Then the one who verified gets no SMS, and the other gets it with the same code
    assert_eq!(channels_sent(&api, verified_to), ["whatsapp"]);
    let silent_sent = sent_to(&api, silent_to);
    assert_eq!(channels_sent(&api, silent_to), ["whatsapp", "sms"]);
    assert_eq!(digits(&silent_sent[1].1), digits(&silent_sent[0].1));
    // And the SMS's code verifies, the session showing both steps
    assert_eq!(api.verify(&silent, &digits(&silent_sent[1].1)).await.status, 200);
    let sdr = api.get(&format!("/2fa/search/{silent}")).await.json();
    let events: Vec<&str> = sdr["events"].as_array().unwrap().iter().map(|e| e["channel"].as_str().unwrap()).collect();
    assert_eq!(events, ["whatsapp", "sms"]);
}

#[tokio::test]
async fn whatsapp_has_its_own_geo_permissions_by_the_numbers_country() {
    // Given an account that may send WhatsApp to GB only (SMS anywhere)
    let api = Api::start().await;
    let (sid, token) = dev_account(&api, json!({ "allowedCountries": { "whatsapp": ["GB"] } })).await;
    // When it sends WhatsApp to a US number, then 403 with code 476 and nothing goes out
    let r = api.post_as(&sid, &token, "/2fa/send", &send_body("whatsapp", TO)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text, r#"{"code":476,"message":"Destination country not allowed: US","requestID":null}"#);
    assert!(api.dev.outbox.messages(None).is_empty());
    // And WhatsApp to GB goes, as does SMS to the US
    assert_eq!(api.post_as(&sid, &token, "/2fa/send", &send_body("whatsapp", "+447400123456")).await.status, 200);
    assert_eq!(api.post_as(&sid, &token, "/2fa/send", &send_body("sms", TO)).await.status, 200);
}

#[tokio::test]
async fn the_pumping_guard_pauses_whatsapp_to_a_country_whose_sends_are_not_verified() {
    // Given an account whose guard pauses a country after 2 sends in the hour below 50 % verified
    let api = Api::start().await;
    let (sid, token) = dev_account(&api, json!({ "pumpingGuard": { "minSends": 2, "minVerifyPercent": 50 } })).await;
    // And 2 unverified WhatsApp sends to Germany
    for to in ["+4915123456781", "+4915123456782"] {
        assert_eq!(api.post_as(&sid, &token, "/2fa/send", &send_body("whatsapp", to)).await.status, 200);
    }
    // When a 3rd goes to Germany, on WhatsApp or on SMS
    for channel in ["whatsapp", "sms"] {
        let r = api.post_as(&sid, &token, "/2fa/send", &send_body(channel, "+4915123456783")).await;
        // Then it answers 429 with code 477: the guard watches the country, whatever the channel
        assert_eq!(r.status, 429, "{channel}");
        assert_eq!(r.text, r#"{"code":477,"message":"Sends to DE paused: low verification rate","requestID":null}"#);
    }
}
