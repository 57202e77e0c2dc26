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

/// Marks an OTP sid that carries a country (`Keys::otp_sid`).
const SID_COUNTRY_TAG: u8 = 0xC7;
use super::phone::NON_GEOGRAPHIC;

/// Keys derived from the master secret. Each HMAC is keyed once, at start: a use clones its
/// keyed state rather than hash the key pads again.
#[derive(Clone)]
pub struct Keys {
    code_mac: HmacSha256,
    token_mac: HmacSha256,
    /// Masks the country an OTP sid carries (`otp_sid`).
    sid_mac: HmacSha256,
    seal: Aes256Gcm,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

fn keyed(key: &[u8; 32]) -> HmacSha256 {
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length")
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
            code_mac: keyed(&derive(master, "twofa/v1/code")),
            token_mac: keyed(&derive(master, "twofa/v1/token")),
            sid_mac: keyed(&derive(master, "twofa/v1/otp-sid-country")),
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
        let mut mac = self.code_mac.clone();
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
        let mut mac = self.token_mac.clone();
        mac.update(account_sid.as_bytes());
        mac.update(b"\0");
        mac.update(token.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A fresh OTP sid (`OTP` + 32 hex, as always) created at `created_ms` (its first 6 bytes,
    /// `ids::otp_sid_bytes`) that carries `country` (two letters, or `001`) so that verify, which has only
    /// the sid, knows which country's pumping-guard counter to count in without reading the OTP
    /// first. Bytes 6..9 become a tag and the two letters, masked with an HMAC of the other 13:
    /// they still look uniformly random (56 random bits remain) and only the server can read
    /// the country back.
    pub fn otp_sid(&self, country: Option<&str>, created_ms: crate::domain::time::Millis) -> String {
        let mut bytes = super::ids::otp_sid_bytes(created_ms);
        // libphonenumber's non-geographic region (`001`: +800, +870, +881…) goes as `01`.
        let country = country.map(|cc| if cc == NON_GEOGRAPHIC { "01" } else { cc });
        if let Some(cc) = country
            .map(str::as_bytes)
            .filter(|cc| cc.len() == 2 && cc.iter().all(u8::is_ascii_uppercase) || *cc == b"01")
        {
            let mask = self.sid_mask(&bytes);
            bytes[6] = SID_COUNTRY_TAG ^ mask[0];
            bytes[7] = cc[0] ^ mask[1];
            bytes[8] = cc[1] ^ mask[2];
        }
        super::ids::otp_sid_of(bytes)
    }

    /// The country `otp_sid` put in `sid`, if it carries one. A sid minted without one reads as
    /// None except by chance (1 in ~25,000); verify then learns the OTP's real country from the
    /// refused write and counts there.
    pub fn otp_sid_country(&self, sid: &str) -> Option<String> {
        let hex_part = sid.strip_prefix(super::ids::OTP)?;
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(hex_part, &mut bytes).ok()?;
        let mask = self.sid_mask(&bytes);
        let cc = [bytes[7] ^ mask[1], bytes[8] ^ mask[2]];
        if bytes[6] ^ mask[0] != SID_COUNTRY_TAG {
            return None;
        }
        if cc == *b"01" {
            return Some(NON_GEOGRAPHIC.to_owned());
        }
        cc.iter().all(u8::is_ascii_uppercase).then(|| String::from_utf8_lossy(&cc).into_owned())
    }

    /// The HMAC that masks a sid's country: of every byte but the three it masks.
    fn sid_mask(&self, sid: &[u8; 16]) -> [u8; 32] {
        let mut mac = self.sid_mac.clone();
        mac.update(&sid[..6]);
        mac.update(&sid[9..]);
        mac.finalize().into_bytes().into()
    }

    /// AES-256-GCM with a random nonce; `aad` binds the ciphertext to its context (the OTP sid),
    /// so a sealed value moved elsewhere does not open. Output: nonce || ciphertext. The nonce
    /// is public and must only never repeat: 96 bits from `ThreadRng` (a CSPRNG seeded and
    /// reseeded from the OS) rather than a system call per send.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
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
    use rand::Rng;

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

    /// Pearson's chi-square of digit counts against uniform (9 degrees of freedom).
    fn chi_square(counts: &[u64; 10]) -> f64 {
        let expected = counts.iter().sum::<u64>() as f64 / 10.0;
        counts.iter().map(|&n| (n as f64 - expected).powi(2) / expected).sum()
    }

    /// P(chi-square with 9 degrees of freedom > 45.0) ~ 9e-7: over the 49 positions of lengths
    /// 4 to 10, a uniform generator fails about once in 20 000 runs.
    const CHI_SQUARE_LIMIT: f64 = 45.0;

    /// Counts per digit, per position, of `n` codes of `len` digits from `gen`.
    fn position_counts(n: usize, len: u8, mut gen: impl FnMut(u8) -> String) -> Vec<[u64; 10]> {
        let mut counts = vec![[0u64; 10]; len as usize];
        for _ in 0..n {
            for (pos, b) in gen(len).bytes().enumerate() {
                counts[pos][(b - b'0') as usize] += 1;
            }
        }
        counts
    }

    #[test]
    fn every_digit_position_is_uniform_by_chi_square_over_a_million_codes_of_each_length() {
        for len in 4..=10u8 {
            for (pos, counts) in
                position_counts(1_000_000, len, |l| generate_code(l).reveal().to_owned()).iter().enumerate()
            {
                let x2 = chi_square(counts);
                assert!(x2 < CHI_SQUARE_LIMIT, "length {len}, position {pos}: chi-square {x2:.1} for {counts:?}");
            }
        }
    }

    #[test]
    fn the_chi_square_check_catches_modulo_bias_and_a_stuck_position() {
        // `byte % 10` without rejection: digits 0-5 come 26 times in 256, 6-9 25 times.
        let mut rng = rand::thread_rng();
        let biased =
            position_counts(1_000_000, 4, |l| (0..l).map(|_| char::from(b'0' + rng.gen::<u8>() % 10)).collect());
        assert!(biased.iter().all(|c| chi_square(c) > CHI_SQUARE_LIMIT), "modulo bias must fail");
        // One position that favours one digit by 1 % is caught as well.
        let mut i = 0u64;
        let stuck = position_counts(1_000_000, 4, |l| {
            i += 1;
            let mut code = generate_code(l).reveal().to_owned();
            if i.is_multiple_of(100) {
                code.replace_range(2..3, "7");
            }
            code
        });
        assert!(chi_square(&stuck[2]) > CHI_SQUARE_LIMIT, "a 1 % lean to one digit must fail");
    }

    #[test]
    fn code_debug_is_redacted() {
        assert_eq!(format!("{:?}", Code::new("123456")), "Code(***)");
        assert_eq!(format!("{:?}", Keys::random()), "Keys(***)");
    }

    #[test]
    fn stored_hashes_stay_hmac_sha256_under_the_derived_keys() {
        // Given a master secret
        let keys = Keys::from_master(&[7u8; 32]).unwrap();
        // Then token and code hashes are HMAC-SHA256 under the labelled keys, byte for byte
        // as earlier versions stored them (values from Python's hmac), so stored tokens and
        // codes keep verifying now that the keys are prepared once
        assert_eq!(
            hex::encode(keys.hash_token("AC1", "tok")),
            "083a67666b804b054abb1089b1b8a26a6333f7d24fcd81da8506d237fe80a2d9"
        );
        assert_eq!(
            hex::encode(keys.hash_code("OTP1", "123456")),
            "46345512be3303488732bf31bb4334d19a8e3f17523a5c5748c8f1d42cbdf250"
        );
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

    #[test]
    fn otp_sids_carry_their_country_readable_only_with_the_key() {
        let keys = Keys::random();
        let sid = keys.otp_sid(Some("GB"), 1_700_000_000_000);
        assert!(crate::domain::ids::is_sid("OTP", &sid), "{sid}");
        assert_eq!(keys.otp_sid_country(&sid).as_deref(), Some("GB"));
        let non_geographic = keys.otp_sid(Some("001"), 5);
        assert_eq!(keys.otp_sid_country(&non_geographic).as_deref(), Some("001"));
        assert_eq!(Keys::random().otp_sid_country(&sid), None, "another key reads nothing (or noise)");
        assert_eq!(&sid[..15], crate::domain::ids::otp_sid_floor(1_700_000_000_000), "the time stays readable");
        let plain = keys.otp_sid(None, 5);
        assert!(crate::domain::ids::is_sid("OTP", &plain));
        let misread = (0..2000).filter(|_| keys.otp_sid_country(&keys.otp_sid(None, 5)).is_some()).count();
        assert!(misread <= 2, "{misread} of 2000 plain sids read as carrying a country");
        assert_ne!(keys.otp_sid(Some("GB"), 5), keys.otp_sid(Some("GB"), 5));
    }
}
