//! Insights on DynamoDB (moto at `AWS_ENDPOINT_URL`): sends, verifies and delivery outcomes
//! write no insight counter on the request path; the table's stream worker counts them, a few
//! `ADD`s per batch; a refusal is counted as it is answered; the insights API reads the sums.
//! (What is counted is held to the embedded store's in api_insights.rs.)

mod common;

use std::sync::Arc;

use axum::{body::Body, http::Request};
use common::stream::StreamTail;
use serde_json::Value;
use tower::ServiceExt;
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
        ids,
        insights::{self, Cell, Counts, Granularity, InsightsParams, HOUR_MS},
        otp::{Channel, ChannelStatus, Delivery},
        receipts::Receipt,
        send::{send, SendRequest},
        verify::{verify, VerifyTarget},
    },
    ports::{Clock, Deps, InsightsStore, NoScheduler, OtpStore, ReceiptStore},
    workers::callbacks::count_insights_of,
    Error,
};

const TOKEN: &str = "token";

struct World {
    deps: Deps,
    store: Arc<DynamoStore>,
    ddb: aws_sdk_dynamodb::Client,
    outbox: Arc<Outbox>,
    clock: Arc<AdjustableClock>,
    stream: StreamTail,
    account: Account,
}

async fn world() -> World {
    let ddb = aws_sdk_dynamodb::Client::new(&aws_config().await);
    let table = format!("insights-{}", ids::new_sid(""));
    create_table_with_stream(&ddb, &table).await.expect("create the table in moto");
    let clock = Arc::new(AdjustableClock::default());
    let store = Arc::new(DynamoStore::new(ddb.clone(), table.clone()));
    let outbox = Arc::new(Outbox::new(clock.clone()));
    let deps = Deps {
        store: store.clone(),
        dispatcher: outbox.clone(),
        clock: clock.clone(),
        keys: Arc::new(Keys::random()),
        scheduler: Arc::new(NoScheduler),
    };
    let account = Account::new(ids::new_sid(ids::ACCOUNT), TOKEN, &deps.keys, None, 0);
    deps.store.put_account(&account).await.expect("account");
    let stream = StreamTail::of(&ddb, &table).await;
    World { deps, store, ddb, outbox, clock, stream, account }
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

    async fn verify(&self, sid: &str, to: &str) {
        let msg = self.outbox.messages(Some(to)).into_iter().next().expect("a message");
        let code: String = msg.body.chars().filter(char::is_ascii_digit).collect();
        verify(&self.deps, &self.account, VerifyTarget::RequestId(sid.to_owned()), &code).await.expect("verified");
    }

    /// The stream worker's insight counts of everything stored since the last batch; how many
    /// items it wrote.
    async fn count_stream(&self) -> usize {
        count_insights_of(&self.store, self.stream.next_batch().await).await.expect("insights counted")
    }

    /// The last 24 hours' totals, as the domain reads them.
    async fn totals(&self, granularity: &str) -> Counts {
        let p = InsightsParams { granularity: Some(granularity), ..Default::default() };
        let q = insights::query_of(&p, self.clock.now_ms()).expect("a query");
        insights::insights(&self.deps, &self.account.sid, &q).await.expect("insights").totals
    }

    /// `GET path` on the records router as the account: status and JSON.
    async fn get(&self, path: &str) -> (u16, Value) {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{TOKEN}", self.account.sid));
        let req = Request::get(path).header("Authorization", format!("Basic {auth}")).body(Body::empty()).unwrap();
        let resp = twofa::http::records::router(self.deps.clone()).oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// Every insight counter item in the table.
    async fn insight_items(&self) -> usize {
        let out = self
            .ddb
            .scan()
            .table_name(self.store.table())
            .filter_expression("begins_with(pk, :g)")
            .expression_attribute_values(":g", aws_sdk_dynamodb::types::AttributeValue::S("INSIGHT#".into()))
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
async fn sends_verifies_and_delivery_outcomes_are_counted_off_the_stream_and_the_api_answers_them() {
    let w = world().await;
    // Given three SMS to the US and one to GB, one of them refused by the route at send
    let sids = [w.send(&us(1)).await.unwrap(), w.send(&us(2)).await.unwrap(), w.send("+447400123456").await.unwrap()];
    w.outbox.set_mode(OutboxMode::Reject);
    w.send(&us(3)).await.expect("a refused message is still a send");
    w.outbox.set_mode(OutboxMode::Deliver);
    // And one US and the GB code verified, and the first US message reported delivered
    w.verify(&sids[0], &us(1)).await;
    w.verify(&sids[2], "+447400123456").await;
    let otp = w.store.get_otp(&w.account.sid, &sids[0]).await.unwrap().unwrap();
    let receipt = Receipt {
        provider_id: otp.events[0].target_sid.clone().expect("sent"),
        status: ChannelStatus::Delivered,
        error_code: None,
        error_message: None,
        target: None,
        also_id: None,
        account_sid: None,
    };
    w.store.apply_receipt(&receipt).await.expect("receipt");
    // Then nothing on the request path wrote an insight counter
    assert_eq!(w.insight_items().await, 0);
    assert_eq!(w.totals("hour").await, Counts::default());
    // When the stream worker takes the batch: one account and one hour, so 2 items (hour, day)
    assert_eq!(w.count_stream().await, 2);
    // Then the hourly and the daily insights both count them
    let want = Counts { sends: 4, verified: 2, delivered: 1, failed: 1, ..Counts::default() };
    assert_eq!(w.totals("hour").await, want);
    assert_eq!(w.totals("day").await, want);
    // And the API answers them, by country
    let (status, v) = w.get("/2fa/insights?range=24h").await;
    assert_eq!(status, 200, "{v}");
    let d = &v["data"];
    assert_eq!((d["totals"]["sends"].as_u64(), d["totals"]["conversionRate"].as_f64()), (Some(4), Some(0.5)));
    assert_eq!(d["countries"][0]["country"], "US");
    assert_eq!(d["countries"][0]["sends"], 3);
    assert_eq!(d["series"].as_array().unwrap().len(), 24);
    // And a batch with nothing new counts nothing
    assert_eq!(w.count_stream().await, 0);
    w.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_counted_as_it_is_answered() {
    let w = world().await;
    // Given a send to a number
    w.send(&us(1)).await.expect("send");
    // When a second within the minute meets the default limit
    assert_eq!(w.send(&us(1)).await, Err(Error::TooManyToDestination));
    // Then the refusal is counted at once (no stream batch needed), under 453 and the US
    let t = w.totals("hour").await;
    assert_eq!((t.refused_with(453), t.refusals(), t.sends), (1, 1, 0));
    let (_, v) = w.get("/2fa/insights?country=US&granularity=day").await;
    assert_eq!(v["data"]["totals"]["refused"]["453"], 1, "{v}");
    w.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undone_send_takes_its_count_back_whenever_the_stream_counts_it() {
    let w = world().await;
    // Given a provider that is down: the send is committed, then undone (503)
    w.outbox.set_mode(OutboxMode::Down);
    assert_eq!(w.send(&us(1)).await, Err(Error::Unavailable));
    // When the stream worker counts the OTP's insert after the undo took it back
    w.count_stream().await;
    // Then no send is counted
    assert_eq!(w.totals("hour").await.sends, 0);
    // And a send that goes out counts as one
    w.outbox.set_mode(OutboxMode::Deliver);
    w.send(&us(2)).await.expect("send");
    w.count_stream().await;
    assert_eq!(w.totals("day").await.sends, 1);
    w.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_and_refusals_adding_to_one_item_all_count() {
    let w = world().await;
    // Given 24 stream batches that each count 1 send and 1 verify in the same shard and hour,
    // and 24 refusals at the same time
    let cell = Cell {
        account_sid: w.account.sid.clone(),
        hour_ms: insights::hour_of(w.clock.now_ms()),
        channel: Channel::Sms,
        country: "US".into(),
        counts: Counts { sends: 1, verified: 1, ..Counts::default() },
    };
    let now = w.clock.now_ms();
    let batches = (0..24).map(|_| {
        let (store, cell) = (w.store.clone(), cell.clone());
        tokio::spawn(async move { store.add_insight_cells(3, &[cell], 1).await.map(drop) })
    });
    let refusals = (0..24).map(|_| {
        let (store, account) = (w.store.clone(), w.account.sid.clone());
        tokio::spawn(async move { store.count_refusal(&account, now, Channel::Sms, "US", 477).await })
    });
    // When they write at once
    for r in futures::future::join_all(batches.chain(refusals)).await {
        r.unwrap().expect("counted");
    }
    // Then every one is counted (ADD is atomic: none lost to another)
    let t = w.totals("hour").await;
    assert_eq!((t.sends, t.verified, t.refused_with(477)), (24, 24, 24));
    let cells = w.store.insight_cells(&w.account.sid, now - HOUR_MS, now + HOUR_MS, Granularity::Day).await.unwrap();
    assert_eq!(cells.iter().map(|c| c.counts.sends).sum::<u64>(), 24);
    w.drop().await;
}
