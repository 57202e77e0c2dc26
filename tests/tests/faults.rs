//! Failing fast, on moto: DynamoDB (or SNS) paused with SIGSTOP in the middle of
//! concurrent sends and verifies. Every answer is 200, 4xx or 503 within the budget, a send
//! answered 503 leaves no OTP, counter or usage behind, and service comes back by itself; and
//! with the dependency stopped altogether, requests answer 503 at once.
//!
//! Each test starts its own moto processes (DynamoDB and SNS apart, so one can fail alone) on
//! free loopback ports, and signals only those pids. The SDK clients use the production
//! timeouts (`production_timeout_config`).

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{body::Body, http::Request};
use serde_json::{json, Value};
use tower::ServiceExt;
use twofa::adapters::router::{self, Route, Router};
use twofa::domain::otp::Channel;
use twofa::{
    adapters::aws::{
        aws_config, dispatch_config_with,
        dynamodb::{create_table, DynamoStore},
        production_timeout_config,
        ses::SesEmail,
        sns::SnsSms,
        ATTEMPT_TIMEOUT, DISPATCH_OPERATION_TIMEOUT, OPERATION_TIMEOUT,
    },
    domain::{account::Account, crypto::Keys, ids},
    ports::{AccountStore, Deps, NoScheduler, SystemClock},
};

/// The longest a send may take to answer while a dependency hangs: a commit that times out
/// (one operation timeout after a snapshot that made it), or a publish that uses up its tries
/// and its undo that times out too; plus the scheduling slack of a loaded 2-core machine.
/// Each test starts two moto servers and times answers against `budget()`: one at a time, so
/// neither's servers take the other's cores while it measures.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn budget() -> Duration {
    (OPERATION_TIMEOUT * 2).max(DISPATCH_OPERATION_TIMEOUT + OPERATION_TIMEOUT) + Duration::from_millis(900)
}

/// A moto server of our own; killed (by its pid) when dropped.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Moto {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
        let python = root.join(".venv/bin/python");
        assert!(python.exists(), "moto's virtualenv is missing: run `make test` (it installs it)");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(python)
            .arg(root.join("infra/scripts/moto_serial_server.py"))
            .args(["127.0.0.1", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        Moto { child, url: format!("http://127.0.0.1:{port}") }
    }

    async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{}/moto-api/", self.url)).await.is_err() {
            assert!(Instant::now() < deadline, "moto did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig} of our moto");
    }
    fn pause(&self) {
        self.signal("-STOP");
    }
    fn resume(&self) {
        self.signal("-CONT");
    }
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The production SDK configuration (`AWS_ENDPOINT_URL` of `make test` notwithstanding: each
/// client below is pointed at its own moto).
async fn sdk() -> aws_config::SdkConfig {
    aws_config().await.into_builder().timeout_config(production_timeout_config()).build()
}

struct World {
    app: axum::Router,
    ddb: aws_sdk_dynamodb::Client,
    table: String,
    auth: String,
}

async fn world(ddb_url: &str, sns_url: &str) -> World {
    let sdk = sdk().await;
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk).endpoint_url(ddb_url).build(),
    );
    // The delivery clients as the Lambda builds them: 3 tries within 1.5 s.
    let delivery = dispatch_config_with(&sdk, ATTEMPT_TIMEOUT, DISPATCH_OPERATION_TIMEOUT);
    let sns =
        aws_sdk_sns::Client::from_conf(aws_sdk_sns::config::Builder::from(&delivery).endpoint_url(sns_url).build());
    let ses =
        aws_sdk_ses::Client::from_conf(aws_sdk_ses::config::Builder::from(&delivery).endpoint_url(sns_url).build());
    let table = format!("twofa-{}", ids::new_sid(""));
    // Setting up is not under test: the table is made with the suite's timeouts (a fresh moto
    // on a loaded machine can take longer than one production attempt to create it).
    let setup = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws_config().await).endpoint_url(ddb_url).build(),
    );
    create_table(&setup, &table).await.expect("create table");
    let keys = Keys::random();
    let store = Arc::new(DynamoStore::new(ddb.clone(), table.clone()));
    let token = ids::new_sid("");
    let account = Account::new(ids::new_sid(ids::ACCOUNT), &token, &keys, None, 0);
    store.put_account(&account).await.expect("account");
    let dispatcher = Router::new(vec![
        Route::new(router::SNS, Channel::Sms, Arc::new(SnsSms::new(sns, None))),
        Route::new(router::SES, Channel::Email, Arc::new(SesEmail::new(ses, None))),
    ]);
    let deps = Deps {
        store,
        dispatcher: Arc::new(dispatcher),
        clock: Arc::new(SystemClock),
        keys: Arc::new(keys),
        scheduler: Arc::new(NoScheduler),
    };
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{token}", account.sid));
    World { app: twofa::http::otp::router(deps), ddb, table, auth }
}

impl World {
    async fn post(&self, path: &str, body: Value) -> (u16, Value, Duration) {
        let t0 = Instant::now();
        let req = Request::post(path)
            .header("Authorization", format!("Basic {}", self.auth))
            .header("Content-Type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), t0.elapsed())
    }

    async fn send(&self, to: &str) -> (u16, Value, Duration) {
        self.post("/2fa/send", json!({ "service": "2FA", "from": "Twofa", "to": to, "body": "{code}" })).await
    }

    /// Every item of the table, by kind (the first part of its partition key).
    async fn items(&self) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let mut all = vec![];
        let mut start = None;
        loop {
            // The check's own read, on the production timeouts: a busy moto may miss one attempt.
            let mut tries = 0;
            let out = loop {
                match self.ddb.scan().table_name(&self.table).set_exclusive_start_key(start.clone()).send().await {
                    Ok(out) => break out,
                    Err(e) if tries < 5 => {
                        tries += 1;
                        eprintln!("scan retried: {e}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => panic!("scan: {e}"),
                }
            };
            all.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return all;
            }
        }
    }

    /// (OTP items, destination pointers, sum of counter counts, sum of usage counts (all)).
    async fn footprint(&self) -> (usize, usize, i64, i64) {
        let s = |i: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>, k: &str| {
            i.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
        };
        let n = |i: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>, k: &str| {
            i.get(k).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok()).unwrap_or(0)
        };
        let items = self.items().await;
        let otps = items.iter().filter(|i| s(i, "pk").starts_with("OTP#")).count();
        // A destination item holds each service's pointer (`svc:{service}`) and the default
        // limit's counter; other limits' counters are `CTR#` items.
        let dest_items = || items.iter().filter(|i| s(i, "pk").starts_with("DEST#"));
        let dests = dest_items().map(|i| i.keys().filter(|k| k.starts_with("svc:")).count()).sum();
        let counters =
            items.iter().filter(|i| s(i, "pk").starts_with("CTR#")).chain(dest_items()).map(|i| n(i, "count")).sum();
        // A usage item holds one count per category: `All` is the OTPs created.
        let usage = items.iter().filter(|i| s(i, "pk").starts_with("USAGE#")).map(|i| n(i, "All")).sum();
        (otps, dests, counters, usage)
    }
}

fn number(i: usize) -> String {
    format!("+1415555{:04}", 1000 + i)
}

/// Wait until a send answers 200 again, by itself (no restart, no new clients).
async fn comes_back(w: &World, first: usize) -> Duration {
    let t0 = Instant::now();
    for i in first.. {
        let (status, body, _) = w.send(&number(i)).await;
        if status == 200 {
            return t0.elapsed();
        }
        assert_eq!(status, 503, "{body}");
        assert!(t0.elapsed() < Duration::from_secs(20), "no 200 within 20 s of the dependency returning");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unreachable!()
}

/// What every answer during a fault must be: 200, a 4xx, or 503, within the budget.
fn check_answers(answers: &[(u16, Value, Duration)]) {
    for (status, body, took) in answers {
        assert!(
            *status == 200 || (400..500).contains(status) || *status == 503,
            "answered {status} {body} during the fault"
        );
        assert!(*took <= budget(), "answered {status} after {took:?}, over the budget {:?}", budget());
    }
}

/// Once the commits answered 503 that still landed are undone (within the undo's half minute),
/// the table holds exactly what the sends answered 200 wrote: one OTP, one pointer, one
/// counter use and one usage per send.
async fn nothing_half_written(w: &World, sent_ok: usize, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (otps, dests, counters, usage) = w.footprint().await;
        let want = sent_ok as i64;
        if (otps, dests, counters, usage) == (sent_ok, sent_ok, want, want) {
            return;
        }
        if Instant::now() >= deadline {
            // What is left, to tell a send that was never undone from one undone in part.
            let otps: Vec<String> = w
                .items()
                .await
                .iter()
                .filter(|i| i.get("pk").and_then(|v| v.as_s().ok()).is_some_and(|pk| pk.starts_with("OTP#")))
                .map(|i| format!("{:?} {:?}", i.get("sk"), i.get("events")))
                .collect();
            panic!(
                "after {after}: {otps:?}: {} OTPs, {dests} pointers, {counters} counter uses, {usage} usage \
                 for {sent_ok} sends answered 200",
                otps.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_paused_mid_flight_answers_503_in_budget_leaves_nothing_and_recovers() {
    let _alone = ONE_AT_A_TIME.lock().await;
    // Given the OTP API on DynamoDB and SNS (two moto servers), with OTPs already sent
    let ddb = Moto::start();
    let sns = Moto::start();
    ddb.ready().await;
    sns.ready().await;
    let w = Arc::new(world(&ddb.url, &sns.url).await);
    let mut pending = vec![];
    for i in 0..10 {
        let (status, body, _) = w.send(&number(i)).await;
        assert_eq!(status, 200, "{body}");
        pending.push(body["requestID"].as_str().unwrap().to_owned());
    }
    // When 60 sends to new numbers and 20 wrong-code verifies run at once and DynamoDB freezes
    // in the middle of them for 4 s
    let mut tasks = vec![];
    for i in 100..160 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move { (Some(i), w.send(&number(i)).await) }));
    }
    for sid in pending.iter().flat_map(|s| [s.clone(), s.clone()]) {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            (None, w.post("/2fa/verify", json!({ "requestId": sid, "code": "000000" })).await)
        }));
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    ddb.pause();
    let paused_at = Instant::now();
    // and 10 more sends after it froze
    for i in 200..210 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move { (Some(i), w.send(&number(i)).await) }));
    }
    let mut answers = vec![];
    let mut sent_ok = 10;
    for t in tasks {
        let (send, answer) = t.await.unwrap();
        if send.is_some() && answer.0 == 200 {
            sent_ok += 1;
        }
        answers.push(answer);
    }
    // Then every request answered 200, 4xx or 503 within the budget, some of them 503
    check_answers(&answers);
    assert!(answers[answers.len() - 10..].iter().all(|a| a.0 == 503), "the sends after the freeze answer 503");
    // And a send while DynamoDB is still frozen answers 503 in budget
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(paused_at.elapsed())).await;
    let (status, body, took) = w.send(&number(900)).await;
    assert_eq!(status, 503, "{body}");
    assert!(took <= budget(), "{took:?}");
    // And when DynamoDB answers again, sends succeed by themselves
    ddb.resume();
    comes_back(&w, 1000).await;
    sent_ok += 1;
    // And the sends answered 503 left no OTP, no pointer, no counter, no usage
    nothing_half_written(&w, sent_ok, "DynamoDB froze and came back").await;
    // And with DynamoDB gone altogether (connection refused), a send and a verify answer 503
    let mut ddb = ddb;
    ddb.stop();
    let (status, body, took) = w.send(&number(2000)).await;
    assert_eq!(status, 503, "{body}");
    assert!(took <= budget(), "{took:?}");
    let (status, body, took) = w.post("/2fa/verify", json!({ "requestId": pending[0], "code": "000000" })).await;
    assert_eq!(status, 503, "{body}");
    assert!(took <= budget(), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_failing_after_the_commit_answers_503_in_budget_and_undoes_the_send() {
    let _alone = ONE_AT_A_TIME.lock().await;
    // Given the OTP API on DynamoDB and SNS (two moto servers)
    let ddb = Moto::start();
    let mut sns = Moto::start();
    ddb.ready().await;
    sns.ready().await;
    let w = Arc::new(world(&ddb.url, &sns.url).await);
    let (status, body, _) = w.send(&number(0)).await;
    assert_eq!(status, 200, "{body}");
    // When SNS freezes while 30 sends are in flight (each commits, then cannot publish)
    let mut tasks = vec![];
    for i in 100..130 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move { w.send(&number(i)).await }));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    sns.pause();
    // and 10 more after it froze
    let mut after = vec![];
    for i in 200..210 {
        let w = w.clone();
        after.push(tokio::spawn(async move { w.send(&number(i)).await }));
    }
    let mut answers = vec![];
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let mut sent_ok = 1 + answers.iter().filter(|a| a.0 == 200).count();
    // Then each answered 200 or 503 within the budget, and those sent after the freeze 503
    check_answers(&answers);
    for t in after {
        let (status, body, took) = t.await.unwrap();
        assert_eq!(status, 503, "{body}");
        assert!(took <= budget(), "{took:?}");
    }
    // And when SNS answers again, sends succeed by themselves
    sns.resume();
    comes_back(&w, 1000).await;
    sent_ok += 1;
    // And each send answered 503 was undone whole: no OTP, pointer, counter or usage
    nothing_half_written(&w, sent_ok, "SNS froze and came back").await;
    // And with SNS gone altogether (connection refused), a send answers 503 at once and is
    // undone too
    sns.stop();
    let (status, body, took) = w.send(&number(500)).await;
    assert_eq!(status, 503, "{body}");
    assert!(took <= budget(), "{took:?}");
    nothing_half_written(&w, sent_ok, "SNS refused connections").await;
}
