//! A provider of an account's own on the AWS path: the OTP function's router over DynamoDB
//! (moto), the account's routing table naming its provider (a local stand-in), and that
//! provider's signed report at `POST /2fa/receipts/{accountSid}/{provider}` moving the stored
//! event, while another account's provider cannot move it.

mod common;

use std::{sync::Arc, time::Duration};

use axum::{body::Body, http::Request};
use common::provider::Provider;
use serde_json::{json, Value};
use tower::ServiceExt;
use twofa::{
    adapters::{
        aws::{
            aws_config,
            dynamodb::{create_table, DynamoStore},
            sns::SnsSms,
        },
        router::{self, Route, Router},
    },
    domain::{
        account::Account,
        callbacks::UrlRules,
        crypto::Keys,
        ids,
        otp::{Channel, ChannelStatus},
        policy::{self, PolicyUpdate},
        receipts::{self, Receipt, ReceiptOutcome},
    },
    ports::{AccountStore, Deps, NoScheduler, OtpStore, SystemClock},
};

const TO: &str = "+14155550100";

struct AwsApi {
    app: axum::Router,
    store: Arc<DynamoStore>,
    keys: Arc<Keys>,
}

/// The OTP router over a fresh table. The stand-in provider listens on loopback over http,
/// which only the dev server's URL rules take: this router takes them too.
async fn start() -> AwsApi {
    std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL must point at moto");
    let sdk = aws_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("twofa-{}", ids::new_sid(""));
    create_table(&ddb, &table).await.expect("create table");
    let keys = Arc::new(Keys::random());
    let store = Arc::new(DynamoStore::new(ddb, table));
    let routes = Router::new(vec![Route::new(
        router::SNS,
        Channel::Sms,
        Arc::new(SnsSms::new(aws_sdk_sns::Client::new(&sdk), None)),
    )])
    .with_url_rules(UrlRules::AnyHost);
    let deps = Deps {
        store: store.clone(),
        dispatcher: Arc::new(routes),
        clock: Arc::new(SystemClock),
        keys: keys.clone(),
        scheduler: Arc::new(NoScheduler),
    };
    AwsApi { app: twofa::http::otp::router(deps), store, keys }
}

impl AwsApi {
    /// A new account on the deployment's routes: (sid, token).
    async fn plain_account(&self) -> (String, String) {
        let token = ids::new_sid("");
        let account = Account::new(ids::new_sid(ids::ACCOUNT), &token, &self.keys, None, 0);
        self.store.put_account(&account).await.expect("account");
        (account.sid, token)
    }

    /// A new account whose SMS go to its provider `acme` at `url`: (sid, token, acme's secret).
    async fn account_with_provider(&self, url: &str) -> (String, String, String) {
        let token = ids::new_sid("");
        let account = Account::new(ids::new_sid(ids::ACCOUNT), &token, &self.keys, None, 0);
        self.store.put_account(&account).await.expect("account");
        let update: PolicyUpdate = serde_json::from_value(json!({
            "providers": [{ "name": "acme", "url": url }],
            "routes": { "sms": { "*": ["acme"] } },
        }))
        .unwrap();
        let change =
            policy::update_policy_with(self.store.as_ref(), &self.keys, &account.sid, update, UrlRules::AnyHost)
                .await
                .expect("policy");
        let secret = change.provider_secrets[0].secret.clone();
        (account.sid, token, secret)
    }

    async fn call(&self, req: Request<Body>) -> (u16, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn send(&self, sid: &str, token: &str) -> (u16, Value) {
        common::aws::post(
            &self.app,
            sid,
            token,
            "/2fa/send",
            json!({ "service": "2FA", "from": "Twofa", "to": TO, "body": "Your code is {code}" }),
        )
        .await
    }

    /// A delivery report to `path`, signed with `secret`, now.
    async fn report(&self, path: &str, secret: &str, body: Value) -> (u16, Value) {
        let payload = body.to_string();
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let id = format!("msg_{}", ids::new_sid(""));
        let signature = standardwebhooks::Webhook::new(secret).unwrap().sign(&id, at, payload.as_bytes()).unwrap();
        let req = Request::post(path)
            .header("Content-Type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", at.to_string())
            .header("webhook-signature", signature)
            .body(Body::from(payload))
            .unwrap();
        self.call(req).await
    }

    async fn event(&self, account: &str, otp: &str) -> (Option<String>, String, Option<String>) {
        let otp = self.store.get_otp(account, otp).await.unwrap().expect("the OTP");
        let e = &otp.events[0];
        (e.target_sid.clone(), e.status.as_str().to_owned(), e.route.clone())
    }
}

#[tokio::test]
async fn on_dynamodb_an_accounts_provider_sends_and_its_signed_report_moves_only_its_own_message() {
    // Given account A whose SMS go to its provider acme, which took one as acme-7
    let provider = Provider::start(&[(200, r#"{"messageId":"acme-7"}"#)], Duration::ZERO).await;
    let api = start().await;
    let (a, a_token, a_secret) = api.account_with_provider(&provider.url).await;
    let (status, sent) = api.send(&a, &a_token).await;
    assert_eq!(status, 200, "{sent}");
    let otp = sent["requestID"].as_str().unwrap().to_owned();
    // Then acme got the message, signed with A's acme secret, and the event names acme
    let got = provider.got();
    assert_eq!(got.len(), 1);
    standardwebhooks::Webhook::new(&a_secret).unwrap().verify(got[0].body.as_bytes(), &got[0].headers).expect("signed");
    assert_eq!(api.event(&a, &otp).await, (Some("acme-7".into()), "sent".into(), Some("acme".into())));
    // Given account B with a provider of its own, also named acme
    let (b, _, b_secret) = api.account_with_provider(&provider.url).await;
    let delivered = json!({ "messageId": "acme-7", "status": "delivered" });
    // When B's provider reports A's message delivered on B's path, well signed
    let (status, answer) = api.report(&format!("/2fa/receipts/{b}/acme"), &b_secret, delivered.clone()).await;
    // Then it is a message B does not have, and A's event is unchanged
    assert_eq!((status, answer["outcome"].as_str()), (200, Some("unknown")), "{answer}");
    assert_eq!(api.event(&a, &otp).await.1, "sent");
    // And B's secret does not sign for A's path
    assert_eq!(api.report(&format!("/2fa/receipts/{a}/acme"), &b_secret, delivered.clone()).await.0, 401);
    assert_eq!(api.event(&a, &otp).await.1, "sent");
    // When A's acme reports it on A's path, signed with A's secret
    let (status, answer) = api.report(&format!("/2fa/receipts/{a}/acme"), &a_secret, delivered).await;
    // Then the stored event reads delivered
    assert_eq!((status, answer["outcome"].as_str()), (200, Some("applied")), "{answer}");
    assert_eq!(api.event(&a, &otp).await.1, "delivered");
}

#[tokio::test]
async fn on_dynamodb_an_accounts_provider_that_answers_another_messages_id_cannot_take_its_receipts() {
    // Given account B's SMS sent by the deployment's SNS route as message X
    let api = start().await;
    let (b, b_token) = api.plain_account().await;
    let (status, sent) = api.send(&b, &b_token).await;
    assert_eq!(status, 200, "{sent}");
    let b_otp = sent["requestID"].as_str().unwrap().to_owned();
    let x = api.event(&b, &b_otp).await.0.expect("SNS's message id");
    // And account A whose own provider answers its SMS with that same id X
    let answer = format!(r#"{{"messageId":"{x}"}}"#);
    let provider = Provider::start(&[(200, answer.as_str())], Duration::ZERO).await;
    let (a, a_token, a_secret) = api.account_with_provider(&provider.url).await;
    let (status, sent) = api.send(&a, &a_token).await;
    assert_eq!(status, 200, "{sent}");
    let a_otp = sent["requestID"].as_str().unwrap().to_owned();
    assert_eq!(api.event(&a, &a_otp).await, (Some(x.clone()), "sent".into(), Some("acme".into())));
    // When SNS reports X delivered
    let delivered = Receipt::by_id(x.clone(), ChannelStatus::Delivered, None, None);
    let outcome = receipts::apply(api.store.as_ref(), &delivered).await.unwrap();
    // Then B's message is the one delivered, and A's is untouched
    assert_eq!(outcome, ReceiptOutcome::Applied);
    assert_eq!(api.event(&b, &b_otp).await.1, "delivered");
    assert_eq!(api.event(&a, &a_otp).await.1, "sent");
    // And A's provider's report of X moves A's message only
    let body = json!({ "messageId": x, "status": "undelivered" });
    let (status, answer) = api.report(&format!("/2fa/receipts/{a}/acme"), &a_secret, body).await;
    assert_eq!((status, answer["outcome"].as_str()), (200, Some("applied")), "{answer}");
    assert_eq!(api.event(&a, &a_otp).await.1, "undelivered");
    assert_eq!(api.event(&b, &b_otp).await.1, "delivered");
}
