//! Your own provider on the AWS path: the OTP function's router over DynamoDB (moto), its SMS
//! to a local stand-in for the customer's provider, and the provider's signed delivery report
//! moving the stored event forward through the receipts' lookup item.

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
            ses::SesEmail,
            sns::SnsSms,
        },
        provider::{HttpProvider, ProviderConfig},
        router::{self, Route, Router},
    },
    domain::{account::Account, callbacks::new_secret, crypto::Keys, ids, otp::Channel},
    ports::{AccountStore, Deps, NoScheduler, OtpStore, SystemClock},
};

const TO: &str = "+14155550100";

struct AwsApi {
    app: axum::Router,
    store: Arc<DynamoStore>,
    sid: String,
    token: String,
    secret: String,
}

/// The OTP router over a fresh table, SMS going to `url` as provider `acme`.
async fn start(url: &str) -> AwsApi {
    std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL must point at moto");
    let sdk = aws_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("twofa-{}", ids::new_sid(""));
    create_table(&ddb, &table).await.expect("create table");
    let keys = Keys::random();
    let store = Arc::new(DynamoStore::new(ddb, table));
    let token = ids::new_sid("");
    let account = Account::new(ids::new_sid(ids::ACCOUNT), &token, &keys, None, 0);
    store.put_account(&account).await.expect("account");
    let secret = new_secret();
    let provider = HttpProvider::new(ProviderConfig::new("acme", url, &secret, true).expect("a provider"));
    let routes = Router::new(vec![
        Route::new("acme", Channel::Sms, Arc::new(provider)),
        Route::new(router::SNS, Channel::Sms, Arc::new(SnsSms::new(aws_sdk_sns::Client::new(&sdk), None))),
        Route::new(router::SES, Channel::Email, Arc::new(SesEmail::new(aws_sdk_ses::Client::new(&sdk), None))),
    ]);
    let deps = Deps {
        store: store.clone(),
        dispatcher: Arc::new(routes),
        clock: Arc::new(SystemClock),
        keys: Arc::new(keys),
        scheduler: Arc::new(NoScheduler),
    };
    AwsApi { app: twofa::http::otp::router(deps), store, sid: account.sid, token, secret }
}

impl AwsApi {
    async fn call(&self, req: Request<Body>) -> (u16, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn send(&self) -> (u16, Value) {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.sid, self.token));
        let body = json!({ "service": "2FA", "from": "Twofa", "to": TO, "body": "Your code is {code}" });
        let req = Request::post("/2fa/send")
            .header("Authorization", format!("Basic {auth}"))
            .header("Content-Type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.call(req).await
    }

    /// A delivery report signed with `secret`, now.
    async fn report(&self, secret: &str, body: Value) -> (u16, Value) {
        let payload = body.to_string();
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let id = format!("msg_{}", ids::new_sid(""));
        let signature = standardwebhooks::Webhook::new(secret).unwrap().sign(&id, at, payload.as_bytes()).unwrap();
        let req = Request::post("/2fa/receipts/acme")
            .header("Content-Type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", at.to_string())
            .header("webhook-signature", signature)
            .body(Body::from(payload))
            .unwrap();
        self.call(req).await
    }

    async fn event_status(&self, otp: &str) -> (Option<String>, String) {
        let otp = self.store.get_otp(&self.sid, otp).await.unwrap().expect("the OTP");
        (otp.events[0].target_sid.clone(), otp.events[0].status.as_str().to_owned())
    }
}

#[tokio::test]
async fn on_dynamodb_the_providers_signed_report_moves_its_message_to_delivered_and_a_forged_one_does_not() {
    // Given an SMS your provider took as `acme-42`
    let provider = Provider::start(&[(200, r#"{"messageId":"acme-42"}"#)], Duration::ZERO).await;
    let api = start(&provider.url).await;
    let (status, sent) = api.send().await;
    assert_eq!(status, 200, "{sent}");
    let otp = sent["requestID"].as_str().unwrap().to_owned();
    assert_eq!(api.event_status(&otp).await, (Some("acme-42".into()), "sent".into()));
    // When a report signed with another secret comes, then it is 401 and changes nothing
    let delivered = json!({ "messageId": "acme-42", "status": "delivered" });
    assert_eq!(api.report(&new_secret(), delivered.clone()).await.0, 401);
    assert_eq!(api.event_status(&otp).await.1, "sent");
    // When the provider's own signed report comes, then the stored event reads delivered
    let (status, answer) = api.report(&api.secret.clone(), delivered).await;
    assert_eq!((status, answer["outcome"].as_str()), (200, Some("applied")), "{answer}");
    assert_eq!(api.event_status(&otp).await.1, "delivered");
}

#[tokio::test]
async fn on_dynamodb_a_provider_that_fails_answers_503_and_leaves_no_otp() {
    // Given a provider that answers 500
    let provider = Provider::start(&[(500, "oops")], Duration::ZERO).await;
    let api = start(&provider.url).await;
    // When an SMS is sent, then 503, and the number holds no OTP (the send was undone)
    let (status, _) = api.send().await;
    assert_eq!(status, 503);
    assert_eq!(provider.got().len(), 1);
    assert!(api.store.get_destination(&api.sid, "2FA", TO).await.unwrap().is_none_or(|d| d.current.is_empty()));
    // And the next send goes through at once (nothing held the one-a-minute limit)
    assert_eq!(api.send().await.0, 200);
}
