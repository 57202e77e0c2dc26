//! Black-box tests of what a send's destination decides: phone numbers validated per country
//! and stored in E.164, geo permissions, the pumping guard, test numbers, WebOTP / SMS Retriever.

mod common;

use common::Api;
use serde_json::json;
use twofa::domain::time;
use twofa::ports::{Clock, RecordStore};

// ---- phone numbers ----------------------------------------------------------------------------

#[tokio::test]
async fn a_number_that_cannot_exist_in_its_country_is_a_400_naming_to_and_costs_nothing() {
    // Given an account
    let api = Api::start().await;
    for to in ["+15551234567", "+447700900123", "+910123456789", "+4900000000000", "+8100000000", "+1415555"] {
        // When it sends to a number its country's numbering plan does not have
        let r = api.send_to(to, json!({})).await;
        // Then the answer is a 400 naming `to`
        assert_eq!(r.status, 400, "{to}: {}", r.text);
        assert_eq!(r.json()["message"], "Invalid parameter: to (is not a valid phone number for its country)", "{to}");
    }
    // And nothing was sent or counted
    assert!(api.dev.outbox.messages(None).is_empty());
    let day = time::day(api.dev.clock.now_ms());
    assert!(api.dev.store.usage(&api.sid, &day, &day).await.unwrap().is_empty());
}

#[tokio::test]
async fn valid_numbers_of_us_gb_in_de_jp_are_sent_and_their_country_is_in_the_sdr() {
    let api = Api::start().await;
    for (to, cc) in [
        ("+14155550100", "US"),
        ("+447400123456", "GB"),
        ("+919960639901", "IN"),
        ("+4915123456789", "DE"),
        ("+819012345678", "JP"),
    ] {
        let sid = api.sent(to).await;
        let sdr = api.get(&format!("/2fa/search/{sid}")).await.json();
        assert_eq!(sdr["country"], cc, "{to}");
        assert_eq!(sdr["events"][0]["recipient"], to);
    }
}

#[tokio::test]
async fn a_number_without_plus_is_stored_in_e164_and_verifies_by_either_spelling() {
    // Given the seeds' spelling of a number (no `+`)
    let api = Api::start().await;
    let sid = api.sent("919960639901").await;
    let code = api.code_of(&sid).await;
    // Then the OTP holds it in E.164
    let sdr = api.get(&format!("/2fa/search/{sid}")).await.json();
    assert_eq!(sdr["events"][0]["recipient"], "+919960639901");
    assert_eq!(sdr["country"], "IN");
    // And the same number with `+` is the same destination: verify by number finds it
    let r = api.post("/2fa/verify", &json!({ "service": "2FA", "number": "+919960639901", "code": code })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.request_id(), sid);
    // And a second send within the minute, spelled with `+`, meets the default limit
    assert_eq!(api.send_to("+919960639901", json!({})).await.code(), 453);
}

#[tokio::test]
async fn email_otps_have_no_country() {
    let api = Api::start().await;
    let body = json!({ "channel": "email", "from": "otp@example.com", "subject": "Code", "to": "u@example.com" });
    let sid = api.send_to("u@example.com", body).await.request_id();
    let sdr = api.get(&format!("/2fa/search/{sid}")).await.json();
    assert_eq!(sdr["country"], serde_json::Value::Null);
}

// ---- geo permissions --------------------------------------------------------------------------

/// `POST /dev/accounts` (no auth: dev only) with `body`; answers the JSON.
async fn dev_accounts(api: &Api, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = api.http.post(format!("{}/dev/accounts", api.base)).json(&body).send().await.expect("dev/accounts");
    (r.status().as_u16(), r.json().await.expect("JSON"))
}

#[tokio::test]
async fn a_send_to_a_country_outside_the_accounts_geo_permissions_is_476_with_403() {
    // Given an account created on the dev server that may send SMS to GB only
    let api = Api::start().await;
    let (status, acct) = dev_accounts(&api, json!({ "allowedCountries": { "sms": ["GB"] } })).await;
    assert_eq!(status, 200, "{acct}");
    assert_eq!(acct["policy"]["allowedCountries"], json!({ "sms": ["GB"], "call": null, "whatsapp": null }));
    let (sid, token) = (acct["accountSid"].as_str().unwrap(), acct["authToken"].as_str().unwrap());
    let body = |to: &str| json!({ "service": "2FA", "from": "Twofa", "to": to, "body": "Code {code}" });
    // When it sends to a US number
    let r = api.post_as(sid, token, "/2fa/send", &body("+14155550100")).await;
    // Then the answer is 403 with code 476 naming the country, and nothing went out
    assert_eq!(r.status, 403);
    assert_eq!(r.text, r#"{"code":476,"message":"Destination country not allowed: US","requestID":null}"#);
    assert!(api.dev.outbox.messages(None).is_empty());
    // And a GB number goes out
    assert_eq!(api.post_as(sid, token, "/2fa/send", &body("+447400123456")).await.status, 200);
    // And the list can be changed on the existing account
    let (status, _) = dev_accounts(&api, json!({ "accountSid": sid, "allowedCountries": { "sms": null } })).await;
    assert_eq!(status, 200);
    assert_eq!(api.post_as(sid, token, "/2fa/send", &body("+14155550100")).await.status, 200);
}

#[tokio::test]
async fn bad_policies_on_the_dev_server_are_400s_that_say_why() {
    let api = Api::start().await;
    let (status, r) = dev_accounts(&api, json!({ "allowedCountries": { "sms": ["USA"] } })).await;
    assert_eq!(status, 400);
    assert!(r["error"].as_str().unwrap().contains("allowedCountries"), "{r}");
    let (status, _) = dev_accounts(&api, json!({ "accountSid": "ACnope", "pumpingGuard": {} })).await;
    assert_eq!(status, 404);
}

// ---- pumping guard ----------------------------------------------------------------------------

#[tokio::test]
async fn the_pumping_guard_answers_477_with_429_and_lifts_an_hour_later_on_the_dev_clock() {
    // Given an account whose guard pauses a country after 2 sends in the hour below 50 % verified
    let api = Api::start().await;
    let (_, acct) = dev_accounts(&api, json!({ "pumpingGuard": { "minSends": 2, "minVerifyPercent": 50 } })).await;
    assert_eq!(
        acct["policy"]["pumpingGuard"],
        json!({ "enabled": true, "minSends": 2, "minVerifyPercent": 50, "accountMinSends": 1000 })
    );
    let (sid, token) = (acct["accountSid"].as_str().unwrap(), acct["authToken"].as_str().unwrap());
    let body = |to: &str| json!({ "service": "2FA", "from": "Twofa", "to": to, "body": "Code {code}" });
    // And 2 unverified SMS to Germany
    for to in ["+4915123456781", "+4915123456782"] {
        assert_eq!(api.post_as(sid, token, "/2fa/send", &body(to)).await.status, 200);
    }
    // When a 3rd goes to Germany
    let r = api.post_as(sid, token, "/2fa/send", &body("+4915123456783")).await;
    // Then it answers 429 with code 477
    assert_eq!(r.status, 429);
    assert_eq!(r.text, r#"{"code":477,"message":"Sends to DE paused: low verification rate","requestID":null}"#);
    // And an hour later (dev clock) the unverified sends have left the window
    api.advance(3600).await;
    assert_eq!(api.post_as(sid, token, "/2fa/send", &body("+4915123456783")).await.status, 200);
}

// ---- test numbers -----------------------------------------------------------------------------

#[tokio::test]
async fn a_test_number_gets_nothing_costs_nothing_and_verifies_its_fixed_code() {
    // Given an account allowed to send to GB only, with a US test number and a test address
    let api = Api::start().await;
    let policy = json!({
        "allowedCountries": { "sms": ["GB"] },
        "testNumbers": [ { "to": "14155550123", "code": "246810" }, { "to": "Reviewer@Example.com", "code": "1357" } ],
    });
    let (status, acct) = dev_accounts(&api, policy).await;
    assert_eq!(status, 200, "{acct}");
    assert_eq!(acct["policy"]["testNumbers"], json!(["+14155550123", "reviewer@example.com"]), "codes are not shown");
    let (sid, token) = (acct["accountSid"].as_str().unwrap(), acct["authToken"].as_str().unwrap());
    let sms = json!({ "service": "2FA", "from": "Twofa", "to": "+14155550123", "body": "Code {code}" });
    // When it sends to the test number twice in a row (no per-minute limit: nothing is delivered)
    let first = api.post_as(sid, token, "/2fa/send", &sms).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let r = api.post_as(sid, token, "/2fa/send", &sms).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let otp = r.request_id();
    // Then nothing was delivered, though the US is outside its geo permissions
    assert!(api.dev.outbox.messages(None).is_empty());
    // And a wrong code is refused, the fixed code verifies (by requestId and, for the newest, by number)
    let api = &api;
    let verify = |body: serde_json::Value| async move { api.post_as(sid, token, "/2fa/verify", &body).await };
    assert_eq!(verify(json!({ "requestId": otp, "code": "135799" })).await.code(), 474);
    let r = verify(json!({ "service": "2FA", "number": "+14155550123", "code": "246810" })).await;
    assert_eq!((r.status.as_u16(), r.request_id()), (200, otp.clone()));
    // And the session record shows a send to nobody
    let sdr = api.call_as(sid, token, reqwest::Method::GET, &format!("/2fa/search/{otp}"), None, "").await.json();
    assert_eq!((&sdr["status"], &sdr["events"][0]["channelStatus"]), (&json!("success"), &json!("sent")));
    assert_eq!(sdr["events"][0]["targetSid"], "test");
    // And the test address works the same on email, whatever the case
    let email = json!({ "service": "2FA", "channel": "email", "from": "otp@example.com", "subject": "Code",
        "to": "reviewer@example.COM", "body": "Code {code}" });
    let r = api.post_as(sid, token, "/2fa/send", &email).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(verify(json!({ "requestId": r.request_id(), "code": "1357" })).await.status, 200);
    assert!(api.dev.outbox.messages(None).is_empty());
    // And usage counts them as `test` only: no OTP in All, no SMS or email
    let usage = |channel: &'static str| async move {
        let path = format!("/2fa/usage/records/today?channel={channel}");
        api.call_as(sid, token, reqwest::Method::GET, &path, None, "").await.json()
    };
    let test = usage("test").await;
    assert_eq!(test["usageRecords"][0]["count"], "3", "{test}");
    assert_eq!(test["usageRecords"][0]["category"], "test");
    for channel in ["All", "sms", "email"] {
        let v = usage(channel).await;
        assert_eq!(v["usageRecords"][0]["count"], "0", "{channel}: {v}");
    }
}

// ---- WebOTP and Android SMS Retriever ---------------------------------------------------------

#[tokio::test]
async fn webotp_domain_and_app_hash_end_the_sms_in_the_forms_browsers_and_android_read() {
    // Given a send that asks for both
    let api = Api::start().await;
    let extra =
        json!({ "body": "Your code is {code}.", "webOtpDomain": "Login.Example.com", "appHash": "FA+9qCX9VSu" });
    let sid = api.send_to("+14155550100", extra).await.request_id();
    // Then the SMS ends with the app hash on its own line, then `@domain #code` as the last line
    let msg = &api.dev.outbox.messages(Some("+14155550100"))[0];
    let code = msg.body.lines().next().unwrap().trim_start_matches("Your code is ").trim_end_matches('.').to_owned();
    assert_eq!(code.len(), 6);
    assert_eq!(msg.body, format!("Your code is {code}.\n\nFA+9qCX9VSu\n@login.example.com #{code}"));
    // And the code verifies as usual
    assert_eq!(api.verify(&sid, &code).await.status, 200);
    // And WebOTP alone makes the last line only
    let sid = api.send_to("+14155550101", json!({ "webOtpDomain": "example.com" })).await.request_id();
    let msg = &api.dev.outbox.messages(Some("+14155550101"))[0];
    let code = api.code_of(&sid).await;
    assert!(msg.body.ends_with(&format!("\n\n@example.com #{}", &code[..6])), "{}", msg.body);
}

#[tokio::test]
async fn bad_webotp_domains_and_app_hashes_are_400s_naming_them() {
    let api = Api::start().await;
    for (extra, param) in [
        (json!({ "webOtpDomain": "https://example.com" }), "webOtpDomain"),
        (json!({ "webOtpDomain": "example.com:8443" }), "webOtpDomain"),
        (json!({ "appHash": "tooshort" }), "appHash"),
        (json!({ "appHash": "FA+9qCX9VS!" }), "appHash"),
        (json!({ "webOtpDomain": "example.com", "channel": "call" }), "webOtpDomain"),
    ] {
        let r = api.send_to("+14155550100", extra.clone()).await;
        assert_eq!(r.status, 400, "{extra}: {}", r.text);
        assert!(
            r.json()["message"].as_str().unwrap().starts_with(&format!("Invalid parameter: {param} (")),
            "{}",
            r.text
        );
    }
    assert!(api.dev.outbox.messages(None).is_empty());
}
