//! The pumping guard on DynamoDB (moto at `AWS_ENDPOINT_URL`), off the request path: sends and
//! verifies write no guard counter; the table's stream worker counts them, one `ADD` per
//! counter per batch; a send reads the window eventually consistent, kept a while per process.
//! (What the guard decides is held to the embedded store's in policy_conformance.rs.)

mod common;

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use common::stream::StreamTail;
use twofa::{
    adapters::{
        aws::{
            aws_config,
            dynamodb::{create_table_with_stream, DynamoStore},
        },
        clock::AdjustableClock,
        outbox::{Outbox, OutboxMode},
    },
    domain::{
        account::Account,
        crypto::Keys,
        guard::{self, GuardCount, GuardKey, GUARD_CACHE_MS},
        ids,
        otp::Delivery,
        policy::{update_policy, PolicyUpdate},
        send::{send, SendRequest},
        verify::{verify, VerifyTarget},
    },
    ports::{Clock, Deps, NoScheduler, OtpStore, SnapshotRequest},
    workers::callbacks::count_guard_of,
    Error,
};

/// A clock that moves only when told (the window cache's: the test takes its own time on moto).
#[derive(Default)]
struct StoppedClock(AtomicI64);

impl Clock for StoppedClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct World {
    deps: Deps,
    cache_clock: Arc<StoppedClock>,
    store: Arc<DynamoStore>,
    ddb: aws_sdk_dynamodb::Client,
    outbox: Arc<Outbox>,
    clock: Arc<AdjustableClock>,
    stream: StreamTail,
    account: Account,
}

/// A table with its stream, an account whose guard pauses a country after `min_sends` sends
/// below `percent` % verified, and a store that keeps the guard's windows for `cache`.
async fn world(cache: Duration, min_sends: u32, percent: u32) -> World {
    let ddb = aws_sdk_dynamodb::Client::new(&aws_config().await);
    let table = format!("guard-{}", ids::new_sid(""));
    create_table_with_stream(&ddb, &table).await.expect("create the table in moto");
    let clock = Arc::new(AdjustableClock::default());
    let cache_clock = Arc::new(StoppedClock::default());
    let store = Arc::new(DynamoStore::new(ddb.clone(), table.clone()).with_guard_cache(cache, cache_clock.clone()));
    let outbox = Arc::new(Outbox::new(clock.clone()));
    let deps = Deps {
        store: store.clone(),
        dispatcher: outbox.clone(),
        clock: clock.clone(),
        keys: Arc::new(Keys::random()),
        scheduler: Arc::new(NoScheduler),
    };
    let account = Account::new(ids::new_sid(ids::ACCOUNT), "token", &deps.keys, None, 0);
    deps.store.put_account(&account).await.expect("account");
    let update: PolicyUpdate = serde_json::from_value(
        serde_json::json!({ "pumpingGuard": { "minSends": min_sends, "minVerifyPercent": percent } }),
    )
    .unwrap();
    update_policy(deps.store.as_ref(), &deps.keys, &account.sid, update).await.expect("policy");
    let account = deps.store.get_account(&account.sid).await.unwrap().unwrap();
    let stream = StreamTail::of(&ddb, &table).await;
    World { deps, cache_clock, store, ddb, outbox, clock, stream, account }
}

impl World {
    async fn send(&self, to: &str) -> Result<String, Error> {
        let req = SendRequest {
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
        };
        send(&self.deps, &self.account, req).await
    }

    async fn send_owned(&self, to: String) -> Result<String, Error> {
        self.send(&to).await
    }

    async fn verify(&self, sid: &str, to: &str) {
        let msg = self.outbox.messages(Some(to)).into_iter().next().expect("a message");
        let code: String = msg.body.chars().filter(char::is_ascii_digit).collect();
        verify(&self.deps, &self.account, VerifyTarget::RequestId(sid.to_owned()), &code).await.expect("verified");
    }

    /// The stream worker's counts of everything stored so far; how many counters it wrote.
    async fn count_stream(&self) -> usize {
        count_guard_of(&self.store, self.stream.next_batch().await).await.expect("guard counted")
    }

    /// The US window's totals now, read past any cache (a store of its own).
    async fn us_window(&self) -> GuardCount {
        let fresh =
            DynamoStore::new(self.ddb.clone(), self.store.table()).with_guard_cache(Duration::ZERO, self.clock.clone());
        let keys = guard::window(&self.account.sid, "US", self.clock.now_ms());
        let snap = fresh
            .snapshot(&SnapshotRequest {
                account_sid: &self.account.sid,
                service: "2FA",
                to: "+14155550000",
                limit_names: &[],
                counters: &[],
                idempotency_key: None,
                guard: &keys,
            })
            .await
            .expect("snapshot");
        guard::total(&snap.guard)
    }

    /// Every pumping-guard counter item in the table.
    async fn guard_items(&self) -> usize {
        let out = self
            .ddb
            .scan()
            .table_name(self.store.table())
            .filter_expression("begins_with(pk, :g)")
            .expression_attribute_values(":g", aws_sdk_dynamodb::types::AttributeValue::S("GUARD#".into()))
            .send()
            .await
            .expect("scan");
        out.items.unwrap_or_default().len()
    }

    async fn drop(&self) {
        self.ddb.delete_table().table_name(self.store.table()).send().await.expect("delete the table");
    }
}

fn us(i: usize) -> String {
    format!("+1415555{i:04}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_send_and_verify_write_no_guard_counter_and_the_stream_counts_them() {
    let w = world(Duration::ZERO, 10, 50).await;
    // When a guarded SMS is sent
    let before = w.store.calls();
    let sid = w.send(&us(1)).await.expect("send");
    // Then the send read the window beside its snapshot and wrote one transaction and its
    // dispatch's event, and no guard counter exists
    let c = w.store.calls() - before;
    assert_eq!((c.batch_get_item, c.transact_write_items, c.update_item, c.put_item), (2, 1, 1, 1), "{c:?}");
    assert_eq!(w.guard_items().await, 0, "the send's transaction holds no guard counter");
    // When it is verified
    let before = w.store.calls();
    w.verify(&sid, &us(1)).await;
    // Then that is single conditional writes (the wrong-code count refused, then the verify),
    // no transaction, and still no guard counter
    let c = w.store.calls() - before;
    assert_eq!((c.update_item, c.transact_write_items, c.reads()), (2, 0, 0), "{c:?}");
    assert_eq!(w.guard_items().await, 0);
    // When the stream worker takes the batch: one write per counter (the US and account-wide)
    assert_eq!(w.count_stream().await, 2);
    // Then the window counts the send and the verify
    assert_eq!(w.us_window().await, GuardCount { sends: 1, verifies: 1 });
    assert_eq!(w.guard_items().await, 2);
    // And a batch with nothing new counts nothing
    assert_eq!(w.count_stream().await, 0);
    w.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stream_batches_adding_to_one_counter_all_count() {
    let w = world(Duration::ZERO, 10, 50).await;
    // Given 24 stream batches that each count 1 send and 2 verifies in the same counter item
    let key = GuardKey {
        account_sid: w.account.sid.clone(),
        country: "US".into(),
        bucket: guard::bucket(w.clock.now_ms()),
        shard: 3,
    };
    let count = GuardCount { sends: 1, verifies: 2 };
    // When they write at once
    let writes = (0..24).map(|_| {
        let (store, key) = (w.store.clone(), key.clone());
        tokio::spawn(async move { store.add_guard_counts(&[(key, count)]).await })
    });
    for r in futures::future::join_all(writes).await {
        r.unwrap().expect("counted");
    }
    // Then the counter holds every one of them (ADD is atomic: none lost to another)
    assert_eq!(w.us_window().await, GuardCount { sends: 24, verifies: 48 });
    assert_eq!(w.guard_items().await, 1);
    w.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_reads_the_window_again_once_its_copy_is_older_than_the_cache_time() {
    // Given an account paused after 2 unverified sends, and a store that keeps windows 1 s
    let w = world(Duration::from_millis(GUARD_CACHE_MS as u64), 2, 50).await;
    w.send(&us(1)).await.expect("first send");
    w.send(&us(2)).await.expect("second send: the window was read before either counted");
    assert_eq!(w.count_stream().await, 2);
    // When a third send comes within the cache time
    let before = w.store.calls();
    let r = w.send(&us(3)).await;
    // Then it used this process's copy (one read: the snapshot) and did not see the 2 sends
    let c = w.store.calls() - before;
    assert_eq!(c.batch_get_item, 1, "{c:?}");
    r.expect("admitted on the copy read before the sends were counted");
    assert_eq!(w.count_stream().await, 2);
    // When the cache time has passed
    w.cache_clock.0.fetch_add(GUARD_CACHE_MS, Ordering::SeqCst);
    let before = w.store.calls();
    let r = w.send(&us(4)).await;
    // Then the window is read again (a second BatchGetItem) and the 3 unverified sends pause it
    let c = w.store.calls() - before;
    assert_eq!(c.batch_get_item, 2, "{c:?}");
    assert_eq!(r, Err(Error::SendsPaused("US".into())));
    w.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undone_send_takes_its_count_back_whenever_the_stream_counts_it() {
    let w = world(Duration::ZERO, 10, 50).await;
    // Given a provider that is down: the send is committed, then undone (503)
    w.outbox.set_mode(OutboxMode::Down);
    assert_eq!(w.send(&us(1)).await, Err(Error::Unavailable));
    // When the stream worker counts the OTP's insert after the undo took it back
    w.count_stream().await;
    // Then the window holds no send (the undo's -1 and the stream's +1, maybe in two shards)
    assert_eq!(w.us_window().await, GuardCount { sends: 0, verifies: 0 });
    // And a send that goes out counts as one
    w.outbox.set_mode(OutboxMode::Deliver);
    w.send(&us(2)).await.expect("send");
    w.count_stream().await;
    assert_eq!(w.us_window().await, GuardCount { sends: 1, verifies: 0 });
    w.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_of_a_cold_process_read_the_window_once() {
    // Given a process that has read no window yet
    let w = world(Duration::from_millis(GUARD_CACHE_MS as u64), 100, 20).await;
    // When 10 guarded sends to one country run at once
    let before = w.store.calls();
    let sends = futures::future::join_all((0..10).map(|i| w.send_owned(us(i)))).await;
    // Then each read its snapshot, and the window was read once for all of them
    assert!(sends.iter().all(Result::is_ok), "{sends:?}");
    let c = w.store.calls() - before;
    assert_eq!(c.batch_get_item, 11, "{c:?}");
    w.drop().await;
}
