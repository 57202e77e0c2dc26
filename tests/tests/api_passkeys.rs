//! Black-box tests of passkey factors (issue 29): registration and authentication ceremonies
//! over HTTP on the dev server, answered by a software authenticator that speaks as Chrome's
//! `credential.toJSON()` does (`common::authenticator`). The browser itself is in
//! tests/browser/test_passkeys.py.

mod common;

use common::{assert_400_naming, assert_api_error, authenticator::Authenticator, Api, Resp};
use futures::future::join_all;
use serde_json::{json, Value};
use twofa::domain::policy::{update_policy, PolicyUpdate};

const ENTITY: &str = "user-42";
const RP_ID: &str = "example.com";
const ORIGIN: &str = "https://app.example.com";

fn factors_path(entity: &str) -> String {
    format!("/2fa/entities/{entity}/factors")
}

/// Given a dev server whose account's relying party is example.com, used from `ORIGIN`.
async fn start() -> Api {
    let api = Api::start().await;
    allow_passkeys(&api, &api.sid).await;
    api
}

async fn allow_passkeys(api: &Api, sid: &str) {
    let update: PolicyUpdate =
        serde_json::from_value(json!({ "passkeys": { "rpId": RP_ID, "origins": [ORIGIN] } })).unwrap();
    update_policy(api.dev.store.as_ref(), &api.dev.deps.keys, sid, update).await.expect("policy");
}

/// A new passkey factor of `ENTITY`: its sid and the creation options.
async fn create(api: &Api) -> (String, Value) {
    let r = api.post(&factors_path(ENTITY), &json!({ "type": "passkey", "friendlyName": "Laptop" })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.json()["data"].clone();
    (data["sid"].as_str().unwrap().to_owned(), data["options"].clone())
}

async fn confirm(api: &Api, sid: &str, credential: &str) -> Resp {
    api.post(&format!("{}/{sid}/confirm", factors_path(ENTITY)), &json!({ "credential": credential })).await
}

/// A registered (verified) passkey factor of `ENTITY` held by `key`.
async fn registered(api: &Api, key: &mut Authenticator) -> String {
    let (sid, options) = create(api).await;
    let r = confirm(api, &sid, &key.register(&options, ORIGIN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    sid
}

/// A challenge of factor `sid`: its requestID and request options.
async fn challenge(api: &Api, sid: &str) -> (String, Value) {
    let r = api.post(&format!("{}/{sid}/challenges", factors_path(ENTITY)), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!((body["code"].as_i64(), body["message"].as_str()), (Some(200), Some("OK")), "{body}");
    (r.request_id(), body["options"].clone())
}

async fn verify(api: &Api, sid: &str, request_id: &str, credential: &str) -> Resp {
    let body = json!({ "requestId": request_id, "credential": credential });
    api.post(&format!("{}/{sid}/verify", factors_path(ENTITY)), &body).await
}

#[tokio::test]
async fn a_passkey_registers_and_then_signs_in_through_a_challenge() {
    // Given an account with a relying party
    let api = start().await;
    let mut key = Authenticator::new();
    // When it creates a passkey factor
    let (sid, options) = create(&api).await;
    // Then the options ask the browser for a resident key with user verification, for the RP
    assert_eq!(options["rp"]["id"], RP_ID, "{options}");
    assert_eq!(options["authenticatorSelection"]["userVerification"], "required", "{options}");
    assert!(options["challenge"].as_str().is_some_and(|c| c.len() >= 22), "{options}");
    let factor = api.get(&format!("{}/{sid}", factors_path(ENTITY))).await.json()["data"].clone();
    assert_eq!((&factor["type"], &factor["status"]), (&json!("passkey"), &json!("unverified")));
    // When the authenticator's answer confirms it
    let r = confirm(&api, &sid, &key.register(&options, ORIGIN)).await;
    // Then it is verified
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["data"]["status"], "verified");
    // When it is challenged and the authenticator signs the request options
    let (request_id, options) = challenge(&api, &sid).await;
    assert!(request_id.starts_with("OTP"), "{request_id}");
    assert_eq!(options["rpId"], RP_ID, "{options}");
    assert_eq!(options["allowCredentials"][0]["id"], key.credential_id_b64(), "{options}");
    let r = verify(&api, &sid, &request_id, &key.assert(&options, ORIGIN)).await;
    // Then the challenge is verified, answered as /2fa/verify answers
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json(), json!({ "code": 200, "message": "OK", "requestID": request_id }));
    // And search shows it on channel passkey, from the factor to the entity
    let rec = api.get(&format!("/2fa/search/{request_id}")).await;
    assert_eq!(rec.status, 200, "{}", rec.text);
    let rec = rec.json();
    let rec = if rec["data"].is_object() { rec["data"].clone() } else { rec };
    assert_eq!(rec["status"], "success", "{rec}");
    assert_eq!((&rec["events"][0]["channel"], &rec["events"][0]["sender"]), (&json!("passkey"), &json!(sid)));
    // And usage counts one passkey challenge, insights one verification that sent nothing
    let usage = api.get("/2fa/usage/records?channel=passkey").await;
    assert!(usage.text.contains("\"count\":\"1\""), "{}", usage.text);
    let insights = api.get("/2fa/insights?range=24h").await.json()["data"].clone();
    assert_eq!(insights["verifiedSendingNothing"], json!(1), "{insights}");
}

#[tokio::test]
async fn a_cloned_credential_with_a_stale_counter_is_refused() {
    // Given a registered passkey, and a copy of its key taken now (its counter as it is)
    let api = start().await;
    let mut key = Authenticator::new();
    let sid = registered(&api, &mut key).await;
    let mut clone = key.clone_stale();
    // And the original signs in once (its counter moves on)
    let (first, options) = challenge(&api, &sid).await;
    assert_eq!(verify(&api, &sid, &first, &key.assert(&options, ORIGIN)).await.status, 200);
    // When the copy signs the next challenge, with a counter no higher than the one stored
    let (second, options) = challenge(&api, &sid).await;
    let r = verify(&api, &sid, &second, &clone.assert(&options, ORIGIN)).await;
    // Then it is refused as a wrong code is
    assert_api_error(&r, 401, 474);
    // And the original still signs that challenge in
    let r = verify(&api, &sid, &second, &key.assert(&options, ORIGIN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn a_ceremony_from_another_origin_is_refused_at_registration_and_at_sign_in() {
    // Given an account whose relying party is used from ORIGIN only
    let api = start().await;
    let mut key = Authenticator::new();
    // When a registration comes from another origin under the same RP id
    let (sid, options) = create(&api).await;
    let r = confirm(&api, &sid, &key.register(&options, "https://evil.example.com")).await;
    // Then it is refused (and counted), and the factor stays unverified
    assert_api_error(&r, 401, 474);
    let factor = api.get(&format!("{}/{sid}", factors_path(ENTITY))).await.json()["data"].clone();
    assert_eq!(factor["status"], "unverified");
    // When a registered passkey signs a challenge from another origin
    let mut key = Authenticator::new();
    let sid = registered(&api, &mut key).await;
    let (request_id, options) = challenge(&api, &sid).await;
    let r = verify(&api, &sid, &request_id, &key.assert(&options, "https://evil.example.com")).await;
    // Then it is refused
    assert_api_error(&r, 401, 474);
}

#[tokio::test]
async fn an_assertion_without_user_verification_is_refused() {
    // Given a registered passkey whose authenticator then stops verifying its user
    let api = start().await;
    let mut key = Authenticator::new();
    let sid = registered(&api, &mut key).await;
    key.set_user_verified(false);
    // When it signs a challenge
    let (request_id, options) = challenge(&api, &sid).await;
    let r = verify(&api, &sid, &request_id, &key.assert(&options, ORIGIN)).await;
    // Then it is refused
    assert_api_error(&r, 401, 474);
}

#[tokio::test]
async fn an_assertion_for_one_challenge_does_not_verify_another() {
    // Given a registered passkey and two challenges, the second cancelling the first
    let api = start().await;
    let mut key = Authenticator::new();
    let sid = registered(&api, &mut key).await;
    let (_, first_options) = challenge(&api, &sid).await;
    let (second, _) = challenge(&api, &sid).await;
    // When the assertion signed for the first is presented for the second
    let r = verify(&api, &sid, &second, &key.assert(&first_options, ORIGIN)).await;
    // Then it is refused
    assert_api_error(&r, 401, 474);
}

#[tokio::test]
async fn of_concurrent_verifies_of_one_challenge_exactly_one_succeeds() {
    for key in [Authenticator::new(), Authenticator::synced()] {
        // Given a registered passkey (one with a counter, one synced whose counter stays 0)
        let api = start().await;
        let mut key = key;
        let sid = registered(&api, &mut key).await;
        let (request_id, options) = challenge(&api, &sid).await;
        let assertion = key.assert(&options, ORIGIN);
        // When one assertion is presented eight times at once
        let answers = join_all((0..8).map(|_| verify(&api, &sid, &request_id, &assertion))).await;
        // Then exactly one verifies
        let ok = answers.iter().filter(|r| r.status == 200).count();
        assert_eq!(ok, 1, "{:?}", answers.iter().map(|r| &r.text).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn five_refused_assertions_lock_the_challenge() {
    // Given a registered passkey and a challenge
    let api = start().await;
    let mut key = Authenticator::new();
    let sid = registered(&api, &mut key).await;
    let (request_id, options) = challenge(&api, &sid).await;
    // When five assertions from another origin are refused
    for _ in 0..5 {
        assert_api_error(
            &verify(&api, &sid, &request_id, &key.assert(&options, "https://x.example.com")).await,
            401,
            474,
        );
    }
    // Then a right one no longer verifies it
    let r = verify(&api, &sid, &request_id, &key.assert(&options, ORIGIN)).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.code(), 475, "{}", r.text);
}

#[tokio::test]
async fn bad_input_answers_400_naming_its_parameter() {
    // Given an account without a relying party: a passkey cannot be created
    let api = Api::start().await;
    let r = api.post(&factors_path(ENTITY), &json!({ "type": "passkey" })).await;
    assert_400_naming(&r, "type");
    // Given one with a relying party and a registered passkey
    allow_passkeys(&api, &api.sid).await;
    let mut key = Authenticator::new();
    let (sid, options) = create(&api).await;
    // When the confirmation is no registration, or the code of an app
    assert_400_naming(&confirm(&api, &sid, "{\"id\":1}").await, "credential");
    let r = api.post(&format!("{}/{sid}/confirm", factors_path(ENTITY)), &json!({ "code": "123456" })).await;
    assert_400_naming(&r, "credential");
    // (nothing was counted: it still confirms)
    assert_eq!(confirm(&api, &sid, &key.register(&options, ORIGIN)).await.status, 200);
    // When a verify has no credential, or not an assertion
    let (request_id, _) = challenge(&api, &sid).await;
    let r = api.post(&format!("{}/{sid}/verify", factors_path(ENTITY)), &json!({ "requestId": request_id })).await;
    assert_400_naming(&r, "credential");
    assert_400_naming(&verify(&api, &sid, &request_id, "not json").await, "credential");
    // When /2fa/verify is given a passkey's challenge and a code
    let r = api.verify(&request_id, "123456").await;
    assert_400_naming(&r, "requestId");
    // When a user name is not one WebAuthn takes
    let r = api.post(&factors_path(ENTITY), &json!({ "type": "passkey", "userName": "two words" })).await;
    assert_400_naming(&r, "userName");
}

#[tokio::test]
async fn another_accounts_passkey_and_challenge_answer_as_unknown_ones() {
    // Given a registered passkey and a challenge of one account
    let api = start().await;
    let mut key = Authenticator::new();
    let sid = registered(&api, &mut key).await;
    let (request_id, options) = challenge(&api, &sid).await;
    let assertion = key.assert(&options, ORIGIN);
    // And another account with the same relying party
    let (other, token) = api.other_account().await;
    allow_passkeys(&api, &other).await;
    // When the other account verifies the challenge or challenges the factor
    let body = json!({ "requestId": request_id, "credential": assertion });
    let r = api.post_as(&other, &token, &format!("{}/{sid}/verify", factors_path(ENTITY)), &body).await;
    // Then both answer as unknown ones
    assert_api_error(&r, 404, 470);
    let r = api.post_as(&other, &token, &format!("{}/{sid}/challenges", factors_path(ENTITY)), &json!({})).await;
    assert_api_error(&r, 404, 480);
    // And the owner's verify still succeeds
    assert_eq!(verify(&api, &sid, &request_id, &assertion).await.status, 200);
}

#[tokio::test]
async fn passkey_routes_answer_xml_by_suffix() {
    // Given a registered passkey
    let api = start().await;
    let mut key = Authenticator::new();
    let sid = registered(&api, &mut key).await;
    // When it is challenged through the .xml twin
    let r = api.post(&format!("{}/{sid}/challenges.xml", factors_path(ENTITY)), &json!({})).await;
    // Then the answer is XML with the requestID
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("application/xml"));
    assert!(r.text.contains("<requestID>OTP"), "{}", r.text);
    // And a verify through its .xml twin answers XML too
    let (request_id, options) = challenge(&api, &sid).await;
    let body = json!({ "requestId": request_id, "credential": key.assert(&options, ORIGIN) });
    let r = api.post(&format!("{}/{sid}/verify.xml", factors_path(ENTITY)), &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("<code>200</code>"), "{}", r.text);
}

#[tokio::test]
async fn a_challenge_replayed_with_its_idempotency_key_answers_the_same_request_and_options() {
    // Given a registered passkey
    let api = start().await;
    let mut key = Authenticator::new();
    let sid = registered(&api, &mut key).await;
    let path = format!("{}/{sid}/challenges", factors_path(ENTITY));
    let challenge = || async {
        let req = api.http.post(format!("{}{path}", api.base)).basic_auth(&api.sid, Some(&api.token));
        Api::finish(req.header("Idempotency-Key", "login-1"), Some("{}"), "application/json").await
    };
    // When the same challenge is asked for twice with one Idempotency-Key
    let (first, again) = (challenge().await, challenge().await);
    // Then both answer the same requestID and options
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json(), again.json());
    // And an assertion of those options verifies it
    let (request_id, options) = (first.request_id(), first.json()["options"].clone());
    let r = verify(&api, &sid, &request_id, &key.assert(&options, ORIGIN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
}
