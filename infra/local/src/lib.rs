//! The embedded dev server: every endpoint group's router (the very ones the Lambdas serve),
//! an in-process store, an outbox instead of delivery, an adjustable clock, and dev-only
//! `/health`, `/dev/outbox`, `/dev/clock`, `/dev/accounts`, `/dev/callbacks`; the passkeys demo
//! page (`demo`, `/demo/passkeys`); callbacks made by a background task (`callbacks`). No AWS;
//! no network but the callback URLs you give.

pub mod callbacks;
pub mod demo;
pub mod scheduler;

use std::{
    net::SocketAddr,
    sync::{Arc, Once},
};

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};
use twofa::{
    adapters::{
        clock::AdjustableClock,
        memory::{MemoryStore, DEFAULT_MAX_OTPS},
        outbox::{Outbox, OutboxMode, BACKUP_ROUTE, DEFAULT_OUTBOX_MAX},
        provider::HttpProvider,
        router::{self, Route, OUTBOX},
        webhook::HttpWebhooks,
    },
    domain::otp::Channel,
    domain::{
        account::Account,
        callbacks as cb,
        crypto::Keys,
        ids,
        policy::{self, PolicyUpdate, SealedSecret},
        providers::ProviderSecret,
        time,
    },
    http,
    ports::{AccountStore, Clock, Deps, Dispatcher},
};

use crate::{callbacks::DevCallbacks, scheduler::DevScheduler};

/// The dev server's routes: every channel into the outbox (`outbox`), SMS also through a
/// second outbox route (`outbox-backup`) for routing tables and failover to be tried, and
/// through `provider` first when there is one.
fn outbox_routes(outbox: &Arc<Outbox>, provider: Option<HttpProvider>) -> Vec<Route> {
    let mut routes = Vec::new();
    if let Some(p) = provider {
        routes.push(Route::new(p.name().to_owned(), Channel::Sms, Arc::new(p)));
    }
    for channel in [Channel::Sms, Channel::Call, Channel::Email, Channel::Whatsapp] {
        routes.push(Route::new(OUTBOX, channel, Arc::new(outbox.route(OUTBOX))));
    }
    routes.push(Route::new(BACKUP_ROUTE, Channel::Sms, Arc::new(outbox.route(BACKUP_ROUTE))));
    routes
}

/// Handles on the embedded adapters, for the dev routes and for tests.
#[derive(Clone)]
pub struct Dev {
    pub deps: Deps,
    pub store: Arc<MemoryStore>,
    pub outbox: Arc<Outbox>,
    pub clock: Arc<AdjustableClock>,
    pub callbacks: Arc<DevCallbacks>,
    pub scheduler: Arc<DevScheduler>,
    started: Arc<Once>,
}

impl Dev {
    pub fn new(keys: Keys) -> Self {
        Self::bounded(keys, DEFAULT_MAX_OTPS, DEFAULT_OUTBOX_MAX)
    }

    /// Keeping at most `max_otps` OTPs and `outbox_max` messages, the newest.
    pub fn bounded(keys: Keys, max_otps: usize, outbox_max: usize) -> Self {
        let clock = Arc::new(AdjustableClock::default());
        let store = Arc::new(MemoryStore::new().with_max_otps(max_otps));
        let outbox = Arc::new(Outbox::new(clock.clone()).with_max(outbox_max));
        let scheduler = Arc::new(DevScheduler::new(clock.clone()));
        let deps = Deps {
            store: store.clone(),
            dispatcher: Arc::new(
                router::Router::new(outbox_routes(&outbox, None)).with_url_rules(outbox.callback_url_rules()),
            ),
            clock: clock.clone(),
            keys: Arc::new(keys),
            scheduler: scheduler.clone(),
        };
        let webhooks = Arc::new(HttpWebhooks::new(outbox.callback_url_rules()));
        let callbacks = Arc::new(DevCallbacks::new(deps.clone(), store.clone(), clock.clone(), webhooks));
        Dev { deps, store, outbox, clock, callbacks, scheduler, started: Arc::new(Once::new()) }
    }

    /// The same server sending SMS through `provider` (its delivery reports to `POST
    /// /2fa/receipts/{name}`) instead of the outbox; other channels still go to the outbox,
    /// and routing tables can still name the outbox's routes. Before `app`.
    pub fn with_sms_provider(mut self, provider: HttpProvider) -> Self {
        let routes = outbox_routes(&self.outbox, Some(provider));
        self.deps.dispatcher = Arc::new(router::Router::new(routes).with_url_rules(self.outbox.callback_url_rules()));
        self
    }

    /// Create an account (a sub-account of `parent` if given) with this token (and a webhook
    /// secret of its own: `POST /dev/accounts` with `rotateWebhookSecret` shows a new one).
    pub async fn create_account(
        &self,
        sid: Option<String>,
        token: &str,
        parent: Option<&str>,
    ) -> twofa::Result<Account> {
        Ok(self.create_account_with(sid, token, parent, PolicyUpdate::default(), None).await?.0)
    }

    /// `create_account` with a policy and webhook secret (a new one when None); answers the
    /// account, its webhook secret and its providers' secrets. Nothing is created when the
    /// policy is invalid.
    pub async fn create_account_with(
        &self,
        sid: Option<String>,
        token: &str,
        parent: Option<&str>,
        policy: PolicyUpdate,
        webhook_secret: Option<String>,
    ) -> twofa::Result<(Account, String, Vec<ProviderSecret>)> {
        if let Some(s) = &webhook_secret {
            cb::secret_key(s)?;
        }
        let parent = match parent {
            Some(p) => Some(self.store.get_account(p).await?.ok_or(twofa::Error::NotFound)?),
            None => None,
        };
        let sid = sid.unwrap_or_else(|| ids::new_sid(ids::ACCOUNT));
        let mut account = Account::new(sid, token, &self.deps.keys, parent.as_ref(), self.clock.now_ms());
        let change =
            policy.apply_with(&self.deps.keys, &account.sid, account.policy, self.outbox.callback_url_rules())?;
        account.policy = change.policy;
        let secret = match (webhook_secret, change.webhook_secret) {
            (Some(given), _) => given,
            (None, Some(made)) => made.0,
            (None, None) => cb::new_secret(),
        };
        account.policy.webhook_secret = Some(SealedSecret(cb::seal_secret(&self.deps.keys, &account.sid, &secret)));
        self.store.put_account(&account).await?;
        Ok((account, secret, change.provider_secrets))
    }

    /// Every router, merged, plus the dev routes.
    pub fn app(&self) -> Router {
        // The callbacks task runs on the runtime that serves the app, once.
        self.started.call_once(|| {
            self.callbacks.start();
            self.scheduler.start_ticking(self.deps.clone());
        });
        // One router finished once: the same routes, fallbacks and negotiation as each Lambda's.
        let api = http::otp::routes()
            .merge(http::limits::routes())
            .merge(http::workflows::routes())
            .merge(http::records::routes())
            .merge(http::factors::routes())
            .finish(self.deps.clone());
        let dev = Router::new()
            .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
            .route("/dev/outbox", get(outbox))
            .route("/dev/outbox/mode", post(outbox_mode))
            .route("/dev/clock", get(clock_now).post(advance_clock))
            .route("/dev/accounts", post(create_account))
            .route("/dev/callbacks", get(callbacks_view))
            .route("/dev/workflows", get(workflows_view))
            .route_layer(axum::middleware::from_fn(loopback_host_only))
            .with_state(self.clone());
        // The console's pages, the very router its Lambda serves (without its own fallback: the
        // API's answers anything else).
        let console = http::console::routes().with_state(self.deps.clone());
        // The client IP is the socket's peer (`auth::Caller` reads the connection's address).
        // The passkeys demo page is the dev server's alone (static: no loopback-only guard).
        dev.merge(demo::routes()).merge(console).merge(api)
    }
}

/// The dev routes answer only a request whose `Host` is a loopback name or address: a page in
/// a browser that resolves its own name to 127.0.0.1 (DNS rebinding) sends its own `Host`, and
/// gets 403 instead of the outbox's codes.
async fn loopback_host_only(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = req.headers().get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if is_loopback_host(host) {
        next.run(req).await
    } else {
        (StatusCode::FORBIDDEN, Json(json!({ "error": "the dev routes answer only to a loopback Host" })))
            .into_response()
    }
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host
            .rsplit_once(':')
            .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Dev only: workflow steps waiting for the clock (OTP, step from 0, when).
async fn workflows_view(State(dev): State<Dev>) -> Json<Value> {
    let waiting: Vec<Value> = dev
        .scheduler
        .waiting()
        .into_iter()
        .map(|(otp, step, at)| json!({ "requestID": otp, "step": step, "due": time::iso(at) }))
        .collect();
    Json(json!({ "waiting": waiting }))
}

#[derive(Deserialize)]
struct OutboxQuery {
    to: Option<String>,
}

async fn outbox(State(dev): State<Dev>, Query(q): Query<OutboxQuery>) -> impl IntoResponse {
    Json(json!({ "messages": dev.outbox.messages(q.to.as_deref()) }))
}

#[derive(Deserialize)]
struct ModeBody {
    mode: String,
    /// One route's mode (`outbox`, `outbox-backup`); absent: every route's.
    #[serde(default)]
    route: Option<String>,
}

async fn outbox_mode(State(dev): State<Dev>, Json(b): Json<ModeBody>) -> Response {
    let mode = match b.mode.as_str() {
        "deliver" => OutboxMode::Deliver,
        "reject" => OutboxMode::Reject,
        "down" => OutboxMode::Down,
        _ => {
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": "mode must be deliver, reject or down" })))
                .into_response()
        }
    };
    match &b.route {
        Some(route) if route == OUTBOX || route == BACKUP_ROUTE => dev.outbox.set_route_mode(route, mode),
        Some(_) => {
            let error = format!("route must be {OUTBOX} or {BACKUP_ROUTE}");
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
        }
        None => dev.outbox.set_mode(mode),
    }
    Json(json!({ "mode": b.mode, "route": b.route })).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdvanceBody {
    advance_seconds: i64,
}

async fn clock_now(State(dev): State<Dev>) -> impl IntoResponse {
    Json(json!({ "now": time::iso(dev.clock.now_ms()) }))
}

async fn callbacks_view(State(dev): State<Dev>) -> impl IntoResponse {
    Json(dev.callbacks.view())
}

async fn advance_clock(State(dev): State<Dev>, Json(b): Json<AdvanceBody>) -> impl IntoResponse {
    dev.clock.advance_secs(b.advance_seconds);
    // What fell due (workflow steps, expiries, retries) happens now, not at the next tick.
    dev.scheduler.run_due(&dev.deps).await;
    dev.callbacks.wake();
    Json(json!({ "now": time::iso(dev.clock.now_ms()) }))
}

/// Dev only: make an account (or a sub-account, `parentSid`) to try tenant isolation and
/// `accountSid`, with a policy (`allowedCountries`, `pumpingGuard`, `testNumbers`,
/// `callbackUrl`, `callbackMethod`: see `domain::policy::PolicyUpdate`); or, given
/// `accountSid`, change that account's policy (`rotateWebhookSecret: true` for a new secret).
/// A new account's webhook secret, or a new one, is answered as `webhookSecret`, this once;
/// the secrets of providers added or rotated as `providerSecrets` (`[{name, secret}]`).
async fn create_account(State(dev): State<Dev>, body: Option<Json<Value>>) -> Response {
    let fail = |status: StatusCode, msg: String| (status, Json(json!({ "error": msg }))).into_response();
    let mut body = match body.map(|Json(b)| b).unwrap_or_else(|| json!({})) {
        Value::Object(map) => map,
        _ => return fail(StatusCode::BAD_REQUEST, "the body must be a JSON object".into()),
    };
    let mut take = |name: &str| body.remove(name).and_then(|v| v.as_str().map(str::to_owned));
    let (parent, existing) = (take("parentSid"), take("accountSid"));
    let update: PolicyUpdate = match serde_json::from_value(Value::Object(body)) {
        Ok(u) => u,
        Err(e) => return fail(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let rules = dev.outbox.callback_url_rules();
    let (account, token, secret, provider_secrets) = match existing {
        Some(sid) => match policy::update_policy_with(dev.store.as_ref(), &dev.deps.keys, &sid, update, rules).await {
            Ok(change) => match dev.store.get_account(&sid).await {
                Ok(Some(a)) => (a, None, change.webhook_secret.map(|s| s.0), change.provider_secrets),
                _ => return fail(StatusCode::NOT_FOUND, "unknown accountSid".into()),
            },
            Err(twofa::Error::NotFound) => return fail(StatusCode::NOT_FOUND, "unknown accountSid".into()),
            // Other changes kept winning: try again, nothing wrong with the input.
            Err(e @ twofa::Error::Contended) => return fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            Err(e) => return fail(StatusCode::BAD_REQUEST, e.to_string()),
        },
        None => {
            let token = hex_token();
            match dev.create_account_with(None, &token, parent.as_deref(), update, None).await {
                Ok((a, secret, made)) => (a, Some(token), Some(secret), made),
                Err(twofa::Error::NotFound) => return fail(StatusCode::NOT_FOUND, "unknown parentSid".into()),
                Err(e) => return fail(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
    };
    let policy = account.policy.clone();
    let mut out = json!({ "accountSid": account.sid, "parentSid": account.parent(), "policy": policy.view() });
    if let Some(token) = token {
        out["authToken"] = json!(token);
    }
    // Shown this once; stored only sealed.
    if let Some(secret) = secret {
        out["webhookSecret"] = json!(secret);
    }
    if !provider_secrets.is_empty() {
        out["providerSecrets"] = json!(provider_secrets);
    }
    Json(out).into_response()
}

pub fn hex_token() -> String {
    ids::new_sid("")
}

/// What the dev server sets in `GLIBC_TUNABLES` for itself (`tune_allocator`), and `make bench`
/// for its baseline, so both run on the same allocator settings.
pub const ALLOCATOR_TUNING: &str = "glibc.malloc.tcache_count=100";

/// Start this process again, once, with glibc's per-thread cache of freed blocks raised from 7
/// to 100 per size (`ALLOCATOR_TUNING`), unless `GLIBC_TUNABLES` already sets it. A send frees
/// ~140 small blocks, more than 7 of a size: the rest went to glibc's shared bins and were
/// consolidated again (`_int_free` and `malloc_consolidate` were ~7 % of a send); with the
/// bigger cache a send took ~10 % less CPU (`make bench`, README "Performance"). glibc reads
/// its tunables only at start, hence the `exec` (same pid, same arguments). Elsewhere, or if
/// the `exec` fails, the server runs untuned.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        let (Some(tunables), Ok(exe)) = (tunables_with_tuning(&current), std::env::current_exe()) else { return };
        let err =
            std::process::Command::new(exe).args(std::env::args_os().skip(1)).env("GLIBC_TUNABLES", tunables).exec();
        eprintln!("twofa dev server: running without the allocator tuning ({err})");
    }
}

/// `GLIBC_TUNABLES` with `ALLOCATOR_TUNING` added to the caller's `current` ones; None when
/// `current` already sets that tunable (the caller's value stands).
pub fn tunables_with_tuning(current: &str) -> Option<String> {
    let name = ALLOCATOR_TUNING.split('=').next().unwrap_or(ALLOCATOR_TUNING);
    if current.split(':').any(|t| t.split('=').next() == Some(name)) {
        return None;
    }
    Some(if current.is_empty() { ALLOCATOR_TUNING.to_owned() } else { format!("{current}:{ALLOCATOR_TUNING}") })
}

/// Serve `app` until the future completes (tests) or forever.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
}
