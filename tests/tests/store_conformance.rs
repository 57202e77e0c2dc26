//! The store conformance suite: every test is written once against `Arc<dyn Store>` and runs
//! twice, on the embedded store (`memory::…`) and on DynamoDB (`dynamodb::…`, moto at
//! `AWS_ENDPOINT_URL`; each test gets its own table, so they run in parallel).
//!
//! The DynamoDB half fails, it does not skip, when `AWS_ENDPOINT_URL` is not set.

mod workflow_defs;

use std::sync::Arc;

use futures::future::join_all;
use twofa::{
    adapters::{
        aws::{
            aws_config,
            dynamodb::{create_table, CallCounts, DynamoStore},
        },
        memory::MemoryStore,
        outbox::Outbox,
    },
    domain::{
        account::Account,
        crypto::Keys,
        factor::{Factor, FactorKind, FactorStatus, Passkey, PasskeyCredential, TotpAlgorithm, TotpParams},
        idempotency::{IdempotencyRecord, WINDOW_MS},
        ids,
        limits::{Bucket, Counter, CounterKey, CounterOp, LimitDef, DEFAULT_LIMIT},
        otp::{
            Channel, ChannelEvent, ChannelStatus, Check, Delivery, Destination, Otp, OtpStatus, Superseded,
            MAX_ATTEMPTS,
        },
        send::{send, SendRequest, TEST_PROVIDER_ID},
        sms::Encoding,
        time::{self, Millis},
        usage::{UsageCategory, UsageKey},
        verify::{verify, VerifyTarget},
        workflows::{run_step, Step, WorkflowDef},
    },
    ports::{CancelWrite, Clock, Deps, ExpiryStore, Lookup, NoScheduler, SendPlan, Store, SystemClock, VerifyWrite},
    Error,
};

// --- fixtures --------------------------------------------------------------------------------

/// A store under test; `dynamo` is the same store when it is the DynamoDB one.
struct Fixture {
    store: Arc<dyn Store>,
    /// The same store, as the expiry sweeper sees it.
    expiry: Arc<dyn ExpiryStore>,
    dynamo: Option<Arc<DynamoStore>>,
}

impl Fixture {
    fn memory() -> Self {
        let store = Arc::new(MemoryStore::new());
        Fixture { store: store.clone(), expiry: store, dynamo: None }
    }

    async fn dynamodb() -> Self {
        let store = Arc::new(dynamo_store().await);
        Fixture { store: store.clone(), expiry: store.clone(), dynamo: Some(store) }
    }

    /// The usage count of one key through the store's usage reader (0 when there is none);
    /// on DynamoDB also checked against a direct read of the item.
    async fn usage(&self, key: &UsageKey) -> u64 {
        let rows = self.store.usage(&key.account_sid, &key.day, &key.day).await.expect("usage");
        let n = rows.into_iter().find(|(k, _)| k == key).map_or(0, |(_, n)| n);
        if let Some(d) = &self.dynamo {
            assert_eq!(d.usage_count(key).await.expect("usage item"), n, "{key:?}");
        }
        n
    }
}

/// Drop a passed test's table, so moto's state (and `/moto-api/data.json`, which other tests
/// read) stays small. A failed test keeps its table for a look.
async fn drop_table(store: &DynamoStore) {
    let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
    client.delete_table().table_name(store.table()).send().await.expect("delete the table");
}

/// A DynamoDB store on a fresh table in moto.
async fn dynamo_store() -> DynamoStore {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|u| !u.is_empty()),
        "AWS_ENDPOINT_URL is not set: the DynamoDB conformance tests need moto. Run `make test`, or start \
         moto (`python3 -m moto.server -p 5055`) and export AWS_ENDPOINT_URL=http://127.0.0.1:5055 \
         AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1"
    );
    let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
    let table = format!("conformance-{}", ids::new_sid(""));
    create_table(&client, &table).await.expect("create the table in moto");
    // The pumping guard's windows kept 10 minutes, not a second: what a send reads stays the
    // same however slowly a test runs on moto (the guard's timing has tests of its own).
    DynamoStore::new(client, table).with_guard_cache(std::time::Duration::from_secs(600), Arc::new(SystemClock))
}

const T0: Millis = 1_700_000_000_000;

fn account_sid() -> String {
    ids::new_sid(ids::ACCOUNT)
}

/// A random number that can exist (+1 415 5xx xxxx).
fn phone() -> String {
    let digits: String = ids::new_sid("").bytes().map(|b| char::from(b'0' + b % 10)).take(6).collect();
    format!("+14155{digits}")
}

/// A pending SMS OTP created at `now`, expiring 5 minutes later.
fn otp(account: &str, to: &str, now: Millis) -> Otp {
    let sid = ids::otp_sid(now);
    Otp {
        code_hash: vec![7; 32],
        sealed_code: vec![1, 2, 3, 4],
        account_sid: account.to_owned(),
        service: "2FA".into(),
        delivery: Delivery::sms("Twofa", to, "Your code: {code}"),
        length: 6,
        country: Some("US".into()),
        status: OtpStatus::Pending,
        created_ms: now,
        updated_ms: now,
        expires_ms: now + 300_000,
        guard_time: None,
        cancel_at_ms: None,
        attempts: 0,
        checks: vec![],
        events: vec![event(&sid, now)],
        workflow: None,
        watched: true,
        clears_failures: false,
        guarded: false,
        sid,
    }
}

fn event(otp_sid: &str, now: Millis) -> ChannelEvent {
    ChannelEvent {
        sid: ids::new_sid(ids::EVENT),
        at_ms: now,
        channel: Channel::Sms,
        sender: "Twofa".into(),
        recipient: otp_sid.to_owned(),
        target_sid: None,
        status: ChannelStatus::Queued,
        error_code: None,
        error_message: None,
        encoding: Some(Encoding::Gsm7),
        segments: Some(1),
        route: None,
    }
}

fn usage_keys(account: &str, now: Millis) -> Vec<UsageKey> {
    vec![
        UsageKey { account_sid: account.to_owned(), day: time::day(now), category: UsageCategory::All },
        UsageKey {
            account_sid: account.to_owned(),
            day: time::day(now),
            category: UsageCategory::Channel(Channel::Sms),
        },
    ]
}

/// The plan of a send of `otp`, superseding `supersede` if given.
fn plan(otp: Otp, expected_current: Option<&str>, supersede: Option<Superseded>, counters: Vec<CounterOp>) -> SendPlan {
    SendPlan {
        destination: Destination {
            current: otp.sid.clone(),
            current_guard: otp.guard_time,
            current_expires_ms: otp.expires_ms,
            previous: supersede.clone(),
        },
        expected_current: expected_current.map(str::to_owned),
        supersede,
        counters,
        usage: usage_keys(&otp.account_sid, otp.created_ms),
        idempotency: None,
        guard: vec![],
        otp,
    }
}

/// `plan` of `otp` that also records idempotency `key` for it.
fn keyed(otp: Otp, key: &str) -> SendPlan {
    let record = IdempotencyRecord {
        key: key.to_owned(),
        otp_sid: otp.sid.clone(),
        fingerprint: vec![0xfe; 32],
        created_ms: otp.created_ms,
    };
    SendPlan { idempotency: Some(record), ..plan(otp, None, None, vec![]) }
}

fn default_counter(otp: &Otp) -> CounterKey {
    CounterKey::default_for(&otp.account_sid, &otp.delivery.to)
}

fn open(key: &CounterKey, now: Millis, window_secs: i64) -> CounterOp {
    CounterOp::Open { key: key.clone(), window_end_ms: now + window_secs * 1000, now_ms: now }
}

fn limit(account: &str, name: &str, buckets: &[(&str, u32, u32)], created_ms: Millis) -> LimitDef {
    LimitDef {
        sid: ids::new_sid(ids::LIMIT),
        account_sid: account.to_owned(),
        created_by: account.to_owned(),
        name: name.to_owned(),
        buckets: buckets
            .iter()
            .map(|(n, max, interval)| Bucket { name: (*n).into(), max: *max, interval_secs: *interval })
            .collect(),
        buckets_json: r#"[{"name":"b","max":1,"interval":60}]"#.into(),
        description: Some("a limit".into()),
        created_ms,
        updated_ms: created_ms,
    }
}

fn deps(store: Arc<dyn Store>) -> (Deps, Arc<Outbox>) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let outbox = Arc::new(Outbox::new(clock.clone()));
    let deps = Deps {
        store,
        dispatcher: outbox.clone(),
        clock,
        keys: Arc::new(Keys::random()),
        scheduler: Arc::new(NoScheduler),
    };
    (deps, outbox)
}

async fn new_account(deps: &Deps) -> Account {
    let account = Account::new(account_sid(), "token", &deps.keys, None, T0);
    deps.store.put_account(&account).await.expect("account");
    account
}

fn sms(to: &str, limits: Vec<(String, String)>) -> SendRequest {
    SendRequest {
        service: "2FA".into(),
        delivery: Delivery::sms("Twofa", to, "Your code: {code}"),
        length: 6,
        timeout_secs: 300,
        guard_time: None,
        limits,
        idempotency_key: None,
        workflow: None,
        email: None,
        email_from: None,
    }
}

fn code_sent_to(outbox: &Outbox, to: &str) -> String {
    let msg = outbox.messages(Some(to)).into_iter().next().expect("a message to the number");
    msg.body.chars().filter(char::is_ascii_digit).collect()
}

fn verified(w: VerifyWrite) -> bool {
    matches!(w, VerifyWrite::Verified)
}

fn refused(w: VerifyWrite) -> Option<Otp> {
    match w {
        VerifyWrite::Verified => panic!("expected a refusal, the OTP was verified"),
        VerifyWrite::Wrong { .. } => panic!("expected a refusal, the code was counted as wrong"),
        VerifyWrite::Refused(otp) => otp,
    }
}

fn check(valid: bool, now: Millis) -> Check {
    Check { sid: ids::new_sid(ids::CHECK), at_ms: now, valid, sealed_code: vec![42; 28] }
}

// --- the suite, instantiated per store --------------------------------------------------------

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Fixture::memory()).await
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let f = super::Fixture::dynamodb().await;
                    let store = f.dynamo.clone().expect("a DynamoDB store");
                    super::$name(f).await;
                    super::drop_table(&store).await;
                }
            )*
        }
    };
}

conformance!(
    committed_otp_reads_back_with_every_field,
    second_otp_with_the_same_sid_is_contended_and_writes_nothing,
    only_the_first_of_two_sends_expecting_the_same_destination_commits,
    supersede_marks_the_older_otp_and_needs_it_to_exist,
    counter_opens_only_when_no_window_is_open,
    counter_increments_only_in_the_same_window_below_max,
    concurrent_sends_against_one_limit_admit_exactly_its_max,
    concurrent_sends_to_one_destination_admit_exactly_one,
    concurrent_verifies_with_the_right_code_succeed_exactly_once,
    verify_refusals_answer_the_otp_as_it_is,
    each_wrong_code_is_counted_as_it_is_compared_and_the_fifth_fails_the_otp,
    a_code_on_an_expired_otp_is_refused_and_counts_nothing,
    a_code_is_right_when_the_otp_holds_any_of_its_hashes_under_the_keyring,
    two_hundred_concurrent_wrong_codes_are_compared_at_most_five_times,
    a_right_code_behind_199_concurrent_wrong_ones_finds_the_attempts_used_up,
    cancel_cancels_only_a_pending_otp,
    expiry_is_enforced_in_code_though_the_item_remains,
    only_otps_someone_is_told_of_are_swept_once_due,
    a_send_is_watched_only_when_the_send_or_its_account_names_a_callback,
    superseded_otp_refuses_verify_from_its_cancel_time,
    undo_send_leaves_no_otp_and_puts_pointer_counters_and_usage_back,
    undo_of_an_older_send_leaves_the_newer_pointer_alone,
    update_event_replaces_one_event_in_place,
    usage_counts_every_committed_send,
    a_count_reads_at_most_its_bound_and_says_whether_it_read_everything,
    an_otp_from_before_sharding_still_verifies_cancels_and_shows_in_search,
    snapshot_reads_pointer_limits_and_counters_in_the_order_asked,
    snapshot_returns_the_idempotency_record_of_the_account_and_key,
    second_plan_with_a_recorded_idempotency_key_is_contended_until_the_window_ends,
    undo_send_removes_its_idempotency_record_and_only_its_own,
    undo_takes_back_its_default_count_after_a_send_with_limits_moved_the_pointer,
    undo_takes_back_its_pointer_when_another_service_opened_the_next_window,
    concurrent_sends_with_one_idempotency_key_send_once_and_answer_alike,
    limits_create_get_update_list_delete,
    limit_name_clash_in_one_account_is_492,
    limits_of_another_account_are_not_found,
    limits_list_by_creation_then_sid,
    accounts_are_create_only,
    sub_accounts_list_direct_and_deeper_ones,
    workflows_create_get_by_name_update_list_delete,
    workflow_name_clash_in_one_account_is_495,
    concurrent_runs_of_one_workflow_step_send_it_once,
    a_workflow_step_of_a_verified_otp_is_not_sent,
    a_factor_reads_back_with_every_field_and_is_listed_under_its_entity_only,
    a_factor_takes_each_time_step_once_and_never_an_earlier_one,
    concurrent_uses_of_one_time_step_take_it_exactly_once,
    wrong_first_codes_count_up_to_the_bound_only_while_unverified,
    a_factor_secret_is_resealed_only_over_the_one_read,
    a_deleted_factor_is_answered_once_then_gone,
    a_passkey_reads_back_and_confirms_once_over_its_ceremony,
    concurrent_uses_of_one_passkey_state_move_it_exactly_once,
);

// --- OTPs and sends --------------------------------------------------------------------------

async fn committed_otp_reads_back_with_every_field(f: Fixture) {
    // Given an OTP with every optional field set
    let acct = account_sid();
    let mut o = otp(&acct, "someone@example.com", T0);
    o.delivery = Delivery {
        channel: Channel::Email,
        from: "otp@example.com".into(),
        to: "someone@example.com".into(),
        body: "Code {code}".into(),
        subject: Some("Your code".into()),
        language: "fr-FR".into(),
        voice: Some("Lea".into()),
        repeat: 3,
        web_otp_domain: None,
        app_hash: None,
        callback: Some(twofa::domain::callbacks::CallbackTarget {
            url: "https://hooks.example.com/otp?t=1".into(),
            method: twofa::domain::callbacks::CallbackMethod::Get,
        }),
    };
    o.length = 8;
    o.guard_time = Some(30);
    o.cancel_at_ms = Some(T0 + 250_000);
    o.attempts = 2;
    o.checks = vec![check(false, T0 + 1), check(false, T0 + 2)];
    o.events.push(ChannelEvent {
        target_sid: Some("SM123".into()),
        status: ChannelStatus::Failed,
        error_code: Some("30008".into()),
        error_message: Some("Unknown error".into()),
        ..event(&o.sid, T0 + 3)
    });
    let p = plan(o.clone(), None, None, vec![open(&default_counter(&o), T0, 60)]);
    // When it is committed
    f.store.commit_send(&p).await.expect("commit");
    // Then it reads back exactly, and so does its destination pointer
    assert_eq!(f.store.get_otp(&acct, &o.sid).await.unwrap(), Some(o.clone()));
    assert_eq!(f.store.get_destination(&acct, "2FA", &o.delivery.to).await.unwrap(), Some(p.destination.clone()));
    // And another account does not see it
    assert_eq!(f.store.get_otp(&account_sid(), &o.sid).await.unwrap(), None);
}

async fn second_otp_with_the_same_sid_is_contended_and_writes_nothing(f: Fixture) {
    // Given a committed OTP
    let acct = account_sid();
    let first = otp(&acct, &phone(), T0);
    f.store.commit_send(&plan(first.clone(), None, None, vec![open(&default_counter(&first), T0, 60)])).await.unwrap();
    // When another send to another number reuses its sid
    let mut second = otp(&acct, &phone(), T0);
    second.sid = first.sid.clone();
    let counter = default_counter(&second);
    let result = f.store.commit_send(&plan(second.clone(), None, None, vec![open(&counter, T0, 60)])).await;
    // Then it is refused and none of its writes happened
    assert_eq!(result, Err(Error::Contended));
    assert_eq!(f.store.get_otp(&acct, &first.sid).await.unwrap(), Some(first));
    assert_eq!(f.store.get_destination(&acct, "2FA", &second.delivery.to).await.unwrap(), None);
    assert_eq!(f.store.get_counters(&[counter]).await.unwrap(), vec![None]);
}

async fn only_the_first_of_two_sends_expecting_the_same_destination_commits(f: Fixture) {
    // Given two sends to one new destination, both planned when it had no pointer
    let acct = account_sid();
    let to = phone();
    let a = otp(&acct, &to, T0);
    let b = otp(&acct, &to, T0);
    // When both commit
    f.store.commit_send(&plan(a.clone(), None, None, vec![])).await.expect("first");
    let second = f.store.commit_send(&plan(b.clone(), None, None, vec![])).await;
    // Then the second is contended and the pointer is the first's
    assert_eq!(second, Err(Error::Contended));
    assert_eq!(f.store.get_destination(&acct, "2FA", &to).await.unwrap().unwrap().current, a.sid);
    assert_eq!(f.store.get_otp(&acct, &b.sid).await.unwrap(), None);
    // And the same holds for two sends expecting the first as current
    let c = otp(&acct, &to, T0 + 1);
    let d = otp(&acct, &to, T0 + 1);
    f.store.commit_send(&plan(c.clone(), Some(&a.sid), None, vec![])).await.expect("third");
    assert_eq!(f.store.commit_send(&plan(d, Some(&a.sid), None, vec![])).await, Err(Error::Contended));
    assert_eq!(f.store.get_destination(&acct, "2FA", &to).await.unwrap().unwrap().current, c.sid);
}

async fn supersede_marks_the_older_otp_and_needs_it_to_exist(f: Fixture) {
    // Given a pending OTP to a number
    let acct = account_sid();
    let to = phone();
    let old = otp(&acct, &to, T0);
    f.store.commit_send(&plan(old.clone(), None, None, vec![])).await.unwrap();
    // When a newer send supersedes it with a 30 s guard time
    let new = otp(&acct, &to, T0 + 1_000);
    let s = Superseded { sid: old.sid.clone(), cancel_at_ms: T0 + 31_000 };
    f.store.commit_send(&plan(new.clone(), Some(&old.sid), Some(s.clone()), vec![])).await.unwrap();
    // Then the older one reads canceled from then on, and the pointer remembers it
    let stored = f.store.get_otp(&acct, &old.sid).await.unwrap().unwrap();
    assert_eq!(stored.cancel_at_ms, Some(T0 + 31_000));
    assert_eq!(stored.status_at(T0 + 30_999), OtpStatus::Pending);
    assert_eq!(stored.status_at(T0 + 31_000), OtpStatus::Canceled);
    let d = f.store.get_destination(&acct, "2FA", &to).await.unwrap().unwrap();
    assert_eq!((d.current, d.previous), (new.sid.clone(), Some(s)));
    // And superseding an OTP that does not exist is refused
    let ghost = Superseded { sid: ids::new_sid(ids::OTP), cancel_at_ms: T0 };
    let newer = otp(&acct, &to, T0 + 2_000);
    assert_eq!(f.store.commit_send(&plan(newer, Some(&new.sid), Some(ghost), vec![])).await, Err(Error::Contended));
}

async fn counter_opens_only_when_no_window_is_open(f: Fixture) {
    let acct = account_sid();
    let key =
        CounterKey { account_sid: acct.clone(), limit: "LM1".into(), bucket: "b".into(), value: "10.0.0.1".into() };
    // Given a window opened at T0 for 60 s
    f.store.commit_send(&plan(otp(&acct, &phone(), T0), None, None, vec![open(&key, T0, 60)])).await.unwrap();
    // When another send tries to open it again inside the window
    let again =
        f.store.commit_send(&plan(otp(&acct, &phone(), T0), None, None, vec![open(&key, T0 + 59_999, 60)])).await;
    // Then it is contended
    assert_eq!(again, Err(Error::Contended));
    // And once the window has ended, a new one opens with a count of 1
    let later = T0 + 60_000;
    f.store.commit_send(&plan(otp(&acct, &phone(), later), None, None, vec![open(&key, later, 60)])).await.unwrap();
    assert_eq!(
        f.store.get_counters(&[key]).await.unwrap(),
        vec![Some(Counter { count: 1, window_end_ms: later + 60_000 })]
    );
}

async fn counter_increments_only_in_the_same_window_below_max(f: Fixture) {
    let acct = account_sid();
    let key = CounterKey { account_sid: acct.clone(), limit: "LM1".into(), bucket: "b".into(), value: "x#y%z".into() };
    let end = T0 + 60_000;
    let inc = |end, max| CounterOp::Increment { key: key.clone(), window_end_ms: end, max };
    let send = |ops| plan(otp(&acct, &phone(), T0), None, None, ops);
    // Given an open window with one send in it
    f.store.commit_send(&send(vec![open(&key, T0, 60)])).await.unwrap();
    // When sends increment it up to max 2
    f.store.commit_send(&send(vec![inc(end, 2)])).await.expect("room for one more");
    // Then the next is refused, as is one that saw another window
    assert_eq!(f.store.commit_send(&send(vec![inc(end, 2)])).await, Err(Error::Contended));
    assert_eq!(f.store.commit_send(&send(vec![inc(end + 1, 10)])).await, Err(Error::Contended));
    // And incrementing a counter that does not exist is refused too
    let missing = CounterKey { value: "nobody".into(), ..key.clone() };
    let op = CounterOp::Increment { key: missing, window_end_ms: end, max: 10 };
    assert_eq!(f.store.commit_send(&send(vec![op])).await, Err(Error::Contended));
    assert_eq!(f.store.get_counters(&[key]).await.unwrap(), vec![Some(Counter { count: 2, window_end_ms: end })]);
}

async fn concurrent_sends_against_one_limit_admit_exactly_its_max(f: Fixture) {
    // Given a limit of 7 sends per hour per IP
    let (deps, _outbox) = deps(f.store.clone());
    let account = new_account(&deps).await;
    let now = deps.clock.now_ms();
    let def = limit(&account.sid, "per_ip", &[("hourly", 7, 3600)], now);
    f.store.create_limit(&def).await.unwrap();
    // When 100 sends from one IP to 100 numbers run at once
    let results = join_all((0..100).map(|_| {
        let deps = deps.clone();
        let account = account.clone();
        async move {
            let req = sms(&phone(), vec![("per_ip".into(), "10.0.0.1".into())]);
            send(&deps, &account, req).await
        }
    }))
    .await;
    // Then exactly 7 are admitted and every other one is told the limit is full
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    let others: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(admitted, 7, "errors: {others:?}");
    assert!(others.iter().all(|e| **e == Error::LimitExceeded("per_ip".into())), "{others:?}");
    let key = CounterKey {
        account_sid: account.sid.clone(),
        limit: def.sid,
        bucket: "hourly".into(),
        value: "10.0.0.1".into(),
    };
    assert_eq!(f.store.get_counters(&[key]).await.unwrap()[0].map(|c| c.count), Some(7));
}

async fn concurrent_sends_to_one_destination_admit_exactly_one(f: Fixture) {
    // Given the default limit (1 per minute per destination)
    let (deps, outbox) = deps(f.store.clone());
    let account = new_account(&deps).await;
    let to = phone();
    // When 50 sends to the same number run at once
    let results = join_all((0..50).map(|_| {
        let (deps, account, to) = (deps.clone(), account.clone(), to.clone());
        async move { send(&deps, &account, sms(&to, vec![])).await }
    }))
    .await;
    // Then exactly one is sent and the others answer 453
    let sent: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let others: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(sent.len(), 1, "errors: {others:?}");
    assert!(others.iter().all(|e| **e == Error::TooManyToDestination), "{others:?}");
    assert_eq!(outbox.messages(Some(&to)).len(), 1);
    assert_eq!(f.store.get_destination(&account.sid, "2FA", &to).await.unwrap().unwrap().current, *sent[0]);
}

async fn concurrent_verifies_with_the_right_code_succeed_exactly_once(f: Fixture) {
    // Given an OTP sent through the domain
    let (deps, outbox) = deps(f.store.clone());
    let account = new_account(&deps).await;
    let to = phone();
    let sid = send(&deps, &account, sms(&to, vec![])).await.expect("send");
    let code = code_sent_to(&outbox, &to);
    // When 50 verifies with the right code run at once
    let results = join_all((0..50).map(|_| {
        let (deps, account, sid, code) = (deps.clone(), account.clone(), sid.clone(), code.clone());
        async move { verify(&deps, &account, VerifyTarget::RequestId(sid), &code).await }
    }))
    .await;
    // Then exactly one succeeds and the others are told it is already verified
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|r| r.error == Error::AlreadyVerified), "{results:?}");
    let stored = f.store.get_otp(&account.sid, &sid).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.checks.len()), (OtpStatus::Success, 1));
}

async fn verify_refusals_answer_the_otp_as_it_is(f: Fixture) {
    // Given a pending OTP
    let acct = account_sid();
    let o = otp(&acct, &phone(), T0);
    f.store.commit_send(&plan(o.clone(), None, None, vec![])).await.unwrap();
    // When an unknown sid, or another account's, is presented, it is refused with nothing
    let w = f
        .store
        .verify_code(&acct, &ids::new_sid(ids::OTP), std::slice::from_ref(&o.code_hash), &check(true, T0), T0)
        .await
        .unwrap();
    assert_eq!(refused(w), None);
    let w = f
        .store
        .verify_code(&account_sid(), &o.sid, std::slice::from_ref(&o.code_hash), &check(true, T0), T0)
        .await
        .unwrap();
    assert_eq!(refused(w), None);
    // When the right hash is presented it verifies, recording the check as valid
    let c = check(false, T0 + 2);
    assert!(verified(
        f.store.verify_code(&acct, &o.sid, std::slice::from_ref(&o.code_hash), &c, T0 + 2).await.unwrap()
    ));
    // Then a second verify, right or wrong, is refused with the verified OTP, uncounted
    let again = refused(
        f.store
            .verify_code(&acct, &o.sid, std::slice::from_ref(&o.code_hash), &check(true, T0 + 3), T0 + 3)
            .await
            .unwrap(),
    )
    .expect("the OTP");
    let wrong =
        refused(f.store.verify_code(&acct, &o.sid, &[vec![0; 32]], &check(true, T0 + 4), T0 + 4).await.unwrap())
            .expect("the OTP");
    let valid = Check { valid: true, ..c };
    assert_eq!(
        (again.status, again.updated_ms, again.attempts, &again.checks),
        (OtpStatus::Success, T0 + 2, 0, &vec![valid])
    );
    assert_eq!(wrong, again);
}

async fn each_wrong_code_is_counted_as_it_is_compared_and_the_fifth_fails_the_otp(f: Fixture) {
    // Given a pending OTP
    let acct = account_sid();
    let o = otp(&acct, &phone(), T0);
    f.store.commit_send(&plan(o.clone(), None, None, vec![])).await.unwrap();
    // When five wrong codes are presented
    for n in 1..=MAX_ATTEMPTS {
        let now = T0 + i64::from(n);
        let w = f.store.verify_code(&acct, &o.sid, &[vec![n as u8; 32]], &check(true, now), now).await.unwrap();
        // Then each is counted in the write that compared it, and the fifth fails the OTP
        let last = n == MAX_ATTEMPTS;
        assert!(matches!(w, VerifyWrite::Wrong { failed } if failed == last), "attempt {n}");
        let stored = f.store.get_otp(&acct, &o.sid).await.unwrap().unwrap();
        let expected = if last { OtpStatus::Failed } else { OtpStatus::Pending };
        assert_eq!((stored.attempts, stored.status), (n, expected));
        assert!(stored.checks.iter().all(|c| !c.valid));
    }
    // And it is failed, with the time of the last check, and takes no more codes, right or wrong
    let stored = f.store.get_otp(&acct, &o.sid).await.unwrap().unwrap();
    assert_eq!((stored.updated_ms, stored.checks.len()), (T0 + 5, 5));
    let right = f
        .store
        .verify_code(&acct, &o.sid, std::slice::from_ref(&o.code_hash), &check(true, T0 + 9), T0 + 9)
        .await
        .unwrap();
    assert_eq!(refused(right), Some(stored.clone()));
    let wrong = f.store.verify_code(&acct, &o.sid, &[vec![0; 32]], &check(true, T0 + 9), T0 + 9).await.unwrap();
    assert_eq!(refused(wrong), Some(stored));
}

async fn a_code_is_right_when_the_otp_holds_any_of_its_hashes_under_the_keyring(f: Fixture) {
    // Given a pending OTP whose hash was made under the previous key (the keyring's second)
    let acct = account_sid();
    let o = otp(&acct, &phone(), T0);
    f.store.commit_send(&plan(o.clone(), None, None, vec![])).await.unwrap();
    // When a code comes whose hashes under the current and the previous key are given, and
    // neither is the OTP's
    let wrong = f.store.verify_code(&acct, &o.sid, &[vec![1; 33], vec![2; 33]], &check(true, T0), T0).await.unwrap();
    // Then it is wrong, and counted once
    assert!(matches!(wrong, VerifyWrite::Wrong { failed: false }));
    assert_eq!(f.store.get_otp(&acct, &o.sid).await.unwrap().unwrap().attempts, 1);
    // When the right code comes, its previous-key hash second
    let right = f
        .store
        .verify_code(&acct, &o.sid, &[vec![1; 33], o.code_hash.clone()], &check(true, T0 + 1), T0 + 1)
        .await
        .unwrap();
    // Then it verifies
    assert!(verified(right));
}

async fn a_code_on_an_expired_otp_is_refused_and_counts_nothing(f: Fixture) {
    // Given an OTP with one wrong code counted
    let acct = account_sid();
    let o = otp(&acct, &phone(), T0);
    f.store.commit_send(&plan(o.clone(), None, None, vec![])).await.unwrap();
    assert!(matches!(
        f.store.verify_code(&acct, &o.sid, &[vec![0; 32]], &check(true, T0), T0).await.unwrap(),
        VerifyWrite::Wrong { failed: false }
    ));
    // When a wrong and a right code come once it has expired
    let wrong =
        f.store.verify_code(&acct, &o.sid, &[vec![0; 32]], &check(true, o.expires_ms), o.expires_ms).await.unwrap();
    let right = f
        .store
        .verify_code(&acct, &o.sid, std::slice::from_ref(&o.code_hash), &check(true, o.expires_ms), o.expires_ms)
        .await
        .unwrap();
    // Then both are refused and nothing changed
    let stored = f.store.get_otp(&acct, &o.sid).await.unwrap().unwrap();
    assert_eq!((stored.attempts, stored.checks.len(), stored.status), (1, 1, OtpStatus::Pending));
    assert_eq!(refused(wrong), Some(stored.clone()));
    assert_eq!(refused(right), Some(stored));
}

async fn two_hundred_concurrent_wrong_codes_are_compared_at_most_five_times(f: Fixture) {
    // Given a 4-digit OTP sent through the domain
    let (deps, outbox) = deps(f.store.clone());
    let account = new_account(&deps).await;
    let to = phone();
    let sid = send(&deps, &account, SendRequest { length: 4, ..sms(&to, vec![]) }).await.expect("send");
    let code = code_sent_to(&outbox, &to);
    assert_eq!(code.len(), 4);
    // When 200 verifies with distinct wrong codes run at once
    let wrong: Vec<String> = (0..10_000).map(|n| format!("{n:04}")).filter(|c| *c != code).take(200).collect();
    let results = join_all(wrong.into_iter().map(|guess| {
        let (deps, account, sid) = (deps.clone(), account.clone(), sid.clone());
        async move { verify(&deps, &account, VerifyTarget::RequestId(sid), &guess).await }
    }))
    .await;
    // Then exactly five are told the code is wrong (474) and the rest that the attempts are
    // used up (475): no other guess was compared
    let errors: Vec<Error> = results.into_iter().map(|r| r.expect_err("a wrong code").error).collect();
    let invalid = errors.iter().filter(|e| **e == Error::InvalidCode).count();
    let used_up = errors.iter().filter(|e| **e == Error::MaxAttempts).count();
    // (moto answers one request at a time: under the whole suite's load some of 200 requests
    // wait past the SDK's attempt timeout and answer 503, which tells the caller nothing of
    // the code; DynamoDB itself has no such queue, and the embedded store none at all)
    let unanswered = if f.dynamo.is_some() { errors.iter().filter(|e| **e == Error::Unavailable).count() } else { 0 };
    assert!(invalid <= 5 && invalid + unanswered >= 5 && invalid + used_up + unanswered == 200, "{errors:?}");
    if unanswered == 0 {
        assert_eq!((invalid, used_up), (5, 195), "{errors:?}");
    }
    // And the right code afterwards is refused too, with five checks recorded
    let r = verify(&deps, &account, VerifyTarget::RequestId(sid.clone()), &code).await;
    assert_eq!(r.map_err(|r| r.error), Err(Error::MaxAttempts));
    let stored = f.store.get_otp(&account.sid, &sid).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.attempts, stored.checks.len()), (OtpStatus::Failed, 5, 5));
}

async fn a_right_code_behind_199_concurrent_wrong_ones_finds_the_attempts_used_up(f: Fixture) {
    // Given a 4-digit OTP sent through the domain
    let (deps, outbox) = deps(f.store.clone());
    let account = new_account(&deps).await;
    let to = phone();
    let sid = send(&deps, &account, SendRequest { length: 4, ..sms(&to, vec![]) }).await.expect("send");
    let code = code_sent_to(&outbox, &to);
    // When 200 verifies run at once, the right code started last (an attacker's burst)
    let mut guesses: Vec<String> = (0..10_000).map(|n| format!("{n:04}")).filter(|c| *c != code).take(199).collect();
    guesses.push(code);
    let results = join_all(guesses.into_iter().map(|guess| {
        let (deps, account, sid) = (deps.clone(), account.clone(), sid.clone());
        async move { verify(&deps, &account, VerifyTarget::RequestId(sid), &guess).await }
    }))
    .await;
    // Then the wrong codes compared first used the five attempts, and the right one, compared
    // after them, is refused: a guess is not compared for free while others are being counted
    let errors: Vec<Error> = results.into_iter().map(|r| r.expect_err("no guess wins").error).collect();
    // (on moto, a guess counted whose answer waited past the SDK's timeout answers 503: see
    // the test above; the stored OTP is the whole truth)
    let unanswered = if f.dynamo.is_some() { errors.iter().filter(|e| **e == Error::Unavailable).count() } else { 0 };
    let invalid = errors.iter().filter(|e| **e == Error::InvalidCode).count();
    assert!(invalid <= 5 && invalid + unanswered >= 5, "{errors:?}");
    let last = errors.last().expect("an answer");
    assert!(*last == Error::MaxAttempts || (f.dynamo.is_some() && *last == Error::Unavailable), "{last:?}");
    let stored = f.store.get_otp(&account.sid, &sid).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.attempts), (OtpStatus::Failed, 5));
}

async fn cancel_cancels_only_a_pending_otp(f: Fixture) {
    let acct = account_sid();
    let o = otp(&acct, &phone(), T0);
    f.store.commit_send(&plan(o.clone(), None, None, vec![])).await.unwrap();
    // When a pending OTP is canceled
    assert!(matches!(f.store.cancel_otp(&acct, &o.sid, T0 + 5).await.unwrap(), CancelWrite::Canceled));
    // Then it is canceled, and canceling again is refused with the canceled OTP
    match f.store.cancel_otp(&acct, &o.sid, T0 + 6).await.unwrap() {
        CancelWrite::Refused(Some(c)) => {
            assert_eq!((c.status, c.updated_ms), (OtpStatus::Canceled, T0 + 5))
        }
        _ => panic!("expected a refusal with the OTP"),
    }
    // And a verify of it is refused
    let w = f
        .store
        .verify_code(&acct, &o.sid, std::slice::from_ref(&o.code_hash), &check(true, T0 + 7), T0 + 7)
        .await
        .unwrap();
    assert_eq!(refused(w).map(|o| o.status), Some(OtpStatus::Canceled));
    // And an unknown OTP, or another account's, is refused with nothing
    assert!(matches!(
        f.store.cancel_otp(&acct, &ids::new_sid(ids::OTP), T0).await.unwrap(),
        CancelWrite::Refused(None)
    ));
    assert!(matches!(f.store.cancel_otp(&account_sid(), &o.sid, T0).await.unwrap(), CancelWrite::Refused(None)));
    // And an expired or verified OTP is not canceled
    let e = otp(&acct, &phone(), T0);
    f.store.commit_send(&plan(e.clone(), None, None, vec![])).await.unwrap();
    match f.store.cancel_otp(&acct, &e.sid, e.expires_ms).await.unwrap() {
        CancelWrite::Refused(Some(x)) => assert_eq!(x.status_at(e.expires_ms), OtpStatus::Expired),
        _ => panic!("expected a refusal with the OTP"),
    }
    let v = otp(&acct, &phone(), T0);
    f.store.commit_send(&plan(v.clone(), None, None, vec![])).await.unwrap();
    assert!(verified(
        f.store.verify_code(&acct, &v.sid, std::slice::from_ref(&v.code_hash), &check(true, T0), T0).await.unwrap()
    ));
    match f.store.cancel_otp(&acct, &v.sid, T0 + 1).await.unwrap() {
        CancelWrite::Refused(Some(x)) => assert_eq!(x.status, OtpStatus::Success),
        _ => panic!("expected a refusal with the OTP"),
    }
}

async fn expiry_is_enforced_in_code_though_the_item_remains(f: Fixture) {
    // Given an OTP whose timeout has passed (moto, like DynamoDB for up to days, keeps the item)
    let acct = account_sid();
    let o = otp(&acct, &phone(), T0);
    f.store.commit_send(&plan(o.clone(), None, None, vec![])).await.unwrap();
    let late = o.expires_ms;
    // When the right code is presented at its expiry instant
    let w =
        f.store.verify_code(&acct, &o.sid, std::slice::from_ref(&o.code_hash), &check(true, late), late).await.unwrap();
    // Then it is refused, the OTP reads expired and is still stored as written
    let stored = refused(w).expect("the OTP");
    assert_eq!((stored.status, stored.status_at(late)), (OtpStatus::Pending, OtpStatus::Expired));
    assert_eq!(f.store.get_otp(&acct, &o.sid).await.unwrap(), Some(o.clone()));
    // And a millisecond earlier it would have verified
    assert!(verified(
        f.store
            .verify_code(&acct, &o.sid, std::slice::from_ref(&o.code_hash), &check(true, late - 1), late - 1)
            .await
            .unwrap()
    ));
}

async fn only_otps_someone_is_told_of_are_swept_once_due(f: Fixture) {
    // Given two OTPs with the same deadline: one whose events a callback hears of, and one
    // nobody is told of
    let acct = account_sid();
    let watched = otp(&acct, &phone(), T0);
    let unwatched = Otp { watched: false, ..otp(&acct, &phone(), T0) };
    for o in [&watched, &unwatched] {
        f.store.commit_send(&plan(o.clone(), None, None, vec![])).await.unwrap();
    }
    let late = watched.expires_ms;
    // When the sweeper asks what is due, a millisecond before the deadline and at it
    let early = due_at(f.expiry.as_ref(), late - 1).await;
    let due = due_at(f.expiry.as_ref(), late).await;
    // Then nothing is due before it, and only the watched OTP at it
    assert!(early.is_empty(), "{early:?}");
    assert_eq!(due, vec![(acct.clone(), watched.sid.clone())]);
    // And the other reads expired all the same, stored as it was written
    let stored = f.store.get_otp(&acct, &unwatched.sid).await.unwrap().expect("the unwatched OTP");
    assert_eq!(stored, unwatched);
    assert_eq!(stored.status_at(late), OtpStatus::Expired);
}

/// Every OTP due at `now`, over every shard of the due index, page by page.
async fn due_at(expiry: &dyn ExpiryStore, now: Millis) -> Vec<(String, String)> {
    let mut due = vec![];
    for shard in 0..expiry.due_shards() {
        let mut after = None;
        loop {
            let page = expiry.due_otps(shard, now, 500, after.as_deref()).await.unwrap();
            due.extend(page.due);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    due
}

async fn a_send_is_watched_only_when_the_send_or_its_account_names_a_callback(f: Fixture) {
    // Given an account without a callback
    let (deps, _outbox) = deps(f.store.clone());
    let account = new_account(&deps).await;
    let target = twofa::domain::callbacks::CallbackTarget {
        url: "https://hooks.example.com/otp".into(),
        method: twofa::domain::callbacks::CallbackMethod::Post,
    };
    // When it sends once plainly and once with its own callbackUrl
    let plain = send(&deps, &account, sms(&phone(), vec![])).await.expect("send");
    let mut req = sms(&phone(), vec![]);
    req.delivery.callback = Some(target.clone());
    let called = send(&deps, &account, req).await.expect("send with a callback");
    // And, once the account has a callback, plainly again
    let mut policy = account.policy.clone();
    policy.callback = Some(target);
    f.store.set_policy(&account, &policy).await.expect("policy");
    let account = Account { policy, ..account };
    let by_account = send(&deps, &account, sms(&phone(), vec![])).await.expect("send");
    // Then only the first is unwatched: nobody is told of it, so it is never swept
    let watched = |sid: String| {
        let (store, acct) = (f.store.clone(), account.sid.clone());
        async move { store.get_otp(&acct, &sid).await.unwrap().expect("the OTP").watched }
    };
    assert!(!watched(plain).await);
    assert!(watched(called).await);
    assert!(watched(by_account).await);
}

async fn superseded_otp_refuses_verify_from_its_cancel_time(f: Fixture) {
    // Given an OTP superseded with a guard time ending at T0 + 10 s
    let acct = account_sid();
    let to = phone();
    let old = otp(&acct, &to, T0);
    f.store.commit_send(&plan(old.clone(), None, None, vec![])).await.unwrap();
    let s = Superseded { sid: old.sid.clone(), cancel_at_ms: T0 + 10_000 };
    f.store.commit_send(&plan(otp(&acct, &to, T0 + 1), Some(&old.sid), Some(s), vec![])).await.unwrap();
    // When its code is presented after the guard time
    let w = f
        .store
        .verify_code(&acct, &old.sid, std::slice::from_ref(&old.code_hash), &check(true, T0 + 10_000), T0 + 10_000)
        .await
        .unwrap();
    // Then it is refused as canceled
    assert_eq!(refused(w).map(|o| o.status_at(T0 + 10_000)), Some(OtpStatus::Canceled));
    // And inside the guard time it still verifies
    let w = f
        .store
        .verify_code(&acct, &old.sid, std::slice::from_ref(&old.code_hash), &check(true, T0 + 9_999), T0 + 9_999)
        .await
        .unwrap();
    assert!(verified(w));
}

async fn undo_send_leaves_no_otp_and_puts_pointer_counters_and_usage_back(f: Fixture) {
    // Given a first send (pointer, counter opened, usage 1)
    let acct = account_sid();
    let to = phone();
    let first = otp(&acct, &to, T0);
    let key = default_counter(&first);
    f.store.commit_send(&plan(first.clone(), None, None, vec![open(&key, T0, 60)])).await.unwrap();
    // And a second send that supersedes it and counts in the same window
    let second = otp(&acct, &to, T0 + 1_000);
    let s = Superseded { sid: first.sid.clone(), cancel_at_ms: T0 + 1_000 };
    let inc = CounterOp::Increment { key: key.clone(), window_end_ms: T0 + 60_000, max: 5 };
    let p = plan(second.clone(), Some(&first.sid), Some(s), vec![inc]);
    f.store.commit_send(&p).await.unwrap();
    assert_eq!(f.store.get_counters(std::slice::from_ref(&key)).await.unwrap()[0].unwrap().count, 2);
    // When the second send is undone (its dispatch failed)
    f.store.undo_send(&p).await.expect("undo");
    // Then its OTP is gone, the pointer and the first OTP are as before, the counter is back
    assert_eq!(f.store.get_otp(&acct, &second.sid).await.unwrap(), None);
    let d = f.store.get_destination(&acct, "2FA", &to).await.unwrap().unwrap();
    assert_eq!((d.current.as_str(), d.previous), (first.sid.as_str(), None));
    assert_eq!(f.store.get_otp(&acct, &first.sid).await.unwrap(), Some(first.clone()));
    assert_eq!(
        f.store.get_counters(std::slice::from_ref(&key)).await.unwrap(),
        vec![Some(Counter { count: 1, window_end_ms: T0 + 60_000 })]
    );
    // And usage is back to the first send only
    for k in usage_keys(&acct, T0) {
        assert_eq!(f.usage(&k).await, 1, "{k:?}");
    }
    // And undoing the first send as well leaves no pointer and a zero count
    f.store.undo_send(&plan(first.clone(), None, None, vec![open(&key, T0, 60)])).await.expect("undo");
    assert_eq!(f.store.get_otp(&acct, &first.sid).await.unwrap(), None);
    assert_eq!(f.store.get_destination(&acct, "2FA", &to).await.unwrap(), None);
    assert_eq!(f.store.get_counters(&[key]).await.unwrap()[0].map(|c| c.count), Some(0));
}

/// A first send to a new number under the default limit, committed at `T0`: (account,
/// number, its OTP, the default limit's counter, its plan).
async fn first_default_send(f: &Fixture) -> (String, String, Otp, CounterKey, SendPlan) {
    let acct = account_sid();
    let to = phone();
    let first = otp(&acct, &to, T0);
    let key = default_counter(&first);
    let first_plan = plan(first.clone(), None, None, vec![open(&key, T0, 60)]);
    f.store.commit_send(&first_plan).await.unwrap();
    (acct, to, first, key, first_plan)
}

async fn undo_of_an_older_send_leaves_the_newer_pointer_alone(f: Fixture) {
    // Given two sends to one number, the second superseding the first in a new window
    let (acct, to, first, key, first_plan) = first_default_send(&f).await;
    let second = otp(&acct, &to, T0 + 60_000);
    let s = Superseded { sid: first.sid.clone(), cancel_at_ms: T0 + 60_000 };
    f.store
        .commit_send(&plan(second.clone(), Some(&first.sid), Some(s), vec![open(&key, T0 + 60_000, 60)]))
        .await
        .unwrap();
    // When the first send is undone late
    f.store.undo_send(&first_plan).await.expect("undo");
    // Then only what is still the first send's is undone: its OTP goes, the newer pointer and
    // the newer window stay
    assert_eq!(f.store.get_otp(&acct, &first.sid).await.unwrap(), None);
    assert_eq!(f.store.get_destination(&acct, "2FA", &to).await.unwrap().unwrap().current, second.sid);
    assert_eq!(
        f.store.get_counters(&[key]).await.unwrap(),
        vec![Some(Counter { count: 1, window_end_ms: T0 + 120_000 })]
    );
}

async fn undo_takes_back_its_default_count_after_a_send_with_limits_moved_the_pointer(f: Fixture) {
    // Given a send under the default limit, then one with its own limits (no default count)
    // that supersedes it
    let (acct, to, first, key, first_plan) = first_default_send(&f).await;
    let second = otp(&acct, &to, T0 + 1_000);
    let s = Superseded { sid: first.sid.clone(), cancel_at_ms: T0 + 1_000 };
    f.store.commit_send(&plan(second.clone(), Some(&first.sid), Some(s), vec![])).await.unwrap();
    // When the first send is undone
    f.store.undo_send(&first_plan).await.expect("undo");
    // Then the pointer stays the newer send's, and the first send's default count is taken back
    assert_eq!(f.store.get_otp(&acct, &first.sid).await.unwrap(), None);
    assert_eq!(f.store.get_destination(&acct, "2FA", &to).await.unwrap().unwrap().current, second.sid);
    assert_eq!(f.store.get_counters(&[key]).await.unwrap()[0].map(|c| c.count), Some(0));
}

async fn undo_takes_back_its_pointer_when_another_service_opened_the_next_window(f: Fixture) {
    // Given a send of service 2FA, then, once its window ended, one of service Login to the
    // same number (the default limit counts per destination, whatever the service)
    let (acct, to, _first, key, first_plan) = first_default_send(&f).await;
    let mut login = otp(&acct, &to, T0 + 60_000);
    login.service = "Login".into();
    f.store.commit_send(&plan(login.clone(), None, None, vec![open(&key, T0 + 60_000, 60)])).await.unwrap();
    // When the first send is undone late
    f.store.undo_send(&first_plan).await.expect("undo");
    // Then its own pointer goes, the other service's pointer and the newer window stay
    assert_eq!(f.store.get_destination(&acct, "2FA", &to).await.unwrap(), None);
    assert_eq!(f.store.get_destination(&acct, "Login", &to).await.unwrap().unwrap().current, login.sid);
    assert_eq!(
        f.store.get_counters(&[key]).await.unwrap(),
        vec![Some(Counter { count: 1, window_end_ms: T0 + 120_000 })]
    );
}

async fn update_event_replaces_one_event_in_place(f: Fixture) {
    // Given an OTP with its queued event
    let acct = account_sid();
    let o = otp(&acct, &phone(), T0);
    f.store.commit_send(&plan(o.clone(), None, None, vec![])).await.unwrap();
    // When the provider's answer is recorded
    let sent = ChannelEvent { status: ChannelStatus::Sent, target_sid: Some("SM1".into()), ..o.events[0].clone() };
    f.store.update_event(&o, 0, &sent, Lookup::Deployment).await.expect("update");
    // Then the event is replaced and nothing else changed
    assert_eq!(f.store.get_otp(&acct, &o.sid).await.unwrap(), Some(Otp { events: vec![sent.clone()], ..o.clone() }));
    // And an event that does not exist, or an unknown OTP, is contended
    assert_eq!(f.store.update_event(&o, 1, &sent, Lookup::Deployment).await, Err(Error::Contended));
    let unknown = Otp { sid: ids::new_sid(ids::OTP), ..o.clone() };
    assert_eq!(f.store.update_event(&unknown, 0, &sent, Lookup::Deployment).await, Err(Error::Contended));
    assert_eq!(f.store.get_otp(&acct, &o.sid).await.unwrap().unwrap().events.len(), 1);
}

async fn usage_counts_every_committed_send(f: Fixture) {
    // Given four committed sends, and one refused (the last one again)
    let acct = account_sid();
    let plans: Vec<_> = (0..4).map(|i| plan(otp(&acct, &phone(), T0 + i), None, None, vec![])).collect();
    for p in &plans {
        f.store.commit_send(p).await.unwrap();
    }
    assert_eq!(f.store.commit_send(&plans[3]).await, Err(Error::Contended));
    // Then usage counts the four committed ones, per category, and nothing for another day
    for k in usage_keys(&acct, T0) {
        assert_eq!(f.usage(&k).await, 4, "{k:?}");
    }
    let other_day = UsageKey { day: "2001-01-01".into(), ..usage_keys(&acct, T0)[0].clone() };
    assert_eq!(f.usage(&other_day).await, 0);
}

async fn an_otp_from_before_sharding_still_verifies_cancels_and_shows_in_search(f: Fixture) {
    use twofa::{
        domain::records::{OtpQuery, SearchFilter, Start},
        ports::RecordStore,
    };
    // Given two OTPs whose sids have the form minted before OTPs were sharded (no mark: on
    // DynamoDB they are in the account's old partition, where the previous version put them)
    let acct = account_sid();
    let old_form = |n: u8| format!("{}{:012x}{}", ids::OTP, T0, format!("{n:02x}").repeat(10));
    let [a, b] = [1, 2].map(|n| {
        let mut o = otp(&acct, &phone(), T0);
        o.sid = old_form(n);
        o.events = vec![event(&o.sid, T0)];
        o
    });
    assert_eq!(ids::otp_shard(&a.sid), None, "the old form names no shard");
    for o in [&a, &b] {
        f.store.commit_send(&plan(o.clone(), None, None, vec![])).await.unwrap();
    }
    // (on DynamoDB, in the one partition the previous version wrote every OTP of an account to)
    if let Some(d) = &f.dynamo {
        use aws_sdk_dynamodb::types::AttributeValue::S;
        let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
        let got =
            client.get_item().table_name(d.table()).key("pk", S(format!("OTP#{acct}"))).key("sk", S(a.sid.clone()));
        assert!(got.send().await.unwrap().item.is_some(), "in OTP#{{account}}");
    }
    // When one is verified with its code and the other canceled
    let c = check(false, T0 + 1);
    assert!(verified(
        f.store.verify_code(&acct, &a.sid, std::slice::from_ref(&a.code_hash), &c, T0 + 1).await.unwrap()
    ));
    assert!(matches!(f.store.cancel_otp(&acct, &b.sid, T0 + 2).await.unwrap(), CancelWrite::Canceled));
    // Then both read back changed, and a search lists them beside a fresh one, newest first
    assert_eq!(f.store.get_otp(&acct, &a.sid).await.unwrap().unwrap().status, OtpStatus::Success);
    assert_eq!(f.store.get_otp(&acct, &b.sid).await.unwrap().unwrap().status, OtpStatus::Canceled);
    let fresh = otp(&acct, &phone(), T0 + 5);
    f.store.commit_send(&plan(fresh.clone(), None, None, vec![])).await.unwrap();
    let filter = SearchFilter::default();
    let q = OtpQuery { filter: &filter, now: T0 + 6, start: &Start::Newest, limit: 10 };
    let found: Vec<String> =
        RecordStore::search_otps(f.store.as_ref(), &acct, &q).await.unwrap().into_iter().map(|o| o.sid).collect();
    assert_eq!(found, [fresh.sid, b.sid, a.sid]);
}

async fn a_count_reads_at_most_its_bound_and_says_whether_it_read_everything(f: Fixture) {
    use twofa::{
        domain::records::SearchFilter,
        ports::{Counted, RecordStore},
    };
    // Given 12 OTPs, one a millisecond, every third of service "Bank"
    let acct = account_sid();
    for i in 0..12 {
        let mut o = otp(&acct, &phone(), T0 + i);
        if i % 3 == 0 {
            o.service = "Bank".into();
        }
        f.store.commit_send(&plan(o, None, None, vec![])).await.unwrap();
    }
    let to_one = SearchFilter { service: Some("Bank".into()), ..Default::default() };
    let count = |filter: SearchFilter, reads: u64| {
        let store = f.store.clone();
        let acct = acct.clone();
        async move { RecordStore::count_otps(store.as_ref(), &acct, &filter, T0 + 20, reads).await.unwrap() }
    };
    // When they are counted with room to read them all, then the count is exact
    assert_eq!(count(SearchFilter::default(), 100).await, Counted { matched: 12, complete: true });
    assert_eq!(count(to_one.clone(), 13).await, Counted { matched: 4, complete: true });
    // When the bound is reached, then it says so, and counts no more than there are (the
    // embedded store counts the newest; DynamoDB's shards each read their share)
    // (a DynamoDB round reads at least one item of every partition with more, so it may pass
    // its bound and count everything: then it says it did, and is exact)
    for (reads, why) in [(5, "below"), (12, "exactly the bound")] {
        let Counted { matched, complete } = count(to_one.clone(), reads).await;
        assert!(if complete { matched == 4 } else { matched <= 4 }, "{why}: {matched} {complete}");
        assert!(!complete || f.dynamo.is_some(), "{why}: the embedded store reads exactly its bound");
    }
    if f.dynamo.is_none() {
        // (the newest 5 are T0+7..T0+11: the Bank one is T0+9)
        assert_eq!(count(to_one.clone(), 5).await, Counted { matched: 1, complete: false });
    }
    // And a time range bounds what is read: T0..=T0+3 holds 4, two of them Bank's
    let early = SearchFilter { start_ms: Some(T0), end_ms: Some(T0 + 3), ..to_one };
    assert_eq!(count(early, 5).await, Counted { matched: 2, complete: true });
}

async fn snapshot_reads_pointer_limits_and_counters_in_the_order_asked(f: Fixture) {
    // Given a pointer, two limits and a counter
    let acct = account_sid();
    let o = otp(&acct, &phone(), T0);
    let key = default_counter(&o);
    let p = plan(o.clone(), None, None, vec![open(&key, T0, 60)]);
    f.store.commit_send(&p).await.unwrap();
    let a = limit(&acct, "a", &[("b", 1, 60)], T0);
    let b = limit(&acct, "b", &[("b", 1, 60)], T0);
    f.store.create_limit(&a).await.unwrap();
    f.store.create_limit(&b).await.unwrap();
    // When a send reads them, with an unknown name and an unknown counter in between
    let names = ["b", "nope", "a", "b"].map(String::from);
    let missing = CounterKey { limit: DEFAULT_LIMIT.into(), ..CounterKey::default_for(&acct, "+10000000") };
    let snap =
        f.store.send_snapshot(&acct, "2FA", &o.delivery.to, &names, &[missing, key.clone()], None).await.unwrap();
    // Then everything comes back in the order asked
    assert_eq!(snap.destination, Some(p.destination));
    assert_eq!(snap.limits, vec![Some(b.clone()), None, Some(a), Some(b)]);
    assert_eq!(snap.counters, vec![None, Some(Counter { count: 1, window_end_ms: T0 + 60_000 })]);
    // And another service or account sees no pointer
    let other = f.store.send_snapshot(&acct, "other", &o.delivery.to, &[], &[], None).await.unwrap();
    assert_eq!(other.destination, None);
}

// --- idempotency keys ------------------------------------------------------------------------

async fn snapshot_returns_the_idempotency_record_of_the_account_and_key(f: Fixture) {
    // Given a send committed with idempotency key "order#42%" (characters that keys escape)
    let acct = account_sid();
    let o = otp(&acct, &phone(), T0);
    let p = keyed(o.clone(), "order#42%");
    f.store.commit_send(&p).await.unwrap();
    let snap = |acct: String, key: Option<&'static str>| {
        let (store, to) = (f.store.clone(), o.delivery.to.clone());
        async move { store.send_snapshot(&acct, "2FA", &to, &[], &[], key).await.unwrap() }
    };
    // When a send reads the key
    let found = snap(acct.clone(), Some("order#42%")).await;
    // Then the record comes back whole, with the pointer
    assert_eq!(found.idempotency, p.idempotency);
    assert_eq!(found.destination, Some(p.destination.clone()));
    // And another key, no key, or the same key from another account reads none
    assert_eq!(snap(acct.clone(), Some("order#42")).await.idempotency, None);
    assert_eq!(snap(acct, None).await.idempotency, None);
    assert_eq!(snap(account_sid(), Some("order#42%")).await.idempotency, None);
}

async fn second_plan_with_a_recorded_idempotency_key_is_contended_until_the_window_ends(f: Fixture) {
    // Given a send committed with key "k1"
    let acct = account_sid();
    let first = otp(&acct, &phone(), T0);
    f.store.commit_send(&keyed(first.clone(), "k1")).await.unwrap();
    // When another send (another number, nothing else in common) plans with the same key
    let second = otp(&acct, &phone(), T0 + 1);
    let result = f.store.commit_send(&keyed(second.clone(), "k1")).await;
    // Then it is contended, none of its writes happened and the record is the first's
    assert_eq!(result, Err(Error::Contended));
    assert_eq!(f.store.get_otp(&acct, &second.sid).await.unwrap(), None);
    assert_eq!(f.store.get_destination(&acct, "2FA", &second.delivery.to).await.unwrap(), None);
    let read = |acct: String, key: &'static str| {
        let store = f.store.clone();
        async move { store.send_snapshot(&acct, "2FA", "+1", &[], &[], Some(key)).await.unwrap().idempotency }
    };
    assert_eq!(read(acct.clone(), "k1").await.map(|r| r.otp_sid), Some(first.sid.clone()));
    // And another account may use the key
    let stranger = otp(&account_sid(), &phone(), T0 + 1);
    f.store.commit_send(&keyed(stranger, "k1")).await.expect("another account's key");
    // And once the window is over (the record may still be stored) the key takes a new send
    let late = otp(&acct, &phone(), T0 + WINDOW_MS - 1);
    assert_eq!(f.store.commit_send(&keyed(late, "k1")).await, Err(Error::Contended));
    let next_day = otp(&acct, &phone(), T0 + WINDOW_MS);
    f.store.commit_send(&keyed(next_day.clone(), "k1")).await.expect("the key after 24 h");
    assert_eq!(read(acct, "k1").await.map(|r| r.otp_sid), Some(next_day.sid));
}

async fn undo_send_removes_its_idempotency_record_and_only_its_own(f: Fixture) {
    // Given a send committed with key "k1"
    let acct = account_sid();
    let first = keyed(otp(&acct, &phone(), T0), "k1");
    f.store.commit_send(&first).await.unwrap();
    // When it is undone (its dispatch failed)
    f.store.undo_send(&first).await.expect("undo");
    // Then the record is gone and the key takes another send at once
    let read = || {
        let (store, acct) = (f.store.clone(), acct.clone());
        async move { store.send_snapshot(&acct, "2FA", "+1", &[], &[], Some("k1")).await.unwrap().idempotency }
    };
    assert_eq!(read().await, None);
    let retry = keyed(otp(&acct, &phone(), T0 + 1), "k1");
    f.store.commit_send(&retry).await.expect("the key again");
    // And undoing the first send again, late, finds nothing of it and leaves the retry's record
    assert_eq!(f.store.undo_send(&first).await, Err(Error::NotFound));
    assert_eq!(read().await, retry.idempotency);
}

async fn concurrent_sends_with_one_idempotency_key_send_once_and_answer_alike(f: Fixture) {
    // Given the same send, with one idempotency key, 20 times at once through the domain
    let (deps, outbox) = deps(f.store.clone());
    let account = new_account(&deps).await;
    let to = phone();
    let req = SendRequest { idempotency_key: Some("signup-7".into()), ..sms(&to, vec![]) };
    let results = join_all((0..20).map(|_| {
        let (deps, account, req) = (deps.clone(), account.clone(), req.clone());
        async move { send(&deps, &account, req).await }
    }))
    .await;
    // Then every one answers the same OTP sid (none is limited), and one message went out
    let sids: Vec<_> = results.iter().map(|r| r.clone().expect("every send answers")).collect();
    assert!(sids.iter().all(|s| *s == sids[0]), "{sids:?}");
    assert_eq!(outbox.messages(Some(&to)).len(), 1);
    // And usage counts one send: the repeats touched nothing
    let created = f.store.get_otp(&account.sid, &sids[0]).await.unwrap().expect("the OTP").created_ms;
    assert_eq!(f.usage(&usage_keys(&account.sid, created)[0]).await, 1);
    // And the same key with another body is refused, naming the header
    let other = SendRequest { delivery: Delivery { body: "Other {code}".into(), ..req.delivery.clone() }, ..req };
    assert_eq!(
        send(&deps, &account, other).await,
        Err(Error::invalid("Idempotency-Key", "already used for a different request"))
    );
}

// --- limits ----------------------------------------------------------------------------------

async fn limits_create_get_update_list_delete(f: Fixture) {
    let acct = account_sid();
    // Given a created limit
    let def = limit(&acct, "per_phone", &[("minute", 1, 60), ("hour", 5, 3600)], T0);
    f.store.create_limit(&def).await.expect("create");
    // Then it reads back by sid and in the list
    assert_eq!(f.store.get_limit(&acct, &def.sid).await.unwrap(), Some(def.clone()));
    assert_eq!(f.store.list_limits(&acct).await.unwrap(), vec![def.clone()]);
    // When its buckets are updated
    let updated = LimitDef {
        buckets: vec![Bucket { name: "day".into(), max: 10, interval_secs: 86_400 }],
        description: None,
        updated_ms: T0 + 5,
        ..def.clone()
    };
    f.store.update_limit(&updated).await.expect("update");
    // Then every read sees the new buckets, by sid, by name (what a send reads) and in the list
    assert_eq!(f.store.get_limit(&acct, &def.sid).await.unwrap(), Some(updated.clone()));
    let snap = f.store.send_snapshot(&acct, "2FA", "+1", &["per_phone".into()], &[], None).await.unwrap();
    assert_eq!(snap.limits, vec![Some(updated.clone())]);
    assert_eq!(f.store.list_limits(&acct).await.unwrap(), vec![updated.clone()]);
    // When it is deleted
    assert_eq!(f.store.delete_limit(&acct, &def.sid).await.unwrap(), Some(updated.clone()));
    // Then it is gone everywhere, updating it is 493 and deleting it again answers nothing
    assert_eq!(f.store.get_limit(&acct, &def.sid).await.unwrap(), None);
    assert_eq!(f.store.list_limits(&acct).await.unwrap(), vec![]);
    let snap = f.store.send_snapshot(&acct, "2FA", "+1", &["per_phone".into()], &[], None).await.unwrap();
    assert_eq!(snap.limits, vec![None]);
    assert_eq!(f.store.update_limit(&updated).await, Err(Error::LimitNotFound));
    assert_eq!(f.store.delete_limit(&acct, &def.sid).await.unwrap(), None);
    // And the name is free again
    f.store.create_limit(&limit(&acct, "per_phone", &[("m", 1, 60)], T0 + 9)).await.expect("name reused");
}

async fn limit_name_clash_in_one_account_is_492(f: Fixture) {
    // Given a limit named per_ip
    let acct = account_sid();
    let first = limit(&acct, "per_ip", &[("m", 1, 60)], T0);
    f.store.create_limit(&first).await.unwrap();
    // When another limit of the same account takes the name
    let clash = f.store.create_limit(&limit(&acct, "per_ip", &[("h", 9, 3600)], T0 + 1)).await;
    // Then it is refused and the first one is untouched
    assert_eq!(clash, Err(Error::LimitNameExists));
    assert_eq!(f.store.list_limits(&acct).await.unwrap(), vec![first]);
    // And another account may use the name
    f.store.create_limit(&limit(&account_sid(), "per_ip", &[("m", 1, 60)], T0)).await.expect("other account");
}

async fn limits_of_another_account_are_not_found(f: Fixture) {
    // Given a limit of one account
    let (acct, other) = (account_sid(), account_sid());
    let def = limit(&acct, "per_ip", &[("m", 1, 60)], T0);
    f.store.create_limit(&def).await.unwrap();
    // Then another account cannot read, list, update, delete or send with it
    assert_eq!(f.store.get_limit(&other, &def.sid).await.unwrap(), None);
    assert_eq!(f.store.list_limits(&other).await.unwrap(), vec![]);
    let foreign = LimitDef { account_sid: other.clone(), ..def.clone() };
    assert_eq!(f.store.update_limit(&foreign).await, Err(Error::LimitNotFound));
    assert_eq!(f.store.delete_limit(&other, &def.sid).await.unwrap(), None);
    let snap = f.store.send_snapshot(&other, "2FA", "+1", &["per_ip".into()], &[], None).await.unwrap();
    assert_eq!(snap.limits, vec![None]);
    // And the owner still has it
    assert_eq!(f.store.get_limit(&acct, &def.sid).await.unwrap(), Some(def));
}

async fn limits_list_by_creation_then_sid(f: Fixture) {
    // Given limits created out of order, two at the same instant
    let acct = account_sid();
    let late = limit(&acct, "late", &[("m", 1, 60)], T0 + 10);
    let mut tie_a = limit(&acct, "tie_a", &[("m", 1, 60)], T0);
    let mut tie_b = limit(&acct, "tie_b", &[("m", 1, 60)], T0);
    tie_a.sid = format!("{}0", &tie_a.sid[..tie_a.sid.len() - 1]);
    tie_b.sid = format!("{}1", &tie_a.sid[..tie_a.sid.len() - 1]);
    for d in [&late, &tie_b, &tie_a] {
        f.store.create_limit(d).await.unwrap();
    }
    // Then the list is by creation time, then sid
    assert_eq!(f.store.list_limits(&acct).await.unwrap(), vec![tie_a, tie_b, late]);
}

// --- accounts --------------------------------------------------------------------------------

async fn accounts_are_create_only(f: Fixture) {
    // Given an account with every field set
    let keys = Keys::random();
    let mut account = Account::new(account_sid(), "token", &keys, None, T0);
    account.email = Some("ops@example.com".into());
    account.allowed_ips = vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    account.suspended = true;
    f.store.put_account(&account).await.expect("create");
    // Then it reads back
    assert_eq!(f.store.get_account(&account.sid).await.unwrap(), Some(account.clone()));
    // And its sid cannot be taken again
    let again = Account::new(account.sid.clone(), "other", &keys, None, T0 + 1);
    assert_eq!(f.store.put_account(&again).await, Err(Error::Contended));
    assert_eq!(f.store.get_account(&account.sid).await.unwrap(), Some(account));
    assert_eq!(f.store.get_account(&account_sid()).await.unwrap(), None);
}

async fn sub_accounts_list_direct_and_deeper_ones(f: Fixture) {
    // Given a root with a child and a grandchild, and an unrelated account
    let keys = Keys::random();
    let root = Account::new(account_sid(), "t", &keys, None, T0);
    let child = Account::new(account_sid(), "t", &keys, Some(&root), T0);
    let grandchild = Account::new(account_sid(), "t", &keys, Some(&child), T0);
    let stranger = Account::new(account_sid(), "t", &keys, None, T0);
    for a in [&root, &child, &grandchild, &stranger] {
        f.store.put_account(a).await.unwrap();
    }
    // Then the root lists both, the child lists the grandchild, the grandchild none
    let sids = |v: Vec<Account>| {
        let mut s: Vec<String> = v.into_iter().map(|a| a.sid).collect();
        s.sort();
        s
    };
    let mut both = vec![child.sid.clone(), grandchild.sid.clone()];
    both.sort();
    assert_eq!(sids(f.store.list_sub_accounts(&root.sid).await.unwrap()), both);
    assert_eq!(f.store.list_sub_accounts(&child.sid).await.unwrap(), vec![grandchild.clone()]);
    assert_eq!(f.store.list_sub_accounts(&grandchild.sid).await.unwrap(), vec![]);
    assert_eq!(f.store.get_account(&grandchild.sid).await.unwrap(), Some(grandchild.clone()));
    // And a sub-account sid cannot be taken again either
    assert_eq!(f.store.put_account(&grandchild).await, Err(Error::Contended));
}

// --- DynamoDB only: round trips and TTL ----------------------------------------------------------

mod dynamodb_costs {
    use twofa::ports::{LimitStore, OtpStore, RecordStore};

    use super::*;

    async fn measured<T>(store: &DynamoStore, f: impl std::future::Future<Output = T>) -> (T, CallCounts) {
        let before = store.calls();
        let out = f.await;
        (out, store.calls() - before)
    }

    fn counts(c: CallCounts) -> (u64, u64, u64) {
        (c.reads(), c.transact_write_items, c.writes())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_workflow_send_and_each_later_step_cost_their_budget_of_round_trips() {
        // Given the domain on a DynamoDB store and a workflow sms now, sms after 30 s
        let store = Arc::new(dynamo_store().await);
        let f = Fixture { store: store.clone(), expiry: store.clone(), dynamo: Some(store.clone()) };
        // When it is sent: the workflow's one GetItem, then what any send costs
        let before = store.calls();
        let (deps, outbox, scheduler, _account, to, _sid) = sent_with_workflow(&f).await;
        let c = store.calls() - before;
        println!("workflow create + send: {c:?}");
        // (the workflow's create is one TransactWriteItems, the account's put one PutItem; the
        // guarded send's window is a second BatchGetItem, at the same time as the snapshot's)
        assert_eq!((c.get_item, c.batch_get_item, c.transact_write_items, c.update_item), (1, 2, 2, 1), "{c:?}");
        // When its second step runs: read the OTP and, at the same time, its account (the
        // routing table; cached 30 s by a warm function), claim the step (event + usage in one
        // transaction), note the provider's answer (the event, and the dispatch's lookup item
        // for receipts, written at once)
        let run = scheduler.0.lock().unwrap()[0].clone();
        let (next, c) = measured(&store, run_step(&deps, &run)).await;
        assert!(!next.unwrap().more);
        println!("workflow step: {c:?}");
        assert_eq!(
            (c.get_item, c.transact_write_items, c.update_item, c.put_item, c.reads(), c.writes()),
            (2, 1, 1, 1, 2, 3)
        );
        // And a step run again costs its one read (the account is cached now) and sends nothing
        let (_, c) = measured(&store, run_step(&deps, &run)).await;
        assert_eq!((c.reads(), c.writes()), (1, 0));
        assert_eq!(outbox.messages(Some(&to)).len(), 2);
        drop_table(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_operation_costs_its_budget_of_round_trips() {
        // Given the domain on a DynamoDB store and two limits of two buckets each
        let store = Arc::new(dynamo_store().await);
        let (deps, outbox) = deps(store.clone());
        let account = new_account(&deps).await;
        let now = deps.clock.now_ms();
        for name in ["per_ip", "per_phone"] {
            let def = limit(&account.sid, name, &[("minute", 5, 60), ("hour", 50, 3600)], now);
            store.create_limit(&def).await.unwrap();
        }

        // Send with the default limit: one BatchGetItem (and, the process's first guarded send,
        // the pumping guard's window in a second one at the same time: one round trip), one
        // TransactWriteItems, then once the channel answered the event update and the
        // dispatch's lookup item, at once
        let to = phone();
        let (sid, c) = measured(&store, send(&deps, &account, sms(&to, vec![]))).await;
        let sid = sid.expect("send");
        println!("send (default limit): {c:?}");
        assert_eq!((c.batch_get_item, c.transact_write_items, c.update_item, c.put_item), (2, 1, 1, 1));
        assert_eq!(counts(c), (2, 1, 3));

        // Send with 2 limits x 2 buckets: the snapshot, the 4 counters in one more batch, and
        // still one transaction for all the writes (the guard's window is this process's copy)
        let limits = vec![("per_ip".into(), "10.0.0.1".into()), ("per_phone".into(), "+14155550100".into())];
        let (r, c) = measured(&store, send(&deps, &account, sms(&phone(), limits))).await;
        r.expect("send with limits");
        println!("send (2 limits x 2 buckets): {c:?}");
        assert_eq!((c.batch_get_item, c.transact_write_items, c.update_item, c.put_item), (2, 1, 1, 1));
        assert_eq!(counts(c), (2, 1, 3));

        // Verify with a wrong code: one conditional write compares and counts it, one more
        // counts it in the destination's failure streak
        let code = code_sent_to(&outbox, &to);
        let wrong = if code == "000000" { "111111" } else { "000000" };
        let (r, c) = measured(&store, verify(&deps, &account, VerifyTarget::RequestId(sid.clone()), wrong)).await;
        assert_eq!(r.unwrap_err().error, Error::InvalidCode);
        println!("verify (wrong code): {c:?}");
        assert_eq!((c.reads(), c.transact_write_items, c.update_item, c.writes()), (0, 0, 2, 2));

        // Verify with the right code: the wrong-code count, refused (the code is right), then
        // one conditional write of the OTP (the guard counts it off the stream: no
        // transaction), then the destination's failure streak cleared, since this OTP took a
        // wrong code
        let (r, c) = measured(&store, verify(&deps, &account, VerifyTarget::RequestId(sid.clone()), &code)).await;
        r.expect("verify");
        println!("verify (right code): {c:?}");
        assert_eq!((c.reads(), c.update_item, c.transact_write_items, c.writes()), (0, 3, 0, 3));

        // Cancel: one conditional write
        let to2 = phone();
        let sid2 = send(&deps, &account, sms(&to2, vec![])).await.unwrap();
        let (r, c) = measured(&store, twofa::domain::verify::cancel(&deps, &account, &sid2)).await;
        r.expect("cancel");
        println!("cancel: {c:?}");
        assert_eq!((c.reads(), c.update_item, c.writes()), (0, 1, 1));

        // Send with an Idempotency-Key: the record rides in the same transaction, so it costs
        // what a send without one costs
        let keyed = SendRequest { idempotency_key: Some("k-1".into()), ..sms(&phone(), vec![]) };
        let (first, c) = measured(&store, send(&deps, &account, keyed.clone())).await;
        println!("send (Idempotency-Key, first): {c:?}");
        assert_eq!((c.batch_get_item, c.transact_write_items, c.update_item, c.put_item), (1, 1, 1, 1));
        assert_eq!(counts(c), (1, 1, 3));

        // Its repeat: the snapshot alone answers it, nothing is written
        let (again, c) = measured(&store, send(&deps, &account, keyed)).await;
        println!("send (Idempotency-Key, repeat): {c:?}");
        assert_eq!(again.expect("repeat"), first.expect("first"));
        assert_eq!(counts(c), (1, 0, 0));
        assert_eq!(c.batch_get_item, 1);

        // A search page: one round of Queries, one of each of the account's OTP shards and
        // one of its partition from before sharding, newest first, no index and no second read
        use twofa::domain::records::{OtpQuery, SearchFilter, Start};
        let filter = SearchFilter::default();
        let q = OtpQuery { filter: &filter, now: deps.clock.now_ms(), start: &Start::Newest, limit: 3 };
        let (page, c) = measured(&store, store.search_otps(&account.sid, &q)).await;
        let page = page.expect("search");
        println!("search (a page of 3): {c:?}");
        let parts = store.otp_shards() as u64 + 1;
        assert_eq!((c.query, c.search_rounds, c.batch_get_item, c.writes()), (parts, 1, 0, 0));
        assert_eq!(page.len(), 3);
        assert!(page.windows(2).all(|w| (w[0].created_ms, &w[0].sid) >= (w[1].created_ms, &w[1].sid)), "newest first");
        assert!(page.iter().all(|o| !o.events.is_empty()), "whole OTPs");
        drop_table(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_dynamodb_is_unavailable_and_a_missing_table_is_internal() {
        let sdk = aws_config().await;
        let acct = account_sid();
        let o = otp(&acct, &phone(), T0);
        // Given a store whose endpoint refuses connections
        let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_url("http://127.0.0.1:9")
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .build();
        let down = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(conf), "any");
        // Then reads and writes answer Unavailable (503), not Internal
        assert_eq!(down.get_otp(&acct, &o.sid).await, Err(Error::Unavailable));
        let p = plan(o.clone(), None, None, vec![]);
        assert_eq!(down.commit_send(&p).await, Err(Error::Unavailable));
        // Given a store on a table that does not exist
        let missing = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), format!("missing-{}", ids::new_sid("")));
        // Then that is a configuration bug: Internal
        assert_eq!(missing.get_otp(&acct, &o.sid).await, Err(Error::Internal));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn items_carry_their_ttl_and_the_table_has_ttl_on() {
        // Given a committed send on a fresh table
        let store = dynamo_store().await;
        let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
        let acct = account_sid();
        let o = otp(&acct, &phone(), T0);
        let key = default_counter(&o);
        store.commit_send(&plan(o.clone(), None, None, vec![open(&key, T0, 60)])).await.unwrap();
        // Then TTL is enabled on `ttl`
        let ttl = client.describe_time_to_live().table_name(store.table()).send().await.unwrap();
        let d = ttl.time_to_live_description().expect("ttl description");
        assert_eq!(d.attribute_name(), Some("ttl"));
        // And the OTP expires 90 days after creation, its pointer a day after the OTP, the
        // counter a minute after its window
        let ttl_of = |pk: String, sk: &str| {
            let client = client.clone();
            let table = store.table().to_owned();
            let sk = sk.to_owned();
            async move {
                use aws_sdk_dynamodb::types::AttributeValue::S;
                let out = client.get_item().table_name(table).key("pk", S(pk)).key("sk", S(sk)).send().await.unwrap();
                out.item.expect("item")["ttl"].as_n().unwrap().parse::<i64>().unwrap()
            }
        };
        let secs = T0 / 1000;
        let shard = ids::otp_shard(&o.sid).expect("a fresh sid names its shard");
        assert_eq!(ttl_of(format!("OTP#{acct}#{shard:02x}"), &o.sid).await, secs + 90 * 86_400);
        // (the default limit's counter is in the pointer's item, which outlives its window)
        assert_eq!(ttl_of(format!("DEST#{acct}#{}", o.delivery.to), "D").await, secs + 300 + 86_400);
        // And that one item is the send's pointer and its default count: no counter item of its own
        use aws_sdk_dynamodb::types::AttributeValue::S;
        let get = |pk: String, sk: &str| {
            client.get_item().table_name(store.table()).key("pk", S(pk)).key("sk", S(sk.into())).send()
        };
        let dest = get(format!("DEST#{acct}#{}", o.delivery.to), "D").await.unwrap().item.expect("destination");
        assert_eq!(dest["count"].as_n().unwrap(), "1");
        assert!(dest["svc:2FA"].as_m().is_ok_and(|m| m["current"].as_s().unwrap() == &o.sid));
        let ctr = format!("CTR#{acct}#{DEFAULT_LIMIT}#per_minute#{}", o.delivery.to);
        assert!(get(ctr, "C").await.unwrap().item.is_none());
        drop_table(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_dispatch_gets_a_receipt_lookup_kept_as_long_as_its_otp_and_a_test_destination_none() {
        // Given a committed OTP with two events (a workflow's two dispatches)
        let store = dynamo_store().await;
        let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
        let acct = account_sid();
        let mut o = otp(&acct, &phone(), T0);
        o.events.push(ChannelEvent { sid: ids::new_sid("EV"), ..o.events[0].clone() });
        store.commit_send(&plan(o.clone(), None, None, vec![])).await.unwrap();
        // When the provider's ids of both are recorded, and a test destination's answer
        for (i, id) in [(0, "SM-first"), (1, "SM-second")] {
            let sent = ChannelEvent { status: ChannelStatus::Sent, target_sid: Some(id.into()), ..o.events[i].clone() };
            store.update_event(&o, i, &sent, Lookup::Deployment).await.expect("update");
        }
        let test = ChannelEvent {
            status: ChannelStatus::Sent,
            target_sid: Some(TEST_PROVIDER_ID.into()),
            ..o.events[0].clone()
        };
        store.update_event(&o, 0, &test, Lookup::Deployment).await.expect("update");
        // Then each id has its lookup item, naming the OTP and its event, with the OTP's TTL
        let get = |pk: &str| {
            let (client, table, pk) = (client.clone(), store.table().to_owned(), pk.to_owned());
            async move {
                use aws_sdk_dynamodb::types::AttributeValue::S;
                client.get_item().table_name(table).key("pk", S(pk)).key("sk", S("M".into())).send().await.unwrap().item
            }
        };
        for (i, id) in [(0, "SM-first"), (1, "SM-second")] {
            let item = get(&format!("MSG#{id}")).await.expect("lookup item");
            let shard = ids::otp_shard(&o.sid).expect("a fresh sid names its shard");
            assert_eq!(item["otp_pk"].as_s().unwrap(), &format!("OTP#{acct}#{shard:02x}"), "the OTP's shard");
            assert_eq!(item["otp_sk"].as_s().unwrap(), &o.sid);
            assert_eq!(item["event"].as_n().unwrap(), &i.to_string());
            assert_eq!(item["ttl"].as_n().unwrap(), &(T0 / 1000 + 90 * 86_400).to_string());
        }
        // And the test destination's "test" has none
        assert_eq!(get(&format!("MSG#{TEST_PROVIDER_ID}")).await, None);
        drop_table(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dispatch_whose_receipts_name_their_event_gets_no_lookup_item() {
        // Given a committed OTP
        let store = dynamo_store().await;
        let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
        let o = otp(&account_sid(), &phone(), T0);
        store.commit_send(&plan(o.clone(), None, None, vec![])).await.unwrap();
        // When its provider's id is recorded without a lookup (End User Messaging SMS)
        let sent =
            ChannelEvent { status: ChannelStatus::Sent, target_sid: Some("eum-1".into()), ..o.events[0].clone() };
        store.update_event(&o, 0, &sent, Lookup::None).await.expect("update");
        // Then the event has it, and no MSG# item was written
        let now = store.get_otp(&o.account_sid, &o.sid).await.unwrap().unwrap();
        assert_eq!(now.events[0].target_sid.as_deref(), Some("eum-1"));
        use aws_sdk_dynamodb::types::AttributeValue::S;
        let item = client
            .get_item()
            .table_name(store.table())
            .key("pk", S("MSG#eum-1".into()))
            .key("sk", S("M".into()))
            .send()
            .await
            .unwrap()
            .item;
        assert_eq!(item, None);
        drop_table(&store).await;
    }
}

// --- workflows ---------------------------------------------------------------------------------

use workflow_defs::RecordingScheduler;

use workflow_defs::workflow_def as workflow;

async fn workflows_create_get_by_name_update_list_delete(f: Fixture) {
    // Given a workflow created in an account
    let acct = account_sid();
    let w = workflow(&acct, "Workflow SSV", &[(Channel::Sms, 0), (Channel::Sms, 60), (Channel::Call, 60)], T0);
    f.store.create_workflow(&w).await.expect("create");
    // Then it reads back by sid and by name, and lists
    assert_eq!(f.store.get_workflow(&acct, &w.sid).await.unwrap(), Some(w.clone()));
    assert_eq!(f.store.get_workflow_by_name(&acct, "Workflow SSV").await.unwrap(), Some(w.clone()));
    assert_eq!(f.store.get_workflow_by_name(&account_sid(), "Workflow SSV").await.unwrap(), None);
    // When its steps change, Then both reads see the change
    let changed = WorkflowDef {
        steps: vec![Step { channel: Channel::Email, interval_secs: 5 }],
        updated_ms: T0 + 1,
        ..w.clone()
    };
    f.store.update_workflow(&changed).await.expect("update");
    assert_eq!(f.store.get_workflow_by_name(&acct, "Workflow SSV").await.unwrap(), Some(changed.clone()));
    assert_eq!(f.store.list_workflows(&acct).await.unwrap(), vec![changed.clone()]);
    // When it is deleted, Then it is gone by sid and by name, and a second delete finds nothing
    assert_eq!(f.store.delete_workflow(&acct, &w.sid).await.unwrap(), Some(changed));
    assert_eq!(f.store.get_workflow(&acct, &w.sid).await.unwrap(), None);
    assert_eq!(f.store.get_workflow_by_name(&acct, "Workflow SSV").await.unwrap(), None);
    assert_eq!(f.store.delete_workflow(&acct, &w.sid).await.unwrap(), None);
    assert_eq!(f.store.update_workflow(&w).await, Err(Error::WorkflowNotFound));
}

async fn workflow_name_clash_in_one_account_is_495(f: Fixture) {
    let acct = account_sid();
    f.store.create_workflow(&workflow(&acct, "w", &[(Channel::Sms, 0)], T0)).await.unwrap();
    let again = workflow(&acct, "w", &[(Channel::Call, 0)], T0);
    assert_eq!(f.store.create_workflow(&again).await, Err(Error::WorkflowNameExists));
    assert_eq!(f.store.get_workflow(&acct, &again.sid).await.unwrap(), None, "nothing half-written");
    f.store.create_workflow(&workflow(&account_sid(), "w", &[(Channel::Sms, 0)], T0)).await.expect("another account");
}

/// An OTP sent with a two-step workflow (sms now, sms after 30 s), the deps and the outbox.
async fn sent_with_workflow(f: &Fixture) -> (Deps, Arc<Outbox>, Arc<RecordingScheduler>, Account, String, String) {
    let (deps, outbox) = deps(f.store.clone());
    let scheduler = Arc::new(RecordingScheduler::default());
    let deps = Deps { scheduler: scheduler.clone(), ..deps };
    let account = new_account(&deps).await;
    let w = workflow(&account.sid, "two", &[(Channel::Sms, 0), (Channel::Sms, 30)], T0);
    f.store.create_workflow(&w).await.unwrap();
    let to = phone();
    let req = SendRequest { workflow: Some("two".into()), ..sms(&to, vec![]) };
    let sid = send(&deps, &account, req).await.expect("send");
    (deps, outbox, scheduler, account, to, sid)
}

async fn concurrent_runs_of_one_workflow_step_send_it_once(f: Fixture) {
    // Given an OTP whose first step went out with the send and whose second is scheduled
    let (deps, outbox, scheduler, account, to, sid) = sent_with_workflow(&f).await;
    let runs = scheduler.0.lock().unwrap().clone();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].step, runs[0].wait, runs[0].otp_sid.as_str()), (1, 30, sid.as_str()));
    // When the second step is run 20 times at once (a retried Lambda, a duplicated execution)
    let results = join_all((0..20).map(|_| run_step(&deps, &runs[0]))).await;
    // Then every run answers that nothing is left, and the step went out exactly once
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|next| !next.more)), "{results:?}");
    assert_eq!(outbox.messages(Some(&to)).len(), 2);
    let otp = f.store.get_otp(&account.sid, &sid).await.unwrap().unwrap();
    assert_eq!(otp.events.len(), 2);
    assert_eq!(otp.events[1].status, ChannelStatus::Sent);
    assert_eq!(otp.workflow.as_ref().unwrap().sent, 2);
    // And usage counted each step once
    let day = time::day(deps.clock.now_ms());
    let sms = UsageKey { account_sid: account.sid.clone(), day, category: UsageCategory::Channel(Channel::Sms) };
    assert_eq!(f.usage(&sms).await, 2);
    // And the same code went out twice
    let codes: Vec<String> =
        outbox.messages(Some(&to)).iter().map(|m| m.body.chars().filter(char::is_ascii_digit).collect()).collect();
    assert_eq!(codes[0], codes[1]);
}

async fn a_workflow_step_of_a_verified_otp_is_not_sent(f: Fixture) {
    // Given an OTP with a scheduled second step, verified after its first
    let (deps, outbox, scheduler, account, to, sid) = sent_with_workflow(&f).await;
    let code = code_sent_to(&outbox, &to);
    verify(&deps, &account, VerifyTarget::RequestId(sid.clone()), &code).await.expect("verify");
    // When the second step comes due
    let run = scheduler.0.lock().unwrap()[0].clone();
    let next = run_step(&deps, &run).await.unwrap();
    // Then nothing is sent and the run ends
    assert!(!next.more);
    assert_eq!(outbox.messages(Some(&to)).len(), 1);
    assert_eq!(f.store.get_otp(&account.sid, &sid).await.unwrap().unwrap().events.len(), 1);
}

// --- factors ---------------------------------------------------------------------------------

fn factor(account_sid: &str, entity: &str, created_ms: Millis) -> Factor {
    Factor {
        sid: ids::new_sid(ids::FACTOR),
        account_sid: account_sid.to_owned(),
        entity: entity.to_owned(),
        kind: FactorKind::Totp,
        friendly_name: None,
        status: FactorStatus::Unverified,
        totp: TotpParams::default(),
        sealed_secret: vec![7; 48],
        last_step: None,
        confirm_failures: 0,
        created_ms,
        updated_ms: created_ms,
        passkey: None,
    }
}

async fn a_factor_reads_back_with_every_field_and_is_listed_under_its_entity_only(f: Fixture) {
    // Given two factors of one entity (the second with every optional field set), one of
    // another entity and one of another account's entity of the same id
    let acct = account_sid();
    let first = factor(&acct, "alice@example.com", T0);
    let second = Factor {
        friendly_name: Some("Work phone".into()),
        status: FactorStatus::Verified,
        totp: TotpParams { algorithm: TotpAlgorithm::Sha256, digits: 8, period_secs: 30 },
        last_step: Some(56_666_666),
        confirm_failures: 2,
        updated_ms: T0 + 5,
        ..factor(&acct, "alice@example.com", T0 + 1)
    };
    let other_entity = factor(&acct, "alice", T0);
    let other_account = factor(&account_sid(), "alice@example.com", T0);
    for x in [&second, &first, &other_entity, &other_account] {
        f.store.put_factor(x).await.expect("put");
    }
    // Then each reads back exactly, and the entity lists its own, oldest first
    let got = f.store.get_factor(&acct, "alice@example.com", &second.sid).await.unwrap();
    assert_eq!(got, Some(second.clone()));
    let listed = f.store.list_factors(&acct, "alice@example.com").await.unwrap();
    assert_eq!(listed, vec![first.clone(), second.clone()]);
    assert_eq!(f.store.list_factors(&acct, "bob").await.unwrap(), vec![]);
    // And it is not found under another entity or account
    assert_eq!(f.store.get_factor(&acct, "alice", &first.sid).await.unwrap(), None);
    assert_eq!(f.store.get_factor(&account_sid(), "alice@example.com", &first.sid).await.unwrap(), None);
    // And a second put of its sid is contended and changes nothing
    let again = Factor { friendly_name: Some("Overwrite".into()), ..first.clone() };
    assert_eq!(f.store.put_factor(&again).await, Err(Error::Contended));
    assert_eq!(f.store.get_factor(&acct, "alice@example.com", &first.sid).await.unwrap(), Some(first));
}

async fn a_factor_takes_each_time_step_once_and_never_an_earlier_one(f: Fixture) {
    // Given an unverified factor
    let acct = account_sid();
    let x = factor(&acct, "alice", T0);
    f.store.put_factor(&x).await.unwrap();
    let take = |step: i64, confirm: bool| f.store.use_factor_step(&acct, "alice", &x.sid, step, confirm, T0 + 9);
    // When a challenge's code comes before it is confirmed: refused
    assert!(!take(100, false).await.unwrap());
    // When its first code confirms it: taken, and it is verified at that step
    assert!(take(100, true).await.unwrap());
    let got = f.store.get_factor(&acct, "alice", &x.sid).await.unwrap().unwrap();
    assert_eq!((got.status, got.last_step, got.updated_ms), (FactorStatus::Verified, Some(100), T0 + 9));
    // Then it cannot be confirmed again, and the same or an earlier step is refused
    assert!(!take(101, true).await.unwrap());
    assert!(!take(100, false).await.unwrap());
    assert!(!take(99, false).await.unwrap());
    // And a later step is taken once
    assert!(take(101, false).await.unwrap());
    assert!(!take(101, false).await.unwrap());
    // And a factor that is not there takes nothing
    assert!(!f.store.use_factor_step(&acct, "alice", &ids::new_sid(ids::FACTOR), 200, false, T0).await.unwrap());
}

async fn concurrent_uses_of_one_time_step_take_it_exactly_once(f: Fixture) {
    // Given a verified factor
    let acct = account_sid();
    let x = Factor { status: FactorStatus::Verified, last_step: Some(10), ..factor(&acct, "alice", T0) };
    f.store.put_factor(&x).await.unwrap();
    // When twenty verifies present a code of one step at once
    let uses = (0..20).map(|_| f.store.use_factor_step(&acct, "alice", &x.sid, 11, false, T0));
    let taken = join_all(uses).await;
    // Then exactly one took it
    assert_eq!(taken.iter().filter(|r| matches!(r, Ok(true))).count(), 1, "{taken:?}");
    assert!(taken.iter().all(Result::is_ok), "{taken:?}");
}

async fn wrong_first_codes_count_up_to_the_bound_only_while_unverified(f: Fixture) {
    // Given an unverified factor
    let acct = account_sid();
    let x = factor(&acct, "alice", T0);
    f.store.put_factor(&x).await.unwrap();
    // When wrong first codes come, concurrently, more than the bound of 5
    let fails = join_all((0..8).map(|_| f.store.fail_factor_confirm(&acct, "alice", &x.sid, 5))).await;
    // Then exactly 5 counted
    assert_eq!(fails.iter().filter(|r| matches!(r, Ok(true))).count(), 5, "{fails:?}");
    let got = f.store.get_factor(&acct, "alice", &x.sid).await.unwrap().unwrap();
    assert_eq!(got.confirm_failures, 5);
    // And a verified factor counts none
    let y = Factor { status: FactorStatus::Verified, ..factor(&acct, "alice", T0) };
    f.store.put_factor(&y).await.unwrap();
    assert!(!f.store.fail_factor_confirm(&acct, "alice", &y.sid, 5).await.unwrap());
    assert_eq!(f.store.get_factor(&acct, "alice", &y.sid).await.unwrap().unwrap().confirm_failures, 0);
}

async fn a_factor_secret_is_resealed_only_over_the_one_read(f: Fixture) {
    // Given a factor whose secret was read sealed as `was`
    let acct = account_sid();
    let x = factor(&acct, "alice", T0);
    f.store.put_factor(&x).await.unwrap();
    let (was, first, second) = (x.sealed_secret.clone(), vec![8; 48], vec![9; 48]);
    // When one writer reseals it over `was`, then another from the same stale read
    let one = f.store.reseal_factor(&acct, "alice", &x.sid, &was, &first).await.unwrap();
    let two = f.store.reseal_factor(&acct, "alice", &x.sid, &was, &second).await.unwrap();
    // Then only the first is written
    assert!(one && !two);
    let got = f.store.get_factor(&acct, "alice", &x.sid).await.unwrap().unwrap();
    assert_eq!(got, Factor { sealed_secret: first.clone(), ..x.clone() });
    // And a factor that is gone is not written back
    f.store.delete_factor(&acct, "alice", &x.sid).await.unwrap();
    assert!(!f.store.reseal_factor(&acct, "alice", &x.sid, &first, &second).await.unwrap());
    assert_eq!(f.store.get_factor(&acct, "alice", &x.sid).await.unwrap(), None);
}

async fn a_deleted_factor_is_answered_once_then_gone(f: Fixture) {
    // Given a factor
    let acct = account_sid();
    let x = factor(&acct, "alice", T0);
    f.store.put_factor(&x).await.unwrap();
    // When it is deleted twice
    let first = f.store.delete_factor(&acct, "alice", &x.sid).await.unwrap();
    let second = f.store.delete_factor(&acct, "alice", &x.sid).await.unwrap();
    // Then the first answers it as it was, the second nothing, and it is listed no more
    assert_eq!((first, second), (Some(x), None));
    assert_eq!(f.store.list_factors(&acct, "alice").await.unwrap(), vec![]);
}

fn passkey_factor(account_sid: &str, entity: &str) -> Factor {
    Factor {
        kind: FactorKind::Passkey,
        sealed_secret: vec![],
        passkey: Some(Passkey { user_handle: vec![5; 16], ceremony: Some(vec![1, 2, 3]), credential: None }),
        ..factor(account_sid, entity, T0)
    }
}

fn passkey_credential(dynamic: u8) -> PasskeyCredential {
    PasskeyCredential { id: vec![9; 16], transports: 4, static_state: vec![8; 70], dynamic_state: vec![dynamic; 7] }
}

async fn a_passkey_reads_back_and_confirms_once_over_its_ceremony(f: Fixture) {
    // Given an unverified passkey factor waiting on its registration ceremony
    let acct = account_sid();
    let x = passkey_factor(&acct, "alice");
    f.store.put_factor(&x).await.unwrap();
    // Then it reads back as written
    assert_eq!(f.store.get_factor(&acct, "alice", &x.sid).await.unwrap().as_ref(), Some(&x));
    // When a confirmation answers another ceremony: refused, nothing written
    let c = passkey_credential(0);
    assert!(!f.store.confirm_passkey(&acct, "alice", &x.sid, &[7, 7], &c, T0 + 5).await.unwrap());
    // When confirmations of its ceremony race: exactly one stores the credential
    let tries = join_all((0..8).map(|_| f.store.confirm_passkey(&acct, "alice", &x.sid, &[1, 2, 3], &c, T0 + 5))).await;
    assert_eq!(tries.iter().filter(|r| matches!(r, Ok(true))).count(), 1, "{tries:?}");
    // Then it is verified, holds the credential, and the ceremony is over
    let got = f.store.get_factor(&acct, "alice", &x.sid).await.unwrap().unwrap();
    assert_eq!((got.status, got.updated_ms), (FactorStatus::Verified, T0 + 5));
    let pk = got.passkey.unwrap();
    assert_eq!((pk.ceremony, pk.credential, pk.user_handle), (None, Some(c), vec![5; 16]));
}

async fn concurrent_uses_of_one_passkey_state_move_it_exactly_once(f: Fixture) {
    // Given a verified passkey whose credential's state is 1
    let acct = account_sid();
    let mut x = passkey_factor(&acct, "alice");
    x.status = FactorStatus::Verified;
    x.passkey = Some(Passkey { user_handle: vec![5; 16], ceremony: None, credential: Some(passkey_credential(1)) });
    f.store.put_factor(&x).await.unwrap();
    // When twenty verifies move it from 1 to 2 at once
    let uses = join_all((0..20).map(|_| f.store.use_passkey(&acct, "alice", &x.sid, &[1; 7], &[2; 7], T0 + 3))).await;
    // Then exactly one moved it
    assert_eq!(uses.iter().filter(|r| matches!(r, Ok(true))).count(), 1, "{uses:?}");
    let got = f.store.get_factor(&acct, "alice", &x.sid).await.unwrap().unwrap();
    assert_eq!(got.passkey.unwrap().credential.unwrap().dynamic_state, vec![2; 7]);
    // And a move from a state it no longer holds, or of an unverified or missing factor, writes nothing
    assert!(!f.store.use_passkey(&acct, "alice", &x.sid, &[1; 7], &[3; 7], T0).await.unwrap());
    let y = passkey_factor(&acct, "alice");
    f.store.put_factor(&y).await.unwrap();
    assert!(!f.store.use_passkey(&acct, "alice", &y.sid, &[1; 7], &[3; 7], T0).await.unwrap());
    assert!(!f.store.use_passkey(&acct, "alice", &ids::new_sid(ids::FACTOR), &[1; 7], &[3; 7], T0).await.unwrap());
}
