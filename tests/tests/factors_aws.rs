//! Factors on the AWS path: the factors router as its Lambda builds it (sending nothing) and
//! the OTP router that verifies, both over DynamoDB on moto. Codes are computed as an
//! authenticator app computes them from the secret the API shows once, on the real clock: an
//! app's code of the next time step is within the window, so no test waits for a step to end.

mod common;

use std::sync::Arc;

use axum::{body::Body, http::Request};
use serde_json::{json, Value};
use tower::ServiceExt;
use twofa::{
    adapters::aws::{
        aws_config,
        dynamodb::{create_table, DynamoStore},
        sns::SnsSms,
    },
    adapters::router::{self, Route, Router},
    domain::{
        account::Account,
        crypto::Keys,
        factor::{TotpAlgorithm, TotpParams},
        ids,
        otp::Channel,
        totp,
    },
    ports::{AccountStore, Clock, Deps, NoScheduler, SendsNothing, SystemClock},
};

struct AwsApi {
    factors: axum::Router,
    otp: axum::Router,
    ddb: aws_sdk_dynamodb::Client,
    table: String,
    sid: String,
    token: String,
}

async fn start() -> AwsApi {
    std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL must point at moto: run `make test`");
    let sdk = aws_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("twofa-factors-{}", ids::new_sid(""));
    create_table(&ddb, &table).await.expect("create table");
    let keys = Arc::new(Keys::random());
    let store = Arc::new(DynamoStore::new(ddb.clone(), table.clone()));
    let token = ids::new_sid("");
    let account = Account::new(ids::new_sid(ids::ACCOUNT), &token, &keys, None, SystemClock.now_ms());
    store.put_account(&account).await.expect("account");
    // Each function's own deps on the one table: the factors function sends nothing; the OTP
    // function has its SMS route.
    let factors = Deps {
        store: store.clone(),
        dispatcher: Arc::new(SendsNothing),
        clock: Arc::new(SystemClock),
        keys: keys.clone(),
        scheduler: Arc::new(NoScheduler),
    };
    let sns = Route::new(router::SNS, Channel::Sms, Arc::new(SnsSms::new(aws_sdk_sns::Client::new(&sdk), None)));
    let otp = Deps { dispatcher: Arc::new(Router::new(vec![sns])), ..factors.clone() };
    AwsApi {
        factors: twofa::http::factors::router(factors),
        otp: twofa::http::otp::router(otp),
        ddb,
        table,
        sid: account.sid,
        token,
    }
}

impl AwsApi {
    async fn call(&self, app: &axum::Router, method: &str, path: &str, body: Value) -> (u16, Value) {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.sid, self.token));
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("Authorization", format!("Basic {auth}"))
            .header("Content-Type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn factors(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(&self.factors, method, path, body).await
    }

    async fn verify(&self, request_id: &str, code: &str) -> (u16, Value) {
        self.call(&self.otp, "POST", "/2fa/verify", json!({ "requestId": request_id, "code": code })).await
    }

    /// Every attribute of every item of the table, as text (what an operator with table
    /// access would see).
    async fn table_dump(&self) -> String {
        let out = self.ddb.scan().table_name(&self.table).send().await.expect("scan");
        format!("{:?}", out.items.unwrap_or_default())
    }
}

/// The app's code `steps` time steps from now.
fn app_code(seed: &[u8], params: &TotpParams, steps: i64) -> String {
    totp::code(seed, params, totp::step_at(params, SystemClock.now_ms()) + steps)
}

#[tokio::test]
async fn a_factor_is_created_confirmed_challenged_verified_once_and_deleted_over_dynamodb() {
    // Given the factors and OTP functions' routers on one DynamoDB table
    let api = start().await;
    let path = "/2fa/entities/alice/factors";
    // When a factor is created for entity alice
    let (status, body) = api.factors("POST", path, json!({ "friendlyName": "Phone" })).await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    let factor = data["sid"].as_str().unwrap().to_owned();
    let secret = data["secret"].as_str().unwrap().to_owned();
    assert_eq!((data["status"].as_str(), data["algorithm"].as_str()), (Some("unverified"), Some("SHA1")));
    let params = TotpParams { algorithm: TotpAlgorithm::Sha1, digits: 6, period_secs: 30 };
    let seed = common::base32_decode(&secret);
    // Then the table keeps its secret sealed: neither the base32 secret nor the seed is stored
    let dump = api.table_dump().await;
    assert!(dump.contains(&format!("FACTOR#{}#alice", api.sid)) && dump.contains(&factor), "{dump}");
    assert!(!dump.contains(&secret) && !dump.contains(&format!("{:?}", seed)), "the secret is stored in the clear");
    // And it is listed, without its secret
    let (status, list) = api.factors("GET", &format!("{path}.json"), json!({})).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"]["factors"][0]["sid"].as_str(), Some(factor.as_str()), "{list}");
    assert!(!list.to_string().contains(&secret));

    // When it is confirmed with the app's current code
    let (status, body) =
        api.factors("POST", &format!("{path}/{factor}/confirm"), json!({ "code": app_code(&seed, &params, 0) })).await;
    // Then it is verified
    assert_eq!((status, body["data"]["status"].as_str()), (200, Some("verified")), "{body}");

    // When it is challenged, and the challenge is verified through /2fa/verify with the app's
    // next code
    let (status, body) = api.factors("POST", &format!("{path}/{factor}/challenges"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let challenge = body["requestID"].as_str().unwrap().to_owned();
    assert!(challenge.starts_with("OTP"), "{challenge}");
    let code = app_code(&seed, &params, 1);
    let (status, body) = api.verify(&challenge, &code).await;
    // Then it is verified
    assert_eq!((status, &body), (200, &json!({ "code": 200, "message": "OK", "requestID": challenge })));

    // When the same code comes again: for the same challenge, and for a new one
    let (again, again_body) = api.verify(&challenge, &code).await;
    let (status, body) = api.factors("POST", &format!("{path}/{factor}/challenges"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let second = body["requestID"].as_str().unwrap().to_owned();
    let (replay, replay_body) = api.verify(&second, &code).await;
    // Then the challenge is done already, and the new one refuses the code as wrong: a code
    // counts once
    assert_eq!((again, again_body["code"].as_i64()), (409, Some(471)), "{again_body}");
    assert_eq!((replay, replay_body["code"].as_i64()), (401, Some(474)), "{replay_body}");

    // When the factor is deleted
    let (status, body) = api.factors("DELETE", &format!("{path}/{factor}"), json!({})).await;
    assert_eq!((status, body["data"]["sid"].as_str()), (200, Some(factor.as_str())), "{body}");
    // Then it answers 404, cannot be challenged, and its open challenge verifies nothing,
    // not even with a code the factor has not taken
    let (status, body) = api.factors("GET", &format!("{path}/{factor}"), json!({})).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = api.factors("POST", &format!("{path}/{factor}/challenges"), json!({})).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = api.verify(&second, &app_code(&seed, &params, 0)).await;
    assert_eq!((status, body["code"].as_i64()), (401, Some(474)), "{body}");
    let (_, list) = api.factors("GET", path, json!({})).await;
    assert_eq!(list["data"]["factors"], json!([]), "{list}");
}
