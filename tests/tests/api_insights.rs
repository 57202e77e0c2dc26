//! Black-box tests of the insights API (issue 28, `GET /2fa/insights`): what an account's
//! sends, verifies, delivery reports and refusals add up to, by period, channel and country,
//! on the dev server's store (exact).

mod common;

use std::{sync::Arc, time::Duration};

use common::{provider::Provider, wrong, Api, Resp};
use serde_json::{json, Value};
use twofa::ports::Clock;
use twofa::{
    adapters::provider::{HttpProvider, ProviderConfig},
    domain::{callbacks::new_secret, crypto::Keys, time},
};
use twofa_local::Dev;

/// `GET /2fa/insights?{query}` as the account, expecting 200; its `data`.
async fn insights(api: &Api, query: &str) -> Value {
    insights_as(api, &api.sid, &api.token, query).await
}

async fn insights_as(api: &Api, sid: &str, token: &str, query: &str) -> Value {
    let r = get_as(api, sid, token, &format!("/2fa/insights?{query}")).await;
    assert_eq!(r.status, 200, "{query}: {}", r.text);
    let v = r.json();
    assert_eq!((v["code"].as_i64(), v["message"].as_str()), (Some(200), Some("OK")), "{}", r.text);
    v["data"].clone()
}

async fn get_as(api: &Api, sid: &str, token: &str, path: &str) -> Resp {
    api.call_as(sid, token, reqwest::Method::GET, path, None, "").await
}

/// `POST /dev/accounts` with a policy: the new account's (sid, token).
async fn account_with(api: &Api, policy: Value) -> (String, String) {
    let r = api.http.post(format!("{}/dev/accounts", api.base)).json(&policy).send().await.expect("dev/accounts");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("JSON");
    (v["accountSid"].as_str().unwrap().to_owned(), v["authToken"].as_str().unwrap().to_owned())
}

fn sms(to: &str) -> Value {
    json!({ "service": "2FA", "from": "Twofa", "to": to, "body": "Code {code}" })
}

fn email(to: &str) -> Value {
    json!({ "service": "2FA", "channel": "email", "from": "otp@example.com", "subject": "Code", "to": to,
            "body": "Code {code}" })
}

/// A row of `rows` (channels or countries) by its key's value.
fn row<'a>(rows: &'a Value, key: &str, value: &str) -> &'a Value {
    rows.as_array().unwrap().iter().find(|r| r[key] == value).unwrap_or_else(|| panic!("no {key} {value} in {rows}"))
}

#[tokio::test]
async fn sends_and_verifies_are_counted_by_channel_and_country_and_wrong_codes_do_not_verify() {
    // Given two SMS to the US, one to GB and one email
    let api = Api::start().await;
    let us1 = api.sent("+14155550101").await;
    let us2 = api.sent("+14155550102").await;
    let gb = api.sent("+447400123456").await;
    let r = api.post("/2fa/send", &email("u@example.com")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // When one US and the GB code are verified, and the other US gets a wrong code
    assert_eq!(api.verify(&us1, &api.code_of(&us1).await).await.status, 200);
    assert_eq!(api.verify(&gb, &api.code_of(&gb).await).await.status, 200);
    assert_eq!(api.verify(&us2, &wrong(&api.code_of(&us2).await)).await.code(), 474);
    // Then the last 24 hours show 4 sends, 2 verified: conversion 0.5
    let d = insights(&api, "").await;
    assert_eq!((d["accountSid"].as_str(), d["granularity"].as_str()), (Some(api.sid.as_str()), Some("hour")));
    let t = &d["totals"];
    assert_eq!((t["sends"].as_u64(), t["verified"].as_u64()), (Some(4), Some(2)), "{d}");
    assert_eq!(t["conversionRate"], 0.5);
    assert_eq!(t["refused"], json!({ "453": 0, "454": 0, "476": 0, "477": 0, "478": 0 }));
    // And 24 hourly periods, the sends in the last (the current hour)
    let series = d["series"].as_array().unwrap();
    assert_eq!(series.len(), 24);
    assert_eq!(series[23]["sends"], 4);
    assert_eq!(series.iter().map(|p| p["sends"].as_u64().unwrap()).sum::<u64>(), 4);
    // And by channel and by country (email has none: ZZ), countries by sends
    assert_eq!(row(&d["channels"], "channel", "sms")["sends"], 3);
    assert_eq!(row(&d["channels"], "channel", "email")["verified"], 0);
    let countries: Vec<(&str, u64)> = d["countries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["country"].as_str().unwrap(), c["sends"].as_u64().unwrap()))
        .collect();
    assert_eq!(countries, [("US", 2), ("GB", 1), ("ZZ", 1)]);
    assert_eq!(row(&d["countries"], "country", "US")["conversionRate"], 0.5);
    // And a channel or a country (any case) narrows every figure
    let e = insights(&api, "channel=email").await;
    assert_eq!((e["totals"]["sends"].as_u64(), e["channel"].as_str()), (Some(1), Some("email")));
    let g = insights(&api, "country=gb").await;
    assert_eq!((g["totals"]["sends"].as_u64(), g["totals"]["verified"].as_u64()), (Some(1), Some(1)));
    assert_eq!(g["country"], "GB");
    // And the .json twin answers the same
    let r = api.get("/2fa/insights.json").await;
    assert_eq!(r.json()["data"]["totals"], d["totals"]);
}

#[tokio::test]
async fn delivery_reports_count_each_message_once_at_its_first_final_status() {
    // Given SMS through the account's provider: two taken, one refused at send
    let provider = Provider::start(
        &[(200, r#"{"messageId":"m-1"}"#), (200, r#"{"messageId":"m-2"}"#), (422, "number not reachable")],
        Duration::ZERO,
    )
    .await;
    let secret = new_secret();
    let config = ProviderConfig::new("acme", &provider.url, &secret, true).expect("a provider");
    let dev = Dev::new(Keys::random()).with_sms_provider(HttpProvider::with_timeout(config, Duration::from_secs(5)));
    let api = Api::start_with(dev).await;
    for to in ["+14155550101", "+14155550102", "+14155550103"] {
        assert_eq!(api.send_to(to, json!({})).await.status, 200);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    // When the provider reports the first delivered, then failed (late), and the second undelivered
    for (id, status) in [("m-1", "delivered"), ("m-1", "failed"), ("m-2", "undelivered")] {
        let r =
            api.signed_report("/2fa/receipts/acme", &secret, &json!({ "messageId": id, "status": status }), now).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // Then each message counts once: delivered 1, undelivered 1, failed 1 (the refusal at send)
    let t = insights(&api, "range=24h").await["totals"].clone();
    assert_eq!(
        (t["sends"].as_u64(), t["delivered"].as_u64(), t["undelivered"].as_u64(), t["failed"].as_u64()),
        (Some(3), Some(1), Some(1), Some(1)),
        "{t}"
    );
    assert_eq!(t["deliveryRate"], 0.3333);
}

#[tokio::test]
async fn each_refusal_is_counted_under_its_code() {
    let api = Api::start().await;
    let refused = |d: &Value| d["totals"]["refused"].clone();
    // Given an account that sends twice to one number within the minute: 453
    assert_eq!(api.send_to("+14155550101", json!({})).await.status, 200);
    assert_eq!(api.send_to("+14155550101", json!({})).await.code(), 453);
    let d = insights(&api, "").await;
    assert_eq!(refused(&d), json!({ "453": 1, "454": 0, "476": 0, "477": 0, "478": 0 }));
    assert_eq!(d["totals"]["sends"], 1, "a refusal is not a send");

    // And a named limit of 1 a minute, met: 454
    let limit = json!({ "name": "per_ip", "buckets": [{ "name": "b", "max": 1, "interval": 60 }] });
    assert_eq!(api.post("/2fa/limits", &limit).await.status, 200);
    let limits = json!({ "limits": { "per_ip": "10.0.0.1" } });
    assert_eq!(api.send_to("+14155550102", limits.clone()).await.status, 200);
    assert_eq!(api.send_to("+14155550103", limits).await.code(), 454);
    assert_eq!(refused(&insights(&api, "").await)["454"], 1);

    // And an account that may send SMS to GB only, sending to the US: 476, counted in the US
    let (sid, token) = account_with(&api, json!({ "allowedCountries": { "sms": ["GB"] } })).await;
    assert_eq!(api.post_as(&sid, &token, "/2fa/send", &sms("+14155550100")).await.code(), 476);
    let d = insights_as(&api, &sid, &token, "").await;
    assert_eq!(refused(&d), json!({ "453": 0, "454": 0, "476": 1, "477": 0, "478": 0 }));
    assert_eq!(row(&d["countries"], "country", "US")["refused"]["476"], 1);
    assert_eq!(row(&d["channels"], "channel", "sms")["refused"]["476"], 1);

    // And an account whose pumping guard pauses a country after 2 unverified sends: 477
    let (sid, token) = account_with(&api, json!({ "pumpingGuard": { "minSends": 2, "minVerifyPercent": 50 } })).await;
    for to in ["+4915123456781", "+4915123456782"] {
        assert_eq!(api.post_as(&sid, &token, "/2fa/send", &sms(to)).await.status, 200);
    }
    assert_eq!(api.post_as(&sid, &token, "/2fa/send", &sms("+4915123456783")).await.code(), 477);
    let d = insights_as(&api, &sid, &token, "country=DE").await;
    assert_eq!(refused(&d)["477"], 1);
    assert_eq!(d["totals"]["sends"], 2);

    // And an account with a budget of 1 failed verify per destination, spent: 478
    let (sid, token) = account_with(&api, json!({ "maxFailedVerifies": 1 })).await;
    let r = api.post_as(&sid, &token, "/2fa/send", &sms("+14155550109")).await;
    let otp = r.request_id();
    let body = json!({ "service": "2FA", "requestId": otp, "code": wrong(&api.code_of(&otp).await) });
    assert_eq!(api.post_as(&sid, &token, "/2fa/verify", &body).await.code(), 474);
    api.advance(61).await;
    // When it sends to that destination again
    assert_eq!(api.post_as(&sid, &token, "/2fa/send", &sms("+14155550109")).await.code(), 478);
    // Then the refusal is counted under 478, nothing else
    let d = insights_as(&api, &sid, &token, "").await;
    assert_eq!(refused(&d), json!({ "453": 0, "454": 0, "476": 0, "477": 0, "478": 1 }));
}

#[tokio::test]
async fn otps_to_test_numbers_count_as_sends_and_verifies_without_a_delivery() {
    // Given an account with a test number
    let api = Api::start().await;
    let (sid, token) =
        account_with(&api, json!({ "testNumbers": [ { "to": "14155550123", "code": "246810" } ] })).await;
    // When it sends to it and verifies the fixed code
    let r = api.post_as(&sid, &token, "/2fa/send", &sms("+14155550123")).await;
    let body = json!({ "service": "2FA", "requestId": r.request_id(), "code": "246810" });
    assert_eq!(api.post_as(&sid, &token, "/2fa/verify", &body).await.status, 200);
    // Then it is one send, verified, with no delivery outcome
    let t = insights_as(&api, &sid, &token, "").await["totals"].clone();
    assert_eq!((t["sends"].as_u64(), t["verified"].as_u64()), (Some(1), Some(1)));
    assert_eq!((t["delivered"].as_u64(), t["failed"].as_u64(), &t["deliveryRate"]), (Some(0), Some(0), &Value::Null));
}

/// Moves the dev clock on to ten past the next hour: a test then has 50 minutes before the
/// hour changes under it.
async fn at_ten_past_an_hour(api: &Api) -> i64 {
    let now = api.dev.clock.now_ms();
    api.advance((HOUR - now % HOUR + 600_000) / 1000 + 1).await;
    api.dev.clock.now_ms()
}

const HOUR: i64 = 3_600_000;

#[tokio::test]
async fn ranges_and_granularity_cut_the_series_by_hour_or_day() {
    // Given a send, and one two hours later (dev clock)
    let api = Api::start().await;
    at_ten_past_an_hour(&api).await;
    api.sent("+14155550101").await;
    api.advance(2 * 3600).await;
    api.sent("+14155550102").await;
    let now = api.dev.clock.now_ms();
    let hour = now - now % HOUR;
    // Then the last 24 h show them two hours apart, in the current hour and two before
    let d = insights(&api, "range=24h").await;
    let series = d["series"].as_array().unwrap();
    let sends: Vec<u64> = series.iter().map(|p| p["sends"].as_u64().unwrap()).collect();
    assert_eq!((sends[21], sends[22], sends[23]), (1, 0, 1), "{sends:?}");
    assert_eq!(series[23]["start"], time::iso(hour));
    assert_eq!(
        (d["from"].clone(), d["to"].clone()),
        (json!(time::iso(hour - 23 * HOUR)), json!(time::iso(hour + HOUR)))
    );
    // And 7 and 30 days are by day, ending today
    for (range, days) in [("7d", 7), ("30d", 30)] {
        let d = insights(&api, &format!("range={range}")).await;
        let series = d["series"].as_array().unwrap();
        assert_eq!((d["granularity"].as_str(), series.len()), (Some("day"), days), "{range}");
        assert_eq!(d["totals"]["sends"], 2);
        assert_eq!(series.last().unwrap()["start"], time::iso(now - now % (24 * HOUR)));
        assert_eq!(series.iter().map(|p| p["sends"].as_u64().unwrap()).sum::<u64>(), 2);
    }
    // And a custom range of dates is by day beyond 72 hours, else by hour
    let (day, next) = (time::day(now), time::day(now + 24 * HOUR));
    let d = insights(&api, &format!("from={day}&to={next}")).await;
    assert_eq!((d["granularity"].as_str(), d["series"].as_array().unwrap().len()), (Some("hour"), 24));
    let d = insights(&api, &format!("from={day}&to={next}&granularity=day")).await;
    assert_eq!(d["series"].as_array().unwrap().len(), 1);
    let d = insights(&api, &format!("from={}&to={next}", time::day(now - 3 * 24 * HOUR))).await;
    assert_eq!((d["granularity"].as_str(), d["series"].as_array().unwrap().len()), (Some("day"), 4));
    // And a range of date-times is rounded out to whole hours
    let second = |ms: i64| time::iso(ms)[..19].to_owned();
    let d = insights(&api, &format!("from={}&to={}", second(now - 2 * HOUR), second(now + 1000))).await;
    let series = d["series"].as_array().unwrap();
    assert_eq!(series.iter().map(|p| p["sends"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 0, 1], "{d}");
    assert_eq!(series[0]["start"], time::iso(hour - 2 * HOUR));
    // And a range long ago holds nothing
    let d = insights(&api, "from=2020-01-01&to=2020-02-01").await;
    assert_eq!((d["granularity"].as_str(), d["totals"]["sends"].as_u64()), (Some("day"), Some(0)));
    assert_eq!(d["totals"]["conversionRate"], Value::Null);
}

#[tokio::test]
async fn a_bad_parameter_is_a_400_naming_it() {
    let api = Api::start().await;
    for (query, param) in [
        ("range=1y", "range"),
        ("range=24h&from=2026-01-01&to=2026-01-02", "range"),
        ("from=2026-01-01", "to"),
        ("to=2026-01-01", "from"),
        ("from=yesterday&to=2026-01-02", "from"),
        ("from=2026-01-01&to=2026-13-01", "to"),
        ("from=2026-01-02&to=2026-01-01", "to"),
        ("from=2026-01-01&to=2026-04-05", "to"),
        ("granularity=week", "granularity"),
        ("range=30d&granularity=hour", "granularity"),
        ("channel=fax", "channel"),
        ("country=USA", "country"),
    ] {
        // When the insights are asked for with it, Then the answer is a 400 naming it
        let r = api.get(&format!("/2fa/insights?{query}")).await;
        assert_eq!(r.status, 400, "{query}: {}", r.text);
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.starts_with(&format!("Invalid parameter: {param} (")), "{query}: {message}");
    }
    // And 93 days is the longest range
    assert_eq!(api.get("/2fa/insights?from=2026-01-01&to=2026-04-04").await.status, 200);
}

#[tokio::test]
async fn an_account_sees_its_sub_accounts_insights_and_no_others() {
    // Given a parent, its sub-account with one send, and another account
    let api = Api::start().await;
    let (sub, sub_token) = api.sub_account(&api.sid).await;
    let (other, other_token) = api.other_account().await;
    assert_eq!(api.send_to("+14155550101", json!({ "accountSid": sub })).await.status, 200);
    // Then the parent sees it with accountSid, not in its own
    let d = insights(&api, &format!("accountSid={sub}")).await;
    assert_eq!((d["accountSid"].as_str(), d["totals"]["sends"].as_u64()), (Some(sub.as_str()), Some(1)));
    assert_eq!(insights(&api, "").await["totals"]["sends"], 0);
    // And the sub-account sees its own
    assert_eq!(insights_as(&api, &sub, &sub_token, "").await["totals"]["sends"], 1);
    // But the sub-account cannot ask for its parent's, nor another account for either
    for (sid, token, target) in
        [(&sub, &sub_token, &api.sid), (&other, &other_token, &sub), (&other, &other_token, &api.sid)]
    {
        let r = get_as(&api, sid, token, &format!("/2fa/insights?accountSid={target}")).await;
        assert_eq!((r.status.as_u16(), r.code()), (403, 403), "{}", r.text);
    }
    // And no auth is a 401
    let r = api.http.get(format!("{}/2fa/insights", api.base)).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn concurrent_sends_and_verifies_are_counted_exactly() {
    // Given 100 sends to different numbers at once
    let api = std::sync::Arc::new(Api::start().await);
    let sends = (0..100).map(|i| {
        let api = api.clone();
        tokio::spawn(async move { api.sent(&format!("+1415555{:04}", 1000 + i)).await })
    });
    let sids: Vec<String> = futures::future::join_all(sends).await.into_iter().map(Result::unwrap).collect();
    // When half of them are verified at once
    let verifies = sids.iter().step_by(2).cloned().map(|sid| {
        let api = api.clone();
        tokio::spawn(async move {
            let code = api.code_of(&sid).await;
            assert_eq!(api.verify(&sid, &code).await.status, 200);
        })
    });
    for v in futures::future::join_all(verifies).await {
        v.unwrap();
    }
    // Then every one is counted, once
    let t = insights(&api, "").await["totals"].clone();
    assert_eq!((t["sends"].as_u64(), t["verified"].as_u64(), &t["conversionRate"]), (Some(100), Some(50), &json!(0.5)));
}

#[tokio::test]
async fn a_refusal_is_answered_with_its_code_when_its_count_cannot_be_written() {
    use twofa::{
        adapters::{clock::AdjustableClock, memory::MemoryStore, outbox::Outbox},
        domain::{
            account::Account,
            ids,
            otp::Delivery,
            policy::{update_policy, PolicyUpdate},
            send::{send, SendRequest},
        },
        ports::{AccountStore, Deps, NoScheduler},
        Error,
    };
    // Given an account that may send SMS to GB only
    let clock = Arc::new(AdjustableClock::default());
    let store = Arc::new(MemoryStore::new());
    let deps = Deps {
        store: store.clone(),
        dispatcher: Arc::new(Outbox::new(clock.clone())),
        clock,
        keys: Arc::new(Keys::random()),
        scheduler: Arc::new(NoScheduler),
    };
    let account = Account::new(ids::new_sid(ids::ACCOUNT), "token", &deps.keys, None, 0);
    store.put_account(&account).await.unwrap();
    let update: PolicyUpdate = serde_json::from_value(json!({ "allowedCountries": { "sms": ["GB"] } })).unwrap();
    update_policy(store.as_ref(), &deps.keys, &account.sid, update).await.unwrap();
    let account = store.get_account(&account.sid).await.unwrap().unwrap();
    // And a store that has stopped answering (the refusal's count is the first write it meets)
    store.set_down(true);
    // When it sends to the US
    let req = SendRequest {
        service: "2FA".into(),
        delivery: Delivery::sms("Twofa", "+14155550100", "Code {code}"),
        length: 6,
        timeout_secs: 300,
        guard_time: None,
        limits: vec![],
        idempotency_key: None,
        workflow: None,
        email: None,
        email_from: None,
    };
    // Then the answer is the refusal (476), not the store's failure
    assert_eq!(send(&deps, &account, req).await, Err(Error::CountryNotAllowed("US".into())));
}
