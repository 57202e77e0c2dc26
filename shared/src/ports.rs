//! Ports: the small traits the domain needs from the outside world. Adapters implement them
//! (embedded ones in `adapters::memory`/`adapters::outbox`, AWS ones behind the `aws` feature).

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{
    account::Account,
    callbacks::{CallFailure, DeadLetter, PendingCall, UrlRules, WebhookRequest},
    cidr::Cidr,
    console::ConsoleSession,
    content::Content,
    crypto::Keys,
    error::Result,
    factor::{Factor, PasskeyCredential},
    guard::{GuardCount, GuardKey},
    idempotency::IdempotencyRecord,
    insights::{Cell, Granularity},
    limits::{Counter, CounterKey, CounterOp, LimitDef},
    otp::{Channel, ChannelEvent, Check, Delivery, Destination, FailureStreak, Otp, Superseded},
    policy::AccountPolicy,
    providers::OpenedProvider,
    receipts::{Receipt, ReceiptOutcome},
    records::{OtpQuery, SearchFilter},
    time::Millis,
    usage::UsageKey,
    voice::{builtin_voices, Voice},
    workflows::WorkflowDef,
};

pub trait Clock: Send + Sync {
    fn now_ms(&self) -> Millis;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        chrono::Utc::now().timestamp_millis()
    }
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// The account, possibly as this process read it a moment ago (DynamoDB keeps accounts
    /// `ACCOUNT_CACHE_TTL` per process).
    async fn get_account(&self, sid: &str) -> Result<Option<Account>>;
    /// The account as stored now, past any cache (on DynamoDB a strongly consistent read):
    /// what a change starts from again after `set_policy` refused a stale one.
    async fn get_account_fresh(&self, sid: &str) -> Result<Option<Account>>;
    /// Create-only (a sid already taken is `Error::Contended`).
    async fn put_account(&self, account: &Account) -> Result<()>;
    /// Every account below `ancestor_sid`, direct or deeper (those whose `ancestors` hold it),
    /// not the account itself; in no particular order.
    async fn list_sub_accounts(&self, ancestor_sid: &str) -> Result<Vec<Account>>;
    /// Replace the policy of `account` (and of its copies under its ancestors), nothing else,
    /// only if the stored policy is still the one read (its version is still
    /// `account.policy_version`), and count a new version. `Error::Contended` when the policy
    /// changed since (read it again with `get_account_fresh` and redo the change);
    /// `Error::NotFound` when the account does not exist.
    async fn set_policy(&self, account: &Account, policy: &AccountPolicy) -> Result<()>;
}

/// What the admin command needs beyond `AccountStore`. Each change is written to the account
/// and to its copies under its ancestors together, only if the account exists
/// (`Error::NotFound` otherwise).
#[async_trait]
pub trait AccountAdminStore: Send + Sync {
    /// Every account, top-level and sub-accounts, oldest first (then by sid).
    async fn list_accounts(&self) -> Result<Vec<Account>>;
    async fn set_suspended(&self, account: &Account, suspended: bool) -> Result<()>;
    /// Replace the token hash, only if it is still `account.token_hash`: of two concurrent
    /// rotations one wins and the other is `Error::Contended`.
    async fn replace_token_hash(&self, account: &Account, token_hash: &[u8]) -> Result<()>;
    /// Replace the caller allow-list (empty: any caller).
    async fn set_allowed_ips(&self, account: &Account, allowed: &[Cidr]) -> Result<()>;
}

/// The store the admin command works on.
/// (and clears a destination's failed verifies: `OtpStore::clear_failures`).
pub trait AdminStore: AccountStore + AccountAdminStore + OtpStore + FactorStore + FactorScan {}
impl<T: AccountStore + AccountAdminStore + OtpStore + FactorStore + FactorScan> AdminStore for T {}

/// What a send reads before it decides anything, in one round trip.
#[derive(Debug, Clone, Default)]
pub struct SendSnapshot {
    pub destination: Option<Destination>,
    /// In the order the names were asked for.
    pub limits: Vec<Option<LimitDef>>,
    /// In the order the keys were asked for.
    pub counters: Vec<Option<Counter>>,
    /// The record of the idempotency key asked for, if the account has one, whatever its age
    /// (the domain checks `live_at`).
    pub idempotency: Option<IdempotencyRecord>,
    /// The pumping-guard counters asked for, in that order: exact on the embedded store; on
    /// DynamoDB as the stream has counted them, read eventually consistent and kept up to
    /// `guard::GUARD_CACHE_MS` per process (read beside the rest, no extra round trip).
    pub guard: Vec<Option<GuardCount>>,
    /// The destination's failed verifies since its last success (any service).
    pub failures: FailureStreak,
}

/// What `OtpStore::snapshot` reads, all in one round trip.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotRequest<'a> {
    pub account_sid: &'a str,
    pub service: &'a str,
    pub to: &'a str,
    pub limit_names: &'a [String],
    pub counters: &'a [CounterKey],
    pub idempotency_key: Option<&'a str>,
    pub guard: &'a [GuardKey],
}

/// Every write of one send, applied atomically by `commit_send`.
#[derive(Debug, Clone)]
pub struct SendPlan {
    /// The new OTP, created only if its sid is free.
    pub otp: Otp,
    /// The destination pointer after the send...
    pub destination: Destination,
    /// ...written only if its `current` is still this (None: no pointer yet).
    pub expected_current: Option<String>,
    /// The older OTP this send supersedes: it reads canceled from `cancel_at_ms` on.
    pub supersede: Option<Superseded>,
    pub counters: Vec<CounterOp>,
    pub usage: Vec<UsageKey>,
    /// The send's idempotency record (its account is the OTP's), written only if the account
    /// has no record of that key younger than `idempotency::WINDOW_MS` at `created_ms`.
    pub idempotency: Option<IdempotencyRecord>,
    /// The pumping-guard counters this send counts in (`sends + 1`): its country's and the
    /// account-wide one, if it is guarded; none otherwise. The embedded store counts them in
    /// the commit; DynamoDB counts the send off the table's stream (the OTP item says
    /// `guarded`), and an undo takes it back from these.
    pub guard: Vec<GuardKey>,
}

// One per request, moved once: boxing the OTP would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum VerifyWrite {
    /// The code was right: the OTP is verified and the check recorded as valid.
    Verified,
    /// The code was wrong: compared and counted in the same write, the check recorded as
    /// invalid; `failed` when that used the OTP's last attempt (the OTP is failed now).
    Wrong { failed: bool },
    /// Nothing was compared or written; the OTP as it is now (None: no such OTP for this
    /// account): not pending at `now`, or no attempts left.
    Refused(Option<Otp>),
}

#[allow(clippy::large_enum_variant)]
pub enum CancelWrite {
    Canceled,
    Refused(Option<Otp>),
}

#[async_trait]
pub trait OtpStore: Send + Sync {
    /// How many partitions this store spreads an account's OTPs over: a fresh sid names one of
    /// them (`ids::otp_sid_bytes`), so a verify finds it from the sid alone. The embedded
    /// store keeps one list and takes any.
    fn otp_shards(&self) -> usize {
        crate::domain::ids::OTP_SHARDS
    }

    /// Everything a send reads before it decides, in one round trip.
    async fn snapshot(&self, req: &SnapshotRequest<'_>) -> Result<SendSnapshot>;

    /// `snapshot` without pumping-guard counters.
    async fn send_snapshot(
        &self,
        account_sid: &str,
        service: &str,
        to: &str,
        limit_names: &[String],
        counters: &[CounterKey],
        idempotency_key: Option<&str>,
    ) -> Result<SendSnapshot> {
        self.snapshot(&SnapshotRequest { account_sid, service, to, limit_names, counters, idempotency_key, guard: &[] })
            .await
    }

    async fn get_counters(&self, keys: &[CounterKey]) -> Result<Vec<Option<Counter>>>;

    /// All of the plan or nothing. A failed condition (a concurrent send got there first) is
    /// `Error::Contended`: read again and re-plan.
    async fn commit_send(&self, plan: &SendPlan) -> Result<()>;

    /// Reverse a committed plan whose dispatch failed, so the send leaves nothing behind (its
    /// idempotency record too, while it still names this OTP: the key can be used again).
    /// `Err(NotFound)` and nothing changed when the plan's OTP is not there (never committed,
    /// or already undone): safe to call for a commit whose outcome is unknown.
    async fn undo_send(&self, plan: &SendPlan) -> Result<()>;

    /// Replace event number `index` of `otp` (what the provider said of a dispatch). `otp` is
    /// the OTP as committed or read: its account, sid and creation time are what is used (the
    /// store may keep a lookup of the dispatch's provider id for receipts, for as long as the
    /// OTP is kept): `lookup` says which (`Lookup::None` keeps none: the provider's receipts
    /// name the OTP and event themselves, `DispatchReceipt::receipts_name_event`). An OTP or
    /// event that is not there is `Contended`.
    async fn update_event(&self, otp: &Otp, index: usize, event: &ChannelEvent, lookup: Lookup) -> Result<()>;

    async fn get_otp(&self, account_sid: &str, otp_sid: &str) -> Result<Option<Otp>>;

    async fn get_destination(&self, account_sid: &str, service: &str, to: &str) -> Result<Option<Destination>>;

    /// Compare a code with the OTP's, counting it: a right code marks the OTP verified, a
    /// wrong one uses one of its attempts (the last one fails it), each recording `check` (its
    /// `valid` set by the outcome), only if the OTP is pending at `now` with attempts left.
    /// A wrong code also counts in its destination's failure streak; a right one clears the
    /// streak when the OTP had wrong codes or `clears_failures`.
    /// A wrong code is compared only in the write that counts it, so no more than
    /// `MAX_ATTEMPTS` wrong codes are ever compared per OTP, whatever the concurrency.
    /// `code_hashes` are the code as each key of the ring stores it (`Keys::code_hashes`): it
    /// is right when the OTP's hash is any of them.
    /// A right code of a guarded OTP (`Otp::guarded`) counts in the pumping guard: the
    /// embedded store counts it in this write; DynamoDB counts it off the table's stream (this
    /// stays one conditional write). `Error::Contended` on a conflicting write (nothing
    /// compared, nothing written).
    async fn verify_code(
        &self,
        account_sid: &str,
        otp_sid: &str,
        code_hashes: &[Vec<u8>],
        check: &Check,
        now: Millis,
    ) -> Result<VerifyWrite>;

    /// Forget the failed verifies of `to` (the operator's clear); false when it had none.
    async fn clear_failures(&self, account_sid: &str, to: &str) -> Result<bool>;

    /// Cancel the OTP only if it is pending at `now`.
    async fn cancel_otp(&self, account_sid: &str, otp_sid: &str, now: Millis) -> Result<CancelWrite>;

    /// Claim workflow step `step` of the OTP: append `event`, count `usage`, and mark `step + 1`
    /// steps sent, all in one write, only if the OTP is pending at `now` and exactly `step`
    /// steps were sent before. False (nothing written) otherwise.
    async fn claim_step(
        &self,
        account_sid: &str,
        otp_sid: &str,
        step: u32,
        event: &ChannelEvent,
        usage: &[UsageKey],
        now: Millis,
    ) -> Result<bool>;
}

/// Workflow definitions, stored like limits: unique names per account.
#[async_trait]
pub trait WorkflowStore: Send + Sync {
    /// `Error::WorkflowNameExists` when the account has a workflow of that name.
    async fn create_workflow(&self, def: &WorkflowDef) -> Result<()>;
    async fn get_workflow(&self, account_sid: &str, sid: &str) -> Result<Option<WorkflowDef>>;
    async fn get_workflow_by_name(&self, account_sid: &str, name: &str) -> Result<Option<WorkflowDef>>;
    /// Replace steps/description of an existing workflow; `Error::WorkflowNotFound` if gone.
    async fn update_workflow(&self, def: &WorkflowDef) -> Result<()>;
    /// The deleted workflow, or None if there was none.
    async fn delete_workflow(&self, account_sid: &str, sid: &str) -> Result<Option<WorkflowDef>>;
    async fn list_workflows(&self, account_sid: &str) -> Result<Vec<WorkflowDef>>;
}

#[async_trait]
pub trait LimitStore: Send + Sync {
    /// `Error::LimitNameExists` when the account has a limit of that name.
    async fn create_limit(&self, def: &LimitDef) -> Result<()>;
    async fn get_limit(&self, account_sid: &str, sid: &str) -> Result<Option<LimitDef>>;
    /// Replace buckets/description of an existing limit; `Error::LimitNotFound` if it is gone.
    async fn update_limit(&self, def: &LimitDef) -> Result<()>;
    /// The deleted limit, or None if there was none.
    async fn delete_limit(&self, account_sid: &str, sid: &str) -> Result<Option<LimitDef>>;
    async fn list_limits(&self, account_sid: &str) -> Result<Vec<LimitDef>>;
}

/// Session detail records and usage records: reads only (the OTP writes put everything there).
#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Up to `q.limit` OTPs of `account_sid` that match `q.filter` at `q.now`, from `q.start`:
    /// newest first, or oldest first for `Start::NewerThan` (by `records::Mark`, ties
    /// impossible).
    async fn search_otps(&self, account_sid: &str, q: &OtpQuery<'_>) -> Result<Vec<Otp>>;

    /// How many of the newest `reads` OTPs of `account_sid` in `filter`'s time range match
    /// `filter` at `now`, and whether those were all the OTPs in the range (so the count is
    /// every match). The cost is bounded by `reads`, however large the account.
    async fn count_otps(&self, account_sid: &str, filter: &SearchFilter, now: Millis, reads: u64) -> Result<Counted>;

    /// The usage counters of `account_sid` for the days `from_day..=to_day` (`YYYY-MM-DD`),
    /// one row per day and category, in no particular order; days without a counter are absent.
    async fn usage(&self, account_sid: &str, from_day: &str, to_day: &str) -> Result<Vec<(UsageKey, u64)>>;
}

/// Insights' counter cells (`domain::insights`), kept as sends, verifies and receipts happen:
/// the embedded store in the writes it counts; DynamoDB off the table's stream
/// (`workers::callbacks::count_insights`), refusals as they are answered.
#[async_trait]
pub trait InsightsStore: Send + Sync {
    /// Counts one send refused with `code` (one of `insights::REFUSAL_CODES`; another is not
    /// counted) at `at`, under `channel` and `country` (`insights::country_of`).
    async fn count_refusal(
        &self,
        account_sid: &str,
        at: Millis,
        channel: Channel,
        country: &str,
        code: u16,
    ) -> Result<()>;

    /// The cells of `account_sid` whose hour is within `[from_ms, to_ms)`, in no particular
    /// order (a cell may come in parts, or summed by day when `granularity` is a day: the
    /// report sums them). Bounded by the range, never by the account's OTPs.
    async fn insight_cells(
        &self,
        account_sid: &str,
        from_ms: Millis,
        to_ms: Millis,
        granularity: Granularity,
    ) -> Result<Vec<Cell>>;
}

/// Factors (`domain::factors`): one item each under its account and entity, every change a
/// conditional write.
#[async_trait]
pub trait FactorStore: Send + Sync {
    /// Store a new factor; `Error::Contended` when its sid is taken (never, for a random one).
    async fn put_factor(&self, factor: &Factor) -> Result<()>;
    async fn get_factor(&self, account_sid: &str, entity: &str, sid: &str) -> Result<Option<Factor>>;
    /// The entity's factors, oldest first.
    async fn list_factors(&self, account_sid: &str, entity: &str) -> Result<Vec<Factor>>;
    /// Remove it: the factor as it was, or None when there was none.
    async fn delete_factor(&self, account_sid: &str, entity: &str, sid: &str) -> Result<Option<Factor>>;
    /// Accept a right code of time step `step`, in one conditional write: only while the
    /// factor exists, no code of this step or a later one was accepted, and it is verified
    /// (`confirm`: unverified, which it then becomes, at `now`). False, and nothing written,
    /// otherwise: of concurrent uses of one step exactly one is true.
    async fn use_factor_step(
        &self,
        account_sid: &str,
        entity: &str,
        sid: &str,
        step: i64,
        confirm: bool,
        now: Millis,
    ) -> Result<bool>;
    /// Count a wrong first code, only while it is unverified with fewer than `max` counted
    /// (of concurrent wrong codes at most `max` count): false, and nothing counted, otherwise.
    async fn fail_factor_confirm(&self, account_sid: &str, entity: &str, sid: &str, max: u32) -> Result<bool>;
    /// Complete a passkey's registration: store `credential`, end the ceremony and make the
    /// factor verified, in one conditional write, only while it is unverified and waits on
    /// `ceremony`. False, and nothing written, otherwise: of concurrent completions one is true.
    async fn confirm_passkey(
        &self,
        account_sid: &str,
        entity: &str,
        sid: &str,
        ceremony: &[u8],
        credential: &PasskeyCredential,
        now: Millis,
    ) -> Result<bool>;
    /// Store a passkey credential's dynamic state (its signature counter) `new` over `was`, only
    /// while the factor is verified and still holds `was`: false, and nothing written, otherwise.
    async fn use_passkey(
        &self,
        account_sid: &str,
        entity: &str,
        sid: &str,
        was: &[u8],
        new: &[u8],
        now: Millis,
    ) -> Result<bool>;
    /// Put `sealed` (the secret sealed under the current key) in place of `was`, only while the
    /// factor still holds `was`: false otherwise (another writer moved it first, or it is gone).
    async fn reseal_factor(
        &self,
        account_sid: &str,
        entity: &str,
        sid: &str,
        was: &[u8],
        sealed: &[u8],
    ) -> Result<bool>;
}

/// What the operator's reseal needs of factors beyond `FactorStore`. Apart from it (and from
/// `Store`), so no function serving requests links the Scan it is on DynamoDB.
#[async_trait]
pub trait FactorScan: Send + Sync {
    /// Every factor of the deployment, a page at a time from `after` (the previous page's
    /// `next`), for the operator's reseal before a key is retired. On DynamoDB a Scan of the
    /// whole table: run once per key rotation, never on a request's path.
    async fn factors_page(&self, after: Option<&str>) -> Result<FactorsPage>;
}

/// One page of `FactorStore::factors_page`.
#[derive(Debug, Default)]
pub struct FactorsPage {
    pub factors: Vec<Factor>,
    /// Where the next page starts; None: this was the last.
    pub next: Option<String>,
}

/// The console's sessions and sign-in counters (`domain::console`): small items of their own,
/// kept until they expire.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Store a new session; `Error::Contended` when its key is taken (never, for a random id).
    async fn put_console_session(&self, session: &ConsoleSession) -> Result<()>;
    /// The session stored under `key`, live or not (the domain checks `live_at`).
    async fn get_console_session(&self, key: &str) -> Result<Option<ConsoleSession>>;
    /// Move the session's last use to `seen_ms` (it ends at `expires_ms` unless used again),
    /// only while it is stored: false when it is gone (signed out).
    async fn touch_console_session(&self, key: &str, seen_ms: Millis, expires_ms: Millis) -> Result<bool>;
    /// Forget the session (signing out); nothing when there is none.
    async fn delete_console_session(&self, key: &str) -> Result<()>;
    /// Count one sign-in attempt on counter `key`, only while it has counted fewer than `max`
    /// (a conditional write: of concurrent attempts exactly `max` are counted): false, and
    /// nothing counted, when it is full. The counter reads as none from `expires_ms` on.
    async fn count_attempt(&self, key: &str, max: u32, now: Millis, expires_ms: Millis) -> Result<bool>;
}

/// `RecordStore::count_otps`' answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counted {
    pub matched: u64,
    /// Every OTP in the range was read: `matched` is the exact count.
    pub complete: bool,
}

/// One page of a shard of the due OTPs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DuePage {
    /// (account sid, OTP sid), oldest deadline first.
    pub due: Vec<(String, String)>,
    /// Where the next page starts, when this one is full (more may be due); None when the
    /// shard had fewer than the limit due: nothing more at `now`.
    pub next: Option<String>,
}

/// What the expiry sweeper needs: OTPs stored pending whose timeout (or supersede deadline)
/// has passed, and a conditional write of the status they have now, so the change (and its
/// `expired` / `canceled` callback) happens within a sweep of the deadline.
#[async_trait]
pub trait ExpiryStore: Send + Sync {
    /// How many shards the due OTPs are spread over (DynamoDB: partitions of the due index,
    /// so no one partition takes every OTP's writes). Each is read on its own, `0..due_shards()`;
    /// a sweeper given a slice (`callbacks::SweepSlice`) reads only the shards of its slice.
    fn due_shards(&self) -> usize;

    /// Up to `limit` OTPs of `shard` stored pending and due at `now`, oldest deadline first,
    /// starting after `after` (the `next` of the page before; None: from the oldest).
    async fn due_otps(&self, shard: usize, now: Millis, limit: usize, after: Option<&str>) -> Result<DuePage>;

    /// Store the status the OTP has at `now` (expired, or canceled when superseded), with the
    /// instant it took it, only if it is stored pending and due; false when it was not (verified
    /// meanwhile, already settled, gone).
    async fn settle(&self, account_sid: &str, otp_sid: &str, now: Millis) -> Result<bool>;
}

/// Delivery receipts: the channel event a provider message id names, moved forward.
#[async_trait]
pub trait ReceiptStore: Send + Sync {
    /// Set the event whose `target_sid` is `r.provider_id` to `r.status` (with its error),
    /// only if it is still `sent`, in one conditional write: `Unchanged` when it is not (a
    /// duplicate or late receipt, or a concurrent one won), `Unknown` when no OTP has it.
    async fn apply_receipt(&self, r: &Receipt) -> Result<ReceiptOutcome>;
}

/// Where callback calls wait for their next attempt, and where the ones given up go.
#[async_trait]
pub trait CallbackQueue: Send + Sync {
    /// Make `call` again at `call.due_ms` (however far ahead).
    async fn later(&self, call: &PendingCall) -> Result<()>;
    /// Keep a call given up where an operator sees it.
    async fn dead(&self, letter: &DeadLetter) -> Result<()>;
}

/// One call to a callback URL.
#[async_trait]
pub trait Webhooks: Send + Sync {
    /// Ok on a 2xx answer within `callbacks::TIMEOUT_SECS`.
    async fn call(&self, req: &WebhookRequest) -> std::result::Result<(), CallFailure>;
}

/// Where a workflow stands between two steps: the next step to send (0-based) and the seconds
/// to wait before it. The same JSON is the Step Functions execution's input, the state between
/// its states, and the step Lambda's event and answer (`more`: whether there is a next step).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRun {
    pub account_sid: String,
    pub otp_sid: String,
    pub step: u32,
    pub wait: u32,
    #[serde(default)]
    pub more: bool,
}

/// Runs a workflow's later steps on time: Step Functions wait states on AWS, an in-process
/// timer queue on the dev clock in the dev server.
#[async_trait]
pub trait Scheduler: Send + Sync {
    /// Whether this deployment can run workflows past their first step.
    fn runs_workflows(&self) -> bool {
        true
    }

    /// Run the OTP's workflow from `run.step` on (`domain::workflows::run_step` sends each
    /// step). Idempotent per OTP: starting the same OTP's run twice runs it once.
    async fn start(&self, run: &StepRun) -> Result<()>;

    /// Stop the OTP's run, if any. Best effort: each step checks that the OTP is still pending
    /// before it sends, which is the guarantee.
    async fn stop(&self, account_sid: &str, otp_sid: &str) -> Result<()>;
}

/// A deployment that runs no workflows (a send naming a workflow of more than one step is a
/// 400 naming `workflow`).
pub struct NoScheduler;

#[async_trait]
impl Scheduler for NoScheduler {
    fn runs_workflows(&self) -> bool {
        false
    }

    async fn start(&self, _: &StepRun) -> Result<()> {
        Err(crate::domain::error::Error::Internal)
    }

    async fn stop(&self, _: &str, _: &str) -> Result<()> {
        Ok(())
    }
}

/// The whole store. `AccountAdminStore` is in it for the console's account page (allowed
/// IPs); what a function may write is its role's business (the API functions' roles may not
/// write accounts).
pub trait Store:
    AccountStore
    + AccountAdminStore
    + OtpStore
    + LimitStore
    + WorkflowStore
    + RecordStore
    + ReceiptStore
    + InsightsStore
    + ConsoleStore
    + FactorStore
{
}
impl<T> Store for T where
    T: AccountStore
        + AccountAdminStore
        + OtpStore
        + LimitStore
        + WorkflowStore
        + RecordStore
        + ReceiptStore
        + InsightsStore
        + ConsoleStore
        + FactorStore
{
}

/// A message to deliver. `Debug` leaves the text out: it carries the code. It borrows what the
/// OTP and its delivery already hold (a dispatcher copies only what it keeps).
#[derive(Clone)]
pub struct OutboundMessage<'a> {
    pub account_sid: &'a str,
    pub request_id: &'a str,
    pub event_sid: &'a str,
    /// Where the dispatch's event is in the OTP's `events`.
    pub event_index: usize,
    /// Seconds until the OTP expires: a message still undelivered then is worth nothing.
    pub ttl_secs: u32,
    pub channel: Channel,
    pub from: &'a str,
    pub to: &'a str,
    pub subject: Option<&'a str>,
    /// The code alone (a provider of the customer's own may lay the message out itself).
    pub code: &'a str,
    /// The plain text: the SMS, the email's text part, what a call says.
    pub text: String,
    /// Email: the HTML part (the caller's text escaped, the code set apart).
    pub html: Option<String>,
    /// Call: the SSML to read (`domain::voice::ssml`).
    pub ssml: Option<String>,
    /// Call: the Polly voice chosen for `language` and `voice`.
    pub voice_id: Option<String>,
    pub language: &'a str,
    pub voice: Option<&'a str>,
    pub repeat: u8,
    /// The account's routes for this message, in order (`domain::routing`); empty: the
    /// channel's deployment route.
    pub routes: &'a [String],
    /// The account's own providers that `routes` names, opened (`domain::providers`): a route
    /// name that is one of them goes there, before a deployment route of that name.
    pub providers: &'a [OpenedProvider],
}

impl<'a> OutboundMessage<'a> {
    /// The message of one dispatch (event `event_index`, `event_sid`) of `otp`, on `d`'s
    /// channel, its code `code`, sent at `now`.
    pub fn new(
        otp: &'a Otp,
        event_index: usize,
        event_sid: &'a str,
        d: &'a Delivery,
        code: &'a str,
        content: Content,
        now: Millis,
    ) -> Self {
        let ttl_ms = (otp.expires_ms - now).max(0);
        OutboundMessage {
            account_sid: &otp.account_sid,
            request_id: &otp.sid,
            event_sid,
            event_index,
            ttl_secs: u32::try_from((ttl_ms + 999) / 1000).unwrap_or(u32::MAX),
            channel: d.channel,
            from: &d.from,
            to: &d.to,
            subject: d.subject.as_deref(),
            code,
            text: content.text,
            html: content.html,
            ssml: content.ssml,
            voice_id: content.voice_id,
            language: &d.language,
            voice: d.voice.as_deref(),
            repeat: d.repeat,
            routes: &[],
            providers: &[],
        }
    }

    /// A message of `channel` to `to` with the code `123456`, as unit tests of dispatchers use
    /// one (a call with its SSML and voice, an email with its subject and HTML part).
    #[cfg(test)]
    pub(crate) fn sample(channel: Channel, to: &'a str) -> Self {
        let call = channel == Channel::Call;
        OutboundMessage {
            account_sid: "AC1",
            request_id: "OTP1",
            event_sid: "EV1",
            event_index: 0,
            ttl_secs: 600,
            channel,
            from: "Twofa",
            to,
            subject: (channel == Channel::Email).then_some("Your code"),
            code: "123456",
            text: format!("Your code for {to} is 123456"),
            html: (channel == Channel::Email).then(|| "<p>123456</p>".into()),
            ssml: call.then(|| "<speak>1 2 3 4 5 6</speak>".into()),
            voice_id: call.then(|| "Joanna".into()),
            language: "en-US",
            voice: None,
            repeat: 1,
            routes: &[],
            providers: &[],
        }
    }

    /// The same message taking the account's `routes`.
    pub fn with_routes(mut self, routes: &'a [String]) -> Self {
        self.routes = routes;
        self
    }

    /// The same message with the account's own `providers` (those its routes name).
    pub fn with_providers(mut self, providers: &'a [OpenedProvider]) -> Self {
        self.providers = providers;
        self
    }
}

impl std::fmt::Debug for OutboundMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundMessage")
            .field("request_id", &self.request_id)
            .field("event_sid", &self.event_sid)
            .field("channel", &self.channel)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

/// The lookup of a dispatch's provider message id its receipts find the event by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// None: the provider's receipts name the OTP and event themselves.
    None,
    /// By the id alone: a deployment route's receipts.
    Deployment,
    /// By the OTP's account and the id: a provider of the account's own, whose receipts come
    /// to the account's path (`domain::providers`). Kept apart from the deployment's, so an id
    /// an account's provider answers can neither take over another message's lookup nor be
    /// found by another's receipts.
    Account,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchReceipt {
    /// The provider's message id (SNS/SES MessageId, call id): the SDR's `targetSid`.
    pub provider_id: String,
    /// The provider's receipts for this message carry its account, OTP and event (End User
    /// Messaging's `context`), so the store keeps no lookup of `provider_id` for them.
    pub receipts_name_event: bool,
    /// The route that sent it (`adapters::router` names it).
    pub route: Option<String>,
    /// It went through a provider of the account's own (`Lookup::Account`).
    pub account_provider: bool,
}

impl DispatchReceipt {
    /// A message whose receipts name it by `provider_id` alone.
    pub fn new(provider_id: impl Into<String>) -> Self {
        DispatchReceipt {
            provider_id: provider_id.into(),
            receipts_name_event: false,
            route: None,
            account_provider: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// The provider refused this message (bad number, opted out...): recorded as a failed
    /// event. Final: no other route is tried.
    #[error("rejected by provider: {code}")]
    Rejected { code: String, message: String, route: Option<String> },
    /// The provider could not be reached, failed (5xx) or throttled: nothing went out; the
    /// next route is tried, and with none left the send is undone and answers 503.
    #[error("channel unavailable")]
    Unavailable,
    /// No answer in time after the request went out: the message may have been sent, so no
    /// other route is tried (it would send the code twice); the send is undone and answers 503.
    #[error("no answer from the provider in time")]
    Unconfirmed,
}

impl DispatchError {
    /// A refusal by a provider, before a router names its route.
    pub fn rejected(code: impl Into<String>, message: impl Into<String>) -> Self {
        DispatchError::Rejected { code: code.into(), message: message.into(), route: None }
    }
}

#[async_trait]
pub trait Dispatcher: Send + Sync {
    /// Whether this deployment can deliver on `channel` at all; a send on one it cannot is a
    /// 400 up front rather than an OTP that nobody will receive.
    fn delivers(&self, _channel: Channel) -> bool {
        true
    }

    /// Which callback URLs this deployment takes: the dev server's outbox any host (a local
    /// receiver must work), a deployment only https to public addresses.
    fn callback_url_rules(&self) -> UrlRules {
        UrlRules::Public
    }

    /// The voices a call can be read in (asked of Polly once per process on AWS); a
    /// deployment that asks nobody has Polly's voices built in.
    async fn voices(&self) -> std::result::Result<Arc<Vec<Voice>>, DispatchError> {
        static BUILTIN: std::sync::OnceLock<Arc<Vec<Voice>>> = std::sync::OnceLock::new();
        Ok(BUILTIN.get_or_init(|| Arc::new(builtin_voices())).clone())
    }

    /// The HMAC key delivery reports from provider `name` are signed with (`POST
    /// /2fa/receipts/{provider}`); None: this deployment has no such provider.
    fn receipt_key(&self, _name: &str) -> Option<&[u8]> {
        None
    }

    async fn dispatch(&self, msg: &OutboundMessage<'_>) -> std::result::Result<DispatchReceipt, DispatchError>;
}

/// The dispatcher of a function that sends nothing (the console): no channel is delivered,
/// and a dispatch answers `Unavailable` (503, nothing sent). Callback URLs follow a
/// deployment's rules, so the console takes exactly what the API takes.
pub struct SendsNothing;

#[async_trait]
impl Dispatcher for SendsNothing {
    fn delivers(&self, _channel: Channel) -> bool {
        false
    }

    async fn dispatch(&self, _msg: &OutboundMessage<'_>) -> std::result::Result<DispatchReceipt, DispatchError> {
        Err(DispatchError::Unavailable)
    }
}

/// The voices calls can use: Polly's `DescribeVoices` on AWS.
#[async_trait]
pub trait VoiceCatalog: Send + Sync {
    async fn voices(&self) -> std::result::Result<Arc<Vec<Voice>>, DispatchError>;
}

/// Places a voice call that reads `msg.ssml` in the voice `msg.voice_id`.
#[async_trait]
pub trait CallPlacer: Send + Sync {
    async fn place_call(&self, msg: &OutboundMessage<'_>) -> std::result::Result<DispatchReceipt, DispatchError>;
}

/// Everything the use cases need, built once per process.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub dispatcher: Arc<dyn Dispatcher>,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<Keys>,
    /// Runs workflows past their first step (`NoScheduler`: a deployment that runs none).
    pub scheduler: Arc<dyn Scheduler>,
}
