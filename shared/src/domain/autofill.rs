//! Code autofill on phones: the WebOTP line browsers read (`@example.com #123456`, the last
//! line of the SMS, per the origin-bound one-time codes format) and the 11-character app hash
//! Android's SMS Retriever looks for.

use super::{
    crypto::Code,
    error::{Error, Result},
    otp::{Channel, Delivery},
};

/// `webOtpDomain`: a host name (no scheme, port or path), kept in lower case.
pub fn web_otp_domain(raw: &str) -> Result<String> {
    let host = raw.to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.len() <= 253 && host.split('.').all(label_ok) {
        Ok(host)
    } else {
        Err(Error::invalid("webOtpDomain", "must be a host name such as www.example.com (no scheme, port or path)"))
    }
}

/// `appHash`: the 11 characters (base64 alphabet) Android derives from the app's package and
/// signing key.
pub fn app_hash(raw: &str) -> Result<String> {
    if raw.len() == 11 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/') {
        Ok(raw.to_owned())
    } else {
        Err(Error::invalid("appHash", "must be the 11-character app hash of the Android SMS Retriever"))
    }
}

/// Both are SMS only.
pub fn validate(d: &Delivery) -> Result<()> {
    if d.channel != Channel::Sms {
        if d.web_otp_domain.is_some() {
            return Err(Error::invalid("webOtpDomain", "only for sms"));
        }
        if d.app_hash.is_some() {
            return Err(Error::invalid("appHash", "only for sms"));
        }
    }
    Ok(())
}

/// `text` (the rendered body) with the autofill lines: a blank line, then the app hash on a
/// line of its own, then the WebOTP line last (where browsers require it; the SMS Retriever
/// only needs the hash somewhere in the message).
pub fn append(text: String, d: &Delivery, code: &Code) -> String {
    if d.channel != Channel::Sms || (d.app_hash.is_none() && d.web_otp_domain.is_none()) {
        return text;
    }
    let mut out = text.trim_end().to_owned();
    out.push('\n');
    if let Some(hash) = &d.app_hash {
        out.push('\n');
        out.push_str(hash);
    }
    if let Some(domain) = &d.web_otp_domain {
        out.push('\n');
        out.push('@');
        out.push_str(domain);
        out.push_str(" #");
        out.push_str(code.reveal());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(web: Option<&str>, hash: Option<&str>) -> Delivery {
        Delivery {
            web_otp_domain: web.map(str::to_owned),
            app_hash: hash.map(str::to_owned),
            ..Delivery::sms("Twofa", "+14155550100", "Your code is {code}.")
        }
    }

    #[test]
    fn the_webotp_line_is_the_last_line_and_names_domain_and_code() {
        let code = Code::new("123456");
        let text = append("Your code is 123456.".into(), &sms(Some("www.example.com"), None), &code);
        assert_eq!(text, "Your code is 123456.\n\n@www.example.com #123456");
    }

    #[test]
    fn the_app_hash_gets_its_own_line_before_the_webotp_line() {
        let code = Code::new("4821");
        let hash_only = append("Code 4821".into(), &sms(None, Some("FA+9qCX9VSu")), &code);
        assert_eq!(hash_only, "Code 4821\n\nFA+9qCX9VSu");
        let both = append("Code 4821\n".into(), &sms(Some("example.com"), Some("FA+9qCX9VSu")), &code);
        assert_eq!(both, "Code 4821\n\nFA+9qCX9VSu\n@example.com #4821");
        assert_eq!(append("Code 4821".into(), &sms(None, None), &code), "Code 4821", "nothing asked, nothing added");
    }

    #[test]
    fn bad_domains_and_hashes_name_their_parameter() {
        assert_eq!(web_otp_domain("WWW.Example.com").unwrap(), "www.example.com");
        for bad in ["https://example.com", "example.com:443", "example.com/login", "-x.com", "a..b", "", "ex ample.com"]
        {
            assert!(
                matches!(web_otp_domain(bad), Err(Error::InvalidParameter { param, .. }) if param == "webOtpDomain"),
                "{bad}"
            );
        }
        assert!(app_hash("FA+9qCX9VSu").is_ok());
        for bad in ["FA+9qCX9VS", "FA+9qCX9VSuu", "FA+9qCX9VS!"] {
            assert!(matches!(app_hash(bad), Err(Error::InvalidParameter { param, .. }) if param == "appHash"), "{bad}");
        }
        let call = Delivery { channel: Channel::Call, ..sms(Some("example.com"), None) };
        assert!(matches!(validate(&call), Err(Error::InvalidParameter { param, .. }) if param == "webOtpDomain"));
    }
}
