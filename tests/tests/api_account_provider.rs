//! Providers of an account's own (issue 27): an account names HTTPS endpoints in its policy,
//! its routing table lists them by name, each gets its own `whsec_` secret (answered once),
//! and each one's signed delivery reports come to `POST /2fa/receipts/{accountSid}/{provider}`,
//! moving that account's messages only. On the dev server, with a local stand-in provider.

mod common;

use std::time::Duration;

use common::{provider::Provider, Api};
use serde_json::{json, Value};
use twofa::domain::callbacks::new_secret;

const TO: &str = "+14155550100";

/// `POST /dev/accounts` (no auth: dev only) with `body`; answers the status and JSON.
async fn dev_accounts(api: &Api, body: Value) -> (u16, Value) {
    let r = api.http.post(format!("{}/dev/accounts", api.base)).json(&body).send().await.expect("dev/accounts");
    (r.status().as_u16(), r.json().await.expect("JSON"))
}

/// Account `sid` with provider `acme` at `url` and the SMS routes `routes`; answers acme's
/// secret (the update's answer, this once).
async fn with_provider(api: &Api, sid: &str, url: &str, routes: Value) -> String {
    let body = json!({
        "accountSid": sid,
        "providers": [{ "name": "acme", "url": url }],
        "routes": { "sms": { "*": routes } },
    });
    let (status, answer) = dev_accounts(api, body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["policy"]["providers"], json!([{ "name": "acme", "url": url }]));
    let secrets = answer["providerSecrets"].as_array().expect("the new provider's secret");
    assert_eq!((secrets.len(), secrets[0]["name"].as_str()), (1, Some("acme")));
    secrets[0]["secret"].as_str().unwrap().to_owned()
}

/// The OTP's record as `sid`'s account sees it.
async fn record(api: &Api, sid: &str) -> Value {
    let r = api.get(&format!("/2fa/search/{sid}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// A delivery report to `path`, signed with `secret` now.
async fn report(api: &Api, path: &str, secret: &str, body: &Value) -> common::Resp {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    api.signed_report(path, secret, body, now).await
}

#[tokio::test]
async fn an_accounts_own_provider_receives_the_signed_message_and_the_record_names_it() {
    // Given an account whose SMS go to its own provider acme
    let provider = Provider::start(&[(200, r#"{"messageId":"acme-42"}"#)], Duration::ZERO).await;
    let api = Api::start().await;
    let secret = with_provider(&api, &api.sid, &provider.url, json!(["acme"])).await;
    assert!(secret.starts_with("whsec_"));
    // When it sends an OTP by SMS
    let r = api.send_to(TO, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sid = r.request_id();
    // Then acme got one request, signed with acme's secret, with the number and the code
    let got = provider.got();
    assert_eq!(got.len(), 1);
    standardwebhooks::Webhook::new(&secret).unwrap().verify(got[0].body.as_bytes(), &got[0].headers).expect("signed");
    let m = got[0].json();
    assert_eq!((m["to"].as_str(), m["requestID"].as_str()), (Some(TO), Some(sid.as_str())));
    // And the record's event names acme and its message id; nothing went to the outbox
    let event = &record(&api, &sid).await["events"][0];
    assert_eq!(
        (event["route"].as_str(), event["targetSid"].as_str(), event["channelStatus"].as_str()),
        (Some("acme"), Some("acme-42"), Some("sent")),
        "{event}"
    );
    assert!(api.dev.outbox.messages(None).is_empty());
    // And the code acme was given verifies
    assert_eq!(api.verify(&sid, m["code"].as_str().unwrap()).await.status, 200);
    // And the policy shows acme without its secret, and a later update keeps acme's secret
    let (_, again) =
        dev_accounts(&api, json!({ "accountSid": api.sid, "providers": [{ "name": "acme", "url": provider.url }] }))
            .await;
    assert!(again.get("providerSecrets").is_none(), "{again}");
    assert!(!again.to_string().contains(secret.trim_start_matches("whsec_")));
}

#[tokio::test]
async fn when_the_accounts_provider_is_down_the_message_fails_over_to_the_next_route() {
    // Given an account routing SMS to acme, then the outbox, and acme answering 503
    let provider = Provider::start(&[(503, "down")], Duration::ZERO).await;
    let api = Api::start().await;
    with_provider(&api, &api.sid, &provider.url, json!(["acme", "outbox"])).await;
    // When it sends an OTP
    let r = api.send_to(TO, json!({})).await;
    // Then it goes out through the outbox, once, and the event says so
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(provider.got().len(), 1);
    let out = api.dev.outbox.messages(Some(TO));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].route, "outbox");
    assert_eq!(record(&api, &r.request_id()).await["events"][0]["route"], "outbox");
}

#[tokio::test]
async fn a_signed_report_at_the_accounts_receipt_path_moves_the_status_to_delivered() {
    // Given an SMS the account's provider acme took as acme-1
    let provider = Provider::start(&[(200, r#"{"messageId":"acme-1"}"#)], Duration::ZERO).await;
    let api = Api::start().await;
    let secret = with_provider(&api, &api.sid, &provider.url, json!(["acme"])).await;
    let sid = api.sent(TO).await;
    let path = format!("/2fa/receipts/{}/acme", api.sid);
    let delivered = json!({ "messageId": "acme-1", "status": "delivered" });
    // When a report comes signed with another secret, or unsigned
    let forged = report(&api, &path, &new_secret(), &delivered).await;
    let unsigned = api.http.post(format!("{}{path}", api.base)).json(&delivered).send().await.unwrap();
    // Then each is 401 and the event is still sent
    assert_eq!((forged.status.as_u16(), forged.code()), (401, 401), "{}", forged.text);
    assert_eq!(unsigned.status(), 401);
    assert_eq!(record(&api, &sid).await["events"][0]["channelStatus"], "sent");
    // And a provider or account that is not there is 404
    assert_eq!(report(&api, &format!("/2fa/receipts/{}/other", api.sid), &secret, &delivered).await.status, 404);
    assert_eq!(report(&api, "/2fa/receipts/ACnope/acme", &secret, &delivered).await.status, 404);
    // When acme reports it delivered, signed with its secret
    let r = report(&api, &path, &secret, &delivered).await;
    // Then it is taken, and the event reads delivered
    assert_eq!((r.status.as_u16(), r.json()["outcome"].as_str()), (200, Some("applied")), "{}", r.text);
    assert_eq!(record(&api, &sid).await["events"][0]["channelStatus"], "delivered");
    // And the deployment's receipt path knows no acme (the account's provider is its own)
    assert_eq!(report(&api, "/2fa/receipts/acme", &secret, &delivered).await.status, 401);
}

#[tokio::test]
async fn another_accounts_provider_cannot_report_on_your_messages() {
    // Given account A's SMS taken by its provider acme as acme-1
    let provider = Provider::start(&[(200, r#"{"messageId":"acme-1"}"#)], Duration::ZERO).await;
    let api = Api::start().await;
    with_provider(&api, &api.sid, &provider.url, json!(["acme"])).await;
    let sid = api.sent(TO).await;
    // And account B with a provider of its own, also named acme
    let (b, _) = api.other_account().await;
    let b_secret = with_provider(&api, &b, &provider.url, json!(["acme"])).await;
    // When B's provider reports A's message delivered, well signed, on B's path
    let delivered = json!({ "messageId": "acme-1", "status": "delivered" });
    let r = report(&api, &format!("/2fa/receipts/{b}/acme"), &b_secret, &delivered).await;
    // Then it is taken as a message B does not have, and A's event is unchanged
    assert_eq!((r.status.as_u16(), r.json()["outcome"].as_str()), (200, Some("unknown")), "{}", r.text);
    assert_eq!(record(&api, &sid).await["events"][0]["channelStatus"], "sent");
    // And B's secret does not sign for A's path
    let r = report(&api, &format!("/2fa/receipts/{}/acme", api.sid), &b_secret, &delivered).await;
    assert_eq!(r.status, 401);
    assert_eq!(record(&api, &sid).await["events"][0]["channelStatus"], "sent");
}

#[tokio::test]
async fn a_bad_provider_in_a_policy_update_answers_400_naming_providers() {
    let api = Api::start().await;
    for providers in [
        json!([{ "name": "acme", "url": "ftp://sms.acme.example/send" }]),
        json!([{ "name": "sns", "url": "https://sms.acme.example/send" }]),
        json!([{ "name": "has space", "url": "https://sms.acme.example/send" }]),
        json!([{ "name": "acme", "url": "https://a.example/" }, { "name": "acme", "url": "https://b.example/" }]),
    ] {
        let (status, answer) = dev_accounts(&api, json!({ "accountSid": api.sid, "providers": providers })).await;
        assert_eq!(status, 400, "{providers}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("providers"), "{answer}");
    }
    // And a rotation of a provider the account does not have names rotateProviderSecret
    let (status, answer) = dev_accounts(&api, json!({ "accountSid": api.sid, "rotateProviderSecret": "acme" })).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("rotateProviderSecret"), "{answer}");
}

#[tokio::test]
async fn the_deployments_provider_cannot_report_on_a_message_an_accounts_own_provider_sent() {
    // Given a deployment provider `own` and an account provider acme that answer the same id
    let same = r#"{"messageId":"shared-id-1"}"#;
    let account_side = Provider::start(&[(200, same)], Duration::ZERO).await;
    let deployment_side = Provider::start(&[(200, same)], Duration::ZERO).await;
    let deployment_secret = new_secret();
    let config = twofa::adapters::provider::ProviderConfig::new("own", &deployment_side.url, &deployment_secret, true)
        .expect("a provider");
    let dev = twofa_local::Dev::new(twofa::domain::crypto::Keys::random())
        .with_sms_provider(twofa::adapters::provider::HttpProvider::new(config));
    let api = Api::start_with(dev).await;
    with_provider(&api, &api.sid, &account_side.url, json!(["acme"])).await;
    let r = api.send_to(TO, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sid = r.request_id();
    // When the deployment's provider reports that id delivered
    let body = json!({ "messageId": "shared-id-1", "status": "delivered" });
    let answer = report(&api, "/2fa/receipts/own", &deployment_secret, &body).await;
    // Then nothing moved: the message is acme's, reported at the account's own path only
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(record(&api, &sid).await["events"][0]["channelStatus"], "sent");
}
