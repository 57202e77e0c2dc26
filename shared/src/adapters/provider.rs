//! Your own provider: each message is one Standard-Webhooks-signed JSON `POST` to an HTTPS
//! endpoint the deployment names, which answers with its message id; its delivery reports come
//! back, signed with the same secret, to `POST /2fa/receipts/{provider}` (`http::receipts`).
//! One client per process, built with the adapter.
//!
//! What the provider's answer means:
//! - 2xx `{"messageId": "…"}`: sent; the id is the event's `targetSid` (receipts name it).
//! - 4xx but 408 and 429: the provider refused this message: a `failed` event, final.
//! - 408, 429, 5xx, no connection: the provider is down (`Unavailable`): the next route in the
//!   account's routing table takes the message, and with none the send is undone (503).
//! - No answer in time once the request went out: `Unconfirmed`; not retried here nor on
//!   another route (`adapters::router`).
//!
//! Nothing is retried here. A request that timed out may have reached the provider, and a
//! second one would send the code twice (twice the cost, two messages): the send is undone
//! instead, so the code in a message that did arrive no longer verifies, and the caller's
//! retry sends a new one. The `webhook-id` is the dispatch's event sid, the same for any
//! repeat of one dispatch, so a provider that deduplicates on it could be retried safely.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    domain::{
        callbacks::{self, UrlRules},
        providers::OpenedProvider,
    },
    ports::{DispatchError, DispatchReceipt, Dispatcher, OutboundMessage},
};

/// How long the provider may take to answer one message (connect included): a send waits for
/// it, so it is short.
pub const TIMEOUT: Duration = Duration::from_secs(3);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest message id taken from a provider (it becomes a key of the receipts' lookup).
pub const MAX_MESSAGE_ID_LEN: usize = 256;

/// A provider as the deployment configures it.
#[derive(Clone)]
pub struct ProviderConfig {
    /// The `{provider}` of its receipt endpoint: letters, digits, `-` and `_`.
    pub name: String,
    pub url: reqwest::Url,
    /// The HMAC key of its `whsec_` secret: requests to it and its receipts are signed with it.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig").field("name", &self.name).field("url", &self.url.as_str()).finish()
    }
}

impl ProviderConfig {
    /// `TWOFA_SMS_PROVIDER_URL` (https; http too when `allow_http`, the dev server),
    /// `TWOFA_SMS_PROVIDER_SECRET` (`whsec_…`) and `TWOFA_SMS_PROVIDER_NAME` (default `own`);
    /// Ok(None) without a URL: SMS goes the deployment's own way.
    pub fn sms_from_env(allow_http: bool) -> Result<Option<Self>, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let Some(url) = var("TWOFA_SMS_PROVIDER_URL") else { return Ok(None) };
        let secret = var("TWOFA_SMS_PROVIDER_SECRET")
            .ok_or("TWOFA_SMS_PROVIDER_SECRET must be set (whsec_…) with TWOFA_SMS_PROVIDER_URL")?;
        let name = var("TWOFA_SMS_PROVIDER_NAME").unwrap_or_else(|| "own".into());
        Self::new(&name, &url, &secret, allow_http).map(Some)
    }

    pub fn new(name: &str, url: &str, secret: &str, allow_http: bool) -> Result<Self, String> {
        if name.is_empty()
            || name.len() > 64
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("the provider name must be 1 to 64 letters, digits, - or _".into());
        }
        // It is a route's name too (`adapters::router`): not one of the deployment's own.
        if crate::domain::routing::BUILT_IN.contains(&name) {
            return Err(format!("the provider name {name} is the name of a built-in route: choose another"));
        }
        let url = reqwest::Url::parse(url).map_err(|_| "the provider URL is not a URL".to_owned())?;
        if !(url.scheme() == "https" || (allow_http && url.scheme() == "http")) {
            return Err("the provider URL must be https".into());
        }
        // The HTTP client has TLS only with the `aws` feature (`make run` builds without it):
        // said at start rather than as a 503 at every send.
        if url.scheme() == "https" && !cfg!(feature = "aws") {
            return Err("this build has no TLS: give an http provider URL, or build with --features twofa/aws".into());
        }
        let key = callbacks::secret_key(secret).map_err(|_| "the provider secret must be whsec_ and base64")?;
        if key.len() < 16 {
            return Err("the provider secret must hold at least 16 bytes".into());
        }
        Ok(ProviderConfig { name: name.to_owned(), url, key })
    }
}

/// The JSON each message is posted as.
#[derive(Serialize)]
struct Request<'a> {
    to: &'a str,
    channel: &'a str,
    from: &'a str,
    text: &'a str,
    code: &'a str,
    #[serde(rename = "requestID")]
    request_id: &'a str,
    locale: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    message_id: String,
}

/// Posts each message to the provider.
pub struct HttpProvider {
    config: ProviderConfig,
    client: reqwest::Client,
}

/// A client to post messages with, `timeout` for each. `rules`: the addresses a host name may
/// resolve to (None: any; the deployment's own provider is the operator's, accounts' providers
/// are not, so their shared client is guarded like the callbacks' one).
pub fn client(timeout: Duration, rules: Option<UrlRules>) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("twofa-provider/1");
    let client = match rules {
        Some(rules) => client.no_proxy().dns_resolver(std::sync::Arc::new(crate::adapters::webhook::Guarded(rules))),
        None => client,
    };
    // As the callbacks' client (`webhook`): Mozilla's roots built in, or the system's.
    #[cfg(feature = "aws")]
    let client = {
        let system = std::env::var("TWOFA_TLS_ROOTS").is_ok_and(|v| v == "system");
        client.tls_built_in_webpki_certs(!system).tls_built_in_native_certs(system)
    };
    client.build().expect("a client with these settings builds")
}

impl HttpProvider {
    pub fn new(config: ProviderConfig) -> Self {
        Self::with_timeout(config, TIMEOUT)
    }

    /// With another time limit per message (tests of a provider that does not answer).
    pub fn with_timeout(config: ProviderConfig, timeout: Duration) -> Self {
        HttpProvider { config, client: client(timeout, None) }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }
}

/// What a non-2xx answer means: a refusal of this message, or the provider down.
fn refused(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

#[async_trait]
impl Dispatcher for HttpProvider {
    fn receipt_key(&self, name: &str) -> Option<&[u8]> {
        (name == self.config.name).then_some(self.config.key.as_slice())
    }

    async fn dispatch(&self, msg: &OutboundMessage<'_>) -> Result<DispatchReceipt, DispatchError> {
        post(&self.client, &self.config.name, self.config.url.clone(), &self.config.key, msg).await
    }
}

/// An account's own provider (`domain::providers`), posted to with `client`, shared by every
/// account's providers in the process. Under `UrlRules::Public` an URL that is not https or
/// names a private address (as an IP, or by what its name resolves to) is refused.
pub(crate) async fn post_to_account_provider(
    client: &reqwest::Client,
    rules: UrlRules,
    provider: &OpenedProvider,
    msg: &OutboundMessage<'_>,
) -> Result<DispatchReceipt, DispatchError> {
    let not_public =
        || DispatchError::rejected("PROVIDER_URL_NOT_PUBLIC", "the provider URL is not a public https address");
    let Ok(url) = reqwest::Url::parse(&provider.url) else { return Err(not_public()) };
    // IP literals never reach the resolver: judged here.
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    };
    if literal.is_some_and(|ip| !rules.allows_ip(ip)) || (rules == UrlRules::Public && url.scheme() != "https") {
        tracing::warn!(account = %msg.account_sid, provider = %provider.name, "account provider URL not public: refused");
        return Err(not_public());
    }
    post(client, &provider.name, url, &provider.key, msg).await
}

/// One message posted to a provider, its answer read as the module says.
async fn post(
    client: &reqwest::Client,
    name: &str,
    url: reqwest::Url,
    key: &[u8],
    msg: &OutboundMessage<'_>,
) -> Result<DispatchReceipt, DispatchError> {
    let body = serde_json::to_string(&Request {
        to: msg.to,
        channel: msg.channel.as_str(),
        from: msg.from,
        text: &msg.text,
        code: msg.code,
        request_id: msg.request_id,
        locale: msg.language,
    })
    .expect("plain fields serialize");
    // The wall clock, not the deployment's (the dev server's can be moved): the receiver
    // holds the timestamp against its own to refuse replays.
    let now_secs = chrono::Utc::now().timestamp();
    let signature = callbacks::sign(key, msg.event_sid, now_secs, &body);
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", msg.event_sid)
        .header("webhook-timestamp", now_secs.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(a) => a,
        Err(e) if crate::adapters::webhook::not_public(&e) => {
            tracing::warn!(provider = %name, "provider host resolves to no public address: refused");
            return Err(DispatchError::rejected(
                "PROVIDER_URL_NOT_PUBLIC",
                "the provider URL is not a public https address",
            ));
        }
        Err(e) => {
            // Not the error itself: it may hold the URL, whose query may hold a token.
            // No connection: nothing went out. Anything later (no answer in time, a
            // connection cut): the provider may have the message.
            let (why, failure) = if e.is_connect() {
                ("could not be reached", DispatchError::Unavailable)
            } else if e.is_timeout() {
                ("no answer in time", DispatchError::Unconfirmed)
            } else {
                ("the request failed after it was sent", DispatchError::Unconfirmed)
            };
            tracing::warn!(provider = %name, why, "provider unavailable");
            return Err(failure);
        }
    };
    let status = answer.status().as_u16();
    if answer.status().is_success() {
        let id = answer.json::<Answer>().await.ok().map(|a| a.message_id);
        return match id.filter(|id| !id.is_empty() && id.len() <= MAX_MESSAGE_ID_LEN) {
            Some(id) => Ok(DispatchReceipt::new(id)),
            // It took the message but said nothing a receipt could name: sent, unknown id
            // would lose its receipts; a refusal would hide a message that may go out.
            None => {
                tracing::warn!(provider = %name, status, "provider answered without a messageId");
                Err(DispatchError::rejected("PROVIDER_BAD_ANSWER", "the provider answered without a messageId"))
            }
        };
    }
    if refused(status) {
        // The provider's words, short: they are shown in the event.
        let text = answer.text().await.unwrap_or_default();
        let message: String = text.chars().take(200).collect();
        return Err(DispatchError::rejected(format!("PROVIDER_{status}"), message));
    }
    tracing::warn!(provider = %name, status, "provider unavailable");
    Err(DispatchError::Unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_needs_a_name_an_https_url_and_a_whsec_secret() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        // (https needs the TLS the `aws` feature brings)
        let https = ProviderConfig::new("acme-sms", "https://sms.example.com/send", secret, false);
        assert_eq!(https.is_ok(), cfg!(feature = "aws"));
        assert!(ProviderConfig::new("acme", "http://sms.example.com/send", secret, false).is_err());
        assert!(ProviderConfig::new("acme", "http://127.0.0.1:9/send", secret, true).is_ok());
        assert!(ProviderConfig::new("a/b", "https://sms.example.com/send", secret, false).is_err());
        assert!(ProviderConfig::new("sns", "http://127.0.0.1:9/send", secret, true).is_err(), "a route's name");
        assert!(ProviderConfig::new("acme", "https://sms.example.com/send", "whsec_!!", false).is_err());
        assert!(ProviderConfig::new("acme", "https://sms.example.com/send", "whsec_c2hvcnQ=", false).is_err());
    }

    #[test]
    fn throttling_and_timeouts_are_not_refusals() {
        assert!(refused(400) && refused(403) && refused(422));
        assert!(!refused(408) && !refused(429) && !refused(500) && !refused(503));
    }
}
