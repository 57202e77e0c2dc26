//! Resource ids: a prefix and 32 lowercase hex characters from a CSPRNG: rand's `ThreadRng`
//! (ChaCha12, seeded and regularly reseeded from the OS), not a `getrandom` system call per id.
//! Ids are not secrets (every lookup is scoped to the caller's account); codes, keys and
//! nonces still come from the OS CSPRNG itself (`crypto`).
//!
//! OTP sids are the exception in their first 12 characters: the creation time (ms, big-endian
//! hex), so that an account's sids sort by creation and the DynamoDB store can keep its OTPs
//! in one partition sorted by sid, searchable by time without an index (docs/data-model.md).

use rand::RngCore;

use super::time::Millis;

pub const OTP: &str = "OTP";
pub const CHECK: &str = "OTC";
pub const EVENT: &str = "OTE";
pub const LIMIT: &str = "LM";
pub const WORKFLOW: &str = "WF";
pub const ACCOUNT: &str = "AC";

pub fn new_sid(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    let mut sid = String::with_capacity(prefix.len() + 32);
    sid.push_str(prefix);
    push_hex(&mut sid, &bytes);
    sid
}

/// Hex characters of an OTP sid that hold its creation time.
const OTP_TIME_HEX: usize = 12;

/// The 16 bytes behind a fresh OTP sid created at `created_ms`: the time in the first 6
/// (48 bits, enough for ms until the year 10889), CSPRNG bytes in the other 10.
pub fn otp_sid_bytes(created_ms: Millis) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes[6..]);
    let ms = u64::try_from(created_ms).unwrap_or(0).min((1 << 48) - 1);
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes
}

/// A fresh OTP sid created at `created_ms` (no country inside: see `Keys::otp_sid`).
pub fn otp_sid(created_ms: Millis) -> String {
    otp_sid_of(otp_sid_bytes(created_ms))
}

/// The sid written with these 16 bytes.
pub fn otp_sid_of(bytes: [u8; 16]) -> String {
    let mut sid = String::with_capacity(OTP.len() + 32);
    sid.push_str(OTP);
    push_hex(&mut sid, &bytes);
    sid
}

fn push_hex(out: &mut String, bytes: &[u8; 16]) {
    let mut hex = [0u8; 32];
    hex::encode_to_slice(bytes, &mut hex).expect("32 hex digits for 16 bytes");
    out.push_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"));
}

/// The smallest sid an OTP created at `ms` or later can have: every sid created in
/// `[a, b]` sorts in `[otp_sid_floor(a), otp_sid_floor(b + 1))`. From 2^48 ms on (beyond any
/// sid's time), above every sid.
pub fn otp_sid_floor(ms: Millis) -> String {
    match u64::try_from(ms).unwrap_or(0) {
        ms if ms >= 1 << 48 => format!("{OTP}~"), // `~` sorts after the hex digits
        ms => format!("{OTP}{:0width$x}", ms, width = OTP_TIME_HEX),
    }
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

    #[test]
    fn otp_sids_sort_by_creation_time_and_fall_between_the_floors_of_their_ms() {
        // Given sids minted at increasing times, some in the same ms
        let times = [0, 1, 999, 1_000, 1_000, 1_700_000_000_123, 1_700_000_000_124, (1 << 48) - 1];
        let sids: Vec<String> = times.iter().map(|&t| otp_sid(t)).collect();
        for (sid, &t) in sids.iter().zip(&times) {
            // Then each is a well-formed sid between its ms's floor and the next ms's
            assert!(is_sid(OTP, sid), "{sid}");
            assert!(otp_sid_floor(t) <= *sid && *sid < otp_sid_floor(t + 1), "{t}: {sid}");
        }
        // And a later ms always sorts later
        for w in sids.windows(2).zip(times.windows(2)) {
            if w.1[0] < w.1[1] {
                assert!(w.0[0] < w.0[1], "{:?}", w.0);
            }
        }
        assert_ne!(otp_sid(5), otp_sid(5), "the rest is random");
        assert!(sids.iter().all(|sid| *sid < otp_sid_floor(Millis::MAX)), "nothing sorts above the last floor");
    }
}
