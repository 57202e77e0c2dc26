//! Property tests (proptest) of the domain rules: fixed limit windows, the status of an OTP at
//! any time, supersede with guard times through a real send, and pagination that returns each
//! record exactly once.

use std::sync::Arc;

use proptest::prelude::*;

use super::{
    account::Account,
    crypto::Keys,
    limits::{plan_counters, Admission, Bucket, Counter, CounterKey, CounterOp},
    otp::{tests::otp_at, Delivery, OtpStatus},
    records::{search, SearchFilter, SearchRequest},
    send::{send, SendRequest},
    time::Millis,
};
use crate::{
    adapters::{clock::AdjustableClock, memory::MemoryStore, outbox::Outbox},
    ports::{AccountStore, Clock, Deps, NoScheduler, OtpStore},
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn deps() -> (Deps, Arc<MemoryStore>, Arc<AdjustableClock>) {
    let clock = Arc::new(AdjustableClock::default());
    let store = Arc::new(MemoryStore::new());
    let outbox = Arc::new(Outbox::new(clock.clone()));
    let deps = Deps {
        store: store.clone(),
        dispatcher: outbox,
        clock: clock.clone(),
        keys: Arc::new(Keys::random()),
        scheduler: Arc::new(NoScheduler),
    };
    (deps, store, clock)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A bucket of `max` per `interval` is a fixed window: it opens at the first send admitted
    /// after the last one ended, lasts exactly `interval`, admits at most `max` sends, and
    /// refuses only when `max` were admitted in it.
    #[test]
    fn limit_buckets_are_fixed_windows_admitting_at_most_max(
        max in 1u32..6,
        interval_secs in 1u32..120,
        gaps_ms in prop::collection::vec(0i64..40_000, 1..60),
    ) {
        let key = CounterKey { account_sid: "AC".into(), limit: "LM".into(), bucket: "b".into(), value: "v".into() };
        let admission = [Admission {
            limit_name: Some("l".into()),
            counters: vec![(key.clone(), Bucket { name: "b".into(), max, interval_secs })],
        }];
        let mut state: Option<Counter> = None;
        let mut now: Millis = 1_000_000;
        let mut window: Option<(Millis, u32)> = None; // (end, admitted in it), as the model sees it
        for gap in gaps_ms {
            now += gap;
            if window.is_some_and(|(end, _)| end <= now) {
                window = None;
            }
            match plan_counters(now, &admission, &[state]) {
                Ok(ops) => {
                    prop_assert_eq!(ops.len(), 1);
                    match &ops[0] {
                        CounterOp::Open { window_end_ms, .. } => {
                            prop_assert!(window.is_none(), "a window opened inside an open one");
                            prop_assert_eq!(*window_end_ms, now + i64::from(interval_secs) * 1000);
                            state = Some(Counter { count: 1, window_end_ms: *window_end_ms });
                            window = Some((*window_end_ms, 1));
                        }
                        CounterOp::Increment { window_end_ms, .. } => {
                            let (end, n) = window.expect("an increment needs an open window");
                            prop_assert_eq!(*window_end_ms, end, "the window end never moves");
                            prop_assert!(n < max);
                            state = Some(Counter { count: n + 1, window_end_ms: end });
                            window = Some((end, n + 1));
                        }
                    }
                }
                Err(_) => prop_assert!(window.is_some_and(|(_, n)| n >= max), "refused with room left"),
            }
        }
    }

    /// The status at any time: pending until the first of the timeout and the supersede
    /// deadline, then expired or canceled for good; a final status never changes.
    #[test]
    fn status_at_any_time_follows_timeout_and_cancel_deadline(
        timeout in 1i64..1_000_000,
        cancel in prop::option::of(0i64..2_000_000),
        at in prop::collection::vec(0i64..3_000_000, 1..20),
        final_status in prop::sample::select(vec![None, Some(OtpStatus::Success), Some(OtpStatus::Failed), Some(OtpStatus::Canceled)]),
    ) {
        let mut otp = otp_at(0);
        otp.expires_ms = timeout;
        otp.cancel_at_ms = cancel;
        if let Some(s) = final_status {
            otp.status = s;
        }
        let mut times = at;
        times.sort();
        let mut last = OtpStatus::Pending;
        for t in times {
            let status = otp.status_at(t);
            let want = match (final_status, cancel) {
                (Some(s), _) => s,
                (None, Some(c)) if t >= c && c < timeout => OtpStatus::Canceled,
                (None, _) if t >= timeout => OtpStatus::Expired,
                _ => OtpStatus::Pending,
            };
            prop_assert_eq!(status, want, "at {}", t);
            prop_assert!(last == OtpStatus::Pending || last == status, "left {:?} for {:?}", last, status);
            last = status;
        }
    }

    /// Sends to one number, minutes apart, each with or without a guard time: the OTP a send
    /// supersedes stays verifiable for the guard time (the new send's, else its own) unless it
    /// expires first, then reads canceled; the newest is always pending.
    #[test]
    fn a_superseded_otp_lives_out_its_guard_time_then_reads_canceled(
        steps in prop::collection::vec((61i64..400, prop::option::of(0u32..=300)), 2..6),
    ) {
        runtime().block_on(async {
            let (deps, store, clock) = deps();
            let account = Account::new("AC1".into(), "token", &deps.keys, None, clock.now_ms());
            store.put_account(&account).await.unwrap();
            let mut previous: Option<(String, Option<u32>)> = None;
            for (gap, guard) in steps {
                clock.advance_secs(gap);
                let req = SendRequest {
                    service: "2FA".into(),
                    delivery: Delivery::sms("Twofa", "+14155550100", "{code}"),
                    length: 6,
                    timeout_secs: 300,
                    guard_time: guard,
                    limits: vec![],
                    idempotency_key: None,
                    workflow: None,
                    email: None,
                    email_from: None,
                };
                let sid = send(&deps, &account, req).await.expect("send");
                let new = store.get_otp("AC1", &sid).await.unwrap().unwrap();
                // The send's own clock reading (the dev clock runs on between two readings).
                let sent_at = new.created_ms;
                prop_assert_eq!(new.status_at(sent_at), OtpStatus::Pending);
                if let Some((old_sid, old_guard)) = previous {
                    let old = store.get_otp("AC1", &old_sid).await.unwrap().unwrap();
                    let grace = i64::from(guard.or(old_guard).unwrap_or(0)) * 1000;
                    let deadline = sent_at + grace;
                    if old.expires_ms <= sent_at {
                        prop_assert_eq!(old.status_at(sent_at), OtpStatus::Expired);
                    } else {
                        prop_assert_eq!(old.cancel_at_ms, Some(deadline));
                        let before = old.status_at(deadline - 1);
                        prop_assert!(deadline == sent_at || before == OtpStatus::Pending || (before == OtpStatus::Expired && old.expires_ms < deadline));
                        let after = old.status_at(deadline);
                        prop_assert!(after == OtpStatus::Canceled || (after == OtpStatus::Expired && old.expires_ms <= deadline));
                    }
                }
                previous = Some((sid, guard));
            }
            Ok(())
        })?;
    }

    /// Following `next` from page 0 returns every record exactly once, newest first, whatever
    /// the page size and however many records share a creation time.
    #[test]
    fn pages_cover_each_record_exactly_once_newest_first(
        created in prop::collection::vec(0i64..20, 0..45),
        page_size in 1u64..12,
    ) {
        runtime().block_on(async {
            let (deps, store, clock) = deps();
            let now = clock.now_ms();
            let mut all = vec![];
            {
                let mut s = store.lock().unwrap();
                for (i, c) in created.iter().enumerate() {
                    let mut otp = otp_at(now - 100_000 + c * 1000);
                    otp.sid = format!("OTP{i:04}");
                    otp.account_sid = "AC1".into();
                    all.push((otp.created_ms, otp.sid.clone()));
                    let id = s.ids.otp("AC1", &otp.sid);
                    s.otps.insert(id, Box::new(otp));
                }
            }
            let accounts = vec!["AC1".to_owned()];
            let mut seen = vec![];
            let mut req = SearchRequest { filter: SearchFilter::default(), page: 0, page_size, token: None };
            for _ in 0..=created.len() + 1 {
                let page = search(&deps, &accounts, &req).await.expect("search");
                prop_assert_eq!(page.total, created.len() as u64);
                prop_assert!(page.otps.len() as u64 <= page_size);
                seen.extend(page.otps.iter().map(|o| (o.created_ms, o.sid.clone())));
                if !page.has_next {
                    break;
                }
                req = SearchRequest { page: req.page + 1, token: page.next.clone(), ..req };
            }
            let mut newest_first = all.clone();
            newest_first.sort_by(|a, b| b.cmp(a));
            prop_assert_eq!(seen, newest_first);
            Ok(())
        })?;
    }
}
