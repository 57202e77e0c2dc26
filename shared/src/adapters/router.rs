//! Delivery routing: every way out of the deployment by name and channel, and the walk down an
//! account's routes for one message (`domain::routing` holds the table).
//!
//! What each outcome of a route means for the next one:
//! - sent: done; the event names the route.
//! - refused (`Rejected`: a bad or opted-out number, content it will not carry): final. Another
//!   route would most likely refuse too, and a refusal is an answer the user should see.
//! - down (`Unavailable`: throttled, 5xx, no connection): nothing went out, so the next route
//!   takes the message, while the request's time budget lasts.
//! - no answer in time after the request went out (`Unconfirmed`): the provider may have the
//!   message. Another route would send the code a second time, so it is not tried: the send is
//!   undone and answers 503 (the caller's retry sends a new code). A provider that deduplicates
//!   (the `webhook-id` of our own-provider requests is the event's sid) could be retried, but
//!   only on itself, and nothing here does so yet.
//!
//! A route that was down or silent is tried last for `COOL_DOWN` afterwards, so while one
//! provider hangs, messages go straight to the next one instead of each waiting out its
//! timeout (and a silent provider, which is never failed over, does not fail every send).
//! This memory is per process: each Lambda instance learns on its own.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use async_trait::async_trait;

use crate::{
    adapters::provider,
    domain::{callbacks::UrlRules, otp::Channel, providers::OpenedProvider, voice::Voice},
    ports::{DispatchError, DispatchReceipt, Dispatcher, OutboundMessage},
};

/// How long a route that was down or silent is tried after the others.
pub const COOL_DOWN: Duration = Duration::from_secs(30);
/// No route is started after this much of a request went by: the longest a route takes (an own
/// provider's 3 s; AWS routes 1.5 s) must still end, and the send be undone if need be, inside
/// the functions' 10 s timeout, and a caller gets a 503 it can retry rather than wait on a
/// fifth provider.
pub const BUDGET: Duration = Duration::from_secs(5);

/// Route names of the deployment's own ways out.
pub const SNS: &str = "sns";
pub const END_USER_MESSAGING: &str = "end-user-messaging";
pub const END_USER_MESSAGING_SOCIAL: &str = "end-user-messaging-social";
pub const SES: &str = "ses";
pub const OUTBOX: &str = "outbox";

/// One way out: a dispatcher for one channel, by name.
pub struct Route {
    pub name: String,
    pub channel: Channel,
    pub dispatcher: Arc<dyn Dispatcher>,
}

impl Route {
    pub fn new(name: impl Into<String>, channel: Channel, dispatcher: Arc<dyn Dispatcher>) -> Self {
        Route { name: name.into(), channel, dispatcher }
    }
}

/// The deployment's routes. For each channel, the first route given is the one a message takes
/// when its account has no routing table for it (what the deployment is configured with, as
/// before tables existed); the others are there for tables to name.
pub struct Router {
    routes: Vec<Route>,
    url_rules: UrlRules,
    budget: Duration,
    /// Routes that were down or silent, and when (an account's provider as `{account}/{name}`:
    /// two accounts' `acme` are two providers).
    trouble: Mutex<HashMap<String, Instant>>,
    /// The one client every account's own provider is posted with, made at the first.
    account_client: OnceLock<reqwest::Client>,
    account_timeout: Duration,
}

/// One route of a message's plan: the deployment's, or a provider of the message's account.
enum Step<'r, 'm> {
    Deployment(&'r Route),
    Account(&'m OpenedProvider),
}

impl Step<'_, '_> {
    fn name(&self) -> &str {
        match self {
            Step::Deployment(r) => &r.name,
            Step::Account(p) => &p.name,
        }
    }

    fn trouble_key(&self, account_sid: &str) -> String {
        match self {
            Step::Deployment(r) => r.name.clone(),
            Step::Account(p) => format!("{account_sid}/{}", p.name),
        }
    }
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Self {
        Router {
            routes,
            url_rules: UrlRules::Public,
            budget: BUDGET,
            trouble: Mutex::default(),
            account_client: OnceLock::new(),
            account_timeout: provider::TIMEOUT,
        }
    }

    /// Another time limit per message to an account's own provider (tests).
    pub fn with_provider_timeout(mut self, timeout: Duration) -> Self {
        self.account_timeout = timeout;
        self
    }

    fn account_client(&self) -> &reqwest::Client {
        self.account_client.get_or_init(|| provider::client(self.account_timeout, Some(self.url_rules)))
    }

    /// The callback URLs this deployment takes (the dev server's: any host).
    pub fn with_url_rules(mut self, rules: UrlRules) -> Self {
        self.url_rules = rules;
        self
    }

    /// Another time budget per message (tests).
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// The names of the routes of `channel`, its default first.
    pub fn names(&self, channel: Channel) -> Vec<&str> {
        self.routes.iter().filter(|r| r.channel == channel).map(|r| r.name.as_str()).collect()
    }

    /// The routes `msg` tries, in order: its account's (its own providers first by name, then
    /// those this deployment has), else the channel's default; recently troubled ones moved
    /// last.
    fn plan<'m>(&self, msg: &OutboundMessage<'m>) -> Vec<Step<'_, 'm>> {
        let providers: &'m [OpenedProvider] = msg.providers;
        let of = |name: &str| match providers.iter().find(|p| p.name == name) {
            Some(p) => Some(Step::Account(p)),
            None => self.routes.iter().find(|r| r.channel == msg.channel && r.name == name).map(Step::Deployment),
        };
        let mut plan: Vec<Step> = msg.routes.iter().filter_map(|n| of(n)).collect();
        if plan.len() < msg.routes.len() {
            let unknown: Vec<&String> = msg.routes.iter().filter(|n| of(n).is_none()).collect();
            // The table was checked for form only (the admin command does not know the
            // deployment): a name it lacks is skipped, and with none left the default goes.
            tracing::warn!(account = %msg.account_sid, channel = msg.channel.as_str(), ?unknown, "routes this deployment does not have: skipped");
        }
        if plan.is_empty() {
            plan.extend(self.routes.iter().find(|r| r.channel == msg.channel).map(Step::Deployment));
        }
        if plan.len() > 1 {
            let trouble = self.trouble.lock().expect("router lock");
            let cooling =
                |r: &Step| trouble.get(&r.trouble_key(msg.account_sid)).is_some_and(|at| at.elapsed() < COOL_DOWN);
            // Stable: the account's order among the healthy, then among the cooling.
            plan.sort_by_key(|r| cooling(r));
        }
        plan
    }

    fn troubled(&self, key: String, yes: bool) {
        let mut trouble = self.trouble.lock().expect("router lock");
        if yes {
            trouble.insert(key, Instant::now());
        } else if !trouble.is_empty() {
            trouble.remove(&key);
        }
    }
}

#[async_trait]
impl Dispatcher for Router {
    fn delivers(&self, channel: Channel) -> bool {
        self.routes.iter().any(|r| r.channel == channel && r.dispatcher.delivers(channel))
    }

    fn callback_url_rules(&self) -> UrlRules {
        self.url_rules
    }

    fn receipt_key(&self, name: &str) -> Option<&[u8]> {
        self.routes.iter().find_map(|r| r.dispatcher.receipt_key(name))
    }

    async fn voices(&self) -> Result<Arc<Vec<Voice>>, DispatchError> {
        match self.routes.iter().find(|r| r.channel == Channel::Call) {
            Some(r) => r.dispatcher.voices().await,
            None => Ok(Arc::new(Vec::new())),
        }
    }

    async fn dispatch(&self, msg: &OutboundMessage<'_>) -> Result<DispatchReceipt, DispatchError> {
        let plan = self.plan(msg);
        if plan.is_empty() {
            let channel = msg.channel.as_str().to_ascii_uppercase();
            return Err(DispatchError::rejected(
                format!("{channel}_UNSUPPORTED"),
                format!("{} is not configured", msg.channel.as_str()),
            ));
        }
        let start = Instant::now();
        for (i, step) in plan.iter().enumerate() {
            let name = step.name();
            if i > 0 && start.elapsed() >= self.budget {
                tracing::warn!(request_id = %msg.request_id, route = %name, "time budget spent: no further route tried");
                break;
            }
            let outcome = match step {
                Step::Deployment(route) => route.dispatcher.dispatch(msg).await,
                Step::Account(p) => {
                    provider::post_to_account_provider(self.account_client(), self.url_rules, p, msg).await
                }
            };
            let key = step.trouble_key(msg.account_sid);
            match outcome {
                Ok(mut receipt) => {
                    self.troubled(key, false);
                    receipt.route = Some(name.to_owned());
                    receipt.account_provider = matches!(step, Step::Account(_));
                    return Ok(receipt);
                }
                Err(DispatchError::Rejected { code, message, .. }) => {
                    self.troubled(key, false);
                    return Err(DispatchError::Rejected { code, message, route: Some(name.to_owned()) });
                }
                Err(DispatchError::Unavailable) => {
                    self.troubled(key, true);
                    tracing::warn!(request_id = %msg.request_id, route = %name, left = plan.len() - i - 1, "route down");
                }
                Err(DispatchError::Unconfirmed) => {
                    self.troubled(key, true);
                    tracing::warn!(request_id = %msg.request_id, route = %name, "route silent: not failed over (the message may have gone)");
                    return Err(DispatchError::Unconfirmed);
                }
            }
        }
        Err(DispatchError::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A route that answers `outcome` and counts its calls.
    struct Fake {
        outcome: Result<&'static str, DispatchError>,
        calls: AtomicUsize,
    }

    impl Fake {
        fn new(outcome: Result<&'static str, DispatchError>) -> Arc<Self> {
            Arc::new(Fake { outcome, calls: AtomicUsize::new(0) })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl Dispatcher for Fake {
        async fn dispatch(&self, _: &OutboundMessage<'_>) -> Result<DispatchReceipt, DispatchError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.outcome.clone().map(DispatchReceipt::new)
        }
    }

    fn message(channel: Channel, routes: &[String]) -> OutboundMessage<'_> {
        OutboundMessage::sample(channel, "+14155550100").with_routes(routes)
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn a_route_that_is_down_falls_through_to_the_next_which_sends_once() {
        // Given SMS routes a (down) and b (up)
        let (a, b) = (Fake::new(Err(DispatchError::Unavailable)), Fake::new(Ok("B1")));
        let router =
            Router::new(vec![Route::new("a", Channel::Sms, a.clone()), Route::new("b", Channel::Sms, b.clone())]);
        let routes = names(&["a", "b"]);
        // When a message takes the account's routes a, b
        let receipt = router.dispatch(&message(Channel::Sms, &routes)).await.unwrap();
        // Then b sent it, once, and says so
        assert_eq!((receipt.provider_id.as_str(), receipt.route.as_deref()), ("B1", Some("b")));
        assert_eq!((a.calls(), b.calls()), (1, 1));
        // And while a cools down, the next message goes to b first
        router.dispatch(&message(Channel::Sms, &routes)).await.unwrap();
        assert_eq!((a.calls(), b.calls()), (1, 2));
    }

    #[tokio::test]
    async fn a_refusal_is_final_and_names_its_route() {
        let a = Fake::new(Err(DispatchError::rejected("30003", "unreachable handset")));
        let b = Fake::new(Ok("B1"));
        let router =
            Router::new(vec![Route::new("a", Channel::Sms, a.clone()), Route::new("b", Channel::Sms, b.clone())]);
        let routes = names(&["a", "b"]);
        let err = router.dispatch(&message(Channel::Sms, &routes)).await.unwrap_err();
        assert_eq!(
            err,
            DispatchError::Rejected {
                code: "30003".into(),
                message: "unreachable handset".into(),
                route: Some("a".into())
            }
        );
        assert_eq!(b.calls(), 0, "a refusal does not fail over");
    }

    #[tokio::test]
    async fn a_route_that_may_have_sent_is_not_failed_over() {
        let (a, b) = (Fake::new(Err(DispatchError::Unconfirmed)), Fake::new(Ok("B1")));
        let router =
            Router::new(vec![Route::new("a", Channel::Sms, a.clone()), Route::new("b", Channel::Sms, b.clone())]);
        let routes = names(&["a", "b"]);
        assert_eq!(router.dispatch(&message(Channel::Sms, &routes)).await, Err(DispatchError::Unconfirmed));
        assert_eq!(b.calls(), 0, "a second route would send the code twice");
        // But the next message goes to b first while a cools down
        assert_eq!(router.dispatch(&message(Channel::Sms, &routes)).await.unwrap().route.as_deref(), Some("b"));
        assert_eq!(a.calls(), 1);
    }

    #[tokio::test]
    async fn every_route_down_is_unavailable_and_no_table_takes_the_channels_default() {
        let (a, b) = (Fake::new(Err(DispatchError::Unavailable)), Fake::new(Err(DispatchError::Unavailable)));
        let mail = Fake::new(Ok("EM1"));
        let router = Router::new(vec![
            Route::new("a", Channel::Sms, a.clone()),
            Route::new("b", Channel::Sms, b.clone()),
            Route::new("ses", Channel::Email, mail.clone()),
        ]);
        assert_eq!(router.dispatch(&message(Channel::Sms, &names(&["b", "a"]))).await, Err(DispatchError::Unavailable));
        assert_eq!((a.calls(), b.calls()), (1, 1));
        // Without a table, only the channel's first route is tried (no failover by default)
        assert_eq!(router.dispatch(&message(Channel::Sms, &[])).await, Err(DispatchError::Unavailable));
        assert_eq!((a.calls(), b.calls()), (2, 1));
        // A name the deployment lacks (or of another channel) is skipped
        let r = router.dispatch(&message(Channel::Email, &names(&["nope", "a"]))).await.unwrap();
        assert_eq!(r.route.as_deref(), Some("ses"));
        // A channel with no route is refused up front
        assert!(!router.delivers(Channel::Call));
        assert!(matches!(router.dispatch(&message(Channel::Call, &[])).await,
            Err(DispatchError::Rejected { code, .. }) if code == "CALL_UNSUPPORTED"));
    }

    #[test]
    fn the_domain_knows_every_built_in_route_name() {
        let ours =
            [SNS, END_USER_MESSAGING, END_USER_MESSAGING_SOCIAL, SES, OUTBOX, crate::adapters::outbox::BACKUP_ROUTE];
        assert_eq!(ours, crate::domain::routing::BUILT_IN);
    }

    #[tokio::test]
    async fn no_further_route_starts_once_the_time_budget_is_spent() {
        let (a, b) = (Fake::new(Err(DispatchError::Unavailable)), Fake::new(Ok("B1")));
        let router =
            Router::new(vec![Route::new("a", Channel::Sms, a.clone()), Route::new("b", Channel::Sms, b.clone())])
                .with_budget(Duration::ZERO);
        assert_eq!(router.dispatch(&message(Channel::Sms, &names(&["a", "b"]))).await, Err(DispatchError::Unavailable));
        assert_eq!((a.calls(), b.calls()), (1, 0));
    }
}
