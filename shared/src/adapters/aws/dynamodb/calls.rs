//! Counting DynamoDB round trips: an SDK interceptor that sees every HTTP attempt (SDK retries
//! included) and tallies it by operation, so tests can hold the store to its budget.

use std::{
    ops::Sub,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use aws_sdk_dynamodb::config::{
    interceptors::BeforeTransmitInterceptorContextRef, ConfigBag, Intercept, RuntimeComponents,
};
use aws_smithy_runtime_api::{box_error::BoxError, client::orchestrator::Metadata};

/// DynamoDB requests sent by one store, by operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounts {
    pub get_item: u64,
    pub batch_get_item: u64,
    pub query: u64,
    pub put_item: u64,
    pub update_item: u64,
    pub delete_item: u64,
    pub transact_write_items: u64,
    /// Anything else (table management).
    pub other: u64,
    /// Sequential rounds of reads made at once (a search or count reads an account's OTP
    /// partitions in parallel, round by round): the round trips a caller waits for.
    pub search_rounds: u64,
}

impl CallCounts {
    /// Read round trips: GetItem, BatchGetItem, Query.
    pub fn reads(&self) -> u64 {
        self.get_item + self.batch_get_item + self.query
    }

    /// Write round trips: PutItem, UpdateItem, DeleteItem, TransactWriteItems.
    pub fn writes(&self) -> u64 {
        self.put_item + self.update_item + self.delete_item + self.transact_write_items
    }
}

impl Sub for CallCounts {
    type Output = CallCounts;
    fn sub(self, o: CallCounts) -> CallCounts {
        CallCounts {
            get_item: self.get_item - o.get_item,
            batch_get_item: self.batch_get_item - o.batch_get_item,
            query: self.query - o.query,
            put_item: self.put_item - o.put_item,
            update_item: self.update_item - o.update_item,
            delete_item: self.delete_item - o.delete_item,
            transact_write_items: self.transact_write_items - o.transact_write_items,
            other: self.other - o.other,
            search_rounds: self.search_rounds - o.search_rounds,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    get_item: AtomicU64,
    batch_get_item: AtomicU64,
    query: AtomicU64,
    put_item: AtomicU64,
    update_item: AtomicU64,
    delete_item: AtomicU64,
    transact_write_items: AtomicU64,
    other: AtomicU64,
    search_rounds: AtomicU64,
}

impl Counters {
    pub fn count_search_round(&self) {
        self.search_rounds.fetch_add(1, Ordering::SeqCst);
    }

    fn slot(&self, operation: &str) -> &AtomicU64 {
        match operation {
            "GetItem" => &self.get_item,
            "BatchGetItem" => &self.batch_get_item,
            "Query" => &self.query,
            "PutItem" => &self.put_item,
            "UpdateItem" => &self.update_item,
            "DeleteItem" => &self.delete_item,
            "TransactWriteItems" => &self.transact_write_items,
            _ => &self.other,
        }
    }

    pub fn snapshot(&self) -> CallCounts {
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        CallCounts {
            get_item: get(&self.get_item),
            batch_get_item: get(&self.batch_get_item),
            query: get(&self.query),
            put_item: get(&self.put_item),
            update_item: get(&self.update_item),
            delete_item: get(&self.delete_item),
            transact_write_items: get(&self.transact_write_items),
            other: get(&self.other),
            search_rounds: get(&self.search_rounds),
        }
    }
}

/// The interceptor: one count per request put on the wire.
#[derive(Debug)]
pub(crate) struct CountCalls(pub Arc<Counters>);

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "twofa::CountCalls"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map(Metadata::name).unwrap_or("");
        self.0.slot(operation).fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
