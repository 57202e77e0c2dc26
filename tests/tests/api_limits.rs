//! Black-box tests of the limits API (/2fa/limits) and of limits applied on send, over HTTP
//! against the dev server (embedded store).

mod common;

use common::{assert_400_naming, Api, Resp};
use futures::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use twofa::{
    domain::{account::Account, ids},
    ports::{AccountStore, Clock},
};

/// The seed's create body ("Limit Number of OTPs"), `buckets` a string with escaped quotes.
const SEED_CREATE: &str = r#"{
"name": "limit_on_phonenumber",
"buckets": "[{ \"name\":\"bucket1\", \"max\":\"1\", \"interval\":\"30\"},{ \"name\":\"bucket2\", \"max\":\"2\", \"interval\":\"300\"}]",
"description": "limit on Phone Number"
}"#;
/// The `buckets` string of `SEED_CREATE`, as the client meant it.
const SEED_BUCKETS: &str =
    r#"[{ "name":"bucket1", "max":"1", "interval":"30"},{ "name":"bucket2", "max":"2", "interval":"300"}]"#;
/// The seed's update body ("Update a Limit for OTPs").
const SEED_UPDATE: &str = r#"{
"buckets":"[{\"name\":\"bucket1\", \"max\":\"1\", \"interval\":\"30\"},{\"name\":\"bucket2\", \"max\":\"2\", \"interval\":\"300\"}]",
"description": "limit on Phone Number of receiver blabla"
}"#;
const SEED_UPDATED_BUCKETS: &str =
    r#"[{"name":"bucket1", "max":"1", "interval":"30"},{"name":"bucket2", "max":"2", "interval":"300"}]"#;
const INVALID_LIMIT_ID: &str = r#"{"code":493,"message":"Invalid Limit Id","requestID":null}"#;

// ---- helpers ------------------------------------------------------------------------------

/// A limit of one bucket `{name: "b", max, interval}`.
fn one_bucket(max: u32, interval: u32) -> Value {
    json!([{ "name": "b", "max": max, "interval": interval }])
}

async fn create(api: &Api, name: &str, buckets: Value) -> Resp {
    api.post("/2fa/limits", &json!({ "name": name, "buckets": buckets })).await
}

/// Create and expect 200; returns the sid.
async fn created(api: &Api, name: &str, buckets: Value) -> String {
    let r = create(api, name, buckets).await;
    assert_eq!(r.status, 200, "create {name} failed: {}", r.text);
    r.json()["data"]["sid"].as_str().expect("sid").to_owned()
}

async fn put(api: &Api, path: &str, body: &Value) -> Resp {
    api.call(Method::PUT, path, Some(&body.to_string()), "application/json").await
}

async fn delete(api: &Api, path: &str) -> Resp {
    api.call(Method::DELETE, path, None, "application/json").await
}

/// Send an SMS OTP to `to` naming `limits`.
async fn send_limited(api: &Api, to: &str, limits: Value) -> Resp {
    api.send_to(to, json!({ "limits": limits })).await
}

/// The names of a list response's result, in order.
fn names(r: &Resp) -> Vec<String> {
    r.json()["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_owned())
        .collect()
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().expect("object").keys().map(String::as_str).collect()
}

const LIMIT_FIELDS: [&str; 11] = [
    "sid",
    "name",
    "buckets",
    "description",
    "accountSid",
    "accountEmail",
    "targetAccountSid",
    "targetAccountEmail",
    "uri",
    "dateCreated",
    "dateUpdated",
];

/// `2021-02-04T03:52:09.400+0000`
fn is_iso(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 28 && s.ends_with("+0000") && b[10] == b'T' && b[19] == b'.' && b[4] == b'-' && b[13] == b':'
}

// ---- seed flows, byte for byte ------------------------------------------------------------

#[tokio::test]
async fn seed_create_with_buckets_as_a_string_echoes_that_exact_string() {
    // Given the seed's create request, buckets as a string with escaped quotes
    let api = Api::start().await;
    // When it is posted
    let r = api.call(Method::POST, "/2fa/limits", Some(SEED_CREATE), "application/json").await;
    // Then the answer is the seed shape, buckets exactly the string given
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let d = &v["data"];
    assert_eq!(keys(&v), ["data", "code", "message"]);
    assert_eq!(keys(d), LIMIT_FIELDS);
    let sid = d["sid"].as_str().unwrap();
    assert!(ids::is_sid("LM", sid), "{sid}");
    assert_eq!(d["buckets"], SEED_BUCKETS);
    let created = d["dateCreated"].as_str().unwrap();
    assert!(is_iso(created), "{created}");
    let expected = format!(
        concat!(
            r#"{{"data":{{"sid":"{sid}","name":"limit_on_phonenumber","buckets":{buckets},"#,
            r#""description":"limit on Phone Number","accountSid":"{acct}","accountEmail":null,"#,
            r#""targetAccountSid":"{acct}","targetAccountEmail":null,"uri":"/2fa/limits/search/{sid}","#,
            r#""dateCreated":"{created}","dateUpdated":"{created}"}},"code":200,"message":"OK"}}"#
        ),
        sid = sid,
        buckets = serde_json::to_string(SEED_BUCKETS).unwrap(),
        acct = api.sid,
        created = created,
    );
    assert_eq!(r.text, expected);
}

#[tokio::test]
async fn create_limit_twice_with_same_name_answers_492() {
    // Given the seed's limit
    let api = Api::start().await;
    let first = api.call(Method::POST, "/2fa/limits", Some(SEED_CREATE), "application/json").await;
    assert_eq!(first.status, 200);
    // When it is created again
    let r = api.call(Method::POST, "/2fa/limits", Some(SEED_CREATE), "application/json").await;
    // Then the seed's 492
    assert_eq!(r.status, 409);
    assert_eq!(r.text, r#"{"code":492,"message":"Limit with that Name already exists","requestID":null}"#);
}

#[tokio::test]
async fn same_limit_name_in_another_account_or_a_sub_account_is_allowed() {
    let api = Api::start().await;
    created(&api, "per_ip", one_bucket(1, 60)).await;
    let (sub, _) = api.sub_account(&api.sid).await;
    let r =
        api.post("/2fa/limits", &json!({ "name": "per_ip", "buckets": one_bucket(1, 60), "accountSid": sub })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (other, token) = api.other_account().await;
    let r =
        api.post_as(&other, &token, "/2fa/limits", &json!({ "name": "per_ip", "buckets": one_bucket(1, 60) })).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn seed_update_replaces_buckets_and_description_and_moves_date_updated() {
    // Given a limit created a minute ago
    let api = Api::start().await;
    let r = api.call(Method::POST, "/2fa/limits", Some(SEED_CREATE), "application/json").await;
    let before = r.json()["data"].clone();
    let sid = before["sid"].as_str().unwrap();
    api.advance(60).await;
    // When the seed's update is put
    let r = api.call(Method::PUT, &format!("/2fa/limits/{sid}"), Some(SEED_UPDATE), "application/json").await;
    // Then the limit answers with the new buckets string and description, same name and sid
    assert_eq!(r.status, 200, "{}", r.text);
    let d = r.json()["data"].clone();
    assert_eq!(keys(&d), LIMIT_FIELDS);
    assert_eq!(d["sid"], sid);
    assert_eq!(d["name"], "limit_on_phonenumber");
    assert_eq!(d["buckets"], SEED_UPDATED_BUCKETS);
    assert_eq!(d["description"], "limit on Phone Number of receiver blabla");
    assert_eq!(d["dateCreated"], before["dateCreated"]);
    assert_ne!(d["dateUpdated"], before["dateUpdated"]);
    assert!(is_iso(d["dateUpdated"].as_str().unwrap()));
    // And a fetch shows the same
    let r = api.get(&format!("/2fa/limits/search/{sid}")).await;
    assert_eq!(r.json()["data"], d);
}

#[tokio::test]
async fn update_get_and_delete_of_an_unknown_limit_answer_493() {
    let api = Api::start().await;
    let unknown = ids::new_sid("LM");
    for (method, path) in [
        (Method::GET, format!("/2fa/limits/{unknown}")),
        (Method::GET, format!("/2fa/limits/search/{unknown}")),
        (Method::GET, format!("/2fa/limits/search/{unknown}.json")),
        (Method::DELETE, format!("/2fa/limits/{unknown}")),
        (Method::GET, "/2fa/limits/LMnot-a-sid".to_owned()),
    ] {
        let r = api.call(method.clone(), &path, None, "application/json").await;
        assert_eq!(r.status, 409, "{method} {path}");
        assert_eq!(r.text, INVALID_LIMIT_ID, "{method} {path}");
    }
    let r = api.call(Method::PUT, &format!("/2fa/limits/{unknown}"), Some(SEED_UPDATE), "application/json").await;
    assert_eq!(r.status, 409);
    assert_eq!(r.text, INVALID_LIMIT_ID);
}

#[tokio::test]
async fn another_accounts_limit_answers_exactly_like_an_unknown_one() {
    // Given a limit of another top-level account
    let api = Api::start().await;
    let (other, token) = api.other_account().await;
    let r =
        api.post_as(&other, &token, "/2fa/limits", &json!({ "name": "theirs", "buckets": one_bucket(1, 60) })).await;
    let sid = r.json()["data"]["sid"].as_str().unwrap().to_owned();
    // When this account fetches, updates or deletes it, Then 493 as for an unknown sid
    for r in [
        api.get(&format!("/2fa/limits/{sid}")).await,
        api.get(&format!("/2fa/limits/search/{sid}")).await,
        put(&api, &format!("/2fa/limits/{sid}"), &json!({ "description": "mine now" })).await,
        delete(&api, &format!("/2fa/limits/{sid}")).await,
    ] {
        assert_eq!((r.status.as_u16(), r.text.as_str()), (409, INVALID_LIMIT_ID));
    }
    // And it does not show in this account's list, And the owner still has it untouched
    let r = api.get("/2fa/limits/search").await;
    assert_eq!(r.json()["data"]["total"], 0);
    let r = api.call_as(&other, &token, Method::GET, &format!("/2fa/limits/{sid}"), None, "application/json").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"]["description"], Value::Null);
}

#[tokio::test]
async fn delete_answers_the_deleted_limit_and_then_it_is_gone() {
    // Given a limit
    let api = Api::start().await;
    let sid = created(&api, "limit_on_IP", one_bucket(1, 30)).await;
    let fetched = api.get(&format!("/2fa/limits/{sid}")).await.json();
    // When it is deleted
    let r = delete(&api, &format!("/2fa/limits/{sid}")).await;
    // Then the answer is the limit as it was
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json(), fetched);
    // And it is gone: fetch and a second delete answer 493, the list is empty
    assert_eq!(api.get(&format!("/2fa/limits/{sid}")).await.text, INVALID_LIMIT_ID);
    assert_eq!(delete(&api, &format!("/2fa/limits/{sid}")).await.text, INVALID_LIMIT_ID);
    assert_eq!(api.get("/2fa/limits/search").await.json()["data"]["total"], 0);
}

#[tokio::test]
async fn every_limit_route_also_answers_with_json_and_xml_suffixes() {
    let api = Api::start().await;
    // POST /2fa/limits.json
    let r = api.post("/2fa/limits.json", &json!({ "name": "a", "buckets": one_bucket(1, 60) })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sid = r.json()["data"]["sid"].as_str().unwrap().to_owned();
    // GET single, .json on both paths
    for path in [format!("/2fa/limits/{sid}.json"), format!("/2fa/limits/search/{sid}.json")] {
        let r = api.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.json()["data"]["sid"], sid.as_str());
    }
    // GET single, .xml
    let r = api.get(&format!("/2fa/limits/search/{sid}.xml")).await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("application/xml"));
    assert!(r.text.contains(&format!("<data><sid>{sid}</sid><name>a</name>")), "{}", r.text);
    // List with suffixes
    assert_eq!(api.get("/2fa/limits/search.json").await.json()["data"]["total"], 1);
    let r = api.get("/2fa/limits/search.xml?pageSize=1").await;
    assert!(r.text.contains("<pageSize>1</pageSize><total>1</total>"), "{}", r.text);
    // PUT .xml, DELETE .json
    let r = put(&api, &format!("/2fa/limits/{sid}.xml"), &json!({ "description": "x" })).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("<description>x</description>"), "{}", r.text);
    let r = delete(&api, &format!("/2fa/limits/{sid}.json")).await;
    assert_eq!(r.json()["data"]["sid"], sid.as_str());
    // An unknown sid with a suffix is still 493 (in XML when asked)
    let r = api.get(&format!("/2fa/limits/{sid}.xml")).await;
    assert_eq!(r.status, 409);
    assert!(r.text.contains("<code>493</code><message>Invalid Limit Id</message>"), "{}", r.text);
}

// ---- create: shapes and validation ----------------------------------------------------------

#[tokio::test]
async fn create_with_buckets_as_a_real_array_echoes_compact_json_with_numbers_as_strings() {
    let api = Api::start().await;
    let r = create(
        &api,
        "limit_on_phone",
        json!([{ "name": "bucket1", "max": 1, "interval": "60" }, { "name": "bucket2", "max": "2", "interval": 300 }]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["data"]["buckets"],
        r#"[{"name":"bucket1","max":"1","interval":"60"},{"name":"bucket2","max":"2","interval":"300"}]"#
    );
}

#[tokio::test]
async fn create_with_form_body_and_description_works_like_json() {
    let api = Api::start().await;
    let body = "name=per_session&description=by+session&buckets=%5B%7B%22name%22%3A%22b%22%2C%22max%22%3A%223%22%2C%22interval%22%3A%2260%22%7D%5D";
    let r = api.call(Method::POST, "/2fa/limits", Some(body), "application/x-www-form-urlencoded").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = r.json()["data"].clone();
    assert_eq!(d["description"], "by session");
    assert_eq!(d["buckets"], r#"[{"name":"b","max":"3","interval":"60"}]"#);
}

#[tokio::test]
async fn create_without_a_valid_name_answers_400_naming_name() {
    let api = Api::start().await;
    for name in [json!(null), json!(""), json!("limit on ip"), json!("x".repeat(65)), json!("lïmit"), json!("a/b")] {
        let r = api.post("/2fa/limits", &json!({ "name": name, "buckets": one_bucket(1, 60) })).await;
        assert_400_naming(&r, "name");
    }
    // And the allowed alphabet, up to 64 characters, is accepted
    for name in ["a.B-9_", &"x".repeat(64)] {
        assert_eq!(create(&api, name, one_bucket(1, 60)).await.status, 200, "{name}");
    }
}

#[tokio::test]
async fn create_without_buckets_or_with_zero_or_eleven_buckets_answers_400_naming_buckets() {
    let api = Api::start().await;
    let r = api.post("/2fa/limits", &json!({ "name": "a" })).await;
    assert_400_naming(&r, "buckets");
    assert_400_naming(&create(&api, "a", json!([])).await, "buckets");
    assert_400_naming(&create(&api, "a", json!("[]")).await, "buckets");
    let eleven: Vec<Value> = (0..11).map(|i| json!({ "name": format!("b{i}"), "max": 1, "interval": 60 })).collect();
    assert_400_naming(&create(&api, "a", Value::Array(eleven)).await, "buckets");
    // Ten is fine
    let ten: Vec<Value> = (0..10).map(|i| json!({ "name": format!("b{i}"), "max": 1, "interval": 60 })).collect();
    assert_eq!(create(&api, "a", Value::Array(ten)).await.status, 200);
}

#[tokio::test]
async fn create_with_max_below_one_answers_400_naming_that_buckets_max() {
    let api = Api::start().await;
    for max in [json!(0), json!("0"), json!(-1), json!("abc"), json!(null)] {
        let r = create(
            &api,
            "a",
            json!([{ "name": "ok", "max": 1, "interval": 1 }, { "name": "b", "max": max, "interval": 1 }]),
        )
        .await;
        assert_400_naming(&r, "buckets[1].max");
    }
}

#[tokio::test]
async fn create_with_interval_outside_one_second_to_a_year_answers_400_naming_the_interval() {
    let api = Api::start().await;
    for interval in [json!(0), json!("31536001"), json!(1.5), json!("soon")] {
        let r = create(&api, "a", json!([{ "name": "b", "max": 1, "interval": interval }])).await;
        assert_400_naming(&r, "buckets[0].interval");
    }
    assert_eq!(create(&api, "year", json!([{ "name": "b", "max": 1, "interval": 31_536_000 }])).await.status, 200);
    assert_eq!(create(&api, "second", json!([{ "name": "b", "max": "1", "interval": "1" }])).await.status, 200);
}

#[tokio::test]
async fn create_with_duplicate_bucket_names_answers_400_naming_the_bucket_name() {
    let api = Api::start().await;
    let r =
        create(&api, "a", json!([{ "name": "b", "max": 1, "interval": 1 }, { "name": "b", "max": 2, "interval": 60 }]))
            .await;
    assert_400_naming(&r, "buckets[1].name");
}

#[tokio::test]
async fn create_with_a_bucket_name_empty_or_over_64_characters_answers_400() {
    let api = Api::start().await;
    for name in [json!(""), json!("x".repeat(65)), json!(null)] {
        let r = create(&api, "a", json!([{ "name": name, "max": 1, "interval": 1 }])).await;
        assert_400_naming(&r, "buckets[0].name");
    }
    let r =
        create(&api, "a", json!([{ "name": "Min bucket ".repeat(5) + "123456789", "max": 1, "interval": 1 }])).await;
    assert_eq!(r.status, 200, "64 characters, spaces allowed: {}", r.text);
}

#[tokio::test]
async fn create_with_malformed_buckets_answers_400_naming_buckets() {
    let api = Api::start().await;
    for buckets in [json!("[{nope"), json!("{\"name\":\"b\"}"), json!({ "name": "b" }), json!(5)] {
        assert_400_naming(&create(&api, "a", buckets).await, "buckets");
    }
}

#[tokio::test]
async fn create_for_an_account_that_is_not_a_sub_account_answers_403() {
    let api = Api::start().await;
    let (other, _) = api.other_account().await;
    let r = api.post("/2fa/limits", &json!({ "name": "a", "buckets": one_bucket(1, 60), "accountSid": other })).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, 403));
}

#[tokio::test]
async fn limit_shows_creator_and_target_accounts_with_their_emails() {
    // Given a parent and a sub-account with emails
    let api = Api::start().await;
    let keys = api.dev.deps.keys.clone();
    let now = api.dev.clock.now_ms();
    let mut parent = Account::new(ids::new_sid("AC"), "parent-token", &keys, None, now);
    parent.email = Some("jane@company.com".into());
    api.dev.store.put_account(&parent).await.unwrap();
    let mut sub = Account::new(ids::new_sid("AC"), "sub-token", &keys, Some(&parent), now);
    sub.email = Some("alice@company.com".into());
    api.dev.store.put_account(&sub).await.unwrap();
    // When the parent creates a limit for the sub-account
    let body = json!({ "name": "per_ip", "buckets": one_bucket(1, 60), "accountSid": sub.sid });
    let r = api.post_as(&parent.sid, "parent-token", "/2fa/limits", &body).await;
    // Then the creator and the target show, each with its email
    assert_eq!(r.status, 200, "{}", r.text);
    let d = r.json()["data"].clone();
    assert_eq!(d["accountSid"], parent.sid.as_str());
    assert_eq!(d["accountEmail"], "jane@company.com");
    assert_eq!(d["targetAccountSid"], sub.sid.as_str());
    assert_eq!(d["targetAccountEmail"], "alice@company.com");
    // And the sub-account sees it the same way
    let sid = d["sid"].as_str().unwrap();
    let r = api.call_as(&sub.sid, "sub-token", Method::GET, &format!("/2fa/limits/{sid}"), None, "").await;
    assert_eq!(r.json()["data"], d);
}

// ---- update ---------------------------------------------------------------------------------

#[tokio::test]
async fn update_of_description_only_keeps_the_buckets_and_of_buckets_only_keeps_the_description() {
    let api = Api::start().await;
    let r =
        api.post("/2fa/limits", &json!({ "name": "a", "buckets": one_bucket(1, 60), "description": "first" })).await;
    let sid = r.json()["data"]["sid"].as_str().unwrap().to_owned();
    let r = put(&api, &format!("/2fa/limits/{sid}"), &json!({ "description": "second" })).await;
    assert_eq!(r.json()["data"]["buckets"], r#"[{"name":"b","max":"1","interval":"60"}]"#);
    assert_eq!(r.json()["data"]["description"], "second");
    let r = put(&api, &format!("/2fa/limits/{sid}"), &json!({ "buckets": one_bucket(2, 60) })).await;
    assert_eq!(r.json()["data"]["buckets"], r#"[{"name":"b","max":"2","interval":"60"}]"#);
    assert_eq!(r.json()["data"]["description"], "second");
    // And an empty description clears it
    let r = put(&api, &format!("/2fa/limits/{sid}"), &json!({ "description": "" })).await;
    assert_eq!(r.json()["data"]["description"], Value::Null);
}

#[tokio::test]
async fn update_with_invalid_buckets_answers_400_and_keeps_the_old_ones() {
    let api = Api::start().await;
    let sid = created(&api, "a", one_bucket(1, 60)).await;
    let r =
        put(&api, &format!("/2fa/limits/{sid}"), &json!({ "buckets": [{ "name": "b", "max": 0, "interval": 60 }] }))
            .await;
    assert_400_naming(&r, "buckets[0].max");
    let r = api.get(&format!("/2fa/limits/{sid}")).await;
    assert_eq!(r.json()["data"]["buckets"], r#"[{"name":"b","max":"1","interval":"60"}]"#);
}

#[tokio::test]
async fn update_with_nothing_to_change_or_a_new_name_answers_400() {
    let api = Api::start().await;
    let sid = created(&api, "a", one_bucket(1, 60)).await;
    assert_400_naming(&put(&api, &format!("/2fa/limits/{sid}"), &json!({})).await, "buckets");
    let r = put(&api, &format!("/2fa/limits/{sid}"), &json!({ "name": "b", "description": "x" })).await;
    assert_400_naming(&r, "name");
    // Repeating its own name is fine
    let r = put(&api, &format!("/2fa/limits/{sid}"), &json!({ "name": "a", "description": "x" })).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

// ---- list -----------------------------------------------------------------------------------

/// Create limits named `names`, one second apart (so dateCreated orders them).
async fn create_in_order(api: &Api, names: &[&str]) -> Vec<String> {
    let mut sids = vec![];
    for name in names {
        sids.push(created(api, name, one_bucket(1, 60)).await);
        api.advance(1).await;
    }
    sids
}

#[tokio::test]
async fn seed_list_with_page_size_2_answers_the_seed_shape_with_the_real_path() {
    // Given three limits
    let api = Api::start().await;
    create_in_order(&api, &["limit_on_phone", "test", "third"]).await;
    // When the seed's list is asked
    let r = api.get("/2fa/limits/search?pageSize=2&page=0").await;
    // Then the seed's fields in its order, with URIs on /2fa/limits/search
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(keys(&v), ["data", "code", "message"]);
    let d = &v["data"];
    assert_eq!(
        keys(d),
        ["result", "pageSize", "total", "page", "numPages", "start", "end", "firstPageUri", "nextPageUri", "uri"]
    );
    assert_eq!(keys(&d["result"][0]), LIMIT_FIELDS);
    assert_eq!(names(&r), ["limit_on_phone", "test"]);
    assert_eq!(
        (&d["pageSize"], &d["total"], &d["page"], &d["numPages"], &d["start"], &d["end"]),
        (&json!(2), &json!(3), &json!(0), &json!(2), &json!(0), &json!(1))
    );
    assert_eq!(d["firstPageUri"], "/2fa/limits/search?pageSize=2&page=0");
    assert_eq!(d["nextPageUri"], "/2fa/limits/search?pageSize=2&page=1");
    assert_eq!(d["uri"], "/2fa/limits/search?pageSize=2&page=0");
    // And following nextPageUri gives the last page, which has no nextPageUri
    let r = api.get(d["nextPageUri"].as_str().unwrap()).await;
    let d = r.json()["data"].clone();
    assert_eq!(names(&r), ["third"]);
    assert_eq!((&d["page"], &d["start"], &d["end"]), (&json!(1), &json!(2), &json!(2)));
    assert!(d.get("nextPageUri").is_none(), "{d}");
    assert_eq!(d["uri"], "/2fa/limits/search?pageSize=2&page=1");
}

#[tokio::test]
async fn list_defaults_to_page_0_of_10_oldest_first() {
    let api = Api::start().await;
    let all: Vec<String> = (0..12).map(|i| format!("limit{i:02}")).collect();
    // Created in an order that differs from name order
    let mut order: Vec<&str> = all.iter().map(String::as_str).collect();
    order.reverse();
    create_in_order(&api, &order).await;
    let r = api.get("/2fa/limits/search").await;
    let d = r.json()["data"].clone();
    assert_eq!(
        (&d["pageSize"], &d["total"], &d["numPages"], &d["page"]),
        (&json!(10), &json!(12), &json!(2), &json!(0))
    );
    assert_eq!(names(&r), order[..10]);
    // GET /2fa/limits and the seed's trailing-slash path list the same
    assert_eq!(names(&api.get("/2fa/limits").await), order[..10]);
    assert_eq!(names(&api.get("/2fa/limits/search/").await), order[..10]);
}

#[tokio::test]
async fn list_filters_by_partial_name_ignoring_case() {
    let api = Api::start().await;
    create_in_order(&api, &["otp_phone", "session", "OTP_ip", "my.otp-x"]).await;
    let r = api.get("/2fa/limits/search?name=otp").await;
    assert_eq!(names(&r), ["otp_phone", "OTP_ip", "my.otp-x"]);
    assert_eq!(r.json()["data"]["uri"], "/2fa/limits/search?pageSize=10&page=0&name=otp");
    assert_eq!(names(&api.get("/2fa/limits/search?name=SESS").await), ["session"]);
    assert_eq!(api.get("/2fa/limits/search?name=none").await.json()["data"]["total"], 0);
}

#[tokio::test]
async fn list_filters_by_start_and_end_time_inclusively_with_dates_or_date_times() {
    // Given limits created two days apart
    let api = Api::start().await;
    let mut created = vec![];
    for name in ["a", "b", "c"] {
        let r = create(&api, name, one_bucket(1, 60)).await;
        created.push(r.json()["data"]["dateCreated"].as_str().unwrap().to_owned());
        api.advance(2 * 86_400).await;
    }
    let exact = |iso: &str| iso.trim_end_matches("+0000").to_owned(); // 2021-02-04T03:52:09.400
    let day = |iso: &str| iso[..10].to_owned();
    // startTime = endTime = b's instant: only b (both ends inclusive)
    let r =
        api.get(&format!("/2fa/limits/search?startTime={}&endTime={}", exact(&created[1]), exact(&created[1]))).await;
    assert_eq!(names(&r), ["b"], "{}", r.text);
    // a date is midnight UTC: from b's day on, b and c; up to c's day (midnight), a and b
    assert_eq!(names(&api.get(&format!("/2fa/limits/search?startTime={}", day(&created[1]))).await), ["b", "c"]);
    assert_eq!(names(&api.get(&format!("/2fa/limits/search?endTime={}", day(&created[2]))).await), ["a", "b"]);
    // a date-time with a space works too, and bad dates name the parameter
    let spaced = exact(&created[0]).replace('T', "%20");
    assert_eq!(names(&api.get(&format!("/2fa/limits/search?endTime={spaced}")).await), ["a"]);
    assert_400_naming(&api.get("/2fa/limits/search?startTime=04/02/2021").await, "startTime");
    assert_400_naming(&api.get("/2fa/limits/search?endTime=yesterday").await, "endTime");
    let r = api.get(&format!("/2fa/limits/search?startTime={}&endTime={}", day(&created[2]), day(&created[0]))).await;
    assert_400_naming(&r, "endTime");
}

#[tokio::test]
async fn list_sorts_by_name_or_date_created_either_way() {
    let api = Api::start().await;
    create_in_order(&api, &["bravo", "Alpha", "charlie"]).await;
    let sorted = |q: &'static str| {
        let api = &api;
        async move { names(&api.get(&format!("/2fa/limits/search?SortBy={q}")).await) }
    };
    assert_eq!(sorted("name").await, ["Alpha", "bravo", "charlie"]);
    assert_eq!(sorted("name:asc").await, ["Alpha", "bravo", "charlie"]);
    assert_eq!(sorted("name:desc").await, ["charlie", "bravo", "Alpha"]);
    assert_eq!(sorted("dateCreated").await, ["bravo", "Alpha", "charlie"]);
    assert_eq!(sorted("dateCreated:desc").await, ["charlie", "Alpha", "bravo"]);
    // The sort rides along on the page URIs
    let r = api.get("/2fa/limits/search?SortBy=name:desc&pageSize=1").await;
    assert_eq!(r.json()["data"]["nextPageUri"], "/2fa/limits/search?pageSize=1&page=1&SortBy=name%3Adesc");
    assert_400_naming(&api.get("/2fa/limits/search?SortBy=size").await, "SortBy");
    assert_400_naming(&api.get("/2fa/limits/search?SortBy=name:up").await, "SortBy");
}

#[tokio::test]
async fn list_page_size_is_1_to_1000_and_page_is_from_0() {
    let api = Api::start().await;
    create_in_order(&api, &["a"]).await;
    assert_400_naming(&api.get("/2fa/limits/search?pageSize=1001").await, "pageSize");
    assert_400_naming(&api.get("/2fa/limits/search?pageSize=0").await, "pageSize");
    assert_400_naming(&api.get("/2fa/limits/search?page=-1").await, "page");
    assert_eq!(api.get("/2fa/limits/search?pageSize=1000").await.status, 200);
    // A page past the end is empty, not an error
    let r = api.get("/2fa/limits/search?page=5").await;
    assert_eq!(r.status, 200);
    assert_eq!(names(&r), Vec::<String>::new());
    assert_eq!(r.json()["data"]["total"], 1);
}

#[tokio::test]
async fn list_with_account_sid_lists_that_sub_accounts_limits_only() {
    // Given limits of the caller and of its sub-account
    let api = Api::start().await;
    let (sub, _) = api.sub_account(&api.sid).await;
    created(&api, "mine", one_bucket(1, 60)).await;
    let r = api.post("/2fa/limits", &json!({ "name": "subs", "buckets": one_bucket(1, 60), "accountSid": sub })).await;
    assert_eq!(r.status, 200);
    // When listed with accountSid, Then only the sub-account's
    let r = api.get(&format!("/2fa/limits/search?accountSid={sub}")).await;
    assert_eq!(names(&r), ["subs"]);
    assert_eq!(r.json()["data"]["uri"], format!("/2fa/limits/search?pageSize=10&page=0&accountSid={sub}"));
    // And without it, only the caller's
    assert_eq!(names(&api.get("/2fa/limits/search").await), ["mine"]);
    // And an account that is not a sub-account is 403
    let (other, _) = api.other_account().await;
    assert_eq!(api.get(&format!("/2fa/limits/search?accountSid={other}")).await.status, 403);
}

#[tokio::test]
async fn list_with_sub_accounts_true_includes_every_account_below_the_caller() {
    // Given limits on the caller, a child, a grandchild, and an unrelated account
    let api = Api::start().await;
    let (child, _) = api.sub_account(&api.sid).await;
    let (grandchild, _) = api.sub_account(&child).await;
    let (other, other_token) = api.other_account().await;
    created(&api, "top", one_bucket(1, 60)).await;
    api.advance(1).await;
    for (name, acct) in [("child", &child), ("grandchild", &grandchild)] {
        let r =
            api.post("/2fa/limits", &json!({ "name": name, "buckets": one_bucket(1, 60), "accountSid": acct })).await;
        assert_eq!(r.status, 200);
        api.advance(1).await;
    }
    api.post_as(&other, &other_token, "/2fa/limits", &json!({ "name": "other", "buckets": one_bucket(1, 60) })).await;
    // When listed with subAccounts=true
    let r = api.get("/2fa/limits/search?subAccounts=true").await;
    // Then the caller's and all below it, each with its target account
    assert_eq!(names(&r), ["top", "child", "grandchild"]);
    let targets: Vec<Value> =
        r.json()["data"]["result"].as_array().unwrap().iter().map(|l| l["targetAccountSid"].clone()).collect();
    assert_eq!(targets, [json!(api.sid), json!(child), json!(grandchild)]);
    assert_eq!(r.json()["data"]["uri"], "/2fa/limits/search?pageSize=10&page=0&subAccounts=true");
    // And from the child down
    let r = api.get(&format!("/2fa/limits/search?subAccounts=true&accountSid={child}")).await;
    assert_eq!(names(&r), ["child", "grandchild"]);
}

// ---- sub-accounts ---------------------------------------------------------------------------

#[tokio::test]
async fn a_parent_manages_its_sub_accounts_limits_by_sid_and_a_sub_account_cannot_see_its_parents() {
    let api = Api::start().await;
    let (sub, sub_token) = api.sub_account(&api.sid).await;
    // Given a limit the sub-account made itself, and one of the parent
    let r =
        api.post_as(&sub, &sub_token, "/2fa/limits", &json!({ "name": "subs", "buckets": one_bucket(1, 60) })).await;
    let subs = r.json()["data"]["sid"].as_str().unwrap().to_owned();
    let parents = created(&api, "parents", one_bucket(1, 60)).await;
    // Then the parent fetches and updates the sub-account's by sid, with or without accountSid
    assert_eq!(api.get(&format!("/2fa/limits/{subs}")).await.status, 200);
    assert_eq!(api.get(&format!("/2fa/limits/{subs}?accountSid={sub}")).await.status, 200);
    let r = put(&api, &format!("/2fa/limits/{subs}"), &json!({ "description": "set by parent" })).await;
    assert_eq!(r.json()["data"]["targetAccountSid"], sub.as_str());
    // But naming its own account with accountSid looks only there
    assert_eq!(api.get(&format!("/2fa/limits/{subs}?accountSid={}", api.sid)).await.text, INVALID_LIMIT_ID);
    // And the sub-account cannot see the parent's
    let r = api.call_as(&sub, &sub_token, Method::GET, &format!("/2fa/limits/{parents}"), None, "").await;
    assert_eq!(r.text, INVALID_LIMIT_ID);
    // And the parent deletes the sub-account's ("Account can Delete SubAccount Limits")
    let r = delete(&api, &format!("/2fa/limits/{subs}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"]["description"], "set by parent");
    let r = api.call_as(&sub, &sub_token, Method::GET, &format!("/2fa/limits/{subs}"), None, "").await;
    assert_eq!(r.text, INVALID_LIMIT_ID);
}

#[tokio::test]
async fn a_limit_created_for_a_sub_account_applies_to_that_sub_accounts_sends() {
    // Given a limit of 1 per minute the parent created for its sub-account
    let api = Api::start().await;
    let (sub, sub_token) = api.sub_account(&api.sid).await;
    let r =
        api.post("/2fa/limits", &json!({ "name": "per_ip", "buckets": one_bucket(1, 60), "accountSid": sub })).await;
    assert_eq!(r.status, 200);
    let limits = json!({ "per_ip": "10.0.0.1" });
    // When the parent sends for the sub-account naming it, Then the first passes and the second is 454
    let r = api.send_to("+14155550101", json!({ "limits": limits, "accountSid": sub })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api.send_to("+14155550102", json!({ "limits": limits, "accountSid": sub })).await;
    assert_eq!(r.text, r#"{"code":454,"message":"Too many OTP requests: limit per_ip exceeded","requestID":null}"#);
    // And the sub-account's own sends share that bucket
    let body = json!({ "service": "2FA", "from": "X", "to": "+14155550103", "body": "{code}", "limits": limits });
    assert_eq!(api.post_as(&sub, &sub_token, "/2fa/send", &body).await.code(), 454);
    // And the parent's own sends do not know the limit
    let r = send_limited(&api, "+14155550104", limits).await;
    assert_eq!(r.text, r#"{"code":495,"message":"Invalid Limit Name: per_ip","requestID":null}"#);
}

// ---- limits on send -------------------------------------------------------------------------

#[tokio::test]
async fn send_naming_an_undefined_limit_answers_495_naming_it() {
    let api = Api::start().await;
    created(&api, "limit_on_ip", one_bucket(5, 60)).await;
    let r =
        send_limited(&api, "+14155550100", json!({ "limit_on_ip": "127.0.0.1", "limit_on_phone": "+919960639901" }))
            .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.text, r#"{"code":495,"message":"Invalid Limit Name: limit_on_phone","requestID":null}"#);
}

#[tokio::test]
async fn seed_send_with_limits_as_an_object_or_a_json_string_passes_defined_limits() {
    // Given the seed's two limits
    let api = Api::start().await;
    created(&api, "limit_on_ip", one_bucket(5, 60)).await;
    created(&api, "limit_on_phone", one_bucket(5, 60)).await;
    // When sent with them as an object, and as a string holding JSON
    let r =
        send_limited(&api, "+919960639901", json!({ "limit_on_ip": "127.0.0.1", "limit_on_phone": "+919960639901" }))
            .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let text = r#"{ "limit_on_ip":"127.0.0.1", "limit_on_phone": "919960639903" }"#;
    let r = send_limited(&api, "919960639903", json!(text)).await;
    // Then both pass (and the default limit does not apply to limited sends)
    assert_eq!(r.status, 200, "{}", r.text);
    let r = send_limited(&api, "919960639903", json!(text)).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn a_full_bucket_answers_454_naming_its_limit() {
    // Given a limit of 2 per 5 minutes
    let api = Api::start().await;
    created(&api, "limit_on_phone", json!([{ "name": "bucket1", "max": "2", "interval": "300" }])).await;
    let limits = json!({ "limit_on_phone": "+919960639901" });
    // When it is used twice, Then a third send is refused with 454 (HTTP 404)
    for _ in 0..2 {
        assert_eq!(send_limited(&api, "+919960639901", limits.clone()).await.status, 200);
    }
    let r = send_limited(&api, "+919960639901", limits.clone()).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.text,
        r#"{"code":454,"message":"Too many OTP requests: limit limit_on_phone exceeded","requestID":null}"#
    );
    // And another key value of the same limit has its own bucket
    assert_eq!(send_limited(&api, "+919960639902", json!({ "limit_on_phone": "+919960639902" })).await.status, 200);
}

#[tokio::test]
async fn every_bucket_of_a_limit_counts_and_the_tighter_one_rejects() {
    // Given the seed's buckets: 1 per 30 s and 2 per 300 s
    let api = Api::start().await;
    created(&api, "limit_on_phonenumber", json!(SEED_BUCKETS)).await;
    let limits = json!({ "limit_on_phonenumber": "+14155550100" });
    assert_eq!(send_limited(&api, "+14155550100", limits.clone()).await.status, 200);
    assert_eq!(send_limited(&api, "+14155550100", limits.clone()).await.code(), 454, "bucket1: 1 per 30 s");
    api.advance(31).await;
    assert_eq!(send_limited(&api, "+14155550100", limits.clone()).await.status, 200);
    api.advance(31).await;
    assert_eq!(send_limited(&api, "+14155550100", limits.clone()).await.code(), 454, "bucket2: 2 per 300 s");
}

#[tokio::test]
async fn a_rejected_send_consumes_nothing_from_any_bucket() {
    // Given limit A (5 per minute) and limit B (1 per minute)
    let api = Api::start().await;
    created(&api, "a", one_bucket(5, 60)).await;
    created(&api, "b", one_bucket(1, 60)).await;
    let both = json!({ "a": "ip", "b": "phone" });
    // When a send takes one from each, and a second send is rejected by B
    assert_eq!(send_limited(&api, "+14155550100", both.clone()).await.status, 200);
    let r = send_limited(&api, "+14155550101", both).await;
    assert_eq!(r.json()["message"], "Too many OTP requests: limit b exceeded");
    // Then A still has exactly 4 left: the rejected send took nothing from it
    for i in 0..4 {
        let r = send_limited(&api, &format!("+1415555020{i}"), json!({ "a": "ip" })).await;
        assert_eq!(r.status, 200, "send {i} on A: {}", r.text);
    }
    let r = send_limited(&api, "+14155550300", json!({ "a": "ip" })).await;
    assert_eq!(r.json()["message"], "Too many OTP requests: limit a exceeded");
}

#[tokio::test]
async fn limits_are_checked_in_the_order_given() {
    let api = Api::start().await;
    created(&api, "a", one_bucket(1, 60)).await;
    created(&api, "b", one_bucket(1, 60)).await;
    assert_eq!(send_limited(&api, "+14155550100", json!({ "a": "x", "b": "y" })).await.status, 200);
    let r = send_limited(&api, "+14155550101", json!(r#"{"b":"y","a":"x"}"#)).await;
    assert_eq!(r.json()["message"], "Too many OTP requests: limit b exceeded");
    let r = send_limited(&api, "+14155550102", json!({ "a": "x", "b": "y" })).await;
    assert_eq!(r.json()["message"], "Too many OTP requests: limit a exceeded");
}

#[tokio::test]
async fn the_fixed_window_opens_at_the_first_send_and_lasts_interval_seconds() {
    // Given a limit of 2 per 60 s
    let api = Api::start().await;
    created(&api, "per_ip", one_bucket(2, 60)).await;
    let limits = json!({ "per_ip": "1.2.3.4" });
    // When the first send opens the window and a second comes 30 s later
    assert_eq!(send_limited(&api, "+14155550100", limits.clone()).await.status, 200);
    api.advance(30).await;
    assert_eq!(send_limited(&api, "+14155550101", limits.clone()).await.status, 200);
    // Then the bucket is full until 60 s after the FIRST send (not the second)
    assert_eq!(send_limited(&api, "+14155550102", limits.clone()).await.code(), 454);
    api.advance(28).await; // 58 s after the first send
    assert_eq!(send_limited(&api, "+14155550103", limits.clone()).await.code(), 454);
    api.advance(2).await; // 60 s: a new window, with the whole max again
    assert_eq!(send_limited(&api, "+14155550104", limits.clone()).await.status, 200);
    assert_eq!(send_limited(&api, "+14155550105", limits.clone()).await.status, 200);
    assert_eq!(send_limited(&api, "+14155550106", limits).await.code(), 454);
}

#[tokio::test]
async fn updated_buckets_take_effect_on_the_next_send() {
    // Given a full bucket of 1 per hour
    let api = Api::start().await;
    let sid = created(&api, "per_ip", one_bucket(1, 3600)).await;
    let limits = json!({ "per_ip": "1.2.3.4" });
    assert_eq!(send_limited(&api, "+14155550100", limits.clone()).await.status, 200);
    assert_eq!(send_limited(&api, "+14155550101", limits.clone()).await.code(), 454);
    // When the max is raised to 3, Then the next sends pass up to the new max
    assert_eq!(put(&api, &format!("/2fa/limits/{sid}"), &json!({ "buckets": one_bucket(3, 3600) })).await.status, 200);
    assert_eq!(send_limited(&api, "+14155550102", limits.clone()).await.status, 200);
    assert_eq!(send_limited(&api, "+14155550103", limits.clone()).await.status, 200);
    assert_eq!(send_limited(&api, "+14155550104", limits.clone()).await.code(), 454);
    // And lowering it refuses at once
    let r = put(&api, &format!("/2fa/limits/{sid}"), &json!({ "buckets": [{ "name": "b", "max": 1, "interval": 3600 }, { "name": "new", "max": 9, "interval": 60 }] })).await;
    assert_eq!(r.status, 200);
    assert_eq!(send_limited(&api, "+14155550105", limits).await.code(), 454);
}

#[tokio::test]
async fn deleting_a_limit_makes_sends_naming_it_answer_495_and_a_new_one_starts_afresh() {
    let api = Api::start().await;
    let sid = created(&api, "per_ip", one_bucket(1, 3600)).await;
    let limits = json!({ "per_ip": "1.2.3.4" });
    assert_eq!(send_limited(&api, "+14155550100", limits.clone()).await.status, 200);
    // When it is deleted
    assert_eq!(delete(&api, &format!("/2fa/limits/{sid}")).await.status, 200);
    // Then sends naming it answer 495
    let r = send_limited(&api, "+14155550101", limits.clone()).await;
    assert_eq!(r.text, r#"{"code":495,"message":"Invalid Limit Name: per_ip","requestID":null}"#);
    // And a limit created again under that name does not inherit the old counts
    created(&api, "per_ip", one_bucket(1, 3600)).await;
    assert_eq!(send_limited(&api, "+14155550102", limits).await.status, 200);
}

#[tokio::test]
async fn hundred_concurrent_sends_against_max_7_admit_exactly_7() {
    // Given a limit of 7 per hour on one key
    let api = Api::start().await;
    created(&api, "burst", one_bucket(7, 3600)).await;
    // When 100 sends to different numbers name it at once
    let numbers: Vec<String> = (0..100).map(|i| format!("+1415555{i:04}")).collect();
    let results = join_all(numbers.iter().map(|to| send_limited(&api, to, json!({ "burst": "203.0.113.9" })))).await;
    // Then exactly 7 pass and every other one is 454
    let ok = results.iter().filter(|r| r.status == 200).count();
    let full = results.iter().filter(|r| r.status == 404 && r.code() == 454).count();
    assert_eq!(
        (ok, full),
        (7, 93),
        "{:?}",
        results.iter().find(|r| r.status != 200 && r.status != 404).map(|r| &r.text)
    );
}

#[tokio::test]
async fn a_send_naming_more_than_90_buckets_answers_400_naming_limits() {
    // Given ten limits of ten buckets each (100 counters: more than one atomic write holds)
    let api = Api::start().await;
    let buckets: Vec<Value> = (0..10).map(|i| json!({ "name": format!("b{i}"), "max": 5, "interval": 60 })).collect();
    let mut limits = serde_json::Map::new();
    for i in 0..10 {
        created(&api, &format!("l{i}"), json!(buckets)).await;
        limits.insert(format!("l{i}"), json!("k"));
    }
    // When a send names all of them
    let r = send_limited(&api, "+14155550100", Value::Object(limits)).await;
    // Then it is refused up front, naming limits, and nothing was sent
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["message"], "Invalid parameter: limits (at most 90 buckets across the limits of one send)");
    assert!(api.dev.outbox.messages(None).is_empty());
}
