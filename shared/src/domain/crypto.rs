//! Secrets: OTP codes, their keyed hashes, sealed copies, and token hashes.
//!
//! One master secret (from outside the table: an env var locally, Secrets Manager in AWS) is
//! expanded into independent keys by HMAC with a label, so a leak of one use does not expose
//! another. Nothing here implements `Display`, and `Debug` is redacted, so a key cannot end up
//! in a log line by accident.

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use hmac::{Hmac, Mac};
use rand::{rngs::OsRng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

pub const MIN_CODE_LEN: u8 = 4;
pub const MAX_CODE_LEN: u8 = 10;

/// An OTP code in clear. Only `reveal` shows it; `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

impl Code {
    pub fn new(digits: impl Into<String>) -> Self {
        Code(digits.into())
    }
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Code(***)")
    }
}

/// `len` decimal digits, each uniform over 0..=9, from the OS CSPRNG. Rejection sampling
/// (bytes >= 250 are drawn again) avoids the modulo bias of `byte % 10`.
pub fn generate_code(len: u8) -> Code {
    let mut digits = String::with_capacity(len as usize);
    let mut buf = [0u8; 16];
    while digits.len() < len as usize {
        OsRng.fill_bytes(&mut buf);
        for b in buf {
            if b < 250 && digits.len() < len as usize {
                digits.push(char::from(b'0' + b % 10));
            }
        }
    }
    Code(digits)
}

/// Keys derived from the master secret.
#[derive(Clone)]
pub struct Keys {
    code_mac: [u8; 32],
    token_mac: [u8; 32],
    seal: Aes256Gcm,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

fn derive(master: &[u8], label: &str) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(master).expect("HMAC takes any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

impl Keys {
    /// `master` must carry at least 32 bytes of entropy.
    pub fn from_master(master: &[u8]) -> Result<Self> {
        if master.len() < 32 {
            return Err(Error::Internal);
        }
        let seal_key = derive(master, "twofa/v1/seal");
        Ok(Keys {
            code_mac: derive(master, "twofa/v1/code"),
            token_mac: derive(master, "twofa/v1/token"),
            seal: Aes256Gcm::new_from_slice(&seal_key).map_err(|_| Error::Internal)?,
        })
    }

    /// A fresh random master, for tests and a dev server started without one.
    pub fn random() -> Self {
        let mut master = [0u8; 32];
        OsRng.fill_bytes(&mut master);
        Self::from_master(&master).expect("32 bytes")
    }

    /// HMAC-SHA256 of the code, bound to the OTP it belongs to, so a hash copied onto another
    /// OTP does not verify there.
    pub fn hash_code(&self, otp_sid: &str, code: &str) -> [u8; 32] {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.code_mac).expect("32-byte key");
        mac.update(otp_sid.as_bytes());
        mac.update(b"\0");
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of a code against its stored hash.
    pub fn code_matches(&self, otp_sid: &str, code: &str, stored_hash: &[u8]) -> bool {
        ct_eq(&self.hash_code(otp_sid, code), stored_hash)
    }

    /// Keyed hash of an auth token: the only form in which tokens are stored.
    pub fn hash_token(&self, account_sid: &str, token: &str) -> [u8; 32] {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.token_mac).expect("32-byte key");
        mac.update(account_sid.as_bytes());
        mac.update(b"\0");
        mac.update(token.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// AES-256-GCM with a random nonce; `aad` binds the ciphertext to its context (the OTP sid),
    /// so a sealed value moved elsewhere does not open. Output: nonce || ciphertext.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let ct = self
            .seal
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: aad.as_bytes() })
            .expect("AES-GCM encryption does not fail for in-memory buffers");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8], aad: &str) -> Result<Vec<u8>> {
        if sealed.len() < 12 {
            return Err(Error::Internal);
        }
        let (nonce, ct) = sealed.split_at(12);
        self.seal
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: aad.as_bytes() })
            .map_err(|_| Error::Internal)
    }
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_requested_length_and_only_digits() {
        for len in MIN_CODE_LEN..=MAX_CODE_LEN {
            let code = generate_code(len);
            assert_eq!(code.reveal().len(), len as usize);
            assert!(code.reveal().bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn code_digits_are_uniform() {
        // Given 200k digits, each of the ten should be within 5% of 20k (chi-square would be
        // stricter; this catches modulo bias and stuck generators, which are the real risks).
        let mut counts = [0u32; 10];
        for _ in 0..20_000 {
            for b in generate_code(10).reveal().bytes() {
                counts[(b - b'0') as usize] += 1;
            }
        }
        for (digit, n) in counts.iter().enumerate() {
            assert!((19_000..=21_000).contains(n), "digit {digit} seen {n} times");
        }
    }

    #[test]
    fn code_debug_is_redacted() {
        assert_eq!(format!("{:?}", Code::new("123456")), "Code(***)");
        assert_eq!(format!("{:?}", Keys::random()), "Keys(***)");
    }

    #[test]
    fn code_hash_matches_only_the_same_code_on_the_same_otp() {
        let keys = Keys::random();
        let h = keys.hash_code("OTPa", "123456");
        assert!(keys.code_matches("OTPa", "123456", &h));
        assert!(!keys.code_matches("OTPa", "123457", &h));
        assert!(!keys.code_matches("OTPb", "123456", &h));
        assert!(!Keys::random().code_matches("OTPa", "123456", &h), "another key must not verify");
    }

    #[test]
    fn sealed_values_open_only_in_their_context() {
        let keys = Keys::random();
        let sealed = keys.seal(b"123456", "OTPa");
        assert!(!sealed.windows(6).any(|w| w == b"123456"));
        assert_eq!(keys.open(&sealed, "OTPa").unwrap(), b"123456");
        assert!(keys.open(&sealed, "OTPb").is_err());
    }

    #[test]
    fn short_master_secrets_are_refused() {
        assert!(Keys::from_master(b"short").is_err());
    }
}
