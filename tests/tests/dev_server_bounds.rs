//! The dev server's memory is bounded: it keeps the newest OTPs and outbox messages only.

use axum::{body::Body, http::Request};
use serde_json::{json, Value};
use tower::ServiceExt;
use twofa::{domain::crypto::Keys, ports::OtpStore};
use twofa_local::{hex_token, Dev};

async fn send(dev: &Dev, sid: &str, token: &str, to: &str) -> (u16, Value) {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"));
    let req = Request::post("/2fa/send")
        .header("Authorization", format!("Basic {auth}"))
        .header("Content-Type", "application/json")
        .body(Body::from(json!({ "service": "2FA", "from": "Twofa", "to": to, "body": "{code}" }).to_string()))
        .unwrap();
    let resp = dev.app().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap()).unwrap())
}

#[tokio::test]
async fn the_dev_server_keeps_only_the_newest_otps_and_outbox_messages() {
    // Given a dev server that keeps 5 OTPs and 3 outbox messages
    let dev = Dev::bounded(Keys::random(), 5, 3);
    let token = hex_token();
    let account = dev.create_account(None, &token, None).await.unwrap();
    // When 8 OTPs are sent to 8 numbers
    let mut sids = vec![];
    for i in 0..8 {
        let (status, body) = send(&dev, &account.sid, &token, &format!("+1415555{:04}", 2000 + i)).await;
        assert_eq!(status, 200, "{body}");
        sids.push(body["requestID"].as_str().unwrap().to_owned());
    }
    // Then the outbox holds the last 3 messages, newest first
    let messages = dev.outbox.messages(None);
    let ids: Vec<_> = messages.iter().map(|m| m.request_id.clone()).collect();
    assert_eq!(ids, vec![sids[7].clone(), sids[6].clone(), sids[5].clone()]);
    // And the store the last 5 OTPs, the older ones and their destinations forgotten
    for (i, sid) in sids.iter().enumerate() {
        let kept = dev.store.get_otp(&account.sid, sid).await.unwrap().is_some();
        assert_eq!(kept, i >= 3, "OTP {i}");
    }
    let first_to = format!("+1415555{:04}", 2000);
    assert_eq!(dev.store.get_destination(&account.sid, "2FA", &first_to).await.unwrap(), None);
    // And forgetting an OTP forgets no limit: the first number is still within its minute
    let (status, body) = send(&dev, &account.sid, &token, &first_to).await;
    assert_eq!((status, body["code"].clone()), (404, json!(453)));
}
