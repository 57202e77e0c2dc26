//! What the AWS-path tests of the delivery routes share: the OTP router called in process
//! with an account's credentials, what a stand-in beside moto was asked to send, the receipt
//! lookup items of a table, fresh numbers.

use axum::{body::Body, http::Request};
use serde_json::Value;
use tower::ServiceExt;

pub fn moto_url() -> String {
    std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL must point at moto: run `make test`")
}

/// `POST path` with a JSON `body` to `app` as account `sid` (Basic auth with `token`): the
/// status and the JSON answer.
pub async fn post(app: &axum::Router, sid: &str, token: &str, path: &str, body: Value) -> (u16, Value) {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"));
    let req = Request::post(path)
        .header("Authorization", format!("Basic {auth}"))
        .header("Content-Type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// Every message the stand-in `name` (`sms-voice`, `social`: infra/scripts/moto_serial_server.py)
/// was asked to send.
pub async fn stand_in_messages(name: &str) -> Vec<Value> {
    let all: Value = reqwest::get(format!("{}/_twofa/{name}/messages", moto_url()))
        .await
        .expect("the stand-in")
        .json()
        .await
        .unwrap();
    all["Messages"].as_array().expect("Messages").clone()
}

/// The `MSG#` receipt lookup items in `table`.
pub async fn lookup_items(ddb: &aws_sdk_dynamodb::Client, table: &str) -> usize {
    let out = ddb.scan().table_name(table).send().await.expect("scan");
    out.items()
        .iter()
        .filter(|i| i.get("pk").and_then(|v| v.as_s().ok()).is_some_and(|pk| pk.starts_with("MSG#")))
        .count()
}

/// A number that can exist (+1 415 5xx xxxx), new each time.
pub fn new_number() -> String {
    let digits: String = twofa::domain::ids::new_sid("").chars().filter(char::is_ascii_digit).collect();
    format!("+14155{}", &format!("{digits}000000")[..6])
}

/// A fresh table on moto with one account in it: what every route suite starts from.
pub struct Deployment {
    pub sdk: aws_config::SdkConfig,
    pub ddb: aws_sdk_dynamodb::Client,
    pub store: std::sync::Arc<twofa::adapters::aws::dynamodb::DynamoStore>,
    pub keys: twofa::domain::crypto::Keys,
    pub account: twofa::domain::account::Account,
    pub token: String,
}

pub async fn deployment() -> Deployment {
    use twofa::{
        adapters::aws::{
            aws_config,
            dynamodb::{create_table, DynamoStore},
        },
        domain::{account::Account, crypto::Keys, ids},
        ports::AccountStore,
    };
    let _ = moto_url();
    let sdk = aws_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("twofa-{}", ids::new_sid(""));
    create_table(&ddb, &table).await.expect("create table");
    let keys = Keys::random();
    let store = std::sync::Arc::new(DynamoStore::new(ddb.clone(), table));
    let token = ids::new_sid("");
    let account = Account::new(ids::new_sid(ids::ACCOUNT), &token, &keys, None, 0);
    store.put_account(&account).await.expect("account");
    Deployment { sdk, ddb, store, keys, account, token }
}

/// A store over a fresh table of its own in moto (`{prefix}-{random}`): the DynamoDB half of a
/// test written once for both stores (`on_both_stores!`).
pub async fn fresh_store(prefix: &str) -> twofa::adapters::aws::dynamodb::DynamoStore {
    use twofa::adapters::aws::{aws_config, dynamodb};
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|u| !u.is_empty()),
        "AWS_ENDPOINT_URL is not set: the DynamoDB half needs moto (`make test`, or infra/scripts/moto.sh)"
    );
    let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
    let table = format!("{prefix}-{}", twofa::domain::ids::new_sid(""));
    dynamodb::create_table(&client, &table).await.expect("create the table in moto");
    dynamodb::DynamoStore::new(client, table)
}

/// Delete `store`'s table.
pub async fn drop_store(store: &twofa::adapters::aws::dynamodb::DynamoStore) {
    let client = aws_sdk_dynamodb::Client::new(&twofa::adapters::aws::aws_config().await);
    client.delete_table().table_name(store.table()).send().await.expect("delete the table");
}
