//! The Lambda path: an API Gateway HTTP API (v2) event, as Lambda hands it to the binary,
//! driven through the same router and the same request mapping as `functions/otp`.

use std::sync::Arc;

use tower::ServiceExt;
use twofa::{
    adapters::{clock::AdjustableClock, memory::MemoryStore, outbox::Outbox},
    domain::{account::Account, crypto::Keys},
    ports::{AccountStore, Deps, NoScheduler},
};

#[tokio::test]
async fn otp_router_answers_an_api_gateway_v2_send_event() {
    // Given the OTP router, an account, and an account IP allow-list the event's source IP meets
    let keys = Keys::random();
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(AdjustableClock::default());
    let mut account = Account::new("AC0123456789abcdef0123456789abcdef".into(), "secret-token", &keys, None, 0);
    account.allowed_ips = vec!["203.0.113.9".parse().unwrap()];
    store.put_account(&account).await.unwrap();
    let outbox = Arc::new(Outbox::new(clock.clone()));
    let deps =
        Deps { store, dispatcher: outbox.clone(), clock, keys: Arc::new(keys), scheduler: Arc::new(NoScheduler) };
    let router = twofa::http::otp::router(deps);

    let event = |ip: &str| {
        serde_json::json!({
            "version": "2.0",
            "routeKey": "POST /2fa/send",
            "rawPath": "/2fa/send",
            "rawQueryString": "",
            "headers": {
                "authorization": "Basic QUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjpzZWNyZXQtdG9rZW4=",
                "content-type": "application/json"
            },
            "requestContext": {
                "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com", "domainPrefix": "api",
                "http": { "method": "POST", "path": "/2fa/send", "protocol": "HTTP/1.1", "sourceIp": ip, "userAgent": "curl" },
                "requestId": "id", "routeKey": "POST /2fa/send", "stage": "$default",
                "time": "23/Nov/2026:14:00:00 +0000", "timeEpoch": 1795442400000u64
            },
            "body": "{\"service\":\"2FA\",\"from\":\"Twofa\",\"to\":\"+14155550100\",\"body\":\"Code {code}\"}",
            "isBase64Encoded": false
        })
        .to_string()
    };

    // When the event comes from the allowed IP
    let req = lambda_http::request::from_str(&event("203.0.113.9")).expect("a v2 event");
    let resp = router.clone().oneshot(twofa::http::lambda::with_client_ip(req)).await.unwrap();
    // Then the OTP is sent and the envelope is the seed's
    assert_eq!(resp.status(), 200);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["message"], "OK");
    assert_eq!(outbox.messages(Some("+14155550100")).len(), 1);

    // And from another IP the account answers 403
    let req = lambda_http::request::from_str(&event("198.51.100.1")).expect("a v2 event");
    let resp = router.oneshot(twofa::http::lambda::with_client_ip(req)).await.unwrap();
    assert_eq!(resp.status(), 403);
}

/// A v2 event of `method path?query` with the dev account's credentials and no body.
fn raw_event(method: &str, raw_path: &str, raw_query: &str) -> String {
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": { "authorization": "Basic QUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjpzZWNyZXQtdG9rZW4=" },
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com", "domainPrefix": "api",
            "http": { "method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "curl" },
            "requestId": "id", "routeKey": "$default", "stage": "$default",
            "time": "23/Nov/2026:14:00:00 +0000", "timeEpoch": 1795442400000u64
        },
        "isBase64Encoded": false
    })
    .to_string()
}

#[tokio::test]
async fn events_whose_raw_query_or_path_is_no_uri_get_their_answer_and_the_process_lives() {
    use lambda_http::{request::LambdaRequest, Context, LambdaEvent, Service};
    // Given the OTP router behind the Lambda adapter, as functions/otp runs it
    let keys = Keys::random();
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(AdjustableClock::default());
    let account = Account::new("AC0123456789abcdef0123456789abcdef".into(), "secret-token", &keys, None, 0);
    store.put_account(&account).await.unwrap();
    let outbox = Arc::new(Outbox::new(clock.clone()));
    let deps =
        Deps { store, dispatcher: outbox.clone(), clock, keys: Arc::new(keys), scheduler: Arc::new(NoScheduler) };
    let mut adapter = lambda_http::Adapter::from(twofa::http::otp::router(deps));
    let call = |json: String| {
        let payload: LambdaRequest = serde_json::from_str(&json).expect("a v2 event");
        twofa::http::lambda::uri_safe(LambdaEvent::new(payload, Context::default()))
    };
    // (as lambda_http takes it, such an event is a panic: with panic = "abort", the process)
    let raw = raw_event("POST", "/2fa/send", "service=2FA&from=Twofa&to=%2B14155550100&body=Code {code} ✓ \"q\"");
    assert!(std::panic::catch_unwind(|| lambda_http::request::from_str(&raw)).is_err());
    // When a send comes with a raw space, quotes, braces and a non-ASCII character in its query
    let resp = adapter.call(call(raw)).await.unwrap();
    // Then it is sent, the body read as the client wrote it
    let body = serde_json::to_value(&resp).unwrap();
    assert_eq!(body["statusCode"], 200, "{body}");
    assert_eq!(outbox.messages(Some("+14155550100"))[0].body.split(' ').collect::<Vec<_>>()[0], "Code");
    assert!(outbox.messages(Some("+14155550100"))[0].body.ends_with(" ✓ \"q\""));
    // And a malformed escape, and a path with a space, get a 4xx
    let bad = adapter.call(call(raw_event("POST", "/2fa/send", "service=%zz"))).await.unwrap();
    let unknown = adapter.call(call(raw_event("GET", "/2fa/se nd", ""))).await.unwrap();
    for resp in [bad, unknown] {
        let status = serde_json::to_value(&resp).unwrap()["statusCode"].as_u64().unwrap();
        assert!((400..500).contains(&status), "{status}");
    }
}
