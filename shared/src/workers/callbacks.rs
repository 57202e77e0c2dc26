//! `functions/callbacks`: OTP changes off the table's stream turned into signed callback calls
//! (`domain::callbacks::events`, the same events the dev server derives from its store feed),
//! calls that failed made again off the SQS retry queue, and the expiry sweep on a schedule.
//! One binary, three event shapes; template.yaml deploys it twice (stream + queue, schedule)
//! so each function holds only the permissions its part needs. The schedule is one per slice
//! of the due index, each invocation naming its slice (`slice_of`).

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, LazyLock,
    },
    time::Duration,
};

use aws_lambda_events::{
    dynamodb,
    sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent},
    streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse},
};
use futures::{stream, StreamExt};
use serde_json::{json, Value};

use super::{record_source, BoxError};
use crate::http::lambda::AfterSecret;
use crate::{
    adapters::{
        aws::{
            aws_config,
            dynamodb::{otp_from_image, says_guarded, DynamoStore, INSIGHT_SHARDS},
            sqs::SqsCallbackQueue,
        },
        webhook::HttpWebhooks,
    },
    domain::{
        callbacks::{self, CallbackEvent, PendingCall, SweepSlice, UrlRules},
        crypto::Keys,
        error::Result,
        guard, insights,
        otp::Otp,
        time::Millis,
    },
    ports::{CallbackQueue, Clock, ExpiryStore, SystemClock, Webhooks},
};

/// Calls in flight at once within one batch (a receiver may take 5 s to answer). A stream
/// batch is up to 100 records (~100 events), so 64 make it about one wave of calls: the batch
/// lasts about as long as its slowest call, where 16 took ~7 waves (up to 35 s with slow
/// receivers) and held the shard's records back (template.yaml, ParallelizationFactor).
const CONCURRENCY: usize = 64;
/// A sweep starts no read after this long (the function's timeout is 60 s; the next sweep is
/// a minute away and goes on from what is left).
const SWEEP_BUDGET: Duration = Duration::from_secs(40);
/// A queued call this close to its due time is made now (SQS delays in whole seconds).
const DUE_SLACK_MS: Millis = 1_000;

pub struct CallbackWorker {
    pub store: Arc<DynamoStore>,
    pub keys: Arc<Keys>,
    pub webhooks: Arc<dyn Webhooks>,
    pub queue: Arc<dyn CallbackQueue>,
    pub clock: Arc<dyn Clock>,
}

fn env(name: &str) -> std::result::Result<String, BoxError> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

impl CallbackWorker {
    /// The deployed worker, configured from the environment (`TWOFA_TABLE`, the master secret,
    /// `TWOFA_CALLBACK_RETRY_QUEUE_URL`, `TWOFA_CALLBACK_DEAD_LETTER_QUEUE_URL`), ready once the
    /// secret has arrived (`AfterSecret`: its round trip overlaps the first poll).
    pub async fn from_env() -> std::result::Result<AfterSecret<Self>, BoxError> {
        let sdk = aws_config().await;
        let (retry_url, dead_url) =
            (env("TWOFA_CALLBACK_RETRY_QUEUE_URL")?, env("TWOFA_CALLBACK_DEAD_LETTER_QUEUE_URL")?);
        let make = Self::deployed_with(&sdk, env("TWOFA_TABLE")?, retry_url, dead_url);
        Ok(AfterSecret::start(&sdk, make))
    }

    /// The worker as deployed: callback URLs held to the public rules (https, public resolved
    /// addresses only), whatever the account says. Never loopback here.
    pub fn deployed(
        sdk: &aws_config::SdkConfig,
        table: String,
        keys: Arc<Keys>,
        retry_url: String,
        dead_url: String,
    ) -> Self {
        Self::deployed_with(sdk, table, retry_url, dead_url)(keys)
    }

    /// `deployed`, its clients built now, for keys given later.
    fn deployed_with(
        sdk: &aws_config::SdkConfig,
        table: String,
        retry_url: String,
        dead_url: String,
    ) -> impl Fn(Arc<Keys>) -> Self + Send + Sync + 'static {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let queue: Arc<dyn CallbackQueue> =
            Arc::new(SqsCallbackQueue::new(aws_sdk_sqs::Client::new(sdk), retry_url, dead_url, clock.clone()));
        let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table));
        let webhooks: Arc<dyn Webhooks> = Arc::new(HttpWebhooks::new(UrlRules::Public));
        move |keys| CallbackWorker {
            store: store.clone(),
            keys,
            webhooks: webhooks.clone(),
            queue: queue.clone(),
            clock: clock.clone(),
        }
    }

    /// One invocation, whichever source it came from.
    pub async fn handle(&self, payload: Value) -> std::result::Result<Value, BoxError> {
        match record_source(&payload) {
            Some("aws:dynamodb") => Ok(serde_json::to_value(self.stream(serde_json::from_value(payload)?).await)?),
            Some("aws:sqs") => Ok(serde_json::to_value(self.retries(serde_json::from_value(payload)?).await)?),
            _ if payload.get("sweep").is_some()
                || payload.get("source").and_then(Value::as_str) == Some("aws.events") =>
            {
                Ok(json!({ "settled": self.sweep(slice_of(&payload)?).await? }))
            }
            _ => Err("not a stream, queue or schedule event".into()),
        }
    }

    /// The events of one stream record: none for other items, removals and unreadable images
    /// (logged; retrying an image that cannot be read would only stop the shard).
    fn events_of(record: &dynamodb::EventRecord, now: Millis) -> Vec<CallbackEvent> {
        let change = &record.change;
        let read = |image: &serde_dynamo::Item| {
            if image.is_empty() {
                return None;
            }
            otp_from_image(image.clone())
                .inspect_err(|_| tracing::error!(event_id = %record.event_id, "unreadable OTP image in the stream"))
                .ok()
                .flatten()
        };
        let Some(new) = read(&change.new_image) else { return vec![] };
        let old = read(&change.old_image);
        // When the change was stored: a replayed record tells the same time.
        let observed = change.approximate_creation_date_time.timestamp_millis();
        callbacks::events(old.as_ref(), &new, if observed > 0 { observed } else { now })
    }

    /// A stream batch: its pumping-guard and insight counts first (`count_guard`,
    /// `count_insights`, together; if they cannot be written the whole batch is reported and
    /// comes again, and may be counted twice), then every event's first call,
    /// concurrently; the first record whose event could not be handed on (account or queue
    /// unreachable) is reported, so the stream resumes from it (records before it are done;
    /// later ones may be told twice, with the same `webhook-id`, and counted twice).
    pub async fn stream(&self, event: dynamodb::Event) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        let counted = futures::future::try_join(
            count_guard(&self.store, &event.records),
            count_insights(&self.store, &event.records),
        )
        .await;
        if let Err(e) = counted {
            tracing::warn!(error = %e, "pumping-guard or insight counts not written; the batch comes again");
            if let Some(first) = event.records.first() {
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = first.change.sequence_number.clone();
                response.batch_item_failures.push(failure);
            }
            return response;
        }
        let now = self.clock.now_ms();
        let work: Vec<(usize, CallbackEvent)> = event
            .records
            .iter()
            .enumerate()
            .flat_map(|(i, r)| Self::events_of(r, now).into_iter().map(move |e| (i, e)))
            .collect();
        let failed = stream::iter(work)
            .map(|(i, e)| async move { (i, self.attempt(PendingCall::first(e, self.clock.now_ms())).await) })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|(i, r)| async move { r.is_err().then_some(i) })
            .collect::<Vec<usize>>()
            .await
            .into_iter()
            .min();
        if let Some(i) = failed {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = event.records[i].change.sequence_number.clone();
            response.batch_item_failures.push(failure);
        }
        response
    }

    /// A batch off the retry queue: calls that are due are made; the others go back for the
    /// rest of their delay (a long delay is several SQS hops). Messages that could not be
    /// handled are reported and come back after the queue's visibility timeout.
    pub async fn retries(&self, event: SqsEvent) -> SqsBatchResponse {
        let failed: Vec<String> = stream::iter(event.records)
            .map(|m| async move {
                let id = m.message_id.clone().unwrap_or_default();
                let call: Option<PendingCall> = m.body.as_deref().and_then(|b| serde_json::from_str(b).ok());
                let Some(call) = call else {
                    // The queue's own redrive moves it to the dead letters after a few receives.
                    tracing::error!(message_id = %id, "unreadable callback retry message");
                    return Some(id);
                };
                let result = if call.due_ms > self.clock.now_ms() + DUE_SLACK_MS {
                    self.queue.later(&call).await
                } else {
                    self.attempt(call).await
                };
                result.is_err().then_some(id)
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|f| async move { f })
            .collect()
            .await;
        let mut response = SqsBatchResponse::default();
        for id in failed {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
        response
    }

    async fn attempt(&self, call: PendingCall) -> Result<()> {
        let sid = call.event.sid.clone();
        let outcome = callbacks::deliver(
            self.store.as_ref(),
            &self.keys,
            self.webhooks.as_ref(),
            self.queue.as_ref(),
            call,
            self.clock.now_ms(),
        )
        .await
        .inspect_err(|e| tracing::warn!(event = %sid, error = %e, "callback not handed on; the batch retries it"))?;
        tracing::debug!(event = %sid, ?outcome, "callback attempt");
        Ok(())
    }

    /// The expiry sweep of one slice (see `sweep_slice`).
    pub async fn sweep(&self, slice: SweepSlice) -> Result<usize> {
        sweep_slice(self.store.as_ref(), self.clock.as_ref(), slice).await
    }
}

/// The OTP changes of a batch: (old, new) for each record with an OTP new image.
fn otp_changes(records: &[dynamodb::EventRecord]) -> Vec<(Option<Otp>, Otp)> {
    records
        .iter()
        .filter_map(|r| {
            let read = |image: &serde_dynamo::Item| -> Option<Otp> {
                if image.is_empty() {
                    return None;
                }
                otp_from_image(image.clone()).ok().flatten()
            };
            let (old, mut new) = (read(&r.change.old_image), read(&r.change.new_image)?);
            // An insert by a version that counted its send itself is not counted again.
            if old.is_none() && !says_guarded(&r.change.new_image) {
                new.guarded = false;
            }
            Some((old, new))
        })
        .collect()
}

/// This process's turn of the shards: each batch takes the next, from a random start (so many
/// processes spread evenly, and one spreads its batches exactly).
static NEXT_SHARD: LazyLock<AtomicU32> = LazyLock::new(|| AtomicU32::new(rand::random()));

/// The pumping guard's counts of one stream batch (`guard::tally`: guarded OTPs inserted are
/// sends, guarded OTPs turned `success` are verifies), one `ADD` per counter, the shards taken
/// in turn: a counter item takes 1/`SHARDS` of the batches that count in it, and a batch of
/// 100 records costs a few writes, not one per send. How many counters it wrote.
pub async fn count_guard(store: &DynamoStore, records: &[dynamodb::EventRecord]) -> Result<usize> {
    let changes = otp_changes(records);
    let mut counts = guard::tally(changes.iter().map(|(old, new)| (old.as_ref(), new)));
    // One turn a batch: each of its counters moves on by one shard from the last batch's.
    let turn = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
    for (i, (key, _)) in counts.iter_mut().enumerate() {
        key.shard = (turn.wrapping_add(i as u32) % u32::from(guard::SHARDS)) as u8;
    }
    store.add_guard_counts(&counts).await?;
    Ok(counts.len())
}

/// `count_guard` of a stream batch as Lambda hands it on (JSON): for tests and the heat model,
/// which read the table's stream themselves.
pub async fn count_guard_of(store: &DynamoStore, batch: Value) -> std::result::Result<usize, BoxError> {
    let event: dynamodb::Event = serde_json::from_value(batch)?;
    Ok(count_guard(store, &event.records).await?)
}

/// This process's turn of the insight shards (as `NEXT_SHARD` the guard's).
static NEXT_INSIGHT_SHARD: LazyLock<AtomicU32> = LazyLock::new(|| AtomicU32::new(rand::random()));

/// Insights' counts of one stream batch (`insights::changes` of each OTP change: inserts are
/// sends, OTPs turned `success` verifies, messages at their first final status delivery
/// outcomes), summed per account and hour, into one shard (the next in this process's turn):
/// one `ADD` per account and hour item and per account and day item, so a batch of 100
/// records costs a few writes, not one per record. How many items it wrote.
pub async fn count_insights(store: &DynamoStore, records: &[dynamodb::EventRecord]) -> Result<usize> {
    let changes = otp_changes(records);
    let cells = insights::merge(changes.iter().flat_map(|(old, new)| insights::changes(old.as_ref(), new)));
    if cells.is_empty() {
        return Ok(0);
    }
    let turn = NEXT_INSIGHT_SHARD.fetch_add(1, Ordering::Relaxed);
    let shard = (turn % u32::from(INSIGHT_SHARDS)) as u8;
    store.add_insight_cells(shard, &cells, 1).await
}

/// `count_insights` of a stream batch as Lambda hands it on (JSON): for tests and the heat
/// model, which read the table's stream themselves.
pub async fn count_insights_of(store: &DynamoStore, batch: Value) -> std::result::Result<usize, BoxError> {
    let event: dynamodb::Event = serde_json::from_value(batch)?;
    Ok(count_insights(store, &event.records).await?)
}

/// Settle what is due at the sweep's start: every shard of the due index, read on while it has
/// more (`callbacks::sweep`), for up to `SWEEP_BUDGET`.
pub async fn sweep_all(store: &dyn ExpiryStore, clock: &dyn Clock) -> Result<usize> {
    sweep_slice(store, clock, SweepSlice::WHOLE).await
}

/// `sweep_all` of the shards of one slice only.
pub async fn sweep_slice(store: &dyn ExpiryStore, clock: &dyn Clock, slice: SweepSlice) -> Result<usize> {
    let settled = callbacks::sweep(store, slice, clock.now_ms(), SWEEP_BUDGET).await?;
    tracing::info!(settled, slice = slice.slice(), slices = slice.slices(), "expiry sweep");
    Ok(settled)
}

/// The slice a scheduled invocation names: `{"sweep": {"slice": i, "slices": n}}` (the
/// schedule's `Input`, template.yaml), slice `i` of `n`; an event without `sweep` (the
/// schedule's own event, as the versions before slices were invoked with: one left from an
/// upgrade) sweeps every shard. A `sweep` that names no valid slice is refused, not taken
/// for the whole: a schedule set up wrong fails (the function's error alarm) rather than
/// running a second sweep of every shard beside the slices.
pub fn slice_of(payload: &Value) -> std::result::Result<SweepSlice, BoxError> {
    let Some(sweep) = payload.get("sweep") else { return Ok(SweepSlice::WHOLE) };
    let field =
        |name: &str| {
            sweep.get(name).and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok()).ok_or_else(|| -> BoxError {
                format!("sweep.{name} must be a whole number, not {}", sweep[name]).into()
            })
        };
    let (slice, slices) = (field("slice")?, field("slices")?);
    SweepSlice::new(slice, slices)
        .ok_or_else(|| format!("sweep.slice must be below sweep.slices ({slice} of {slices})").into())
}

/// `functions/callbacks`: the stream and retry-queue worker, or with
/// `TWOFA_CALLBACKS_MODE=sweep` the scheduled sweeper, which needs the table and nothing else
/// (no secret, no queue), so its function holds only those permissions.
pub async fn run() -> std::result::Result<(), BoxError> {
    crate::http::lambda::init_tracing();
    if std::env::var("TWOFA_CALLBACKS_MODE").as_deref() == Ok("sweep") {
        let sdk = aws_config().await;
        let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), env("TWOFA_TABLE")?));
        return super::serve(move |schedule| {
            let store = store.clone();
            async move { Ok(json!({ "settled": sweep_slice(store.as_ref(), &SystemClock, slice_of(&schedule)?).await? })) }
        })
        .await;
    }
    let worker = Arc::new(CallbackWorker::from_env().await?);
    super::serve(move |payload| {
        let worker = worker.clone();
        async move { worker.get().await?.handle(payload).await }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The event EventBridge delivers for a schedule rule without `Input`.
    fn scheduled_event() -> Value {
        json!({ "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
                "source": "aws.events", "account": "123456789012", "time": "2026-12-01T19:41:00Z",
                "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/twofa-sweeper"],
                "detail": {} })
    }

    #[test]
    fn a_schedule_input_naming_a_slice_sweeps_that_slice() {
        // Given the Input of the schedules of slices 0, 7 and 31 of 32
        for i in [0, 7, 31] {
            let payload = json!({ "sweep": { "slice": i, "slices": 32 } });
            // When it is read, then it is that slice
            let slice = slice_of(&payload).unwrap();
            assert_eq!((slice.slice(), slice.slices()), (i, 32));
        }
    }

    #[test]
    fn an_event_naming_no_slice_sweeps_every_shard() {
        // Given the schedule's own event (the versions before slices were invoked with it), or
        // an empty one
        for payload in [scheduled_event(), json!({})] {
            // Then every shard is swept
            assert_eq!(slice_of(&payload).unwrap(), SweepSlice::WHOLE, "{payload}");
        }
    }

    #[test]
    fn a_sweep_input_naming_no_valid_slice_is_refused_naming_the_field() {
        // Given slices that do not exist, or are not numbers
        let cases = [
            (json!({ "sweep": { "slice": 32, "slices": 32 } }), "sweep.slice must be below sweep.slices"),
            (json!({ "sweep": { "slice": 0, "slices": 0 } }), "sweep.slice must be below sweep.slices"),
            (json!({ "sweep": { "slice": -1, "slices": 32 } }), "sweep.slice"),
            (json!({ "sweep": { "slice": "3", "slices": 32 } }), "sweep.slice"),
            (json!({ "sweep": { "slice": 3 } }), "sweep.slices"),
            (json!({ "sweep": {} }), "sweep.slice"),
        ];
        for (payload, says) in cases {
            // Then the event is refused, and the error names what is wrong
            let error = slice_of(&payload).expect_err(&payload.to_string()).to_string();
            assert!(error.starts_with(says), "{payload}: {error}");
        }
    }
}
