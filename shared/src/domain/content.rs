//! What each channel says: the SMS text (measured in segments), the email's text and HTML
//! parts, the call's SSML in its chosen voice. Built before anything is written, so a message
//! that cannot go out is a 400 and costs nothing.

use super::{
    crypto::Code,
    error::Result,
    otp::{Channel, Delivery},
    send, sms,
    voice::{self, xml_escape, Voice},
};

#[derive(Clone)]
pub struct Content {
    pub text: String,
    pub html: Option<String>,
    pub ssml: Option<String>,
    pub voice_id: Option<String>,
    /// SMS: the encoding and segments the text takes.
    pub sms: Option<sms::Measure>,
}

/// `voice`: the voice chosen for a call (`voice::choose`); ignored on other channels.
pub fn compose(d: &Delivery, code: &Code, voice: Option<&Voice>) -> Result<Content> {
    let mut content = Content { text: send::message(d, code), html: None, ssml: None, voice_id: None, sms: None };
    match d.channel {
        Channel::Sms => content.sms = Some(sms::check(&content.text)?),
        Channel::Email => content.html = Some(email_html(&d.body, code.reveal())),
        Channel::Call => {
            content.text = voice::spoken_text(&d.body, code.reveal(), d.repeat);
            content.ssml = Some(voice::ssml(&d.body, code.reveal(), d.repeat));
            content.voice_id = voice.map(|v| v.id.clone());
        }
        // Meta fixes an authentication template's words (`body` cannot change them): the text
        // is what it shows in English, for the dev outbox and the logs of what went out; the
        // template takes the code alone (`OutboundMessage::code`).
        Channel::Whatsapp => content.text = format!("{} is your verification code.", code.reveal()),
        // A factor's challenge says nothing to anyone (`domain::factors`).
        Channel::Totp | Channel::Passkey => content.text.clear(),
    }
    Ok(content)
}

/// A small HTML part: the caller's text escaped (line breaks kept), the code set apart in a
/// large monospaced block so it reads (and copies) at a glance.
pub fn email_html(template: &str, code: &str) -> String {
    let code_html = format!(
        "</p><p style=\"font-family:ui-monospace,Menlo,Consolas,monospace;font-size:28px;font-weight:bold;\
letter-spacing:6px;margin:16px 0\">{code}</p><p>"
    );
    let text: Vec<String> = template.split("{code}").map(|part| xml_escape(part).replace('\n', "<br>")).collect();
    let body = format!("<p>{}</p>", text.join(&code_html)).replace("<p></p>", "");
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head>\
<body style=\"font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:16px;color:#111\">{body}</body></html>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sms::Encoding;

    fn code(s: &str) -> Code {
        Code::new(s)
    }

    #[test]
    fn email_html_sets_the_code_apart_and_escapes_the_text() {
        // Given a body with markup in it
        let html = email_html("Hi <b>you</b> & co,\nyour code: {code}", "123456");
        // Then the text is escaped, the line break kept, and the code stands in its own block
        assert!(html.contains("<p>Hi &lt;b&gt;you&lt;/b&gt; &amp; co,<br>your code: </p>"), "{html}");
        assert!(html.contains("letter-spacing:6px;margin:16px 0\">123456</p>"), "{html}");
        assert!(!html.contains("<b>"));
        assert!(!html.contains("<p></p>"), "no empty paragraph when the body ends with the code");
    }

    #[test]
    fn an_sms_is_measured_and_a_call_gets_ssml_in_its_voice() {
        let mut d = Delivery::sms("Twofa", "+14155550100", "Code: {code} €");
        let c = compose(&d, &code("123456"), None).unwrap();
        let m = c.sms.unwrap();
        assert_eq!((m.encoding, m.units, m.segments), (Encoding::Gsm7, 15, 1));
        assert!(c.ssml.is_none() && c.html.is_none());

        d.channel = Channel::Call;
        d.repeat = 2;
        let v = Voice { id: "Joanna".into(), language: "en-US".into(), gender: voice::Gender::Female, neural: true };
        let c = compose(&d, &code("42"), Some(&v)).unwrap();
        assert_eq!(c.text, "Code: 4 2 € Code: 4 2 €");
        assert_eq!(c.voice_id.as_deref(), Some("Joanna"));
        assert_eq!(c.ssml.unwrap().matches("<p>").count(), 2);
        assert!(c.sms.is_none());
    }

    #[test]
    fn an_sms_over_ten_segments_is_refused_naming_body() {
        let d = Delivery::sms("Twofa", "+14155550100", format!("{} {{code}}", "ж".repeat(700)));
        assert!(compose(&d, &code("123456"), None).is_err());
    }
}
