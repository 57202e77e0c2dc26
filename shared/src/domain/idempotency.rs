//! `Idempotency-Key` on send: the same key from the same (acting) account within 24 h answers
//! the first send's requestID and sends nothing again.
//!
//! The record is written in the send's own transaction (`SendPlan::idempotency`), so a key
//! costs no extra write round trip and two concurrent sends with one key cannot both commit.

use sha2::{Digest, Sha256};

use super::{
    error::{Error, Result},
    send::SendRequest,
    time::Millis,
};

/// The request header.
pub const HEADER: &str = "Idempotency-Key";
/// How long a key answers with its first response.
pub const WINDOW_MS: Millis = 24 * 3600 * 1000;
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// The first committed send under (account, key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// As the client sent it; scoped to the account of the OTP it is stored with.
    pub key: String,
    /// The requestID answered to every repeat.
    pub otp_sid: String,
    /// `fingerprint` of the request: a repeat must be the same request.
    pub fingerprint: Vec<u8>,
    pub created_ms: Millis,
}

impl IdempotencyRecord {
    /// Still answering repeats at `now` (TTL deletion is lazy, so age is checked here).
    pub fn live_at(&self, now: Millis) -> bool {
        now < self.created_ms + WINDOW_MS
    }
}

/// 1 to 255 visible ASCII characters.
pub fn validate_key(key: &str) -> Result<()> {
    if (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Error::invalid(HEADER, "must be 1 to 255 visible ASCII characters"))
    }
}

/// The answer to a key already used for another request.
pub fn reused() -> Error {
    Error::invalid(HEADER, "already used for a different request")
}

/// SHA-256 over the fields that define a send (not the key, not the code), each written
/// unambiguously: strings length-prefixed, absent optionals tagged.
pub fn fingerprint(req: &SendRequest) -> Vec<u8> {
    struct Fp(Sha256);
    impl Fp {
        fn str(&mut self, s: &str) {
            self.0.update((s.len() as u64).to_be_bytes());
            self.0.update(s.as_bytes());
        }
        fn opt(&mut self, s: Option<&str>) {
            match s {
                None => self.0.update([0]),
                Some(s) => {
                    self.0.update([1]);
                    self.str(s);
                }
            }
        }
        fn num(&mut self, n: u64) {
            self.0.update(n.to_be_bytes());
        }
        fn opt_num(&mut self, n: Option<u64>) {
            match n {
                None => self.0.update([0]),
                Some(n) => {
                    self.0.update([1]);
                    self.num(n);
                }
            }
        }
    }
    let d = &req.delivery;
    let mut fp = Fp(Sha256::new());
    fp.str("twofa/send/v1");
    fp.str(&req.service);
    fp.str(d.channel.as_str());
    fp.str(&d.from);
    fp.str(&d.to);
    fp.str(&d.body);
    fp.opt(d.subject.as_deref());
    fp.str(&d.language);
    fp.opt(d.voice.as_deref());
    fp.num(d.repeat.into());
    fp.num(req.length.into());
    fp.num(req.timeout_secs.into());
    fp.opt_num(req.guard_time.map(u64::from));
    fp.num(req.limits.len() as u64);
    for (name, value) in &req.limits {
        fp.str(name);
        fp.str(value);
    }
    // Only when given, so the fingerprints of requests without them stay what they were.
    if req.workflow.is_some() || req.email.is_some() || req.email_from.is_some() {
        fp.str("workflow");
        fp.opt(req.workflow.as_deref());
        fp.opt(req.email.as_deref());
        fp.opt(req.email_from.as_deref());
    }
    if d.web_otp_domain.is_some() || d.app_hash.is_some() {
        fp.str("autofill");
        fp.opt(d.web_otp_domain.as_deref());
        fp.opt(d.app_hash.as_deref());
    }
    if let Some(c) = &d.callback {
        fp.str("callback");
        fp.str(&c.url);
        fp.str(c.method.as_str());
    }
    fp.0.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::otp::{Channel, Delivery};

    fn req() -> SendRequest {
        SendRequest {
            service: "2FA".into(),
            delivery: Delivery::sms("Twofa", "+14155550100", "Code {code}"),
            length: 6,
            timeout_secs: 300,
            guard_time: None,
            limits: vec![],
            idempotency_key: Some("k1".into()),
            workflow: None,
            email: None,
            email_from: None,
        }
    }

    #[test]
    fn same_request_same_fingerprint_whatever_the_key() {
        let other_key = SendRequest { idempotency_key: Some("k2".into()), ..req() };
        assert_eq!(fingerprint(&req()), fingerprint(&other_key));
        assert_eq!(fingerprint(&req()).len(), 32);
    }

    #[test]
    fn any_defining_field_changes_the_fingerprint() {
        let base = fingerprint(&req());
        let mut changed = vec![
            SendRequest { service: "other".into(), ..req() },
            SendRequest { length: 8, ..req() },
            SendRequest { timeout_secs: 301, ..req() },
            SendRequest { guard_time: Some(0), ..req() },
            SendRequest { limits: vec![("a".into(), "1".into())], ..req() },
        ];
        for edit in [
            |d: &mut Delivery| d.body = "Other {code}".into(),
            |d: &mut Delivery| d.to = "+14155550101".into(),
            |d: &mut Delivery| d.from = "X".into(),
            |d: &mut Delivery| d.subject = Some(String::new()),
            |d: &mut Delivery| d.voice = Some("man".into()),
            |d: &mut Delivery| d.language = "fr-FR".into(),
            |d: &mut Delivery| d.repeat = 2,
            |d: &mut Delivery| d.channel = Channel::Call,
        ] {
            let mut r = req();
            edit(&mut r.delivery);
            changed.push(r);
        }
        for r in &changed {
            assert_ne!(fingerprint(r), base, "{r:?}");
        }
    }

    #[test]
    fn limits_count_in_order_and_cannot_run_into_each_other() {
        let ab = SendRequest { limits: vec![("a".into(), "1".into()), ("b".into(), "2".into())], ..req() };
        let ba = SendRequest { limits: vec![("b".into(), "2".into()), ("a".into(), "1".into())], ..req() };
        let joined = SendRequest { limits: vec![("a".into(), "1b".into()), ("".into(), "2".into())], ..req() };
        assert_ne!(fingerprint(&ab), fingerprint(&ba));
        assert_ne!(fingerprint(&ab), fingerprint(&joined));
    }

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert!(validate_key("a").is_ok());
        assert!(validate_key(&"k".repeat(255)).is_ok());
        assert!(validate_key("3f2c-ORDER#42:retry~1").is_ok());
        for bad in [String::new(), "k".repeat(256), "has space".into(), "tab\t".into(), "é".into()] {
            assert_eq!(
                validate_key(&bad),
                Err(Error::invalid(HEADER, "must be 1 to 255 visible ASCII characters")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_record_answers_for_24_hours() {
        let r = IdempotencyRecord { key: "k".into(), otp_sid: "OTP1".into(), fingerprint: vec![], created_ms: 1_000 };
        assert!(r.live_at(1_000 + WINDOW_MS - 1));
        assert!(!r.live_at(1_000 + WINDOW_MS));
    }
}
