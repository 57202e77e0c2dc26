//! No code, token, key or console session ever reaches a log line, at any level.

mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use common::{wrong, Api};
use serde_json::json;
use twofa::ports::Clock;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn codes_and_tokens_never_appear_in_logs() {
    // Given every log line at TRACE level captured
    let captured = Captured::default();
    let sink = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .without_time()
        .init();
    let api = Api::start().await;

    // When OTPs are sent, checked wrongly and rightly, canceled, and a provider fails
    let to = "+14155550100";
    let sid = api.sent(to).await;
    let code = api.code_of(&sid).await;
    api.verify(&sid, &wrong(&code)).await;
    api.verify(&sid, &code).await;
    let second = api.send_to("+14155550101", json!({ "length": 10 })).await.request_id();
    let second_code = api.code_of(&second).await;
    api.post("/2fa/cancel", &json!({ "requestId": second })).await;
    let idempotency_key = "idem-7f3a9c";
    for _ in 0..2 {
        api.send_keyed(idempotency_key, "+14155550103", json!({})).await;
    }
    // An account with a test number: its fixed code is set, used and verified
    let test_code = "86420975";
    let policy = json!({ "testNumbers": [ { "to": "+14155550150", "code": test_code } ] });
    let r = api.http.post(format!("{}/dev/accounts", api.base)).json(&policy).send().await.unwrap();
    let acct: serde_json::Value = r.json().await.unwrap();
    let (tsid, ttoken) = (acct["accountSid"].as_str().unwrap(), acct["authToken"].as_str().unwrap());
    let body = json!({ "service": "2FA", "from": "Twofa", "to": "+14155550150", "body": "Code {code}" });
    let test_otp = api.post_as(tsid, ttoken, "/2fa/send", &body).await.request_id();
    let r = api.post_as(tsid, ttoken, "/2fa/verify", &json!({ "requestId": test_otp, "code": test_code })).await;
    assert_eq!(r.status, 200);
    api.dev.outbox.set_mode(twofa::adapters::outbox::OutboxMode::Down);
    api.send_to("+14155550102", json!({})).await;
    // The console: a wrong sign-in, a right one, a page, and sign-out
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let sign_in = |token: String| {
        let form = [("accountSid", api.sid.clone()), ("authToken", token)];
        browser.post(format!("{}/console/sign-in", api.base)).form(&form).send()
    };
    sign_in("not-the-token".into()).await.unwrap();
    let r = sign_in(api.token.clone()).await.unwrap();
    let session = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = browser.get(format!("{}/console/sessions/{sid}", api.base)).header("cookie", &session).send().await;
    let page = page.unwrap().text().await.unwrap();
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = page[at..].split('"').next().unwrap().to_owned();
    let out = browser.post(format!("{}/console/sign-out", api.base)).header("cookie", &session);
    out.form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    let session_value = session.split_once('=').unwrap().1.to_owned();
    // An authenticator-app factor: created (its secret shown once), confirmed, challenged,
    // a wrong code and the right one
    let created = api.post("/2fa/entities/user-7/factors", &json!({})).await.json()["data"].clone();
    let (factor, secret) =
        (created["sid"].as_str().unwrap().to_owned(), created["secret"].as_str().unwrap().to_owned());
    let seed = common::base32_decode(&secret);
    let app_code = || {
        let p = twofa::domain::factor::TotpParams::default();
        twofa::domain::totp::code(&seed, &p, twofa::domain::totp::step_at(&p, api.dev.clock.now_ms()))
    };
    let path = format!("/2fa/entities/user-7/factors/{factor}");
    let first_code = app_code();
    assert_eq!(api.post(&format!("{path}/confirm"), &json!({ "code": first_code })).await.status, 200);
    api.advance(30).await;
    let challenge = api.post(&format!("{path}/challenges"), &json!({})).await.request_id();
    let factor_code = app_code();
    api.verify(&challenge, &wrong(&factor_code)).await;
    assert_eq!(api.verify(&challenge, &factor_code).await.status, 200);

    // Then the logs say what happened...
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains(&sid), "the OTP sid is logged: {logs}");
    assert!(logs.contains("otp verified") && logs.contains("invalid code"), "{logs}");
    assert!(logs.contains("idempotent repeat"), "{logs}");
    assert!(logs.contains("factor confirmed") && logs.contains(&challenge), "{logs}");
    // ...and hold no code, no token and no idempotency key
    for secret in [
        code.as_str(),
        wrong(&code).as_str(),
        second_code.as_str(),
        api.token.as_str(),
        idempotency_key,
        test_code,
        session_value.as_str(),
        csrf.as_str(),
        secret.as_str(),
        first_code.as_str(),
        factor_code.as_str(),
        wrong(&factor_code).as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret or key leaked into the logs");
    }
}
