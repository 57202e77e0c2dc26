//! The embedded store: everything in one process, behind one mutex, so every multi-item write
//! is atomic exactly as a DynamoDB transaction is. Same conditions, same answers.

mod account_admin;
mod console;
mod factors;
mod insights;
mod receipts;
mod records;
mod workflows;

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, MutexGuard, OnceLock,
    },
};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use async_trait::async_trait;

use crate::{
    domain::{
        account::Account,
        error::{Error, Result},
        guard::{self, GuardCount, GuardKey},
        idempotency::IdempotencyRecord,
        insights as counts,
        limits::{Counter, CounterKey, CounterOp, LimitDef},
        otp::{ChannelEvent, Check, Destination, FailureStreak, Otp, OtpStatus, MAX_ATTEMPTS},
        policy::AccountPolicy,
        time::Millis,
        usage::UsageKey,
        workflows::WorkflowDef,
    },
    ports::{
        AccountStore, CancelWrite, DuePage, ExpiryStore, LimitStore, Lookup, OtpStore, SendPlan, SendSnapshot,
        SnapshotRequest, VerifyWrite,
    },
};

/// The store's maps hash with foldhash (seeded per process) rather than SipHash: a send touches
/// about ten of their keys, and SipHash was ~5 % of a dev-server send's CPU.
pub(crate) type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
pub(crate) struct State {
    pub accounts: Map<String, Account>,
    /// Keyed by `Ids::otp` (no key strings to allocate, hash and compare per lookup; every
    /// read checks the OTP's own account and sid). Boxed: a map that evicts one OTP per send
    /// at its cap rehashes now and then, and moves a pointer rather than a ~600-byte OTP.
    pub otps: Map<u128, Box<Otp>>,
    /// Keyed by `Ids::destination` (account, service, to).
    pub destinations: Map<u128, Destination>,
    pub limits: Map<(String, String), LimitDef>,
    pub workflows: Map<(String, String), WorkflowDef>,
    /// Keyed by `Ids::counter` (16 bytes, no heap) rather than the key's four strings: the
    /// default limit alone keeps a window per number sent to in the last minute, millions
    /// under load.
    pub counters: Map<u128, Counter>,
    pub ids: Ids,
    pub usage: Map<UsageKey, u64>,
    /// (account, idempotency key) → record.
    pub idempotency: Map<(String, String), IdempotencyRecord>,
    pub guard: Map<GuardKey, GuardCount>,
    /// (account, destination) → its failed verifies since its last success.
    pub failures: Map<(String, String), FailureStreak>,
    /// OTP ids in commit order, each with its destination pointer's id, for the cap on how
    /// many are kept: evicting one then reads none of the OTP's key strings (cold by then).
    pub order: VecDeque<(u128, u128)>,
    /// The console's sessions by key, and its sign-in counters by key (count, expiry).
    pub console_sessions: Map<String, crate::domain::console::ConsoleSession>,
    pub sign_in_counters: Map<String, (u32, Millis)>,
    /// Commits since the last sweep of expired counters, pointers, keys and guard buckets.
    pub since_sweep: u32,
    /// When (store time) that sweep was.
    pub last_sweep_ms: Millis,
    /// Insights' counter cells (`insights::Cells`).
    pub insights: insights::Cells,
    /// Factors by (account, entity, sid): an entity's in one ordered run, as on DynamoDB.
    pub factors: std::collections::BTreeMap<(String, String, String), crate::domain::factor::Factor>,
}

/// OTPs the embedded store keeps by default: the newest; older ones (and their destination
/// pointers) are dropped, so a long-running dev server stays within a few hundred MB.
pub const DEFAULT_MAX_OTPS: usize = 50_000;
/// Commits between two sweeps of what DynamoDB's TTL would have deleted.
const SWEEP_EVERY: u32 = 1024;
/// And at least this much store time: a sweep visits every live window (at 15k sends/s to new
/// numbers the default limit alone keeps ~900k), so sweeping by commits alone made each send
/// pay ~900 visits; once a second, about 60. Nothing waits on it: an expired window already
/// reads as none.
const SWEEP_MIN_MS: Millis = 1000;
/// A destination pointer outlives its OTP's expiry by this much (its DynamoDB TTL).
const POINTER_GRACE_MS: Millis = 24 * 3600 * 1000;

impl State {
    /// Keep at most `max` OTPs (the newest), and every `SWEEP_EVERY` commits (at most once per
    /// `SWEEP_MIN_MS`) drop what is past its use at `now` and would be gone by TTL on DynamoDB:
    /// expired counter windows (an expired window reads as no window), pointers a day past
    /// their OTP's expiry, idempotency keys past 24 h, guard buckets out of the hour window.
    fn bound(&mut self, max: usize, now: Millis) {
        while self.order.len() > max {
            self.evict_oldest();
        }
        self.since_sweep += 1;
        if self.since_sweep < SWEEP_EVERY || now < self.last_sweep_ms + SWEEP_MIN_MS {
            return;
        }
        self.since_sweep = 0;
        self.last_sweep_ms = now;
        self.counters.retain(|_, c| c.window_end_ms > now);
        self.destinations.retain(|_, d| d.current_expires_ms + POINTER_GRACE_MS > now);
        self.idempotency.retain(|_, r| r.live_at(now));
        let window = crate::domain::guard::WINDOW_BUCKETS * crate::domain::guard::BUCKET_MS;
        self.guard.retain(|k, _| k.bucket_end_ms() + window > now);
        self.failures.retain(|_, f| f.count_at(now) > 0);
        self.sweep_insights(now);
    }
}

impl State {
    /// Drop the oldest OTP kept (and its destination pointer, if it still names it); its box,
    /// to hold another OTP (`store_otp`), if it was still there.
    fn evict_oldest(&mut self) -> Option<Box<Otp>> {
        let (id, dest) = self.order.pop_front()?;
        let otp = self.otps.remove(&id)?;
        if self.destinations.get(&dest).is_some_and(|d| d.current == otp.sid) {
            self.destinations.remove(&dest);
        }
        Some(otp)
    }

    /// Keep a copy of `otp` under `id`, the newest. At the cap, the copy is written into the
    /// memory of the OTP it evicts (`clone_from`: same shape of strings, so no block is freed
    /// or allocated), which took a send ~30 calls to the allocator, most on cold memory.
    fn store_otp(&mut self, id: u128, dest: u128, otp: &Otp, max: usize) {
        let mut recycled = None;
        while self.order.len() >= max {
            recycled = self.evict_oldest().or(recycled);
        }
        let stored = match recycled {
            Some(mut old) => {
                Otp::clone_from(&mut old, otp);
                old
            }
            None => Box::new(otp.clone()),
        };
        self.otps.insert(id, stored);
        self.order.push_back((id, dest));
    }
}

/// The ids the store's maps are keyed by: a key's parts under 128-bit SipHash-1-3, keyed from
/// the OS at start, with a tag per kind of key. Two live keys share an id with odds of ~1e-26
/// at a few million keys. If two counters did, they would share one count, which refuses
/// early and never admits past `max`; an OTP read checks the OTP's own account and sid, so
/// not even a shared id opens another account's OTP.
pub(crate) struct Ids(u64, u64);

impl Default for Ids {
    fn default() -> Self {
        use rand::{rngs::OsRng, RngCore};
        Ids(OsRng.next_u64(), OsRng.next_u64())
    }
}

impl Ids {
    fn of(&self, key: impl std::hash::Hash) -> u128 {
        use siphasher::sip128::{Hasher128, SipHasher13};
        let mut h = SipHasher13::new_with_keys(self.0, self.1);
        key.hash(&mut h);
        h.finish128().as_u128()
    }

    fn counter(&self, key: &CounterKey) -> u128 {
        self.of((0u8, key))
    }

    pub(crate) fn otp(&self, account: &str, sid: &str) -> u128 {
        self.of((1u8, account, sid))
    }

    fn destination(&self, account: &str, service: &str, to: &str) -> u128 {
        self.of((2u8, account, service, to))
    }
}

/// The OTP `sid` of `account`, if stored (see `Ids`).
fn otp_of<'a>(otps: &'a Map<u128, Box<Otp>>, ids: &Ids, account: &str, sid: &str) -> Option<&'a Otp> {
    otps.get(&ids.otp(account, sid)).map(|o| &**o).filter(|o| o.account_sid == account && o.sid == sid)
}

/// `otp_of`, to change.
fn otp_mut<'a>(otps: &'a mut Map<u128, Box<Otp>>, ids: &Ids, account: &str, sid: &str) -> Option<&'a mut Otp> {
    otps.get_mut(&ids.otp(account, sid)).map(|o| &mut **o).filter(|o| o.account_sid == account && o.sid == sid)
}

pub struct MemoryStore {
    state: Mutex<State>,
    down: AtomicBool,
    lose_commit_answer: AtomicBool,
    max_otps: usize,
    /// Where each stored change of an OTP that someone listens to goes (`listened`), once
    /// someone subscribed (the dev server's callbacks): what the DynamoDB Stream is to the table.
    feed: OnceLock<UnboundedSender<OtpChange>>,
}

/// One stored change of an OTP: the version before (None: just created) and after.
#[derive(Debug, Clone)]
pub struct OtpChange {
    pub old: Option<Otp>,
    pub new: Otp,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            state: Mutex::default(),
            down: AtomicBool::default(),
            lose_commit_answer: AtomicBool::default(),
            max_otps: DEFAULT_MAX_OTPS,
            feed: OnceLock::new(),
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The same store keeping at most `max` OTPs (the newest).
    pub fn with_max_otps(mut self, max: usize) -> Self {
        self.max_otps = max.max(1);
        self
    }

    /// Simulate the store being unreachable (every call answers `Unavailable`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Simulate the answer of the next `commit_send` being lost: it is applied, then answers
    /// `Contended` (as a DynamoDB transaction retried after a lost answer fails its conditions).
    pub fn lose_next_commit_answer(&self) {
        self.lose_commit_answer.store(true, Ordering::SeqCst);
    }

    /// Every change from now on of an OTP with a callback (its own, or its account's at the
    /// time of the change), in the order stored (one subscriber: the first). Changes of other
    /// OTPs have nowhere to go, so they are not told: most OTPs have no callback, and copying
    /// each change of every OTP to the subscriber was ~7 % of a dev-server send's CPU.
    pub fn subscribe(&self) -> Option<UnboundedReceiver<OtpChange>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.feed.set(tx).ok().map(|()| rx)
    }

    /// Tell a change to the subscriber (called under the state lock, so in order; only for a
    /// change it `heard`).
    fn tell(&self, old: Option<Otp>, new: &Otp) {
        if let Some(feed) = self.feed.get() {
            // A subscriber gone (its runtime ended) only means nobody listens any more.
            let _ = feed.send(OtpChange { old, new: new.clone() });
        }
    }

    /// Whether the subscriber hears of a change of `otp` (it has a callback, or its account).
    fn heard(&self, accounts: &Map<String, Account>, otp: &Otp) -> bool {
        self.feed.get().is_some()
            && (otp.delivery.callback.is_some()
                || accounts.get(&otp.account_sid).is_some_and(|a| a.policy.callback.is_some()))
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, State>> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::Unavailable);
        }
        self.state.lock().map_err(|_| Error::Internal)
    }
}

fn idem_key(account: &str, key: &str) -> (String, String) {
    (account.to_owned(), key.to_owned())
}

/// Pending at `now`, with no supersede deadline passed: what every state change requires.
fn live(otp: &Otp, now: Millis) -> bool {
    otp.status_at(now) == OtpStatus::Pending
}

#[async_trait]
impl AccountStore for MemoryStore {
    async fn get_account(&self, sid: &str) -> Result<Option<Account>> {
        Ok(self.lock()?.accounts.get(sid).cloned())
    }

    async fn get_account_fresh(&self, sid: &str) -> Result<Option<Account>> {
        self.get_account(sid).await
    }

    async fn put_account(&self, account: &Account) -> Result<()> {
        let mut s = self.lock()?;
        if s.accounts.contains_key(&account.sid) {
            return Err(Error::Contended);
        }
        s.accounts.insert(account.sid.clone(), account.clone());
        Ok(())
    }

    async fn list_sub_accounts(&self, ancestor_sid: &str) -> Result<Vec<Account>> {
        let s = self.lock()?;
        Ok(s.accounts.values().filter(|a| a.ancestors.iter().any(|x| x == ancestor_sid)).cloned().collect())
    }

    async fn set_policy(&self, account: &Account, policy: &AccountPolicy) -> Result<()> {
        let mut s = self.lock()?;
        let stored = s.accounts.get_mut(&account.sid).ok_or(Error::NotFound)?;
        if stored.policy_version != account.policy_version {
            return Err(Error::Contended);
        }
        stored.policy = policy.clone();
        stored.policy_version += 1;
        Ok(())
    }
}

#[async_trait]
impl OtpStore for MemoryStore {
    async fn snapshot(&self, r: &SnapshotRequest<'_>) -> Result<SendSnapshot> {
        let s = self.lock()?;
        Ok(SendSnapshot {
            destination: s.destinations.get(&s.ids.destination(r.account_sid, r.service, r.to)).cloned(),
            limits: r
                .limit_names
                .iter()
                .map(|n| s.limits.values().find(|l| l.account_sid == r.account_sid && &l.name == n).cloned())
                .collect(),
            counters: r.counters.iter().map(|k| s.counters.get(&s.ids.counter(k)).copied()).collect(),
            idempotency: r.idempotency_key.and_then(|k| s.idempotency.get(&idem_key(r.account_sid, k)).cloned()),
            guard: r.guard.iter().map(|k| s.guard.get(k).copied()).collect(),
            failures: s.failures.get(&(r.account_sid.to_owned(), r.to.to_owned())).copied().unwrap_or_default(),
        })
    }

    async fn get_counters(&self, keys: &[CounterKey]) -> Result<Vec<Option<Counter>>> {
        let s = self.lock()?;
        Ok(keys.iter().map(|k| s.counters.get(&s.ids.counter(k)).copied()).collect())
    }

    async fn commit_send(&self, plan: &SendPlan) -> Result<()> {
        let mut locked = self.lock()?;
        // One borrow of the state, so its ids can be read beside a mutable map.
        let s = &mut *locked;
        let otp = &plan.otp;
        let acct = &otp.account_sid;
        let id = s.ids.otp(acct, &otp.sid);
        let dest = s.ids.destination(acct, &otp.service, &otp.delivery.to);
        // Every condition first; nothing is written unless all hold. A taken id refuses even
        // if it holds another OTP (see `Ids`).
        let conditions = !s.otps.contains_key(&id)
            && s.destinations.get(&dest).map(|d| &d.current) == plan.expected_current.as_ref()
            && plan.supersede.as_ref().is_none_or(|old| otp_of(&s.otps, &s.ids, acct, &old.sid).is_some())
            && plan.counters.iter().all(|op| counter_condition(&s.counters, s.ids.counter(op.key()), op))
            && plan.idempotency.as_ref().is_none_or(|r| {
                s.idempotency.get(&idem_key(acct, &r.key)).is_none_or(|old| !old.live_at(r.created_ms))
            });
        if !conditions {
            return Err(Error::Contended);
        }
        for op in &plan.counters {
            match op {
                CounterOp::Open { key, window_end_ms, .. } => {
                    let id = s.ids.counter(key);
                    s.counters.insert(id, Counter { count: 1, window_end_ms: *window_end_ms });
                }
                CounterOp::Increment { key, .. } => {
                    let id = s.ids.counter(key);
                    if let Some(c) = s.counters.get_mut(&id) {
                        c.count += 1;
                    }
                }
            }
        }
        if let Some(old) = &plan.supersede {
            if let Some(o) = otp_mut(&mut s.otps, &s.ids, acct, &old.sid) {
                o.cancel_at_ms = Some(old.cancel_at_ms);
            }
        }
        for u in &plan.usage {
            *s.usage.entry(u.clone()).or_default() += 1;
        }
        for g in &plan.guard {
            s.guard.entry(g.clone()).or_default().sends += 1;
        }
        if let Some(r) = &plan.idempotency {
            s.idempotency.insert(idem_key(acct, &r.key), r.clone());
        }
        for cell in counts::changes(None, otp) {
            s.count(cell);
        }
        s.destinations.insert(dest, plan.destination.clone());
        s.store_otp(id, dest, otp, self.max_otps);
        if self.heard(&s.accounts, otp) {
            self.tell(None, otp);
        }
        s.bound(self.max_otps, otp.created_ms);
        if self.lose_commit_answer.swap(false, Ordering::SeqCst) {
            return Err(Error::Contended);
        }
        Ok(())
    }

    async fn undo_send(&self, plan: &SendPlan) -> Result<()> {
        let mut locked = self.lock()?;
        // One borrow of the state, so its ids can be read beside a mutable map.
        let s = &mut *locked;
        let otp = &plan.otp;
        let acct = &otp.account_sid;
        if otp_of(&s.otps, &s.ids, acct, &otp.sid).is_none() {
            return Err(Error::NotFound);
        }
        s.otps.remove(&s.ids.otp(acct, &otp.sid));
        s.uncount_send(&counts::send_cell(otp));
        let dkey = s.ids.destination(acct, &otp.service, &otp.delivery.to);
        if s.destinations.get(&dkey).is_some_and(|d| d.current == otp.sid) {
            match &plan.supersede {
                // The pointer goes back to the OTP it pointed at; its guard data is gone with
                // the supersede, which is the state before the send in every way that matters.
                Some(old) => {
                    let d = s.destinations.get_mut(&dkey).expect("checked above");
                    d.current = old.sid.clone();
                    d.previous = None;
                }
                None => {
                    s.destinations.remove(&dkey);
                }
            }
        }
        if let Some(old) = &plan.supersede {
            if let Some(o) = otp_mut(&mut s.otps, &s.ids, acct, &old.sid) {
                if o.cancel_at_ms == Some(old.cancel_at_ms) {
                    o.cancel_at_ms = None;
                }
            }
        }
        for op in &plan.counters {
            let id = s.ids.counter(op.key());
            if let Some(c) = s.counters.get_mut(&id) {
                if c.window_end_ms == op.window_end_ms() {
                    c.count = c.count.saturating_sub(1);
                }
            }
        }
        for u in &plan.usage {
            if let Some(n) = s.usage.get_mut(u) {
                *n = n.saturating_sub(1);
            }
        }
        for g in &plan.guard {
            if let Some(c) = s.guard.get_mut(g).filter(|c| c.sends > 0) {
                c.sends -= 1;
            }
        }
        if let Some(r) = &plan.idempotency {
            let key = idem_key(acct, &r.key);
            if s.idempotency.get(&key).is_some_and(|old| old.otp_sid == otp.sid) {
                s.idempotency.remove(&key);
            }
        }
        Ok(())
    }

    async fn update_event(&self, of: &Otp, index: usize, event: &ChannelEvent, _lookup: Lookup) -> Result<()> {
        let mut locked = self.lock()?;
        // One borrow of the state, so the accounts can be read beside a mutable OTP.
        let s = &mut *locked;
        let otp = otp_mut(&mut s.otps, &s.ids, &of.account_sid, &of.sid).ok_or(Error::Contended)?;
        let old = self.heard(&s.accounts, otp).then(|| Otp::clone(otp));
        let slot = otp.events.get_mut(index).ok_or(Error::Contended)?;
        let before = slot.status;
        slot.clone_from(event);
        let counted = counts::outcome_cell(otp, event.channel, Some(before), event.status);
        if old.is_some() {
            self.tell(old, otp);
        }
        if let Some(cell) = counted {
            s.count(cell);
        }
        Ok(())
    }

    async fn get_otp(&self, account_sid: &str, otp_sid: &str) -> Result<Option<Otp>> {
        let s = self.lock()?;
        Ok(otp_of(&s.otps, &s.ids, account_sid, otp_sid).cloned())
    }

    async fn get_destination(&self, account_sid: &str, service: &str, to: &str) -> Result<Option<Destination>> {
        let s = self.lock()?;
        Ok(s.destinations.get(&s.ids.destination(account_sid, service, to)).cloned())
    }

    async fn verify_code(
        &self,
        account_sid: &str,
        otp_sid: &str,
        code_hashes: &[Vec<u8>],
        check: &Check,
        now: Millis,
    ) -> Result<VerifyWrite> {
        let mut locked = self.lock()?;
        // One borrow of the state, so the accounts can be read beside a mutable OTP.
        let s = &mut *locked;
        let Some(otp) = otp_mut(&mut s.otps, &s.ids, account_sid, otp_sid) else {
            return Ok(VerifyWrite::Refused(None));
        };
        if !live(otp, now) || otp.attempts >= MAX_ATTEMPTS {
            return Ok(VerifyWrite::Refused(Some(Otp::clone(otp))));
        }
        // Compared and counted under one lock: a wrong code is never compared uncounted.
        let right = code_hashes.iter().any(|h| crate::domain::crypto::ct_eq(&otp.code_hash, h));
        let old = self.heard(&s.accounts, otp).then(|| Otp::clone(otp));
        otp.checks.push(Check { valid: right, ..check.clone() });
        let written = if right {
            otp.status = OtpStatus::Success;
            otp.updated_ms = now;
            VerifyWrite::Verified
        } else {
            otp.attempts += 1;
            let failed = otp.attempts >= MAX_ATTEMPTS;
            if failed {
                otp.status = OtpStatus::Failed;
                otp.updated_ms = now;
            }
            VerifyWrite::Wrong { failed }
        };
        let destination = (account_sid.to_owned(), otp.delivery.to.clone());
        let clears = otp.clears_failures || otp.attempts > 0;
        // A guarded OTP's verify counts where the stream worker counts it on DynamoDB: its
        // country and account-wide, in the bucket of now (exact here, and at once).
        let verified = matches!(written, VerifyWrite::Verified).then(|| counts::verified_cell(otp));
        let guard = match (&written, otp.country.as_deref()) {
            (VerifyWrite::Verified, Some(cc)) if otp.guarded => guard::counted_in(account_sid, cc, now, otp_sid),
            _ => vec![],
        };
        if old.is_some() {
            self.tell(old, otp);
        }
        if let Some(cell) = verified {
            s.count(cell);
        }
        match &written {
            VerifyWrite::Verified => {
                for g in guard {
                    s.guard.entry(g).or_default().verifies += 1;
                }
                if clears {
                    s.failures.remove(&destination);
                }
            }
            _ => {
                let streak = s.failures.entry(destination).or_default();
                *streak = streak.after_failure(now);
            }
        }
        Ok(written)
    }

    async fn clear_failures(&self, account_sid: &str, to: &str) -> Result<bool> {
        let mut s = self.lock()?;
        Ok(s.failures.remove(&(account_sid.to_owned(), to.to_owned())).is_some_and(|f| f.count > 0))
    }

    async fn claim_step(
        &self,
        account_sid: &str,
        otp_sid: &str,
        step: u32,
        event: &ChannelEvent,
        usage: &[UsageKey],
        now: Millis,
    ) -> Result<bool> {
        let mut locked = self.lock()?;
        // One borrow of the state, so the accounts can be read beside a mutable OTP.
        let s = &mut *locked;
        let Some(otp) = otp_mut(&mut s.otps, &s.ids, account_sid, otp_sid) else { return Ok(false) };
        if !live(otp, now) || otp.workflow.as_ref().is_none_or(|w| w.sent != step) {
            return Ok(false);
        }
        let old = self.heard(&s.accounts, otp).then(|| Otp::clone(otp));
        otp.events.push(event.clone());
        if let Some(w) = otp.workflow.as_mut() {
            w.sent = step + 1;
        }
        let counted = counts::outcome_cell(otp, event.channel, None, event.status);
        if old.is_some() {
            self.tell(old, otp);
        }
        if let Some(cell) = counted {
            s.count(cell);
        }
        for key in usage {
            *s.usage.entry(key.clone()).or_default() += 1;
        }
        Ok(true)
    }

    async fn cancel_otp(&self, account_sid: &str, otp_sid: &str, now: Millis) -> Result<CancelWrite> {
        let mut locked = self.lock()?;
        // One borrow of the state, so the accounts can be read beside a mutable OTP.
        let s = &mut *locked;
        let Some(otp) = otp_mut(&mut s.otps, &s.ids, account_sid, otp_sid) else {
            return Ok(CancelWrite::Refused(None));
        };
        if live(otp, now) {
            let old = self.heard(&s.accounts, otp).then(|| Otp::clone(otp));
            otp.status = OtpStatus::Canceled;
            otp.updated_ms = now;
            if old.is_some() {
                self.tell(old, otp);
            }
            Ok(CancelWrite::Canceled)
        } else {
            Ok(CancelWrite::Refused(Some(Otp::clone(otp))))
        }
    }
}

fn counter_condition(counters: &Map<u128, Counter>, id: u128, op: &CounterOp) -> bool {
    match op {
        CounterOp::Open { now_ms, .. } => counters.get(&id).is_none_or(|c| c.window_end_ms <= *now_ms),
        CounterOp::Increment { window_end_ms, max, .. } => {
            counters.get(&id).is_some_and(|c| c.window_end_ms == *window_end_ms && c.count < *max)
        }
    }
}

#[async_trait]
impl LimitStore for MemoryStore {
    async fn create_limit(&self, def: &LimitDef) -> Result<()> {
        let mut s = self.lock()?;
        if s.limits.values().any(|l| l.account_sid == def.account_sid && l.name == def.name) {
            return Err(Error::LimitNameExists);
        }
        s.limits.insert((def.account_sid.clone(), def.sid.clone()), def.clone());
        Ok(())
    }

    async fn get_limit(&self, account_sid: &str, sid: &str) -> Result<Option<LimitDef>> {
        Ok(self.lock()?.limits.get(&(account_sid.to_owned(), sid.to_owned())).cloned())
    }

    async fn update_limit(&self, def: &LimitDef) -> Result<()> {
        let mut s = self.lock()?;
        match s.limits.get_mut(&(def.account_sid.clone(), def.sid.clone())) {
            Some(l) => {
                *l = def.clone();
                Ok(())
            }
            None => Err(Error::LimitNotFound),
        }
    }

    async fn delete_limit(&self, account_sid: &str, sid: &str) -> Result<Option<LimitDef>> {
        Ok(self.lock()?.limits.remove(&(account_sid.to_owned(), sid.to_owned())))
    }

    async fn list_limits(&self, account_sid: &str) -> Result<Vec<LimitDef>> {
        let s = self.lock()?;
        let mut v: Vec<_> = s.limits.values().filter(|l| l.account_sid == account_sid).cloned().collect();
        v.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then_with(|| a.sid.cmp(&b.sid)));
        Ok(v)
    }
}

#[async_trait]
impl ExpiryStore for MemoryStore {
    /// One: nothing here is partitioned. So slice 0 of any count (`callbacks::SweepSlice`)
    /// sweeps everything and the other slices nothing; the dev server sweeps the whole.
    fn due_shards(&self) -> usize {
        1
    }

    /// As DynamoDB's due index reads: oldest deadline first (then sid), a page at most, and
    /// where the next one starts when it is full; the cursor is the last entry's
    /// `{deadline, 15 digits}#{sid}`, so it sorts as the entries do.
    async fn due_otps(&self, _shard: usize, now: Millis, limit: usize, after: Option<&str>) -> Result<DuePage> {
        let s = self.lock()?;
        let mut due: Vec<(String, &Otp)> = s
            .otps
            .values()
            .filter(|o| o.watched && o.status == OtpStatus::Pending && o.status_at(now) != OtpStatus::Pending)
            .map(|o| (due_key(o), &**o))
            .filter(|(key, _)| after.is_none_or(|a| key.as_str() > a))
            .collect();
        due.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // Full: more may follow (as DynamoDB's `LastEvaluatedKey` after `Limit` items).
        let next = (limit > 0 && due.len() >= limit).then(|| due[limit - 1].0.clone());
        let due = due.into_iter().take(limit).map(|(_, o)| (o.account_sid.clone(), o.sid.clone())).collect();
        Ok(DuePage { due, next })
    }

    async fn settle(&self, account_sid: &str, otp_sid: &str, now: Millis) -> Result<bool> {
        let mut locked = self.lock()?;
        // One borrow of the state, so the accounts can be read beside a mutable OTP.
        let s = &mut *locked;
        let Some(otp) = otp_mut(&mut s.otps, &s.ids, account_sid, otp_sid) else { return Ok(false) };
        let status = otp.status_at(now);
        if otp.status != OtpStatus::Pending || status == OtpStatus::Pending {
            return Ok(false);
        }
        let old = self.heard(&s.accounts, otp).then(|| Otp::clone(otp));
        otp.updated_ms = otp.updated_at(now);
        otp.status = status;
        if old.is_some() {
            self.tell(old, otp);
        }
        Ok(true)
    }
}

/// Where a pending OTP sorts among the due ones: its deadline (expiry, or the end of the guard
/// time of the send that superseded it), then its sid.
fn due_key(o: &Otp) -> String {
    let deadline = match o.cancel_at_ms {
        Some(at) if at < o.expires_ms => at,
        _ => o.expires_ms,
    };
    format!("{:015}#{}", deadline.max(0), o.sid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        callbacks::{CallbackMethod, CallbackTarget},
        crypto::Keys,
        limits::DEFAULT_LIMIT,
        otp::tests::otp_at,
    };

    fn plan(otp: Otp) -> SendPlan {
        SendPlan {
            destination: Destination {
                current: otp.sid.clone(),
                current_guard: None,
                current_expires_ms: otp.expires_ms,
                previous: None,
            },
            expected_current: None,
            supersede: None,
            counters: vec![],
            usage: vec![],
            idempotency: None,
            guard: vec![],
            otp,
        }
    }

    fn otp_to(sid: &str, to: &str) -> Otp {
        let mut otp = otp_at(1_000);
        otp.sid = sid.into();
        otp.delivery.to = to.into();
        otp
    }

    #[tokio::test]
    async fn the_feed_tells_the_changes_of_otps_with_a_callback_and_no_others() {
        // Given a subscribed store and an account with no callback of its own
        let store = MemoryStore::new();
        let mut feed = store.subscribe().expect("first subscriber");
        let mut account = Account::new("AC0".into(), "token", &Keys::random(), None, 0);
        store.put_account(&account).await.unwrap();

        // When an OTP without a callback is sent and canceled
        let quiet = otp_to("OTP1", "+14155550101");
        store.commit_send(&plan(quiet)).await.unwrap();
        store.cancel_otp("AC0", "OTP1", 2_000).await.unwrap();
        // Then nothing is told
        assert!(feed.try_recv().is_err(), "no callback anywhere: nothing to tell");

        // When an OTP naming its own callback is sent
        let mut own = otp_to("OTP2", "+14155550102");
        own.delivery.callback =
            Some(CallbackTarget { url: "http://127.0.0.1:9/cb".into(), method: CallbackMethod::Post });
        store.commit_send(&plan(own)).await.unwrap();
        // Then its creation is told
        let created = feed.try_recv().expect("the OTP's own callback");
        assert!(created.old.is_none());
        assert_eq!(created.new.sid, "OTP2");

        // When an OTP without one is sent, then its account gets a callback, then it is canceled
        store.commit_send(&plan(otp_to("OTP3", "+14155550103"))).await.unwrap();
        account.policy.callback =
            Some(CallbackTarget { url: "http://127.0.0.1:9/acct".into(), method: CallbackMethod::Get });
        store.set_policy(&account, &account.policy).await.unwrap();
        store.cancel_otp("AC0", "OTP3", 2_000).await.unwrap();
        // Then only the cancel is told (the account had no callback when it was created)
        let canceled = feed.try_recv().expect("the account's callback");
        assert_eq!(canceled.new.sid, "OTP3");
        assert_eq!(canceled.old.map(|o| o.status), Some(OtpStatus::Pending));
        assert_eq!(canceled.new.status, OtpStatus::Canceled);
        assert!(feed.try_recv().is_err());
    }

    #[tokio::test]
    async fn an_otp_under_another_accounts_id_answers_as_unknown() {
        // Given an OTP of AC1 stored under the id AC2's OTP of the same sid would have (what a
        // digest collision would do)
        let store = MemoryStore::new();
        let mut otp = otp_to("OTP1", "+14155550101");
        otp.account_sid = "AC1".into();
        {
            let mut s = store.lock().unwrap();
            let id = s.ids.otp("AC2", "OTP1");
            s.otps.insert(id, Box::new(otp));
        }
        // When AC2 reads, verifies and cancels that sid
        let read = store.get_otp("AC2", "OTP1").await.unwrap();
        let canceled = store.cancel_otp("AC2", "OTP1", 2_000).await.unwrap();
        // Then it is unknown to AC2
        assert!(read.is_none());
        assert!(matches!(canceled, CancelWrite::Refused(None)));
    }

    #[tokio::test]
    async fn a_capped_store_keeps_the_newest_otps_exactly_as_sent() {
        // Given a store that keeps two OTPs
        let store = MemoryStore::new().with_max_otps(2);
        let full = |sid: &str, to: &str| {
            let mut otp = crate::domain::otp::tests::full_otp();
            otp.account_sid = "AC0".into();
            (otp.sid, otp.delivery.to) = (sid.into(), to.into());
            otp
        };
        // When OTPs of other shapes are sent past the cap (each written into the memory of the
        // one it evicts)
        let sent = [
            otp_to("OTP1", "+14155550101"),
            full("OTP2", "+442071838750"),
            otp_to("OTP3", "+14155550103"),
            full("OTPfour", "+442071838751"),
            otp_to("OTP5", "+1"),
        ];
        for otp in &sent {
            let mut otp = otp.clone();
            otp.account_sid = "AC0".into();
            store.commit_send(&plan(otp)).await.unwrap();
        }
        // Then the two newest read exactly as sent, the older ones and their pointers are gone
        for otp in &sent[3..] {
            let mut expected = otp.clone();
            expected.account_sid = "AC0".into();
            assert_eq!(store.get_otp("AC0", &otp.sid).await.unwrap(), Some(expected));
        }
        for otp in &sent[..3] {
            assert_eq!(store.get_otp("AC0", &otp.sid).await.unwrap(), None);
            assert_eq!(store.get_destination("AC0", &otp.service, &otp.delivery.to).await.unwrap(), None);
        }
    }

    #[test]
    fn ids_are_one_per_key_and_differ_between_keys_kinds_and_stores() {
        // Given two counter keys that differ only in where one field ends and the next begins
        let key = |limit: &str, bucket: &str| CounterKey {
            account_sid: "AC0".into(),
            limit: limit.into(),
            bucket: bucket.into(),
            value: "+14155550100".into(),
        };
        let (a, b) = (key(DEFAULT_LIMIT, "per_minute"), key(&format!("{DEFAULT_LIMIT}p"), "er_minute"));
        let ids = Ids::default();
        // Then each key has one id, the two keys two, and another store other ids
        assert_eq!(ids.counter(&a), ids.counter(&a.clone()));
        assert_ne!(ids.counter(&a), ids.counter(&b));
        assert_ne!(ids.counter(&a), Ids::default().counter(&a), "keyed per store, from the OS");
        // And OTP and destination keys of the same strings, split alike, differ too
        assert_ne!(ids.otp("AC0", "OTP1"), ids.otp("AC0OTP", "1"));
        assert_ne!(ids.otp("AC0", "2FA"), ids.destination("AC0", "2FA", ""));
    }
}
