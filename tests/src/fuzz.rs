//! Fuzz target bodies: each takes arbitrary bytes and must never panic. Run coverage-guided by
//! cargo-fuzz (`fuzz/fuzz_targets/*.rs`, `make fuzz`), and replayed over the corpora in
//! `fuzz/corpus/` plus deterministic mutations of them by `tests/tests/fuzz_short.rs`.

use std::sync::{Arc, OnceLock};

use base64::Engine;
use serde_json::{json, Value};
use tower::ServiceExt;
use twofa::{
    adapters::{clock::AdjustableClock, memory::MemoryStore, outbox::Outbox},
    domain::{
        account::Account,
        crypto::Keys,
        limits::parse_buckets,
        records::{Mark, PageToken, Start},
        templates,
        workflows::parse_channels,
    },
    http::params::Params,
    ports::{AccountStore, Deps, NoScheduler},
};

/// A target: arbitrary bytes in, a panic on a bug.
pub type Target = fn(&[u8]);

/// The targets, by the name of their corpus directory.
pub const TARGETS: [(&str, Target); 5] = [
    ("params", params),
    ("limit_buckets", limit_buckets),
    ("workflow_channels", workflow_channels),
    ("page_token", page_token),
    ("lambda_event", lambda_event),
];

/// Request parameters: query string and body (JSON, form, the seeds' `\{code}` escapes),
/// split at the first 0xFF byte, and every accessor on what they parse to.
pub fn params(data: &[u8]) {
    let (query, body) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (String::from_utf8_lossy(&data[..i]).into_owned(), &data[i + 1..]),
        None => (String::new(), data),
    };
    if let Ok(p) = Params::parse(&query, body) {
        for name in ["service", "to", "from", "body", "code", "requestId", "length", "timeout", "limits", "lang"] {
            let _ = p.text(name);
            let _ = p.int("length", 4, 10);
            let _ = p.boolean("asynchronous");
            let _ = p.json("limits");
            let _ = p.bounded("body", 1600, false);
        }
        if let Some(locale) = p.text("locale") {
            let _ = templates::lookup(&locale);
        }
    }
}

/// Limit bucket definitions as a client sends them (JSON).
pub fn limit_buckets(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        let _ = parse_buckets(&v);
        let _ = parse_buckets(&json!({ "buckets": v }));
    }
}

/// Workflow steps as a client sends them (JSON, or a string holding it): what parses has 1 to
/// 10 steps whose waits fit an OTP's life, and echoes back as JSON that parses the same.
pub fn workflow_channels(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    for given in [v.clone(), Value::String(v.to_string())] {
        if let Ok((steps, echo)) = parse_channels(&given) {
            assert!((1..=10).contains(&steps.len()));
            assert!(steps.iter().map(|s| u64::from(s.interval_secs)).sum::<u64>() <= 86_400);
            let again = parse_channels(&serde_json::from_str::<Value>(&echo).expect("the echo is JSON"))
                .expect("the echo parses");
            assert_eq!(again.0, steps);
        }
    }
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys::from_master(&[7u8; 32]).expect("a key"))
}

/// Page tokens: anything a client may put in `pageToken` opens only if this search sealed it,
/// and what opens seals back to a token that opens the same.
pub fn page_token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(t) = PageToken::open(&text, keys(), "AC1|search") {
        let again = PageToken::open(&t.seal(keys(), "AC1|search"), keys(), "AC1|search").expect("own token opens");
        assert_eq!(again, t);
    }
    // A token built from the input as a position round-trips.
    let mark = Mark { created_ms: data.len() as i64, sid: text.replace('|', "") };
    let t = PageToken { page: data.first().copied().unwrap_or(0).into(), start: Start::OlderThan(mark), total: 9 };
    assert_eq!(PageToken::open(&t.seal(keys(), "ctx"), keys(), "ctx").expect("opens"), t);
    assert!(PageToken::open(&t.seal(keys(), "ctx"), keys(), "other").is_err());
}

/// Query bytes as API Gateway hands them on (any text, raw spaces and non-ASCII included),
/// made a URI's as the Lambdas' event adapter does (`http::lambda::uri_safe`).
fn uri_query(raw: &[u8]) -> String {
    let raw = String::from_utf8_lossy(raw);
    twofa::http::params::uri_escaped(&raw).unwrap_or_else(|| raw.into_owned())
}

struct Lambda {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
}

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "secret-token";

fn lambda() -> &'static Lambda {
    static L: OnceLock<Lambda> = OnceLock::new();
    L.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(AdjustableClock::default());
        let account = Account::new(SID.into(), TOKEN, keys(), None, 0);
        rt.block_on(store.put_account(&account)).expect("account");
        let outbox = Arc::new(Outbox::new(clock.clone()));
        let deps =
            Deps { store, dispatcher: outbox, clock, keys: Arc::new(keys().clone()), scheduler: Arc::new(NoScheduler) };
        let router = axum::Router::new()
            .merge(twofa::http::otp::router(deps.clone()))
            .merge(twofa::http::limits::router(deps.clone()).reset_fallback())
            .merge(twofa::http::records::router(deps).reset_fallback());
        Lambda { rt, router }
    })
}

/// The Lambda event path: an API Gateway v2 event with the input as its body (base64 when the
/// first byte says so: any bytes, not UTF-8 included), one of the routes, a content type, and
/// the rest of the first bytes as the query string, through the routers as a Lambda serves them.
pub fn lambda_event(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let (query, body) = match rest.iter().position(|&b| b == 0xFF) {
        Some(i) => (uri_query(&rest[..i]), &rest[i + 1..]),
        None => (String::new(), rest),
    };
    let paths =
        ["/2fa/send", "/2fa/verify.json", "/2fa/cancel.xml", "/2fa/limits", "/2fa/search", "/2fa/usage/records"];
    let path = paths[usize::from(flags >> 3) % paths.len()];
    let method = if path.starts_with("/2fa/search") || path.starts_with("/2fa/usage") { "GET" } else { "POST" };
    let content_type =
        ["application/json", "application/x-www-form-urlencoded", "text/plain", ""][usize::from(flags >> 1) & 3];
    let base64 = flags & 1 == 1;
    let body = if base64 {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    let mut headers = json!({ "authorization": format!("Basic {auth}") });
    if !content_type.is_empty() {
        headers["content-type"] = json!(content_type);
    }
    let event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com", "domainPrefix": "api",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "fuzz" },
            "requestId": "id", "routeKey": format!("{method} {path}"), "stage": "$default",
            "time": "23/Nov/2026:14:00:00 +0000", "timeEpoch": 1795442400000u64
        },
        "body": body,
        "isBase64Encoded": base64
    });
    let Ok(req) = lambda_http::request::from_str(&event.to_string()) else { return };
    let l = lambda();
    let resp = l.rt.block_on(l.router.clone().oneshot(req)).expect("infallible");
    assert_ne!(resp.status().as_u16(), 500, "an input is never an internal error");
}
