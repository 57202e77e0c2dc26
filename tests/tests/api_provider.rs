//! Your own provider (issue 27): the dev server sends each SMS as a Standard-Webhooks-signed
//! JSON request to an endpoint of the customer's, here a local stand-in, and takes its signed
//! delivery reports at `POST /2fa/receipts/{provider}`.

mod common;

use std::time::Duration;

use common::{provider::Provider, Api};
use serde_json::{json, Value};
use twofa::{
    adapters::provider::{HttpProvider, ProviderConfig},
    domain::{callbacks::new_secret, crypto::Keys},
};
use twofa_local::Dev;

const TO: &str = "+14155550100";

/// A dev server whose SMS go to `url` as provider `acme`, signed with the secret answered.
async fn api_with_provider(url: &str, timeout: Duration) -> (Api, String) {
    let secret = new_secret();
    let config = ProviderConfig::new("acme", url, &secret, true).expect("a provider");
    let dev = Dev::new(Keys::random()).with_sms_provider(HttpProvider::with_timeout(config, timeout));
    (Api::start_with(dev).await, secret)
}

/// The OTP's record as the search API shows it.
async fn record(api: &Api, sid: &str) -> Value {
    let r = api.get(&format!("/2fa/search/{sid}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// A delivery report for `message_id`, signed with `secret` at `at` (Unix seconds).
async fn report(api: &Api, provider: &str, secret: &str, body: &Value, at: i64) -> common::Resp {
    api.signed_report(&format!("/2fa/receipts/{provider}"), secret, body, at).await
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn an_sms_goes_to_your_provider_signed_and_its_message_id_is_the_events_target() {
    // Given a deployment whose SMS go to the customer's provider
    let provider = Provider::start(&[(200, r#"{"messageId":"acme-7f3a"}"#)], Duration::ZERO).await;
    let (api, secret) = api_with_provider(&provider.url, Duration::from_secs(5)).await;
    // When an OTP is sent by SMS in Brazilian Portuguese
    let r = api.post("/2fa/send", &json!({ "service": "Acme", "from": "Acme", "to": TO, "locale": "pt-BR" })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sid = r.request_id();
    // Then the provider got one request, which verifies with the provider's secret
    let got = provider.got();
    assert_eq!(got.len(), 1);
    standardwebhooks::Webhook::new(&secret).unwrap().verify(got[0].body.as_bytes(), &got[0].headers).expect("signed");
    // And it carries the destination, channel, text, code, request id and locale
    let m = got[0].json();
    assert_eq!(
        (m["to"].as_str(), m["channel"].as_str(), m["requestID"].as_str()),
        (Some(TO), Some("sms"), Some(sid.as_str()))
    );
    assert_eq!(m["locale"], "pt-BR");
    let code = m["code"].as_str().expect("code").to_owned();
    assert!(code.len() >= 4 && code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    assert!(m["text"].as_str().unwrap().contains(&code), "{m}");
    // And the provider's message id is the event's target, sent; nothing went to the outbox
    let event = &record(&api, &sid).await["events"][0];
    assert_eq!((event["targetSid"].as_str(), event["channelStatus"].as_str()), (Some("acme-7f3a"), Some("sent")));
    assert!(api.dev.outbox.messages(None).is_empty());
    // And the code the provider was given verifies
    assert_eq!(api.verify(&sid, &code).await.status, 200);
}

#[tokio::test]
async fn a_refusal_by_your_provider_is_a_failed_event_and_is_not_sent_again() {
    // Given a provider that refuses the number
    let provider = Provider::start(&[(422, "number not reachable")], Duration::ZERO).await;
    let (api, _) = api_with_provider(&provider.url, Duration::from_secs(5)).await;
    // When an OTP is sent
    let r = api.send_to(TO, json!({})).await;
    // Then the send answers 200 and its event is failed with the provider's words
    assert_eq!(r.status, 200, "{}", r.text);
    let event = &record(&api, &r.request_id()).await["events"][0];
    assert_eq!(event["channelStatus"], "failed");
    assert_eq!(event["channelErrorCode"], "PROVIDER_422");
    assert_eq!(event["channelErrorMessage"], "number not reachable");
    // And the provider was asked once, not again
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(provider.got().len(), 1);
}

#[tokio::test]
async fn a_provider_that_is_down_answers_503_and_leaves_nothing_behind() {
    // Given a provider that fails (5xx), throttles (429) or does not answer in time, or no
    // provider listening at all
    let slow = Provider::start(&[], Duration::from_secs(3)).await;
    let cases = [
        ("5xx", Provider::start(&[(502, "bad gateway")], Duration::ZERO).await.url, Duration::from_secs(5)),
        ("429", Provider::start(&[(429, "slow down")], Duration::ZERO).await.url, Duration::from_secs(5)),
        ("timeout", slow.url.clone(), Duration::from_millis(300)),
        ("closed", "http://127.0.0.1:9/sms".to_owned(), Duration::from_secs(5)),
    ];
    for (case, url, timeout) in cases {
        let (api, _) = api_with_provider(&url, timeout).await;
        // When an OTP is sent
        let r = api.send_to(TO, json!({})).await;
        // Then 503, and nothing was written: no record, and the number can be sent to at once
        // (a kept send would hold the one-a-minute limit), within the same minute
        assert_eq!(r.status, 503, "{case}: {}", r.text);
        let search = api.get("/2fa/search").await;
        assert_eq!(search.json()["twoFaOtpSdrs"].as_array().map(Vec::len), Some(0), "{case}: {}", search.text);
        if case == "5xx" || case == "429" {
            let again = api.send_to(TO, json!({})).await;
            assert_eq!(again.status, 200, "{case}: the failed send consumed nothing: {}", again.text);
        }
    }
    // And the request that timed out was not sent again
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(slow.got().len(), 1);
}

#[tokio::test]
async fn a_signed_delivery_report_moves_the_channel_status_to_delivered_once() {
    // Given an SMS the provider took as `acme-1`
    let provider = Provider::start(&[(200, r#"{"messageId":"acme-1"}"#)], Duration::ZERO).await;
    let (api, secret) = api_with_provider(&provider.url, Duration::from_secs(5)).await;
    let sid = api.sent(TO).await;
    // When the provider reports it delivered, signed with its secret
    let delivered = json!({ "messageId": "acme-1", "status": "delivered" });
    let r = report(&api, "acme", &secret, &delivered, now_secs()).await;
    // Then it is taken, and the event reads delivered
    assert_eq!((r.status.as_u16(), r.json()["outcome"].as_str()), (200, Some("applied")), "{}", r.text);
    assert_eq!(record(&api, &sid).await["events"][0]["channelStatus"], "delivered");
    // And a late failure report changes nothing (forward only)
    let failed = json!({ "messageId": "acme-1", "status": "failed", "errorCode": "X1" });
    let r = report(&api, "acme", &secret, &failed, now_secs()).await;
    assert_eq!(r.json()["outcome"], "unchanged");
    assert_eq!(record(&api, &sid).await["events"][0]["channelStatus"], "delivered");
    // And a report of a message that is not ours is taken, and changes nothing
    let other = json!({ "messageId": "acme-999", "status": "delivered" });
    assert_eq!(report(&api, "acme", &secret, &other, now_secs()).await.json()["outcome"], "unknown");
}

#[tokio::test]
async fn a_badly_signed_report_is_refused_and_changes_nothing() {
    // Given an SMS the provider took as `acme-1`
    let provider = Provider::start(&[(200, r#"{"messageId":"acme-1"}"#)], Duration::ZERO).await;
    let (api, secret) = api_with_provider(&provider.url, Duration::from_secs(5)).await;
    let sid = api.sent(TO).await;
    let delivered = json!({ "messageId": "acme-1", "status": "delivered" });
    // When reports come signed with another secret, or signed ten minutes ago (a replay)
    let forged = report(&api, "acme", &new_secret(), &delivered, now_secs()).await;
    let replayed = report(&api, "acme", &secret, &delivered, now_secs() - 600).await;
    // Then each is 401, and the event is still sent
    assert_eq!((forged.status.as_u16(), forged.code()), (401, 401), "{}", forged.text);
    assert_eq!((replayed.status.as_u16(), replayed.code()), (401, 401), "{}", replayed.text);
    // And unsigned, it is 401 too
    let unsigned = api.http.post(format!("{}/2fa/receipts/acme", api.base)).json(&delivered).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    // And a report for a provider this deployment does not have is 401 as well (whatever its
    // signature: which providers exist is not told)
    assert_eq!(report(&api, "other", &secret, &delivered, now_secs()).await.status, 401);
    assert_eq!(record(&api, &sid).await["events"][0]["channelStatus"], "sent");
    // And a well-signed report with a bad field is a 400 naming it
    let bad = report(&api, "acme", &secret, &json!({ "messageId": "acme-1", "status": "read" }), now_secs()).await;
    assert_eq!(bad.status, 400);
    assert!(bad.json()["message"].as_str().unwrap().contains("status"), "{}", bad.text);
    assert_eq!(record(&api, &sid).await["events"][0]["channelStatus"], "sent");
}
