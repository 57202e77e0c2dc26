//! Callbacks from the dev server: signed POST and GET calls to a receiver on loopback for
//! every OTP event, retries with the same `webhook-id`, dead letters, and bad input.

mod common;

use std::sync::Arc;

use common::{receiver::Receiver, Api};
use serde_json::{json, Value};
use tower::ServiceExt;
use twofa::{
    adapters::{clock::AdjustableClock, memory::MemoryStore, outbox::Outbox},
    domain::{account::Account, callbacks::UrlRules, crypto::Keys},
    ports::{AccountStore, Deps, NoScheduler},
};

/// Set the account's callback (and a new webhook secret) over the dev route; the secret.
async fn set_callback(api: &Api, url: &str, method: &str) -> String {
    let r = api
        .http
        .post(format!("{}/dev/accounts", api.base))
        .json(&json!({ "accountSid": api.sid, "callbackUrl": url, "callbackMethod": method, "rotateWebhookSecret": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["policy"]["callbackUrl"], url);
    v["webhookSecret"].as_str().expect("a new secret, shown once").to_owned()
}

#[tokio::test]
async fn send_then_verify_posts_signed_sent_and_verified_events() {
    // Given an account whose callback is a POST receiver on loopback
    let api = Api::start().await;
    let rx = Receiver::start(&[]).await;
    let secret = set_callback(&api, &rx.url, "POST").await;
    // When an OTP is sent and verified
    let sid = api.sent("+14155550100").await;
    let code = api.code_of(&sid).await;
    assert_eq!(api.verify(&sid, &code).await.status, 200);
    // Then the receiver gets `sent` and `verified`, each signed with the account's secret
    let sent = rx.wait_status("sent").await;
    let verified = rx.wait_status("verified").await;
    for call in [&sent, &verified] {
        assert_eq!(call.method, "POST");
        assert_eq!(call.header("content-type"), "application/json");
        assert!(call.signed_by(&secret), "signature: {:?}", call.headers);
        assert!(!call.signed_by("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "another secret does not verify");
        let f = call.fields();
        assert_eq!(f["requestID"], sid);
        assert_eq!(f["accountSid"], api.sid);
        assert_eq!((f["channel"].as_str(), f["to"].as_str()), (Some("sms"), Some("+14155550100")));
        assert_eq!(f["sid"], call.header("webhook-id"), "webhook-id is the event's sid");
        assert!(f["timestamp"].as_str().is_some_and(|t| t.len() >= 20), "{f}");
    }
    assert_ne!(sent.fields()["sid"], verified.fields()["sid"]);
    // And nothing else: one call per event
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(rx.calls().len(), 2, "{:?}", rx.calls().iter().map(|c| c.status()).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_send_with_its_own_get_callback_is_told_sent_and_expired_in_the_query_string() {
    // Given an account without a callback, and a send naming its own GET callback
    let api = Api::start().await;
    let secret = set_callback(&api, "http://127.0.0.1:9/unused", "POST").await;
    let r = api
        .http
        .post(format!("{}/dev/accounts", api.base))
        .json(&json!({ "accountSid": api.sid, "callbackUrl": null }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rx = Receiver::start(&[]).await;
    let url = format!("{}?tenant=a%20b", rx.url);
    let r = api.send_to("+14155550101", json!({ "callbackUrl": url, "callbackMethod": "GET", "timeout": 60 })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sid = r.request_id();
    let sent = rx.wait_status("sent").await;
    // When the OTP's timeout passes unverified
    api.advance(61).await;
    // Then `expired` comes too, as query parameters after the URL's own, signed over the raw query
    let expired = rx.wait_status("expired").await;
    for call in [&sent, &expired] {
        assert_eq!(call.method, "GET");
        assert!(call.query.starts_with("tenant=a%20b&sid=EV"), "{}", call.query);
        assert!(call.body.is_empty());
        assert!(call.signed_by(&secret));
        assert_eq!(call.fields()["requestID"], sid);
    }
    // And the search shows it expired
    let r = api.get(&format!("/2fa/search/{sid}")).await;
    assert!(r.text.contains("expired"), "{}", r.text);
}

/// What a receiver using the Standard Webhooks library does with a call: verify `payload`
/// (the body of a POST, the query string of a GET, exactly as received) against its headers.
fn library_verifies(secret: &str, payload: &str, call: &common::receiver::Call) -> bool {
    standardwebhooks::Webhook::new(secret).expect("a whsec_ secret").verify(payload.as_bytes(), &call.headers).is_ok()
}

#[tokio::test]
async fn a_get_callback_to_a_url_with_spaces_quotes_and_non_ascii_verifies_with_standardwebhooks_over_the_query_received(
) {
    // Given an account whose GET callback URL already has a query with a space, quotes and
    // non-ASCII, as typed (not percent-encoded)
    let api = Api::start().await;
    let rx = Receiver::start(&[]).await;
    let url = format!("{}?note=a b&q=\"x\"&say=it's&name=José", rx.url);
    let secret = set_callback(&api, &url, "GET").await;
    // When an OTP is sent and verified
    let sid = api.sent("+14155550105").await;
    let code = api.code_of(&sid).await;
    assert_eq!(api.verify(&sid, &code).await.status, 200);
    // Then each call's query string, exactly as the receiver got it (percent-encoded on the
    // wire), verifies with the Standard Webhooks library as the payload
    let sent = rx.wait_status("sent").await;
    let verified = rx.wait_status("verified").await;
    for call in [&sent, &verified] {
        assert_eq!(call.method, "GET");
        assert!(call.query.starts_with("note=a%20b&q=%22x%22&say=it%27s&name=Jos%C3%A9&sid=EV"), "{}", call.query);
        assert!(library_verifies(&secret, &call.query, call), "query {:?}, headers {:?}", call.query, call.headers);
        assert!(call.signed_by(&secret));
        assert!(!library_verifies("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &call.query, call), "another secret");
        assert!(!library_verifies(&secret, &call.query.replacen("status=", "status=x", 1), call), "another query");
        // And the URL's own parameters read back as given, the fields after them
        let f = call.fields();
        assert_eq!((f["note"].as_str(), f["q"].as_str()), (Some("a b"), Some("\"x\"")));
        assert_eq!((f["say"].as_str(), f["name"].as_str()), (Some("it's"), Some("José")));
        assert_eq!(f["requestID"], sid);
    }
}

#[tokio::test]
async fn a_post_callback_verifies_with_standardwebhooks_over_the_body() {
    // Given an account whose callback is a POST receiver
    let api = Api::start().await;
    let rx = Receiver::start(&[]).await;
    let secret = set_callback(&api, &rx.url, "POST").await;
    // When an OTP is sent and verified
    let sid = api.sent("+14155550106").await;
    let code = api.code_of(&sid).await;
    assert_eq!(api.verify(&sid, &code).await.status, 200);
    // Then each call's body verifies with the Standard Webhooks library
    for call in [rx.wait_status("sent").await, rx.wait_status("verified").await] {
        assert_eq!(call.method, "POST");
        assert!(library_verifies(&secret, &call.body, &call), "body {:?}, headers {:?}", call.body, call.headers);
        assert!(!library_verifies("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &call.body, &call), "another secret");
        assert!(!library_verifies(&secret, &format!("{} ", call.body), &call), "another body");
    }
}

#[tokio::test]
async fn a_receiver_answering_500_twice_gets_the_event_three_times_with_one_webhook_id() {
    // Given a receiver that answers 500, 500, then 200
    let api = Api::start().await;
    let rx = Receiver::start(&[500, 500]).await;
    let secret = set_callback(&api, &rx.url, "POST").await;
    // When an OTP is sent (and the backoff's 5 s and 30 s pass on the dev clock)
    api.sent("+14155550102").await;
    rx.wait_for("a first call", |c| !c.is_empty()).await;
    api.advance(5).await;
    rx.wait_for("a second call", |c| c.len() >= 2).await;
    api.advance(30).await;
    let calls = rx.wait_for("a third call", |c| c.len() >= 3).await;
    // Then the same event came three times, with the same webhook-id, each signed
    assert_eq!(calls.len(), 3);
    let ids: Vec<&str> = calls.iter().map(|c| c.header("webhook-id")).collect();
    assert!(ids.iter().all(|id| *id == ids[0] && id.starts_with("EV")), "{ids:?}");
    assert!(calls.iter().all(|c| c.signed_by(&secret) && c.status() == "sent"));
    // And it is delivered, not waiting or dead
    let v: Value = api.http.get(format!("{}/dev/callbacks", api.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["delivered"][0]["attempts"], 3, "{v}");
    assert_eq!(v["waiting"].as_array().map(Vec::len), Some(0));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rx.calls().len(), 3, "no fourth call once answered 200");
}

#[tokio::test]
async fn an_event_that_never_gets_a_2xx_ends_in_the_dead_letters_after_a_day() {
    // Given a receiver that always answers 503
    let api = Api::start().await;
    let rx = Receiver::start(&[503; 20]).await;
    set_callback(&api, &rx.url, "POST").await;
    // When an OTP is sent and every retry comes due (23.7 h of backoff on the dev clock)
    api.sent("+14155550103").await;
    let delays = twofa::domain::callbacks::RETRY_DELAYS_S;
    // (it expires meanwhile: that event is retried too, so count the `sent` calls)
    let sent = |c: &[common::receiver::Call]| c.iter().filter(|c| c.status() == "sent").count();
    rx.wait_for("the first call", |c| sent(c) == 1).await;
    for (i, d) in delays.iter().enumerate() {
        api.advance(*d as i64).await;
        rx.wait_for("the next call", |c| sent(c) == i + 2).await;
    }
    // Then it was called 11 times and then given up, visibly, with the reason
    let mut v = Value::Null;
    for _ in 0..100 {
        v = api.http.get(format!("{}/dev/callbacks", api.base)).send().await.unwrap().json().await.unwrap();
        if v["deadLetters"].as_array().is_some_and(|d| d.iter().any(|d| d["event"]["status"] == "sent")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let dead = v["deadLetters"].as_array().unwrap().iter().find(|d| d["event"]["status"] == "sent").unwrap();
    assert_eq!(dead["attempts"], delays.len() + 1, "{v}");
    assert_eq!(dead["event"]["status"], "sent");
    assert_eq!(dead["reason"], "answered 503");
    assert_eq!(sent(&rx.calls()), delays.len() + 1);
}

#[tokio::test]
async fn bad_callback_input_answers_400_naming_the_parameter() {
    let api = Api::start().await;
    for (extra, param) in [
        (json!({ "callbackUrl": "not a url" }), "callbackUrl"),
        (json!({ "callbackUrl": "ftp://example.com/x" }), "callbackUrl"),
        (json!({ "callbackUrl": "https://example.com/x", "callbackMethod": "PUT" }), "callbackMethod"),
        (json!({ "callbackMethod": "GET" }), "callbackMethod"),
    ] {
        let r = api.send_to("+14155550104", extra.clone()).await;
        assert_eq!(r.status, 400, "{extra}: {}", r.text);
        assert!(r.text.contains(param), "{extra}: {}", r.text);
    }
    // And the dev route refuses a bad account callback the same way
    let r = api
        .http
        .post(format!("{}/dev/accounts", api.base))
        .json(&json!({ "accountSid": api.sid, "callbackUrl": "nope" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("callbackUrl"));
}

#[tokio::test]
async fn outside_dev_a_callback_must_be_https_to_a_public_address() {
    // Given the OTP router as a deployment runs it (https and public hosts only)
    let keys = Keys::random();
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(AdjustableClock::default());
    let account = Account::new("AC0123456789abcdef0123456789abcdef".into(), "secret-token", &keys, None, 0);
    store.put_account(&account).await.unwrap();
    let outbox = Arc::new(Outbox::new(clock.clone()).with_url_rules(UrlRules::Public));
    let deps =
        Deps { store, dispatcher: outbox.clone(), clock, keys: Arc::new(keys), scheduler: Arc::new(NoScheduler) };
    let router = twofa::http::otp::router(deps);
    let send = |url: &str| {
        let body = json!({ "service": "2FA", "from": "Twofa", "to": "+14155550100", "body": "Code {code}", "callbackUrl": url });
        axum::http::Request::post("/2fa/send")
            .header("authorization", "Basic QUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjpzZWNyZXQtdG9rZW4=")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap()
    };
    for url in [
        "http://hooks.example.com/otp",
        "https://127.0.0.1/otp",
        "https://10.0.0.7/otp",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/otp",
        "https://localhost/otp",
    ] {
        // When a send names it, Then 400 naming callbackUrl, and nothing is sent
        let resp = router.clone().oneshot(send(url)).await.unwrap();
        assert_eq!(resp.status(), 400, "{url}");
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("callbackUrl"), "{url}");
    }
    assert!(outbox.messages(None).is_empty());
    // And a public https URL is taken
    let resp = router.oneshot(send("https://hooks.example.com/otp")).await.unwrap();
    assert_eq!(resp.status(), 200);
}
