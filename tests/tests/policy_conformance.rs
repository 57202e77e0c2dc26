//! Account policies on both stores (embedded, and DynamoDB on moto at `AWS_ENDPOINT_URL`):
//! geo permissions, the pumping guard and test destinations, through the domain's use cases.
//! Each test runs twice (`memory::…`, `dynamodb::…`), each DynamoDB run on its own table.
//! On DynamoDB the pumping guard counts off the table's stream: each send here first has the
//! stream worker count what the stream holds (a stream that keeps up), and reads the counters
//! without the per-process cache.

mod common;

use std::{sync::Arc, time::Duration};

use common::stream::StreamTail;
use twofa::{
    adapters::{
        aws::{
            aws_config,
            dynamodb::{create_table_with_stream, DynamoStore},
        },
        clock::AdjustableClock,
        memory::MemoryStore,
        outbox::Outbox,
    },
    domain::{
        account::Account,
        crypto::Keys,
        ids,
        otp::{Delivery, Destination, Otp, OtpStatus},
        policy::{update_policy, PolicyUpdate},
        send::{send, SendRequest},
        time,
        usage::UsageCategory,
        verify::{verify, VerifyTarget},
    },
    ports::{Clock, Deps, NoScheduler, SendPlan, Store},
    workers::callbacks::count_guard_of,
    Error,
};

struct Fixture {
    deps: Deps,
    outbox: Arc<Outbox>,
    clock: Arc<AdjustableClock>,
    dynamo: Option<Arc<DynamoStore>>,
    /// The DynamoDB table's stream, for the pumping guard's counts.
    stream: Option<StreamTail>,
}

impl Fixture {
    fn new(store: Arc<dyn Store>, dynamo: Option<Arc<DynamoStore>>, clock: Arc<AdjustableClock>) -> Self {
        let outbox = Arc::new(Outbox::new(clock.clone()));
        let deps = Deps {
            store,
            dispatcher: outbox.clone(),
            clock: clock.clone(),
            keys: Arc::new(Keys::random()),
            scheduler: Arc::new(NoScheduler),
        };
        Fixture { deps, outbox, clock, dynamo, stream: None }
    }

    fn memory() -> Self {
        Fixture::new(Arc::new(MemoryStore::new()), None, Arc::default())
    }

    async fn dynamodb() -> Self {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok_and(|u| !u.is_empty()),
            "AWS_ENDPOINT_URL is not set: run `make test` (it starts moto)"
        );
        let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
        let table = format!("policy-{}", ids::new_sid(""));
        create_table_with_stream(&client, &table).await.expect("create the table in moto");
        let stream = StreamTail::of(&client, &table).await;
        let clock = Arc::new(AdjustableClock::default());
        let store = Arc::new(DynamoStore::new(client, table).with_guard_cache(Duration::ZERO, clock.clone()));
        Fixture { stream: Some(stream), ..Fixture::new(store.clone(), Some(store), clock) }
    }

    /// The stream worker's pumping-guard counts of everything stored so far (DynamoDB).
    async fn count_stream(&self) {
        if let (Some(stream), Some(store)) = (&self.stream, &self.dynamo) {
            count_guard_of(store, stream.next_batch().await).await.expect("guard counted");
        }
    }

    async fn account(&self, parent: Option<&Account>) -> Account {
        let a = Account::new(ids::new_sid(ids::ACCOUNT), "token", &self.deps.keys, parent, 0);
        self.deps.store.put_account(&a).await.expect("account");
        a
    }

    /// Change `account`'s policy (JSON as `POST /dev/accounts` takes it) and read it back as
    /// authentication would.
    async fn set(&self, account: &Account, policy: serde_json::Value) -> Account {
        let update: PolicyUpdate = serde_json::from_value(policy).expect("policy JSON");
        update_policy(self.deps.store.as_ref(), &self.deps.keys, &account.sid, update).await.expect("policy");
        self.deps.store.get_account(&account.sid).await.expect("read").expect("account")
    }

    /// A send, once the stream worker has counted what came before it.
    async fn send_sms(&self, account: &Account, to: &str) -> Result<String, Error> {
        self.count_stream().await;
        send(&self.deps, account, sms(to)).await
    }

    /// Verify OTP `sid` with the code the outbox shows for `to`.
    async fn verify_sent(&self, account: &Account, sid: &str, to: &str) {
        let msg = self.outbox.messages(Some(to)).into_iter().next().expect("a message");
        let code: String = msg.body.chars().filter(char::is_ascii_digit).collect();
        verify(&self.deps, account, VerifyTarget::RequestId(sid.to_owned()), &code).await.expect("verified");
    }
}

/// The `i`-th of some US numbers that can exist.
fn us(i: usize) -> String {
    format!("+1415555{i:04}")
}

fn sms(to: &str) -> SendRequest {
    SendRequest {
        service: "2FA".into(),
        delivery: Delivery::sms("Twofa", to, "Your code: {code}"),
        length: 6,
        timeout_secs: 300,
        guard_time: None,
        limits: vec![],
        idempotency_key: None,
        workflow: None,
        email: None,
        email_from: None,
    }
}

async fn drop_table(store: &DynamoStore) {
    let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
    client.delete_table().table_name(store.table()).send().await.expect("delete the table");
}

macro_rules! on_both_stores {
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

on_both_stores!(
    a_send_outside_the_allowed_countries_is_refused_and_writes_nothing,
    policy_of_an_unknown_account_is_not_found,
    a_sub_accounts_policy_is_its_own_and_reaches_its_copies,
    the_pumping_guard_pauses_a_country_with_few_verifies_and_resumes_as_verifies_come_in,
    the_pumping_guard_forgets_sends_older_than_an_hour,
    concurrent_sends_and_verifies_are_all_counted_by_the_guard,
    a_verify_whose_sid_names_another_country_counts_in_the_otps_own,
    a_test_number_delivers_nothing_counts_as_test_and_verifies_its_fixed_code,
    an_account_callback_and_its_sealed_secret_are_stored_and_rotated,
    a_from_outside_the_accounts_senders_is_a_400_naming_from_and_writes_nothing,
    a_sub_account_is_granted_at_most_its_parents_senders,
    failed_verifies_across_otps_pause_a_destination_until_a_success_the_operator_or_a_day,
    non_geographic_numbers_are_guarded_as_a_bucket_of_their_own,
    sends_spread_over_countries_meet_the_account_wide_window,
    concurrent_updates_of_different_parts_all_stay,
    an_update_from_a_stale_read_does_not_undo_a_newer_one,
    an_account_stored_without_a_policy_version_still_updates,
);

// --- callbacks -------------------------------------------------------------------------------

async fn an_account_callback_and_its_sealed_secret_are_stored_and_rotated(f: Fixture) {
    use twofa::domain::{
        callbacks::{open_key, secret_key, CallbackMethod, UrlRules},
        policy::update_policy_with,
    };
    // Given an account without a callback
    let account = f.account(None).await;
    assert!(account.policy.callback.is_none() && account.policy.webhook_secret.is_none());
    // When it gets a GET callback
    let update: PolicyUpdate = serde_json::from_value(
        serde_json::json!({ "callbackUrl": "https://hooks.example.com/otp", "callbackMethod": "get" }),
    )
    .unwrap();
    let change =
        update_policy_with(f.deps.store.as_ref(), &f.deps.keys, &account.sid, update, UrlRules::Public).await.unwrap();
    // Then a secret is made and shown this once, and the account reads back with both
    let first = change.webhook_secret.expect("a secret with the first callback").0;
    let read = f.deps.store.get_account(&account.sid).await.unwrap().unwrap();
    let target = read.policy.callback.clone().expect("the callback");
    assert_eq!((target.url.as_str(), target.method), ("https://hooks.example.com/otp", CallbackMethod::Get));
    let sealed = read.policy.webhook_secret.clone().expect("the sealed secret").0;
    assert!(!sealed.windows(16).any(|w| first.as_bytes().windows(16).any(|s| s == w)), "stored sealed, not in clear");
    assert_eq!(open_key(&f.deps.keys, &account.sid, &sealed).unwrap(), secret_key(&first).unwrap());
    // When the secret is rotated, Then another one replaces it and the callback stays
    let rotate: PolicyUpdate = serde_json::from_value(serde_json::json!({ "rotateWebhookSecret": true })).unwrap();
    let second = update_policy_with(f.deps.store.as_ref(), &f.deps.keys, &account.sid, rotate, UrlRules::Public)
        .await
        .unwrap()
        .webhook_secret
        .expect("a rotated secret")
        .0;
    assert_ne!(first, second);
    let read = f.deps.store.get_account(&account.sid).await.unwrap().unwrap();
    assert_eq!(read.policy.callback, Some(target));
    let key = open_key(&f.deps.keys, &account.sid, &read.policy.webhook_secret.unwrap().0).unwrap();
    assert_eq!(key, secret_key(&second).unwrap());
    // And `null` removes the callback (the secret stays for per-send callbacks)
    let read = f.set(&account, serde_json::json!({ "callbackUrl": null })).await;
    assert!(read.policy.callback.is_none() && read.policy.webhook_secret.is_some());
    // And an http callback is refused outside dev, naming the parameter
    let http: PolicyUpdate =
        serde_json::from_value(serde_json::json!({ "callbackUrl": "http://hooks.example.com/otp" })).unwrap();
    let err = update_policy_with(f.deps.store.as_ref(), &f.deps.keys, &account.sid, http, UrlRules::Public).await;
    assert!(matches!(err, Err(Error::InvalidParameter { param, .. }) if param == "callbackUrl"));
}

// --- geo permissions ---------------------------------------------------------------------------

async fn a_send_outside_the_allowed_countries_is_refused_and_writes_nothing(f: Fixture) {
    // Given an account that allows SMS to the US and GB only, and calls everywhere
    let account = f.account(None).await;
    let account = f.set(&account, serde_json::json!({ "allowedCountries": { "sms": ["us", "GB"] } })).await;
    assert_eq!(account.policy.sms_countries, Some(vec!["GB".to_owned(), "US".to_owned()]));
    // When it sends an SMS to India
    let r = f.send_sms(&account, "+919960639901").await;
    // Then it is refused naming the country, and nothing was written or sent
    assert_eq!(r, Err(Error::CountryNotAllowed("IN".into())));
    assert_eq!(r.unwrap_err().to_string(), "Destination country not allowed: IN");
    assert!(f.deps.store.get_destination(&account.sid, "2FA", "+919960639901").await.unwrap().is_none());
    assert!(f.outbox.messages(None).is_empty());
    // And SMS to the allowed countries, and a call to India, go out
    assert!(f.send_sms(&account, "+14155550100").await.is_ok());
    assert!(f.send_sms(&account, "+447400123456").await.is_ok());
    let mut call = sms("+919960639902");
    call.delivery.channel = twofa::domain::otp::Channel::Call;
    assert!(send(&f.deps, &account, call).await.is_ok());
    // And once the list is lifted (null: every country), India is allowed again
    let account = f.set(&account, serde_json::json!({ "allowedCountries": { "sms": null } })).await;
    assert!(f.send_sms(&account, "+919960639901").await.is_ok());
    assert_eq!(f.outbox.messages(None).len(), 4);
}

async fn policy_of_an_unknown_account_is_not_found(f: Fixture) {
    let ghost = Account::new(ids::new_sid(ids::ACCOUNT), "token", &f.deps.keys, None, 0);
    let r = f.deps.store.set_policy(&ghost, &Default::default()).await;
    assert_eq!(r, Err(Error::NotFound));
    assert!(f.deps.store.get_account(&ghost.sid).await.unwrap().is_none(), "nothing created");
}

async fn a_sub_accounts_policy_is_its_own_and_reaches_its_copies(f: Fixture) {
    // Given a parent and its sub-account, the sub-account limited to JP
    let parent = f.account(None).await;
    let sub = f.account(Some(&parent)).await;
    let sub = f.set(&sub, serde_json::json!({ "allowedCountries": { "sms": ["JP"], "call": ["JP"] } })).await;
    // Then the parent keeps every country, the sub-account (and its copy under the parent) JP only
    let parent = f.deps.store.get_account(&parent.sid).await.unwrap().unwrap();
    assert_eq!(parent.policy.sms_countries, None);
    assert_eq!(f.send_sms(&sub, "+14155550100").await, Err(Error::CountryNotAllowed("US".into())));
    assert!(f.send_sms(&sub, "+819012345678").await.is_ok());
    let copies = f.deps.store.list_sub_accounts(&parent.sid).await.unwrap();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].policy, sub.policy);
}

// --- pumping guard -----------------------------------------------------------------------------

async fn the_pumping_guard_pauses_a_country_with_few_verifies_and_resumes_as_verifies_come_in(f: Fixture) {
    // Given an account whose guard pauses a country after 4 sends in the hour below 50 % verified
    let account = f.account(None).await;
    let account =
        f.set(&account, serde_json::json!({ "pumpingGuard": { "minSends": 4, "minVerifyPercent": 50 } })).await;
    // And 4 SMS to US numbers, none verified
    let mut sent = vec![];
    for i in 0..4 {
        sent.push((f.send_sms(&account, &us(i)).await.expect("send"), us(i)));
    }
    // When it sends a 5th to the US
    f.count_stream().await;
    let before = f.dynamo.as_ref().map(|d| d.calls());
    let r = f.send_sms(&account, &us(4)).await;
    // (on DynamoDB the guard's counters were read in a BatchGetItem of their own, at the same
    // time as the snapshot's, and nothing written but the refusal's insight counts: an ADD to
    // an hour and a day item, at once)
    if let (Some(d), Some(before)) = (&f.dynamo, before) {
        let c = d.calls() - before;
        assert_eq!((c.batch_get_item, c.reads(), c.writes(), c.update_item), (2, 2, 2, 2), "{c:?}");
    }
    // Then it is refused with 477 naming the country, and nothing was sent
    assert_eq!(r, Err(Error::SendsPaused("US".into())));
    assert_eq!(r.unwrap_err().to_string(), "Sends to US paused: low verification rate");
    assert!(f.outbox.messages(Some(&us(4))).is_empty());
    // And other countries are not affected
    f.send_sms(&account, "+447400123456").await.expect("GB is not paused");
    // When one US OTP is verified (1 of 4: 25 %), still paused; at 2 of 4 (50 %), resumed
    let before = f.dynamo.as_ref().map(|d| d.calls());
    f.verify_sent(&account, &sent[0].0, &sent[0].1).await;
    // (on DynamoDB the verify is one conditional UpdateItem, after the wrong-code count the
    // right code meets refused; no transaction: the stream counts it)
    if let (Some(d), Some(before)) = (&f.dynamo, before) {
        let c = d.calls() - before;
        assert_eq!((c.reads(), c.update_item, c.transact_write_items), (0, 2, 0), "{c:?}");
    }
    assert_eq!(f.send_sms(&account, &us(4)).await, Err(Error::SendsPaused("US".into())));
    f.verify_sent(&account, &sent[1].0, &sent[1].1).await;
    f.send_sms(&account, &us(4)).await.expect("resumed at 50 %");
    // And the send that went out counts: 2 of 5 is below 50 % again
    assert_eq!(f.send_sms(&account, &us(5)).await, Err(Error::SendsPaused("US".into())));
}

async fn the_pumping_guard_forgets_sends_older_than_an_hour(f: Fixture) {
    // Given a country paused by 3 unverified sends (guard: 3 sends, 10 %)
    let account = f.account(None).await;
    let account =
        f.set(&account, serde_json::json!({ "pumpingGuard": { "minSends": 3, "minVerifyPercent": 10 } })).await;
    for i in 0..3 {
        f.send_sms(&account, &us(i)).await.expect("send");
        f.clock.advance_secs(600);
    }
    assert_eq!(f.send_sms(&account, &us(3)).await, Err(Error::SendsPaused("US".into())));
    // When the first send slides out of the hour (its bucket leaves the window of 6 x 10 min)
    f.clock.advance_secs(3 * 600);
    // Then sends resume
    f.send_sms(&account, &us(3)).await.expect("resumed once the oldest send left the hour");
    // And an account with the guard off is never paused
    let off = f.account(None).await;
    let off = f.set(&off, serde_json::json!({ "pumpingGuard": { "enabled": false, "minSends": 1 } })).await;
    for i in 10..14 {
        f.send_sms(&off, &us(i)).await.expect("no guard");
    }
}

async fn concurrent_sends_and_verifies_are_all_counted_by_the_guard(f: Fixture) {
    // Given an account whose guard pauses after 12 sends below 50 % verified
    let account = f.account(None).await;
    let account =
        f.set(&account, serde_json::json!({ "pumpingGuard": { "minSends": 12, "minVerifyPercent": 50 } })).await;
    // When 12 sends to the US run at once, then 6 of them are verified at once
    let numbers: Vec<String> = (0..12).map(us).collect();
    let sends = futures::future::join_all(numbers.iter().map(|to| f.send_sms(&account, to))).await;
    let sids: Vec<String> = sends.into_iter().map(|r| r.expect("send")).collect();
    futures::future::join_all(sids.iter().zip(&numbers).take(5).map(|(sid, to)| f.verify_sent(&account, sid, to)))
        .await;
    // Then every send counted: 5 of 12 verified pauses the US
    assert_eq!(f.send_sms(&account, &us(12)).await, Err(Error::SendsPaused("US".into())));
    // And every verify counted: the 6th makes 6 of 12, and sends resume
    f.verify_sent(&account, &sids[5], &us(5)).await;
    f.send_sms(&account, &us(12)).await.expect("resumed at 50 %");
}

async fn a_verify_whose_sid_names_another_country_counts_in_the_otps_own(f: Fixture) {
    // Given a US OTP whose sid names GB (as an OTP from before the guard may, by chance)
    let account = f.account(None).await;
    let account =
        f.set(&account, serde_json::json!({ "pumpingGuard": { "minSends": 1, "minVerifyPercent": 100 } })).await;
    let now = f.clock.now_ms();
    let sid = f.deps.keys.otp_sid(Some("GB"), now, f.deps.store.otp_shards());
    let otp = Otp {
        code_hash: f.deps.keys.hash_code(&sid, "123456").to_vec(),
        sealed_code: vec![],
        account_sid: account.sid.clone(),
        service: "2FA".into(),
        delivery: Delivery::sms("Twofa", us(1), "Your code: {code}"),
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
        events: vec![],
        workflow: None,
        watched: false,
        clears_failures: false,
        guarded: true,
        sid: sid.clone(),
    };
    let destination =
        Destination { current: sid.clone(), current_guard: None, current_expires_ms: otp.expires_ms, previous: None };
    let guard = twofa::domain::guard::counted_in(&account.sid, "US", now, &sid);
    let plan = SendPlan {
        otp,
        destination,
        expected_current: None,
        supersede: None,
        counters: vec![],
        usage: vec![],
        idempotency: None,
        guard,
    };
    f.deps.store.commit_send(&plan).await.expect("commit");
    // The US has 1 send and no verify: paused
    assert_eq!(f.send_sms(&account, &us(2)).await, Err(Error::SendsPaused("US".into())));
    // When it is verified (the first write names GB and is refused; the second names the US)
    verify(&f.deps, &account, VerifyTarget::RequestId(sid.clone()), "123456").await.expect("verified");
    // Then the verify counted for the US: 1 of 1, sends there resume
    f.send_sms(&account, &us(2)).await.expect("resumed");
    assert_eq!(f.deps.store.get_otp(&account.sid, &sid).await.unwrap().unwrap().status, OtpStatus::Success);
}

// --- test destinations -------------------------------------------------------------------------

async fn a_test_number_delivers_nothing_counts_as_test_and_verifies_its_fixed_code(f: Fixture) {
    // Given an account with a test number (its code sealed in the stored account)
    let account = f.account(None).await;
    let policy = serde_json::json!({ "testNumbers": [ { "to": "+14155550123", "code": "97531" } ] });
    let account = f.set(&account, policy).await;
    assert_eq!(account.policy.test_destinations.len(), 1);
    // When it sends to it
    let before = f.dynamo.as_ref().map(|d| d.calls());
    let sid = f.send_sms(&account, "14155550123").await.expect("send");
    // (on DynamoDB: the snapshot and the commit, and no event update: nothing was dispatched)
    if let (Some(d), Some(before)) = (&f.dynamo, before) {
        let c = d.calls() - before;
        assert_eq!((c.batch_get_item, c.transact_write_items, c.update_item, c.get_item), (1, 1, 0, 0), "{c:?}");
    }
    // Then nothing is delivered, the OTP holds the fixed code's HMAC, and usage counts `test` only
    assert!(f.outbox.messages(None).is_empty());
    let otp = f.deps.store.get_otp(&account.sid, &sid).await.unwrap().unwrap();
    assert!(f.deps.keys.code_matches(&sid, "97531", &otp.code_hash));
    assert_eq!(otp.length, 5);
    let day = time::day(f.clock.now_ms());
    let usage = f.deps.store.usage(&account.sid, &day, &day).await.unwrap();
    let categories: Vec<_> = usage.iter().filter(|(_, n)| *n > 0).map(|(k, n)| (k.category, *n)).collect();
    assert_eq!(categories, [(UsageCategory::Test, 1)]);
    // And the fixed code verifies it
    verify(&f.deps, &account, VerifyTarget::RequestId(sid.clone()), "97531").await.expect("verified");
}

async fn a_from_outside_the_accounts_senders_is_a_400_naming_from_and_writes_nothing(f: Fixture) {
    // Given tenant A, whose senders are its sender ID, its number and its domain, and tenant B
    // with only its own sender ID
    let a = f.account(None).await;
    let a = f.set(&a, serde_json::json!({ "senders": ["TenantA", "+14155550199", "@tenant-a.com"] })).await;
    let b = f.account(None).await;
    let b = f.set(&b, serde_json::json!({ "senders": ["TenantB"] })).await;
    let from = |channel_from: &str, to: &str| SendRequest {
        delivery: Delivery::sms(channel_from, to, "Your code: {code}"),
        ..sms(to)
    };
    let email = |sender: &str| SendRequest {
        delivery: Delivery {
            channel: twofa::domain::otp::Channel::Email,
            subject: Some("Your code".into()),
            ..Delivery::sms(sender, "user@example.com", "Your code: {code}")
        },
        ..sms("user@example.com")
    };
    // When B sends as A: A's sender ID, A's number, an address at A's domain
    let refused = [
        send(&f.deps, &b, from("TenantA", &us(1))).await,
        send(&f.deps, &b, from("+14155550199", &us(2))).await,
        send(&f.deps, &b, email("security@tenant-a.com")).await,
    ];
    // Then each is a 400 naming `from`, and nothing was sent or stored
    for r in &refused {
        assert_eq!(r, &Err(Error::invalid("from", "not a sender this account may use")));
    }
    assert!(f.outbox.messages(None).is_empty());
    assert!(f.deps.store.get_destination(&b.sid, "2FA", &us(1)).await.unwrap().is_none());
    // And A sends as itself (sender IDs and domains compare case-insensitively, numbers in any form)
    send(&f.deps, &a, from("tenanta", &us(3))).await.expect("A's sender ID");
    send(&f.deps, &a, from("14155550199", &us(4))).await.expect("A's number");
    send(&f.deps, &a, email("Security@Tenant-A.com")).await.expect("an address at A's domain");
    // And B as itself
    send(&f.deps, &b, from("TenantB", &us(5))).await.expect("B's sender ID");
    // And an account whose senders were never set sends from any sender (accounts stored
    // before sender lists, the single-tenant setup)
    let any = f.account(None).await;
    send(&f.deps, &any, from("TenantA", &us(6))).await.expect("any sender");
}

async fn a_sub_account_is_granted_at_most_its_parents_senders(f: Fixture) {
    // Given a parent whose senders are one sender ID and one domain, and its sub-account
    let parent = f.account(None).await;
    f.set(&parent, serde_json::json!({ "senders": ["Parent", "@parent.example"] })).await;
    let parent = f.deps.store.get_account(&parent.sid).await.unwrap().unwrap();
    // (a new sub-account starts with its parent's senders)
    let sub = f.account(Some(&parent)).await;
    assert_eq!(sub.policy.senders, parent.policy.senders);
    let grant = |senders: serde_json::Value| {
        let update: PolicyUpdate = serde_json::from_value(serde_json::json!({ "senders": senders })).unwrap();
        update_policy(f.deps.store.as_ref(), &f.deps.keys, &sub.sid, update)
    };
    // When it is granted another sender, any sender, or another domain
    for wider in [serde_json::json!(["Other"]), serde_json::json!(["*"]), serde_json::json!(["@other.example"])] {
        // Then the grant is a 400 naming `senders`, and nothing changed
        let e = grant(wider.clone()).await.expect_err("wider than the parent's");
        assert!(matches!(&e, Error::InvalidParameter { param, .. } if param == "senders"), "{wider}: {e:?}");
    }
    assert_eq!(f.deps.store.get_account(&sub.sid).await.unwrap().unwrap().policy.senders, parent.policy.senders);
    // And a part of the parent's is granted: its sender ID and one address at its domain
    let p = grant(serde_json::json!(["Parent", "otp@parent.example"])).await.expect("within the parent's");
    assert_eq!(p.senders, Some(vec!["Parent".to_owned(), "otp@parent.example".to_owned()]));
}

async fn failed_verifies_across_otps_pause_a_destination_until_a_success_the_operator_or_a_day(f: Fixture) {
    // Given an account whose budget of failed verifies per destination is 3 (100 by default)
    let account = f.account(None).await;
    let account = f.set(&account, serde_json::json!({ "maxFailedVerifies": 3 })).await;
    let to = us(7);
    let wrong = |sid: String| {
        let (deps, account) = (&f.deps, &account);
        async move {
            let r = verify(deps, account, VerifyTarget::RequestId(sid), "000000").await;
            assert_eq!(r.map_err(|r| r.error), Err(Error::InvalidCode));
        }
    };
    // When two wrong codes go to one OTP and one to the next (resends start fresh attempts)
    let first = f.send_sms(&account, &to).await.expect("send");
    wrong(first.clone()).await;
    wrong(first).await;
    f.clock.advance_secs(61);
    let second = f.send_sms(&account, &to).await.expect("2 failures: still under the budget");
    wrong(second).await;
    f.clock.advance_secs(61);
    // Then the destination's sends answer 478, and nothing is sent; another number is not affected
    let sent = f.outbox.messages(Some(&to)).len();
    assert_eq!(f.send_sms(&account, &to).await, Err(Error::TooManyFailures));
    assert_eq!(Error::TooManyFailures.to_string(), "Too many failed verifications for this destination");
    assert_eq!(f.outbox.messages(Some(&to)).len(), sent);
    f.send_sms(&account, &us(8)).await.expect("another destination");
    // When the operator clears it, it sends again; three more failures pause it again
    assert!(f.deps.store.clear_failures(&account.sid, &to).await.unwrap());
    let third = f.send_sms(&account, &to).await.expect("cleared");
    for _ in 0..3 {
        wrong(third.clone()).await;
    }
    f.clock.advance_secs(61);
    assert_eq!(f.send_sms(&account, &to).await, Err(Error::TooManyFailures));
    // When a day passes since the last failure, it sends again
    f.clock.advance_secs(24 * 3600);
    let fourth = f.send_sms(&account, &to).await.expect("a day later");
    // And a successful verify after two failures clears them: two more keep it under the budget
    wrong(fourth.clone()).await;
    wrong(fourth.clone()).await;
    f.verify_sent(&account, &fourth, &to).await;
    f.clock.advance_secs(61);
    let fifth = f.send_sms(&account, &to).await.expect("the success cleared the failures");
    wrong(fifth.clone()).await;
    wrong(fifth).await;
    f.clock.advance_secs(61);
    f.send_sms(&account, &to).await.expect("two failures since the success");
    // And a budget outside 1..=100 is refused, naming it
    let update: PolicyUpdate = serde_json::from_value(serde_json::json!({ "maxFailedVerifies": 101 })).unwrap();
    let e = update_policy(f.deps.store.as_ref(), &f.deps.keys, &account.sid, update).await.unwrap_err();
    assert!(matches!(&e, Error::InvalidParameter { param, .. } if param == "maxFailedVerifies"), "{e:?}");
}

async fn non_geographic_numbers_are_guarded_as_a_bucket_of_their_own(f: Fixture) {
    // Given an account whose guard pauses at 3 sends under 50 % verified, and 3 unverified sends
    // to non-geographic numbers (Iridium, +881: libphonenumber's region 001)
    let account = f.account(None).await;
    let account =
        f.set(&account, serde_json::json!({ "pumpingGuard": { "minSends": 3, "minVerifyPercent": 50 } })).await;
    let sat = |i: usize| format!("+8816123456{i:02}");
    let mut sent = vec![];
    for i in 0..3 {
        sent.push((f.send_sms(&account, &sat(i)).await.expect("send"), sat(i)));
    }
    // When a 4th goes to another +881 number
    let r = f.send_sms(&account, &sat(3)).await;
    // Then it is refused with 477 naming the region, nothing sent; US numbers are not affected
    assert_eq!(r, Err(Error::SendsPaused("001".into())));
    assert!(f.outbox.messages(Some(&sat(3))).is_empty());
    f.send_sms(&account, &us(1)).await.expect("the US is its own bucket");
    // And verifies of those OTPs count there (the sid carries the region): at 2 of 3, resumed
    f.verify_sent(&account, &sent[0].0, &sent[0].1).await;
    f.verify_sent(&account, &sent[1].0, &sent[1].1).await;
    f.send_sms(&account, &sat(3)).await.expect("resumed at 2 of 3");
}

async fn sends_spread_over_countries_meet_the_account_wide_window(f: Fixture) {
    // Given an account whose guard pauses a country at 3 unverified sends, and the account at 4
    let account = f.account(None).await;
    let guard = serde_json::json!({ "pumpingGuard": { "minSends": 3, "minVerifyPercent": 50, "accountMinSends": 4 } });
    let account = f.set(&account, guard).await;
    // And two unverified sends to each of two countries (each under its own threshold)
    let numbers = ["+14155550101", "+14155550102", "+447400123401", "+447400123402"];
    let mut sent = vec![];
    for to in numbers {
        sent.push((f.send_sms(&account, to).await.expect("under every country's threshold"), to));
    }
    // When a fifth goes to a third country
    let r = f.send_sms(&account, "+33612345678").await;
    // Then the account-wide window pauses it (477), and nothing was sent
    assert_eq!(r, Err(Error::SendsPaused("all countries".into())));
    assert_eq!(r.unwrap_err().to_string(), "Sends to all countries paused: low verification rate");
    assert!(f.outbox.messages(Some("+33612345678")).is_empty());
    // And verifies count account-wide too: at 2 of 4 verified, it sends again
    f.verify_sent(&account, &sent[0].0, sent[0].1).await;
    f.verify_sent(&account, &sent[2].0, sent[2].1).await;
    f.send_sms(&account, "+33612345678").await.expect("resumed at 50 % account-wide");
}

// --- concurrent changes ----------------------------------------------------------------------

/// An update as `POST /dev/accounts` takes it.
fn policy_update(json: serde_json::Value) -> PolicyUpdate {
    serde_json::from_value(json).expect("policy JSON")
}

/// Whether the webhook secret shown (`whsec_…`) is the one `account` has stored sealed.
fn shown_is_stored(f: &Fixture, account: &Account, shown: &str) -> bool {
    use twofa::domain::callbacks::{open_key, secret_key};
    let sealed = account.policy.webhook_secret.as_ref().expect("a sealed secret");
    open_key(&f.deps.keys, &account.sid, &sealed.0).ok() == secret_key(shown).ok()
}

async fn concurrent_updates_of_different_parts_all_stay(f: Fixture) {
    use twofa::domain::{callbacks::UrlRules, policy::update_policy_with};
    // Given a sub-account (its policy has a copy under its parent)
    let parent = f.account(None).await;
    let sub = f.account(Some(&parent)).await;
    // When eight updates, each of a different part of its policy, are made at once
    let updates = [
        serde_json::json!({ "allowedCountries": { "sms": ["US"] } }),
        serde_json::json!({ "allowedCountries": { "call": ["GB"] } }),
        serde_json::json!({ "allowedCountries": { "whatsapp": ["FR"] } }),
        serde_json::json!({ "pumpingGuard": { "minSends": 7 } }),
        serde_json::json!({ "testNumbers": [{ "to": "+14155550100", "code": "246810" }] }),
        serde_json::json!({ "senders": ["Twofa"] }),
        serde_json::json!({ "maxFailedVerifies": 9 }),
        serde_json::json!({ "rotateWebhookSecret": true }),
    ];
    let start = Arc::new(tokio::sync::Barrier::new(updates.len()));
    let tasks = updates.into_iter().map(|json| {
        let (store, keys, sid, start) = (f.deps.store.clone(), f.deps.keys.clone(), sub.sid.clone(), start.clone());
        tokio::spawn(async move {
            start.wait().await;
            update_policy_with(store.as_ref(), &keys, &sid, policy_update(json), UrlRules::Public).await
        })
    });
    let changes: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(|t| t.expect("task")).collect();
    // Then each is stored, none undone by another
    let changes: Vec<_> = changes.into_iter().map(|c| c.expect("every update succeeds")).collect();
    let read = f.deps.store.get_account_fresh(&sub.sid).await.unwrap().unwrap();
    let p = &read.policy;
    assert_eq!(p.sms_countries, Some(vec!["US".to_owned()]));
    assert_eq!(p.call_countries, Some(vec!["GB".to_owned()]));
    assert_eq!(p.whatsapp_countries, Some(vec!["FR".to_owned()]));
    assert_eq!(p.guard.min_sends, 7);
    assert_eq!(
        p.test_destination("+14155550100").and_then(|t| t.code(&f.deps.keys, &sub.sid)).unwrap().reveal(),
        "246810"
    );
    assert_eq!(p.senders, Some(vec!["Twofa".to_owned()]));
    assert_eq!(p.max_failed_verifies, 9);
    // And the webhook secret shown is the one stored
    let shown = changes.iter().find_map(|c| c.webhook_secret.as_ref()).expect("the rotated secret shown");
    assert!(shown_is_stored(&f, &read, &shown.0));
    // And the copy under the parent says the same
    let copies = f.deps.store.list_sub_accounts(&parent.sid).await.unwrap();
    assert_eq!(copies.iter().find(|a| a.sid == sub.sid).expect("the copy").policy, read.policy);
    // And the version is nowhere in what is shown
    assert!(!p.view().to_string().contains("ersion"));
}

/// An account store whose `get_account` answers the accounts as they were when it was made (a
/// process that cached them), over `inner` for everything else.
struct StaleReads {
    inner: Arc<dyn Store>,
    cached: Vec<Account>,
}

#[async_trait::async_trait]
impl twofa::ports::AccountStore for StaleReads {
    async fn get_account(&self, sid: &str) -> twofa::Result<Option<Account>> {
        match self.cached.iter().find(|a| a.sid == sid) {
            Some(a) => Ok(Some(a.clone())),
            None => self.inner.get_account(sid).await,
        }
    }
    async fn get_account_fresh(&self, sid: &str) -> twofa::Result<Option<Account>> {
        self.inner.get_account_fresh(sid).await
    }
    async fn put_account(&self, account: &Account) -> twofa::Result<()> {
        self.inner.put_account(account).await
    }
    async fn list_sub_accounts(&self, ancestor_sid: &str) -> twofa::Result<Vec<Account>> {
        self.inner.list_sub_accounts(ancestor_sid).await
    }
    async fn set_policy(&self, account: &Account, policy: &twofa::domain::policy::AccountPolicy) -> twofa::Result<()> {
        self.inner.set_policy(account, policy).await
    }
}

async fn an_update_from_a_stale_read_does_not_undo_a_newer_one(f: Fixture) {
    use twofa::domain::{callbacks::UrlRules, policy::update_policy_with};
    // Given an account, read by a process that keeps what it read
    let account = f.account(None).await;
    let stale = StaleReads { inner: f.deps.store.clone(), cached: vec![account.clone()] };
    // And a newer policy stored since (SMS to the US only)
    f.set(&account, serde_json::json!({ "allowedCountries": { "sms": ["US"] } })).await;
    // When the stale read is written back as it stands
    let r = f.deps.store.set_policy(&account, &account.policy).await;
    // Then it is refused as contended, and the newer policy stays
    assert_eq!(r, Err(Error::Contended));
    let read = f.deps.store.get_account_fresh(&account.sid).await.unwrap().unwrap();
    assert_eq!(read.policy.sms_countries, Some(vec!["US".to_owned()]));
    // When that process rotates the webhook secret and sets the guard from its stale read
    let update = policy_update(serde_json::json!({ "rotateWebhookSecret": true, "pumpingGuard": { "minSends": 3 } }));
    let change = update_policy_with(&stale, &f.deps.keys, &account.sid, update, UrlRules::Public).await.unwrap();
    // Then its change is applied over the newer policy, which stays
    let read = f.deps.store.get_account_fresh(&account.sid).await.unwrap().unwrap();
    assert_eq!(read.policy.sms_countries, Some(vec!["US".to_owned()]));
    assert_eq!(read.policy.guard.min_sends, 3);
    assert_eq!(change.policy, read.policy, "the policy answered is the one stored");
    // And the secret shown is the one stored (made by the try that was written)
    assert!(shown_is_stored(&f, &read, &change.webhook_secret.expect("a secret shown").0));
    // And on DynamoDB, another process whose 30-second cache holds the account does the same
    if let Some(dynamo) = &f.dynamo {
        let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
        let other = DynamoStore::new(client, dynamo.table());
        use twofa::ports::AccountStore;
        other.get_account(&account.sid).await.unwrap().expect("cached by the other process");
        f.set(&account, serde_json::json!({ "allowedCountries": { "call": ["GB"] } })).await;
        let update = policy_update(serde_json::json!({ "maxFailedVerifies": 5 }));
        update_policy_with(&other, &f.deps.keys, &account.sid, update, UrlRules::Public).await.unwrap();
        let read = f.deps.store.get_account_fresh(&account.sid).await.unwrap().unwrap();
        assert_eq!(read.policy.call_countries, Some(vec!["GB".to_owned()]));
        assert_eq!(read.policy.max_failed_verifies, 5);
        assert_eq!(read.policy.sms_countries, Some(vec!["US".to_owned()]));
    }
}

async fn an_account_stored_without_a_policy_version_still_updates(f: Fixture) {
    // Given an account stored as before policy versions (on DynamoDB: no `policy_version`)
    let account = f.account(None).await;
    assert_eq!(account.policy_version, 0);
    if let Some(dynamo) = &f.dynamo {
        let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
        let key = [("pk", format!("ACCOUNT#{}", account.sid)), ("sk", "A".to_owned())];
        let item = client
            .get_item()
            .table_name(dynamo.table())
            .set_key(Some(
                key.into_iter().map(|(k, v)| (k.to_owned(), aws_sdk_dynamodb::types::AttributeValue::S(v))).collect(),
            ))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .expect("the account item");
        assert!(item.contains_key("token_hash") && !item.contains_key("policy_version"));
    }
    // When its policy is changed twice
    f.set(&account, serde_json::json!({ "allowedCountries": { "sms": ["JP"] } })).await;
    let read = f.set(&account, serde_json::json!({ "pumpingGuard": { "enabled": false } })).await;
    // Then both changes are stored, each a new version
    assert_eq!(read.policy.sms_countries, Some(vec!["JP".to_owned()]));
    assert!(!read.policy.guard.enabled);
    assert_eq!(read.policy_version, 2);
}
