//! Search over DynamoDB's sharded OTP partitions answers exactly what the embedded store
//! answers, on random data (moto at `AWS_ENDPOINT_URL`).
//!
//! An account's OTPs are spread over `ids::OTP_SHARDS` partitions by a byte of their sid, and
//! OTPs from before sharding stay in the account's old partition; a search reads them all and
//! merges them. The embedded store keeps one ordered list, so it is the reference: the same
//! OTPs are written to both, and random searches (filters, time bounds, both directions, any
//! page size, from any position) and whole page walks over several accounts must agree.

use std::sync::Arc;

use twofa::{
    adapters::{
        aws::{
            aws_config,
            dynamodb::{create_table, DynamoStore},
        },
        memory::MemoryStore,
        outbox::Outbox,
    },
    domain::{
        crypto::Keys,
        ids,
        otp::{Channel, ChannelEvent, ChannelStatus, Delivery, Destination, Otp, OtpStatus},
        records::{search, Mark, OtpQuery, PageToken, SearchFilter, SearchRequest, Start},
        time::{self, Millis},
        usage::{UsageCategory, UsageKey},
    },
    ports::{Clock, Counted, Deps, NoScheduler, RecordStore, SendPlan, Store},
};

const T0: Millis = 1_765_000_000_000;
/// The clock of every search: some OTPs have expired by then, most have not.
const NOW: Millis = T0 + 60_000;
const NUMBERS: [&str; 5] = ["+14155550100", "+14155550101", "+14155550102", "+447700900123", "+33612345678"];

struct Fixed;
impl Clock for Fixed {
    fn now_ms(&self) -> Millis {
        NOW
    }
}

/// splitmix64: a seeded generator, so a failure names the seed that reproduces it.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A sid as minted before sharding: the creation time first, no shard mark.
fn legacy_sid(rng: &mut Rng, created_ms: Millis) -> String {
    format!("{}{:012x}{:016x}{:04x}", ids::OTP, created_ms, rng.next(), rng.below(1 << 16))
}

/// A random OTP of `account` created at `created_ms` with sid `sid`.
fn random_otp(rng: &mut Rng, account: &str, sid: String, created_ms: Millis) -> Otp {
    let to = rng.pick(&NUMBERS).to_string();
    let channel = if rng.chance(20) { Channel::Email } else { Channel::Sms };
    let to = if channel == Channel::Email { format!("user{}@example.com", rng.below(3)) } else { to };
    let status = *rng.pick(&[
        OtpStatus::Pending,
        OtpStatus::Pending,
        OtpStatus::Success,
        OtpStatus::Canceled,
        OtpStatus::Expired,
        OtpStatus::Failed,
    ]);
    // Some pending ones have run out by `NOW` (expired at read), some are superseded then.
    let expires_ms = if rng.chance(25) { created_ms + 1_000 } else { created_ms + 300_000 };
    let cancel_at_ms = rng.chance(10).then_some(created_ms + 2_000);
    let delivery = match channel {
        Channel::Email => Delivery { channel, ..Delivery::sms("Twofa", &to, "Your code: {code}") },
        _ => Delivery::sms("Twofa", &to, "Your code: {code}"),
    };
    Otp {
        code_hash: vec![7; 32],
        sealed_code: vec![1, 2, 3, 4],
        account_sid: account.to_owned(),
        service: rng.pick(&["2FA", "Bank"]).to_string(),
        delivery,
        length: 6,
        country: Some("US".into()),
        status,
        created_ms,
        updated_ms: created_ms,
        expires_ms,
        guard_time: None,
        cancel_at_ms,
        attempts: 0,
        checks: vec![],
        events: vec![ChannelEvent {
            sid: ids::new_sid(ids::EVENT),
            at_ms: created_ms,
            channel,
            sender: "Twofa".into(),
            recipient: to,
            target_sid: None,
            status: ChannelStatus::Queued,
            error_code: None,
            error_message: None,
            encoding: None,
            segments: None,
            route: None,
        }],
        workflow: None,
        watched: false,
        guarded: false,
        clears_failures: false,
        sid,
    }
}

fn plan_of(otp: Otp, expected_current: Option<String>) -> SendPlan {
    SendPlan {
        destination: Destination {
            current: otp.sid.clone(),
            current_guard: None,
            current_expires_ms: otp.expires_ms,
            previous: None,
        },
        expected_current,
        supersede: None,
        counters: vec![],
        usage: vec![UsageKey {
            account_sid: otp.account_sid.clone(),
            day: time::day(otp.created_ms),
            category: UsageCategory::All,
        }],
        idempotency: None,
        guard: vec![],
        otp,
    }
}

/// `sharded` fresh OTPs and `legacy` old-form ones of `account`, written to both stores in the
/// same order (each destination's sends in turn, so every send finds the pointer it expects).
async fn fill(rng: &mut Rng, stores: &[Arc<dyn Store>], account: &str, sharded: usize, legacy: usize) -> Vec<Otp> {
    let shards = stores.iter().map(|s| s.otp_shards()).min().expect("a store");
    let mut otps = Vec::new();
    for _ in 0..legacy {
        // Old OTPs: before T0, a few in the same millisecond.
        let created = T0 - 600_000 + rng.below(200) as Millis * 1_000;
        let sid = legacy_sid(rng, created);
        otps.push(random_otp(rng, account, sid, created));
    }
    for _ in 0..sharded {
        // 300 distinct milliseconds for all of them: many share one (the sid breaks the tie).
        let created = T0 + rng.below(300) as Millis * 300;
        let sid = ids::otp_sid_of(ids::otp_sid_bytes(created, shards));
        otps.push(random_otp(rng, account, sid, created));
    }
    // (a destination keeps one pointer per service)
    let mut by_destination: std::collections::BTreeMap<(String, String), Vec<Otp>> = Default::default();
    for o in &otps {
        by_destination.entry((o.delivery.to.clone(), o.service.clone())).or_default().push(o.clone());
    }
    // One at a time: moto's transactions are not isolated from each other.
    for chain in by_destination.into_values() {
        let mut current: Option<String> = None;
        for o in chain {
            let plan = plan_of(o.clone(), current.replace(o.sid.clone()));
            for store in stores {
                store.commit_send(&plan).await.expect("commit");
            }
        }
    }
    otps
}

fn random_filter(rng: &mut Rng) -> SearchFilter {
    let times = [T0 - 600_000, T0 - 400_000, T0 - 1, T0, T0 + 150, T0 + 30_000, T0 + 45_001, T0 + 89_700];
    let mut f = SearchFilter::default();
    if rng.chance(30) {
        f.status = Some(*rng.pick(&[
            OtpStatus::Pending,
            OtpStatus::Success,
            OtpStatus::Canceled,
            OtpStatus::Expired,
            OtpStatus::Failed,
        ]));
    }
    if rng.chance(20) {
        f.service = Some(rng.pick(&["2FA", "Bank", "none"]).to_string());
    }
    if rng.chance(20) {
        let to = rng.pick(&NUMBERS);
        f.to = Some(if rng.chance(50) { to.trim_start_matches('+').to_owned() } else { to.to_string() });
    }
    if rng.chance(15) {
        f.channel = Some(*rng.pick(&[Channel::Sms, Channel::Email]));
    }
    if rng.chance(40) {
        f.start_ms = Some(*rng.pick(&times));
    }
    if rng.chance(40) {
        f.end_ms = Some(*rng.pick(&times));
    }
    f
}

/// A DynamoDB store on a fresh table whose accounts' OTPs spread over `shards` partitions.
async fn dynamo(shards: usize) -> Arc<DynamoStore> {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|u| !u.is_empty()),
        "AWS_ENDPOINT_URL must point at moto: run `make test`"
    );
    let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
    let table = format!("shards-{}", ids::new_sid(""));
    create_table(&client, &table).await.expect("create the table in moto");
    Arc::new(DynamoStore::new(client, table).with_otp_shards(shards))
}

/// Drop a passed test's table, so moto's state (which other tests read whole, through
/// `/moto-api/data.json`) stays small.
async fn drop_table(store: &DynamoStore) {
    let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
    client.delete_table().table_name(store.table()).send().await.expect("delete the table");
}

fn deps(store: Arc<dyn Store>, keys: Arc<Keys>) -> Deps {
    let clock: Arc<dyn Clock> = Arc::new(Fixed);
    Deps { store, dispatcher: Arc::new(Outbox::new(clock.clone())), clock, keys, scheduler: Arc::new(NoScheduler) }
}

fn sids(otps: &[Otp]) -> Vec<String> {
    otps.iter().map(|o| o.sid.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_searches_over_shards_and_the_old_partition_answer_what_the_embedded_store_answers() {
    let seed = std::env::var("TWOFA_SEARCH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261206);
    let mut rng = Rng(seed);
    // Given the same OTPs in both stores: a busy account (300 over 16 shards, 30 from before
    // sharding), a small one (12 and 3), and a neighbour whose OTPs must never show (16
    // shards, not 256, so that a shard holds dozens and pages need more than one read of it)
    let (memory, dynamo) = (Arc::new(MemoryStore::new()), dynamo(16).await);
    let stores: Vec<Arc<dyn Store>> = vec![memory.clone(), dynamo.clone()];
    let (busy, small, other) = (ids::new_sid(ids::ACCOUNT), ids::new_sid(ids::ACCOUNT), ids::new_sid(ids::ACCOUNT));
    let busy_otps = fill(&mut rng, &stores, &busy, 300, 30).await;
    let small_otps = fill(&mut rng, &stores, &small, 12, 3).await;
    fill(&mut rng, &stores, &other, 20, 2).await;
    let shards_used = busy_otps.iter().filter_map(|o| ids::otp_shard(&o.sid)).collect::<std::collections::HashSet<_>>();
    assert_eq!(shards_used.len(), 16, "the busy account spans the shards");

    // When random searches are made of each account, from the top or from any OTP, either way
    for round in 0..20 {
        let (account, otps) = if rng.chance(75) { (&busy, &busy_otps) } else { (&small, &small_otps) };
        let filter = random_filter(&mut rng);
        let mark = Mark::of(rng.pick(otps));
        let start = match rng.below(3) {
            0 => Start::Newest,
            1 => Start::OlderThan(mark),
            _ => Start::NewerThan(mark),
        };
        let limit = *rng.pick(&[1usize, 2, 5, 11, 40, 200, 1000]);
        let q = OtpQuery { filter: &filter, now: NOW, start: &start, limit };
        let want = sids(&memory.search_otps(account, &q).await.expect("memory"));
        let before = dynamo.calls();
        let got = sids(&dynamo.search_otps(account, &q).await.expect("dynamodb"));
        let cost = dynamo.calls() - before;
        // Then DynamoDB's merged page is the embedded store's, OTP for OTP
        assert_eq!(got, want, "seed {seed} round {round}: {filter:?} {start:?} limit {limit}");
        // And a page without a filter takes at most 2 rounds of parallel reads
        if !filter.is_selective() {
            assert!(cost.search_rounds <= 2, "round {round}: {} rounds for limit {limit}", cost.search_rounds);
        }
        // And the count agrees where both can count everything
        let counted = dynamo.count_otps(account, &filter, NOW, 10_000).await.expect("count");
        let reference = memory.count_otps(account, &filter, NOW, 10_000).await.expect("count");
        assert_eq!(counted, reference, "seed {seed} round {round}: {filter:?}");
        assert!(counted.complete);
    }
    drop_table(&dynamo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_walks_over_several_accounts_show_the_same_pages_both_ways_on_both_stores() {
    let mut rng = Rng(7);
    // Given an account and a sub-account with OTPs in both stores, some from before sharding
    let (memory, dynamo) = (Arc::new(MemoryStore::new()), dynamo(16).await);
    let stores: Vec<Arc<dyn Store>> = vec![memory.clone(), dynamo.clone()];
    let (parent, child) = (ids::new_sid(ids::ACCOUNT), ids::new_sid(ids::ACCOUNT));
    fill(&mut rng, &stores, &parent, 90, 10).await;
    fill(&mut rng, &stores, &child, 40, 5).await;
    let accounts = [parent.clone(), child.clone()];
    for filter in [
        SearchFilter::default(),
        SearchFilter { start_ms: Some(T0 - 500_000), end_ms: Some(T0 + 45_000), ..Default::default() },
        SearchFilter { status: Some(OtpStatus::Pending), ..Default::default() },
    ] {
        // When each store's pages of 12 are walked forward by token to the end, then back
        let [on_memory, on_dynamo] = [memory.clone() as Arc<dyn Store>, dynamo.clone()].map(|store| {
            let (filter, accounts) = (filter.clone(), accounts.clone());
            async move { walk(store, &accounts, filter, 12).await }
        });
        let (want, got) = (on_memory.await, on_dynamo.await);
        // Then both stores show the same total and the same pages, in both directions
        assert_eq!(got, want, "{filter:?}");
        let (total, pages, back) = &want;
        assert_eq!(pages.iter().map(Vec::len).sum::<usize>() as u64, *total, "{filter:?}");
        assert_eq!(back.len() + 2, pages.len().max(2), "{filter:?}: back to page 1");
    }
    drop_table(&dynamo).await;
}

/// Every page of a search, forward by token to the end and then back to page 1: the total and
/// each page's sids.
async fn walk(store: Arc<dyn Store>, accounts: &[String], filter: SearchFilter, size: u64) -> Walk {
    let deps = deps(store, Arc::new(Keys::random()));
    let req = |token: Option<PageToken>| SearchRequest { filter: filter.clone(), page: 0, page_size: size, token };
    let mut page = search(&deps, accounts, &req(None)).await.expect("first page");
    let total = page.total;
    let mut pages = vec![sids(&page.otps)];
    while let Some(next) = page.next.clone() {
        page = search(&deps, accounts, &req(Some(next))).await.expect("next page");
        pages.push(sids(&page.otps));
    }
    let mut back = vec![];
    while let Some(previous) = page.previous.clone() {
        page = search(&deps, accounts, &req(Some(previous))).await.expect("previous page");
        back.push(sids(&page.otps));
    }
    (total, pages, back)
}

type Walk = (u64, Vec<Vec<String>>, Vec<Vec<String>>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_256_shards_a_small_accounts_page_is_2_rounds_of_reads_and_matches() {
    let mut rng = Rng(3);
    // Given a small account's 40 OTPs (5 from before sharding) over the default shards
    let (memory, dynamo) = (Arc::new(MemoryStore::new()), dynamo(ids::OTP_SHARDS).await);
    let stores: Vec<Arc<dyn Store>> = vec![memory.clone(), dynamo.clone()];
    let account = ids::new_sid(ids::ACCOUNT);
    fill(&mut rng, &stores, &account, 35, 5).await;
    // When its first page of 20 is read (the total, then the page)
    let deps = deps(dynamo.clone(), Arc::new(Keys::random()));
    let req = SearchRequest { filter: SearchFilter::default(), page: 0, page_size: 20, token: None };
    let before = dynamo.calls();
    let page = search(&deps, std::slice::from_ref(&account), &req).await.expect("first page");
    let cost = dynamo.calls() - before;
    // Then it took 2 rounds: one count of every partition, one read of every partition
    assert_eq!(cost.search_rounds, 2, "{cost:?}");
    assert_eq!(cost.query, 2 * (ids::OTP_SHARDS as u64 + 1), "{cost:?}");
    // And the page and its total are the embedded store's
    let (total, pages, _) = walk(memory.clone(), std::slice::from_ref(&account), SearchFilter::default(), 20).await;
    assert_eq!((page.total, sids(&page.otps)), (total, pages[0].clone()));
    // And the next page, through its token, is one round
    let next = SearchRequest { token: page.next.clone(), ..req };
    let before = dynamo.calls();
    let second = search(&deps, std::slice::from_ref(&account), &next).await.expect("next page");
    assert_eq!((dynamo.calls() - before).search_rounds, 1);
    assert_eq!(sids(&second.otps), pages[1]);
    drop_table(&dynamo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_past_its_bound_says_so_and_never_counts_more_than_there_are() {
    let mut rng = Rng(11);
    // Given 120 OTPs of one account over 16 shards
    let (memory, dynamo) = (Arc::new(MemoryStore::new()), dynamo(16).await);
    let stores: Vec<Arc<dyn Store>> = vec![memory.clone(), dynamo.clone()];
    let account = ids::new_sid(ids::ACCOUNT);
    let otps = fill(&mut rng, &stores, &account, 120, 0).await;
    let pending = SearchFilter { status: Some(OtpStatus::Success), ..Default::default() };
    let exact = otps.iter().filter(|o| pending.matches(o, NOW)).count() as u64;
    // When they are counted with a bound below their number
    for reads in [1, 60, 119] {
        let Counted { matched, complete } = dynamo.count_otps(&account, &pending, NOW, reads).await.expect("count");
        // Then the count is exact if it says so (each round reads at least one item of every
        // partition with more, so it may read a few past its bound), else a lower bound
        if complete {
            assert_eq!(matched, exact, "{reads}");
        } else {
            assert!(matched <= exact, "{reads}: {matched} > {exact}");
        }
        assert!(complete || reads < 120);
        if reads == 1 {
            assert!(!complete, "one read per partition cannot count 120");
        }
    }
    // And with room for all of them it is exact
    assert_eq!(
        dynamo.count_otps(&account, &pending, NOW, 121).await.unwrap(),
        Counted { matched: exact, complete: true }
    );
    drop_table(&dynamo).await;
}
