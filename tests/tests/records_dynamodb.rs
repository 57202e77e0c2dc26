//! Session detail and usage records on DynamoDB (moto at `AWS_ENDPOINT_URL`): the same HTTP
//! scenarios as api_records.rs, on a dev server whose store is the DynamoDB adapter (the dev
//! outbox and clock stay, so codes are read and expiry is reached the same way), plus the
//! DynamoDB round trips each records operation costs.

mod common;
mod records_flows;

use std::sync::Arc;

use common::Api;
use records_flows as flows;
use records_flows::{follow, search, sids};
use twofa::{
    adapters::aws::{
        aws_config,
        dynamodb::{create_table, CallCounts, DynamoStore, USAGE_SHARDS},
    },
    domain::{account::Account, ids},
    ports::{AccountStore, Clock},
};
use twofa_local::{hex_token, serve, Dev};

fn moto_url() -> String {
    std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL must point at moto: run `make test` (or `make moto-up` and eval `make moto-env`)")
}

/// OTP shards per account in these tests (the default 256 would make moto answer 257 queries
/// per page read; tests/tests/search_shards.rs covers 256): each page read is one round of
/// `PARTS` queries, one per shard and one of the partition from before sharding.
const SHARDS: usize = 4;
const PARTS: u64 = SHARDS as u64 + 1;

/// A dev server on a fresh table, with one account; the store, to count its round trips.
async fn start() -> (Api, Arc<DynamoStore>) {
    let _ = moto_url();
    let sdk = aws_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("twofa-records-{}", ids::new_sid(""));
    create_table(&ddb, &table).await.expect("create table");
    let store = Arc::new(DynamoStore::new(ddb, table).with_otp_shards(SHARDS));
    let mut dev = Dev::new(twofa::domain::crypto::Keys::random());
    dev.deps.store = store.clone();
    let token = hex_token();
    let mut account = Account::new(ids::new_sid(ids::ACCOUNT), &token, &dev.deps.keys, None, dev.clock.now_ms());
    // These tests send up to 100 OTPs to one country that nobody verifies, and moto's 503s make
    // them retried: the pumping guard (tested in policy_conformance) would rightly pause them.
    account.policy.guard.enabled = false;
    store.put_account(&account).await.expect("account");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = dev.app();
    tokio::spawn(async move { serve(listener, app).await.expect("serve") });
    let api = Api { base, http: reqwest::Client::new(), sid: account.sid, token, dev };
    (api, store)
}

/// An account in the DynamoDB store (below `parent` if given), as (sid, token).
async fn account(api: &Api, store: &DynamoStore, parent: Option<&str>) -> (String, String) {
    let parent = match parent {
        Some(p) => Some(store.get_account(p).await.expect("read").expect("parent")),
        None => None,
    };
    let token = hex_token();
    let a =
        Account::new(ids::new_sid(ids::ACCOUNT), &token, &api.dev.deps.keys, parent.as_ref(), api.dev.clock.now_ms());
    store.put_account(&a).await.expect("account");
    (a.sid, token)
}

/// The DynamoDB requests `f` caused.
async fn cost<F: std::future::Future<Output = T>, T>(store: &DynamoStore, f: F) -> (T, CallCounts) {
    let before = store.calls();
    let out = f.await;
    (out, store.calls() - before)
}

// ---- the scenarios shared with the embedded store ---------------------------------------------

#[tokio::test]
async fn seed_flow_search_and_single_record_show_statuses_checks_events_and_usage() {
    flows::seed_flow(&start().await.0).await;
}

#[tokio::test]
async fn provider_refusal_is_a_failed_event_with_the_providers_code_and_message() {
    flows::provider_refusal(&start().await.0).await;
}

#[tokio::test]
async fn paging_25_records_by_page_number_and_by_page_token_shows_each_exactly_once() {
    flows::paging(&start().await.0).await;
}

#[tokio::test]
async fn paging_a_filtered_search_by_token_keeps_the_filter() {
    flows::paging_with_a_filter(&start().await.0).await;
}

#[tokio::test]
async fn status_filter_matches_the_status_at_read_time() {
    flows::status_filters(&start().await.0).await;
}

#[tokio::test]
async fn service_to_channel_and_inclusive_time_filters() {
    flows::field_and_time_filters(&start().await.0).await;
}

#[tokio::test]
async fn another_accounts_records_are_invisible_and_answer_like_unknown_ones() {
    let (api, store) = start().await;
    let (sid, token) = account(&api, &store, None).await;
    flows::tenant_isolation(&api, (&sid, &token)).await;
}

#[tokio::test]
async fn account_sid_acts_for_a_sub_account_and_sub_accounts_true_adds_the_tree() {
    let (api, store) = start().await;
    let (sub, sub_token) = account(&api, &store, Some(&api.sid)).await;
    let (grand, grand_token) = account(&api, &store, Some(&sub)).await;
    flows::sub_accounts(&api, (&sub, &sub_token), (&grand, &grand_token)).await;
}

#[tokio::test]
async fn usage_records_per_channel_day_month_year_and_named_period_in_the_seed_shapes() {
    flows::usage_records(&start().await.0).await;
}

/// 40 at once: moto serves one request at a time (`moto_serial_server.py`), so 100 sends of three
/// requests each queue for longer than the suite's 30 s operation timeout on 2 loaded cores, and
/// a send whose commit landed after its 503 makes its retry a 453: that measures moto's queue,
/// not the store (the embedded store takes 100, `api_records.rs`).
#[tokio::test]
async fn usage_counts_are_exact_under_40_concurrent_sends() {
    flows::usage_under_concurrent_sends(&start().await.0, 40, true).await;
}

// ---- round trips ---------------------------------------------------------------------------------

#[tokio::test]
async fn following_a_page_token_costs_one_round_of_queries_and_page_n_a_count_and_one_round() {
    // Given 25 OTPs
    let (api, store) = start().await;
    flows::send_many(&api, 25).await;

    // When the first page is read: one round of Select=COUNT queries and one round of page
    // queries, one query per partition each (the account of authentication is cached by the
    // warm process)
    let (first, c) = cost(&store, search(&api, "pageSize=10")).await;
    assert_eq!((c.query, c.get_item, c.writes(), c.search_rounds), (2 * PARTS, 0, 0, 2), "{c:?}");

    // When the next page is read through its token: one round, no count
    let next = first["next_page_uri"].as_str().unwrap().to_owned();
    let (second, c) = cost(&store, follow(&api, &next)).await;
    assert_eq!((c.query, c.get_item, c.writes(), c.search_rounds), (PARTS, 0, 0, 1), "{c:?}");
    assert_eq!(second["total"], 25);
    // And the previous page through its token too
    let last = follow(&api, second["next_page_uri"].as_str().unwrap()).await;
    let (back, c) = cost(&store, follow(&api, last["previous_page_uri"].as_str().unwrap())).await;
    // (all but the partition from before sharding: the page's first OTP is newer than
    // anything it can hold)
    assert_eq!((c.query, c.search_rounds), (PARTS - 1, 1), "{c:?}");
    assert_eq!(sids(&back), sids(&second));

    // When page 2 is asked for by number: the count and one round reading pages 0 to 2
    let (by_number, c) = cost(&store, search(&api, "pageSize=10&page=2")).await;
    assert_eq!((c.query, c.search_rounds), (2 * PARTS, 2), "{c:?}");
    assert_eq!(sids(&by_number), sids(&last));
    // And past the end only the count is read
    let (_, c) = cost(&store, search(&api, "pageSize=10&page=7")).await;
    assert_eq!((c.query, c.search_rounds), (PARTS, 1), "{c:?}");
}

#[tokio::test]
async fn a_single_record_is_one_get_item_and_usage_one_round_of_queries() {
    let (api, store) = start().await;
    let sid = api.sent("+14155550100").await;
    let (_, c) = cost(&store, follow(&api, &format!("/2fa/search/{sid}"))).await;
    assert_eq!((c.get_item, c.query, c.writes()), (1, 0, 0), "the OTP (the account is cached): {c:?}");
    // And usage is one round of queries: each of the account's usage partitions, and the one
    // from before they were spread
    for path in ["/2fa/usage/records", "/2fa/usage/records/daily", "/2fa/usage/records/alltime?channel=sms"] {
        let (_, c) = cost(&store, flows::usage(&api, path)).await;
        let parts = u64::from(USAGE_SHARDS) + 1;
        assert_eq!((c.get_item, c.query, c.writes(), c.search_rounds), (0, parts, 0, 1), "{path}: {c:?}");
    }
    // And a malformed sid costs no read of the table at all (the account is cached)
    let (_, c) = cost(&store, api.get("/2fa/search/OTPnot")).await;
    assert_eq!((c.get_item, c.query), (0, 0), "{c:?}");
}

#[tokio::test]
async fn sub_accounts_search_costs_one_round_of_queries_per_account_on_a_token_page() {
    // Given a caller and two sub-accounts, 4 OTPs each
    let (api, store) = start().await;
    let subs = [account(&api, &store, Some(&api.sid)).await, account(&api, &store, Some(&api.sid)).await];
    for (i, to) in (0..4).map(flows::number).enumerate() {
        api.sent(&to).await;
        for (j, (sid, _)) in subs.iter().enumerate() {
            let r = api.send_to(&flows::number(100 * (j + 1) + i), serde_json::json!({ "accountSid": sid })).await;
            assert_eq!(r.status, 200, "{}", r.text);
        }
    }
    // When the whole tree is paged 5 at a time by token
    let first = search(&api, "pageSize=5&subAccounts=true").await;
    assert_eq!(first["total"], 12);
    let (second, c) = cost(&store, follow(&api, first["next_page_uri"].as_str().unwrap())).await;
    // Then each page costs one round of queries per account (and the sub-account list)
    assert_eq!(c.query, 3 * PARTS + 1, "{c:?}");
    let third = follow(&api, second["next_page_uri"].as_str().unwrap()).await;
    let all: Vec<String> = [&first, &second, &third].iter().flat_map(|p| sids(p)).collect();
    assert_eq!(all.len(), 12);
    assert_eq!(all.iter().collect::<std::collections::HashSet<_>>().len(), 12);
    assert_eq!(third["next_page_uri"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_overlong_request_id_answers_like_an_unknown_one_on_dynamodb() {
    // Given a dev server on DynamoDB, and request ids no OTP can have: malformed, and longer
    // than a DynamoDB sort key may be
    let (api, store) = start().await;
    let (unknown, c) = cost(&store, api.verify(&ids::new_sid("OTP"), "123456")).await;
    assert_eq!(c.writes(), 1, "an unknown well-formed sid costs its refused write: {c:?}");
    for bad in ["OTPxyz".to_owned(), format!("OTP{}", "a".repeat(2000))] {
        // When it is verified and canceled
        let (r, c) = cost(&store, api.verify(&bad, "123456")).await;
        // Then both answer exactly as for an unknown sid, 470 and 490 for the cancel, without
        // touching the table (real DynamoDB refuses a sort key over 1 KB; moto does not)
        assert_eq!((r.status, r.text.as_str()), (unknown.status, unknown.text.as_str()), "{}", &bad[..8]);
        assert_eq!((c.writes(), c.get_item, c.query), (0, 0, 0), "{c:?}");
        let (r, c) = cost(&store, api.post("/2fa/cancel", &serde_json::json!({ "requestId": bad }))).await;
        assert_eq!((r.status.as_u16(), r.code()), (404, 490));
        assert_eq!((c.writes(), c.get_item, c.query), (0, 0, 0), "{c:?}");
    }
}
