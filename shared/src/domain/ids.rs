//! Resource ids: a prefix and 32 lowercase hex characters from the OS CSPRNG.

use rand::{rngs::OsRng, RngCore};

pub const OTP: &str = "OTP";
pub const CHECK: &str = "OTC";
pub const EVENT: &str = "OTE";
pub const LIMIT: &str = "LM";
pub const WORKFLOW: &str = "WF";
pub const ACCOUNT: &str = "AC";

pub fn new_sid(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// True when `sid` is `prefix` followed by exactly 32 lowercase hex characters.
pub fn is_sid(prefix: &str, sid: &str) -> bool {
    sid.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_sids_have_prefix_and_32_hex_chars_and_differ() {
        let a = new_sid(OTP);
        let b = new_sid(OTP);
        assert!(is_sid(OTP, &a), "{a}");
        assert_ne!(a, b);
        assert!(!is_sid(OTP, "OTP123"));
        assert!(!is_sid(LIMIT, &a));
    }
}
