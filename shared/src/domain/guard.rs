//! The pumping guard (SMS pumping / toll fraud): per account and destination country, sends and
//! successful verifies over a sliding hour. When, after `min_sends` sends in that hour, fewer
//! than `min_verify_percent` % were verified, further sends there answer 477 until the rate
//! recovers: verifies come in, or the unverified sends slide out of the hour.
//!
//! The hour is 6 ten-minute buckets (the current one and the 5 before, so 50 to 60 minutes);
//! each bucket is counted in `SHARDS` counters, whose sum is the bucket's count. A send reads
//! the window's counters in its snapshot; nothing on the request path writes them on DynamoDB.
//!
//! Where the counting happens, and so how exact the guard is:
//! - The embedded store counts a send in its commit and a verify in the write that marks the
//!   OTP verified, under one lock: exact, and read at once.
//! - On DynamoDB the counters are off the request path (issue 26: a counter every guarded
//!   send and verify of an account writes in its transaction capped the account at ~31 pairs/s).
//!   The OTP item says whether the guard counts it (`Otp::guarded`); the table's stream worker
//!   counts a batch's inserted guarded OTPs as sends and its guarded OTPs turned `success` as
//!   verifies (`tally`), one `ADD` per counter per batch, in a shard of the batch's choosing
//!   (`workers::callbacks::count_guard`). A send reads the window eventually consistent and
//!   keeps it for `GUARD_CACHE_MS` per process. The guard so lags the traffic by up to the
//!   stream's delay (typically well under a second, plus the 1 s batching window) plus the
//!   cache time: a burst can run that long before it is paused, and a country resumes that
//!   long after the verifies came in. A stream batch that fails after counting is counted
//!   again when retried (at-least-once): a rare over-count of sends errs towards pausing.
//!   An undone send (nothing delivered) takes its count back itself (`ADD sends -1` in the
//!   undo's transaction); a shard may so read negative for a while: only sums mean anything.

use super::{
    otp::{Otp, OtpStatus},
    phone::NON_GEOGRAPHIC,
    policy::GuardSettings,
    time::Millis,
};

pub const BUCKET_MS: Millis = 10 * 60 * 1000;
/// The counters' "country" for the account-wide window: every guarded send and verify of the
/// account counts there too, so spreading sends over many countries, each under its own
/// threshold, still meets the account's (`GuardSettings::account_min_sends`).
pub const ACCOUNT_WIDE: &str = "all countries";
/// Buckets in the window: the current one and the 5 before it.
pub const WINDOW_BUCKETS: i64 = 6;
/// Counters per bucket. A stream batch writes one of them per counted window (its choice), so
/// each takes 1/`SHARDS` of the batches; a send reads all of them: 2 windows x 6 buckets x 8 =
/// 96 keys, one `BatchGetItem` (at most 100). Counters written when there were 4 (by the
/// OTP's sid) are shards 0-3, still read.
pub const SHARDS: u8 = 8;
/// How long a process keeps the window it read (DynamoDB): at most one read of each counter a
/// second per process, whatever the send rate.
pub const GUARD_CACHE_MS: Millis = 1_000;

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

/// A counter, or a window's total. Signed: an undo may take a send back from another shard
/// than the stream counted it in (only the window's total, never below zero, means anything).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardCount {
    pub sends: i64,
    pub verifies: i64,
}

impl GuardCount {
    fn plus(self, o: GuardCount) -> GuardCount {
        GuardCount { sends: self.sends + o.sends, verifies: self.verifies + o.verifies }
    }
}

/// What a batch of stored OTP changes counts, per counter (shard 0: the writer picks the
/// shard): a guarded OTP inserted counts a send in its country and account-wide, in the bucket
/// of its creation; one that turned `success` counts a verify there, in the bucket of that
/// write (`updated_ms`). Other changes count nothing. In the order of the keys.
pub fn tally<'a>(changes: impl IntoIterator<Item = (Option<&'a Otp>, &'a Otp)>) -> Vec<(GuardKey, GuardCount)> {
    let mut counts: std::collections::BTreeMap<(String, String, i64), GuardCount> = Default::default();
    for (old, new) in changes {
        let Some(country) = new.country.as_deref().filter(|_| new.guarded) else { continue };
        let mut count = |at: Millis, c: GuardCount| {
            for cc in [country, ACCOUNT_WIDE] {
                let e = counts.entry((new.account_sid.clone(), cc.to_owned(), bucket(at))).or_default();
                *e = e.plus(c);
            }
        };
        if old.is_none() {
            count(new.created_ms, GuardCount { sends: 1, verifies: 0 });
        }
        if new.status == OtpStatus::Success && old.is_none_or(|o| o.status != OtpStatus::Success) {
            count(new.updated_ms, GuardCount { sends: 0, verifies: 1 });
        }
    }
    counts
        .into_iter()
        .map(|((account_sid, country, bucket), c)| (GuardKey { account_sid, country, bucket, shard: 0 }, c))
        .collect()
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
    settings.enabled && guardable(country)
}

/// Whether an enabled guard watches `country` (see `guards`).
pub fn guardable(country: &str) -> bool {
    country.len() == 2 || country == NON_GEOGRAPHIC
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
    let t = counts.iter().flatten().fold(GuardCount::default(), |t, c| t.plus(*c));
    GuardCount { sends: t.sends.max(0), verifies: t.verifies.max(0) }
}

/// Whether the next send is refused: enough sends, too few of them verified.
pub fn paused(settings: &GuardSettings, window: GuardCount) -> bool {
    window.sends >= i64::from(settings.min_sends)
        && window.verifies.min(window.sends) * 100 < window.sends * i64::from(settings.min_verify_percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: GuardSettings =
        GuardSettings { enabled: true, min_sends: 10, min_verify_percent: 20, account_min_sends: 30 };

    fn count(sends: i64, verifies: i64) -> GuardCount {
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
        assert_eq!(keys.len(), 6 * SHARDS as usize);
        assert_eq!(keys.first().unwrap().bucket, 5);
        assert_eq!(keys.last().unwrap().bucket, 10);
        let mine = GuardKey::at("AC1", "US", now, "OTPabc");
        assert!(keys.contains(&mine), "a send's own counter is in the window it reads");
        assert_eq!(total(&[Some(count(3, 1)), None, Some(count(2, 2))]), count(5, 3));
        // A send undone from another shard than it was counted in: the sum is what counts
        assert_eq!(total(&[Some(count(1, 0)), Some(count(-1, 0)), Some(count(2, 1))]), count(2, 1));
        assert_eq!(total(&[Some(count(-1, 0))]), count(0, 0), "never below zero");
    }

    #[test]
    fn a_batch_counts_guarded_inserts_as_sends_and_guarded_otps_turned_success_as_verifies() {
        use crate::domain::otp::tests::otp_at;
        let at = 10 * BUCKET_MS + 5;
        let guarded = |sid: &str| Otp {
            sid: sid.into(),
            account_sid: "AC1".into(),
            country: Some("DE".into()),
            guarded: true,
            ..otp_at(at)
        };
        let (a, b) = (guarded("OTPa"), guarded("OTPb"));
        let mut b_verified = b.clone();
        (b_verified.status, b_verified.updated_ms) = (OtpStatus::Success, at + BUCKET_MS);
        let mut b_event = b.clone();
        b_event.attempts = 1;
        let unguarded = otp_at(at);
        // Given a batch: a inserted, b verified in the next bucket, b changed otherwise, an
        // unguarded OTP inserted, a verify seen again (an old image already `success`)
        let changes = [
            (None, &a),
            (Some(&b), &b_verified),
            (Some(&b), &b_event),
            (None, &unguarded),
            (Some(&b_verified), &b_verified),
        ];
        // Then one count per counter: a's send in its bucket, b's verify in the next, each in
        // the country and account-wide
        let counts: Vec<_> = tally(changes).into_iter().map(|(k, c)| (k.country, k.bucket, k.shard, c)).collect();
        assert_eq!(
            counts,
            [
                ("DE".to_owned(), 10, 0, count(1, 0)),
                ("DE".to_owned(), 11, 0, count(0, 1)),
                (ACCOUNT_WIDE.to_owned(), 10, 0, count(1, 0)),
                (ACCOUNT_WIDE.to_owned(), 11, 0, count(0, 1)),
            ]
        );
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
        assert_eq!(windows("AC1", "DE", 10 * BUCKET_MS).len(), 12 * SHARDS as usize);
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
