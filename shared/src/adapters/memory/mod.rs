//! The embedded store: everything in one process, behind one mutex, so every multi-item write
//! is atomic exactly as a DynamoDB transaction is. Same conditions, same answers.

mod account_admin;
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
        guard::{GuardCount, GuardKey},
        idempotency::IdempotencyRecord,
        limits::{Counter, CounterKey, CounterOp, LimitDef},
        otp::{ChannelEvent, Check, Destination, Otp, OtpStatus, MAX_ATTEMPTS},
        policy::AccountPolicy,
        time::Millis,
        usage::UsageKey,
        workflows::WorkflowDef,
    },
    ports::{
        AccountStore, CancelWrite, ExpiryStore, LimitStore, OtpStore, SendPlan, SendSnapshot, SnapshotRequest,
        VerifyWrite,
    },
};

type DestKey = (String, String, String);

#[derive(Default)]
pub(crate) struct State {
    pub accounts: HashMap<String, Account>,
    pub otps: HashMap<(String, String), Otp>,
    pub destinations: HashMap<DestKey, Destination>,
    pub limits: HashMap<(String, String), LimitDef>,
    pub workflows: HashMap<(String, String), WorkflowDef>,
    pub counters: HashMap<CounterKey, Counter>,
    pub usage: HashMap<UsageKey, u64>,
    /// (account, idempotency key) → record.
    pub idempotency: HashMap<(String, String), IdempotencyRecord>,
    pub guard: HashMap<GuardKey, GuardCount>,
    /// OTP keys in commit order, for the cap on how many are kept.
    pub order: VecDeque<(String, String)>,
    /// Commits since the last sweep of expired counters, pointers, keys and guard buckets.
    pub since_sweep: u32,
    /// When (store time) that sweep was.
    pub last_sweep_ms: Millis,
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
            let Some(key) = self.order.pop_front() else { break };
            if let Some(otp) = self.otps.remove(&key) {
                let dkey = dest_key(&otp.account_sid, &otp.service, &otp.delivery.to);
                if self.destinations.get(&dkey).is_some_and(|d| d.current == otp.sid) {
                    self.destinations.remove(&dkey);
                }
            }
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
    }
}

pub struct MemoryStore {
    state: Mutex<State>,
    down: AtomicBool,
    lose_commit_answer: AtomicBool,
    max_otps: usize,
    /// Where each stored change of an OTP goes, once someone subscribed (the dev server's
    /// callbacks): what the DynamoDB Stream is to the table.
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

    /// Every change of an OTP from now on, in the order stored (one subscriber: the first).
    pub fn subscribe(&self) -> Option<UnboundedReceiver<OtpChange>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.feed.set(tx).ok().map(|()| rx)
    }

    /// Tell a change to the subscriber, if any (called under the state lock, so in order).
    fn tell(&self, old: Option<Otp>, new: &Otp) {
        if let Some(feed) = self.feed.get() {
            // A subscriber gone (its runtime ended) only means nobody listens any more.
            let _ = feed.send(OtpChange { old, new: new.clone() });
        }
    }

    fn watching(&self) -> bool {
        self.feed.get().is_some()
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, State>> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::Unavailable);
        }
        self.state.lock().map_err(|_| Error::Internal)
    }
}

fn dest_key(account: &str, service: &str, to: &str) -> DestKey {
    (account.to_owned(), service.to_owned(), to.to_owned())
}

fn otp_key(account: &str, sid: &str) -> (String, String) {
    (account.to_owned(), sid.to_owned())
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
        stored.policy = policy.clone();
        Ok(())
    }
}

#[async_trait]
impl OtpStore for MemoryStore {
    async fn snapshot(&self, r: &SnapshotRequest<'_>) -> Result<SendSnapshot> {
        let s = self.lock()?;
        Ok(SendSnapshot {
            destination: s.destinations.get(&dest_key(r.account_sid, r.service, r.to)).cloned(),
            limits: r
                .limit_names
                .iter()
                .map(|n| s.limits.values().find(|l| l.account_sid == r.account_sid && &l.name == n).cloned())
                .collect(),
            counters: r.counters.iter().map(|k| s.counters.get(k).copied()).collect(),
            idempotency: r.idempotency_key.and_then(|k| s.idempotency.get(&idem_key(r.account_sid, k)).cloned()),
            guard: r.guard.iter().map(|k| s.guard.get(k).copied()).collect(),
        })
    }

    async fn get_counters(&self, keys: &[CounterKey]) -> Result<Vec<Option<Counter>>> {
        let s = self.lock()?;
        Ok(keys.iter().map(|k| s.counters.get(k).copied()).collect())
    }

    async fn commit_send(&self, plan: &SendPlan) -> Result<()> {
        let mut s = self.lock()?;
        let otp = &plan.otp;
        let acct = &otp.account_sid;
        let dkey = dest_key(acct, &otp.service, &otp.delivery.to);
        // Every condition first; nothing is written unless all hold.
        let conditions = !s.otps.contains_key(&otp_key(acct, &otp.sid))
            && s.destinations.get(&dkey).map(|d| &d.current) == plan.expected_current.as_ref()
            && plan.supersede.as_ref().is_none_or(|old| s.otps.contains_key(&otp_key(acct, &old.sid)))
            && plan.counters.iter().all(|op| counter_condition(&s.counters, op))
            && plan.idempotency.as_ref().is_none_or(|r| {
                s.idempotency.get(&idem_key(acct, &r.key)).is_none_or(|old| !old.live_at(r.created_ms))
            });
        if !conditions {
            return Err(Error::Contended);
        }
        for op in &plan.counters {
            match op {
                CounterOp::Open { key, window_end_ms, .. } => {
                    s.counters.insert(key.clone(), Counter { count: 1, window_end_ms: *window_end_ms });
                }
                CounterOp::Increment { key, .. } => {
                    if let Some(c) = s.counters.get_mut(key) {
                        c.count += 1;
                    }
                }
            }
        }
        if let Some(old) = &plan.supersede {
            if let Some(o) = s.otps.get_mut(&otp_key(acct, &old.sid)) {
                o.cancel_at_ms = Some(old.cancel_at_ms);
            }
        }
        for u in &plan.usage {
            *s.usage.entry(u.clone()).or_default() += 1;
        }
        if let Some(g) = &plan.guard {
            s.guard.entry(g.clone()).or_default().sends += 1;
        }
        if let Some(r) = &plan.idempotency {
            s.idempotency.insert(idem_key(acct, &r.key), r.clone());
        }
        s.destinations.insert(dkey, plan.destination.clone());
        s.otps.insert(otp_key(acct, &otp.sid), otp.clone());
        self.tell(None, otp);
        s.order.push_back(otp_key(acct, &otp.sid));
        s.bound(self.max_otps, otp.created_ms);
        if self.lose_commit_answer.swap(false, Ordering::SeqCst) {
            return Err(Error::Contended);
        }
        Ok(())
    }

    async fn undo_send(&self, plan: &SendPlan) -> Result<()> {
        let mut s = self.lock()?;
        let otp = &plan.otp;
        let acct = &otp.account_sid;
        if s.otps.remove(&otp_key(acct, &otp.sid)).is_none() {
            return Err(Error::NotFound);
        }
        let dkey = dest_key(acct, &otp.service, &otp.delivery.to);
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
            if let Some(o) = s.otps.get_mut(&otp_key(acct, &old.sid)) {
                if o.cancel_at_ms == Some(old.cancel_at_ms) {
                    o.cancel_at_ms = None;
                }
            }
        }
        for op in &plan.counters {
            if let Some(c) = s.counters.get_mut(op.key()) {
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
        if let Some(c) = plan.guard.as_ref().and_then(|g| s.guard.get_mut(g)) {
            c.sends = c.sends.saturating_sub(1);
        }
        if let Some(r) = &plan.idempotency {
            let key = idem_key(acct, &r.key);
            if s.idempotency.get(&key).is_some_and(|old| old.otp_sid == otp.sid) {
                s.idempotency.remove(&key);
            }
        }
        Ok(())
    }

    async fn update_event(&self, of: &Otp, index: usize, event: &ChannelEvent) -> Result<()> {
        let mut s = self.lock()?;
        let otp = s.otps.get_mut(&otp_key(&of.account_sid, &of.sid)).ok_or(Error::Contended)?;
        let old = self.watching().then(|| otp.clone());
        let slot = otp.events.get_mut(index).ok_or(Error::Contended)?;
        *slot = event.clone();
        if old.is_some() {
            self.tell(old, otp);
        }
        Ok(())
    }

    async fn get_otp(&self, account_sid: &str, otp_sid: &str) -> Result<Option<Otp>> {
        Ok(self.lock()?.otps.get(&otp_key(account_sid, otp_sid)).cloned())
    }

    async fn get_destination(&self, account_sid: &str, service: &str, to: &str) -> Result<Option<Destination>> {
        Ok(self.lock()?.destinations.get(&dest_key(account_sid, service, to)).cloned())
    }

    async fn verify_code_counted(
        &self,
        account_sid: &str,
        otp_sid: &str,
        code_hash: &[u8],
        check: &Check,
        now: Millis,
        guard: Option<&GuardKey>,
    ) -> Result<VerifyWrite> {
        let mut s = self.lock()?;
        let Some(otp) = s.otps.get_mut(&otp_key(account_sid, otp_sid)) else {
            return Ok(VerifyWrite::Refused(None));
        };
        if live(otp, now)
            && otp.attempts < MAX_ATTEMPTS
            && crate::domain::crypto::ct_eq(&otp.code_hash, code_hash)
            && guard.is_none_or(|g| otp.country.as_deref() == Some(g.country.as_str()))
        {
            let old = self.watching().then(|| otp.clone());
            otp.status = OtpStatus::Success;
            otp.updated_ms = now;
            otp.checks.push(check.clone());
            if old.is_some() {
                self.tell(old, otp);
            }
            if let Some(g) = guard {
                s.guard.entry(g.clone()).or_default().verifies += 1;
            }
            Ok(VerifyWrite::Verified)
        } else {
            Ok(VerifyWrite::Refused(Some(otp.clone())))
        }
    }

    async fn record_invalid_check(
        &self,
        account_sid: &str,
        otp_sid: &str,
        check: &Check,
        seen_attempts: u32,
        now: Millis,
    ) -> Result<()> {
        let mut s = self.lock()?;
        let otp = s.otps.get_mut(&otp_key(account_sid, otp_sid)).ok_or(Error::Contended)?;
        if !live(otp, now) || otp.attempts != seen_attempts {
            return Err(Error::Contended);
        }
        let old = self.watching().then(|| otp.clone());
        otp.attempts += 1;
        otp.checks.push(check.clone());
        if otp.attempts >= MAX_ATTEMPTS {
            otp.status = OtpStatus::Failed;
            otp.updated_ms = now;
        }
        if old.is_some() {
            self.tell(old, otp);
        }
        Ok(())
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
        let mut s = self.lock()?;
        let Some(otp) = s.otps.get_mut(&otp_key(account_sid, otp_sid)) else { return Ok(false) };
        if !live(otp, now) || otp.workflow.as_ref().is_none_or(|w| w.sent != step) {
            return Ok(false);
        }
        let old = self.watching().then(|| otp.clone());
        otp.events.push(event.clone());
        if let Some(w) = otp.workflow.as_mut() {
            w.sent = step + 1;
        }
        if old.is_some() {
            self.tell(old, otp);
        }
        for key in usage {
            *s.usage.entry(key.clone()).or_default() += 1;
        }
        Ok(true)
    }

    async fn cancel_otp(&self, account_sid: &str, otp_sid: &str, now: Millis) -> Result<CancelWrite> {
        let mut s = self.lock()?;
        let Some(otp) = s.otps.get_mut(&otp_key(account_sid, otp_sid)) else {
            return Ok(CancelWrite::Refused(None));
        };
        if live(otp, now) {
            let old = self.watching().then(|| otp.clone());
            otp.status = OtpStatus::Canceled;
            otp.updated_ms = now;
            if old.is_some() {
                self.tell(old, otp);
            }
            Ok(CancelWrite::Canceled)
        } else {
            Ok(CancelWrite::Refused(Some(otp.clone())))
        }
    }
}

fn counter_condition(counters: &HashMap<CounterKey, Counter>, op: &CounterOp) -> bool {
    match op {
        CounterOp::Open { key, now_ms, .. } => counters.get(key).is_none_or(|c| c.window_end_ms <= *now_ms),
        CounterOp::Increment { key, window_end_ms, max } => {
            counters.get(key).is_some_and(|c| c.window_end_ms == *window_end_ms && c.count < *max)
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
    async fn due_otps(&self, now: Millis, limit: usize) -> Result<Vec<(String, String)>> {
        let s = self.lock()?;
        Ok(s.otps
            .values()
            .filter(|o| o.watched && o.status == OtpStatus::Pending && o.status_at(now) != OtpStatus::Pending)
            .take(limit)
            .map(|o| (o.account_sid.clone(), o.sid.clone()))
            .collect())
    }

    async fn settle(&self, account_sid: &str, otp_sid: &str, now: Millis) -> Result<bool> {
        let mut s = self.lock()?;
        let Some(otp) = s.otps.get_mut(&otp_key(account_sid, otp_sid)) else { return Ok(false) };
        let status = otp.status_at(now);
        if otp.status != OtpStatus::Pending || status == OtpStatus::Pending {
            return Ok(false);
        }
        let old = self.watching().then(|| otp.clone());
        otp.updated_ms = otp.updated_at(now);
        otp.status = status;
        if old.is_some() {
            self.tell(old, otp);
        }
        Ok(true)
    }
}
