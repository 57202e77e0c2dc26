//! The Lambda entry: build the AWS adapters once per process, then serve a router through
//! `lambda_http`. Each `functions/<group>/src/main.rs` is one call to `run`.

use std::sync::Arc;

use axum::Router;
use lambda_http::{request::RequestContext, RequestExt};

use crate::{
    adapters::aws::{
        aws_config, dispatch_config,
        dynamodb::DynamoStore,
        polly::PollyVoices,
        ses::SesEmail,
        sfn::SfnScheduler,
        sns::SnsSms,
        voice::{usable_voices, SmsVoiceCalls},
        Calls, ChannelDispatcher,
    },
    adapters::emf::{stdout_sink, MeteredDispatcher, NAMESPACE},
    domain::crypto::Keys,
    http::auth::ClientIp,
    ports::{Deps, NoScheduler, Scheduler, SystemClock},
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Configuration, read once from the environment.
pub struct Config {
    pub table: String,
    pub sms_sender_id: Option<String>,
    /// What voice calls come from (an SMS Voice v2 phone number, its id or ARN, or a pool);
    /// without one the deployment places no calls (`channel=call` is a 400).
    pub voice_origination: Option<String>,
    /// The SES configuration set emails are sent in (delivery, bounce and complaint events).
    pub ses_configuration_set: Option<String>,
    /// The SMS Voice v2 configuration set calls are placed in (its event destination gives the
    /// calls' outcomes, the voice receipts); blank or unset: none.
    pub voice_configuration_set: Option<String>,
    /// The workflow state machine (`TWOFA_WORKFLOW_STATE_MACHINE_ARN`); without it workflows
    /// past their first step are not run.
    pub workflow_state_machine_arn: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, BoxError> {
        let opt = |name: &str| std::env::var(name).ok().filter(|s| !s.is_empty());
        Ok(Config {
            table: std::env::var("TWOFA_TABLE").map_err(|_| "TWOFA_TABLE is not set")?,
            sms_sender_id: opt("TWOFA_SMS_SENDER_ID"),
            voice_origination: opt("TWOFA_VOICE_ORIGINATION"),
            ses_configuration_set: opt("TWOFA_SES_CONFIGURATION_SET"),
            voice_configuration_set: opt("TWOFA_VOICE_CONFIGURATION_SET"),
            workflow_state_machine_arn: opt("TWOFA_WORKFLOW_STATE_MACHINE_ARN"),
        })
    }
}

/// The dispatcher of every channel, its clients built from `sdk` with the delivery retries.
pub fn dispatcher(sdk: &aws_config::SdkConfig, config: &Config) -> ChannelDispatcher {
    let sdk = dispatch_config(sdk);
    let call = config.voice_origination.clone().map(|origination| Calls {
        voices: Arc::new(PollyVoices::new(aws_sdk_polly::Client::new(&sdk)).usable(usable_voices())),
        placer: Arc::new(SmsVoiceCalls::new(
            aws_sdk_pinpointsmsvoicev2::Client::new(&sdk),
            origination,
            config.voice_configuration_set.clone(),
        )),
    });
    ChannelDispatcher {
        sms: Arc::new(SnsSms::new(aws_sdk_sns::Client::new(&sdk), config.sms_sender_id.clone())),
        email: Arc::new(SesEmail::new(aws_sdk_ses::Client::new(&sdk), config.ses_configuration_set.clone())),
        call,
    }
}

/// What runs a workflow's later steps: Step Functions executions of the configured state
/// machine, or none.
pub fn scheduler(sdk: &aws_config::SdkConfig, config: &Config) -> Arc<dyn Scheduler> {
    match &config.workflow_state_machine_arn {
        Some(arn) => Arc::new(SfnScheduler::new(aws_sdk_sfn::Client::new(sdk), arn.clone())),
        None => Arc::new(NoScheduler),
    }
}

/// The master secret: from Secrets Manager (`TWOFA_SECRET_ARN`, the deployed path) or from
/// `TWOFA_SECRET_KEY` (hex; local runs against emulators). Never from the table.
pub async fn load_keys(sdk: &aws_config::SdkConfig) -> Result<Keys, BoxError> {
    if let Ok(arn) = std::env::var("TWOFA_SECRET_ARN") {
        let client = aws_sdk_secretsmanager::Client::new(sdk);
        let out = client.get_secret_value().secret_id(arn).send().await.map_err(|_| "cannot read the master secret")?;
        let secret = out.secret_string().ok_or("the master secret is not a string")?;
        return Keys::from_master(secret.as_bytes()).map_err(|_| "the master secret is shorter than 32 bytes".into());
    }
    let hex_key = std::env::var("TWOFA_SECRET_KEY").map_err(|_| "set TWOFA_SECRET_ARN or TWOFA_SECRET_KEY")?;
    let bytes = hex::decode(hex_key.trim()).map_err(|_| "TWOFA_SECRET_KEY must be hex")?;
    Keys::from_master(&bytes).map_err(|_| "TWOFA_SECRET_KEY must be at least 32 bytes".into())
}

/// Every adapter, built once: SDK clients are reused by all invocations of this process.
pub async fn deps_from_env() -> Result<Deps, BoxError> {
    let config = Config::from_env()?;
    let sdk = aws_config().await;
    // The secret's round trip is the one network call of a cold start: the other adapters are
    // built on this thread while it is in flight on a worker.
    let keys = tokio::spawn({
        let sdk = sdk.clone();
        async move { load_keys(&sdk).await }
    });
    // Every delivery attempt also writes a dispatch metric line (adapters::emf).
    let dispatcher = MeteredDispatcher::new(Arc::new(dispatcher(&sdk, &config)), stdout_sink(), metrics_namespace());
    let scheduler = scheduler(&sdk, &config);
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table);
    let keys = keys.await.map_err(|_| "the master secret's task ended")??;
    Ok(Deps {
        store: Arc::new(store),
        dispatcher: Arc::new(dispatcher),
        clock: Arc::new(SystemClock),
        keys: Arc::new(keys),
        scheduler,
    })
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

/// Tracing, adapters, then serve `router` for the life of the process.
pub async fn run(router: fn(Deps) -> Router) -> Result<(), BoxError> {
    init_tracing();
    let deps = deps_from_env().await?;
    let app = crate::http::metrics::with_metrics(router(deps), stdout_sink(), metrics_namespace());
    let app = tower::ServiceBuilder::new().map_request(with_client_ip).service(app);
    lambda_http::run(app).await
}
