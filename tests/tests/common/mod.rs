//! The black-box harness: a dev server on an ephemeral loopback port, driven over HTTP.
#![allow(dead_code)]

pub mod aws;

/// Each named test `async fn NAME(store: Arc<…>)` run twice: on the embedded store (`memory::NAME`)
/// and on DynamoDB over a fresh moto table (`dynamodb::NAME`, the table dropped after).
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(std::sync::Arc::new(twofa::adapters::memory::MemoryStore::new())).await
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = std::sync::Arc::new($crate::common::aws::fresh_store(stringify!($name)).await);
                    super::$name(store.clone()).await;
                    $crate::common::aws::drop_store(&store).await;
                }
            )*
        }
    };
}
pub mod authenticator;
pub mod browser;
pub mod provider;
pub mod receiver;
pub mod stream;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use twofa::domain::crypto::Keys;
use twofa_local::{hex_token, serve, Dev};

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub sid: String,
    pub token: String,
    pub dev: Dev,
}

pub struct Resp {
    pub status: StatusCode,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    pub fn code(&self) -> i64 {
        self.json()["code"].as_i64().unwrap_or_else(|| panic!("no code in {}", self.text))
    }
    pub fn request_id(&self) -> String {
        self.json()["requestID"].as_str().unwrap_or_else(|| panic!("no requestID in {}", self.text)).to_owned()
    }
}

impl Api {
    /// Given a fresh dev server with one account.
    pub async fn start() -> Self {
        Self::start_with(Dev::new(Keys::random())).await
    }

    /// Given `dev` (a dev server set up some other way) with one account.
    pub async fn start_with(dev: Dev) -> Self {
        let token = hex_token();
        let account = dev.create_account(None, &token, None).await.expect("account");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let app = dev.app();
        tokio::spawn(async move { serve(listener, app).await.expect("serve") });
        Api { base, http: reqwest::Client::new(), sid: account.sid, token, dev }
    }

    /// Another top-level account on the same server, as (sid, token).
    pub async fn other_account(&self) -> (String, String) {
        let token = hex_token();
        let a = self.dev.create_account(None, &token, None).await.expect("account");
        (a.sid, token)
    }

    /// A sub-account of `parent`, as (sid, token).
    pub async fn sub_account(&self, parent: &str) -> (String, String) {
        let token = hex_token();
        let a = self.dev.create_account(None, &token, Some(parent)).await.expect("sub-account");
        (a.sid, token)
    }

    /// A delivery report posted to `path`, Standard-Webhooks-signed with `secret` at `at`
    /// (Unix seconds), as a provider sends one.
    pub async fn signed_report(&self, path: &str, secret: &str, body: &Value, at: i64) -> Resp {
        let payload = body.to_string();
        let id = format!("msg_{}", hex_token());
        let signature = standardwebhooks::Webhook::new(secret).unwrap().sign(&id, at, payload.as_bytes()).unwrap();
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("webhook-id", id)
            .header("webhook-timestamp", at.to_string())
            .header("webhook-signature", signature);
        Self::finish(req, Some(&payload), "application/json").await
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&str>, content_type: &str) -> Resp {
        self.call_as(&self.sid, &self.token, method, path, body, content_type).await
    }

    pub async fn call_as(
        &self,
        sid: &str,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&str>,
        content_type: &str,
    ) -> Resp {
        let req = self.http.request(method, format!("{}{}", self.base, path)).basic_auth(sid, Some(token));
        Self::finish(req, body, content_type).await
    }

    pub async fn finish(mut req: reqwest::RequestBuilder, body: Option<&str>, content_type: &str) -> Resp {
        if let Some(b) = body {
            req = req.header("Content-Type", content_type).body(b.to_owned());
        }
        let r = req.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        Resp { status, text, headers }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.call(Method::POST, path, Some(&body.to_string()), "application/json").await
    }

    pub async fn post_as(&self, sid: &str, token: &str, path: &str, body: &Value) -> Resp {
        self.call_as(sid, token, Method::POST, path, Some(&body.to_string()), "application/json").await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None, "application/json").await
    }

    /// Send an SMS OTP to `to` with the seed's body; returns the response.
    pub async fn send_to(&self, to: &str, extra: Value) -> Resp {
        let mut body =
            json!({ "service": "2FA", "from": "Twofa", "to": to, "body": "Your verification code is: {code}" });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        self.post("/2fa/send", &body).await
    }

    /// `send_to` as account (sid, token), with an `Idempotency-Key` header.
    pub async fn send_keyed_as(&self, sid: &str, token: &str, key: &str, to: &str, extra: Value) -> Resp {
        let mut body =
            json!({ "service": "2FA", "from": "Twofa", "to": to, "body": "Your verification code is: {code}" });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let req = self
            .http
            .post(format!("{}/2fa/send", self.base))
            .basic_auth(sid, Some(token))
            .header("Idempotency-Key", key);
        Self::finish(req, Some(&body.to_string()), "application/json").await
    }

    /// `send_to` with an `Idempotency-Key` header.
    pub async fn send_keyed(&self, key: &str, to: &str, extra: Value) -> Resp {
        self.send_keyed_as(&self.sid, &self.token, key, to, extra).await
    }

    /// Send and expect 200; returns the requestID.
    pub async fn sent(&self, to: &str) -> String {
        let r = self.send_to(to, json!({})).await;
        assert_eq!(r.status, 200, "send failed: {}", r.text);
        r.request_id()
    }

    /// The code of OTP `sid`, read from the dev outbox over HTTP (as a developer would).
    pub async fn code_of(&self, sid: &str) -> String {
        let r = self.http.get(format!("{}/dev/outbox", self.base)).send().await.expect("outbox");
        let v: Value = r.json().await.expect("outbox json");
        let msg = v["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .find(|m| m["requestID"] == sid)
            .unwrap_or_else(|| panic!("no message for {sid}"));
        let body = msg["body"].as_str().expect("body");
        body.chars().filter(char::is_ascii_digit).collect()
    }

    pub async fn advance(&self, secs: i64) {
        let r = self
            .http
            .post(format!("{}/dev/clock", self.base))
            .json(&json!({ "advanceSeconds": secs }))
            .send()
            .await
            .expect("clock");
        assert_eq!(r.status(), 200);
    }

    pub async fn verify(&self, sid: &str, code: &str) -> Resp {
        self.post("/2fa/verify", &json!({ "service": "2FA", "requestId": sid, "code": code })).await
    }
}

/// A code guaranteed different from `code` (same length).
pub fn wrong(code: &str) -> String {
    code.chars().map(|c| if c == '9' { '0' } else { char::from(c as u8 + 1) }).collect()
}

/// RFC 4648 base32 decoded, as an authenticator app reads a typed-in secret (written apart
/// from the server's encoder, so a wrong encoding fails).
pub fn base32_decode(s: &str) -> Vec<u8> {
    let (mut out, mut buffer, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {s}"),
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

/// An API error answer: its HTTP status and the envelope's code.
pub fn assert_api_error(r: &Resp, status: u16, code: i64) {
    assert_eq!((r.status.as_u16(), r.code()), (status, code), "{}", r.text);
}

/// A 400 whose message names `param` as the one that is wrong.
pub fn assert_400_naming(r: &Resp, param: &str) {
    assert_eq!(r.status, 400, "{}", r.text);
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with(&format!("Invalid parameter: {param} (")), "expected {param} named: {message}");
}
