//! Callback calls over HTTP(S), one client per process. Outside dev, a host name is resolved
//! here and only its public addresses are dialled (`UrlRules::allows_ip`), so a name that points
//! into a private network (or changes to, between check and call) is never reached; redirects
//! are not followed and no proxy is used.

use std::{error::Error as StdError, net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::{
    domain::callbacks::{CallFailure, CallbackMethod, UrlRules, WebhookRequest, TIMEOUT_SECS},
    ports::Webhooks,
};

pub struct HttpWebhooks {
    client: reqwest::Client,
    rules: UrlRules,
}

/// A host name with no address a call may go to.
#[derive(Debug)]
struct NotPublic(String);

impl std::fmt::Display for NotPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} resolves to no public address", self.0)
    }
}

impl StdError for NotPublic {}

/// The system resolver, keeping the addresses `rules` allow (account providers' calls too).
pub(crate) struct Guarded(pub UrlRules);

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let rules = self.0;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.into_iter().filter(|a| rules.allows_ip(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(NotPublic(host)) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

impl HttpWebhooks {
    pub fn new(rules: UrlRules) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(TIMEOUT_SECS))
            .connect_timeout(Duration::from_secs(TIMEOUT_SECS))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent("twofa-webhooks/1")
            .dns_resolver(Arc::new(Guarded(rules)));
        // Mozilla's roots, built in (no files read and parsed at every cold start, ~4 ms), or
        // the system's when asked for (README "Failing fast").
        #[cfg(feature = "aws")]
        let client = {
            let system = std::env::var("TWOFA_TLS_ROOTS").is_ok_and(|v| v == "system");
            client.tls_built_in_webpki_certs(!system).tls_built_in_native_certs(system)
        };
        let client = client.build().expect("a client with these settings builds");
        HttpWebhooks { client, rules }
    }
}

/// Whether `e` is a host name that resolved to no address a call may go to.
pub(crate) fn not_public(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(s) = source {
        if s.is::<NotPublic>() {
            return true;
        }
        source = s.source();
    }
    false
}

#[async_trait]
impl Webhooks for HttpWebhooks {
    async fn call(&self, req: &WebhookRequest) -> Result<(), CallFailure> {
        let url = reqwest::Url::parse(&req.url).map_err(|_| CallFailure::Refused("not a URL".into()))?;
        // A GET is signed over its query string as `callbacks::request` serialized it, which is
        // what goes on the wire (the request line takes the query as `url` gives it): a URL
        // that would go out otherwise could not be verified by its receiver, so is not sent.
        if req.method == CallbackMethod::Get && url.as_str() != req.url {
            return Err(CallFailure::Refused("the URL would not go as signed".into()));
        }
        // IP literals never reach the resolver: judge them here.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if literal.is_some_and(|ip| !self.rules.allows_ip(ip))
            || (self.rules == UrlRules::Public && url.scheme() != "https")
        {
            return Err(CallFailure::Refused("not a public https URL".into()));
        }
        let mut builder = match req.method {
            CallbackMethod::Get => self.client.get(url),
            CallbackMethod::Post => self
                .client
                .post(url)
                .header("content-type", "application/json")
                .body(req.body.clone().unwrap_or_default()),
        };
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        match builder.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(CallFailure::Retry(format!("answered {}", r.status().as_u16()))),
            Err(e) if not_public(&e) => Err(CallFailure::Refused("resolves to no public address".into())),
            Err(e) if e.is_timeout() => Err(CallFailure::Retry(format!("no answer within {TIMEOUT_SECS} s"))),
            Err(e) if e.is_connect() => Err(CallFailure::Retry("could not connect".into())),
            Err(_) => Err(CallFailure::Retry("the call failed".into())),
        }
    }
}
