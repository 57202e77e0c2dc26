//! Built-in message templates: what an OTP says when the send gives no `body`, in the request's
//! `locale`, naming the service. Each one fits a single SMS segment in its own encoding with a
//! 10-digit code and a 20-character service name (a test below checks every one), so the
//! default message costs one segment wherever it goes.
//!
//! The rendered template becomes the OTP's `body` (with `{code}` still in it) before anything
//! else looks at the request: the SMS, the email's text and HTML parts, a call's words and
//! every workflow step then say it exactly as they would say a caller's own body.

use super::error::{Error, Result};

/// The template of a send that names no `locale`.
pub const DEFAULT_LOCALE: &str = "en";
/// Where the template names the service (the `service` parameter, as given).
pub const SERVICE: &str = "{service}";
/// Longest `locale` taken: BCP-47 tags in use are far shorter; anything longer is not a tag.
const MAX_TAG_LEN: usize = 35;

/// One language's message.
#[derive(Debug, PartialEq, Eq)]
pub struct Template {
    /// The BCP-47 tag it is listed under (`pt-BR`, `zh-TW`).
    pub locale: &'static str,
    /// With `{service}` and `{code}` in it.
    pub text: &'static str,
    /// The language a call reads it in when the send gives no `language`: one that SMS Voice
    /// v2 has a Polly voice for, or None when no voice speaks it (a call then needs `body` and
    /// `language`; `voice::choose` refuses the bare tag, naming `language`).
    pub voice_language: Option<&'static str>,
}

impl Template {
    /// The text with the service named: a `body` as a caller could have written it.
    pub fn body(&self, service: &str) -> String {
        self.text.replace(SERVICE, service)
    }

    /// The language a call reads this template in, when the send does not choose one.
    pub fn call_language(&self) -> &'static str {
        self.voice_language.unwrap_or(self.locale)
    }
}

const fn t(locale: &'static str, text: &'static str, voice_language: Option<&'static str>) -> Template {
    Template { locale, text, voice_language }
}

/// Every built-in template. Languages whose text needs a character outside GSM-7 (most
/// accented Latin, every other script) go out as UCS-2, 70 units a segment: their wording is
/// shorter so that the message still fits one.
pub const TEMPLATES: &[Template] = &[
    t("en", "{service}: your verification code is {code}. Do not share it.", Some("en-US")),
    t("es", "{service}: tu código es {code}. No lo compartas.", Some("es-ES")),
    t("pt", "{service}: o seu código é {code}. Não o partilhe.", Some("pt-PT")),
    t("pt-BR", "{service}: seu código é {code}. Não o compartilhe.", Some("pt-BR")),
    t("fr", "{service} : votre code de vérification est {code}. Ne le partagez pas.", Some("fr-FR")),
    t("de", "{service}: Ihr Bestätigungscode lautet {code}. Geben Sie ihn nicht weiter.", Some("de-DE")),
    t("it", "{service}: il tuo codice di verifica è {code}. Non condividerlo.", Some("it-IT")),
    t("nl", "{service}: je verificatiecode is {code}. Deel deze code met niemand.", Some("nl-NL")),
    t("sv", "{service}: din verifieringskod är {code}. Dela den inte med någon.", Some("sv-SE")),
    t("da", "{service}: din bekræftelseskode er {code}. Del den ikke med andre.", Some("da-DK")),
    t("nb", "{service}: din bekreftelseskode er {code}. Ikke del den med andre.", Some("nb-NO")),
    t("fi", "{service}: vahvistuskoodisi on {code}. Älä kerro sitä kenellekään.", None),
    t("pl", "{service}: kod weryfikacyjny: {code}. Nie podawaj go nikomu.", Some("pl-PL")),
    t("cs", "{service}: Váš kód je {code}. Nikomu ho nesdělujte.", None),
    t("sk", "{service}: Váš kód je {code}. Nikomu ho neposkytujte.", None),
    t("hu", "{service}: az Ön kódja: {code}. Ne adja ki senkinek.", None),
    t("ro", "{service}: codul tău este {code}. Nu-l divulga nimănui.", Some("ro-RO")),
    t("bg", "{service}: вашият код е {code}. Не го споделяйте.", None),
    t("el", "{service}: ο κωδικός σας είναι {code}. Μην τον δώσετε.", None),
    t("ru", "{service}: ваш код {code}. Никому его не сообщайте.", Some("ru-RU")),
    t("uk", "{service}: ваш код {code}. Нікому його не кажіть.", None),
    t("tr", "{service}: kodunuz {code}. Kimseyle paylaşmayın.", Some("tr-TR")),
    t("ar", "{service}: رمز التحقق هو {code}. لا تشاركه مع أحد.", Some("arb")),
    t("he", "{service}: קוד האימות שלך הוא {code}. אין למסור אותו.", None),
    t("hi", "{service}: आपका कोड {code} है। इसे किसी को न बताएं।", None),
    t("bn", "{service}: আপনার কোড {code}। এটি কাউকে জানাবেন না।", None),
    t("id", "{service}: kode verifikasi Anda adalah {code}. Jangan berikan kode ini kepada siapa pun.", None),
    t("ms", "{service}: kod pengesahan anda ialah {code}. Jangan kongsi kod ini dengan sesiapa.", None),
    t("vi", "{service}: mã của bạn là {code}. Không chia sẻ mã này.", None),
    t("th", "{service}: รหัสยืนยันของคุณคือ {code} ห้ามบอกผู้อื่น", None),
    t("zh-CN", "【{service}】您的验证码是{code}，请勿泄露给他人。", Some("cmn-CN")),
    t("zh-TW", "【{service}】您的驗證碼為{code}，請勿告知他人。", None),
    t("ja", "【{service}】認証コードは{code}です。他人に教えないでください。", Some("ja-JP")),
    t("ko", "[{service}] 인증번호는 {code}입니다. 타인에게 알려주지 마세요.", Some("ko-KR")),
    t("tl", "{service}: Ang iyong verification code ay {code}. Huwag itong ibahagi kahit kanino.", None),
    t("sw", "{service}: msimbo wako wa uthibitishaji ni {code}. Usishiriki na mtu yeyote.", None),
    t("ca", "{service}: el teu codi és {code}. No el comparteixis.", None),
    t("hr", "{service}: vaš kod je {code}. Ne dijelite ga ni s kim.", None),
];

/// The template for `locale`, a BCP-47 tag in any case (`_` taken for `-`): the tag's
/// language and region when there is a template for both (`pt-BR`), else its language
/// (`pt-PT` → `pt`, `es-MX` → `es`). Chinese goes by script, then region: `zh-Hant`, `zh-TW`,
/// `zh-HK` and `zh-MO` read Traditional (`zh-TW`), any other `zh` Simplified (`zh-CN`). The old
/// codes `iw`, `in`, `no` and `fil` are read as `he`, `id`, `nb` and `tl`.
///
/// A tag that is not BCP-47 in form is a 400 naming `locale`; so is a well-formed tag of a
/// language with no template: an English message the reader may not understand is worse than
/// an answer the caller can act on (omit `locale` for English, or give `body`).
pub fn lookup(locale: &str) -> Result<&'static Template> {
    let tag = Tag::parse(locale)
        .ok_or_else(|| Error::invalid("locale", "must be a BCP-47 language tag such as en, pt-BR or zh-TW"))?;
    let language = match tag.language.as_str() {
        "iw" => "he",
        "in" => "id",
        "no" => "nb",
        "fil" => "tl",
        l => l,
    };
    let wanted = if language == "zh" {
        let traditional = match tag.script.as_deref() {
            Some("hant") => true,
            Some("hans") => false,
            _ => matches!(tag.region.as_deref(), Some("tw" | "hk" | "mo")),
        };
        vec![if traditional { "zh-TW".to_owned() } else { "zh-CN".to_owned() }]
    } else {
        let mut wanted: Vec<String> = tag.region.iter().map(|r| format!("{language}-{r}")).collect();
        wanted.push(language.to_owned());
        wanted
    };
    wanted
        .iter()
        .find_map(|w| TEMPLATES.iter().find(|t| t.locale.eq_ignore_ascii_case(w)))
        .ok_or_else(|| Error::invalid("locale", format!("no built-in template in {locale}: give body")))
}

/// The parts of a language tag the lookup uses, lower case.
struct Tag {
    language: String,
    script: Option<String>,
    region: Option<String>,
}

impl Tag {
    /// `language[-script][-region](-anything else)`: a 2–3 letter language, then subtags of
    /// 1–8 letters and digits (variants, extensions and private use are taken and ignored).
    fn parse(raw: &str) -> Option<Tag> {
        if raw.is_empty() || raw.len() > MAX_TAG_LEN {
            return None;
        }
        let lower = raw.to_ascii_lowercase();
        let mut parts = lower.split(['-', '_']);
        let language = parts.next()?;
        if !(2..=3).contains(&language.len()) || !language.bytes().all(|b| b.is_ascii_lowercase()) {
            return None;
        }
        let rest: Vec<&str> = parts.collect();
        if rest.iter().any(|p| p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_alphanumeric())) {
            return None;
        }
        let mut rest = rest.into_iter().peekable();
        let script = rest.next_if(|p| p.len() == 4 && p.bytes().all(|b| b.is_ascii_lowercase())).map(str::to_owned);
        let is_region = |p: &&str| {
            (p.len() == 2 && p.bytes().all(|b| b.is_ascii_lowercase()))
                || (p.len() == 3 && p.bytes().all(|b| b.is_ascii_digit()))
        };
        let region = rest.next_if(is_region).map(str::to_owned);
        Some(Tag { language: language.to_owned(), script, region })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        crypto::Code,
        otp::Channel,
        send::render,
        sms::{self, Encoding},
    };

    /// The longest code a send may ask for, and a service name of 20 characters.
    const CODE: &str = "0123456789";
    const SERVICE_20: &str = "ACME Online Services";

    fn rendered(t: &Template, service: &str) -> String {
        render(&t.body(service), Channel::Sms, &Code::new(CODE))
    }

    fn param_of(err: Error) -> String {
        match err {
            Error::InvalidParameter { param, .. } => param.into_owned(),
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn every_template_fits_one_sms_segment_with_a_ten_digit_code_and_a_twenty_character_service() {
        assert_eq!(SERVICE_20.chars().count(), 20);
        for t in TEMPLATES {
            // Given the template with the longest code and a 20-character service name
            let text = rendered(t, SERVICE_20);
            // When it is measured as the carriers count it
            let m = sms::measure(&text);
            // Then it takes one segment in its encoding (160 septets, or 70 UTF-16 units)
            let limit = match m.encoding {
                Encoding::Gsm7 => 160,
                Encoding::Ucs2 => 70,
            };
            assert_eq!(m.segments, 1, "{}: {} {} units > {limit}: {text}", t.locale, m.units, m.encoding.as_str());
            assert!(m.units <= limit);
        }
    }

    #[test]
    fn a_gsm7_template_still_fits_one_segment_when_every_character_of_the_service_takes_two_septets() {
        // `€`, `[`, `{`… are in GSM-7's extension table: an escape and the character each.
        let service = "€".repeat(20);
        for t in TEMPLATES.iter().filter(|t| sms::measure(&rendered(t, SERVICE_20)).encoding == Encoding::Gsm7) {
            let m = sms::measure(&rendered(t, &service));
            assert_eq!((m.encoding, m.segments), (Encoding::Gsm7, 1), "{}: {} septets", t.locale, m.units);
        }
    }

    #[test]
    fn every_template_names_the_service_and_holds_the_code_once() {
        for t in TEMPLATES {
            assert_eq!(t.text.matches(SERVICE).count(), 1, "{}", t.locale);
            assert_eq!(t.text.matches("{code}").count(), 1, "{}", t.locale);
            let text = rendered(t, SERVICE_20);
            assert!(text.contains(SERVICE_20) && text.contains(CODE), "{}: {text}", t.locale);
        }
    }

    #[test]
    fn there_are_at_least_thirty_languages_each_listed_once_and_found_by_its_own_tag() {
        assert!(TEMPLATES.len() >= 30, "{}", TEMPLATES.len());
        for t in TEMPLATES {
            assert_eq!(TEMPLATES.iter().filter(|o| o.locale == t.locale).count(), 1, "{}", t.locale);
            assert_eq!(lookup(t.locale).unwrap().locale, t.locale);
            assert_eq!(lookup(&t.locale.to_ascii_uppercase()).unwrap().locale, t.locale, "any case");
        }
        for required in [
            "en", "es", "pt", "pt-BR", "fr", "de", "it", "nl", "sv", "da", "nb", "fi", "pl", "cs", "sk", "hu", "ro",
            "bg", "el", "ru", "uk", "tr", "ar", "he", "hi", "bn", "id", "ms", "vi", "th", "zh-CN", "zh-TW", "ja", "ko",
            "tl", "sw",
        ] {
            assert_eq!(lookup(required).unwrap().locale, required);
        }
    }

    #[test]
    fn a_region_falls_back_to_its_language_unless_it_has_its_own_template() {
        assert_eq!(lookup("pt-PT").unwrap().locale, "pt");
        assert_eq!(lookup("pt-br").unwrap().locale, "pt-BR");
        assert_eq!(lookup("PT_BR").unwrap().locale, "pt-BR", "POSIX style");
        assert_eq!(lookup("es-MX").unwrap().locale, "es");
        assert_eq!(lookup("es-419").unwrap().locale, "es", "a numeric region");
        assert_eq!(lookup("fr-CA").unwrap().locale, "fr");
        assert_eq!(lookup("de-CH-1996").unwrap().locale, "de", "a variant is ignored");
    }

    #[test]
    fn chinese_goes_by_script_then_region() {
        for (tag, want) in [
            ("zh", "zh-CN"),
            ("zh-SG", "zh-CN"),
            ("zh-Hans-HK", "zh-CN"),
            ("zh-HK", "zh-TW"),
            ("zh-MO", "zh-TW"),
            ("zh-Hant", "zh-TW"),
            ("zh-hant-cn", "zh-TW"),
        ] {
            assert_eq!(lookup(tag).unwrap().locale, want, "{tag}");
        }
    }

    #[test]
    fn old_language_codes_are_read_as_their_current_ones() {
        assert_eq!(lookup("iw").unwrap().locale, "he");
        assert_eq!(lookup("in-ID").unwrap().locale, "id");
        assert_eq!(lookup("no").unwrap().locale, "nb");
        assert_eq!(lookup("fil-PH").unwrap().locale, "tl");
    }

    #[test]
    fn a_malformed_or_unknown_locale_is_a_400_naming_locale() {
        for bad in ["english", "e", "en-", "-en", "en--US", "en US", "12", "en-US!", "x-private", &"a".repeat(36)] {
            assert_eq!(lookup(bad).map(|t| t.locale).map_err(param_of), Err("locale".to_owned()), "{bad:?}");
        }
        // Well formed, but no template in that language.
        for unknown in ["zu", "sr-Latn-RS"] {
            assert_eq!(lookup(unknown).map(|t| t.locale).map_err(param_of), Err("locale".to_owned()), "{unknown}");
        }
    }

    #[test]
    fn the_body_names_the_service_and_keeps_the_code_placeholder() {
        let t = lookup("en").unwrap();
        assert_eq!(t.body("Acme"), "Acme: your verification code is {code}. Do not share it.");
        assert_eq!(
            lookup("fr").unwrap().body("Acme"),
            "Acme : votre code de vérification est {code}. Ne le partagez pas."
        );
    }

    #[test]
    fn a_call_reads_the_template_in_a_voice_of_its_language_or_asks_for_one() {
        let voices = crate::domain::voice::builtin_voices();
        for t in TEMPLATES {
            let found = voices.iter().any(|v| v.language.eq_ignore_ascii_case(t.call_language()));
            // A language is promised a voice exactly when the catalog has one.
            assert_eq!(found, t.voice_language.is_some(), "{}", t.locale);
        }
        assert_eq!(lookup("pt-BR").unwrap().call_language(), "pt-BR");
        assert_eq!(lookup("th").unwrap().call_language(), "th");
    }
}
