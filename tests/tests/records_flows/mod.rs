//! The records scenarios, over HTTP, written once and run against both stores: the embedded
//! one (tests/api_records.rs) and DynamoDB on moto (tests/records_dynamodb.rs). Each takes an
//! `Api` whose dev server runs on the store under test.
#![allow(dead_code)]

use std::collections::HashSet;

use futures::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use twofa::{adapters::outbox::OutboxMode, domain::time};

use crate::common::{wrong, Api, Resp};

/// A distinct destination per index (the default limit allows one OTP a minute per number).
pub fn number(i: usize) -> String {
    format!("+1415555{i:04}")
}

/// `GET /2fa/search?{query}` as the caller; must answer 200.
pub async fn search(api: &Api, query: &str) -> Value {
    let r = api.get(&format!("/2fa/search?{query}")).await;
    assert_eq!(r.status, 200, "search {query}: {}", r.text);
    r.json()
}

pub async fn search_as(api: &Api, sid: &str, token: &str, query: &str) -> Resp {
    api.call_as(sid, token, Method::GET, &format!("/2fa/search?{query}"), None, "").await
}

/// GET a path the API answered (a page or record URI); must answer 200.
pub async fn follow(api: &Api, uri: &str) -> Value {
    let r = api.get(uri).await;
    assert_eq!(r.status, 200, "{uri}: {}", r.text);
    r.json()
}

pub fn sdrs(v: &Value) -> &Vec<Value> {
    v["twoFaOtpSdrs"].as_array().unwrap_or_else(|| panic!("no twoFaOtpSdrs in {v}"))
}

pub fn sids(v: &Value) -> Vec<String> {
    sdrs(v).iter().map(|s| s["sid"].as_str().expect("sid").to_owned()).collect()
}

pub fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().map(String::as_str).collect()
}

fn ms(sdr_date: &Value) -> i64 {
    time::parse_date_or_datetime(sdr_date.as_str().expect("a date")).expect("an SDR date")
}

pub async fn usage(api: &Api, path_and_query: &str) -> Vec<Value> {
    let r = api.get(path_and_query).await;
    assert_eq!(r.status, 200, "{path_and_query}: {}", r.text);
    let v = r.json();
    assert_eq!(keys(&v), ["usageRecords"]);
    v["usageRecords"].as_array().expect("usageRecords").clone()
}

/// The count of the one record `path_and_query` answers.
pub async fn usage_count(api: &Api, path_and_query: &str) -> u64 {
    let records = usage(api, path_and_query).await;
    assert_eq!(records.len(), 1, "{path_and_query}: {records:?}");
    records[0]["count"].as_str().expect("count is a string").parse().expect("count digits")
}

pub fn assert_400_naming(r: &Resp, param: &str) {
    assert_eq!(r.status, 400, "{}", r.text);
    let v = r.json();
    assert_eq!(v["code"], 400);
    let message = v["message"].as_str().expect("message");
    assert!(message.starts_with(&format!("Invalid parameter: {param} (")), "{message}");
}

/// The seed's nine fields, then ours (`country`: the destination's ISO code, null for email).
const SDR_KEYS: [&str; 10] =
    ["sid", "service", "accountSid", "dateCreated", "dateUpdated", "status", "uri", "checks", "events", "country"];
/// The seed's nine, then ours for an SMS: its encoding and segments, and the route it took.
const EVENT_KEYS: [&str; 12] = [
    "sid",
    "dateCreated",
    "channel",
    "sender",
    "recipient",
    "targetSid",
    "channelStatus",
    "channelErrorCode",
    "channelErrorMessage",
    "encoding",
    "segments",
    "route",
];
const PAGE_KEYS: [&str; 11] = [
    "page",
    "num_pages",
    "page_size",
    "total",
    "start",
    "end",
    "uri",
    "first_page_uri",
    "previous_page_uri",
    "next_page_uri",
    "twoFaOtpSdrs",
];

/// The seed flows: one OTP verified after one wrong check, one left to expire; the search (as
/// the seed's curl sends it: GET with a JSON body), the status filter and the single record
/// show them with the seed's fields, order and values.
pub async fn seed_flow(api: &Api) {
    // Given an OTP verified after one wrong code
    let verified_to = "+14155550100";
    let verified = api.sent(verified_to).await;
    let code = api.code_of(&verified).await;
    let wrong_code = wrong(&code);
    assert_eq!(api.verify(&verified, &wrong_code).await.code(), 474);
    assert_eq!(api.verify(&verified, &code).await.status, 200);
    // And, a second later, one left to expire
    api.advance(1).await;
    let expired = api.send_to("+14155550101", json!({ "timeout": "30" })).await.request_id();
    api.advance(31).await;

    // When the caller searches as the seed does
    let r = api.call(Method::GET, "/2fa/search", Some(r#"{"pageSize": "2", "page":"0"}"#), "application/json").await;

    // Then the page has the seed's fields in the seed's order
    assert_eq!(r.status, 200, "{}", r.text);
    let page = r.json();
    assert_eq!(keys(&page), PAGE_KEYS);
    let first_uri = format!("/2fa/search?pageSize=2&page=0&accountSid={}", api.sid);
    assert_eq!(
        (&page["page"], &page["num_pages"], &page["page_size"], &page["total"], &page["start"], &page["end"]),
        (&json!(0), &json!(1), &json!(2), &json!(2), &json!(0), &json!(1))
    );
    assert_eq!(page["uri"], "/2fa/search");
    assert_eq!(page["first_page_uri"], first_uri.as_str());
    assert_eq!(page["previous_page_uri"], Value::Null);
    assert_eq!(page["next_page_uri"], Value::Null);
    // And the records come newest first, with their status as it is now
    assert_eq!(sids(&page), [expired.clone(), verified.clone()]);
    let (e, v) = (&sdrs(&page)[0], &sdrs(&page)[1]);
    for sdr in [e, v] {
        assert_eq!(keys(sdr), SDR_KEYS);
        assert_eq!(sdr["service"], "2FA");
        assert_eq!(sdr["accountSid"], api.sid.as_str());
    }
    assert_eq!(e["status"], "expired");
    assert_eq!(e["uri"], format!("/2fa/search/{expired}"));
    assert_eq!(ms(&e["dateUpdated"]) - ms(&e["dateCreated"]), 30_000, "expired when its timeout ran out");
    assert_eq!(e["checks"], json!([]));
    assert_eq!(v["status"], "success");

    // And the verified one lists both checks with the codes entered
    let checks = v["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 2);
    for c in checks {
        assert_eq!(keys(c), ["sid", "dateReceived", "status", "code"]);
        assert!(c["sid"].as_str().unwrap().starts_with("OTC"));
    }
    assert_eq!((&checks[0]["status"], &checks[0]["code"]), (&json!("invalid"), &json!(wrong_code)));
    assert_eq!((&checks[1]["status"], &checks[1]["code"]), (&json!("valid"), &json!(code)));
    assert_eq!(v["dateUpdated"], checks[1]["dateReceived"]);

    // And each dispatch is an event naming the provider's message
    let delivered = &api.dev.outbox.messages(Some(verified_to))[0];
    assert_eq!(
        v["events"],
        json!([{
            "sid": v["events"][0]["sid"],
            "dateCreated": v["dateCreated"],
            "channel": "sms",
            "sender": "Twofa",
            "recipient": verified_to,
            "targetSid": delivered.id,
            "channelStatus": "sent",
            "channelErrorCode": null,
            "channelErrorMessage": null,
            "encoding": "GSM-7",
            "segments": 1,
            "route": "outbox",
        }])
    );
    assert!(v["events"][0]["sid"].as_str().unwrap().starts_with("OTE"));
    assert_eq!(keys(&v["events"][0]), EVENT_KEYS);

    // When the seed's exact request filters on success
    let body = r#"{ "pageSize": "2", "page":"0", "status":"success" }"#;
    let r = api.call(Method::GET, "/2fa/search", Some(body), "application/json").await;
    // Then only the verified one is listed, and the page URIs carry the filter as the seed's do
    let success = r.json();
    assert_eq!(sids(&success), [verified.as_str()]);
    assert_eq!(success["total"], 1);
    assert_eq!(success["first_page_uri"], format!("{first_uri}&status=success"));

    // When each record is fetched by its sid, with and without .json
    for (i, sid) in [&expired, &verified].into_iter().enumerate() {
        for path in [format!("/2fa/search/{sid}"), format!("/2fa/search/{sid}.json")] {
            // Then it is the SDR object itself, as the search shows it
            assert_eq!(follow(api, &path).await, sdrs(&page)[i], "{path}");
        }
    }

    // And usage counts both OTPs, on SMS, on the days they were sent
    assert_eq!(usage_count(api, "/2fa/usage/records").await, 2);
    assert_eq!(usage_count(api, "/2fa/usage/records?channel=sms").await, 2);
    assert_eq!(usage_count(api, "/2fa/usage/records?channel=email").await, 0);
    let daily = usage(api, "/2fa/usage/records/daily.json").await;
    let days: HashSet<String> = [v, e].iter().map(|s| s["dateCreated"].as_str().unwrap()[..10].to_owned()).collect();
    assert_eq!(daily.iter().map(|r| r["count"].as_str().unwrap().parse::<u64>().unwrap()).sum::<u64>(), 2);
    assert!(daily.iter().all(|r| days.contains(r["startTime"].as_str().unwrap())), "{daily:?}");
}

/// A dispatch the provider refuses is an event `failed` with the provider's code and message.
pub async fn provider_refusal(api: &Api) {
    // Given a provider that refuses every message
    api.dev.outbox.set_mode(OutboxMode::Reject);
    // When an OTP is sent
    let sid = api.sent("+14155550123").await;
    // Then its record shows the failed dispatch
    let sdr = follow(api, &format!("/2fa/search/{sid}")).await;
    let event = &sdr["events"][0];
    assert_eq!(event["channelStatus"], "failed");
    assert_eq!(event["channelErrorCode"], "30008");
    assert_eq!(event["channelErrorMessage"], "Unknown error");
    assert_eq!(event["targetSid"], Value::Null);
    assert_eq!(sdr["status"], "pending");
    // And it still counts as sent
    assert_eq!(usage_count(api, "/2fa/usage/records?channel=sms").await, 1);
}

/// Send `n` OTPs to distinct numbers; their sids in sending order.
pub async fn send_many(api: &Api, n: usize) -> Vec<String> {
    let mut sent = vec![];
    for i in 0..n {
        sent.push(api.sent(&number(i)).await);
    }
    sent
}

/// Records listed by pages `0..` of `page_size`, with `page`; each page checked for shape.
async fn pages_by_number(api: &Api, page_size: u64, pages: u64, extra: &str) -> Vec<Vec<String>> {
    let mut out = vec![];
    for page in 0..pages {
        let v = search(api, &format!("pageSize={page_size}&page={page}{extra}")).await;
        assert_eq!(v["page"], page);
        out.push(sids(&v));
    }
    out
}

/// 25 records, pages of 10: three pages (10, 10, 5), newest first, each record exactly once,
/// whether the client asks for `page=N` or follows the next/previous URIs (page tokens).
pub async fn paging(api: &Api) {
    // Given 25 OTPs
    let sent = send_many(api, 25).await;

    // When the client pages with page=N
    let by_number = pages_by_number(api, 10, 4, "").await;
    // Then there are three pages of 10, 10 and 5, and a fourth is empty
    assert_eq!(by_number.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5, 0]);
    let all: Vec<String> = by_number.concat();
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), 25, "no record twice");
    assert_eq!(unique, sent.iter().collect(), "none missing");
    let last = search(api, "pageSize=10&page=2").await;
    assert_eq!(
        (&last["num_pages"], &last["total"], &last["start"], &last["end"]),
        (&json!(3), &json!(25), &json!(20), &json!(24))
    );
    assert_eq!(last["next_page_uri"], Value::Null);

    // And newest first across pages
    let mut created = vec![];
    for page in 0..3 {
        let v = search(api, &format!("pageSize=10&page={page}")).await;
        created.extend(sdrs(&v).iter().map(|s| ms(&s["dateCreated"])));
    }
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "{created:?}");

    // When the client follows next_page_uri from the first page
    let mut pages = vec![search(api, "pageSize=10").await];
    while let Some(next) = pages.last().unwrap()["next_page_uri"].as_str().map(str::to_owned) {
        assert!(next.contains("&pageToken="), "{next}");
        assert!(
            next.starts_with(&format!("/2fa/search?pageSize=10&page={}&accountSid={}", pages.len(), api.sid)),
            "{next}"
        );
        pages.push(follow(api, &next).await);
        assert!(pages.len() <= 3, "more pages than records");
    }
    // Then it sees the same three pages
    assert_eq!(pages.iter().map(sids).collect::<Vec<_>>(), by_number[..3]);
    assert!(pages.iter().all(|p| p["total"] == 25 && p["num_pages"] == 3));

    // When it goes back with previous_page_uri from the last page, then from the second
    let back = pages[2]["previous_page_uri"].as_str().expect("previous of page 2").to_owned();
    assert!(back.contains("&pageToken="), "{back}");
    let second = follow(api, &back).await;
    assert_eq!(second["page"], 1);
    assert_eq!(sids(&second), by_number[1]);
    let back = second["previous_page_uri"].as_str().expect("previous of page 1").to_owned();
    assert_eq!(back, format!("/2fa/search?pageSize=10&page=0&accountSid={}", api.sid), "page 0 needs no token");
    assert_eq!(sids(&follow(api, &back).await), by_number[0]);
    assert_eq!(pages[0]["previous_page_uri"], Value::Null);
}

/// Filters echo on every page URI and the token stays valid with them.
pub async fn paging_with_a_filter(api: &Api) {
    // Given 12 OTPs, 5 of them verified
    let sent = send_many(api, 12).await;
    for sid in sent.iter().step_by(2).take(5) {
        let code = api.code_of(sid).await;
        assert_eq!(api.verify(sid, &code).await.status, 200);
    }
    // When the client pages through the verified ones two at a time by token
    let mut pages = vec![search(api, "pageSize=2&status=success").await];
    while let Some(next) = pages.last().unwrap()["next_page_uri"].as_str().map(str::to_owned) {
        assert!(next.contains("&status=success&pageToken="), "{next}");
        pages.push(follow(api, &next).await);
    }
    // Then it sees exactly those 5, on 3 pages
    let seen: Vec<String> = pages.iter().flat_map(sids).collect();
    assert_eq!(pages.len(), 3);
    assert_eq!(seen.iter().collect::<HashSet<_>>(), sent.iter().step_by(2).take(5).collect::<HashSet<_>>());
    assert_eq!(seen.len(), 5);
    assert!(pages.iter().all(|p| p["total"] == 5));
}

/// The status filter matches the status true at read time, not the one stored: a pending OTP
/// past its timeout is `expired`, one past its supersede deadline `canceled`.
pub async fn status_filters(api: &Api) {
    // Given one OTP in each state
    let expires = api.send_to(&number(1), json!({ "timeout": "30" })).await.request_id();
    let success = api.sent(&number(2)).await;
    let code = api.code_of(&success).await;
    assert_eq!(api.verify(&success, &code).await.status, 200);
    let failed = api.sent(&number(3)).await;
    let code = api.code_of(&failed).await;
    for _ in 0..5 {
        api.verify(&failed, &wrong(&code)).await;
    }
    let canceled = api.sent(&number(4)).await;
    assert_eq!(api.post("/2fa/cancel", &json!({ "requestId": canceled })).await.status, 200);
    let superseded = api.sent(&number(5)).await;
    // (past the default limit's minute, and past the first one's timeout)
    api.advance(61).await;
    let superseding = api.sent(&number(5)).await;
    let pending = api.sent(&number(6)).await;

    // When the records are searched by status, Then each status lists its OTPs
    let expect = [
        ("pending", vec![&superseding, &pending]),
        ("expired", vec![&expires]),
        ("canceled", vec![&canceled, &superseded]),
        ("success", vec![&success]),
        ("failed", vec![&failed]),
    ];
    for (status, want) in expect {
        let v = search(api, &format!("status={status}&pageSize=100")).await;
        let got: HashSet<String> = sids(&v).into_iter().collect();
        assert_eq!(got, want.iter().map(|s| (*s).clone()).collect::<HashSet<_>>(), "status={status}");
        assert_eq!(v["total"], want.len(), "status={status}");
        assert!(sdrs(&v).iter().all(|s| s["status"] == status), "status={status}: {v}");
    }
    // And the unfiltered search shows the same statuses
    assert_eq!(search(api, "pageSize=100").await["total"], 7);
    // And a superseded OTP reads canceled from the moment it was superseded
    let s = follow(api, &format!("/2fa/search/{superseded}")).await;
    let sup = follow(api, &format!("/2fa/search/{superseding}")).await;
    assert_eq!(s["dateUpdated"], sup["dateCreated"]);
}

/// `service`, `to` (with or without `+`), `channel` and the inclusive time range.
pub async fn field_and_time_filters(api: &Api) {
    // Given OTPs on different services and channels, and one two days later
    let a = api.sent("+14155550100").await;
    let login = api.send_to("+14155550101", json!({ "service": "Login" })).await.request_id();
    let mail = api
        .send_to("user@example.com", json!({ "channel": "email", "from": "otp@example.com", "subject": "Your code" }))
        .await
        .request_id();
    api.advance(2 * 86_400).await;
    let later = api.sent("+14155550102").await;

    let only = |v: &Value| sids(v);
    assert_eq!(only(&search(api, "service=Login").await), [login.as_str()]);
    assert_eq!(only(&search(api, "to=14155550100").await), [a.as_str()]);
    assert_eq!(only(&search(api, "to=%2B14155550100").await), [a.as_str()]);
    assert_eq!(only(&search(api, "channel=email").await), [mail.as_str()]);
    assert_eq!(search(api, "channel=sms").await["total"], 3);
    assert_eq!(only(&search(api, "service=2FA&channel=sms&to=%2B14155550102").await), [later.as_str()]);

    // A date covers its whole day; a date-time its second; both bounds are inclusive
    let later_sdr = follow(api, &format!("/2fa/search/{later}")).await;
    let later_day = &later_sdr["dateCreated"].as_str().unwrap()[..10];
    assert_eq!(only(&search(api, &format!("startTime={later_day}")).await), [later.as_str()]);
    assert_eq!(search(api, &format!("endTime={later_day}")).await["total"], 4);
    let a_sdr = follow(api, &format!("/2fa/search/{a}")).await;
    let a_at = a_sdr["dateCreated"].as_str().unwrap().to_owned();
    let a_day = &a_at[..10];
    let exact = search(api, &format!("startTime={a_at}&endTime={a_at}")).await;
    assert!(sids(&exact).contains(&a));
    assert!(sdrs(&exact).iter().all(|s| s["dateCreated"] == a_at.as_str()));
    let first_days = search(api, &format!("startTime={a_day}&endTime={a_day}T23:59:59")).await;
    assert!(!sids(&first_days).contains(&later));
    // And the page URIs carry the filters given, after the account
    let v = search(api, "channel=sms&service=2FA&pageSize=1").await;
    let next = v["next_page_uri"].as_str().unwrap();
    assert!(
        next.starts_with(&format!(
            "/2fa/search?pageSize=1&page=1&accountSid={}&service=2FA&channel=sms&pageToken=",
            api.sid
        )),
        "{next}"
    );
}

/// Another account's records are invisible: not listed, and by sid answered exactly like an
/// unknown sid. `accountSid` of an account that is not below the caller is 403.
pub async fn tenant_isolation(api: &Api, other: (&str, &str)) {
    // Given an OTP of another account, and one of ours
    let (other_sid, other_token) = other;
    let body = json!({ "service": "2FA", "from": "X", "to": "+14155550111", "body": "{code}" });
    let theirs = api.post_as(other_sid, other_token, "/2fa/send", &body).await.request_id();
    let ours = api.sent("+14155550112").await;
    // Then each account lists only its own
    assert_eq!(sids(&search(api, "").await), [ours.as_str()]);
    let r = search_as(api, other_sid, other_token, "subAccounts=true").await;
    assert_eq!(sids(&r.json()), [theirs.as_str()]);
    // And their sid answers like an unknown one
    let unknown = api.get(&format!("/2fa/search/OTP{}", "0".repeat(32))).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.text, r#"{"code":404,"message":"Not found","requestID":null}"#);
    for path in [
        format!("/2fa/search/{theirs}"),
        format!("/2fa/search/{theirs}.json"),
        format!("/2fa/search/{theirs}?subAccounts=true"),
    ] {
        let r = api.get(&path).await;
        assert_eq!((r.status, &r.text), (unknown.status, &unknown.text), "{path}");
    }
    assert_eq!(api.get("/2fa/search/not-a-sid").await.text, unknown.text);
    // And acting for it is forbidden
    assert_eq!(api.get(&format!("/2fa/search?accountSid={other_sid}")).await.status, 403);
    assert_eq!(api.get(&format!("/2fa/usage/records?accountSid={other_sid}")).await.status, 403);
    // And usage counts only our own
    assert_eq!(usage_count(api, "/2fa/usage/records").await, 1);
}

/// `accountSid` acts for a sub-account; `subAccounts=true` adds every account below the one
/// acted for. A record of a sub-account has a URI the caller can follow.
pub async fn sub_accounts(api: &Api, sub: (&str, &str), grandchild: (&str, &str)) {
    let (sub_sid, sub_token) = sub;
    let (grand_sid, grand_token) = grandchild;
    // Given an OTP of the caller, two of its sub-account (one sent on its behalf), one of a
    // sub-account below that
    let own = api.sent(&number(1)).await;
    let for_sub = api.send_to(&number(2), json!({ "accountSid": sub_sid })).await.request_id();
    let body = |i| json!({ "service": "2FA", "from": "X", "to": number(i), "body": "{code}" });
    let by_sub = api.post_as(sub_sid, sub_token, "/2fa/send", &body(3)).await.request_id();
    let by_grand = api.post_as(grand_sid, grand_token, "/2fa/send", &body(4)).await.request_id();
    let set = |v: &Value| sids(v).into_iter().collect::<HashSet<_>>();
    let of = |l: &[&String]| l.iter().map(|s| (*s).clone()).collect::<HashSet<_>>();

    // Then the caller sees its own by default, the sub-account's when acting for it, and the
    // whole tree with subAccounts=true
    assert_eq!(set(&search(api, "").await), of(&[&own]));
    assert_eq!(set(&search(api, &format!("accountSid={sub_sid}")).await), of(&[&for_sub, &by_sub]));
    let tree = search(api, "subAccounts=true").await;
    assert_eq!(set(&tree), of(&[&own, &for_sub, &by_sub, &by_grand]));
    assert_eq!(tree["total"], 4);
    assert!(tree["first_page_uri"].as_str().unwrap().ends_with("&subAccounts=true"));
    assert_eq!(
        set(&search(api, &format!("accountSid={sub_sid}&subAccounts=true")).await),
        of(&[&for_sub, &by_sub, &by_grand])
    );

    // And every record's URI is one the caller can follow
    for sdr in sdrs(&tree) {
        let uri = sdr["uri"].as_str().unwrap();
        let owner = sdr["accountSid"].as_str().unwrap();
        if owner == api.sid {
            assert_eq!(uri, format!("/2fa/search/{}", sdr["sid"].as_str().unwrap()));
        } else {
            assert_eq!(uri, format!("/2fa/search/{}?accountSid={owner}", sdr["sid"].as_str().unwrap()));
        }
        assert_eq!(&follow(api, uri).await, sdr);
    }
    // And a sub-account sees its own and below, never its parent's
    let r = search_as(api, sub_sid, sub_token, "subAccounts=true").await;
    assert_eq!(set(&r.json()), of(&[&for_sub, &by_sub, &by_grand]));
    assert_eq!(search_as(api, sub_sid, sub_token, &format!("accountSid={}", api.sid)).await.status, 403);
    let r = api.call_as(sub_sid, sub_token, Method::GET, &format!("/2fa/search/{own}"), None, "").await;
    assert_eq!(r.status, 404);
    // And a parent reads a sub-account's record by sid only when acting for it or its tree
    assert_eq!(api.get(&format!("/2fa/search/{by_sub}")).await.status, 404);
    assert_eq!(api.get(&format!("/2fa/search/{by_sub}?subAccounts=true")).await.status, 200);
    // And usage of a sub-account is read by acting for it
    assert_eq!(usage_count(api, &format!("/2fa/usage/records?accountSid={sub_sid}")).await, 2);
    assert_eq!(usage_count(api, "/2fa/usage/records").await, 1);
}

/// Usage records: `All` counts OTPs, a channel its dispatches, per day, month, year and over
/// named periods, in the seed's shapes.
pub async fn usage_records(api: &Api) {
    // Given 2 SMS, 1 email and 1 call on one day, and 1 SMS the next day
    api.sent(&number(1)).await;
    let first = api.sent(&number(2)).await;
    api.send_to("user@example.com", json!({ "channel": "email", "from": "otp@example.com", "subject": "Code" }))
        .await
        .request_id();
    api.send_to(&number(3), json!({ "channel": "call" })).await.request_id();
    api.advance(86_400).await;
    api.sent(&number(4)).await;
    let day0 = follow(api, &format!("/2fa/search/{first}")).await["dateCreated"].as_str().unwrap()[..10].to_owned();
    let day1 = time::day(time::parse_date_or_datetime(&day0).unwrap() + 86_400_000);

    // Then the totals per category
    assert_eq!(usage_count(api, "/2fa/usage/records").await, 5);
    assert_eq!(usage_count(api, "/2fa/usage/records?channel=All").await, 5);
    assert_eq!(usage_count(api, "/2fa/usage/records?channel=sms").await, 3);
    assert_eq!(usage_count(api, "/2fa/usage/records?channel=email").await, 1);
    assert_eq!(usage_count(api, "/2fa/usage/records?channel=call").await, 1);
    assert_eq!(usage_count(api, "/2fa/usage/records?channel=voice").await, 1);

    // And the seed's request: a range, All, in the seed's shape
    let r = usage(api, &format!("/2fa/usage/records.json?startDate={day0}&endDate={day0}")).await;
    assert_eq!(
        r,
        [json!({
            "channel": "All",
            "description": "Total OTP sent, irrespective of channel or retry",
            "accountSid": api.sid,
            "startTime": day0,
            "endTime": day0,
            "count": "4",
            "unit": "OTP",
            "uri": format!("/2fa/usage/records?startTime={day0}&endTime={day0}&accountSid={}", api.sid),
        })]
    );
    assert_eq!(keys(&r[0]), ["channel", "description", "accountSid", "startTime", "endTime", "count", "unit", "uri"]);
    // And a channel in the seed's other shape
    let r = usage(api, &format!("/2fa/usage/records?channel=call&startDate={day0}&endDate={day1}")).await;
    assert_eq!(
        r,
        [json!({
            "category": "call",
            "description": "Total calls made for OTP",
            "accountSid": api.sid,
            "startDate": day0,
            "endDate": day1,
            "count": "1",
            "unit": "Calls",
            "uri": format!("/2fa/usage/records?channel=call&startDate={day0}&endDate={day1}&accountSid={}", api.sid),
        })]
    );
    assert_eq!(keys(&r[0]), ["category", "description", "accountSid", "startDate", "endDate", "count", "unit", "uri"]);
    let sms = usage(api, "/2fa/usage/records?channel=sms").await;
    assert_eq!((&sms[0]["unit"], &sms[0]["description"]), (&json!("SMS"), &json!("Total SMS sent for OTP")));
    let email = usage(api, "/2fa/usage/records?channel=email").await;
    assert_eq!((&email[0]["unit"], &email[0]["description"]), (&json!("Emails"), &json!("Total emails sent for OTP")));
    // And a record's URI gives that record back
    let uri = r[0]["uri"].as_str().unwrap().to_owned();
    assert_eq!(usage(api, &uri).await, r);
    let all = usage(api, &format!("/2fa/usage/records?startDate={day0}&endDate={day0}")).await;
    assert_eq!(usage(api, all[0]["uri"].as_str().unwrap()).await, all);

    // And daily: one record per day with usage, oldest first
    let daily = usage(api, "/2fa/usage/records/daily").await;
    let got: Vec<(&str, &str, &str)> = daily
        .iter()
        .map(|r| (r["startTime"].as_str().unwrap(), r["endTime"].as_str().unwrap(), r["count"].as_str().unwrap()))
        .collect();
    assert_eq!(got, [(day0.as_str(), day0.as_str(), "4"), (day1.as_str(), day1.as_str(), "1")]);
    assert_eq!(
        daily[0]["uri"],
        format!("/2fa/usage/records/daily?startTime={day0}&endTime={day0}&accountSid={}", api.sid)
    );
    let daily_sms = usage(api, "/2fa/usage/records/daily.json?channel=sms").await;
    assert_eq!(daily_sms.iter().map(|r| r["count"].as_str().unwrap()).collect::<Vec<_>>(), ["2", "1"]);
    assert!(daily_sms.iter().all(|r| r["category"] == "sms"));
    // And monthly / yearly sum the days
    for sub in ["monthly", "yearly"] {
        let recs = usage(api, &format!("/2fa/usage/records/{sub}")).await;
        let sum: u64 = recs.iter().map(|r| r["count"].as_str().unwrap().parse::<u64>().unwrap()).sum();
        assert_eq!(sum, 5, "{sub}: {recs:?}");
    }
    // And the named periods give one record each
    assert_eq!(usage_count(api, "/2fa/usage/records/today").await, 1);
    assert_eq!(usage_count(api, "/2fa/usage/records/yesterday.json").await, 4);
    assert_eq!(usage_count(api, "/2fa/usage/records/alltime").await, 5);
    let same_month = day0[..7] == day1[..7];
    assert_eq!(usage_count(api, "/2fa/usage/records/thismonth").await, if same_month { 5 } else { 1 });
    assert_eq!(usage_count(api, "/2fa/usage/records/lastmonth").await, if same_month { 0 } else { 4 });
    let today = usage(api, "/2fa/usage/records/today?channel=sms").await;
    assert_eq!(
        (today[0]["startDate"].as_str(), today[0]["endDate"].as_str()),
        (Some(day1.as_str()), Some(day1.as_str()))
    );
    // And POST takes the filters in a body
    let r = api.post("/2fa/usage/records", &json!({ "channel": "email", "startDate": day0 })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["usageRecords"][0]["count"], "1");
}

/// `n` sends at once, to distinct numbers: usage counts every one, exactly. With
/// `retry_unavailable`, a send answered 503 is sent again, as a client would (a 503 leaves
/// nothing written): moto's `TransactWriteItems` deep-copies the table without a lock and fails
/// now and then under concurrent requests, which real DynamoDB does not.
pub async fn usage_under_concurrent_sends(api: &Api, n: usize, retry_unavailable: bool) {
    let numbers: Vec<String> = (0..n).map(number).collect();
    let send = |to: &str| {
        let to = to.to_owned();
        async move {
            let mut r = api.send_to(&to, json!({})).await;
            for _ in 0..5 {
                if !(retry_unavailable && r.status == 503) {
                    break;
                }
                r = api.send_to(&to, json!({})).await;
            }
            r
        }
    };
    let results = join_all(numbers.iter().map(|to| send(to))).await;
    let failed: Vec<&String> = results.iter().filter(|r| r.status != 200).map(|r| &r.text).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(usage_count(api, "/2fa/usage/records").await, n as u64);
    assert_eq!(usage_count(api, "/2fa/usage/records?channel=sms").await, n as u64);
    assert_eq!(usage(api, "/2fa/usage/records/today").await[0]["count"], n.to_string());
    assert_eq!(search(api, "pageSize=1").await["total"], n);
}
