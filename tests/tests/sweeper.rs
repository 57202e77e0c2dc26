//! The expiry sweeper at scale, on the embedded store (`memory::…`) and on DynamoDB
//! (`dynamodb::…`, moto at `AWS_ENDPOINT_URL`, a table per test): thousands of due OTPs spread
//! over the due index's shards are all settled by one sweep, an OTP canceled between the
//! sweeper's read and its write does not end the sweep, and (DynamoDB) the entries of the
//! version before the shards, all in the one `DUE` partition, are still swept.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use futures::{stream, StreamExt};
use twofa::{
    adapters::{
        aws::{
            aws_config,
            dynamodb::{create_table, otp_item, DynamoStore},
        },
        memory::MemoryStore,
    },
    domain::{
        callbacks::sweep,
        ids,
        otp::{Channel, ChannelEvent, ChannelStatus, Delivery, Destination, Otp, OtpStatus},
        time::Millis,
    },
    ports::{CancelWrite, Clock, DuePage, ExpiryStore, SendPlan, Store, SystemClock},
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
}

impl Fixture {
    fn memory() -> Self {
        let store = Arc::new(MemoryStore::new());
        Fixture { store: store.clone(), expiry: store, dynamo: None }
    }

    async fn dynamodb() -> Self {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok_and(|u| !u.is_empty()),
            "AWS_ENDPOINT_URL is not set: the DynamoDB sweeper tests need moto (`make test`, or \
             `make moto-up` and eval `make moto-env`)"
        );
        let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
        let table = format!("sweeper-{}", ids::new_sid(""));
        create_table(&client, &table).await.expect("create the table in moto");
        let store = Arc::new(DynamoStore::new(client, table));
        Fixture { store: store.clone(), expiry: store.clone(), dynamo: Some(store) }
    }

    /// `n` watched OTPs of `accounts`, created at `T0` with a 5-minute timeout; answered as
    /// (account, OTP sid). On DynamoDB each is the item a send puts (`otp_item`), loaded 25 to
    /// a `BatchWriteItem`: moto copies the whole table for every transaction, so 5,000 sends
    /// would take many minutes. The embedded store commits them as sends.
    async fn due_otps(&self, accounts: &[String], n: usize) -> Vec<(String, String)> {
        let otps: Vec<Otp> = (0..n).map(|i| watched_otp(&accounts[i % accounts.len()], i)).collect();
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
    // When one sweep runs, and the first OTP of the first page it reads is canceled between
    // that read and the sweeper's write
    let racing = CanceledMeanwhile::new(&f, false);
    let started = std::time::Instant::now();
    let settled = sweep(&racing, SystemClock.now_ms(), SWEEP_BUDGET).await.expect("sweep");
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
    let sharded = f.due_otps(&[ids::new_sid(ids::ACCOUNT)], 10).await;
    let partitions = due_partitions(&store).await;
    assert_eq!(partitions.get("DUE"), Some(&510), "{partitions:?}");
    // When one sweep runs, and the first OTP of the legacy partition's first (full) page is
    // canceled between that read and the sweeper's write
    let racing = CanceledMeanwhile::new(&f, true);
    let settled = sweep(&racing, SystemClock.now_ms(), SWEEP_BUDGET).await.expect("sweep");
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
