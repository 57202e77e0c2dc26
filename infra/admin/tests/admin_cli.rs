//! `twofa-admin` as an operator runs it: the binary, against a table on moto, configured by the
//! environment only; what each command did is then seen through the API (the OTP router on
//! the same table, DynamoDB and SNS on moto, no account cache).

use std::{net::IpAddr, process::Command, sync::Arc, time::Duration};

use axum::{body::Body, http::Request};
use serde_json::{json, Value};
use tower::ServiceExt;
use twofa::adapters::router::{self, Route, Router};
use twofa::domain::otp::Channel;
use twofa::{
    adapters::aws::{
        aws_config,
        dynamodb::{create_table, DynamoStore},
        ses::SesEmail,
        sns::SnsSms,
    },
    domain::{crypto::Keys, ids},
    http::auth::ClientIp,
    ports::{Deps, NoScheduler, SystemClock},
};

fn moto_url() -> String {
    std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL must point at moto: run `make test` (or `make moto-up` and eval `make moto-env`)")
}

/// A fresh table and master key, and the API serving it (the OTP routes and the factors').
struct Deployment {
    table: String,
    master_hex: String,
    app: axum::Router,
    factors: axum::Router,
}

async fn given_a_deployment() -> Deployment {
    let _ = moto_url();
    let sdk = aws_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("twofa-admin-{}", ids::new_sid(""));
    create_table(&ddb, &table).await.expect("create table");
    let master_hex = ids::new_sid("") + &ids::new_sid("");
    let keys = Keys::from_master(&hex::decode(&master_hex).unwrap()).unwrap();
    let store = DynamoStore::new(ddb, table.clone()).with_account_cache_ttl(Duration::ZERO);
    let dispatcher = Router::new(vec![
        Route::new(router::SNS, Channel::Sms, Arc::new(SnsSms::new(aws_sdk_sns::Client::new(&sdk), None))),
        Route::new(router::SES, Channel::Email, Arc::new(SesEmail::new(aws_sdk_ses::Client::new(&sdk), None))),
    ]);
    let deps = Deps {
        store: Arc::new(store),
        dispatcher: Arc::new(dispatcher),
        clock: Arc::new(SystemClock),
        keys: Arc::new(keys),
        scheduler: Arc::new(NoScheduler),
    };
    Deployment {
        table,
        master_hex,
        app: twofa::http::otp::router(deps.clone()),
        factors: twofa::http::factors::router(deps),
    }
}

/// What one run of the command gave.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The value of a `NAME=value` line.
    fn value(&self, name: &str) -> String {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name}= in {:?}", self.stdout))
            .to_owned()
    }
}

impl Deployment {
    fn admin(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_twofa-admin"))
            .args(args)
            .env("TWOFA_TABLE", &self.table)
            .env("TWOFA_SECRET_KEY", &self.master_hex)
            .env_remove("TWOFA_SECRET_ARN")
            .output()
            .expect("run twofa-admin");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn admin_ok(&self, args: &[&str]) -> Run {
        let run = self.admin(args);
        assert_eq!(run.code, 0, "twofa-admin {args:?}: {}{}", run.stdout, run.stderr);
        run
    }

    /// An account made by the command: (sid, token).
    fn account(&self) -> (String, String) {
        let run = self.admin_ok(&["account", "create", "--email", "ops@example.com"]);
        (run.value("ACCOUNT_SID"), run.value("AUTH_TOKEN"))
    }

    async fn post_from(&self, ip: &str, sid: &str, token: &str, path: &str, body: Value) -> (u16, Value) {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"));
        let mut req = Request::post(path)
            .header("Authorization", format!("Basic {auth}"))
            .header("Content-Type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        req.extensions_mut().insert(ClientIp(ip.parse::<IpAddr>().unwrap()));
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// `method path` on the factors routes as the account `sid`.
    async fn factors_call(&self, method: &str, sid: &str, token: &str, path: &str, body: Value) -> (u16, Value) {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"));
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("Authorization", format!("Basic {auth}"))
            .header("Content-Type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        req.extensions_mut().insert(ClientIp("198.51.100.7".parse::<IpAddr>().unwrap()));
        let resp = self.factors.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn send_as(&self, sid: &str, token: &str, to: &str) -> (u16, Value) {
        self.send_from("198.51.100.7", sid, token, to).await
    }

    async fn send_from(&self, ip: &str, sid: &str, token: &str, to: &str) -> (u16, Value) {
        let body = json!({ "service": "2FA", "from": "Twofa", "to": to, "body": "Your code: {code}" });
        self.post_from(ip, sid, token, "/2fa/send", body).await
    }
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// A random US number that can exist (+1 415 5xx xxxx).
fn number() -> String {
    format!("+14155{}", &digits(&ids::new_sid(""))[..6])
}

/// The code SNS carried to `to` (moto's record of what it "delivered").
async fn code_sent_to(to: &str) -> String {
    let data: Value = reqwest::get(format!("{}/moto-api/data.json", moto_url())).await.unwrap().json().await.unwrap();
    let sms = data["sns"]["SMS"].as_array().expect("sns SMS list");
    let msg = sms.iter().rev().find(|m| m["phone_number"] == to).expect("an SMS to the number");
    digits(msg["message"].as_str().unwrap())
}

#[tokio::test]
async fn an_account_created_by_the_command_sends_and_verifies_an_otp_with_the_printed_credentials() {
    // Given a deployment with no account at all
    let d = given_a_deployment().await;
    // When an operator creates one
    let run = d.admin_ok(&["account", "create", "--email", "ops@example.com"]);
    let (sid, token) = (run.value("ACCOUNT_SID"), run.value("AUTH_TOKEN"));
    // Then the sid, token and webhook secret are printed
    assert!(ids::is_sid(ids::ACCOUNT, &sid), "{sid}");
    assert_eq!(token.len(), 32);
    assert!(run.value("WEBHOOK_SECRET").starts_with("whsec_"));
    // And those credentials send an OTP that verifies
    let to = number();
    let (status, body) = d.send_as(&sid, &token, &to).await;
    assert_eq!(status, 200, "{body}");
    let request_id = body["requestID"].as_str().unwrap().to_owned();
    let code = code_sent_to(&to).await;
    let verify = json!({ "requestId": request_id, "code": code });
    let (status, body) = d.post_from("198.51.100.7", &sid, &token, "/2fa/verify", verify).await;
    assert_eq!((status, body["code"].clone()), (200, json!(200)), "{body}");
    // And a wrong token for that sid is refused
    let (status, _) = d.send_as(&sid, "0".repeat(32).as_str(), &number()).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_sub_account_is_listed_under_its_parent_which_can_act_for_it() {
    // Given an account and a sub-account made with --parent
    let d = given_a_deployment().await;
    let (parent, parent_token) = d.account();
    let sub =
        d.admin_ok(&["account", "create", "--email", "team@example.com", "--parent", &parent]).value("ACCOUNT_SID");
    // When the accounts are listed
    let list = d.admin_ok(&["account", "list"]).stdout;
    let json: Value = serde_json::from_str(&d.admin_ok(&["account", "list", "--json"]).stdout).unwrap();
    // Then both are there, the sub-account naming its parent
    let sub_line = list.lines().find(|l| l.starts_with(&sub)).unwrap_or_else(|| panic!("{sub} not in {list}"));
    assert!(sub_line.contains(&parent) && sub_line.contains("team@example.com") && sub_line.contains("active"));
    assert!(list.lines().any(|l| l.starts_with(&parent)));
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows.iter().find(|r| r["sid"] == sub.as_str()).unwrap()["parentSid"], parent.as_str());
    // And the parent can send for the sub-account
    let body = json!({ "service": "2FA", "from": "Twofa", "to": number(), "body": "{code}", "accountSid": sub });
    let (status, body) = d.post_from("198.51.100.7", &parent, &parent_token, "/2fa/send", body).await;
    assert_eq!(status, 200, "{body}");
    // And an unknown parent is refused
    let run = d.admin(&["account", "create", "--email", "x@example.com", "--parent", "ACnope"]);
    assert_eq!((run.code, run.stderr.trim()), (1, "twofa-admin: no account ACnope"));
}

#[tokio::test]
async fn a_suspended_account_is_forbidden_until_it_is_resumed() {
    // Given an account that sends
    let d = given_a_deployment().await;
    let (sid, token) = d.account();
    // When it is suspended
    assert_eq!(d.admin_ok(&["account", "suspend", &sid]).stdout, format!("{sid} suspended\n"));
    // Then its credentials answer 403, code 403 (API.md)
    let (status, body) = d.send_as(&sid, &token, &number()).await;
    assert_eq!((status, body["code"].clone(), body["message"].clone()), (403, json!(403), json!("Forbidden")));
    assert!(d.admin_ok(&["account", "list"]).stdout.lines().any(|l| l.starts_with(&sid) && l.contains("suspended")));
    // And once resumed they send again
    assert_eq!(d.admin_ok(&["account", "resume", &sid]).stdout, format!("{sid} active\n"));
    let (status, body) = d.send_as(&sid, &token, &number()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_rotated_token_works_and_the_old_one_stops() {
    // Given an account and its token
    let d = given_a_deployment().await;
    let (sid, old) = d.account();
    // When the token is rotated
    let new = d.admin_ok(&["account", "rotate-token", &sid]).value("AUTH_TOKEN");
    // Then the old token is refused as unknown credentials are, and the new one sends
    assert_ne!(new, old);
    let (status, body) = d.send_as(&sid, &old, &number()).await;
    assert_eq!((status, body["code"].clone()), (401, json!(401)));
    let (status, body) = d.send_as(&sid, &new, &number()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_ip_allow_list_admits_only_callers_from_its_networks() {
    // Given an account restricted to a /24 and one IPv6 host
    let d = given_a_deployment().await;
    let (sid, token) = d.account();
    let run = d.admin_ok(&["account", "allow-ips", &sid, "203.0.113.0/24", "2001:db8::1"]);
    assert_eq!(run.stdout, format!("{sid} allows 203.0.113.0/24 2001:db8::1\n"));
    // When callers from inside and outside send
    let (inside, _) = d.send_from("203.0.113.200", &sid, &token, &number()).await;
    let (inside_v6, _) = d.send_from("2001:db8::1", &sid, &token, &number()).await;
    let (outside, body) = d.send_from("198.51.100.7", &sid, &token, &number()).await;
    // Then only those inside get in; outside is 403, code 403
    assert_eq!((inside, inside_v6), (200, 200));
    assert_eq!((outside, body["code"].clone()), (403, json!(403)));
    // And --any lifts the restriction; a malformed block changes nothing
    let bad = d.admin(&["account", "allow-ips", &sid, "10.0.0.0/33"]);
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    assert!(bad.stderr.contains("cidr"), "{}", bad.stderr);
    d.admin_ok(&["account", "allow-ips", &sid, "--any"]);
    let (status, _) = d.send_from("198.51.100.7", &sid, &token, &number()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn set_callback_stores_the_url_and_method_and_rotating_shows_a_new_secret() {
    // Given an account
    let d = given_a_deployment().await;
    let (sid, _) = d.account();
    // When its callback is set
    let run =
        d.admin_ok(&["account", "set-callback", &sid, "--url", "https://hooks.example.com/twofa", "--method", "GET"]);
    // Then it is stored as given, with the secret made at creation kept (nothing new printed)
    assert_eq!(run.stdout, format!("{sid} callback GET https://hooks.example.com/twofa\n"));
    let shown: Value = serde_json::from_str(&d.admin_ok(&["account", "show", &sid]).stdout).unwrap();
    assert_eq!(shown["policy"]["callbackUrl"], "https://hooks.example.com/twofa");
    assert_eq!(shown["policy"]["callbackMethod"], "GET");
    assert_eq!(shown["policy"]["webhookSecret"], "set");
    // And --rotate-secret prints a new one, once
    let rotated =
        d.admin_ok(&["account", "set-callback", &sid, "--url", "https://hooks.example.com/v2", "--rotate-secret"]);
    assert!(rotated.value("WEBHOOK_SECRET").starts_with("whsec_"));
    // And a URL a deployment cannot call is refused, naming it
    let bad = d.admin(&["account", "set-callback", &sid, "--url", "http://127.0.0.1/cb"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("callbackUrl"), "{}", bad.stderr);
    // And --clear removes it
    assert_eq!(d.admin_ok(&["account", "set-callback", &sid, "--clear"]).stdout, format!("{sid} callback none\n"));
}

#[tokio::test]
async fn a_policy_set_by_the_command_is_enforced_by_the_api() {
    // Given an account allowed to send SMS to GB only, with a test number
    let d = given_a_deployment().await;
    let (sid, token) = d.account();
    let policy = r#"{"allowedCountries":{"sms":["GB"]},"testNumbers":[{"to":"+14155550123","code":"246810"}]}"#;
    let run = d.admin_ok(&["account", "policy", &sid, "--json", policy]);
    let shown: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(shown["allowedCountries"]["sms"], json!(["GB"]));
    assert_eq!(shown["testNumbers"], json!(["+14155550123"]), "test codes are never shown back");
    // When it sends to a US number
    let (status, body) = d.send_as(&sid, &token, &number()).await;
    // Then the geo permission refuses it (403, code 476)
    assert_eq!((status, body["code"].clone()), (403, json!(476)), "{body}");
    // And the test number takes its fixed code
    let (status, body) = d.send_as(&sid, &token, "+14155550123").await;
    assert_eq!(status, 200, "{body}");
    let verify = json!({ "requestId": body["requestID"], "code": "246810" });
    let (status, body) = d.post_from("198.51.100.7", &sid, &token, "/2fa/verify", verify).await;
    assert_eq!(status, 200, "{body}");
    // And a policy that is not one is refused
    let bad = d.admin(&["account", "policy", &sid, "--json", r#"{"allowedCountry":{}}"#]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("not a policy"), "{}", bad.stderr);
}

#[tokio::test]
async fn a_routing_table_set_by_the_command_is_shown_back_and_its_route_sends() {
    // Given an account whose SMS to the US go by SNS
    let d = given_a_deployment().await;
    let (sid, token) = d.account();
    let table = r#"{"routes":{"sms":{"US":["sns"],"*":["end-user-messaging","sns"]}}}"#;
    let shown: Value = serde_json::from_str(&d.admin_ok(&["account", "policy", &sid, "--json", table]).stdout).unwrap();
    // Then the table reads back, the country before the star
    assert_eq!(shown["routes"], json!({ "sms": { "US": ["sns"], "*": ["end-user-messaging", "sns"] } }));
    let again: Value = serde_json::from_str(&d.admin_ok(&["account", "show", &sid]).stdout).unwrap();
    assert_eq!(again["policy"]["routes"], shown["routes"]);
    // And a US number is sent to through SNS
    let to = number();
    let (status, body) = d.send_as(&sid, &token, &to).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(code_sent_to(&to).await.len(), 6);
    // And a malformed table is refused naming routes, the old one kept
    let bad = d.admin(&["account", "policy", &sid, "--json", r#"{"routes":{"sms":{"*":[]}}}"#]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("routes"), "{}", bad.stderr);
    let kept: Value = serde_json::from_str(&d.admin_ok(&["account", "show", &sid]).stdout).unwrap();
    assert_eq!(kept["policy"]["routes"], shown["routes"]);
}

#[tokio::test]
async fn a_provider_set_by_the_command_prints_its_secret_once_and_never_shows_it_again() {
    // Given an account
    let d = given_a_deployment().await;
    let (sid, _) = d.account();
    // When its policy names a provider of its own, routed to
    let policy = r#"{"providers":[{"name":"acme","url":"https://sms.acme.example/send"}],"routes":{"sms":{"*":["acme","sns"]}}}"#;
    let run = d.admin_ok(&["account", "policy", &sid, "--json", policy]);
    // Then the provider's secret is printed, this once
    let line = run.stdout.lines().find_map(|l| l.strip_prefix("PROVIDER_SECRET acme ")).expect("the secret line");
    assert!(line.starts_with("whsec_"), "{}", run.stdout);
    // And the account shows the provider's name and URL, never its secret
    let shown = d.admin_ok(&["account", "show", &sid]).stdout;
    let policy: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(policy["policy"]["providers"], json!([{ "name": "acme", "url": "https://sms.acme.example/send" }]));
    assert!(!shown.contains(line.trim_start_matches("whsec_")));
    // And naming it again prints nothing new; a provider URL a deployment cannot call is refused
    let again = d.admin_ok(&[
        "account",
        "policy",
        &sid,
        "--json",
        r#"{"providers":[{"name":"acme","url":"https://sms2.acme.example/send"}]}"#,
    ]);
    assert!(!again.stdout.contains("PROVIDER_SECRET"), "{}", again.stdout);
    let bad = d.admin(&[
        "account",
        "policy",
        &sid,
        "--json",
        r#"{"providers":[{"name":"acme","url":"http://10.0.0.1/send"}]}"#,
    ]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("providers"), "{}", bad.stderr);
}

#[tokio::test]
async fn usage_errors_exit_2_and_unknown_accounts_exit_1() {
    let d = given_a_deployment().await;
    let usage = d.admin(&["account", "create"]);
    assert_eq!(usage.code, 2);
    assert!(usage.stderr.contains("create needs --email") && usage.stderr.contains("usage: twofa-admin"));
    for cmd in
        [&["account", "suspend", "ACnope"][..], &["account", "rotate-token", "ACnope"], &["account", "show", "ACnope"]]
    {
        let run = d.admin(cmd);
        assert_eq!((run.code, run.stderr.trim()), (1, "twofa-admin: no account ACnope"), "{cmd:?}");
    }
    assert_eq!(d.admin(&["--help"]).code, 0);
}

#[tokio::test]
async fn only_the_first_account_sends_from_any_sender_and_another_from_those_it_is_granted() {
    // Given a deployment's first account, and a second one
    let d = given_a_deployment().await;
    let first = d.admin_ok(&["account", "create", "--email", "ops@example.com"]);
    assert!(first.stdout.contains("# senders: any sender the deployment has"), "{}", first.stdout);
    let second = d.admin_ok(&["account", "create", "--email", "tenant@example.com"]);
    assert!(second.stdout.contains("# senders: none yet"), "{}", second.stdout);
    let (sid, token) = (second.value("ACCOUNT_SID"), second.value("AUTH_TOKEN"));
    // When the second sends as "Twofa" before and after the operator grants it that sender
    let (before, body) = d.send_as(&sid, &token, &number()).await;
    let granted = d.admin_ok(&["account", "senders", &sid, "Twofa", "@tenant.example"]);
    let (after, _) = d.send_as(&sid, &token, &number()).await;
    // Then it is refused with a 400 naming `from`, then sent
    assert_eq!(
        (before, body["message"].as_str()),
        (400, Some("Invalid parameter: from (not a sender this account may use)"))
    );
    assert_eq!(granted.stdout.trim(), format!("{sid} senders: Twofa @tenant.example"));
    assert_eq!(after, 200);
    // And the first account sends as anyone
    let (status, body) = d.send_as(&first.value("ACCOUNT_SID"), &first.value("AUTH_TOKEN"), &number()).await;
    assert_eq!(status, 200, "{body}");
    // And a later account created with --any-sender sends as anyone from the start
    let open = d.admin_ok(&["account", "create", "--email", "solo@example.com", "--any-sender"]);
    assert!(open.stdout.contains("# senders: any sender the deployment has"), "{}", open.stdout);
    let (status, body) = d.send_as(&open.value("ACCOUNT_SID"), &open.value("AUTH_TOKEN"), &number()).await;
    assert_eq!(status, 200, "{body}");
    // And a sender that is no sender rule is refused by the command
    let bad = d.admin(&["account", "senders", &sid, "not a sender!"]);
    assert_eq!(bad.code, 1, "{}", bad.stdout);
    assert!(bad.stderr.contains("senders"), "{}", bad.stderr);
}

#[tokio::test]
async fn suspending_an_account_suspends_its_sub_accounts_until_it_is_resumed() {
    // Given a root account, a sub-account under it and one under that, each sending
    let d = given_a_deployment().await;
    let (root, root_token) = d.account();
    let parent =
        d.admin_ok(&["account", "create", "--email", "team@example.com", "--parent", &root]).value("ACCOUNT_SID");
    let leaf = d.admin_ok(&["account", "create", "--email", "leaf@example.com", "--parent", &parent]);
    let (leaf, leaf_token) = (leaf.value("ACCOUNT_SID"), leaf.value("AUTH_TOKEN"));
    let for_leaf =
        || json!({ "service": "2FA", "from": "Twofa", "to": number(), "body": "{code}", "accountSid": leaf });
    let (status, body) = d.send_as(&leaf, &leaf_token, &number()).await;
    assert_eq!(status, 200, "{body}");
    // When the middle one is suspended
    d.admin_ok(&["account", "suspend", &parent]);
    // Then the leaf's own credentials answer 403, code 403
    let (status, body) = d.send_as(&leaf, &leaf_token, &number()).await;
    assert_eq!((status, body["code"].clone()), (403, json!(403)), "{body}");
    // And the root may no longer act for the leaf, though it still sends for itself
    let (status, body) = d.post_from("198.51.100.7", &root, &root_token, "/2fa/send", for_leaf()).await;
    assert_eq!((status, body["code"].clone()), (403, json!(403)), "{body}");
    let (status, body) = d.send_as(&root, &root_token, &number()).await;
    assert_eq!(status, 200, "{body}");
    // And once it is resumed, both work again
    d.admin_ok(&["account", "resume", &parent]);
    let (status, body) = d.send_as(&leaf, &leaf_token, &number()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = d.post_from("198.51.100.7", &root, &root_token, "/2fa/send", for_leaf()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn clear_failures_lets_a_destination_paused_by_failed_verifies_send_again() {
    // Given an account whose budget of failed verifies per destination is 2, and a number that
    // used it up with two wrong codes
    let d = given_a_deployment().await;
    let (sid, token) = d.account();
    d.admin_ok(&["account", "policy", &sid, "--json", r#"{"maxFailedVerifies":2}"#]);
    let to = number();
    let (_, body) = d.send_as(&sid, &token, &to).await;
    let request_id = body["requestID"].as_str().unwrap().to_owned();
    let right = code_sent_to(&to).await;
    let wrong = if right == "000000" { "111111" } else { "000000" };
    for _ in 0..2 {
        let (status, _) = d
            .post_from("198.51.100.7", &sid, &token, "/2fa/verify", json!({ "requestId": request_id, "code": wrong }))
            .await;
        assert_eq!(status, 401);
    }
    // When it sends again
    let resend = || {
        let body = json!({ "service": "2FA", "from": "Twofa", "to": to, "body": "Your code: {code}" });
        d.post_from("198.51.100.7", &sid, &token, "/2fa/send", body)
    };
    let (status, body) = resend().await;
    // Then it answers 478, until the operator clears the number's failures: then the send
    // passes that check and meets the next one, the default limit (one a minute: this test
    // cannot move the deployment's clock)
    assert_eq!((status, body["code"].as_i64()), (429, Some(478)), "{body}");
    let cleared = d.admin_ok(&["account", "clear-failures", &sid, &to[1..]]);
    assert_eq!(cleared.stdout.trim(), format!("{sid} {to}: failed verifies cleared"));
    let (status, body) = resend().await;
    assert_eq!((status, body["code"].as_i64()), (404, Some(453)), "{body}");
    // And clearing again says there was nothing to clear
    let again = d.admin_ok(&["account", "clear-failures", &sid, &to]);
    assert_eq!(again.stdout.trim(), format!("{sid} {to}: no failed verifies to clear"));
}

#[tokio::test]
async fn keys_rotate_shows_both_keys_and_refuses_a_second_rotation_or_an_early_retirement() {
    // Given a deployment whose secret is in Secrets Manager, as the template makes it
    let d = given_a_deployment().await;
    let sdk = aws_config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = format!("twofa-admin-keys-{}", ids::new_sid(""));
    let arn = sm.create_secret().name(&name).secret_string(&d.master_hex).send().await.unwrap().arn.unwrap();
    let keys = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_twofa-admin"))
            .args(args)
            .env("TWOFA_TABLE", &d.table)
            .env("TWOFA_SECRET_ARN", &arn)
            .env_remove("TWOFA_SECRET_KEY")
            .output()
            .expect("run twofa-admin");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Then it has one key, 0, written with now
    let (code, out, _) = keys(&["keys", "status"]);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with("key 0 current, active from 1970-01-01T00:00:00") && out.contains("written with now"),
        "{out}"
    );
    // When the operator rotates
    let (code, out, err) = keys(&["keys", "rotate"]);
    // Then key 1 is current, written with only after every function has read it
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("key 1 is current, written with from "), "{out}");
    let (_, status, _) = keys(&["keys", "status"]);
    let lines: Vec<&str> = status.lines().collect();
    assert_eq!(lines.len(), 2, "{status}");
    assert!(lines[0].starts_with("key 1 current") && !lines[0].contains("written with now"), "{status}");
    assert!(lines[1].starts_with("key 0 previous") && lines[1].contains("written with now"), "{status}");
    // And a second rotation and an early retirement are refused, naming why
    let (code, _, err) = keys(&["keys", "rotate"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("key 0 is still kept as the previous key; retire it first"), "{err}");
    let (code, _, err) = keys(&["keys", "retire-previous"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("may be pending until"), "{err}");
    // And with a hex key instead of the secret, keys commands say what they need
    let run = d.admin(&["keys", "status"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("keys commands need TWOFA_SECRET_ARN"), "{}", run.stderr);
}

#[tokio::test]
async fn an_entitys_factors_are_listed_without_their_secret_and_a_removed_one_answers_404() {
    // Given an account made by the command, whose entity "alice" has two factors made through
    // the API (a lost phone and a new one)
    let d = given_a_deployment().await;
    let (sid, token) = d.account();
    let path = "/2fa/entities/alice/factors";
    let (status, lost) = d.factors_call("POST", &sid, &token, path, json!({ "friendlyName": "Lost phone" })).await;
    assert_eq!(status, 200, "{lost}");
    let (_, kept) = d.factors_call("POST", &sid, &token, path, json!({ "friendlyName": "New phone" })).await;
    let (lost, kept) = (&lost["data"], &kept["data"]);
    let lost_sid = lost["sid"].as_str().unwrap();
    // When the operator lists alice's factors
    let listed = d.admin_ok(&["account", "factors", &sid, "alice"]);
    // Then both are there, by name, and neither secret is printed
    assert!(listed.stdout.contains("Lost phone") && listed.stdout.contains("New phone"), "{}", listed.stdout);
    for f in [lost, kept] {
        assert!(listed.stdout.contains(f["sid"].as_str().unwrap()), "{}", listed.stdout);
        assert!(!listed.stdout.contains(f["secret"].as_str().unwrap()), "a secret printed: {}", listed.stdout);
    }
    // When the operator removes the lost one
    let removed = d.admin_ok(&["account", "remove-factor", &sid, "alice", lost_sid]);
    // Then it says so, the API answers 404 for it and lists only the other
    assert_eq!(removed.stdout.trim(), format!("{sid} alice {lost_sid}: removed (unverified)"));
    let (status, body) = d.factors_call("GET", &sid, &token, &format!("{path}/{lost_sid}"), json!({})).await;
    assert_eq!(status, 404, "{body}");
    let (_, list) = d.factors_call("GET", &sid, &token, path, json!({})).await;
    let sids: Vec<&str> =
        list["data"]["factors"].as_array().unwrap().iter().map(|f| f["sid"].as_str().unwrap()).collect();
    assert_eq!(sids, [kept["sid"].as_str().unwrap()]);
    // And removing it again fails, exit 1, naming the factor; a bad entity id is a usage of
    // the command it names
    let again = d.admin(&["account", "remove-factor", &sid, "alice", lost_sid]);
    assert_eq!(
        (again.code, again.stderr.trim()),
        (1, format!("twofa-admin: no factor {lost_sid} of entity alice").as_str())
    );
    let bad = d.admin(&["account", "factors", &sid, "a/b"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("entity"), "{}", bad.stderr);
    let usage = d.admin(&["account", "remove-factor", &sid, "alice"]);
    assert_eq!(usage.code, 2);
    assert!(usage.stderr.contains("remove-factor needs SID, ENTITY and FACTOR"), "{}", usage.stderr);
}
