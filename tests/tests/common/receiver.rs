//! A callback receiver on loopback: records every call and answers with the statuses it was
//! given, in turn (200 once they run out). Checks signatures as a user would.

use std::sync::{Arc, Mutex};

use axum::{
    body::Bytes,
    extract::{OriginalUri, State},
    http::{HeaderMap, Method, StatusCode},
    routing::any,
    Router,
};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    /// The raw query string (empty for none).
    pub query: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Call {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// The fields, from the JSON body (POST) or the query string (GET).
    pub fn fields(&self) -> Value {
        if self.method == Method::POST {
            serde_json::from_str(&self.body).expect("a JSON body")
        } else {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&self.query).expect("a query string");
            Value::Object(pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
        }
    }

    pub fn status(&self) -> String {
        self.fields()["status"].as_str().unwrap_or_default().to_owned()
    }

    /// Standard Webhooks verification, written from the specification: the key is the base64
    /// after `whsec_`; the signed content `id.timestamp.payload`; any `v1,` signature matching.
    pub fn signed_by(&self, secret: &str) -> bool {
        let key = B64.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).expect("base64 secret");
        let payload = if self.method == Method::POST { &self.body } else { &self.query };
        let content = format!("{}.{}.{}", self.header("webhook-id"), self.header("webhook-timestamp"), payload);
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(content.as_bytes());
        let expected = B64.encode(mac.finalize().into_bytes());
        let fresh = self.header("webhook-timestamp").parse::<i64>().is_ok_and(|t| (t - chrono_now()).abs() <= 300);
        fresh && self.header("webhook-signature").split(' ').any(|s| s == format!("v1,{expected}"))
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    answers: Vec<u16>,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

async fn record(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut i = inner.lock().unwrap();
    i.calls.push(Call {
        method,
        query: uri.query().unwrap_or_default().to_owned(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let status = if i.answers.is_empty() { 200 } else { i.answers.remove(0) };
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    /// Listening on 127.0.0.1, answering `answers` in turn, then 200.
    pub async fn start(answers: &[u16]) -> Self {
        let inner = Arc::new(Mutex::new(Inner { calls: vec![], answers: answers.to_vec() }));
        let app = Router::new().route("/{*path}", any(record)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/otp", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, inner }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// Wait (up to 10 s) until a call satisfies `pred`; all calls so far.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        for _ in 0..200 {
            let calls = self.calls();
            if pred(&calls) {
                return calls;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}; calls: {:?}", self.calls().iter().map(Call::status).collect::<Vec<_>>());
    }

    /// Wait for a call whose status is `status`.
    pub async fn wait_status(&self, status: &str) -> Call {
        let calls = self.wait_for(status, |c| c.iter().any(|c| c.status() == status)).await;
        calls.into_iter().find(|c| c.status() == status).unwrap()
    }
}
