//! Resource ids: a prefix and 32 lowercase hex characters from a CSPRNG: rand's `ThreadRng`
//! (ChaCha12, seeded and regularly reseeded from the OS), not a `getrandom` system call per id.
//! Ids are not secrets (every lookup is scoped to the caller's account); codes, keys and
//! nonces still come from the OS CSPRNG itself (`crypto`).
//!
//! OTP sids are the exception in their first 12 characters: the creation time (ms, big-endian
//! hex, 47 bits) below a top bit that marks the sid as sharded, so that an account's sids sort
//! by creation and the DynamoDB store can keep its OTPs sorted by sid, searchable by time
//! without an index. A sharded sid's tenth byte (`otp_shard`) names which of the account's
//! `OTP_SHARDS` partitions holds it, so a verify, cancel or receipt finds the item from the sid
//! alone; a sid without the mark (minted before sharding) lives in the account's one old
//! partition (docs/data-model.md, "Scale").

use rand::RngCore;

use super::time::Millis;

pub const OTP: &str = "OTP";
pub const CHECK: &str = "OTC";
pub const EVENT: &str = "OTE";
pub const LIMIT: &str = "LM";
pub const WORKFLOW: &str = "WF";
pub const FACTOR: &str = "YF";
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
/// The top bit of the 48-bit time field: set in every sid minted since OTPs are sharded. No
/// older sid has it (their times stay below 2^41 ms, the year 2039), so it tells the two apart,
/// and every sharded sid sorts after every older one, as it was created later.
const SHARDED: u64 = 1 << 47;
/// The latest creation time a sid can hold (the year 6429).
const MAX_SID_MS: u64 = SHARDED - 1;
/// How many partitions an account's OTPs are spread over by default, and at most: a sharded
/// sid's byte 9, uniform from the CSPRNG below the store's shard count, is its shard.
pub const OTP_SHARDS: usize = 256;
/// Which byte of a sid's 16 holds its shard (right after the country bytes 6..9, inside what
/// the country mask covers, so it is fixed before a country is masked).
const SHARD_BYTE: usize = 9;

/// The 16 bytes behind a fresh OTP sid created at `created_ms`: the sharded mark and the time
/// in the first 6, CSPRNG bytes in the other 10, the shard among them: uniform below `shards`
/// (a power of two up to `OTP_SHARDS`; anything else counts as `OTP_SHARDS`).
pub fn otp_sid_bytes(created_ms: Millis, shards: usize) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes[6..]);
    let ms = u64::try_from(created_ms).unwrap_or(0).min(MAX_SID_MS) | SHARDED;
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    if valid_shard_count(shards) {
        bytes[SHARD_BYTE] &= (shards - 1) as u8;
    }
    bytes
}

/// Whether a store may spread OTPs over `n` shards: a power of two, at most `OTP_SHARDS`.
pub fn valid_shard_count(n: usize) -> bool {
    n.is_power_of_two() && n <= OTP_SHARDS
}

/// The shard of a sharded OTP sid; None for a sid minted before sharding, or anything that is
/// not an OTP sid (which then can only be in the old partition, or nowhere).
pub fn otp_shard(sid: &str) -> Option<u8> {
    if !is_sid(OTP, sid) {
        return None;
    }
    let hex_part = &sid.as_bytes()[OTP.len()..];
    let byte = |i: usize| u8::from_str_radix(std::str::from_utf8(&hex_part[2 * i..2 * i + 2]).ok()?, 16).ok();
    (byte(0)? & 0x80 != 0).then_some(())?;
    byte(SHARD_BYTE)
}

/// A fresh OTP sid created at `created_ms` (no country inside: see `Keys::otp_sid`).
pub fn otp_sid(created_ms: Millis) -> String {
    otp_sid_of(otp_sid_bytes(created_ms, OTP_SHARDS))
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

/// The smallest sharded sid an OTP created at `ms` or later can have: every sid created in
/// `[a, b]` sorts in `[otp_sid_floor(a), otp_sid_floor(b + 1))`. Beyond any sid's time, above
/// every sid.
pub fn otp_sid_floor(ms: Millis) -> String {
    match u64::try_from(ms).unwrap_or(0) {
        ms if ms > MAX_SID_MS => format!("{OTP}~"), // `~` sorts after the hex digits
        ms => format!("{OTP}{:0width$x}", ms | SHARDED, width = OTP_TIME_HEX),
    }
}

/// `otp_sid_floor` for sids minted before sharding (no mark), which the old partition holds:
/// from 2^47 ms on, above every one of them.
pub fn legacy_otp_sid_floor(ms: Millis) -> String {
    match u64::try_from(ms).unwrap_or(0) {
        ms if ms >= SHARDED => format!("{OTP}8"), // the mark's first hex digit
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
        let times = [0, 1, 999, 1_000, 1_000, 1_700_000_000_123, 1_700_000_000_124, (1 << 47) - 1];
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

    #[test]
    fn a_fresh_sid_names_its_shard_and_an_old_unmarked_sid_names_none() {
        // Given sids minted now, and one of the form minted before sharding (time first, no mark)
        let fresh: Vec<String> = (0..25_600).map(|_| otp_sid(1_765_000_000_000)).collect();
        let old = format!("{OTP}{:012x}{}", 1_700_000_000_000u64, "ab".repeat(10));
        // Then each fresh sid has a shard, and the shards are all used about evenly
        let mut per_shard = vec![0usize; OTP_SHARDS];
        for sid in &fresh {
            per_shard[usize::from(otp_shard(sid).expect("a fresh sid is sharded"))] += 1;
        }
        assert!(per_shard.iter().all(|&n| n > 0), "every one of {OTP_SHARDS} shards used by 25,600 sids");
        // And the old sid, or anything not a sid, has none
        assert_eq!(otp_shard(&old), None);
        assert_eq!(otp_shard("OTP123"), None);
        assert_eq!(otp_shard(&format!("{OTP}{}", "f".repeat(31))), None);
        // And every fresh sid sorts after every old one and inside its own floors, the old one
        // inside the floors of its kind
        assert!(fresh.iter().all(|sid| *sid > old));
        assert!(legacy_otp_sid_floor(1_700_000_000_000) <= old && old < legacy_otp_sid_floor(1_700_000_000_001));
        assert!(old < legacy_otp_sid_floor(Millis::MAX) && legacy_otp_sid_floor(Millis::MAX) <= otp_sid_floor(0));
    }

    #[test]
    fn a_store_with_fewer_shards_gets_sids_only_below_its_count() {
        // (100 sids a shard: that one stays unused happens once in ~10^41 runs)
        for shards in [1, 2, 16, 256] {
            let used: std::collections::BTreeSet<u8> =
                (0..100 * shards).map(|_| otp_shard(&otp_sid_of(otp_sid_bytes(5, shards))).unwrap()).collect();
            assert_eq!(used.len(), shards, "all of {shards} used, none above");
            assert!(used.iter().all(|&s| usize::from(s) < shards));
        }
        assert!(!valid_shard_count(3) && !valid_shard_count(512) && !valid_shard_count(0));
    }
}
