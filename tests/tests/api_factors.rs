//! Black-box tests of factors that send nothing (issue 29): an entity's authenticator-app
//! (TOTP) factors over HTTP on the dev server, codes computed as an app computes them from the
//! secret the API shows once, time moved on the dev clock.

mod common;

use common::{assert_400_naming, assert_api_error, base32_decode, wrong, Api, Resp};
use futures::future::join_all;
use serde_json::{json, Value};
use twofa::{
    domain::{
        factor::{TotpAlgorithm, TotpParams},
        totp,
    },
    ports::Clock,
};

const ENTITY: &str = "user-42";

/// A factor as created: its sid and what an app needs to make its codes.
struct App {
    sid: String,
    seed: Vec<u8>,
    params: TotpParams,
}

impl App {
    /// The code the app shows at `now_ms`, `steps` time steps off.
    fn code_at(&self, now_ms: i64, steps: i64) -> String {
        totp::code(&self.seed, &self.params, totp::step_at(&self.params, now_ms) + steps)
    }

    fn code(&self, api: &Api) -> String {
        self.code_at(api.dev.clock.now_ms(), 0)
    }
}

fn factors_path(entity: &str) -> String {
    format!("/2fa/entities/{entity}/factors")
}

async fn create(api: &Api, entity: &str, extra: Value) -> (App, Value) {
    let r = api.post(&factors_path(entity), &extra).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.json()["data"].clone();
    let algorithm = TotpAlgorithm::parse(data["algorithm"].as_str().unwrap()).unwrap();
    let params = TotpParams { algorithm, digits: data["digits"].as_u64().unwrap() as u8, period_secs: 30 };
    let app = App {
        sid: data["sid"].as_str().unwrap().to_owned(),
        seed: base32_decode(data["secret"].as_str().unwrap()),
        params,
    };
    (app, data)
}

async fn confirm(api: &Api, entity: &str, sid: &str, code: &str) -> Resp {
    api.post(&format!("{}/{sid}/confirm", factors_path(entity)), &json!({ "code": code })).await
}

/// A confirmed factor of `ENTITY`, the dev clock then moved to the next time step (the
/// confirming code's step is used).
async fn confirmed(api: &Api, extra: Value) -> App {
    let (app, _) = create(api, ENTITY, extra).await;
    let r = confirm(api, ENTITY, &app.sid, &app.code(api)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    api.advance(30).await;
    app
}

async fn challenge(api: &Api, sid: &str) -> String {
    challenge_in(api, sid, "2FA").await
}

/// A challenge in `service`: a newer challenge of the entity in the same service cancels an
/// older one, as a newer send to a number does.
async fn challenge_in(api: &Api, sid: &str, service: &str) -> String {
    let r = api.post(&format!("{}/{sid}/challenges", factors_path(ENTITY)), &json!({ "service": service })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((r.code(), r.json()["message"].as_str()), (200, Some("OK")));
    r.request_id()
}

#[tokio::test]
async fn a_created_factor_shows_its_secret_uri_and_qr_code_once_and_never_again() {
    // Given an account
    let api = Api::start().await;
    // When it creates a TOTP factor for an entity, naming an issuer
    let (app, data) = create(&api, ENTITY, json!({ "friendlyName": "Work phone", "issuer": "Acme Inc" })).await;
    // Then the answer has the secret, an otpauth:// URI an app reads, and its QR code
    assert!(app.sid.starts_with("YF") && app.sid.len() == 34, "{}", app.sid);
    assert_eq!(app.seed.len(), 20, "a SHA-1 seed is 20 bytes");
    let secret = data["secret"].as_str().unwrap();
    assert_eq!(
        data["otpauthUri"],
        format!(
            "otpauth://totp/Acme%20Inc:{ENTITY}?secret={secret}&issuer=Acme%20Inc&algorithm=SHA1&digits=6&period=30"
        )
    );
    let qr = data["qrCode"].as_str().unwrap();
    assert!(qr.contains("<svg") && qr.contains("</svg>"), "{qr}");
    assert_eq!(
        (&data["type"], &data["status"], &data["friendlyName"], &data["entity"]),
        (&json!("totp"), &json!("unverified"), &json!("Work phone"), &json!(ENTITY))
    );
    // And neither the list nor the factor itself shows the secret again
    let listed = api.get(&factors_path(ENTITY)).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let factors = listed.json()["data"]["factors"].clone();
    assert_eq!(factors.as_array().unwrap().len(), 1);
    let one = api.get(&format!("{}/{}", factors_path(ENTITY), app.sid)).await.json()["data"].clone();
    for shown in [&factors[0], &one] {
        assert_eq!(shown["sid"], app.sid.as_str());
        assert!(shown.get("secret").is_none() && shown.get("otpauthUri").is_none() && shown.get("qrCode").is_none());
        assert!(!shown.to_string().contains(secret));
    }
}

#[tokio::test]
async fn a_factor_is_confirmed_by_a_first_right_code_and_only_then_challenged() {
    // Given a new factor
    let api = Api::start().await;
    let (app, _) = create(&api, ENTITY, json!({})).await;
    // When it is challenged before it is confirmed: refused, naming the factor
    let r = api.post(&format!("{}/{}/challenges", factors_path(ENTITY), app.sid), &json!({})).await;
    assert_400_naming(&r, "factorSid");
    // And a wrong first code is refused as a wrong code
    assert_api_error(&confirm(&api, ENTITY, &app.sid, &wrong(&app.code(&api))).await, 401, 474);
    // When the app's code confirms it
    let r = confirm(&api, ENTITY, &app.sid, &app.code(&api)).await;
    // Then it is verified
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["data"]["status"], "verified");
    // And confirming it again is refused
    assert_400_naming(&confirm(&api, ENTITY, &app.sid, &app.code(&api)).await, "factorSid");
}

#[tokio::test]
async fn five_wrong_first_codes_and_the_factor_cannot_be_confirmed() {
    // Given a new factor and five wrong first codes
    let api = Api::start().await;
    let (app, _) = create(&api, ENTITY, json!({})).await;
    let bad = wrong(&app.code(&api));
    for _ in 0..5 {
        assert_api_error(&confirm(&api, ENTITY, &app.sid, &bad).await, 401, 474);
    }
    // When the right code comes: refused, too many attempts
    assert_api_error(&confirm(&api, ENTITY, &app.sid, &app.code(&api)).await, 429, 475);
}

#[tokio::test]
async fn a_challenge_is_verified_by_the_apps_code_through_verify_and_shows_in_search_and_usage() {
    // Given a confirmed factor
    let api = Api::start().await;
    let app = confirmed(&api, json!({})).await;
    // When it is challenged and the app's code is verified, as any OTP is
    let sid = challenge(&api, &app.sid).await;
    assert!(sid.starts_with("OTP"), "{sid}");
    let r = api.verify(&sid, &app.code(&api)).await;
    // Then it is verified, and a second verify says so
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.request_id(), sid);
    assert_api_error(&api.verify(&sid, &app.code(&api)).await, 409, 471);
    // And search shows it on channel totp, from the factor to the entity, nothing sent
    let rec = api.get(&format!("/2fa/search/{sid}")).await;
    assert_eq!(rec.status, 200, "{}", rec.text);
    let rec = rec.json();
    let rec = if rec["data"].is_object() { rec["data"].clone() } else { rec };
    assert_eq!(rec["status"], "success", "{rec}");
    let event = &rec["events"][0];
    assert_eq!(
        (&event["channel"], &event["sender"], &event["recipient"]),
        (&json!("totp"), &json!(app.sid), &json!(ENTITY))
    );
    let found = api.get("/2fa/search?channel=totp").await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert!(found.text.contains(&sid), "{}", found.text);
    // And usage counts one totp challenge; nothing went out on any channel that sends
    let usage = api.get("/2fa/usage/records?channel=totp").await;
    assert_eq!(usage.status, 200, "{}", usage.text);
    assert!(usage.text.contains("\"count\":\"1\""), "{}", usage.text);
    assert!(api.get("/2fa/usage/records?channel=sms").await.text.contains("\"count\":\"0\""));
    // And the insights count the verification as one that sent nothing
    let insights = api.get("/2fa/insights?range=24h").await.json()["data"].clone();
    assert_eq!(
        (&insights["verifiedSendingNothing"], &insights["sentNothingShare"]),
        (&json!(1), &json!(1.0)),
        "{insights}"
    );
}

#[tokio::test]
async fn a_code_counts_once_a_second_challenge_in_the_same_step_is_refused_it() {
    // Given a confirmed factor and a challenge verified with the app's code
    let api = Api::start().await;
    let app = confirmed(&api, json!({})).await;
    let code = app.code(&api);
    let first = challenge(&api, &app.sid).await;
    assert_eq!(api.verify(&first, &code).await.status, 200);
    // When a second challenge gets the same code within the same time step: refused as wrong
    let second = challenge(&api, &app.sid).await;
    assert_api_error(&api.verify(&second, &code).await, 401, 474);
    // And the next step's code verifies it
    api.advance(30).await;
    let r = api.verify(&second, &app.code(&api)).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn codes_one_step_either_side_verify_and_two_steps_off_do_not() {
    let api = Api::start().await;
    let app = confirmed(&api, json!({})).await;
    // Given the dev clock 15 s into a step, and no code of the steps around it used yet
    let now = api.dev.clock.now_ms();
    api.advance(15 - (now / 1000) % 30 + 90).await;
    for (steps, accepted) in [(-2, false), (2, false), (-1, true), (1, true)] {
        // When a challenge gets the code of a step `steps` off
        let sid = challenge(&api, &app.sid).await;
        let r = api.verify(&sid, &app.code_at(api.dev.clock.now_ms(), steps)).await;
        // Then only the neighbouring steps' codes verify
        if accepted {
            assert_eq!(r.status, 200, "{steps}: {}", r.text);
        } else {
            assert_api_error(&r, 401, 474);
        }
        // (each accepted code uses its step; the next case starts three steps on)
        api.advance(90).await;
    }
}

#[tokio::test]
async fn five_wrong_codes_lock_a_challenge_even_against_the_right_one() {
    // Given a challenge and five wrong codes
    let api = Api::start().await;
    let app = confirmed(&api, json!({})).await;
    let sid = challenge(&api, &app.sid).await;
    let right = app.code(&api);
    for _ in 0..5 {
        assert_api_error(&api.verify(&sid, &wrong(&right)).await, 401, 474);
    }
    // When the right code comes
    let r = api.verify(&sid, &right).await;
    // Then it is refused, and the code's step stays unused for another challenge
    assert_api_error(&r, 429, 475);
    let next = challenge(&api, &app.sid).await;
    assert_eq!(api.verify(&next, &right).await.status, 200);
}

#[tokio::test]
async fn of_two_concurrent_right_codes_exactly_one_verifies() {
    let api = Api::start().await;
    let app = confirmed(&api, json!({})).await;
    for _round in 0..5 {
        // Given two open challenges of one factor (two services) and the app's code
        let (a, b) = (challenge_in(&api, &app.sid, "web").await, challenge_in(&api, &app.sid, "app").await);
        let code = app.code(&api);
        // When both challenges, each twice, are verified with it at once
        let answers = join_all([&a, &b, &a, &b].map(|sid| api.verify(sid, &code))).await;
        // Then exactly one verify succeeds
        let ok = answers.iter().filter(|r| r.status == 200).count();
        assert_eq!(ok, 1, "{:?}", answers.iter().map(|r| &r.text).collect::<Vec<_>>());
        api.advance(30).await;
    }
}

#[tokio::test]
async fn an_eight_digit_sha256_factor_verifies_its_own_codes() {
    // Given a factor made with SHA-256 and 8 digits
    let api = Api::start().await;
    let (app, data) = create(&api, ENTITY, json!({ "algorithm": "SHA256", "digits": 8 })).await;
    assert_eq!((&data["algorithm"], &data["digits"]), (&json!("SHA256"), &json!(8)));
    assert_eq!(app.seed.len(), 32);
    assert!(data["otpauthUri"].as_str().unwrap().contains("&algorithm=SHA256&digits=8&period=30"));
    // When it is confirmed and challenged with 8-digit codes
    assert_eq!(confirm(&api, ENTITY, &app.sid, &app.code(&api)).await.status, 200);
    api.advance(30).await;
    let sid = challenge(&api, &app.sid).await;
    let code = app.code(&api);
    assert_eq!(code.len(), 8);
    // Then its code verifies
    assert_eq!(api.verify(&sid, &code).await.status, 200);
}

#[tokio::test]
async fn a_deleted_factor_is_gone_and_its_open_challenges_verify_nothing() {
    // Given a confirmed factor with an open challenge
    let api = Api::start().await;
    let app = confirmed(&api, json!({})).await;
    let sid = challenge(&api, &app.sid).await;
    // When the factor is deleted
    let path = format!("{}/{}", factors_path(ENTITY), app.sid);
    let r = api.call(reqwest::Method::DELETE, &path, None, "application/json").await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Then it is unknown, the list is empty, and the challenge takes no code
    assert_api_error(&api.get(&path).await, 404, 480);
    assert_eq!(api.get(&factors_path(ENTITY)).await.json()["data"]["factors"], json!([]));
    assert_api_error(&api.verify(&sid, &app.code(&api)).await, 401, 474);
    let again = api.call(reqwest::Method::DELETE, &path, None, "application/json").await;
    assert_api_error(&again, 404, 480);
}

#[tokio::test]
async fn another_accounts_factors_and_challenges_answer_as_unknown_ones() {
    // Given a confirmed factor and a challenge of one account
    let api = Api::start().await;
    let app = confirmed(&api, json!({})).await;
    let sid = challenge(&api, &app.sid).await;
    // When another account reads, confirms, challenges, deletes or verifies them
    let (other, token) = api.other_account().await;
    let path = format!("{}/{}", factors_path(ENTITY), app.sid);
    let as_other = |method: reqwest::Method, p: String, body: Value| {
        let api = &api;
        let (other, token) = (other.clone(), token.clone());
        async move { api.call_as(&other, &token, method, &p, Some(&body.to_string()), "application/json").await }
    };
    // Then each answers as for a factor or OTP that does not exist
    assert_api_error(&as_other(reqwest::Method::GET, path.clone(), json!({})).await, 404, 480);
    assert_api_error(&as_other(reqwest::Method::DELETE, path.clone(), json!({})).await, 404, 480);
    let ch = as_other(reqwest::Method::POST, format!("{path}/challenges"), json!({})).await;
    assert_api_error(&ch, 404, 480);
    let listed = as_other(reqwest::Method::GET, factors_path(ENTITY), json!({})).await;
    assert_eq!(listed.json()["data"]["factors"], json!([]));
    let v = api.post_as(&other, &token, "/2fa/verify", &json!({ "requestId": sid, "code": app.code(&api) })).await;
    assert_api_error(&v, 404, 470);
    // And the owner's challenge still verifies
    assert_eq!(api.verify(&sid, &app.code(&api)).await.status, 200);
}

#[tokio::test]
async fn bad_input_answers_400_naming_the_parameter() {
    let api = Api::start().await;
    let too_long = "x".repeat(65);
    for (path, body, param) in [
        (factors_path("has!bang"), json!({}), "entity"),
        (factors_path("has%23hash"), json!({}), "entity"),
        (factors_path(&too_long), json!({}), "entity"),
        (factors_path(ENTITY), json!({ "digits": 7 }), "digits"),
        (factors_path(ENTITY), json!({ "algorithm": "MD5" }), "algorithm"),
        (factors_path(ENTITY), json!({ "type": "sms" }), "type"),
        (factors_path(ENTITY), json!({ "issuer": "a:b" }), "issuer"),
        (factors_path(ENTITY), json!({ "friendlyName": "n".repeat(65) }), "friendlyName"),
    ] {
        assert_400_naming(&api.post(&path, &body).await, param);
    }
    let (app, _) = create(&api, ENTITY, json!({})).await;
    assert_400_naming(&confirm(&api, ENTITY, &app.sid, "12ab56").await, "code");
    // And a send cannot name a factor's channel
    assert_400_naming(&api.send_to("+14155550100", json!({ "channel": "totp" })).await, "channel");
    // And an unknown factor sid is an unknown factor
    assert_api_error(&api.get(&format!("{}/YF0", factors_path(ENTITY))).await, 404, 480);
}

#[tokio::test]
async fn every_factor_route_answers_json_and_xml_by_suffix() {
    let api = Api::start().await;
    let r = api.post(&format!("{}.xml", factors_path(ENTITY)), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("application/xml"));
    assert!(r.text.contains("<secret>") && r.text.contains("<status>unverified</status>"), "{}", r.text);
    let (app, _) = create(&api, ENTITY, json!({})).await;
    for path in [format!("{}.xml", factors_path(ENTITY)), format!("{}/{}.xml", factors_path(ENTITY), app.sid)] {
        let r = api.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert!(r.headers["content-type"].to_str().unwrap().starts_with("application/xml"), "{path}");
    }
    let r = api.get(&format!("{}/{}.json", factors_path(ENTITY), app.sid)).await;
    assert_eq!(r.json()["data"]["sid"], app.sid.as_str());
    let r = api
        .post(&format!("{}/{}/confirm.xml", factors_path(ENTITY), app.sid), &json!({ "code": app.code(&api) }))
        .await;
    assert!(r.text.contains("<status>verified</status>"), "{}", r.text);
}

#[tokio::test]
async fn verify_by_number_finds_the_newest_challenge_of_an_entity_as_it_was_written() {
    // Given a confirmed factor of an entity with capitals, and a challenge of it
    let api = Api::start().await;
    let entity = "User-42.Ops";
    let (app, _) = create(&api, entity, json!({})).await;
    assert_eq!(confirm(&api, entity, &app.sid, &app.code(&api)).await.status, 200);
    api.advance(30).await;
    let r = api.post(&format!("{}/{}/challenges", factors_path(entity), app.sid), &json!({ "service": "Login" })).await;
    let sid = r.request_id();
    // When it is verified by service and number, the entity as the number
    let by_number = json!({ "service": "Login", "number": entity, "code": app.code(&api) });
    let r = api.post("/2fa/verify", &by_number).await;
    // Then the challenge is verified
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.request_id(), sid);
}

#[tokio::test]
async fn a_newer_challenge_in_the_same_service_cancels_the_pending_one() {
    // Given a confirmed factor and a pending challenge
    let api = Api::start().await;
    let app = confirmed(&api, json!({})).await;
    let older = challenge(&api, &app.sid).await;
    // When a newer challenge of the entity is made in the same service
    let newer = challenge(&api, &app.sid).await;
    // Then the older one is canceled, as an older OTP to a number is, and the newer verifies
    assert_api_error(&api.verify(&older, &app.code(&api)).await, 409, 473);
    assert_eq!(api.verify(&newer, &app.code(&api)).await.status, 200);
}
