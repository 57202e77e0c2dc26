//! Black-box tests of send, verify and cancel over HTTP against the dev server.

mod common;

use common::{wrong, Api};
use futures::future::join_all;
use reqwest::Method;
use serde_json::json;
use twofa::{
    adapters::outbox::OutboxMode,
    domain::{ids, time, usage::UsageCategory},
    ports::{Clock, OtpStore, RecordStore},
};

const TO: &str = "+14155550100";

// ---- the seed flows, byte for byte --------------------------------------------------------

#[tokio::test]
async fn seed_send_answers_the_seed_envelope() {
    // Given the seed's send request (its curl body, `\{code}` shell escape included)
    let api = Api::start().await;
    let body = "{ \n\"service\" : \"2FA\",\n\"from\" : \"XXXXXXXXXXX\",\n\"to\" : \"919960639901\",\n\"body\": \"Your verification code is: \\{code}\"\n}";
    // When it is posted
    let r = api.call(Method::POST, "/2fa/send", Some(body), "application/json").await;
    // Then the answer is exactly the seed's envelope with a fresh OTP sid
    assert_eq!(r.status, 200, "{}", r.text);
    let sid = r.request_id();
    assert!(ids::is_sid("OTP", &sid), "{sid}");
    assert_eq!(r.text, format!(r#"{{"code":200,"message":"OK","requestID":"{sid}"}}"#));
    // And the SMS carries a six-digit code in the seed's body
    let code = api.code_of(&sid).await;
    assert_eq!(code.len(), 6);
    let outbox = api.dev.outbox.messages(Some("919960639901"));
    assert_eq!(outbox[0].body, format!("Your verification code is: {code}"));
}

#[tokio::test]
async fn seed_verify_answers_ok_with_the_request_id() {
    let api = Api::start().await;
    let sid = api.sent(TO).await;
    let code = api.code_of(&sid).await;
    let r = api.post("/2fa/verify", &json!({ "service": "2FA", "requestId": sid, "code": code })).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text, format!(r#"{{"code":200,"message":"OK","requestID":"{sid}"}}"#));
}

#[tokio::test]
async fn seed_cancel_with_form_body_on_cancel_json_answers_canceled() {
    // Given a pending OTP of a sub-account, and the seed's cancel call: form fields posted to
    // /2fa/cancel.json under a JSON content type
    let api = Api::start().await;
    let (sub, _) = api.sub_account(&api.sid).await;
    let r = api.send_to(TO, json!({ "accountSid": sub })).await;
    let sid = r.request_id();
    let body = format!("requestId={sid}&accountSid={sub}");
    // When
    let r = api.call(Method::POST, "/2fa/cancel.json", Some(&body), "application/json").await;
    // Then
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.text, format!(r#"{{"code":200,"message":"canceled","requestID":"{sid}"}}"#));
}

#[tokio::test]
async fn seed_send_with_undefined_limits_answers_495() {
    let api = Api::start().await;
    let r =
        api.send_to(TO, json!({ "limits": { "limit_on_ip": "127.0.0.1", "limit_on_phone": "+919960639901" } })).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.text, r#"{"code":495,"message":"Invalid Limit Name: limit_on_ip","requestID":null}"#);
}

// ---- verify ----------------------------------------------------------------------------

#[tokio::test]
async fn verify_twice_answers_471() {
    let api = Api::start().await;
    let sid = api.sent(TO).await;
    let code = api.code_of(&sid).await;
    assert_eq!(api.verify(&sid, &code).await.status, 200);
    let r = api.verify(&sid, &code).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.text, format!(r#"{{"code":471,"message":"OTP is already verified","requestID":"{sid}"}}"#));
}

#[tokio::test]
async fn verify_with_wrong_code_answers_474() {
    let api = Api::start().await;
    let sid = api.sent(TO).await;
    let code = api.code_of(&sid).await;
    let r = api.verify(&sid, &wrong(&code)).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.text, format!(r#"{{"code":474,"message":"Invalid OTP Code","requestID":"{sid}"}}"#));
    // And the right code still works afterwards
    assert_eq!(api.verify(&sid, &code).await.status, 200);
}

#[tokio::test]
async fn verify_locks_after_five_wrong_codes() {
    // Given an OTP and five wrong codes
    let api = Api::start().await;
    let sid = api.sent(TO).await;
    let code = api.code_of(&sid).await;
    for _ in 0..5 {
        assert_eq!(api.verify(&sid, &wrong(&code)).await.code(), 474);
    }
    // When the right code comes
    let r = api.verify(&sid, &code).await;
    // Then it is refused: the OTP failed
    assert_eq!(r.status, 429);
    assert_eq!(r.code(), 475);
    assert_eq!(api.post("/2fa/cancel", &json!({ "requestId": sid })).await.code(), 475);
}

#[tokio::test]
async fn verify_unknown_request_id_answers_470_and_a_foreign_one_answers_the_same() {
    let api = Api::start().await;
    let unknown = api.verify(&ids::new_sid("OTP"), "123456").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.text, r#"{"code":470,"message":"Invalid OTP Unique Id","requestID":null}"#);

    // Given an OTP of another account
    let (other, token) = api.other_account().await;
    let r = api
        .post_as(&other, &token, "/2fa/send", &json!({ "service": "2FA", "from": "X", "to": TO, "body": "{code}" }))
        .await;
    let foreign = r.request_id();
    let code = api.code_of(&foreign).await;
    // When this account verifies it with the right code, Then it is as unknown
    let r = api.verify(&foreign, &code).await;
    assert_eq!((r.status, r.text), (unknown.status, unknown.text));
    // And cancel answers as for an unknown sid too
    let r = api.post("/2fa/cancel", &json!({ "requestId": foreign })).await;
    assert_eq!(r.text, r#"{"code":490,"message":"Invalid OTP Unique Id","requestID":null}"#);
    // And the owner can still verify it
    assert_eq!(
        api.post_as(&other, &token, "/2fa/verify", &json!({ "requestId": foreign, "code": code })).await.status,
        200
    );
}

#[tokio::test]
async fn verify_after_timeout_answers_472() {
    let api = Api::start().await;
    let sid = api.send_to(TO, json!({ "timeout": "30" })).await.request_id();
    let code = api.code_of(&sid).await;
    api.advance(31).await;
    let r = api.verify(&sid, &code).await;
    assert_eq!(r.status, 410);
    assert_eq!(r.code(), 472);
}

#[tokio::test]
async fn default_timeout_is_five_minutes() {
    let api = Api::start().await;
    let a = api.sent(TO).await;
    let code_a = api.code_of(&a).await;
    api.advance(299).await;
    let b = api.sent("+14155550199").await;
    let code_b = api.code_of(&b).await;
    assert_eq!(api.verify(&a, &code_a).await.status, 200, "still valid at 299 s");
    api.advance(301).await;
    assert_eq!(api.verify(&b, &code_b).await.code(), 472);
}

#[tokio::test]
async fn verify_by_service_and_number_finds_the_newest_pending_otp() {
    let api = Api::start().await;
    let sid = api.sent(TO).await;
    let code = api.code_of(&sid).await;
    let r = api.post("/2fa/verify", &json!({ "service": "2FA", "number": TO, "code": code })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.request_id(), sid);
    let r = api.post("/2fa/verify", &json!({ "service": "other", "number": TO, "code": code })).await;
    assert_eq!(r.code(), 470);
}

#[tokio::test]
async fn fifty_concurrent_verifies_with_the_right_code_admit_exactly_one() {
    let api = Api::start().await;
    let sid = api.sent(TO).await;
    let code = api.code_of(&sid).await;
    let results = join_all((0..50).map(|_| api.verify(&sid, &code))).await;
    let ok = results.iter().filter(|r| r.status == 200).count();
    let already = results.iter().filter(|r| r.code() == 471).count();
    assert_eq!((ok, already), (1, 49));
}

// ---- cancel ----------------------------------------------------------------------------

#[tokio::test]
async fn canceled_otp_refuses_verify_with_473() {
    let api = Api::start().await;
    let sid = api.sent(TO).await;
    let code = api.code_of(&sid).await;
    let r = api.post("/2fa/cancel", &json!({ "requestId": sid })).await;
    assert_eq!(r.text, format!(r#"{{"code":200,"message":"canceled","requestID":"{sid}"}}"#));
    let r = api.verify(&sid, &code).await;
    assert_eq!((r.status.as_u16(), r.code()), (409, 473));
    // Canceling again is not an error
    assert_eq!(api.post("/2fa/cancel", &json!({ "requestId": sid })).await.status, 200);
}

#[tokio::test]
async fn cancel_of_a_verified_otp_answers_471_and_unknown_answers_490() {
    let api = Api::start().await;
    let sid = api.sent(TO).await;
    let code = api.code_of(&sid).await;
    api.verify(&sid, &code).await;
    let r = api.post("/2fa/cancel", &json!({ "requestId": sid })).await;
    assert_eq!((r.status.as_u16(), r.code()), (409, 471));
    let r = api.post("/2fa/cancel", &json!({ "requestId": ids::new_sid("OTP") })).await;
    assert_eq!((r.status.as_u16(), r.code()), (404, 490));
}

// ---- supersede and guard time ------------------------------------------------------------

#[tokio::test]
async fn a_new_send_cancels_the_pending_one_at_once() {
    let api = Api::start().await;
    let old = api.sent(TO).await;
    let old_code = api.code_of(&old).await;
    api.advance(61).await;
    let new = api.sent(TO).await;
    let new_code = api.code_of(&new).await;
    assert_eq!(api.verify(&old, &old_code).await.code(), 473);
    assert_eq!(api.verify(&new, &new_code).await.status, 200);
}

#[tokio::test]
async fn a_send_to_another_service_does_not_supersede() {
    let api = Api::start().await;
    let old = api.sent(TO).await;
    let old_code = api.code_of(&old).await;
    api.advance(61).await;
    let r = api.send_to(TO, json!({ "service": "other" })).await;
    assert_eq!(r.status, 200);
    assert_eq!(api.verify(&old, &old_code).await.status, 200);
}

#[tokio::test]
async fn old_otp_stays_valid_for_its_own_guard_time() {
    // Given an OTP sent with guardTime 120, superseded 61 s later
    let api = Api::start().await;
    let old = api.send_to(TO, json!({ "guardTime": 120 })).await.request_id();
    let old_code = api.code_of(&old).await;
    api.advance(61).await;
    let new = api.sent(TO).await;
    // Then within the guard time both verify (the old one also by number)
    api.advance(100).await;
    let r = api.post("/2fa/verify", &json!({ "service": "2FA", "number": TO, "code": old_code })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.request_id(), old);
    assert_eq!(api.verify(&new, &api.code_of(&new).await).await.status, 200);
}

#[tokio::test]
async fn a_wrong_code_by_number_counts_on_both_otps_it_was_compared_with() {
    // Given an OTP sent with guardTime 120, superseded 61 s later: verify by number compares
    // a code with both
    let api = Api::start().await;
    let old = api.send_to(TO, json!({ "guardTime": 120 })).await.request_id();
    let old_code = api.code_of(&old).await;
    api.advance(61).await;
    let new = api.sent(TO).await;
    let new_code = api.code_of(&new).await;
    let wrong = (0..10).map(|d| d.to_string().repeat(6)).find(|c| *c != old_code && *c != new_code).unwrap();
    // When five wrong codes are given by number
    for _ in 0..5 {
        let r = api.post("/2fa/verify", &json!({ "service": "2FA", "number": TO, "code": wrong })).await;
        assert_eq!((r.status.as_u16(), r.code()), (401, 474), "{}", r.text);
    }
    // Then each counted on both: neither OTP takes its right code any more
    assert_eq!(api.verify(&old, &old_code).await.code(), 475);
    assert_eq!(api.verify(&new, &new_code).await.code(), 475);
}

#[tokio::test]
async fn old_otp_is_canceled_when_the_guard_time_is_over() {
    let api = Api::start().await;
    let old = api.send_to(TO, json!({ "guardTime": "120" })).await.request_id();
    let old_code = api.code_of(&old).await;
    api.advance(61).await;
    api.sent(TO).await;
    api.advance(120).await;
    assert_eq!(api.verify(&old, &old_code).await.code(), 473);
}

#[tokio::test]
async fn the_new_sends_guard_time_wins() {
    let api = Api::start().await;
    let old = api.send_to(TO, json!({ "guardTime": 200 })).await.request_id();
    let old_code = api.code_of(&old).await;
    api.advance(61).await;
    api.send_to(TO, json!({ "guardTime": 10 })).await;
    api.advance(11).await;
    assert_eq!(api.verify(&old, &old_code).await.code(), 473);
}

#[tokio::test]
async fn guard_time_over_timeout_is_a_400() {
    let api = Api::start().await;
    let r = api.send_to(TO, json!({ "timeout": 60, "guardTime": 61 })).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "Invalid parameter: guardTime (must not exceed timeout)");
}

// ---- default limit -----------------------------------------------------------------------

#[tokio::test]
async fn second_send_within_a_minute_answers_453() {
    let api = Api::start().await;
    api.sent(TO).await;
    let r = api.send_to(TO, json!({})).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text, r#"{"code":453,"message":"Too many OTP request to same destination Number","requestID":null}"#);
    api.advance(60).await;
    assert_eq!(api.send_to(TO, json!({})).await.status, 200);
}

#[tokio::test]
async fn fifty_concurrent_sends_to_one_destination_admit_exactly_one() {
    let api = Api::start().await;
    let results = join_all((0..50).map(|_| api.send_to(TO, json!({})))).await;
    let ok = results.iter().filter(|r| r.status == 200).count();
    let limited = results.iter().filter(|r| r.code() == 453).count();
    assert_eq!((ok, limited), (1, 49));
    assert_eq!(api.dev.outbox.messages(Some(TO)).len(), 1, "exactly one message left");
}

// ---- Idempotency-Key ----------------------------------------------------------------------

/// OTPs the dev account created today, as usage counts them.
async fn created_today(api: &Api) -> u64 {
    let day = time::day(api.dev.clock.now_ms());
    let rows = RecordStore::usage(&*api.dev.store, &api.sid, &day, &day).await.expect("usage");
    rows.into_iter().find(|(k, _)| k.category == UsageCategory::All).map_or(0, |(_, n)| n)
}

#[tokio::test]
async fn same_idempotency_key_twice_answers_the_first_request_id_and_sends_once() {
    // Given a send with an Idempotency-Key
    let api = Api::start().await;
    let first = api.send_keyed("order-42", TO, json!({})).await;
    assert_eq!(first.status, 200, "{}", first.text);
    // When the very same request comes again within the minute of the default limit
    let again = api.send_keyed("order-42", TO, json!({})).await;
    // Then it answers the first response byte for byte, not 453
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.text, first.text);
    // And exactly one message went out, and usage counts one OTP
    assert_eq!(api.dev.outbox.messages(Some(TO)).len(), 1);
    assert_eq!(created_today(&api).await, 1);
    // And the first OTP is the one that verifies
    let sid = first.request_id();
    assert_eq!(api.verify(&sid, &api.code_of(&sid).await).await.status, 200);
    // And a send without the key is still held by the default limit
    assert_eq!(api.send_to(TO, json!({})).await.code(), 453);
}

#[tokio::test]
async fn same_idempotency_key_with_another_request_answers_400_naming_the_header() {
    // Given a send with an Idempotency-Key
    let api = Api::start().await;
    let first = api.send_keyed("k-1", TO, json!({})).await;
    assert_eq!(first.status, 200);
    // When the key comes back with another body, or the same body to another number
    let other_body = api.send_keyed("k-1", TO, json!({ "body": "Code: {code}" })).await;
    let other_to = api.send_keyed("k-1", "+14155550199", json!({})).await;
    // Then each is refused, naming the header, and nothing more was sent
    for r in [other_body, other_to] {
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(
            r.text,
            r#"{"code":400,"message":"Invalid parameter: Idempotency-Key (already used for a different request)","requestID":null}"#
        );
    }
    assert_eq!(api.dev.outbox.messages(None).len(), 1);
}

#[tokio::test]
async fn idempotency_keys_belong_to_the_account_that_sends() {
    // Given a send with key "k-1"
    let api = Api::start().await;
    let mine = api.send_keyed("k-1", TO, json!({})).await.request_id();
    // When another account sends the same request with the same key
    let (other, token) = api.other_account().await;
    let r = api.send_keyed_as(&other, &token, "k-1", TO, json!({})).await;
    // Then it is a send of its own
    assert_eq!(r.status, 200, "{}", r.text);
    assert_ne!(r.request_id(), mine);
    assert_eq!(api.dev.outbox.messages(Some(TO)).len(), 2);
    // And a sub-account the first account acts for has keys of its own too
    let (sub, _) = api.sub_account(&api.sid).await;
    let r = api.send_keyed("k-1", TO, json!({ "accountSid": sub })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_ne!(r.request_id(), mine);
    assert_eq!(api.dev.outbox.messages(Some(TO)).len(), 3);
}

#[tokio::test]
async fn idempotency_key_answers_for_24_hours_then_sends_anew() {
    // Given a send with a key, and its repeat a second before the 24 h are over
    let api = Api::start().await;
    let first = api.send_keyed("daily", TO, json!({})).await.request_id();
    api.advance(24 * 3600 - 1).await;
    assert_eq!(api.send_keyed("daily", TO, json!({})).await.request_id(), first);
    // When the same request comes after the 24 h (and past the default limit's minute)
    api.advance(2).await;
    let r = api.send_keyed("daily", TO, json!({})).await;
    // Then it is a new OTP, delivered
    assert_eq!(r.status, 200, "{}", r.text);
    assert_ne!(r.request_id(), first);
    assert_eq!(api.dev.outbox.messages(Some(TO)).len(), 2);
    // And from then on the key answers the new one
    assert_eq!(api.send_keyed("daily", TO, json!({})).await.request_id(), r.request_id());
}

#[tokio::test]
async fn send_undone_for_a_down_channel_can_be_retried_with_the_same_key() {
    // Given the SMS provider is down and a keyed send answers 503
    let api = Api::start().await;
    api.dev.outbox.set_mode(OutboxMode::Down);
    assert_eq!(api.send_keyed("retry-me", TO, json!({})).await.status, 503);
    // When the provider is back and the client retries with the same key
    api.dev.outbox.set_mode(OutboxMode::Deliver);
    let r = api.send_keyed("retry-me", TO, json!({})).await;
    // Then the send happens for real
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(api.dev.outbox.messages(Some(TO)).len(), 1);
    let sid = r.request_id();
    assert_eq!(api.verify(&sid, &api.code_of(&sid).await).await.status, 200);
    // And a further repeat answers it
    assert_eq!(api.send_keyed("retry-me", TO, json!({})).await.request_id(), sid);
}

#[tokio::test]
async fn twenty_concurrent_sends_with_one_idempotency_key_answer_one_request_id() {
    // Given 20 identical keyed sends at once
    let api = Api::start().await;
    let results = join_all((0..20).map(|_| api.send_keyed("burst", TO, json!({})))).await;
    // Then every one answers 200 with the same requestID, and one message went out
    assert!(results.iter().all(|r| r.status == 200), "{:?}", results.iter().map(|r| &r.text).collect::<Vec<_>>());
    let sid = results[0].request_id();
    assert!(results.iter().all(|r| r.request_id() == sid));
    assert_eq!(api.dev.outbox.messages(Some(TO)).len(), 1);
    assert_eq!(created_today(&api).await, 1);
}

#[tokio::test]
async fn keyed_send_whose_commit_answer_was_lost_still_sends_once() {
    // Given a store that applies the next send's transaction but loses its answer
    let api = Api::start().await;
    api.dev.store.lose_next_commit_answer();
    // When a keyed send comes
    let r = api.send_keyed("lost-answer", TO, json!({})).await;
    // Then on reading again it finds its own record: the OTP is sent, once, and verifies
    assert_eq!(r.status, 200, "{}", r.text);
    let sid = r.request_id();
    assert_eq!(api.dev.outbox.messages(Some(TO)).len(), 1);
    assert_eq!(api.verify(&sid, &api.code_of(&sid).await).await.status, 200);
    assert_eq!(created_today(&api).await, 1);
}

#[tokio::test]
async fn send_without_a_key_whose_commit_answer_was_lost_still_sends_once() {
    // Given a store that applies the next send's transaction but loses its answer
    let api = Api::start().await;
    api.dev.store.lose_next_commit_answer();
    // When a send without an idempotency key comes
    let r = api.send_to(TO, json!({})).await;
    // Then on reading again it finds its OTP under the destination: sent once, and it verifies
    assert_eq!(r.status, 200, "{}", r.text);
    let sid = r.request_id();
    assert_eq!(api.dev.outbox.messages(Some(TO)).len(), 1);
    assert_eq!(api.verify(&sid, &api.code_of(&sid).await).await.status, 200);
    assert_eq!(created_today(&api).await, 1);
}

#[tokio::test]
async fn malformed_idempotency_key_answers_400_and_sends_nothing() {
    // Given keys that are empty, have a space, are not ASCII, are too long, or come twice
    let api = Api::start().await;
    let body = json!({ "service": "2FA", "from": "X", "to": TO, "body": "{code}" });
    let post = |values: Vec<&[u8]>| {
        let mut req = api.http.post(format!("{}/2fa/send", api.base)).basic_auth(&api.sid, Some(&api.token));
        for v in values {
            req = req.header("Idempotency-Key", reqwest::header::HeaderValue::from_bytes(v).expect("header"));
        }
        let req = req.json(&body);
        async move {
            let r = req.send().await.expect("request");
            (r.status().as_u16(), r.json::<serde_json::Value>().await.expect("json")["message"].clone())
        }
    };
    let long = "k".repeat(256);
    let form = json!("Invalid parameter: Idempotency-Key (must be 1 to 255 visible ASCII characters)");
    for bad in [&b""[..], b"two words", "\u{e9}t\u{e9}".as_bytes(), long.as_bytes()] {
        // Then each answers 400 naming the header
        assert_eq!(post(vec![bad]).await, (400, form.clone()), "{bad:?}");
    }
    let twice = post(vec![b"a", b"b"]).await;
    assert_eq!(twice, (400, json!("Invalid parameter: Idempotency-Key (must be given once)")));
    // And nothing was sent, while a 255-character key is fine
    assert_eq!(api.dev.outbox.messages(None).len(), 0);
    assert_eq!(post(vec!["k".repeat(255).as_bytes()]).await.0, 200);
}

// ---- input -------------------------------------------------------------------------------

async fn bad(api: &Api, extra: serde_json::Value) -> String {
    let r = api.send_to(TO, extra).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), 400);
    r.json()["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bad_send_input_gets_a_400_naming_the_parameter() {
    let api = Api::start().await;
    let r = api.post("/2fa/send", &json!({ "service": "2FA", "from": "X", "body": "{code}" })).await;
    assert_eq!(r.json()["message"], "Invalid parameter: to (required)");
    assert_eq!(bad(&api, json!({ "body": "no placeholder" })).await, "Invalid parameter: body (must contain {code})");
    assert_eq!(
        bad(&api, json!({ "length": 3 })).await,
        "Invalid parameter: length (must be a whole number from 4 to 10)"
    );
    assert_eq!(
        bad(&api, json!({ "timeout": "abc" })).await,
        "Invalid parameter: timeout (must be a whole number from 30 to 86400)"
    );
    assert_eq!(bad(&api, json!({ "to": "12-34" })).await, "Invalid parameter: to (must be an E.164 phone number)");
    assert_eq!(
        bad(&api, json!({ "channel": "fax" })).await,
        "Invalid parameter: channel (must be sms, call, email or whatsapp)"
    );
    assert_eq!(bad(&api, json!({ "limits": "{oops" })).await, "Invalid parameter: limits (malformed JSON)");
    assert_eq!(
        bad(&api, json!({ "voice": "robot", "channel": "call" })).await,
        "Invalid parameter: voice (must be man or woman)"
    );
    assert_eq!(
        bad(&api, json!({ "repeat": 6, "channel": "call" })).await,
        "Invalid parameter: repeat (must be a whole number from 1 to 5)"
    );
    assert_eq!(
        bad(&api, json!({ "channel": "email", "to": "a@example.com", "from": "b@example.com" })).await,
        "Invalid parameter: subject (required for email)"
    );
    let r = api.call(Method::POST, "/2fa/send", Some(r#"{"service": "2FA", "to": "#), "application/json").await;
    assert_eq!(r.text, r#"{"code":400,"message":"Invalid parameter: body (malformed JSON)","requestID":null}"#);
    assert_eq!(api.dev.outbox.messages(None).len(), 0, "nothing was sent");
}

#[tokio::test]
async fn body_over_64_kib_answers_413() {
    let api = Api::start().await;
    let big = "x".repeat(65 * 1024);
    let r = api.send_to(TO, json!({ "description": big })).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.code(), 413);
}

#[tokio::test]
async fn verify_without_request_id_or_number_names_request_id() {
    let api = Api::start().await;
    let r = api.post("/2fa/verify", &json!({ "code": "123456" })).await;
    assert_eq!(r.json()["message"], "Invalid parameter: requestId (required)");
    let r = api.post("/2fa/verify", &json!({ "requestId": "OTPx" })).await;
    assert_eq!(r.json()["message"], "Invalid parameter: code (required)");
}

#[tokio::test]
async fn length_sets_the_number_of_digits() {
    let api = Api::start().await;
    let sid = api.send_to(TO, json!({ "length": "10" })).await.request_id();
    let code = api.code_of(&sid).await;
    assert_eq!(code.len(), 10);
    assert_eq!(api.verify(&sid, &code).await.status, 200);
}

#[tokio::test]
async fn email_channel_sends_subject_and_body() {
    let api = Api::start().await;
    let r = api
        .send_to("user@example.com", json!({ "channel": "email", "from": "otp@example.com", "subject": "Your code" }))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = &api.dev.outbox.messages(Some("user@example.com"))[0];
    assert_eq!((sent.channel, sent.subject.as_deref()), ("email", Some("Your code")));
    assert_eq!(api.verify(&r.request_id(), &api.code_of(&r.request_id()).await).await.status, 200);
}

#[tokio::test]
async fn call_channel_reads_the_digits_and_repeats() {
    let api = Api::start().await;
    let r =
        api.send_to(TO, json!({ "channel": "voice", "repeat": 2, "length": 4, "language": "awspolly.ja-JP" })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = &api.dev.outbox.messages(Some(TO))[0];
    assert_eq!(sent.channel, "call");
    let code = api.code_of(&r.request_id()).await;
    assert_eq!(code.len(), 8, "the 4-digit code is read twice: {}", sent.body);
    let spaced: Vec<String> = code[..4].chars().map(String::from).collect();
    assert!(sent.body.contains(&spaced.join(" ")), "{}", sent.body);
}

// ---- auth and accounts -------------------------------------------------------------------

#[tokio::test]
async fn missing_or_wrong_credentials_answer_401_with_a_challenge() {
    let api = Api::start().await;
    let r = api.http.post(format!("{}/2fa/send", api.base)).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"2fa\"");
    assert_eq!(r.text().await.unwrap(), r#"{"code":401,"message":"Authentication failed","requestID":null}"#);
    let r = api.call_as(&api.sid, "wrong", Method::POST, "/2fa/send", Some("{}"), "application/json").await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn the_dev_server_holds_an_allow_list_against_the_callers_socket_address() {
    use twofa::{
        domain::cidr::Cidr,
        ports::{AccountAdminStore, AccountStore},
    };
    // Given an account that allows only 10.0.0.0/8
    let api = Api::start().await;
    let account = api.dev.store.get_account(&api.sid).await.unwrap().expect("account");
    let only = |block: &str| [block.parse::<Cidr>().expect("block")];
    api.dev.store.set_allowed_ips(&account, &only("10.0.0.0/8")).await.unwrap();
    // When it sends from 127.0.0.1
    let r = api.send_to(TO, json!({})).await;
    // Then it is refused
    assert_eq!(r.status, 403, "{}", r.text);
    // And once 127.0.0.1 is allowed, the same send goes through
    api.dev.store.set_allowed_ips(&account, &only("127.0.0.1/32")).await.unwrap();
    let r = api.send_to(TO, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn account_sid_acts_for_a_sub_account_and_keeps_its_records_apart() {
    // Given a sub-account two levels down
    let api = Api::start().await;
    let (child, _) = api.sub_account(&api.sid).await;
    let (grandchild, _) = api.sub_account(&child).await;
    // When the top account sends for it
    let sid = api.send_to(TO, json!({ "accountSid": grandchild })).await.request_id();
    let code = api.code_of(&sid).await;
    // Then the OTP belongs to the grandchild: not visible without accountSid
    assert_eq!(api.verify(&sid, &code).await.code(), 470);
    let r = api.post("/2fa/verify", &json!({ "requestId": sid, "code": code, "accountSid": grandchild })).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn account_sid_that_is_not_a_sub_account_answers_403() {
    let api = Api::start().await;
    let (other, _) = api.other_account().await;
    let r = api.send_to(TO, json!({ "accountSid": other })).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text, r#"{"code":403,"message":"Forbidden","requestID":null}"#);
    // And a sub-account cannot act for its parent
    let (child, child_token) = api.sub_account(&api.sid).await;
    let r = api
        .post_as(
            &child,
            &child_token,
            "/2fa/send",
            &json!({ "service": "2FA", "from": "X", "to": TO, "body": "{code}", "accountSid": api.sid }),
        )
        .await;
    assert_eq!(r.status, 403);
}

// ---- failures ----------------------------------------------------------------------------

#[tokio::test]
async fn channel_down_answers_503_and_leaves_nothing_behind() {
    // Given the SMS provider is down
    let api = Api::start().await;
    api.dev.outbox.set_mode(OutboxMode::Down);
    // When a send comes
    let r = api.send_to(TO, json!({})).await;
    // Then 503, and nothing was consumed: once the provider is back a send goes through at once
    assert_eq!(r.status, 503);
    assert_eq!(r.text, r#"{"code":503,"message":"Service unavailable, retry","requestID":null}"#);
    api.dev.outbox.set_mode(OutboxMode::Deliver);
    let sid = api.sent(TO).await;
    assert_eq!(api.verify(&sid, &api.code_of(&sid).await).await.status, 200);
}

#[tokio::test]
async fn channel_down_does_not_cancel_the_pending_otp_it_would_have_superseded() {
    let api = Api::start().await;
    let old = api.sent(TO).await;
    api.advance(61).await;
    api.dev.outbox.set_mode(OutboxMode::Down);
    assert_eq!(api.send_to(TO, json!({})).await.status, 503);
    api.dev.outbox.set_mode(OutboxMode::Deliver);
    assert_eq!(api.verify(&old, &api.code_of(&old).await).await.status, 200);
}

#[tokio::test]
async fn store_down_answers_503() {
    let api = Api::start().await;
    let sid = api.sent(TO).await;
    api.dev.store.set_down(true);
    assert_eq!(api.verify(&sid, "123456").await.status, 503);
    assert_eq!(api.send_to("+14155550111", json!({})).await.status, 503);
    api.dev.store.set_down(false);
    assert_eq!(api.verify(&sid, &api.code_of(&sid).await).await.status, 200);
    assert_eq!(api.send_to("+14155550111", json!({})).await.status, 200, "the failed send consumed nothing");
}

#[tokio::test]
async fn provider_refusal_still_answers_200() {
    let api = Api::start().await;
    api.dev.outbox.set_mode(OutboxMode::Reject);
    let r = api.send_to(TO, json!({})).await;
    assert_eq!(r.status, 200);
    let otp = OtpStore::get_otp(&*api.dev.store, &api.sid, &r.request_id()).await.unwrap().unwrap();
    assert_eq!(otp.events[0].status.as_str(), "failed");
    assert_eq!(otp.events[0].error_code.as_deref(), Some("30008"));
}

// ---- format and routing ------------------------------------------------------------------

#[tokio::test]
async fn xml_suffix_answers_xml() {
    let api = Api::start().await;
    let r = api.post("/2fa/send.xml", &json!({ "service": "2FA", "from": "X", "to": TO, "body": "{code}" })).await;
    assert_eq!(r.status, 200);
    let sid = api.dev.outbox.messages(None)[0].request_id.clone();
    assert_eq!(
        r.text,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><TwoFactorResponse><code>200</code><message>OK</message><requestID>{sid}</requestID></TwoFactorResponse>"#
        )
    );
    assert_eq!(r.headers["content-type"], "application/xml");
}

#[tokio::test]
async fn unknown_path_is_404_and_wrong_method_is_405() {
    let api = Api::start().await;
    let r = api.get("/2fa/nothing").await;
    assert_eq!((r.status.as_u16(), r.code()), (404, 404));
    let r = api.get("/2fa/send").await;
    assert_eq!((r.status.as_u16(), r.code()), (405, 405));
}

#[tokio::test]
async fn health_answers_ok_without_auth() {
    let api = Api::start().await;
    let r = api.http.get(format!("{}/health", api.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"status":"ok"}"#);
}

#[tokio::test]
async fn the_dev_routes_answer_only_to_a_loopback_host() {
    // Given the dev server with a message in its outbox
    let api = Api::start().await;
    api.sent(TO).await;
    // When the outbox is asked for under another Host (a page whose name now resolves to
    // 127.0.0.1: DNS rebinding), and under loopback names
    let ask = |host: &'static str| {
        let req = api.http.get(format!("{}/dev/outbox", api.base)).header("Host", host);
        async move { req.send().await.expect("outbox").status().as_u16() }
    };
    // Then only the loopback names are answered
    assert_eq!(ask("evil.example").await, 403);
    assert_eq!(ask("evil.example:3000").await, 403);
    assert_eq!(ask("localhost:3000").await, 200);
    assert_eq!(ask("127.0.0.1").await, 200);
    assert_eq!(ask("[::1]:3000").await, 200);
    // And the API itself is not held to it
    let r = api.post("/2fa/verify", &json!({ "service": "2FA", "requestId": "OTPnope", "code": "123456" })).await;
    assert_eq!(r.status, 404);
}
