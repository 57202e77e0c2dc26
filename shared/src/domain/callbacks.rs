//! Callbacks: every OTP event (a channel status change, verified, canceled, expired, failed)
//! told to the account's callback URL, or the one given with the send, signed the Standard
//! Webhooks way (standardwebhooks.com) with the account's `whsec_` secret.
//!
//! Events are not produced by the request path: they are read off the changes of the stored
//! OTP (`events`: the old and the new version of one OTP), from the DynamoDB Stream on AWS and
//! from the embedded store's change feed in the dev server. So a send or verify pays nothing
//! for them, and an event is told only once its change is stored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use hmac::{Hmac, Mac};
use rand::{rngs::OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    account::Account,
    crypto::{Keys, Purpose},
    error::{Error, Result},
    otp::{ChannelStatus, Otp, OtpStatus},
    time::{self, Millis},
};
use crate::ports::{AccountStore, CallbackQueue, ExpiryStore, Webhooks};

/// A webhook secret is `whsec_` and the base64 of this many random bytes.
pub const SECRET_PREFIX: &str = "whsec_";
const SECRET_BYTES: usize = 32;
/// The longest callback URL taken.
pub const MAX_URL_LEN: usize = 2048;
/// How long a receiver may take to answer one call.
pub const TIMEOUT_SECS: u64 = 5;
/// Seconds to wait before each retry of a call that failed (non-2xx, time-out, unreachable):
/// exponential, 10 retries over 23.7 h; after the last one the event goes to the dead letters.
pub const RETRY_DELAYS_S: [u64; 10] = [5, 30, 120, 600, 1_800, 3_600, 7_200, 14_400, 28_800, 28_800];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallbackMethod {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
}

impl CallbackMethod {
    /// `GET` or `POST`, any case; anything else is a 400 naming `param`.
    pub fn parse(s: &str, param: &'static str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "GET" => Ok(CallbackMethod::Get),
            "POST" => Ok(CallbackMethod::Post),
            _ => Err(Error::invalid(param, "must be GET or POST")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CallbackMethod::Get => "GET",
            CallbackMethod::Post => "POST",
        }
    }
}

/// Where and how the events of an OTP are told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackTarget {
    pub url: String,
    pub method: CallbackMethod,
}

/// Which callback URLs a deployment accepts. The dev server takes any http(s) URL (a local
/// receiver must work); a deployment only https to public addresses, so a caller cannot make
/// the service call into its own network (SSRF) or the cloud's metadata endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlRules {
    Public,
    AnyHost,
}

impl UrlRules {
    /// Whether a call may go to `ip` (what a host name resolved to, or an IP literal).
    pub fn allows_ip(self, ip: IpAddr) -> bool {
        self == UrlRules::AnyHost || is_public(ip)
    }
}

/// The callback target of `url` and `method` (POST when absent), checked against `rules`;
/// a 400 naming `url_param` or `method_param` otherwise. Host names are checked again when
/// called, on the addresses they resolve to (`UrlRules::allows_ip`).
pub fn target(
    url: &str,
    method: Option<&str>,
    rules: UrlRules,
    url_param: &'static str,
    method_param: &'static str,
) -> Result<CallbackTarget> {
    let method = method.map(|m| CallbackMethod::parse(m, method_param)).transpose()?.unwrap_or(CallbackMethod::Post);
    check_url(url, rules, url_param)?;
    Ok(CallbackTarget { url: url.to_owned(), method })
}

fn check_url(url: &str, rules: UrlRules, param: &'static str) -> Result<()> {
    if url.len() > MAX_URL_LEN {
        return Err(Error::invalid(param, format!("at most {MAX_URL_LEN} characters")));
    }
    let parsed = url::Url::parse(url).map_err(|_| Error::invalid(param, "must be an absolute http(s) URL"))?;
    match (parsed.scheme(), rules) {
        ("https", _) | ("http", UrlRules::AnyHost) => {}
        ("http", UrlRules::Public) => return Err(Error::invalid(param, "must be https")),
        _ => return Err(Error::invalid(param, "must be an absolute http(s) URL")),
    }
    if parsed.fragment().is_some() {
        return Err(Error::invalid(param, "must not have a fragment"));
    }
    let ip = match parsed.host() {
        None => return Err(Error::invalid(param, "must name a host")),
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if rules == UrlRules::Public && (name == "localhost" || name.ends_with(".localhost") || !name.contains('.'))
            {
                return Err(Error::invalid(param, "must be a public address"));
            }
            None
        }
    };
    if ip.is_some_and(|ip| !rules.allows_ip(ip)) {
        return Err(Error::invalid(param, "must be a public address"));
    }
    Ok(())
}

/// Not loopback, private, link-local (cloud metadata: 169.254.169.254, fd00:ec2::254),
/// shared (CGNAT), multicast, reserved or unspecified; IPv4 inside IPv6 judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
                return is_public_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local, AWS metadata fd00:ec2::254
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || v6 == Ipv6Addr::from(0u128))
                && (s[0] & 0xe000) == 0x2000 // global unicast 2000::/3 only
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

/// A new webhook secret, `whsec_` + base64 of 32 random bytes. Shown once; stored sealed.
pub fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    OsRng.fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", B64.encode(bytes))
}

/// The HMAC key of a `whsec_` secret (the base64-decoded rest), as Standard Webhooks defines.
pub fn secret_key(secret: &str) -> Result<Vec<u8>> {
    let rest = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    B64.decode(rest).map_err(|_| Error::invalid("webhookSecret", "must be whsec_ followed by base64"))
}

/// The associated data a sealed webhook secret is bound to: its account.
fn secret_aad(account_sid: &str) -> String {
    format!("webhook-secret|{account_sid}")
}

/// The sealed secret sealed again under the current key, when the key it is under is
/// `retiring` (None: it is under another key).
pub fn reseal_secret(keys: &Keys, account_sid: &str, sealed: &[u8], retiring: u8) -> Result<Option<Vec<u8>>> {
    let aad = secret_aad(account_sid);
    let opened = keys.open_any(Purpose::WebhookSecret, sealed, &aad)?;
    Ok((opened.kid == retiring).then(|| keys.seal(Purpose::WebhookSecret, &opened.plaintext, &aad)))
}

pub fn seal_secret(keys: &Keys, account_sid: &str, secret: &str) -> Vec<u8> {
    keys.seal(Purpose::WebhookSecret, secret.as_bytes(), &secret_aad(account_sid))
}

/// The HMAC key of an account's sealed secret.
pub fn open_key(keys: &Keys, account_sid: &str, sealed: &[u8]) -> Result<Vec<u8>> {
    let secret = keys.open(Purpose::WebhookSecret, sealed, &secret_aad(account_sid))?;
    secret_key(std::str::from_utf8(&secret).map_err(|_| Error::Internal)?).map_err(|_| Error::Internal)
}

/// `v1,<base64 HMAC-SHA256(key, id.timestamp.payload)>`: the `webhook-signature` header.
pub fn sign(key: &[u8], id: &str, timestamp: i64, payload: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// How far a signed request's `webhook-timestamp` may be from now (Standard Webhooks' own
/// tolerance): an older one is a replay.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

/// Whether `signatures` (the `webhook-signature` header: `v1,<base64>` entries, space
/// separated) holds `sign(key, id, timestamp, payload)`, with `timestamp` within
/// `SIGNATURE_TOLERANCE_SECS` of `now_secs`. Compared in constant time.
pub fn verify(key: &[u8], id: &str, timestamp: &str, signatures: &str, payload: &str, now_secs: i64) -> bool {
    use subtle::ConstantTimeEq;
    let Ok(at) = timestamp.parse::<i64>() else { return false };
    if id.is_empty() || (at - now_secs).abs() > SIGNATURE_TOLERANCE_SECS {
        return false;
    }
    let expected = sign(key, id, at, payload);
    signatures.split(' ').any(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())))
}

/// One event of one OTP, as told to its callback. The same event read twice (a stream record
/// replayed, a retry) has the same `sid`, so a receiver deduplicates on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackEvent {
    pub sid: String,
    pub request_id: String,
    pub account_sid: String,
    /// `sent`, `delivered`, `undelivered`, `failed` (a channel), `verified`, `canceled`,
    /// `expired`, `failed` (attempts used up).
    pub status: String,
    pub channel: String,
    pub to: String,
    pub at_ms: Millis,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The send's own callback, if it named one (else the account's).
    pub target: Option<CallbackTarget>,
}

/// The fields of a callback, in the order the API lists them.
#[derive(Serialize)]
struct Fields<'a> {
    sid: &'a str,
    #[serde(rename = "requestID")]
    request_id: &'a str,
    status: &'a str,
    channel: &'a str,
    to: &'a str,
    timestamp: String,
    #[serde(rename = "errorCode", skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    #[serde(rename = "errorMessage", skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
    #[serde(rename = "accountSid")]
    account_sid: &'a str,
}

impl CallbackEvent {
    fn fields(&self) -> Fields<'_> {
        Fields {
            sid: &self.sid,
            request_id: &self.request_id,
            status: &self.status,
            channel: &self.channel,
            to: &self.to,
            timestamp: time::iso(self.at_ms),
            error_code: self.error_code.as_deref(),
            error_message: self.error_message.as_deref(),
            account_sid: &self.account_sid,
        }
    }
}

/// The id of the event `what` of `base` (an OTP or channel event sid): the same for every
/// reading of the same change.
fn event_sid(base: &str, what: &str) -> String {
    let digest =
        Sha256::new().chain_update(b"twofa-callback|").chain_update(base).chain_update(b"|").chain_update(what);
    format!("EV{}", hex::encode(&digest.finalize()[..16]))
}

/// The events between two versions of one OTP (`old` None: it was just created). Channel
/// events are matched by sid, so events appended later (workflow steps) are told too.
pub fn events(old: Option<&Otp>, new: &Otp, observed_ms: Millis) -> Vec<CallbackEvent> {
    let mut out = Vec::new();
    let base = |status: &str, channel: &str, to: &str, at_ms| CallbackEvent {
        sid: String::new(),
        request_id: new.sid.clone(),
        account_sid: new.account_sid.clone(),
        status: status.to_owned(),
        channel: channel.to_owned(),
        to: to.to_owned(),
        at_ms,
        error_code: None,
        error_message: None,
        target: new.delivery.callback.clone(),
    };
    for e in &new.events {
        let before = old.and_then(|o| o.events.iter().find(|x| x.sid == e.sid)).map(|x| x.status);
        if before == Some(e.status) || e.status == ChannelStatus::Queued {
            continue;
        }
        let status = e.status.as_str();
        // A dispatch is told when it happened; a later receipt when it was stored.
        let at_ms = if e.status == ChannelStatus::Sent { e.at_ms } else { observed_ms };
        out.push(CallbackEvent {
            sid: event_sid(&e.sid, status),
            error_code: e.error_code.clone(),
            error_message: e.error_message.clone(),
            ..base(status, e.channel.as_str(), &e.recipient, at_ms)
        });
    }
    if old.map(|o| o.status) != Some(new.status) {
        let status = match new.status {
            OtpStatus::Pending => None,
            OtpStatus::Success => Some("verified"),
            OtpStatus::Canceled => Some("canceled"),
            OtpStatus::Expired => Some("expired"),
            OtpStatus::Failed => Some("failed"),
        };
        if let Some(status) = status {
            // The channel and destination of the latest dispatch (a workflow may switch).
            let (channel, to) =
                new.events.last().map_or((new.delivery.channel.as_str(), new.delivery.to.as_str()), |e| {
                    (e.channel.as_str(), e.recipient.as_str())
                });
            out.push(CallbackEvent { sid: event_sid(&new.sid, status), ..base(status, channel, to, new.updated_ms) });
        }
    }
    out
}

/// One signed call, ready to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    pub method: CallbackMethod,
    /// The URL as it goes on the wire (serialized by `url`: a space, quote or non-ASCII
    /// character percent-encoded), with the fields in its query string for GET.
    pub url: String,
    /// The JSON body of a POST.
    pub body: Option<String>,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    pub headers: [(&'static str, String); 3],
}

/// The call that tells `event` to `target`, signed with `key` at `now_secs`. POST signs its
/// JSON body. GET puts the fields (form-encoded) after the URL's own query parameters and signs
/// the whole query string as it is sent and received: everything after the `?`, byte for byte,
/// once `url` has percent-encoded what the URL holds raw (`a b` goes as `a%20b`, `"` as `%22`,
/// `'` as `%27`, `é` as `%C3%A9`), so a receiver verifies with the query string it got.
pub fn request(event: &CallbackEvent, target: &CallbackTarget, key: &[u8], now_secs: i64) -> WebhookRequest {
    let fields = event.fields();
    // The URL the HTTP client sends (it parses it the same way); a target that does not parse
    // (checked when taken, so none should) is passed on as it is, and refused by the caller.
    let parsed = url::Url::parse(&target.url).ok().map(|mut u| {
        u.set_fragment(None);
        u
    });
    let (url, body, payload) = match (target.method, parsed) {
        (CallbackMethod::Post, parsed) => {
            let body = serde_json::to_string(&fields).expect("plain fields serialize");
            (parsed.map_or_else(|| target.url.clone(), String::from), Some(body.clone()), body)
        }
        (CallbackMethod::Get, Some(mut url)) => {
            let ours = serde_urlencoded::to_string(&fields).expect("plain fields serialize");
            let query = match url.query() {
                Some(q) if !q.is_empty() => format!("{q}&{ours}"),
                _ => ours,
            };
            url.set_query(Some(&query));
            let sent = url.query().unwrap_or_default().to_owned();
            (String::from(url), None, sent)
        }
        (CallbackMethod::Get, None) => {
            let ours = serde_urlencoded::to_string(&fields).expect("plain fields serialize");
            (format!("{}?{ours}", target.url), None, ours)
        }
    };
    let signature = sign(key, &event.sid, now_secs, &payload);
    WebhookRequest {
        method: target.method,
        url,
        body,
        headers: [
            ("webhook-id", event.sid.clone()),
            ("webhook-timestamp", now_secs.to_string()),
            ("webhook-signature", signature),
        ],
    }
}

/// Why one call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// Non-2xx, time-out, connection refused: retried.
    #[error("{0}")]
    Retry(String),
    /// The URL may not be called (it resolves to a private address): not retried.
    #[error("{0}")]
    Refused(String),
}

/// A dead letter: an event whose calls all failed, or that had nowhere to go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub event: CallbackEvent,
    pub url: Option<String>,
    pub attempts: u32,
    pub reason: String,
    pub at_ms: Millis,
}

/// Where `event` goes and the key it is signed with: the send's callback, else the account's;
/// Ok(None) when neither names one (nothing to tell). Err: it cannot be told (the account is
/// gone, or has no webhook secret), a reason for the dead letters.
pub fn route(
    event: &CallbackEvent,
    account: Option<&Account>,
    keys: &Keys,
) -> std::result::Result<Option<(CallbackTarget, Vec<u8>)>, String> {
    let Some(account) = account else {
        return match &event.target {
            Some(_) => Err("the account no longer exists".into()),
            None => Ok(None),
        };
    };
    let Some(target) = event.target.clone().or_else(|| account.policy.callback.clone()) else {
        return Ok(None);
    };
    let sealed = account.policy.webhook_secret.as_ref().ok_or("the account has no webhook secret")?;
    let key = open_key(keys, &account.sid, &sealed.0).map_err(|_| "the webhook secret does not open".to_owned())?;
    Ok(Some((target, key)))
}

/// One call of an event, waiting for its attempt (what a retry queue holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingCall {
    pub event: CallbackEvent,
    /// Calls made so far.
    pub attempts: u32,
    /// Not before this instant.
    pub due_ms: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl PendingCall {
    /// The first call of a new event, due at once.
    pub fn first(event: CallbackEvent, now_ms: Millis) -> Self {
        PendingCall { event, attempts: 0, due_ms: now_ms, last_error: None }
    }
}

/// Seconds to wait after a failed call, `attempts` calls having been made; None once the last
/// retry has failed (a dead letter).
pub fn retry_delay(attempts: u32) -> Option<u64> {
    let i = usize::try_from(attempts).ok()?.checked_sub(1)?;
    RETRY_DELAYS_S.get(i).copied()
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Delivered,
    /// Neither the send nor the account names a callback.
    NoCallback,
    RetryLater,
    DeadLetter,
}

/// Make one attempt of `call` now: route it (the send's callback, else the account's), sign it
/// with the account's secret at `now_secs` (the wall clock: receivers check it against theirs),
/// call, and on failure queue it for later or, out of retries or refused, as a dead letter. An
/// error (the account or the queue unreachable) means the attempt must be made again.
pub async fn deliver(
    accounts: &dyn AccountStore,
    keys: &Keys,
    webhooks: &dyn Webhooks,
    queue: &dyn CallbackQueue,
    mut call: PendingCall,
    now_ms: Millis,
) -> Result<CallOutcome> {
    let account = accounts.get_account(&call.event.account_sid).await?;
    let dead = |call: PendingCall, url: Option<String>, reason: String| {
        tracing::warn!(event = %call.event.sid, attempts = call.attempts, %reason, "callback given up: dead letter");
        DeadLetter { event: call.event, url, attempts: call.attempts, reason, at_ms: now_ms }
    };
    let (target, key) = match route(&call.event, account.as_ref(), keys) {
        Ok(Some(route)) => route,
        Ok(None) => return Ok(CallOutcome::NoCallback),
        Err(reason) => {
            queue.dead(&dead(call, None, reason)).await?;
            return Ok(CallOutcome::DeadLetter);
        }
    };
    let req = request(&call.event, &target, &key, now_ms.div_euclid(1000));
    call.attempts += 1;
    match webhooks.call(&req).await {
        Ok(()) => Ok(CallOutcome::Delivered),
        Err(CallFailure::Refused(reason)) => {
            queue.dead(&dead(call, Some(target.url), reason)).await?;
            Ok(CallOutcome::DeadLetter)
        }
        Err(CallFailure::Retry(reason)) => match retry_delay(call.attempts) {
            Some(delay) => {
                tracing::info!(event = %call.event.sid, attempts = call.attempts, %reason, "callback failed; retrying later");
                call.due_ms = now_ms + delay as Millis * 1000;
                call.last_error = Some(reason);
                queue.later(&call).await?;
                Ok(CallOutcome::RetryLater)
            }
            None => {
                queue.dead(&dead(call, Some(target.url), reason)).await?;
                Ok(CallOutcome::DeadLetter)
            }
        },
    }
}

/// Most due OTPs one read of a shard returns (a page: ~100 bytes an entry, ~50 KB). A shard
/// that returns a full page is read again (from where the page ended) while the sweep has time.
pub const SWEEP_BATCH: usize = 500;

/// Shards read at once: an idle sweep is one read per shard, so this sets how long it takes
/// (a slice's 16 DynamoDB shards: one round of reads; all 513, a sweep given no slice: ≈ 33
/// sequential reads ≈ 0.2 s).
pub const SWEEP_SHARDS_AT_ONCE: usize = 16;

/// Settling writes in flight at once in one sweep, over its shards: one conditional
/// `UpdateItem` takes ~5–10 ms, so 32 settle ~3,000–6,000 OTPs a second, without one sweep
/// taking a large share of the table's (or a partition's) write rate (`SWEEP_SLICES` sweeps
/// run at once).
pub const SWEEP_WRITES_AT_ONCE: usize = 32;

/// Sweepers a deployment runs at once (template.yaml: one schedule per slice, each naming its
/// slice of this many; the function's reserved concurrency). One sweep settles ~2,000–4,000
/// expiries a second sustained (`SWEEP_WRITES_AT_ONCE` writes at ~5–10 ms each, 40 s a
/// minute); 100,000 pairs a second leave ~30,000 a second to expire, so 32 slices (~64,000–
/// 128,000 a second) keep up with twice that at the slow end. 32 also gives each slice 16 of
/// the 512 shards, `SWEEP_SHARDS_AT_ONCE`: a slice reads all its shards at once.
pub const SWEEP_SLICES: usize = 32;

/// One sweeper's share of the due index: the shards `s` of `0..due_shards()` with
/// `s % slices == slice`. The slices of one count are disjoint and cover every shard, so
/// sweepers given slices `0..slices` together read every shard once; the legacy `DUE`
/// partition (DynamoDB's shard 512) is in exactly one of them (512 % 32 = 0: slice 0's).
/// `WHOLE` (slice 0 of 1) is every shard: what a sweep given no slice reads. A store of one
/// shard (the embedded store) is all in slice 0; the other slices of it have nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepSlice {
    slice: usize,
    slices: usize,
}

impl SweepSlice {
    /// Every shard.
    pub const WHOLE: SweepSlice = SweepSlice { slice: 0, slices: 1 };

    /// Slice `slice` of `slices`: None unless `slice < slices`.
    pub fn new(slice: usize, slices: usize) -> Option<Self> {
        (slice < slices).then_some(SweepSlice { slice, slices })
    }

    pub fn slice(&self) -> usize {
        self.slice
    }

    pub fn slices(&self) -> usize {
        self.slices
    }

    /// Whether shard `shard` is this slice's.
    pub fn holds(&self, shard: usize) -> bool {
        shard % self.slices == self.slice
    }

    /// This slice's shards of `0..count`, in order.
    pub fn shards(&self, count: usize) -> Vec<usize> {
        (self.slice..count).step_by(self.slices).collect()
    }
}

/// Settle every OTP stored pending whose deadline has passed at `now` (expired, or canceled by
/// a newer send) in the shards of `slice` (`SweepSlice::WHOLE`: all of them): the stored
/// change yields its callback. The slice's shards are read 16 at once, oldest deadline first;
/// what each page names is settled concurrently (32 writes in flight in all), and a shard
/// whose page was full is read on from where it ended until it returns less than a page. No
/// read starts once `budget` is spent (the next sweep takes the rest). A refused write (an OTP
/// verified or canceled since it was read, or settled by another sweep of the same shard) is
/// just not counted: only a shard with nothing more due ends. Answers how many were settled;
/// an error of a read or a write stops its shard, the others go on, and the first error is
/// answered once they are done.
pub async fn sweep(
    store: &dyn ExpiryStore,
    slice: SweepSlice,
    now: Millis,
    budget: std::time::Duration,
) -> Result<usize> {
    use futures::{stream, StreamExt};
    let until = tokio::time::Instant::now() + budget;
    let writes = tokio::sync::Semaphore::new(SWEEP_WRITES_AT_ONCE);
    // Each sweep starts at another of its shards, so when the budget ends a sweep early (a
    // backlog), the shards left for the next one are not always the same.
    let shards = slice.shards(store.due_shards().max(1));
    let count = shards.len().max(1);
    let first = usize::try_from(now.div_euclid(60_000)).unwrap_or(0) % count;
    let shards: Vec<(usize, Result<()>)> = stream::iter((0..shards.len()).map(|i| shards[(first + i) % count]))
        .map(|shard| {
            let writes = &writes;
            async move {
                let mut settled = 0;
                let result = sweep_shard(store, shard, now, until, writes, &mut settled).await;
                (settled, result)
            }
        })
        .buffer_unordered(SWEEP_SHARDS_AT_ONCE)
        .collect()
        .await;
    let settled = shards.iter().map(|(n, _)| n).sum();
    match shards.into_iter().find_map(|(_, r)| r.err()) {
        None => Ok(settled),
        Some(e) => {
            tracing::warn!(settled, error = %e, "expiry sweep stopped short");
            Err(e)
        }
    }
}

/// One shard of `sweep`: page after page while pages come back full and time is left.
async fn sweep_shard(
    store: &dyn ExpiryStore,
    shard: usize,
    now: Millis,
    until: tokio::time::Instant,
    writes: &tokio::sync::Semaphore,
    settled: &mut usize,
) -> Result<()> {
    let mut after: Option<String> = None;
    // Nothing is started once the budget is spent; what is started is finished.
    while tokio::time::Instant::now() < until {
        let page = store.due_otps(shard, now, SWEEP_BATCH, after.as_deref()).await?;
        let outcomes = futures::future::join_all(page.due.iter().map(|(account, otp)| async move {
            // The semaphore is never closed, so a permit always comes.
            let _permit = writes.acquire().await.map_err(|_| Error::Internal)?;
            store.settle(account, otp, now).await
        }))
        .await;
        let mut failed = None;
        for outcome in outcomes {
            match outcome {
                Ok(true) => *settled += 1,
                Ok(false) => {}
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::otp::{tests::otp_at, ChannelEvent};

    fn sent(mut otp: Otp, status: ChannelStatus) -> Otp {
        otp.events = vec![ChannelEvent {
            sid: "OTE1".into(),
            at_ms: 5,
            channel: crate::domain::otp::Channel::Sms,
            sender: "Twofa".into(),
            recipient: "+14155550100".into(),
            target_sid: None,
            status,
            error_code: None,
            error_message: None,
            encoding: None,
            segments: None,
            route: None,
        }];
        otp
    }

    #[test]
    fn a_signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification (and its libraries' tests).
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, r#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn each_change_is_told_once_and_replays_keep_the_sid() {
        let queued = sent(otp_at(0), ChannelStatus::Queued);
        assert!(events(None, &queued, 1).is_empty(), "queued is not an event");
        let out = sent(otp_at(0), ChannelStatus::Sent);
        let e = events(Some(&queued), &out, 7);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].status.as_str(), e[0].at_ms), ("sent", 5));
        assert_eq!(events(Some(&queued), &out, 9)[0].sid, e[0].sid, "same change, same sid");
        assert!(events(Some(&out), &out, 9).is_empty());
        let delivered = sent(otp_at(0), ChannelStatus::Delivered);
        let d = events(Some(&out), &delivered, 9);
        assert_eq!(d[0].status, "delivered");
        assert_ne!(d[0].sid, e[0].sid);
        let verified = Otp { status: OtpStatus::Success, updated_ms: 20, ..delivered.clone() };
        let v = events(Some(&delivered), &verified, 30);
        assert_eq!((v.len(), v[0].status.as_str(), v[0].at_ms), (1, "verified", 20));
        let expired = Otp { status: OtpStatus::Expired, ..delivered.clone() };
        assert_eq!(events(Some(&delivered), &expired, 30)[0].status, "expired");
    }

    #[test]
    fn get_signs_the_query_string_as_sent_and_post_the_body() {
        let e = events(None, &sent(otp_at(0), ChannelStatus::Sent), 1).remove(0);
        let key = b"k".to_vec();
        let raw = "https://example.com/cb?token=a b&q=\"x\"&say=it's&name=José";
        let t = CallbackTarget { url: raw.into(), method: CallbackMethod::Get };
        let r = request(&e, &t, &key, 100);
        let (path, query) = r.url.split_once('?').unwrap();
        assert_eq!(path, "https://example.com/cb");
        assert!(query.starts_with("token=a%20b&q=%22x%22&say=it%27s&name=Jos%C3%A9&sid=EV"), "{query}");
        assert!(query.contains("status=sent") && query.contains("to=%2B14155550100"), "{query}");
        assert_eq!(r.headers[2].1, sign(&key, &e.sid, 100, query));
        // What the HTTP client sends: the same URL, so the same query
        let wire = url::Url::parse(&r.url).unwrap();
        assert_eq!((wire.as_str(), wire.query()), (r.url.as_str(), Some(query)));
        // An already-encoded query goes as it is; one without fields of its own gets only ours
        let t = CallbackTarget { url: "https://example.com/cb?tenant=a%20b".into(), ..t };
        assert!(request(&e, &t, &key, 100).url.starts_with("https://example.com/cb?tenant=a%20b&sid=EV"));
        let t = CallbackTarget { url: "https://example.com/cb?".into(), ..t };
        assert!(request(&e, &t, &key, 100).url.starts_with("https://example.com/cb?sid=EV"));
        let t = CallbackTarget { method: CallbackMethod::Post, url: raw.into() };
        let r = request(&e, &t, &key, 100);
        assert_eq!(r.url, "https://example.com/cb?token=a%20b&q=%22x%22&say=it%27s&name=Jos%C3%A9");
        let body = r.body.unwrap();
        assert!(body.starts_with(r#"{"sid":"EV"#) && body.contains(r#""requestID":"OTP0""#), "{body}");
        assert_eq!(r.headers[0], ("webhook-id", e.sid.clone()));
        assert_eq!(r.headers[2].1, sign(&key, &e.sid, 100, &body));
    }

    #[test]
    fn urls_outside_dev_must_be_https_to_public_addresses() {
        let check = |url: &str, rules| target(url, None, rules, "callbackUrl", "callbackMethod");
        assert!(check("https://hooks.example.com/otp", UrlRules::Public).is_ok());
        for bad in [
            "http://hooks.example.com/otp",
            "not a url",
            "ftp://example.com/",
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[fd00:ec2::254]/",
            "https://[::ffff:192.168.0.1]/",
            "https://localhost/",
            "https://intranet/",
        ] {
            assert!(
                matches!(check(bad, UrlRules::Public), Err(Error::InvalidParameter { param, .. }) if param == "callbackUrl"),
                "{bad}"
            );
        }
        assert!(check("http://127.0.0.1:9000/cb", UrlRules::AnyHost).is_ok());
        assert!(matches!(
            target("https://example.com/", Some("PUT"), UrlRules::Public, "callbackUrl", "callbackMethod"),
            Err(Error::InvalidParameter { param, .. }) if param == "callbackMethod"
        ));
        assert!(is_public("8.8.8.8".parse().unwrap()) && is_public("2606:4700::1111".parse().unwrap()));
        assert!(!is_public("100.64.0.1".parse().unwrap()) && !is_public("64:ff9b::a00:1".parse().unwrap()));
    }

    #[test]
    fn eleven_calls_are_made_before_an_event_is_a_dead_letter() {
        assert_eq!(retry_delay(0), None, "no call made yet: nothing to wait for");
        assert_eq!(retry_delay(1), Some(5));
        assert_eq!(retry_delay(10), Some(28_800));
        assert_eq!(retry_delay(11), None);
        let total: u64 = (1..=10).filter_map(retry_delay).sum();
        assert_eq!(total, 85_355, "23.7 h of retries");
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_account() {
        let keys = Keys::random();
        let secret = new_secret();
        assert!(secret.starts_with("whsec_") && secret_key(&secret).unwrap().len() == 32);
        let sealed = seal_secret(&keys, "AC1", &secret);
        assert!(!sealed.windows(10).any(|w| secret.as_bytes().windows(10).any(|s| s == w)));
        assert_eq!(open_key(&keys, "AC1", &sealed).unwrap(), secret_key(&secret).unwrap());
        assert!(open_key(&keys, "AC2", &sealed).is_err());
    }

    #[test]
    fn the_slices_of_one_count_share_out_every_shard_once_and_the_legacy_partition_to_one() {
        // Given DynamoDB's due index: 512 shards and the legacy `DUE` partition as shard 512
        let shards = 513;
        for slices in [1, 2, 16, SWEEP_SLICES, 600] {
            // When it is cut into `slices` slices
            let all: Vec<Vec<usize>> =
                (0..slices).map(|i| SweepSlice::new(i, slices).unwrap().shards(shards)).collect();
            // Then every shard is in exactly one slice, and a slice holds what it reads
            let mut seen = vec![0; shards];
            for (i, slice) in all.iter().enumerate() {
                for &s in slice {
                    seen[s] += 1;
                    assert!(SweepSlice::new(i, slices).unwrap().holds(s));
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{slices} slices: {seen:?}");
            // And the slices are even: none reads more than one shard above another
            let sizes: Vec<usize> = all.iter().map(Vec::len).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
            // And the legacy partition is in one slice only
            assert_eq!(all.iter().filter(|s| s.contains(&512)).count(), 1);
        }
        // And the deployed count gives each slice the 16 shards a sweep reads at once (slice 0
        // one more, the legacy partition)
        assert_eq!(SweepSlice::new(0, SWEEP_SLICES).unwrap().shards(shards).len(), SWEEP_SHARDS_AT_ONCE + 1);
        assert_eq!(SweepSlice::new(31, SWEEP_SLICES).unwrap().shards(shards).len(), SWEEP_SHARDS_AT_ONCE);
        // And the whole is every shard; a slice past its count is none
        assert_eq!(SweepSlice::WHOLE.shards(shards), (0..shards).collect::<Vec<_>>());
        assert_eq!(SweepSlice::new(32, 32), None);
        assert_eq!(SweepSlice::new(0, 0), None);
    }
}
