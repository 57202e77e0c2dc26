//! `make bench`, DynamoDB part: each API operation once against DynamoDB (moto at
//! `AWS_ENDPOINT_URL`), with its round trips and the capacity units it would consume on
//! DynamoDB on-demand, and the cost per million OTPs that implies.
//!
//! moto does not report consumed capacity faithfully (a fixed 0.5 or 1.0, nothing for
//! transactions), so the units are computed from the items, by DynamoDB's rules: a write costs
//! 1 unit per started KB of the larger of the item before and after, twice in a transaction,
//! once more for `gsi1` (ALL projection: accounts) when the item changes, 1 for the sparse
//! `gsi2` when its key appears or goes (2 when it moves); a read 1 unit per started 4 KB
//! (half when eventually consistent), twice in a transaction; a Query rounds the sum of what it
//! returns. Item sizes: attribute names plus values (numbers ~ 1 byte per 2 digits + 1).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use aws_sdk_dynamodb::{
    config::{
        interceptors::{AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef},
        ConfigBag, Intercept, RuntimeComponents,
    },
    types::AttributeValue,
    Client,
};
use aws_smithy_runtime_api::{box_error::BoxError, client::orchestrator::Metadata};
use axum::{body::Body, http::Request};
use serde_json::{json, Value};
use tower::ServiceExt;
use twofa::{
    adapters::{
        aws::{
            aws_config,
            dynamodb::{create_table, DynamoStore},
        },
        outbox::Outbox,
    },
    domain::{account::Account, crypto::Keys, ids},
    ports::{AccountStore, Deps, NoScheduler, SystemClock},
};

/// On-demand prices, us-east-1 (USD per million request units), as of 2024-11.
const WRITE_PRICE: f64 = 0.625;
const READ_PRICE: f64 = 0.125;

/// Every request and answer body, in order: (operation, request JSON, response JSON).
#[derive(Debug, Default, Clone)]
struct Tap(Arc<Mutex<Vec<(String, Value, Value)>>>);

impl Intercept for Tap {
    fn name(&self) -> &'static str {
        "bench::Tap"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg.load::<Metadata>().map(Metadata::name).unwrap_or("").to_owned();
        let body = ctx.request().body().bytes().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
        self.0.lock().unwrap().push((op, body, Value::Null));
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        ctx: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = ctx.response().body().bytes().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
        if let Some(last) = self.0.lock().unwrap().last_mut() {
            last.2 = body;
        }
        Ok(())
    }
}

/// DynamoDB's size of an attribute value in its JSON wire form.
fn value_size(v: &Value) -> usize {
    let Some((ty, inner)) = v.as_object().and_then(|o| o.iter().next()) else { return 0 };
    match ty.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => inner.as_str().map_or(0, |n| n.trim_start_matches('-').len().div_ceil(2) + 1),
        "B" => inner.as_str().map_or(0, |b| b.len() * 3 / 4),
        "BOOL" | "NULL" => 1,
        "SS" | "NS" | "BS" => inner.as_array().map_or(0, |a| a.iter().map(|s| s.as_str().map_or(0, str::len)).sum()),
        "L" => 3 + inner.as_array().map_or(0, |a| a.iter().map(|e| 1 + value_size(e)).sum::<usize>()),
        "M" => 3 + inner.as_object().map_or(0, |m| m.iter().map(|(k, e)| 1 + k.len() + value_size(e)).sum::<usize>()),
        _ => 0,
    }
}

fn item_size(item: &serde_json::Map<String, Value>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn sdk_item_size(item: &HashMap<String, AttributeValue>) -> usize {
    fn size(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
            AttributeValue::B(b) => b.as_ref().len(),
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::Ss(s) => s.iter().map(String::len).sum(),
            AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + size(e)).sum::<usize>(),
            AttributeValue::M(m) => 3 + m.iter().map(|(k, e)| 1 + k.len() + size(e)).sum::<usize>(),
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + size(v)).sum()
}

type Row = HashMap<String, AttributeValue>;
type Table = HashMap<(String, String), Row>;

async fn scan(client: &Client, table: &str) -> Table {
    let mut all = Table::new();
    let mut start = None;
    loop {
        let out = client.scan().table_name(table).set_exclusive_start_key(start).send().await.expect("scan");
        for item in out.items.unwrap_or_default() {
            let k = |a: &str| item.get(a).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            all.insert((k("pk"), k("sk")), item);
        }
        start = out.last_evaluated_key;
        if start.is_none() {
            return all;
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Cost {
    reads: u64,
    writes: u64,
    rru: f64,
    wru: f64,
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            reads: self.reads + o.reads,
            writes: self.writes + o.writes,
            rru: self.rru + o.rru,
            wru: self.wru + o.wru,
        }
    }
}

/// Read units of the read requests in `log`.
fn read_units(log: &[(String, Value, Value)]) -> (u64, f64) {
    let mut calls = 0;
    let mut units = 0.0;
    for (op, req, resp) in log {
        let factor = |consistent: bool| if consistent { 1.0 } else { 0.5 };
        let obj = |v: &Value| v.as_object().cloned().unwrap_or_default();
        match op.as_str() {
            "GetItem" => {
                calls += 1;
                let size = item_size(&obj(&resp["Item"]));
                units += size.div_ceil(4096).max(1) as f64 * factor(req["ConsistentRead"] == json!(true));
            }
            "BatchGetItem" => {
                calls += 1;
                for (table, keys) in req["RequestItems"].as_object().cloned().unwrap_or_default() {
                    let consistent = keys["ConsistentRead"] == json!(true);
                    let found = resp["Responses"][&table].as_array().cloned().unwrap_or_default();
                    let asked = keys["Keys"].as_array().map_or(0, Vec::len);
                    // Every key asked costs at least one unit, found or not.
                    let sizes: Vec<usize> = found.iter().map(|i| item_size(&obj(i))).collect();
                    let found_units: usize = sizes.iter().map(|s| s.div_ceil(4096).max(1)).sum();
                    let missing = asked.saturating_sub(found.len());
                    units += (found_units + missing) as f64 * factor(consistent);
                }
            }
            "Query" => {
                calls += 1;
                let total: usize = resp["Items"].as_array().map_or(0, |a| a.iter().map(|i| item_size(&obj(i))).sum());
                units += total.div_ceil(4096).max(1) as f64 * factor(req["ConsistentRead"] == json!(true));
            }
            _ => {}
        }
    }
    (calls, units)
}

/// The table keys one write request writes, and whether it is a transaction.
fn written_keys(op: &str, req: &Value) -> Vec<((String, String), bool)> {
    let key = |v: &Value| {
        let s = |a: &str| v[a]["S"].as_str().unwrap_or_default().to_owned();
        (s("pk"), s("sk"))
    };
    match op {
        "PutItem" => vec![(key(&req["Item"]), false)],
        "UpdateItem" | "DeleteItem" => vec![(key(&req["Key"]), false)],
        "TransactWriteItems" => req["TransactItems"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|t| {
                        let t = t.as_object()?;
                        let (kind, body) = t.iter().next()?;
                        match kind.as_str() {
                            "Put" => Some((key(&body["Item"]), true)),
                            "Update" | "Delete" => Some((key(&body["Key"]), true)),
                            _ => None,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => vec![],
    }
}

/// Write units of each write request in `log`, each item at the larger of its size before and
/// after the operation (items written twice in one operation are billed twice).
fn write_units(log: &[(String, Value, Value)], before: &Table, after: &Table) -> (u64, f64) {
    let writes = ["PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"];
    let calls = log.iter().filter(|(op, ..)| writes.contains(&op.as_str())).count() as u64;
    let mut units = 0.0;
    let gsi2 = gsi2_writes(log, before);
    for (at, (op, req, _)) in log.iter().enumerate() {
        for (key, transactional) in written_keys(op, req) {
            let (b, a) = (before.get(&key), after.get(&key));
            let size = b.map_or(0, sdk_item_size).max(a.map_or(0, sdk_item_size));
            let base = size.div_ceil(1024).max(1) as f64;
            let mut item_units = if transactional { 2.0 * base } else { base };
            let in_gsi = |i: Option<&HashMap<String, AttributeValue>>, pk: &str| i.is_some_and(|i| i.contains_key(pk));
            let changed = b != a;
            if changed && (in_gsi(b, "gsi1pk") || in_gsi(a, "gsi1pk")) {
                // gsi1 projects ALL: any change writes the index copy (a moved key: a delete
                // and a put).
                let moved =
                    in_gsi(b, "gsi1pk") && in_gsi(a, "gsi1pk") && b.unwrap().get("gsi1sk") != a.unwrap().get("gsi1sk");
                item_units += base * if moved { 2.0 } else { 1.0 };
            }
            let moves = gsi2.get(&(at, key.clone())).copied().unwrap_or(0);
            item_units += f64::from(moves);
            if std::env::var_os("BENCH_DETAIL").is_some() {
                eprintln!(
                    "    {op:<20} {:<60} {:>5} B -> {:>5} B  {item_units} WRU",
                    format!("{} {}", key.0, key.1),
                    b.map_or(0, sdk_item_size),
                    a.map_or(0, sdk_item_size)
                );
            }
            units += item_units;
        }
    }
    (calls, units)
}

/// Writes of the sparse `gsi2` per item over `log`, in order: its entry appearing or going is
/// 1 (an entry under 1 KB), moving 2; it projects two attributes that never change, so nothing
/// else writes it. Judged from each request (an item written twice in one operation is only
/// seen before the first write and after the last); a refused request writes nothing.
fn gsi2_writes(log: &[(String, Value, Value)], before: &Table) -> HashMap<(usize, (String, String)), u32> {
    let mut state: HashMap<(String, String), bool> = HashMap::new();
    let mut writes = HashMap::new();
    for (at, (op, req, resp)) in log.iter().enumerate() {
        if resp.get("__type").is_some() {
            continue;
        }
        let each: Vec<&Value> = match op.as_str() {
            "TransactWriteItems" => req["TransactItems"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|t| t.as_object()?.iter().next())
                        .filter(|(kind, _)| *kind != "ConditionCheck")
                        .map(|(_, body)| body)
                        .collect()
                })
                .unwrap_or_default(),
            "PutItem" | "UpdateItem" | "DeleteItem" => vec![req],
            _ => vec![],
        };
        for body in each {
            let item = if body.get("Item").is_some() { &body["Item"] } else { &body["Key"] };
            let key = (
                item["pk"]["S"].as_str().unwrap_or_default().to_owned(),
                item["sk"]["S"].as_str().unwrap_or_default().to_owned(),
            );
            let was =
                *state.entry(key.clone()).or_insert_with(|| before.get(&key).is_some_and(|i| i.contains_key("gsi2pk")));
            let update = body["UpdateExpression"].as_str().unwrap_or_default();
            let names = body["ExpressionAttributeNames"].as_object().cloned().unwrap_or_default();
            let sets_key = names.iter().any(|(_, v)| v == "gsi2sk") && update.contains("#gsi2sk =");
            let (now, cost) = if body.get("Item").is_some() {
                let now = body["Item"].get("gsi2pk").is_some();
                (
                    now,
                    match (was, now) {
                        (false, false) => 0,
                        (true, true) => 2,
                        _ => 1,
                    },
                )
            } else if update.contains("REMOVE gsi2pk") || body.get("UpdateExpression").is_none() {
                (false, u32::from(was))
            } else if sets_key && was {
                (true, 2)
            } else {
                (was, 0)
            };
            state.insert(key.clone(), now);
            *writes.entry((at, key)).or_insert(0) += cost;
        }
    }
    writes
}

struct Bench {
    app: axum::Router,
    tap: Tap,
    client: Client,
    table: String,
    auth: String,
    /// An account with the pumping guard on (its default).
    guarded_auth: String,
    outbox: Arc<Outbox>,
}

impl Bench {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value, Cost) {
        self.call_as(&self.auth, method, path, body).await
    }

    async fn call_as(&self, auth: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value, Cost) {
        let before = scan(&self.client, &self.table).await;
        self.tap.0.lock().unwrap().clear();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("Authorization", format!("Basic {auth}"))
            .header("Content-Type", "application/json");
        req = req.header("X-Forwarded-For", "127.0.0.1");
        let req = req.body(body.map_or(Body::empty(), |b| Body::from(b.to_string()))).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let log: Vec<_> = std::mem::take(&mut *self.tap.0.lock().unwrap());
        // The scans of the bench itself are not the operation's.
        let log: Vec<_> = log.into_iter().filter(|(op, ..)| op != "Scan").collect();
        let after = scan(&self.client, &self.table).await;
        self.tap.0.lock().unwrap().clear();
        let (reads, rru) = read_units(&log);
        let (writes, wru) = write_units(&log, &before, &after);
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), Cost { reads, writes, rru, wru })
    }

    fn code(&self, request_id: &str) -> String {
        let m = self.outbox.messages(None).into_iter().find(|m| m.request_id == request_id).expect("sent");
        m.body.chars().filter(char::is_ascii_digit).collect()
    }
}

fn row(name: &str, c: Cost) {
    println!("  {name:<34} {:>3} reads {:>3} writes   {:>5.1} RRU {:>5.1} WRU", c.reads, c.writes, c.rru, c.wru);
}

#[tokio::main]
async fn main() {
    std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL must point at moto");
    let sdk = aws_config().await;
    let tap = Tap::default();
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(tap.clone()).build();
    let client = Client::from_conf(conf);
    let table = format!("bench-{}", ids::new_sid(""));
    create_table(&client, &table).await.expect("create table");
    let keys = Keys::random();
    // The guard's window kept a minute (not the deployed second): the bench's scans between
    // requests take longer than a second.
    let store = Arc::new(
        DynamoStore::new(client.clone(), table.clone())
            .with_guard_cache(std::time::Duration::from_secs(60), Arc::new(SystemClock)),
    );
    let token = ids::new_sid("");
    let mut account = Account::new(ids::new_sid(ids::ACCOUNT), &token, &keys, None, 0);
    account.policy.guard.enabled = false;
    store.put_account(&account).await.expect("account");
    let guarded_token = ids::new_sid("");
    let guarded = Account::new(ids::new_sid(ids::ACCOUNT), &guarded_token, &keys, None, 0);
    assert!(guarded.policy.guard.enabled, "the guard is on by default");
    store.put_account(&guarded).await.expect("account");
    let outbox = Arc::new(Outbox::new(Arc::new(SystemClock)));
    let deps = Deps {
        store,
        dispatcher: outbox.clone(),
        clock: Arc::new(SystemClock),
        keys: Arc::new(keys),
        scheduler: Arc::new(NoScheduler),
    };
    let app = axum::Router::new()
        .merge(twofa::http::otp::router(deps.clone()))
        .merge(twofa::http::limits::router(deps.clone()).reset_fallback())
        .merge(twofa::http::records::router(deps.clone()).reset_fallback());
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{token}", account.sid));
    let guarded_auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{guarded_token}", guarded.sid));
    let b = Bench { app, tap, client, table, auth, guarded_auth, outbox };

    let send = |to: &str| json!({ "service": "2FA", "from": "Twofa", "to": to, "body": "{code}" });
    // Warm: the account is cached per process, as on a warm Lambda.
    let (status, body, _) = b.call("POST", "/2fa/send", Some(send("+14155550190"))).await;
    assert_eq!(status, 200, "{body}");

    println!("DynamoDB per operation (warm process; computed units, see dynamo_costs.rs):");
    let (status, body, send_cost) = b.call("POST", "/2fa/send", Some(send("+14155550191"))).await;
    assert_eq!(status, 200, "{body}");
    row("send (SMS, new number)", send_cost);
    let sid = body["requestID"].as_str().unwrap().to_owned();
    let code = b.code(&sid);
    let wrong = if code.starts_with('0') { "1".repeat(code.len()) } else { "0".repeat(code.len()) };
    let (status, body, wrong_cost) =
        b.call("POST", "/2fa/verify", Some(json!({ "requestId": sid, "code": wrong }))).await;
    assert!(status >= 400, "{body}");
    row("verify, wrong code", wrong_cost);
    let (status, body, verify_cost) =
        b.call("POST", "/2fa/verify", Some(json!({ "requestId": sid, "code": code }))).await;
    assert_eq!(status, 200, "{body}");
    row("verify, right code", verify_cost);
    let (status, body, _) = b.call("POST", "/2fa/send", Some(send("+14155550192"))).await;
    assert_eq!(status, 200, "{body}");
    let sid2 = body["requestID"].as_str().unwrap().to_owned();
    let (status, body, cancel_cost) = b.call("POST", "/2fa/cancel", Some(json!({ "requestId": sid2 }))).await;
    assert_eq!(status, 200, "{body}");
    row("cancel", cancel_cost);
    let (status, body, search_cost) = b.call("GET", "/2fa/search?pageSize=20", None).await;
    assert_eq!(status, 200, "{body}");
    row("search (a page of 3 records)", search_cost);
    let (status, body, usage_cost) = b.call("GET", "/2fa/usage/records", None).await;
    assert!(status == 200, "{body}");
    row("usage records (all time)", usage_cost);

    // A send that names a callback is watched: its expiry is swept, so it has a due entry.
    let mut watched = send("+14155550193");
    watched["callbackUrl"] = json!("https://example.com/twofa-events");
    let (status, body, watched_send) = b.call("POST", "/2fa/send", Some(watched)).await;
    assert_eq!(status, 200, "{body}");
    let sid3 = body["requestID"].as_str().unwrap().to_owned();
    let code3 = b.code(&sid3);
    let (status, body, watched_verify) =
        b.call("POST", "/2fa/verify", Some(json!({ "requestId": sid3, "code": code3 }))).await;
    assert_eq!(status, 200, "{body}");
    row("send + verify, with a callbackUrl", watched_send + watched_verify);

    // The pumping guard on (an account's default): a send reads the window of its country and
    // the account-wide one (a process keeps its copy a while: the second pair is within that).
    let (status, body, _) = b.call_as(&b.guarded_auth, "GET", "/2fa/search?pageSize=1", None).await;
    assert_eq!(status, 200, "{body}");
    for (name, to) in [("send + verify, guarded", "+14155550194"), ("  the same, window cached", "+14155550195")] {
        let (status, body, guarded_send) = b.call_as(&b.guarded_auth, "POST", "/2fa/send", Some(send(to))).await;
        assert_eq!(status, 200, "{body}");
        let gsid = body["requestID"].as_str().unwrap().to_owned();
        let gcode = b.code(&gsid);
        let verify = json!({ "requestId": gsid, "code": gcode });
        let (status, body, guarded_verify) = b.call_as(&b.guarded_auth, "POST", "/2fa/verify", Some(verify)).await;
        assert_eq!(status, 200, "{body}");
        row(name, guarded_send + guarded_verify);
    }

    let pair = send_cost + verify_cost;
    row("send + verify", pair);
    let dollars = pair.wru * WRITE_PRICE + pair.rru * READ_PRICE;
    println!(
        "  cost per million OTPs (send + verify, on-demand ${WRITE_PRICE}/M writes, ${READ_PRICE}/M reads): ${dollars:.2}"
    );
    println!("BENCH dynamo_send_verify_wru={:.1} rru={:.1} usd_per_million={dollars:.2}", pair.wru, pair.rru);
    let _ = b.client.delete_table().table_name(&b.table).send().await;
}
