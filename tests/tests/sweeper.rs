//! The expiry sweeper at scale, on the embedded store (`memory::…`) and on DynamoDB
//! (`dynamodb::…`, moto at `AWS_ENDPOINT_URL`, a table per test): thousands of due OTPs spread
//! over the due index's shards are all settled by one sweep, an OTP canceled between the
//! sweeper's read and its write does not end the sweep, and (DynamoDB) the entries of the
//! version before the shards, all in the one `DUE` partition, are still swept. The deployed
//! sweepers are one per slice of the shards (`SWEEP_SLICES`, each invocation naming its slice):
//! a slice settles the OTPs of its shards and no others, and every slice at once settles every
//! due OTP exactly once (the table's stream shows one change each).

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use common::stream::StreamTail;
use futures::{stream, StreamExt};
use serde_json::{json, Value};
use twofa::{
    adapters::{
        aws::{
            aws_config,
            dynamodb::{create_table, create_table_with_stream, due_shard_of, otp_item, DynamoStore, DUE_SHARDS},
        },
        memory::MemoryStore,
    },
    domain::{
        callbacks::{sweep, SweepSlice, SWEEP_SLICES},
        ids,
        otp::{Channel, ChannelEvent, ChannelStatus, Delivery, Destination, Otp, OtpStatus},
        time::Millis,
    },
    ports::{CancelWrite, Clock, DuePage, ExpiryStore, SendPlan, Store, SystemClock},
    workers::callbacks::slice_of,
    Result,
};

/// When the OTPs were created: long past, so every one is due at the sweep's (real) now.
const T0: Millis = 1_700_000_000_000;

/// The tests' sweeps may take this long (the deployed sweeper's budget is 40 s a minute, and
/// a sweep goes on from where the last one stopped): moto sorts the whole table for every
/// Query, so reading the 513 shards of a 5,000-OTP table takes it minutes where DynamoDB takes
/// a fraction of a second.
const SWEEP_BUDGET: std::time::Duration = std::time::Duration::from_secs(600);

/// Writes in flight at once while setting up (moto serves one request at a time; this keeps
/// it busy while the test builds the next requests).
const SETUP_AT_ONCE: usize = 32;

struct Fixture {
    store: Arc<dyn Store>,
    expiry: Arc<dyn ExpiryStore>,
    dynamo: Option<Arc<DynamoStore>>,
    _turn: Option<Turn>,
}

/// The tests' turns at moto: the test that runs every slice at once puts ~500 Queries in moto's
/// one queue, which would hold the other tests' requests past their SDK timeout (a write that
/// went through, timed out and was retried is then refused, and a count is one short); so it
/// runs alone, the others beside each other.
static MOTO_TURN: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

enum Turn {
    Shared(#[allow(dead_code)] tokio::sync::RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] tokio::sync::RwLockWriteGuard<'static, ()>),
}

impl Fixture {
    fn memory() -> Self {
        let store = Arc::new(MemoryStore::new());
        Fixture { store: store.clone(), expiry: store, dynamo: None, _turn: None }
    }

    async fn dynamodb() -> Self {
        Self::dynamodb_with(false).await
    }

    /// `dynamodb`, its table with a stream (moto copies a streamed table at every
    /// transaction: only the test that reads the stream has one), moto to itself (`Turn`).
    async fn dynamodb_with_stream() -> Self {
        Self::dynamodb_with(true).await
    }

    async fn dynamodb_with(with_stream: bool) -> Self {
        let turn =
            if with_stream { Turn::Alone(MOTO_TURN.write().await) } else { Turn::Shared(MOTO_TURN.read().await) };
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok_and(|u| !u.is_empty()),
            "AWS_ENDPOINT_URL is not set: the DynamoDB sweeper tests need moto (`make test`, or \
             `make moto-up` and eval `make moto-env`)"
        );
        let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
        let table = format!("sweeper-{}", ids::new_sid(""));
        if with_stream {
            create_table_with_stream(&client, &table).await.expect("create the table in moto");
        } else {
            create_table(&client, &table).await.expect("create the table in moto");
        }
        let store = Arc::new(DynamoStore::new(client, table));
        Fixture { store: store.clone(), expiry: store.clone(), dynamo: Some(store), _turn: Some(turn) }
    }

    /// `n` watched OTPs of `accounts`, created at `T0` with a 5-minute timeout; answered as
    /// (account, OTP sid). On DynamoDB each is the item a send puts (`otp_item`), loaded 25 to
    /// a `BatchWriteItem`: moto copies the whole table for every transaction, so 5,000 sends
    /// would take many minutes. The embedded store commits them as sends.
    async fn due_otps(&self, accounts: &[String], n: usize) -> Vec<(String, String)> {
        self.store_otps((0..n).map(|i| watched_otp(&accounts[i % accounts.len()], i)).collect()).await
    }

    /// `due_otps` of `n` OTPs of `account` whose due shard `in_shards` holds.
    async fn due_otps_in(&self, account: &str, n: usize, in_shards: impl Fn(usize) -> bool) -> Vec<(String, String)> {
        let otps = (0..n)
            .map(|i| std::iter::repeat_with(|| watched_otp(account, i)).find(|o| in_shards(shard_of(&o.sid))).unwrap())
            .collect();
        self.store_otps(otps).await
    }

    async fn store_otps(&self, otps: Vec<Otp>) -> Vec<(String, String)> {
        let ids: Vec<(String, String)> = otps.iter().map(|o| (o.account_sid.clone(), o.sid.clone())).collect();
        match &self.dynamo {
            Some(store) => {
                let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
                let batches: Vec<Vec<WriteRequest>> = otps
                    .chunks(25)
                    .map(|chunk| chunk.iter().map(|otp| put(otp_item(otp).expect("the OTP's item"))).collect())
                    .collect();
                stream::iter(batches)
                    .map(|batch| batch_write(&client, store.table(), batch))
                    .buffer_unordered(SETUP_AT_ONCE)
                    .collect::<Vec<_>>()
                    .await;
            }
            None => {
                stream::iter(otps)
                    .map(|otp| {
                        let store = self.store.clone();
                        async move { store.commit_send(&plan(otp)).await.expect("commit the send") }
                    })
                    .buffer_unordered(SETUP_AT_ONCE)
                    .collect::<Vec<_>>()
                    .await;
            }
        }
        ids
    }

    /// How many due OTPs the sweep test makes: 5,000 on the embedded store. On moto 600 (more
    /// than a page, so the old single-partition sweep stopped at its refusal), or
    /// `TWOFA_SWEEP_TEST_OTPS`: moto sorts the whole table for every Query, so one sweep (513
    /// Queries) of 5,000 took it 254 s on a busy 2-core machine (the test 307 s); of 1,000, 46 s.
    fn scale(&self) -> usize {
        match self.dynamo {
            None => 5_000,
            Some(_) => std::env::var("TWOFA_SWEEP_TEST_OTPS").ok().and_then(|n| n.parse().ok()).unwrap_or(600),
        }
    }

    /// How many OTPs are still in the due index: on DynamoDB a Scan of the table for entries
    /// (one request, where reading the 513 shards again takes moto minutes); on the embedded
    /// store what its one shard answers at the sweeper's now.
    async fn left_due(&self) -> usize {
        match &self.dynamo {
            Some(store) => due_partitions(store).await.values().sum(),
            None => self.expiry.due_otps(0, SystemClock.now_ms(), usize::MAX, None).await.unwrap().due.len(),
        }
    }

    async fn status(&self, (account, sid): &(String, String)) -> OtpStatus {
        self.store.get_otp(account, sid).await.unwrap().expect("the OTP").status
    }

    /// Move every entry of the due index to the one `DUE` partition, as the version before the
    /// shards wrote them (DynamoDB only).
    async fn move_to_legacy_partition(&self) {
        let store = self.dynamo.as_ref().expect("a DynamoDB store");
        let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
        let keys = client
            .scan()
            .table_name(store.table())
            .filter_expression("attribute_exists(gsi2pk)")
            .projection_expression("pk, sk")
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        stream::iter(keys)
            .map(|key| {
                let client = client.clone();
                let table = store.table().to_owned();
                async move {
                    client
                        .update_item()
                        .table_name(table)
                        .set_key(Some(key.expect("scan")))
                        .update_expression("SET gsi2pk = :legacy")
                        .expression_attribute_values(":legacy", AttributeValue::S("DUE".into()))
                        .send()
                        .await
                        .expect("put the entry in the legacy partition")
                }
            })
            .buffer_unordered(SETUP_AT_ONCE)
            .collect::<Vec<_>>()
            .await;
    }
}

fn put(item: std::collections::HashMap<String, AttributeValue>) -> WriteRequest {
    WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(item)).build().expect("a put")).build()
}

/// One `BatchWriteItem`, and again with what it left unprocessed until nothing is.
async fn batch_write(client: &aws_sdk_dynamodb::Client, table: &str, mut batch: Vec<WriteRequest>) {
    while !batch.is_empty() {
        let out = client.batch_write_item().request_items(table, batch).send().await.expect("BatchWriteItem");
        batch = out.unprocessed_items.and_then(|mut u| u.remove(table)).unwrap_or_default();
    }
}

async fn drop_table(store: &DynamoStore) {
    let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
    client.delete_table().table_name(store.table()).send().await.expect("delete the table");
}

/// The due shard of an OTP the current version stored (DynamoDB's `DUE#{shard}`; the
/// embedded store is one shard, but the slices are cut the same way).
fn shard_of(sid: &str) -> usize {
    due_shard_of(sid).strip_prefix("DUE#").and_then(|s| s.parse().ok()).expect("a DUE# shard")
}

/// The legacy `DUE` partition, which the sweeper reads as this shard.
const LEGACY_SHARD: usize = DUE_SHARDS;

/// The event a deployed sweeper's schedule delivers (its `Input`, template.yaml).
fn schedule_input(slice: usize) -> Value {
    json!({ "sweep": { "slice": slice, "slices": SWEEP_SLICES } })
}

/// The event the schedule of the versions before slices delivered (no `Input`).
fn unsliced_schedule() -> Value {
    json!({ "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "time": "2026-12-01T19:41:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/twofa-sweeper"], "detail": {} })
}

/// This process's CPU time so far (user + system, /proc/self/stat; None elsewhere): what the
/// sweeper's side of a sweep costs, moto being another process.
fn cpu_time() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(std::time::Duration::from_millis(ticks * 10))
}

/// A watched SMS OTP (its account names a callback), pending from `T0` for 5 minutes, to a
/// number of its own.
fn watched_otp(account: &str, i: usize) -> Otp {
    let sid = ids::otp_sid(T0);
    Otp {
        code_hash: vec![7; 32],
        sealed_code: vec![1, 2, 3, 4],
        account_sid: account.to_owned(),
        service: "2FA".into(),
        delivery: Delivery::sms("Twofa", format!("+1415{i:07}"), "Your code: {code}"),
        length: 6,
        country: Some("US".into()),
        status: OtpStatus::Pending,
        created_ms: T0,
        updated_ms: T0,
        expires_ms: T0 + 300_000,
        guard_time: None,
        cancel_at_ms: None,
        attempts: 0,
        checks: vec![],
        events: vec![ChannelEvent {
            sid: ids::new_sid(ids::EVENT),
            at_ms: T0,
            channel: Channel::Sms,
            sender: "Twofa".into(),
            recipient: format!("+1415{i:07}"),
            target_sid: None,
            status: ChannelStatus::Queued,
            error_code: None,
            error_message: None,
            encoding: None,
            segments: None,
            route: None,
        }],
        workflow: None,
        watched: true,
        clears_failures: false,
        guarded: false,
        sid,
    }
}

/// The plainest send of `otp`: its OTP and its destination's pointer.
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

/// The store as the sweeper sees it, with one race: the first OTP of the first page read
/// (`full_only`: of the first full page, more following it) is canceled after the read and
/// before the sweeper's write, as a cancel arriving at that moment would be. The sweeper's
/// write of it is then refused by the store.
struct CanceledMeanwhile {
    store: Arc<dyn Store>,
    expiry: Arc<dyn ExpiryStore>,
    full_only: bool,
    canceled: Mutex<Option<(String, String)>>,
}

impl CanceledMeanwhile {
    fn new(f: &Fixture, full_only: bool) -> Self {
        CanceledMeanwhile { store: f.store.clone(), expiry: f.expiry.clone(), full_only, canceled: Mutex::default() }
    }

    fn canceled(&self) -> (String, String) {
        self.canceled.lock().unwrap().clone().expect("an OTP was canceled meanwhile")
    }
}

#[async_trait]
impl ExpiryStore for CanceledMeanwhile {
    fn due_shards(&self) -> usize {
        self.expiry.due_shards()
    }

    async fn due_otps(&self, shard: usize, now: Millis, limit: usize, after: Option<&str>) -> Result<DuePage> {
        let page = self.expiry.due_otps(shard, now, limit, after).await?;
        let first = page.due.first().filter(|_| page.next.is_some() || !self.full_only);
        let take = first.and_then(|first| {
            let mut canceled = self.canceled.lock().unwrap();
            canceled.is_none().then(|| canceled.insert(first.clone()).clone())
        });
        if let Some((account, sid)) = take {
            // Canceled while it was still pending (T0 + 1 ms, before its timeout).
            let write = self.store.cancel_otp(&account, &sid, T0 + 1).await?;
            assert!(matches!(write, CancelWrite::Canceled), "the OTP was pending, so the cancel goes through");
        }
        Ok(page)
    }

    async fn settle(&self, account_sid: &str, otp_sid: &str, now: Millis) -> Result<bool> {
        self.expiry.settle(account_sid, otp_sid, now).await
    }
}

macro_rules! both_stores {
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

both_stores!(thousands_of_due_otps_are_all_settled_by_one_sweep_though_one_is_canceled_between_read_and_write);

async fn thousands_of_due_otps_are_all_settled_by_one_sweep_though_one_is_canceled_between_read_and_write(f: Fixture) {
    // Given 5,000 watched OTPs of two accounts (600 on moto, see `scale`), all past their
    // timeout: more than a page (500) of the embedded store's one shard, or of the old single
    // `DUE` partition
    let n = f.scale();
    let accounts = [ids::new_sid(ids::ACCOUNT), ids::new_sid(ids::ACCOUNT)];
    let started = std::time::Instant::now();
    let otps = f.due_otps(&accounts, n).await;
    println!("{n} due OTPs stored in {:?}", started.elapsed());
    // And, on DynamoDB, spread over the due index's shards (not one partition)
    if let Some(store) = &f.dynamo {
        let shards = due_partitions(store).await;
        assert_eq!(shards.values().sum::<usize>(), n);
        assert!(shards.keys().all(|k| k.starts_with("DUE#")), "{shards:?}");
        // (n sids thrown at random over 512 shards fill 512 × (1 − e^(−n/512)) of them on
        // average, within a few percent)
        let filled = 512.0 * (1.0 - (-(n as f64) / 512.0).exp());
        assert!(shards.len() as f64 >= 0.9 * filled, "{n} OTPs in only {} partitions: {shards:?}", shards.len());
        let mean = n.div_ceil(512);
        assert!(shards.values().all(|&k| k <= 4 * mean + 4), "a crowded shard: {shards:?}");
    }
    // When one sweep runs, invoked as the versions before slices were (no slice: every shard),
    // and the first OTP of the first page it reads is canceled between that read and the
    // sweeper's write
    let whole = slice_of(&unsliced_schedule()).expect("the schedule's own event");
    let racing = CanceledMeanwhile::new(&f, false);
    let started = std::time::Instant::now();
    let settled = sweep(&racing, whole, SystemClock.now_ms(), SWEEP_BUDGET).await.expect("sweep");
    println!("one sweep settled {settled} in {:?}", started.elapsed());
    // Then every other OTP is settled by that one sweep: the refused write ended nothing
    assert_eq!(settled, n - 1);
    let canceled = racing.canceled();
    assert_eq!(f.status(&canceled).await, OtpStatus::Canceled);
    for otp in otps.iter().filter(|o| **o != canceled).step_by((n / 20).max(1)) {
        assert_eq!(f.status(otp).await, OtpStatus::Expired, "{otp:?}");
    }
    // And nothing is left due
    assert_eq!(f.left_due().await, 0);
}

/// How many entries each partition of the due index holds (a Scan of the table: what the
/// index would hold, whatever the sweeper reads).
async fn due_partitions(store: &DynamoStore) -> std::collections::BTreeMap<String, usize> {
    let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
    let items = client
        .scan()
        .table_name(store.table())
        .filter_expression("attribute_exists(gsi2pk)")
        .projection_expression("gsi2pk")
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await;
    let mut partitions = std::collections::BTreeMap::new();
    for item in items {
        let item = item.expect("scan");
        let pk = item["gsi2pk"].as_s().expect("a string key").clone();
        *partitions.entry(pk).or_insert(0) += 1;
    }
    partitions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_due_entries_of_the_version_before_the_shards_are_still_swept() {
    // Given 510 watched OTPs past their timeout as the version before the shards stored them:
    // every entry in the one `DUE` partition (more than a page of it), and 10 in the shards
    let f = Fixture::dynamodb().await;
    let store = f.dynamo.clone().expect("a DynamoDB store");
    let account = ids::new_sid(ids::ACCOUNT);
    let legacy = f.due_otps(std::slice::from_ref(&account), 510).await;
    f.move_to_legacy_partition().await;
    let sharded = f.due_otps(&[ids::new_sid(ids::ACCOUNT)], 10).await;
    let partitions = due_partitions(&store).await;
    assert_eq!(partitions.get("DUE"), Some(&510), "{partitions:?}");
    // When one sweep of every shard runs (the unsliced schedule), and the first OTP of the
    // legacy partition's first (full) page is canceled between that read and the sweeper's write
    let racing = CanceledMeanwhile::new(&f, true);
    let whole = slice_of(&unsliced_schedule()).expect("the schedule's own event");
    let settled = sweep(&racing, whole, SystemClock.now_ms(), SWEEP_BUDGET).await.expect("sweep");
    // Then all the others, old and new, are settled by that one sweep
    assert_eq!(settled, 519);
    let canceled = racing.canceled();
    assert!(legacy.contains(&canceled), "the full page was the legacy partition's");
    assert_eq!(f.status(&canceled).await, OtpStatus::Canceled);
    for otp in legacy.iter().filter(|o| **o != canceled).step_by(26).chain(&sharded) {
        assert_eq!(f.status(otp).await, OtpStatus::Expired, "{otp:?}");
    }
    // And nothing is left due
    assert_eq!(f.left_due().await, 0);
    drop_table(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_a_slice_settles_the_due_otps_of_its_shards_and_no_others() {
    // Given 30 due OTPs whose entries the version before the shards wrote (the `DUE`
    // partition), and a quarter of the test's scale (150 on moto) due in the shards of slice 5
    // of 32 and as many in the other slices' shards
    let f = Fixture::dynamodb().await;
    let store = f.dynamo.clone().expect("a DynamoDB store");
    let account = ids::new_sid(ids::ACCOUNT);
    let legacy = f.due_otps(std::slice::from_ref(&account), 30).await;
    f.move_to_legacy_partition().await;
    let five = slice_of(&schedule_input(5)).expect("slice 5's schedule");
    let part = f.scale() / 4;
    let mine = f.due_otps_in(&account, part, |s| five.holds(s)).await;
    let others = f.due_otps_in(&account, part, |s| !five.holds(s)).await;
    // When slice 5's schedule runs its sweep
    let (started, cpu) = (std::time::Instant::now(), cpu_time());
    let settled = sweep(f.expiry.as_ref(), five, SystemClock.now_ms(), SWEEP_BUDGET).await.expect("sweep");
    let took = started.elapsed();
    let cpu = cpu.zip(cpu_time()).map(|(a, b)| b - a).unwrap_or_default();
    println!(
        "slice 5 of {SWEEP_SLICES} (16 shards) settled {settled} in {took:?}: {:.0} a second on moto; \
         this process's CPU {cpu:?}, {:.0} us a settle",
        settled as f64 / took.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / settled.max(1) as f64
    );
    // Then it settles every OTP of its shards
    assert_eq!(settled, part);
    for otp in &mine {
        assert_eq!(f.status(otp).await, OtpStatus::Expired, "{otp:?}");
    }
    // And no other: the other slices' and the legacy partition's are pending and still due
    for otp in others.iter().chain(&legacy) {
        assert_eq!(f.status(otp).await, OtpStatus::Pending, "{otp:?}");
    }
    assert_eq!(f.left_due().await, part + legacy.len());
    // When slice 0's schedule runs its sweep
    let zero = slice_of(&schedule_input(0)).expect("slice 0's schedule");
    assert!(zero.holds(LEGACY_SHARD));
    let settled = sweep(f.expiry.as_ref(), zero, SystemClock.now_ms(), SWEEP_BUDGET).await.expect("sweep");
    // Then it settles the legacy partition's OTPs and the others of its own shards, no more
    let (in_zero, elsewhere): (Vec<_>, Vec<_>) = others.iter().partition(|(_, sid)| zero.holds(shard_of(sid)));
    assert_eq!(settled, legacy.len() + in_zero.len());
    for otp in legacy.iter().chain(in_zero) {
        assert_eq!(f.status(otp).await, OtpStatus::Expired, "{otp:?}");
    }
    for otp in &elsewhere {
        assert_eq!(f.status(otp).await, OtpStatus::Pending, "{otp:?}");
    }
    assert_eq!(f.left_due().await, elsewhere.len());
    drop_table(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_every_slice_at_once_settles_every_due_otp_exactly_once() {
    // Given, on a table with a stream, 30 due OTPs in the legacy `DUE` partition and half the
    // test's scale (300 on moto) due over the shards, of two accounts
    let f = Fixture::dynamodb_with_stream().await;
    let store = f.dynamo.clone().expect("a DynamoDB store");
    let accounts = [ids::new_sid(ids::ACCOUNT), ids::new_sid(ids::ACCOUNT)];
    let legacy = f.due_otps(&accounts, 30).await;
    f.move_to_legacy_partition().await;
    let sharded = f.due_otps(&accounts, f.scale() / 2).await;
    let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
    let tail = StreamTail::of(&client, store.table()).await;
    let _ = tail.next_batch().await; // what the setup wrote
    let shard =
        |(_, sid): &(String, String)| if legacy.iter().any(|(_, l)| l == sid) { LEGACY_SHARD } else { shard_of(sid) };
    let all: Vec<&(String, String)> = legacy.iter().chain(&sharded).collect();
    // When the 32 schedules' sweeps run at once, each given its slice by its schedule's input
    let slices: Vec<SweepSlice> =
        (0..SWEEP_SLICES).map(|i| slice_of(&schedule_input(i)).expect("a slice's schedule")).collect();
    let (started, now) = (std::time::Instant::now(), SystemClock.now_ms());
    let settled: Vec<usize> = futures::future::join_all(slices.iter().map(|&slice| {
        let expiry = f.expiry.clone();
        async move { sweep(expiry.as_ref(), slice, now, SWEEP_BUDGET).await.expect("sweep") }
    }))
    .await;
    let took = started.elapsed();
    println!(
        "{SWEEP_SLICES} slices at once settled {} in {took:?}: {:.0} a second on moto (one thread serves them all)",
        all.len(),
        all.len() as f64 / took.as_secs_f64()
    );
    // Then each slice settled the OTPs of its shards (slice 0 the legacy partition's too)
    for (slice, n) in slices.iter().zip(&settled) {
        let want = all.iter().filter(|o| slice.holds(shard(o))).count();
        assert_eq!(*n, want, "slice {} of {}", slice.slice(), slice.slices());
    }
    assert_eq!(settled.iter().sum::<usize>(), all.len());
    // And every due OTP is expired (read back: the legacy ones and a sample of the others),
    // and nothing is left due
    for otp in legacy.iter().chain(sharded.iter().step_by(10)) {
        assert_eq!(f.status(otp).await, OtpStatus::Expired, "{otp:?}");
    }
    assert_eq!(f.left_due().await, 0);
    // And the stream (what the callbacks are made from) shows each OTP turned from pending to
    // expired once, and nothing else of it
    let batch = tail.next_batch().await;
    let mut changes: std::collections::BTreeMap<String, Vec<(String, String)>> = Default::default();
    for record in batch["Records"].as_array().expect("records") {
        let image = &record["dynamodb"];
        let status = |side: &str| image[side]["status"]["S"].as_str().unwrap_or("-").to_owned();
        let sid = image["NewImage"]["sid"]["S"].as_str().expect("an OTP's sid").to_owned();
        changes.entry(sid).or_default().push((status("OldImage"), status("NewImage")));
    }
    for (_, sid) in &all {
        assert_eq!(changes.remove(sid), Some(vec![("pending".to_owned(), "expired".to_owned())]), "{sid}");
    }
    assert!(changes.is_empty(), "changes of OTPs no sweep was given: {changes:?}");
    drop_table(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_the_embedded_store_is_one_shard_which_slice_0_sweeps_and_no_other() {
    // Given the embedded store (one shard, `due_shards`) with 100 due OTPs
    let f = Fixture::memory();
    let otps = f.due_otps(&[ids::new_sid(ids::ACCOUNT)], 100).await;
    let now = SystemClock.now_ms();
    // When every slice but slice 0 sweeps
    for i in 1..SWEEP_SLICES {
        let slice = slice_of(&schedule_input(i)).expect("a slice's schedule");
        // Then none settles anything
        assert_eq!(sweep(f.expiry.as_ref(), slice, now, SWEEP_BUDGET).await.expect("sweep"), 0, "slice {i}");
    }
    assert_eq!(f.left_due().await, 100);
    // When slice 0 sweeps, then it settles them all
    let zero = slice_of(&schedule_input(0)).expect("slice 0's schedule");
    assert_eq!(sweep(f.expiry.as_ref(), zero, now, SWEEP_BUDGET).await.expect("sweep"), 100);
    for otp in &otps {
        assert_eq!(f.status(otp).await, OtpStatus::Expired, "{otp:?}");
    }
    assert_eq!(f.left_due().await, 0);
}
