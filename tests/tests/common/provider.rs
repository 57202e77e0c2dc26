//! The customer's own SMS provider, on loopback: records each request and answers what it was
//! given, in turn (then 200 with a fresh `messageId`).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};
use serde_json::{json, Value};

/// One request the stand-in received.
#[derive(Clone)]
pub struct Got {
    pub headers: HeaderMap,
    pub body: String,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct Inner {
    got: Vec<Got>,
    /// What to answer, in turn (then 200 with a fresh message id): status, body.
    answers: Vec<(u16, String)>,
    /// How long to wait before answering.
    delay: Duration,
}

/// The customer's provider, on loopback.
#[derive(Clone)]
pub struct Provider {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

async fn take(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let (delay, (status, answer)) = {
        let mut i = inner.lock().unwrap();
        i.got.push(Got { headers, body: String::from_utf8_lossy(&body).into_owned() });
        let n = i.got.len();
        let answer = if i.answers.is_empty() {
            (200, json!({ "messageId": format!("prov-{n}") }).to_string())
        } else {
            i.answers.remove(0)
        };
        (i.delay, answer)
    };
    tokio::time::sleep(delay).await;
    (StatusCode::from_u16(status).unwrap(), answer)
}

impl Provider {
    pub async fn start(answers: &[(u16, &str)], delay: Duration) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            got: vec![],
            answers: answers.iter().map(|(s, b)| (*s, b.to_string())).collect(),
            delay,
        }));
        let app = Router::new().route("/sms", post(take)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sms", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Provider { url, inner }
    }

    pub fn got(&self) -> Vec<Got> {
        self.inner.lock().unwrap().got.clone()
    }
}
