//! Channel fidelity on the dev server: what a call says (SSML, Polly voice, language), how an
//! SMS is measured (encoding, segments) and the email's HTML part, as a developer sees them in
//! `/dev/outbox` and the session record.

mod common;

use common::Api;
use serde_json::{json, Value};

const TO: &str = "+14155550100";

async fn outbox(api: &Api, to: &str) -> Vec<Value> {
    let r = api.http.get(format!("{}/dev/outbox", api.base)).query(&[("to", to)]).send().await.expect("outbox");
    let v: Value = r.json().await.expect("outbox json");
    v["messages"].as_array().expect("messages").clone()
}

/// The code an SSML document reads: the digits of its `say-as` elements, once.
fn code_in_ssml(ssml: &str, len: usize) -> String {
    ssml.split("<say-as interpret-as=\"digits\">").skip(1).filter_map(|s| s.chars().next()).take(len).collect()
}

#[tokio::test]
async fn a_call_in_the_outbox_holds_its_ssml_polly_voice_and_language() {
    // Given the seed's call example, in Japanese with a man's voice, said twice
    let api = Api::start().await;
    let r = api
        .send_to(
            TO,
            json!({ "channel": "call", "language": "awspolly.ja-JP", "voice": "man", "repeat": 2, "length": 4,
                    "body": "認証コードは {code} です" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Then the outbox shows exactly what would be spoken, by which voice, in which language
    let call = &outbox(&api, TO).await[0];
    assert_eq!(
        (call["channel"].as_str(), call["voiceId"].as_str(), call["language"].as_str()),
        (Some("call"), Some("Takumi"), Some("ja-JP"))
    );
    let ssml = call["ssml"].as_str().expect("ssml");
    assert!(ssml.starts_with("<speak><p>認証コードは "), "{ssml}");
    assert_eq!(ssml.matches("<p>").count(), 2, "said twice: {ssml}");
    assert_eq!(ssml.matches("<say-as interpret-as=\"digits\">").count(), 8, "4 digits, twice");
    // And the code it reads verifies
    let code = code_in_ssml(ssml, 4);
    assert_eq!(api.verify(&r.request_id(), &code).await.status, 200);
}

#[tokio::test]
async fn a_call_without_voice_reads_in_a_womans_voice_and_falls_back_when_the_language_has_none() {
    let api = Api::start().await;
    // Given no voice parameter, en-US: a woman's neural voice
    assert_eq!(api.send_to(TO, json!({ "channel": "call" })).await.status, 200);
    let call = &outbox(&api, TO).await[0];
    assert_eq!((call["voiceId"].as_str(), call["language"].as_str()), (Some("Ivy"), Some("en-US")));
    // Given en-IN, which has only a woman's voice, and a man asked for: the same one every time
    for to in ["+14155550101", "+14155550102"] {
        let r = api.send_to(to, json!({ "channel": "call", "language": "en-IN", "voice": "man" })).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(outbox(&api, to).await[0]["voiceId"], "Raveena");
    }
}

#[tokio::test]
async fn a_call_in_a_language_no_voice_speaks_is_a_400_naming_language_and_costs_nothing() {
    let api = Api::start().await;
    // When a call is asked for in a language Polly has no voice for
    let r = api.send_to(TO, json!({ "channel": "call", "language": "awspolly.xx-XX" })).await;
    // Then the client is told which parameter, and nothing went out
    assert_eq!((r.status.as_u16(), r.code()), (400, 400));
    assert_eq!(r.json()["message"], "Invalid parameter: language (no voice speaks xx-XX)");
    assert!(outbox(&api, TO).await.is_empty());
    // And the refused send consumed nothing: the default limit still admits one at once
    assert_eq!(api.send_to(TO, json!({ "channel": "call" })).await.status, 200);
}

#[tokio::test]
async fn bad_input_per_channel_names_the_parameter_and_sends_nothing() {
    let api = Api::start().await;
    let cases = [
        (json!({ "channel": "call", "to": "12-34" }), "Invalid parameter: to (must be an E.164 phone number)"),
        (
            json!({ "channel": "call", "to": "+1555" }),
            "Invalid parameter: to (is not a valid phone number for its country)",
        ),
        (json!({ "channel": "call", "voice": "child" }), "Invalid parameter: voice (must be man or woman)"),
        (
            json!({ "channel": "call", "language": "Klingon" }),
            "Invalid parameter: language (must be a language code such as en-US or awspolly.ja-JP)",
        ),
        (
            json!({ "channel": "email", "to": "a@example.com", "from": "otp@example.com" }),
            "Invalid parameter: subject (required for email)",
        ),
    ];
    for (extra, message) in cases {
        let r = api.send_to(TO, extra.clone()).await;
        assert_eq!(r.status, 400, "{extra}: {}", r.text);
        assert_eq!(r.json()["message"], message, "{extra}");
    }
    assert!(api.dev.outbox.messages(None).is_empty(), "nothing was dispatched");
}

#[tokio::test]
async fn an_sms_over_ten_segments_is_a_400_naming_body_and_ten_are_sent() {
    let api = Api::start().await;
    // Given a GSM-7 body that makes 11 segments with its 6-digit code (1531+ septets)
    let long = format!("{} {{code}}", "a".repeat(1525));
    let r = api.send_to(TO, json!({ "body": long })).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json()["message"],
        "Invalid parameter: body (the SMS would take 11 segments (1532 GSM-7 units); at most 10)"
    );
    // And a UCS-2 one of 200 characters (3 segments of 67) goes out
    assert!(api.dev.outbox.messages(None).is_empty());
    let r = api.send_to(TO, json!({ "body": format!("{} {{code}}", "ж".repeat(193)) })).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn the_session_record_shows_the_encoding_and_segments_of_each_sms() {
    let api = Api::start().await;
    // Given a UCS-2 SMS of 100 units and a GSM-7 one with an extension character
    let ucs2 = api.send_to(TO, json!({ "body": format!("Код {{code}} {}", "ж".repeat(89)) })).await.request_id();
    let gsm = api.send_to("+14155550111", json!({ "body": "Code [{code}] €" })).await.request_id();
    // When their records are read
    let ucs2 = api.get(&format!("/2fa/search/{ucs2}")).await.json();
    let gsm = api.get(&format!("/2fa/search/{gsm}")).await.json();
    // Then each event says how the SMS went on the air
    assert_eq!((&ucs2["events"][0]["encoding"], &ucs2["events"][0]["segments"]), (&json!("UCS-2"), &json!(2)));
    assert_eq!((&gsm["events"][0]["encoding"], &gsm["events"][0]["segments"]), (&json!("GSM-7"), &json!(1)));
}

#[tokio::test]
async fn an_email_has_a_text_part_and_an_html_part_with_the_code_set_apart() {
    let api = Api::start().await;
    let r = api
        .send_to(
            "user@example.com",
            json!({ "channel": "email", "from": "otp@example.com", "subject": "Your code",
                    "body": "Hello <script>x</script> & welcome,\nyour code is {code}" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mail = &outbox(&api, "user@example.com").await[0];
    let code = api.code_of(&r.request_id()).await;
    assert_eq!(
        mail["body"],
        format!("Hello <script>x</script> & welcome,\nyour code is {code}"),
        "the text part as written"
    );
    let html = mail["html"].as_str().expect("html part");
    assert!(html.contains("Hello &lt;script&gt;x&lt;/script&gt; &amp; welcome,<br>your code is "), "{html}");
    assert!(html.contains(&format!(">{code}</p>")), "the code in a block of its own: {html}");
    assert!(!html.contains("<script>"));
}

#[tokio::test]
async fn an_email_address_is_one_destination_whatever_its_case() {
    // Given an email OTP sent to a mixed-case address
    let api = Api::start().await;
    let email = json!({ "channel": "email", "from": "otp@example.com", "subject": "Your code" });
    let first = api.send_to("User@Example.COM", email.clone()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let first = first.request_id();
    // When the same address comes in another case within the minute
    let again = api.send_to("user@example.com", email.clone()).await;
    // Then the default limit sees one destination (453)
    assert_eq!(again.code(), 453, "{}", again.text);
    // And verify by number finds it in any case
    let code = api.code_of(&first).await;
    let r = api.post("/2fa/verify", &json!({ "service": "2FA", "number": "USER@example.com", "code": code })).await;
    assert_eq!((r.status.as_u16(), r.request_id()), (200, first.clone()), "{}", r.text);
    // And a later send in yet another case supersedes it (one pointer per destination)
    api.advance(61).await;
    let second = api.send_to("uSeR@eXaMpLe.CoM", email).await.request_id();
    let second_code = api.code_of(&second).await;
    let r =
        api.post("/2fa/verify", &json!({ "service": "2FA", "number": "user@EXAMPLE.com", "code": second_code })).await;
    assert_eq!((r.status.as_u16(), r.request_id()), (200, second), "{}", r.text);
    // And the message went to the address in its one (lower-case) form
    assert_eq!(outbox(&api, "user@example.com").await.len(), 2);
}
