//! Black-box tests of the built-in message templates over HTTP against the dev server: a send
//! without `body` says the template of its `locale`, naming the service, on every channel and
//! every workflow step; a send with a `body` says exactly that body, as before.

mod common;

use common::{Api, Resp};
use serde_json::{json, Value};
use twofa::adapters::outbox::OutboxEntry;

const TO: &str = "+14155550100";

/// A send of `service` Acme to `to` with no `body`, and `extra` parameters.
async fn send_without_body(api: &Api, to: &str, extra: Value) -> Resp {
    let mut req = json!({ "service": "Acme", "from": "Twofa", "to": to });
    if let (Some(r), Some(e)) = (req.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    api.post("/2fa/send", &req).await
}

/// The one message the outbox holds for `to`, after checking the send answered 200.
fn only_message(api: &Api, r: &Resp, to: &str) -> OutboxEntry {
    assert_eq!(r.status, 200, "{}", r.text);
    let mut sent = api.dev.outbox.messages(Some(to));
    assert_eq!(sent.len(), 1, "one message to {to}");
    sent.remove(0)
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn message_of(r: &Resp) -> String {
    assert_eq!((r.status.as_u16(), r.code()), (400, 400), "{}", r.text);
    r.json()["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_send_without_body_says_the_english_template_naming_the_service() {
    // Given a send that gives no body and no locale
    let api = Api::start().await;
    let r = send_without_body(&api, TO, json!({})).await;
    // Then the SMS is the English template with the service's name and the code in it
    let sms = only_message(&api, &r, TO);
    let code = digits(&sms.body);
    assert_eq!(code.len(), 6);
    assert_eq!(sms.body, format!("Acme: your verification code is {code}. Do not share it."));
    // And it took one GSM-7 segment, as the session record shows
    let sdr = api.get(&format!("/2fa/search/{}", r.request_id())).await.json();
    let event = &sdr["events"][0];
    assert_eq!((&event["encoding"], &event["segments"]), (&json!("GSM-7"), &json!(1)), "{sdr}");
    // And the code verifies
    assert_eq!(api.verify(&r.request_id(), &code).await.status, 200);
}

#[tokio::test]
async fn locale_fr_says_the_french_template() {
    let api = Api::start().await;
    let r = send_without_body(&api, TO, json!({ "locale": "fr", "length": 10 })).await;
    let sms = only_message(&api, &r, TO);
    let code = digits(&sms.body);
    assert_eq!(sms.body, format!("Acme : votre code de vérification est {code}. Ne le partagez pas."));
    assert_eq!(code.len(), 10);
    // In one segment, though the 10-digit code is the longest there is
    let sdr = api.get(&format!("/2fa/search/{}", r.request_id())).await.json();
    assert_eq!(sdr["events"][0]["segments"], 1, "{sdr}");
}

#[tokio::test]
async fn pt_br_and_pt_are_two_templates_and_a_region_without_its_own_falls_back_to_its_language() {
    // Given three destinations (one OTP a minute each) and three Portuguese or Spanish locales
    let api = Api::start().await;
    let cases = [
        ("+14155550101", "pt-BR", "Acme: seu código é {code}. Não o compartilhe."),
        ("+14155550102", "pt-PT", "Acme: o seu código é {code}. Não o partilhe."),
        ("+14155550103", "ES-mx", "Acme: tu código es {code}. No lo compartas."),
    ];
    for (to, locale, want) in cases {
        // When each is sent without a body
        let r = send_without_body(&api, to, json!({ "locale": locale })).await;
        // Then each says its own template
        let sms = only_message(&api, &r, to);
        assert_eq!(sms.body, want.replace("{code}", &digits(&sms.body)), "{locale}");
        // In one segment of UCS-2 (their accents are not in GSM-7)
        let sdr = api.get(&format!("/2fa/search/{}", r.request_id())).await.json();
        let event = &sdr["events"][0];
        assert_eq!((&event["encoding"], &event["segments"]), (&json!("UCS-2"), &json!(1)), "{locale}: {sdr}");
    }
}

#[tokio::test]
async fn a_malformed_or_unknown_locale_is_a_400_naming_locale_and_sends_nothing() {
    let api = Api::start().await;
    let r = send_without_body(&api, TO, json!({ "locale": "english" })).await;
    assert_eq!(message_of(&r), "Invalid parameter: locale (must be a BCP-47 language tag such as en, pt-BR or zh-TW)");
    let r = send_without_body(&api, TO, json!({ "locale": "zu" })).await;
    assert_eq!(message_of(&r), "Invalid parameter: locale (no built-in template in zu: give body)");
    let r = send_without_body(&api, TO, json!({ "locale": ["fr"] })).await;
    assert_eq!(message_of(&r), "Invalid parameter: locale (must be a string)");
    assert!(api.dev.outbox.messages(None).is_empty(), "nothing was sent");
}

#[tokio::test]
async fn an_explicit_body_is_sent_byte_for_byte_and_locale_plays_no_part() {
    // Given sends with the seed's body, with a locale, and with a locale that is no tag at all
    let api = Api::start().await;
    for (to, locale) in [("+14155550111", None), ("+14155550112", Some("fr")), ("+14155550113", Some("??"))] {
        let mut extra = json!({});
        if let Some(l) = locale {
            extra["locale"] = json!(l);
        }
        let r = api.send_to(to, extra).await;
        // Then each SMS is that body with the code in it, nothing else
        let sms = only_message(&api, &r, to);
        assert_eq!(sms.body, format!("Your verification code is: {}", digits(&sms.body)), "{locale:?}");
    }
    // And a body without {code} is refused as before, not replaced by a template
    assert_eq!(
        message_of(&api.send_to(TO, json!({ "body": "Your code" })).await),
        "Invalid parameter: body (must contain {code})"
    );
}

#[tokio::test]
async fn an_email_without_body_says_the_template_in_its_text_and_html() {
    let api = Api::start().await;
    let to = "user@example.com";
    let r = send_without_body(
        &api,
        to,
        json!({ "channel": "email", "from": "otp@example.com", "subject": "Code", "locale": "de" }),
    )
    .await;
    let mail = only_message(&api, &r, to);
    let code = digits(&mail.body);
    assert_eq!(mail.body, format!("Acme: Ihr Bestätigungscode lautet {code}. Geben Sie ihn nicht weiter."));
    let html = mail.html.expect("an HTML part");
    assert!(html.contains("Acme: Ihr Bestätigungscode lautet ") && html.contains(&format!(">{code}</p>")), "{html}");
    assert_eq!(mail.subject.as_deref(), Some("Code"), "the subject is the caller's, as before");
}

#[tokio::test]
async fn a_call_without_body_reads_the_template_in_a_voice_of_its_locale_unless_language_says_otherwise() {
    let api = Api::start().await;
    // Given a call in Japanese with no language: a Japanese voice reads the Japanese template
    let r = send_without_body(&api, TO, json!({ "channel": "call", "locale": "ja", "length": 4 })).await;
    let call = only_message(&api, &r, TO);
    let code = digits(&call.body);
    let spaced: Vec<String> = code.chars().map(String::from).collect();
    assert_eq!(call.body, format!("【Acme】認証コードは{}です。他人に教えないでください。", spaced.join(" ")));
    assert_eq!(call.language.as_deref(), Some("ja-JP"));
    // And a given language wins
    let to = "+14155550121";
    let r = send_without_body(&api, to, json!({ "channel": "call", "locale": "de", "language": "de-DE" })).await;
    assert_eq!(only_message(&api, &r, to).language.as_deref(), Some("de-DE"));
    // And a locale no voice speaks asks for a language, naming it, and sends nothing
    let to = "+14155550122";
    let r = send_without_body(&api, to, json!({ "channel": "call", "locale": "th" })).await;
    assert_eq!(message_of(&r), "Invalid parameter: language (no voice speaks th)");
    assert!(api.dev.outbox.messages(Some(to)).is_empty());
}

#[tokio::test]
async fn every_step_of_a_workflow_sent_without_body_says_the_template() {
    // Given an sms → call → email workflow
    let api = Api::start().await;
    let channels = json!([
        { "channel": "sms", "interval": 0 },
        { "channel": "voice", "interval": 30 },
        { "channel": "email", "interval": 30 },
    ]);
    let r = api.post("/2fa/workflows", &json!({ "name": "three", "channels": channels })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // When an OTP is sent with it, in Spanish, without a body
    let extra = json!({
        "workflow": "three", "locale": "es", "email": "u@example.com", "emailFrom": "otp@example.com", "subject": "Código"
    });
    let r = send_without_body(&api, TO, extra).await;
    assert_eq!(r.status, 200, "{}", r.text);
    api.advance(30).await;
    api.advance(30).await;
    // Then each step says the Spanish template with the same code, the call in a Spanish voice
    let sms = &api.dev.outbox.messages(Some(TO)).into_iter().find(|m| m.channel == "sms").expect("the sms");
    let code = digits(&sms.body);
    assert_eq!(sms.body, format!("Acme: tu código es {code}. No lo compartas."));
    let call = api.dev.outbox.messages(Some(TO)).into_iter().find(|m| m.channel == "call").expect("the call");
    let spaced: Vec<String> = code.chars().map(String::from).collect();
    assert_eq!(call.body, format!("Acme: tu código es {}. No lo compartas.", spaced.join(" ")));
    assert_eq!(call.language.as_deref(), Some("es-ES"));
    let mail = &api.dev.outbox.messages(Some("u@example.com"))[0];
    assert_eq!(mail.body, format!("Acme: tu código es {code}. No lo compartas."));
}

#[tokio::test]
async fn the_same_idempotency_key_with_another_locale_is_another_request() {
    let api = Api::start().await;
    let send = |locale: &'static str| {
        let req = json!({ "service": "Acme", "from": "Twofa", "to": TO, "locale": locale });
        let http = api.http.post(format!("{}/2fa/send", api.base)).basic_auth(&api.sid, Some(&api.token));
        async move { http.header("Idempotency-Key", "k1").json(&req).send().await.expect("send") }
    };
    assert_eq!(send("fr").await.status(), 200);
    assert_eq!(send("fr").await.status(), 200, "the same request again: its first answer");
    let other: Value = send("de").await.json().await.unwrap();
    assert_eq!(other["message"], "Invalid parameter: Idempotency-Key (already used for a different request)");
    assert_eq!(api.dev.outbox.messages(Some(TO)).len(), 1);
}

#[test]
fn docs_api_md_lists_every_template_as_it_is_sent() {
    // Given the API reference of this repository
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let doc = std::fs::read_to_string(root.join("docs/api.md")).expect("docs/api.md");
    // Then each built-in template has its row, word for word
    for t in twofa::domain::templates::TEMPLATES {
        let row = format!("| `{}` | {} |", t.locale, t.text);
        assert!(doc.contains(&row), "docs/api.md has no row {row}");
    }
}
