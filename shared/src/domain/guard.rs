//! The pumping guard (SMS pumping / toll fraud): per account and destination country, sends and
//! successful verifies over a sliding hour. When, after `min_sends` sends in that hour, fewer
//! than `min_verify_percent` % were verified, further sends there answer 477 until the rate
//! recovers: verifies come in, or the unverified sends slide out of the hour.
//!
//! The hour is 6 ten-minute buckets (the current one and the 5 before, so 50 to 60 minutes);
//! each bucket is counted in `SHARDS` counters (by OTP sid) so that concurrent sends of one
//! account to one country do not all touch one item in their transactions. A send reads the
//! 24 counters in its snapshot and counts itself in its commit; verify counts in the write that
//! marks the OTP verified. No extra round trip on either.

use super::{phone::NON_GEOGRAPHIC, policy::GuardSettings, time::Millis};

pub const BUCKET_MS: Millis = 10 * 60 * 1000;
/// The counters' "country" for the account-wide window: every guarded send and verify of the
/// account counts there too, so spreading sends over many countries, each under its own
/// threshold, still meets the account's (`GuardSettings::account_min_sends`).
pub const ACCOUNT_WIDE: &str = "all countries";
/// Buckets in the window: the current one and the 5 before it.
pub const WINDOW_BUCKETS: i64 = 6;
/// Counters per bucket.
pub const SHARDS: u8 = 4;

/// One counter: an account's sends to / verifies of one country in one bucket and shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GuardKey {
    pub account_sid: String,
    pub country: String,
    /// `now / BUCKET_MS`.
    pub bucket: i64,
    pub shard: u8,
}

/// The counters a send or verify of OTP `otp_sid` to `country` at `now` counts in: its
/// country's and the account-wide one.
pub fn counted_in(account_sid: &str, country: &str, now: Millis, otp_sid: &str) -> Vec<GuardKey> {
    vec![GuardKey::at(account_sid, country, now, otp_sid), GuardKey::at(account_sid, ACCOUNT_WIDE, now, otp_sid)]
}

/// What a guarded send reads: the window of its country, then the account-wide one (`paused`
/// takes the counts in that order).
pub fn windows(account_sid: &str, country: &str, now: Millis) -> Vec<GuardKey> {
    let mut keys = window(account_sid, country, now);
    keys.extend(window(account_sid, ACCOUNT_WIDE, now));
    keys
}

/// Which window pauses the next send, given the counts `windows` read: the country's, then the
/// account-wide one (None: neither).
pub fn pausing<'a>(settings: &GuardSettings, country: &'a str, counts: &[Option<GuardCount>]) -> Option<&'a str> {
    let (own, all) = counts.split_at(counts.len() / 2);
    if paused(settings, total(own)) {
        return Some(country);
    }
    let wide = GuardSettings { min_sends: settings.account_min_sends, ..*settings };
    paused(&wide, total(all)).then_some(ACCOUNT_WIDE)
}

impl GuardKey {
    /// The counter a send or verify of OTP `otp_sid` at `now` counts in.
    pub fn at(account_sid: &str, country: &str, now: Millis, otp_sid: &str) -> Self {
        GuardKey {
            account_sid: account_sid.to_owned(),
            country: country.to_owned(),
            bucket: bucket(now),
            shard: shard(otp_sid),
        }
    }

    /// When the bucket ends: its counter may go after that plus the window.
    pub fn bucket_end_ms(&self) -> Millis {
        (self.bucket + 1) * BUCKET_MS
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardCount {
    pub sends: u64,
    pub verifies: u64,
}

pub fn bucket(now: Millis) -> i64 {
    now.div_euclid(BUCKET_MS)
}

fn shard(otp_sid: &str) -> u8 {
    (otp_sid.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % u32::from(SHARDS)) as u8
}

/// Whether sends to `country` are guarded at all: an enabled guard, and a two-letter country
/// or libphonenumber's non-geographic region `001` (+800, +870, +881, +882, +883, +979…:
/// satellite and international networks, favourites of SMS pumping), a bucket of its own.
pub fn guards(settings: &GuardSettings, country: &str) -> bool {
    settings.enabled && (country.len() == 2 || country == NON_GEOGRAPHIC)
}

/// Every counter of the window ending at `now` (what a send reads).
pub fn window(account_sid: &str, country: &str, now: Millis) -> Vec<GuardKey> {
    let current = bucket(now);
    (current - WINDOW_BUCKETS + 1..=current)
        .flat_map(|b| {
            (0..SHARDS).map(move |shard| GuardKey {
                account_sid: account_sid.to_owned(),
                country: country.to_owned(),
                bucket: b,
                shard,
            })
        })
        .collect()
}

/// The window's totals from its counters as read (absent ones count zero).
pub fn total(counts: &[Option<GuardCount>]) -> GuardCount {
    counts
        .iter()
        .flatten()
        .fold(GuardCount::default(), |t, c| GuardCount { sends: t.sends + c.sends, verifies: t.verifies + c.verifies })
}

/// Whether the next send is refused: enough sends, too few of them verified.
pub fn paused(settings: &GuardSettings, window: GuardCount) -> bool {
    window.sends >= u64::from(settings.min_sends)
        && window.verifies.min(window.sends) * 100 < window.sends * u64::from(settings.min_verify_percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: GuardSettings =
        GuardSettings { enabled: true, min_sends: 10, min_verify_percent: 20, account_min_sends: 30 };

    fn count(sends: u64, verifies: u64) -> GuardCount {
        GuardCount { sends, verifies }
    }

    #[test]
    fn pauses_only_after_the_minimum_volume_and_below_the_rate() {
        assert!(!paused(&ON, count(9, 0)), "below the minimum volume");
        assert!(paused(&ON, count(10, 1)), "10 % < 20 %");
        assert!(!paused(&ON, count(10, 2)), "20 % is enough");
        assert!(!paused(&ON, count(100, 40)));
        assert!(paused(&ON, count(100, 19)));
    }

    #[test]
    fn the_window_is_the_current_bucket_and_the_five_before_in_every_shard() {
        let now = 10 * BUCKET_MS + 5;
        let keys = window("AC1", "US", now);
        assert_eq!(keys.len(), 24);
        assert_eq!(keys.first().unwrap().bucket, 5);
        assert_eq!(keys.last().unwrap().bucket, 10);
        let mine = GuardKey::at("AC1", "US", now, "OTPabc");
        assert!(keys.contains(&mine), "a send's own counter is in the window it reads");
        assert_eq!(total(&[Some(count(3, 1)), None, Some(count(2, 2))]), count(5, 3));
    }

    #[test]
    fn the_account_wide_window_pauses_sends_spread_over_countries_each_under_its_own_threshold() {
        // 9 unverified sends in one country (under its 10), 40 over every country (over 30)
        let counts = [Some(count(9, 0)), Some(count(40, 0))];
        assert_eq!(pausing(&ON, "DE", &counts), Some(ACCOUNT_WIDE));
        // The country's own window decides first; a verified account-wide window pauses nothing
        let counts = [Some(count(10, 0)), Some(count(40, 0))];
        assert_eq!(pausing(&ON, "DE", &counts), Some("DE"));
        let counts = [Some(count(9, 0)), Some(count(40, 10))];
        assert_eq!(pausing(&ON, "DE", &counts), None);
        // Both windows are read, and a send counts in both
        assert_eq!(windows("AC1", "DE", 10 * BUCKET_MS).len(), 48);
        let counted = counted_in("AC1", "DE", 10 * BUCKET_MS, "OTPabc");
        assert_eq!(counted.iter().map(|k| k.country.as_str()).collect::<Vec<_>>(), ["DE", ACCOUNT_WIDE]);
    }

    #[test]
    fn non_geographic_numbers_are_a_bucket_of_their_own_and_a_disabled_guard_guards_nothing() {
        assert!(guards(&ON, "US"));
        assert!(guards(&ON, "001"));
        assert!(!guards(&GuardSettings { enabled: false, ..ON }, "001"));
        assert!(!guards(&GuardSettings { enabled: false, ..ON }, "US"));
    }
}
