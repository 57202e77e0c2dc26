//! Voice calls: which Polly voice reads the code, and the SSML it reads.
//!
//! The announcement is the caller's `body` with the code read digit by digit, short pauses
//! between digits, the whole said `repeat` times with a longer pause between. The caller's text
//! is XML-escaped, so a body holding `<`, `&` or `]]>` can neither break the SSML nor inject
//! tags into it.

use super::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gender {
    Female,
    Male,
}

impl Gender {
    /// The API's `voice` parameter (`man`/`woman`); none given reads in a woman's voice.
    pub fn from_param(voice: Option<&str>) -> Gender {
        match voice {
            Some("man") => Gender::Male,
            _ => Gender::Female,
        }
    }

    pub fn other(self) -> Gender {
        match self {
            Gender::Female => Gender::Male,
            Gender::Male => Gender::Female,
        }
    }
}

/// One voice a call can be read in, as Polly's `DescribeVoices` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voice {
    /// Polly's voice id (`Joanna`, `Mizuki`).
    pub id: String,
    /// BCP-47, as Polly writes it (`en-US`, `ja-JP`).
    pub language: String,
    pub gender: Gender,
    /// Polly has a neural version of this voice.
    pub neural: bool,
}

/// The voice for a call in `language` (any case), of `gender` when that language has one, the
/// other gender's otherwise. Among several, a neural one, then the first by id: the same
/// answer every time for the same catalog. A language no voice speaks is a 400 naming
/// `language`.
pub fn choose<'a>(voices: &'a [Voice], language: &str, gender: Gender) -> Result<&'a Voice> {
    let speaks = |v: &&Voice| v.language.eq_ignore_ascii_case(language);
    let best = |g: Gender| {
        voices
            .iter()
            .filter(speaks)
            .filter(|v| v.gender == g)
            .min_by(|a, b| (!a.neural, &a.id).cmp(&(!b.neural, &b.id)))
    };
    best(gender)
        .or_else(|| best(gender.other()))
        .ok_or_else(|| Error::invalid("language", format!("no voice speaks {language}")))
}

/// Longest pause Polly takes in one `<break>`; between repeats.
const REPEAT_PAUSE: &str = "1s";
/// Between the digits of the code, so a listener can write them down.
const DIGIT_PAUSE: &str = "400ms";

/// `s` with the five XML special characters escaped (`]]>` then cannot end anything: its `>`
/// is escaped too).
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0; a voice would not say them anyway.
            c if c.is_control() && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The code, one digit at a time with a pause after each but the last.
fn code_ssml(code: &str) -> String {
    let digits: Vec<String> = code.chars().map(|d| format!("<say-as interpret-as=\"digits\">{d}</say-as>")).collect();
    digits.join(&format!("<break time=\"{DIGIT_PAUSE}\"/>"))
}

/// The SSML of a call: `template` (with `{code}` in it) said `repeat` times (at least once).
pub fn ssml(template: &str, code: &str, repeat: u8) -> String {
    let code = code_ssml(code);
    let once: Vec<String> = template.split("{code}").map(xml_escape).collect();
    let once = once.join(&format!("<break time=\"{DIGIT_PAUSE}\"/>{code}<break time=\"{DIGIT_PAUSE}\"/>"));
    let said = vec![format!("<p>{once}</p>"); repeat.max(1).into()];
    // The voice sets the language: it was chosen for it.
    format!("<speak>{}</speak>", said.join(&format!("<break time=\"{REPEAT_PAUSE}\"/>")))
}

/// What a listener hears, as plain text (the dev outbox shows it next to the SSML): the code's
/// digits spaced out, the whole repeated.
pub fn spoken_text(template: &str, code: &str, repeat: u8) -> String {
    let digits = code.chars().map(String::from).collect::<Vec<_>>().join(" ");
    vec![template.replace("{code}", &digits); repeat.max(1).into()].join(" ")
}

/// The voices of Amazon Polly that SMS Voice v2 calls can use, for a deployment that does not
/// ask Polly (the dev server): the same shape `DescribeVoices` answers.
pub fn builtin_voices() -> Vec<Voice> {
    use Gender::{Female as F, Male as M};
    const V: &[(&str, &str, Gender, bool)] = &[
        ("Zeina", "arb", F, false),
        ("Zhiyu", "cmn-CN", F, true),
        ("Naja", "da-DK", F, false),
        ("Mads", "da-DK", M, false),
        ("Lotte", "nl-NL", F, false),
        ("Ruben", "nl-NL", M, false),
        ("Nicole", "en-AU", F, false),
        ("Russell", "en-AU", M, false),
        ("Amy", "en-GB", F, true),
        ("Emma", "en-GB", F, true),
        ("Brian", "en-GB", M, true),
        ("Raveena", "en-IN", F, false),
        ("Ivy", "en-US", F, true),
        ("Joanna", "en-US", F, true),
        ("Kendra", "en-US", F, true),
        ("Kimberly", "en-US", F, true),
        ("Salli", "en-US", F, true),
        ("Joey", "en-US", M, true),
        ("Justin", "en-US", M, true),
        ("Matthew", "en-US", M, true),
        ("Geraint", "en-GB-WLS", M, false),
        ("Celine", "fr-FR", F, false),
        ("Lea", "fr-FR", F, true),
        ("Mathieu", "fr-FR", M, false),
        ("Chantal", "fr-CA", F, false),
        ("Marlene", "de-DE", F, false),
        ("Vicki", "de-DE", F, true),
        ("Hans", "de-DE", M, false),
        ("Dora", "is-IS", F, false),
        ("Karl", "is-IS", M, false),
        ("Carla", "it-IT", F, false),
        ("Bianca", "it-IT", F, true),
        ("Giorgio", "it-IT", M, false),
        ("Mizuki", "ja-JP", F, false),
        ("Takumi", "ja-JP", M, true),
        ("Seoyeon", "ko-KR", F, true),
        ("Liv", "nb-NO", F, false),
        ("Ewa", "pl-PL", F, false),
        ("Maja", "pl-PL", F, false),
        ("Jacek", "pl-PL", M, false),
        ("Jan", "pl-PL", M, false),
        ("Camila", "pt-BR", F, true),
        ("Vitoria", "pt-BR", F, false),
        ("Ricardo", "pt-BR", M, false),
        ("Ines", "pt-PT", F, true),
        ("Cristiano", "pt-PT", M, false),
        ("Carmen", "ro-RO", F, false),
        ("Tatyana", "ru-RU", F, false),
        ("Maxim", "ru-RU", M, false),
        ("Conchita", "es-ES", F, false),
        ("Lucia", "es-ES", F, true),
        ("Enrique", "es-ES", M, false),
        ("Mia", "es-MX", F, true),
        ("Lupe", "es-US", F, true),
        ("Penelope", "es-US", F, false),
        ("Miguel", "es-US", M, false),
        ("Astrid", "sv-SE", F, false),
        ("Filiz", "tr-TR", F, false),
        ("Gwyneth", "cy-GB", F, false),
    ];
    V.iter()
        .map(|&(id, language, gender, neural)| Voice { id: id.into(), language: language.into(), gender, neural })
        .collect()
}

#[cfg(test)]
mod tests {
    use quick_xml::{events::Event, Reader};

    use super::*;

    /// The text a well-formed SSML document says (panics on malformed XML).
    fn said(ssml: &str) -> String {
        let mut reader = Reader::from_str(ssml);
        let mut text = String::new();
        let mut depth = 0i32;
        loop {
            match reader.read_event().expect("well-formed SSML") {
                Event::Start(_) => depth += 1,
                Event::End(_) => depth -= 1,
                Event::Text(t) => text.push_str(&t.decode().expect("text")),
                Event::GeneralRef(r) => {
                    let name = r.decode().expect("ref");
                    text.push_str(match name.as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        other => panic!("unknown entity {other}"),
                    })
                }
                Event::Eof => break,
                Event::Empty(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(depth, 0, "every element closed");
        text
    }

    #[test]
    fn en_us_reads_the_code_digit_by_digit_with_pauses() {
        // Given a body and a code, When the SSML is built, Then each digit is said on its own.
        let s = ssml("Your code is {code}.", "4721", 1);
        assert!(s.starts_with("<speak><p>Your code is "), "{s}");
        assert!(s.contains(
            "<say-as interpret-as=\"digits\">4</say-as><break time=\"400ms\"/><say-as interpret-as=\"digits\">7</say-as>"
        ));
        assert_eq!(said(&s), "Your code is 4721.");
    }

    #[test]
    fn ja_jp_and_de_de_bodies_are_kept_as_written() {
        let ja = ssml("認証コードは{code}です", "905", 1);
        assert_eq!(said(&ja), "認証コードは905です");
        let de = ssml("Ihr Bestätigungscode lautet {code}. Grüße!", "12", 1);
        assert_eq!(said(&de), "Ihr Bestätigungscode lautet 12. Grüße!");
    }

    #[test]
    fn repeat_says_the_whole_message_that_many_times_with_a_pause_between() {
        let s = ssml("Code {code}", "77", 3);
        assert_eq!(s.matches("<p>").count(), 3);
        assert_eq!(s.matches("<break time=\"1s\"/>").count(), 2);
        assert_eq!(said(&s), "Code 77Code 77Code 77");
        assert_eq!(ssml("Code {code}", "77", 0).matches("<p>").count(), 1, "at least once");
    }

    #[test]
    fn markup_in_the_body_is_said_not_obeyed() {
        // Given a body that tries to close the document and inject tags
        let body = "a < b & \"c\" ]]> </p></speak><audio src=\"x\"/> {code}";
        let s = ssml(body, "1", 1);
        // Then the SSML is still well formed, holds no injected tag, and says the text
        assert!(!s.contains("<audio"));
        assert_eq!(said(&s), "a < b & \"c\" ]]> </p></speak><audio src=\"x\"/> 1");
    }

    #[test]
    fn spoken_text_spaces_the_digits_and_repeats() {
        assert_eq!(spoken_text("Code {code}.", "123", 2), "Code 1 2 3. Code 1 2 3.");
    }

    fn v(id: &str, language: &str, gender: Gender, neural: bool) -> Voice {
        Voice { id: id.into(), language: language.into(), gender, neural }
    }

    #[test]
    fn a_voice_of_the_language_and_gender_is_chosen_neural_first() {
        let voices = [
            v("Salli", "en-US", Gender::Female, false),
            v("Joanna", "en-US", Gender::Female, true),
            v("Matthew", "en-US", Gender::Male, true),
            v("Takumi", "ja-JP", Gender::Male, true),
        ];
        assert_eq!(choose(&voices, "en-US", Gender::Female).unwrap().id, "Joanna");
        assert_eq!(choose(&voices, "en-us", Gender::Male).unwrap().id, "Matthew");
        // ja-JP has no woman's voice here: the man's, every time.
        assert_eq!(choose(&voices, "ja-JP", Gender::Female).unwrap().id, "Takumi");
        let err = choose(&voices, "xx-XX", Gender::Female).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { ref param, .. } if param == "language"));
    }

    #[test]
    fn the_builtin_catalog_speaks_the_seed_languages_in_both_genders() {
        let voices = builtin_voices();
        for lang in ["en-US", "ja-JP", "de-DE", "fr-FR", "es-ES", "en-GB"] {
            let f = choose(&voices, lang, Gender::Female).unwrap();
            let m = choose(&voices, lang, Gender::Male).unwrap();
            assert_eq!((f.gender, m.gender), (Gender::Female, Gender::Male), "{lang}");
        }
    }
}
