//! The Lambda entry: build the AWS adapters once per process, then serve a router through
//! `lambda_http`. Each `functions/<group>/src/main.rs` is one call to `run`.

use std::sync::Arc;

use axum::Router;
use lambda_http::{request::RequestContext, RequestExt};

use crate::{
    adapters::aws::{
        aws_config, dispatch_config,
        dynamodb::DynamoStore,
        eum_sms::{EumSms, SmsOrigin},
        polly::PollyVoices,
        ses::SesEmail,
        sfn::SfnScheduler,
        sns::SnsSms,
        voice::{usable_voices, SmsVoiceCalls},
        whatsapp::{Whatsapp, WhatsappOrigin, DEFAULT_META_API_VERSION},
        Calls,
    },
    adapters::emf::{stdout_sink, MeteredDispatcher, NAMESPACE},
    adapters::provider::{HttpProvider, ProviderConfig},
    adapters::router::{self, Route},
    domain::crypto::{Keys, KEY_REFRESH_MS, KEY_RETIRE_GRACE_MS},
    domain::otp::Channel,
    http::auth::ClientIp,
    ports::{Deps, Dispatcher, NoScheduler, Scheduler, SendsNothing, SystemClock},
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Configuration, read once from the environment.
pub struct Config {
    pub table: String,
    pub sms_sender_id: Option<String>,
    /// The SMS route a message takes when its account's routing table names none: the
    /// provider's name when one is configured, else `TWOFA_SMS_ROUTE` (`sns`, the default, or
    /// `end-user-messaging`).
    pub sms_route: String,
    /// End User Messaging SMS from this origination identity and configuration
    /// (`TWOFA_SMS_ORIGINATION_IDENTITY`, …): the `end-user-messaging` route; None: no such route.
    pub sms_origin: Option<SmsOrigin>,
    /// What voice calls come from (an SMS Voice v2 phone number, its id or ARN, or a pool);
    /// without one the deployment places no calls (`channel=call` is a 400).
    pub voice_origination: Option<String>,
    /// WhatsApp's phone number and template (`TWOFA_WHATSAPP_PHONE_NUMBER_ID`, …); without
    /// them the deployment sends no WhatsApp (`channel=whatsapp` is a 400).
    pub whatsapp: Option<WhatsappOrigin>,
    /// The SES configuration set emails are sent in (delivery, bounce and complaint events).
    pub ses_configuration_set: Option<String>,
    /// The SMS Voice v2 configuration set calls are placed in (its event destination gives the
    /// calls' outcomes, the voice receipts); blank or unset: none.
    pub voice_configuration_set: Option<String>,
    /// The workflow state machine (`TWOFA_WORKFLOW_STATE_MACHINE_ARN`); without it workflows
    /// past their first step are not run.
    pub workflow_state_machine_arn: Option<String>,
    /// SMS through a provider of the customer's own instead of SNS (`TWOFA_SMS_PROVIDER_URL`,
    /// `_SECRET`, `_NAME`: `adapters::provider`).
    pub sms_provider: Option<ProviderConfig>,
    /// Partitions an account's fresh OTPs are spread over (`TWOFA_OTP_SHARDS`, a power of two
    /// up to 256, default 256; raise only: search reads this many).
    pub otp_shards: usize,
}

impl Config {
    pub fn from_env() -> Result<Self, BoxError> {
        let opt = |name: &str| std::env::var(name).ok().filter(|s| !s.is_empty());
        let (route, sms_origin) = sms_routes(opt)?;
        let sms_provider = ProviderConfig::sms_from_env(false)?;
        Ok(Config {
            table: std::env::var("TWOFA_TABLE").map_err(|_| "TWOFA_TABLE is not set")?,
            sms_sender_id: opt("TWOFA_SMS_SENDER_ID"),
            sms_route: sms_provider.as_ref().map_or(route.to_owned(), |p| p.name.clone()),
            sms_origin,
            voice_origination: opt("TWOFA_VOICE_ORIGINATION"),
            whatsapp: whatsapp_origin(opt)?,
            ses_configuration_set: opt("TWOFA_SES_CONFIGURATION_SET"),
            voice_configuration_set: opt("TWOFA_VOICE_CONFIGURATION_SET"),
            workflow_state_machine_arn: opt("TWOFA_WORKFLOW_STATE_MACHINE_ARN"),
            sms_provider,
            otp_shards: match opt("TWOFA_OTP_SHARDS") {
                None => crate::domain::ids::OTP_SHARDS,
                Some(n) => n
                    .parse()
                    .ok()
                    .filter(|&n| crate::domain::ids::valid_shard_count(n))
                    .ok_or("TWOFA_OTP_SHARDS must be a power of two from 1 to 256")?,
            },
        })
    }
}

/// The default SMS route `TWOFA_SMS_ROUTE` names (unset: `sns`), and End User Messaging's
/// origin when `TWOFA_SMS_ORIGINATION_IDENTITY` gives one (then a route tables can name, the
/// default or not), as `var` reads them.
fn sms_routes(var: impl Fn(&str) -> Option<String>) -> Result<(&'static str, Option<SmsOrigin>), BoxError> {
    let origin = var("TWOFA_SMS_ORIGINATION_IDENTITY").map(|origination_identity| SmsOrigin {
        origination_identity,
        configuration_set: var("TWOFA_SMS_CONFIGURATION_SET"),
        protect_configuration: var("TWOFA_SMS_PROTECT_CONFIGURATION"),
    });
    match var("TWOFA_SMS_ROUTE").as_deref() {
        None | Some(router::SNS) => Ok((router::SNS, origin)),
        Some(router::END_USER_MESSAGING) if origin.is_some() => Ok((router::END_USER_MESSAGING, origin)),
        Some(router::END_USER_MESSAGING) => {
            Err("TWOFA_SMS_ROUTE=end-user-messaging needs TWOFA_SMS_ORIGINATION_IDENTITY (a number, sender id or pool)"
                .into())
        }
        Some(_) => Err("TWOFA_SMS_ROUTE must be sns or end-user-messaging".into()),
    }
}

/// WhatsApp's setup, as `var` reads it: `TWOFA_WHATSAPP_PHONE_NUMBER_ID` (unset: no
/// WhatsApp) with `TWOFA_WHATSAPP_TEMPLATE`, `TWOFA_WHATSAPP_LANGUAGES` (comma-separated, default
/// `en_US`) and `TWOFA_WHATSAPP_META_API_VERSION`.
fn whatsapp_origin(var: impl Fn(&str) -> Option<String>) -> Result<Option<WhatsappOrigin>, BoxError> {
    let Some(phone_number_id) = var("TWOFA_WHATSAPP_PHONE_NUMBER_ID") else { return Ok(None) };
    let template = var("TWOFA_WHATSAPP_TEMPLATE")
        .ok_or("TWOFA_WHATSAPP_PHONE_NUMBER_ID needs TWOFA_WHATSAPP_TEMPLATE (an approved authentication template)")?;
    let languages: Vec<String> = var("TWOFA_WHATSAPP_LANGUAGES")
        .unwrap_or_else(|| "en_US".into())
        .split(',')
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    if languages.is_empty() {
        return Err("TWOFA_WHATSAPP_LANGUAGES must name at least one language".into());
    }
    Ok(Some(WhatsappOrigin {
        phone_number_id,
        template,
        languages,
        meta_api_version: var("TWOFA_WHATSAPP_META_API_VERSION").unwrap_or_else(|| DEFAULT_META_API_VERSION.into()),
    }))
}

/// The dispatcher of every channel: the deployment's routes (`routes`).
pub fn dispatcher(sdk: &aws_config::SdkConfig, config: &Config) -> Arc<dyn Dispatcher> {
    Arc::new(router::Router::new(routes(sdk, config)))
}

/// Every route this deployment has, each channel's default first, their clients built from
/// `sdk` with the delivery retries: SMS through SNS, End User Messaging SMS (with an
/// origination identity) and the customer's own provider (when configured); calls through End
/// User Messaging (with an origination); email through SES; WhatsApp through End User Messaging
/// Social (when configured).
pub fn routes(sdk: &aws_config::SdkConfig, config: &Config) -> Vec<Route> {
    let sdk = dispatch_config(sdk);
    let mut sms = vec![Route::new(
        router::SNS,
        Channel::Sms,
        Arc::new(SnsSms::new(aws_sdk_sns::Client::new(&sdk), config.sms_sender_id.clone())),
    )];
    if let Some(origin) = &config.sms_origin {
        let eum = EumSms::new(aws_sdk_pinpointsmsvoicev2::Client::new(&sdk), origin.clone());
        sms.push(Route::new(router::END_USER_MESSAGING, Channel::Sms, Arc::new(eum)));
    }
    if let Some(p) = &config.sms_provider {
        sms.push(Route::new(p.name.clone(), Channel::Sms, Arc::new(HttpProvider::new(p.clone()))));
    }
    // The default first.
    sms.sort_by_key(|r| r.name != config.sms_route);
    let mut routes = sms;
    if let Some(origination) = config.voice_origination.clone() {
        let calls = Calls {
            voices: Arc::new(PollyVoices::new(aws_sdk_polly::Client::new(&sdk)).usable(usable_voices())),
            placer: Arc::new(SmsVoiceCalls::new(
                aws_sdk_pinpointsmsvoicev2::Client::new(&sdk),
                origination,
                config.voice_configuration_set.clone(),
            )),
        };
        routes.push(Route::new(router::END_USER_MESSAGING, Channel::Call, Arc::new(calls)));
    }
    let ses = SesEmail::new(aws_sdk_ses::Client::new(&sdk), config.ses_configuration_set.clone());
    routes.push(Route::new(router::SES, Channel::Email, Arc::new(ses)));
    if let Some(origin) = config.whatsapp.clone() {
        let whatsapp = Whatsapp::new(aws_sdk_socialmessaging::Client::new(&sdk), origin);
        routes.push(Route::new(router::END_USER_MESSAGING_SOCIAL, Channel::Whatsapp, Arc::new(whatsapp)));
    }
    routes
}

/// What runs a workflow's later steps: Step Functions executions of the configured state
/// machine, or none.
pub fn scheduler(sdk: &aws_config::SdkConfig, config: &Config) -> Arc<dyn Scheduler> {
    match &config.workflow_state_machine_arn {
        Some(arn) => Arc::new(SfnScheduler::new(aws_sdk_sfn::Client::new(sdk), arn.clone())),
        None => Arc::new(NoScheduler),
    }
}

/// The keyring: from Secrets Manager (`TWOFA_SECRET_ARN`, the deployed path: one read of its
/// current version, which keeps the previous key inside) or from `TWOFA_SECRET_KEY` (hex, one key; local runs against emulators).
/// Never from the table.
pub async fn load_keys(sdk: &aws_config::SdkConfig) -> Result<Keys, BoxError> {
    if let Ok(arn) = std::env::var("TWOFA_SECRET_ARN") {
        let ring = crate::adapters::aws::secrets::SecretKeyring::new(aws_sdk_secretsmanager::Client::new(sdk), arn);
        return Ok(ring.load().await?);
    }
    let hex_key = std::env::var("TWOFA_SECRET_KEY").map_err(|_| "set TWOFA_SECRET_ARN or TWOFA_SECRET_KEY")?;
    let bytes = hex::decode(hex_key.trim()).map_err(|_| "TWOFA_SECRET_KEY must be hex")?;
    Keys::from_master(&bytes).map_err(|_| "TWOFA_SECRET_KEY must be at least 32 bytes".into())
}

/// Every adapter but the keys, built once per process: SDK clients are reused by all
/// invocations of this process.
#[derive(Clone)]
pub struct Parts {
    store: Arc<DynamoStore>,
    dispatcher: Arc<MeteredDispatcher>,
    scheduler: Arc<dyn Scheduler>,
}

impl Parts {
    pub fn with_keys(self, keys: Arc<Keys>) -> Deps {
        Deps {
            store: self.store,
            dispatcher: self.dispatcher,
            clock: Arc::new(SystemClock),
            keys,
            scheduler: self.scheduler,
        }
    }
}

/// What a function delivers with: its dispatcher and workflow scheduler, built from the SDK
/// configuration and the environment's `Config`.
pub type Delivery = fn(&aws_config::SdkConfig, &Config) -> (Arc<dyn Dispatcher>, Arc<dyn Scheduler>);

/// Every route and the configured scheduler: the API's functions.
pub fn delivering(sdk: &aws_config::SdkConfig, config: &Config) -> (Arc<dyn Dispatcher>, Arc<dyn Scheduler>) {
    (dispatcher(sdk, config), scheduler(sdk, config))
}

/// No route and no scheduler: a function that reads and manages but never sends (the
/// console). Its binary links none of the delivery clients (SNS, SES, SMS Voice v2, Social,
/// Polly, Step Functions), which keeps its zip and cold start small (README "Performance").
pub fn sending_nothing(_: &aws_config::SdkConfig, _: &Config) -> (Arc<dyn Dispatcher>, Arc<dyn Scheduler>) {
    (Arc::new(SendsNothing), Arc::new(NoScheduler))
}

/// The configuration from the environment and every adapter built from it but the keys, with
/// the SDK configuration the master secret is read with.
pub async fn parts_from_env() -> Result<(Parts, aws_config::SdkConfig), BoxError> {
    parts_from_env_with(delivering).await
}

/// `parts_from_env` with the function's own `Delivery`.
pub async fn parts_from_env_with(delivery: Delivery) -> Result<(Parts, aws_config::SdkConfig), BoxError> {
    let config = Config::from_env()?;
    let sdk = aws_config().await;
    let (dispatcher, scheduler) = delivery(&sdk, &config);
    // Every delivery attempt also writes a dispatch metric line (adapters::emf).
    let dispatcher = MeteredDispatcher::new(dispatcher, stdout_sink(), metrics_namespace());
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table).with_otp_shards(config.otp_shards);
    Ok((Parts { store: Arc::new(store), dispatcher: Arc::new(dispatcher), scheduler }, sdk))
}

/// What a function serves once the master secret has arrived. The secret's round trip (the
/// one network call of a cold start) starts at init and overlaps the first Runtime API poll
/// instead of delaying it; the first invocation waits for what is left of it. A secret that
/// cannot be read answers that invocation 503 (nothing was done) and is asked for again by the
/// next one, instead of failing the init.
///
/// The keyring is read again every `KEY_REFRESH_MS`, off the request's path (a request that
/// finds it due starts the read and goes on with the keys it has), so a rotated key reaches
/// every running function within that time, and a retired one leaves it.
pub struct AfterSecret<T> {
    first: std::sync::Mutex<Option<tokio::task::JoinHandle<Result<Keys, BoxError>>>>,
    load: Box<dyn Fn() -> BoxFuture<Result<Keys, BoxError>> + Send + Sync>,
    make: Box<dyn Fn(Arc<Keys>) -> T + Send + Sync>,
    ready: tokio::sync::OnceCell<T>,
    keys: std::sync::OnceLock<Arc<Keys>>,
    /// When the keyring was last read (or a read started), for the refresh.
    read_at: std::sync::Mutex<std::time::Instant>,
    refresh_every: std::time::Duration,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<T> AfterSecret<T> {
    /// Read the secret from `sdk`'s Secrets Manager (or the environment), starting now.
    pub fn start(sdk: &aws_config::SdkConfig, make: impl Fn(Arc<Keys>) -> T + Send + Sync + 'static) -> Self {
        let sdk = sdk.clone();
        Self::start_with(
            move || {
                Box::pin({
                    let sdk = sdk.clone();
                    async move { load_keys(&sdk).await }
                })
            },
            make,
        )
    }

    /// `start` with another source of the secret (tests).
    pub fn start_with(
        load: impl Fn() -> BoxFuture<Result<Keys, BoxError>> + Send + Sync + 'static,
        make: impl Fn(Arc<Keys>) -> T + Send + Sync + 'static,
    ) -> Self {
        let first = tokio::spawn(load());
        AfterSecret {
            first: std::sync::Mutex::new(Some(first)),
            load: Box::new(load),
            make: Box::new(make),
            ready: tokio::sync::OnceCell::new(),
            keys: std::sync::OnceLock::new(),
            read_at: std::sync::Mutex::new(std::time::Instant::now()),
            refresh_every: std::time::Duration::from_millis(KEY_REFRESH_MS as u64),
        }
    }

    /// `start_with`, reading the keyring again every `every` (tests).
    pub fn refreshing_every(mut self, every: std::time::Duration) -> Self {
        self.refresh_every = every;
        self
    }

    /// Start reading the keyring again when it is due; the keys in use are replaced when it
    /// arrives (a failed read keeps them, and is tried again after another period).
    fn refresh_if_due(&self) {
        let Some(keys) = self.keys.get() else { return };
        {
            let Ok(mut read_at) = self.read_at.lock() else { return };
            if read_at.elapsed() < self.refresh_every {
                return;
            }
            *read_at = std::time::Instant::now();
        }
        let (load, keys) = ((self.load)(), keys.clone());
        tokio::spawn(async move {
            match load.await {
                Ok(fresh) => keys.replace(fresh, KEY_RETIRE_GRACE_MS),
                Err(e) => tracing::warn!(error = %e, "the keyring was not read again; the keys in use stay"),
            }
        });
    }

    /// The value, made once; `Unavailable` while the secret cannot be read.
    pub async fn get(&self) -> crate::Result<&T> {
        self.refresh_if_due();
        self.ready
            .get_or_try_init(|| async {
                let first = self.first.lock().map_err(|_| crate::Error::Internal)?.take();
                let keys = match first {
                    Some(task) => task.await.unwrap_or_else(|_| Err("the master secret's task ended".into())),
                    None => (self.load)().await,
                };
                match keys {
                    Ok(keys) => {
                        let keys = Arc::new(keys);
                        let _ = self.keys.set(keys.clone());
                        *self.read_at.lock().map_err(|_| crate::Error::Internal)? = std::time::Instant::now();
                        Ok((self.make)(keys))
                    }
                    Err(e) => {
                        // `load_keys`' errors are fixed sentences: never the secret, nor the
                        // SDK's error (which may echo the request).
                        tracing::error!(error = %e, "the master secret is not available");
                        Err(crate::Error::Unavailable)
                    }
                }
            })
            .await
    }
}

/// The CloudWatch namespace of the EMF lines: `TWOFA_METRICS_NAMESPACE`, else `twofa`.
pub fn metrics_namespace() -> String {
    std::env::var("TWOFA_METRICS_NAMESPACE").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| NAMESPACE.to_owned())
}

/// Structured logs for CloudWatch; level from `RUST_LOG` (default info).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_current_span(false)
        .without_time()
        .try_init();
}

/// The caller's IP from API Gateway's request context, for accounts with an IP allow-list.
pub fn with_client_ip(mut req: lambda_http::Request) -> lambda_http::Request {
    let ip = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.identity.source_ip.clone(),
        _ => None,
    };
    if let Some(ip) = ip.and_then(|ip| ip.parse().ok()) {
        req.extensions_mut().insert(ClientIp(ip));
    }
    req
}

/// Tracing, adapters, then serve `router` for the life of the process (from the first
/// invocation on, once the master secret has arrived: `AfterSecret`).
pub async fn run(router: fn(Deps) -> Router) -> Result<(), BoxError> {
    run_with(router, delivering).await
}

/// `run` with the function's own `Delivery` (`sending_nothing` for the console).
pub async fn run_with(router: fn(Deps) -> Router, delivery: Delivery) -> Result<(), BoxError> {
    init_tracing();
    let (parts, sdk) = parts_from_env_with(delivery).await?;
    let app = Arc::new(AfterSecret::start(&sdk, move |keys| {
        crate::http::metrics::with_metrics(router(parts.clone().with_keys(keys)), stdout_sink(), metrics_namespace())
    }));
    let service =
        tower::ServiceBuilder::new().map_request(uri_safe).service(lambda_http::Adapter::from(after_secret(app)));
    lambda_runtime::run(service).await
}

/// An API Gateway event whose `rawPath` and `rawQueryString` are a URI's. `lambda_http`
/// builds the request's URI from them as given and panics when that is no URI (a raw space,
/// a quote or a non-ASCII byte, which API Gateway passes through); with `panic = "abort"` that
/// ended the process, a cold start per such request. Every byte a URI may not hold is
/// percent-encoded instead: the router decodes it back to the same text, so the request gets
/// its right answer or a 4xx.
pub fn uri_safe(
    mut event: lambda_http::LambdaEvent<lambda_http::request::LambdaRequest>,
) -> lambda_http::LambdaEvent<lambda_http::request::LambdaRequest> {
    if let lambda_http::request::LambdaRequest::ApiGatewayV2(req) = &mut event.payload {
        for part in [&mut req.raw_path, &mut req.raw_query_string].into_iter().flatten() {
            if let Some(safe) = crate::http::params::uri_escaped(part) {
                *part = safe;
            }
        }
    }
    event
}

/// The Lambda service: each request goes to the app once the secret has arrived, else answers
/// 503 (`Unavailable`) in the API's error shape.
pub fn after_secret(
    app: Arc<AfterSecret<Router>>,
) -> impl tower::Service<
    lambda_http::Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone {
    tower::service_fn(move |req: lambda_http::Request| {
        let app = app.clone();
        async move {
            let req = with_client_ip(req);
            Ok(match app.get().await {
                Ok(app) => tower::ServiceExt::oneshot(app.clone(), req).await?,
                Err(e) => axum::response::IntoResponse::into_response(crate::http::error::ApiError::from(e)),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn sms_go_through_sns_unless_end_user_messaging_is_named_and_it_is_a_route_with_an_origination_identity() {
        use super::{sms_routes, SmsOrigin};
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(sms_routes(vars(&[])).unwrap(), ("sns", None), "the default stays SNS");
        assert_eq!(sms_routes(vars(&[("TWOFA_SMS_ROUTE", "sns")])).unwrap(), ("sns", None));
        let origin = SmsOrigin {
            origination_identity: "pool-1".into(),
            configuration_set: Some("twofa-sms".into()),
            protect_configuration: None,
        };
        let eum = sms_routes(vars(&[
            ("TWOFA_SMS_ROUTE", "end-user-messaging"),
            ("TWOFA_SMS_ORIGINATION_IDENTITY", "pool-1"),
            ("TWOFA_SMS_CONFIGURATION_SET", "twofa-sms"),
        ]));
        assert_eq!(eum.unwrap(), ("end-user-messaging", Some(origin.clone())));
        // An origination identity alone: SNS stays the default, End User Messaging a route
        let beside = sms_routes(vars(&[
            ("TWOFA_SMS_ORIGINATION_IDENTITY", "pool-1"),
            ("TWOFA_SMS_CONFIGURATION_SET", "twofa-sms"),
        ]));
        assert_eq!(beside.unwrap(), ("sns", Some(origin)));
        let missing = sms_routes(vars(&[("TWOFA_SMS_ROUTE", "end-user-messaging")])).unwrap_err();
        assert!(missing.to_string().contains("TWOFA_SMS_ORIGINATION_IDENTITY"), "{missing}");
        assert!(sms_routes(vars(&[("TWOFA_SMS_ROUTE", "pigeon")])).is_err());
    }

    #[test]
    fn whatsapp_is_off_without_a_phone_number_id_and_needs_its_template_with_one() {
        use super::{whatsapp_origin, WhatsappOrigin};
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(whatsapp_origin(vars(&[])).unwrap(), None);
        let missing = whatsapp_origin(vars(&[("TWOFA_WHATSAPP_PHONE_NUMBER_ID", "phone-number-id-1")])).unwrap_err();
        assert!(missing.to_string().contains("TWOFA_WHATSAPP_TEMPLATE"), "{missing}");
        let on = whatsapp_origin(vars(&[
            ("TWOFA_WHATSAPP_PHONE_NUMBER_ID", "phone-number-id-1"),
            ("TWOFA_WHATSAPP_TEMPLATE", "twofa_code"),
            ("TWOFA_WHATSAPP_LANGUAGES", "en_US, es"),
        ]));
        assert_eq!(
            on.unwrap(),
            Some(WhatsappOrigin {
                phone_number_id: "phone-number-id-1".into(),
                template: "twofa_code".into(),
                languages: vec!["en_US".into(), "es".into()],
                meta_api_version: "v20.0".into(),
            })
        );
    }

    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    /// A secret source that fails its first `failures` reads, counting every read.
    fn source(
        failures: usize,
        reads: Arc<AtomicUsize>,
    ) -> impl Fn() -> BoxFuture<Result<Keys, BoxError>> + Send + Sync {
        move || {
            let n = reads.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n < failures {
                    Err("Secrets Manager is down".into())
                } else {
                    Ok(Keys::from_master(&[7u8; 32]).expect("keys"))
                }
            })
        }
    }

    fn hello(_: Arc<Keys>) -> Router {
        Router::new().route("/hello", get(|| async { "hello" }))
    }

    async fn call(app: &Arc<AfterSecret<Router>>) -> (u16, String) {
        let req = lambda_http::http::Request::get("/hello").body(lambda_http::Body::Empty).expect("request");
        let resp = after_secret(app.clone()).oneshot(req).await.expect("infallible");
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.expect("body");
        (status, String::from_utf8(body.to_vec()).expect("utf-8"))
    }

    #[tokio::test]
    async fn an_unreadable_secret_answers_503_and_is_read_again_by_the_next_request() {
        // Given a secret whose first read fails
        let reads = Arc::new(AtomicUsize::new(0));
        let app = Arc::new(AfterSecret::start_with(source(1, reads.clone()), hello));
        // When the first request comes, then it answers the API's 503, nothing served
        let (status, body) = call(&app).await;
        assert_eq!(status, 503);
        assert_eq!(body, r#"{"code":503,"message":"Service unavailable, retry","requestID":null}"#);
        // And the next request reads the secret again and is served
        assert_eq!(call(&app).await, (200, "hello".to_owned()));
        assert_eq!(call(&app).await, (200, "hello".to_owned()));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_secret_is_read_once_at_start_and_the_app_made_once_for_concurrent_first_requests() {
        // Given a readable secret, read from the start
        let (reads, makes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let counted = makes.clone();
        let app = Arc::new(AfterSecret::start_with(source(0, reads.clone()), move |keys| {
            counted.fetch_add(1, Ordering::SeqCst);
            hello(keys)
        }));
        // When 16 first requests come at once
        let answers = futures::future::join_all((0..16).map(|_| call(&app))).await;
        // Then every one is served, by one read of the secret and one app
        assert!(answers.iter().all(|a| a == &(200, "hello".to_owned())), "{answers:?}");
        assert_eq!((reads.load(Ordering::SeqCst), makes.load(Ordering::SeqCst)), (1, 1));
    }

    #[tokio::test]
    async fn a_rotated_keyring_reaches_a_running_function_without_a_restart_and_a_failed_read_keeps_the_keys() {
        use crate::domain::crypto::MasterKey;
        // Given a function serving with key 1, whose keyring is read again every 20 ms, and a
        // source whose second read fails and third read holds key 2 as well
        let reads = Arc::new(AtomicUsize::new(0));
        let counted = reads.clone();
        let load = move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let key = |kid: u8, fill: u8| MasterKey::new(kid, i64::from(kid), vec![fill; 32]).expect("key");
                match n {
                    0 => Ok(Keys::from_ring(vec![key(1, 1)]).expect("ring")),
                    1 => Err("Secrets Manager is down".into()),
                    _ => Ok(Keys::from_ring(vec![key(1, 1), key(2, 2)]).expect("ring")),
                }
            }) as BoxFuture<Result<Keys, BoxError>>
        };
        let seen = Arc::new(std::sync::Mutex::new(None::<Arc<Keys>>));
        let kept = seen.clone();
        let app = Arc::new(
            AfterSecret::start_with(load, move |keys| {
                *kept.lock().unwrap() = Some(keys.clone());
                hello(keys)
            })
            .refreshing_every(std::time::Duration::from_millis(20)),
        );
        assert_eq!(call(&app).await.0, 200);
        let keys = seen.lock().unwrap().clone().expect("made");
        assert_eq!(keys.writer_kid(), 1);
        // When requests keep coming past two refresh periods
        for _ in 0..2 {
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            assert_eq!(call(&app).await.0, 200, "a failed read answers nothing but what it did");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // Then the failed read kept key 1, and the next one put key 2 in use, in the same app
        assert_eq!(reads.load(Ordering::SeqCst), 3);
        assert_eq!(keys.writer_kid(), 2);
    }
}
