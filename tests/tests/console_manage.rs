//! The console's management pages (docs/console.md: limits, workflows, account), driven as a
//! browser drives them: signed in through the sign-in form, the session cookie and the CSRF
//! token read from the answers, forms posted urlencoded, redirects followed by hand. What they
//! change is checked through the API (`/2fa/...`) as a client would see it.

mod common;

use std::{collections::BTreeMap, net::SocketAddr};

use common::{
    browser::{element_text, Console},
    receiver::Receiver,
    Api,
};
use serde_json::{json, Value};
use tower::ServiceExt;

/// Given a dev server, its account signed in to the console.
async fn signed_in() -> (Api, Console) {
    let api = Api::start().await;
    let console = Console::sign_in(&api.base, &api.sid, &api.token).await;
    (api, console)
}

/// The API's view of the account's limits (or workflows), by name.
async fn api_list(api: &Api, what: &str) -> BTreeMap<String, Value> {
    let r = api.get(&format!("/2fa/{what}?pageSize=1000")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap().to_owned(), d.clone()))
        .collect()
}

#[tokio::test]
async fn a_limit_created_edited_and_deleted_in_the_console_is_the_apis_limit() {
    let (api, console) = signed_in().await;
    // When a limit is created with the form
    let buckets = r#"[{"name":"minute","max":1,"interval":60}]"#;
    let page = console
        .change("/console/limits", &[("name", "per_phone"), ("description", "one a minute"), ("buckets", buckets)])
        .await;
    // Then the list shows it and says so, and the API has it as given
    assert!(page.has_row("limits", "data-name", "per_phone"), "{}", page.text);
    assert!(page.flash().unwrap().contains("per_phone"));
    let limits = api_list(&api, "limits").await;
    let sid = limits["per_phone"]["sid"].as_str().unwrap().to_owned();
    assert_eq!(limits["per_phone"]["buckets"], buckets);
    assert_eq!(limits["per_phone"]["description"], "one a minute");
    // When its page saves new buckets and a new description
    let edit = console.get(&format!("/console/limits/{sid}")).await;
    assert_eq!(edit.textarea("buckets"), buckets, "the form holds the limit as stored");
    let again = r#"[{"name":"hour","max":5,"interval":3600}]"#;
    let page =
        console.change(&format!("/console/limits/{sid}"), &[("description", "five an hour"), ("buckets", again)]).await;
    assert_eq!(page.textarea("buckets"), again);
    // Then the API has the change
    let limits = api_list(&api, "limits").await;
    assert_eq!(limits["per_phone"]["buckets"], again);
    assert_eq!(limits["per_phone"]["description"], "five an hour");
    // When it is deleted
    let page = console.change(&format!("/console/limits/{sid}/delete"), &[]).await;
    // Then it is gone from the list and from the API
    assert!(!page.has_row("limits", "data-name", "per_phone"));
    assert!(api_list(&api, "limits").await.is_empty());
    assert_eq!(console.get(&format!("/console/limits/{sid}")).await.status, 404);
}

#[tokio::test]
async fn a_workflow_created_edited_and_deleted_in_the_console_is_the_apis_workflow() {
    let (api, console) = signed_in().await;
    let steps = r#"[{"channel":"sms","interval":0},{"channel":"call","interval":60}]"#;
    let page = console
        .change("/console/workflows", &[("name", "sms-then-call"), ("description", "fallback"), ("steps", steps)])
        .await;
    assert!(page.has_row("workflows", "data-name", "sms-then-call"), "{}", page.text);
    let flows = api_list(&api, "workflows").await;
    let sid = flows["sms-then-call"]["sid"].as_str().unwrap().to_owned();
    assert_eq!(flows["sms-then-call"]["channels"], serde_json::from_str::<Value>(steps).unwrap());
    // When its steps change
    let again = r#"[{"channel":"email","interval":0}]"#;
    console.change(&format!("/console/workflows/{sid}"), &[("description", ""), ("steps", again)]).await;
    let flows = api_list(&api, "workflows").await;
    assert_eq!(flows["sms-then-call"]["channels"], json!([{ "channel": "email", "interval": 0 }]));
    assert_eq!(flows["sms-then-call"]["description"], Value::Null, "an empty description clears it");
    // When it is deleted
    let page = console.change(&format!("/console/workflows/{sid}/delete"), &[]).await;
    assert!(!page.has_row("workflows", "data-name", "sms-then-call"));
    assert!(api_list(&api, "workflows").await.is_empty());
}

#[tokio::test]
async fn geo_permissions_saved_in_the_console_refuse_sends_to_a_country_left_out() {
    let (api, console) = signed_in().await;
    // When SMS may go to the US and Canada only, calls nowhere, WhatsApp anywhere
    let page = console
        .change(
            "/console/account/geo",
            &[("smsCountries", "us, CA"), ("callCountries", "none"), ("whatsappCountries", "")],
        )
        .await;
    assert_eq!(page.input("smsCountries"), "CA, US");
    assert_eq!(page.input("callCountries"), "none");
    assert_eq!(page.input("whatsappCountries"), "");
    // Then an SMS to a UK number answers 476, to a US number 200
    let r = api.send_to("+447400123456", json!({})).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, 476), "{}", r.text);
    assert_eq!(api.send_to("+14155550100", json!({})).await.status, 200);
    // And a call to the US answers 476 too
    let r = api.send_to("+14155550111", json!({ "channel": "call" })).await;
    assert_eq!(r.code(), 476, "{}", r.text);
}

#[tokio::test]
async fn a_rotated_callback_secret_is_shown_once_and_signs_the_callbacks() {
    let (api, console) = signed_in().await;
    let receiver = Receiver::start(&[]).await;
    console.change("/console/account/callback", &[("callbackUrl", &receiver.url), ("callbackMethod", "POST")]).await;
    // When the secret is rotated
    let r = console.post("/console/account/rotate-secret", &[]).await;
    // Then the answer shows the new secret, once
    assert_eq!(r.status, 200, "{}", r.text);
    let secret = element_text(&r.text, r#"data-field="secret""#).expect("the secret");
    assert!(secret.starts_with("whsec_"), "{secret}");
    let reload = console.get("/console/account").await;
    assert!(!reload.text.contains(&secret) && !reload.text.contains(r#"data-field="secret""#));
    // And the account's callbacks are signed with it
    api.sent("+14155550100").await;
    let calls = receiver.wait_for("a callback", |c| !c.is_empty()).await;
    assert!(calls[0].signed_by(&secret), "signed with the secret shown");
    // And rotating again shows another one
    let r = console.post("/console/account/rotate-secret", &[]).await;
    let next = element_text(&r.text, r#"data-field="secret""#).unwrap();
    assert_ne!(next, secret);
}

#[tokio::test]
async fn allowed_ips_saved_in_the_console_hold_on_the_api() {
    let (api, console) = signed_in().await;
    // When the account allows its own loopback address and one documentation network
    let page = console.change("/console/account/allowed-ips", &[("allowedIps", "127.0.0.1, 203.0.113.0/24")]).await;
    assert_eq!(page.input("allowedIps"), "127.0.0.1, 203.0.113.0/24");
    // Then the API answers a caller from loopback, and refuses one from elsewhere
    assert_eq!(api.get("/2fa/limits").await.status, 200);
    let from = |ip: &str| {
        let mut req = axum::http::Request::get("/2fa/limits")
            .header("authorization", basic(&api.sid, &api.token))
            .body(axum::body::Body::empty())
            .unwrap();
        req.extensions_mut().insert(axum::extract::ConnectInfo(ip.parse::<SocketAddr>().unwrap()));
        api.dev.app().oneshot(req)
    };
    assert_eq!(from("203.0.113.9:5000").await.unwrap().status(), 200);
    assert_eq!(from("198.51.100.7:5000").await.unwrap().status(), 403);
    // And a list without the address the change comes from is refused (it would lock the
    // user out), the list kept
    let r = console.post("/console/account/allowed-ips", &[("allowedIps", "203.0.113.0/24")]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.alert().unwrap().contains("allowedIps"), "{:?}", r.alert());
    assert_eq!(from("198.51.100.7:5000").await.unwrap().status(), 403);
    // And an empty list lets any address in again
    console.change("/console/account/allowed-ips", &[("allowedIps", "")]).await;
    assert_eq!(from("198.51.100.7:5000").await.unwrap().status(), 200);
}

fn basic(sid: &str, token: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}")))
}

/// A form's fields, in order.
type Fields<'a> = Vec<(&'a str, &'a str)>;

#[tokio::test]
async fn bad_input_answers_its_form_again_with_a_4xx_naming_the_field() {
    let (api, console) = signed_in().await;
    let good = r#"[{"name":"m","max":1,"interval":60}]"#;
    console.change("/console/limits", &[("name", "taken"), ("buckets", good)]).await;
    let sid = api_list(&api, "limits").await["taken"]["sid"].as_str().unwrap().to_owned();
    let edit = format!("/console/limits/{sid}");
    console.change("/console/workflows", &[("name", "flow"), ("steps", r#"[{"channel":"sms","interval":0}]"#)]).await;
    let flow = api_list(&api, "workflows").await["flow"]["sid"].as_str().unwrap().to_owned();
    let flow_edit = format!("/console/workflows/{flow}");
    let cases: Vec<(&str, Fields, &str)> = vec![
        ("/console/limits", vec![("name", "x"), ("buckets", "not json")], "buckets"),
        ("/console/limits", vec![("name", ""), ("buckets", good)], "name"),
        ("/console/limits", vec![("name", "bad name!"), ("buckets", good)], "name"),
        ("/console/limits", vec![("name", "y"), ("buckets", r#"[{"name":"m","max":0,"interval":60}]"#)], "buckets[0]"),
        ("/console/limits", vec![("name", "taken"), ("buckets", good)], "Limit with that Name already exists"),
        (&edit, vec![("description", "d"), ("buckets", "[]")], "buckets"),
        (
            "/console/workflows",
            vec![("name", "w"), ("steps", r#"[{"channel":"fax","interval":0}]"#)],
            "steps[0].channel",
        ),
        (&flow_edit, vec![("description", "d"), ("steps", "")], "steps"),
        (
            "/console/account/geo",
            vec![("smsCountries", "USA"), ("callCountries", ""), ("whatsappCountries", "")],
            "smsCountries",
        ),
        (
            "/console/account/guard",
            vec![
                ("enabled", "on"),
                ("minSends", "10"),
                ("minVerifyPercent", "101"),
                ("accountMinSends", "100"),
                ("maxFailedVerifies", "5"),
            ],
            "minVerifyPercent",
        ),
        (
            "/console/account/guard",
            vec![
                ("minSends", "ten"),
                ("minVerifyPercent", "20"),
                ("accountMinSends", "100"),
                ("maxFailedVerifies", "5"),
            ],
            "minSends",
        ),
        (
            "/console/account/guard",
            vec![
                ("minSends", "10"),
                ("minVerifyPercent", "20"),
                ("accountMinSends", "100"),
                ("maxFailedVerifies", "500"),
            ],
            "maxFailedVerifies",
        ),
        ("/console/account/test-numbers", vec![("to", "+15551234567"), ("code", "123456")], "testNumbers"),
        ("/console/account/test-numbers", vec![("to", "+14155550100"), ("code", "12")], "testNumbers"),
        ("/console/account/policy", vec![("policy", "{not json")], "policy"),
        ("/console/account/policy", vec![("policy", r#"{"allowedCountry":{}}"#)], "policy"),
        ("/console/account/policy", vec![("policy", r#"{"maxFailedVerifies":0}"#)], "maxFailedVerifies"),
        (
            "/console/account/callback",
            vec![("callbackUrl", "ftp://hooks.example.com/x"), ("callbackMethod", "POST")],
            "callbackUrl",
        ),
        (
            "/console/account/callback",
            vec![("callbackUrl", "https://hooks.example.com/x"), ("callbackMethod", "PUT")],
            "callbackMethod",
        ),
        ("/console/account/allowed-ips", vec![("allowedIps", "127.0.0.1, 10.0.0.0/40")], "allowedIps"),
    ];
    for (path, fields, names) in cases {
        let r = console.post(path, &fields).await;
        assert!(r.status.is_client_error(), "POST {path} {fields:?} answered {}: {}", r.status, r.text);
        let alert = r.alert().unwrap_or_else(|| panic!("no alert for {path} {fields:?}: {}", r.text));
        assert!(alert.contains(names), "POST {path} {fields:?}: the alert {alert:?} does not name {names}");
        // And the form holds what was typed
        for (name, value) in
            fields.iter().filter(|(n, v)| !v.is_empty() && !["code", "enabled", "callbackMethod"].contains(n))
        {
            assert!(
                r.text.contains(&format!(r#"value="{}""#, value.replace('"', "&quot;")))
                    || r.text.contains(&value.replace('"', "&quot;")),
                "POST {path}: the form lost {name}={value}"
            );
        }
    }
    // And nothing changed
    assert_eq!(api_list(&api, "limits").await.len(), 1);
    assert_eq!(api.send_to("+447400123456", json!({})).await.status, 200, "geo permissions unchanged");
}

#[tokio::test]
async fn a_change_without_the_csrf_token_is_forbidden_and_changes_nothing() {
    let (api, console) = signed_in().await;
    console
        .change("/console/limits", &[("name", "kept"), ("buckets", r#"[{"name":"m","max":1,"interval":60}]"#)])
        .await;
    let sid = api_list(&api, "limits").await["kept"]["sid"].as_str().unwrap().to_owned();
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/console/limits".into(), vec![("name", "new"), ("buckets", r#"[{"name":"m","max":1,"interval":60}]"#)]),
        (
            format!("/console/limits/{sid}"),
            vec![("description", "x"), ("buckets", r#"[{"name":"m","max":9,"interval":60}]"#)],
        ),
        (format!("/console/limits/{sid}/delete"), vec![]),
        ("/console/workflows".into(), vec![("name", "w"), ("steps", r#"[{"channel":"sms","interval":0}]"#)]),
        ("/console/account/geo".into(), vec![("smsCountries", "none")]),
        (
            "/console/account/guard".into(),
            vec![("minSends", "1"), ("minVerifyPercent", "100"), ("accountMinSends", "1"), ("maxFailedVerifies", "1")],
        ),
        ("/console/account/test-numbers".into(), vec![("to", "+14155550100"), ("code", "1234")]),
        ("/console/account/policy".into(), vec![("policy", r#"{"allowedCountries":{"sms":[]}}"#)]),
        ("/console/account/callback".into(), vec![("callbackUrl", "https://hooks.example.com/x")]),
        ("/console/account/rotate-secret".into(), vec![]),
        ("/console/account/allowed-ips".into(), vec![("allowedIps", "127.0.0.1")]),
    ];
    for (path, fields) in &posts {
        // Without the token, and with another one
        assert_eq!(console.post_raw(path, fields).await.status, 403, "POST {path} without csrf");
        let mut forged = fields.clone();
        forged.push(("csrf", "forged"));
        let r = console.post_raw(path, &forged).await;
        assert_eq!(r.status, 403, "POST {path} with a forged csrf");
        assert!(!r.text.contains("whsec_"));
    }
    // Then nothing changed
    let limits = api_list(&api, "limits").await;
    assert_eq!(limits.keys().collect::<Vec<_>>(), ["kept"]);
    assert_eq!(limits["kept"]["buckets"], r#"[{"name":"m","max":1,"interval":60}]"#);
    assert!(api_list(&api, "workflows").await.is_empty());
    assert_eq!(api.send_to("+14155550100", json!({})).await.status, 200);
    let page = console.get("/console/account").await;
    assert_eq!(page.input("allowedIps"), "");
    assert_eq!(page.input("callbackUrl"), "");
}

#[tokio::test]
async fn a_sub_account_sees_only_itself_and_the_accounts_below_it() {
    let api = Api::start().await;
    let (sub, sub_token) = api.sub_account(&api.sid).await;
    let (grandchild, _) = api.sub_account(&sub).await;
    let parent = Console::sign_in(&api.base, &api.sid, &api.token).await;
    parent
        .change("/console/limits", &[("name", "parents"), ("buckets", r#"[{"name":"m","max":1,"interval":60}]"#)])
        .await;
    let parents_limit = api_list(&api, "limits").await["parents"]["sid"].as_str().unwrap().to_owned();
    // Given the parent's page lists both accounts below it
    let page = parent.get("/console/account").await;
    assert!(page.has_row("sub-accounts", "data-sid", &sub) && page.has_row("sub-accounts", "data-sid", &grandchild));
    // When the sub-account signs in
    let console = Console::sign_in(&api.base, &sub, &sub_token).await;
    // Then its account page is its own, lists only the account below it, and never names the
    // parent
    let page = console.get("/console/account").await;
    assert!(page.text.contains(&sub));
    assert!(page.has_row("sub-accounts", "data-sid", &grandchild));
    assert!(!page.text.contains(&api.sid), "the parent's sid is not on the sub-account's page");
    // And the parent's limit is not in its list, its page is a 404, and it cannot be changed
    let list = console.get("/console/limits").await;
    assert!(!list.has_row("limits", "data-name", "parents"));
    assert_eq!(console.get(&format!("/console/limits/{parents_limit}")).await.status, 404);
    let r = console.post(&format!("/console/limits/{parents_limit}/delete"), &[]).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = console
        .post(&format!("/console/limits/{parents_limit}"), &[("buckets", r#"[{"name":"m","max":9,"interval":60}]"#)])
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(api_list(&api, "limits").await.contains_key("parents"), "the parent's limit is still there");
    // And what it changes on its account page is its own policy, not the parent's
    console
        .change("/console/account/geo", &[("smsCountries", "none"), ("callCountries", ""), ("whatsappCountries", "")])
        .await;
    assert_eq!(api.send_to("+14155550100", json!({})).await.status, 200, "the parent still sends");
}

#[tokio::test]
async fn test_numbers_and_the_policy_json_change_the_accounts_policy() {
    let (api, console) = signed_in().await;
    // When a test number is added
    let page = console.change("/console/account/test-numbers", &[("to", "+14155550100"), ("code", "424242")]).await;
    assert!(page.has_row("test-numbers", "data-to", "+14155550100"), "{}", page.text);
    assert!(!page.text.contains("424242"), "the fixed code is never shown");
    // Then a send to it verifies with the fixed code
    let sid = api.sent("+14155550100").await;
    assert_eq!(api.verify(&sid, "424242").await.status, 200);
    // When the policy JSON as shown is saved with a change
    let shown: Value = serde_json::from_str(&page.textarea("policy-json")).expect("the policy as JSON");
    let mut policy = shown.clone();
    policy["maxFailedVerifies"] = json!(7);
    policy["pumpingGuard"]["minSends"] = json!(50);
    let page = console.change("/console/account/policy", &[("policy", &policy.to_string())]).await;
    // Then the page shows the change, and the test number is kept
    let after: Value = serde_json::from_str(&page.textarea("policy-json")).unwrap();
    assert_eq!(after["maxFailedVerifies"], 7);
    assert_eq!(page.input("minSends"), "50");
    assert!(page.has_row("test-numbers", "data-to", "+14155550100"));
    // And a sender the account does not have cannot be granted from the console
    let r = console.post("/console/account/policy", &[("policy", r#"{"senders":["BANK"]}"#)]).await;
    // (the first account of a deployment may use any sender: ["*"] covers BANK)
    assert_eq!(r.status, 303, "{}", r.text);
    let narrowed = console.get("/console/account").await;
    let after: Value = serde_json::from_str(&narrowed.textarea("policy-json")).unwrap();
    assert_eq!(after["senders"], json!(["BANK"]));
    let r = console.post("/console/account/policy", &[("policy", r#"{"senders":["*"]}"#)]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.alert().unwrap().contains("senders"));
    // When the test number is removed
    let page = console.change("/console/account/test-numbers/remove", &[("to", "+14155550100")]).await;
    assert!(!page.has_row("test-numbers", "data-to", "+14155550100"));
}

#[tokio::test]
async fn a_long_list_comes_in_pages_each_under_150_kb() {
    let (api, console) = signed_in().await;
    // Given 130 limits with the longest descriptions
    let long = "d".repeat(1024);
    for i in 0..130 {
        let r = api
            .post(
                "/2fa/limits",
                &json!({ "name": format!("limit_{i:03}"), "description": long,
                         "buckets": [{"name": "b", "max": 1, "interval": 60}] }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // Then the first page has 100 of them and a link to the next, the second the rest
    let first = console.get("/console/limits").await;
    assert!(first.text.len() < 150 * 1024, "{} bytes", first.text.len());
    assert_eq!(first.text.matches("data-name=").count(), 100);
    assert!(first.text.contains(r#"rel="next""#));
    let second = console.get("/console/limits?page=1").await;
    assert_eq!(second.text.matches("data-name=").count(), 30);
    assert!(second.text.contains(r#"rel="prev""#) && !second.text.contains(r#"rel="next""#));
    let account = console.get("/console/account").await;
    assert!(account.text.len() < 150 * 1024);
}
