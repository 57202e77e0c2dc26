//! AWS adapters: the DynamoDB store, SNS or End User Messaging (SMS) and SES (email)
//! dispatchers, and the dispatcher that routes each message to its channel's.

pub mod dynamodb;
pub mod eum_sms;
pub mod polly;
pub mod secrets;
pub mod ses;
pub mod sfn;
pub mod sns;
pub mod sqs;
pub mod voice;
pub mod whatsapp;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};

use crate::{
    domain::{otp::Channel, voice::Voice},
    ports::{CallPlacer, DispatchError, DispatchReceipt, Dispatcher, OutboundMessage, VoiceCatalog},
};

/// How long one attempt of any SDK call may take (connect, send, read the whole answer).
/// DynamoDB, SNS and SES answer in tens of milliseconds from inside the region.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(600);
/// Attempts of one call (the first and one retry, for throttling, 5xx and timeouts).
pub const MAX_ATTEMPTS: u32 = 2;
/// One call, every attempt and the backoff between them included: a dependency that hangs
/// costs a request at most this per call before it answers 503.
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(1200);
/// Opening a connection (TCP + TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(400);

/// The timeouts every SDK client shares: the constants above, unless
/// `TWOFA_AWS_CONNECT_TIMEOUT_MS` / `TWOFA_AWS_ATTEMPT_TIMEOUT_MS` /
/// `TWOFA_AWS_OPERATION_TIMEOUT_MS` say otherwise (a slow emulator on a loaded machine, which
/// accepts a search's dozens of connections slowly; the fault tests use the constants).
pub fn timeout_config() -> aws_config::timeout::TimeoutConfig {
    let ms = |var: &str, default: Duration| {
        std::env::var(var).ok().and_then(|v| v.parse().ok()).map(Duration::from_millis).unwrap_or(default)
    };
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(ms("TWOFA_AWS_CONNECT_TIMEOUT_MS", CONNECT_TIMEOUT))
        .operation_attempt_timeout(ms("TWOFA_AWS_ATTEMPT_TIMEOUT_MS", ATTEMPT_TIMEOUT))
        .operation_timeout(ms("TWOFA_AWS_OPERATION_TIMEOUT_MS", OPERATION_TIMEOUT))
        .build()
}

/// Attempts of one provider call (SNS, SES, SMS Voice): throttling and transient faults are
/// retried with the SDK's jittered exponential backoff, within `DISPATCH_OPERATION_TIMEOUT`.
pub const DISPATCH_MAX_ATTEMPTS: u32 = 3;
pub const DISPATCH_OPERATION_TIMEOUT: Duration = Duration::from_millis(1500);

/// `sdk` for the clients that deliver messages: up to 3 attempts in 1.5 s (the attempt and
/// operation timeouts can be raised with `TWOFA_AWS_ATTEMPT_TIMEOUT_MS` /
/// `TWOFA_AWS_OPERATION_TIMEOUT_MS`, for a slow emulator).
pub fn dispatch_config(sdk: &aws_config::SdkConfig) -> aws_config::SdkConfig {
    let env = timeout_config();
    let operation = match std::env::var("TWOFA_AWS_OPERATION_TIMEOUT_MS") {
        Ok(_) => env.operation_timeout().unwrap_or(DISPATCH_OPERATION_TIMEOUT),
        Err(_) => DISPATCH_OPERATION_TIMEOUT,
    };
    dispatch_config_with(sdk, env.operation_attempt_timeout().unwrap_or(ATTEMPT_TIMEOUT), operation)
}

/// `dispatch_config` with these timeouts; backoff 50–400 ms, full jitter (the SDK's standard
/// retry: throttling, transient errors, 5xx and timeouts).
pub fn dispatch_config_with(
    sdk: &aws_config::SdkConfig,
    attempt: Duration,
    operation: Duration,
) -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(attempt)
        .operation_timeout(operation)
        .build();
    sdk.to_builder()
        .timeout_config(timeouts)
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(DISPATCH_MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(50))
                .with_max_backoff(Duration::from_millis(400)),
        )
        .build()
}

/// The production timeouts, whatever the environment says.
pub fn production_timeout_config() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// The SDK configuration from the environment: region, credentials, and `AWS_ENDPOINT_URL`
/// (moto, LocalStack) when set, with the one HTTP client (hyper 1, rustls with ring) and the
/// timeouts and bounded retries every client shares. Call it once per process and build every
/// client from it.
///
/// Not cached in a static on purpose: the HTTP connection pool inside belongs to the Tokio
/// runtime that first used it, and tests run one runtime each.
pub async fn aws_config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider, TlsContext};
    let tls =
        TlsContext::builder().with_trust_store(trust_store(std::env::var("TWOFA_TLS_ROOTS").ok().as_deref())).build();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls.expect("a TLS context from a trust store"))
        .build_https();
    let retry = aws_config::retry::RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(20))
        .with_max_backoff(Duration::from_millis(100));
    if let Some(env) = LambdaEnv::read() {
        return env.sdk_config(http, timeout_config(), retry);
    }
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeout_config())
        .retry_config(retry)
        .load()
        .await
}

/// What a Lambda execution environment says in its variables: the region, the function's
/// role credentials, and an endpoint override (moto under `cargo lambda watch`). There the
/// default chain's providers (profile files, SSO, web identity, ECS, IMDS) only spend init
/// time (~0.3 ms, `make bench`'s init parts) to find what these variables already say.
struct LambdaEnv {
    region: String,
    credentials: aws_credential_types::Credentials,
    endpoint_url: Option<String>,
}

impl LambdaEnv {
    /// None outside Lambda, or where anything else could change the outcome (a profile, a
    /// per-service endpoint variable): then the default chain decides, as everywhere else.
    fn read() -> Option<Self> {
        Self::from_vars(
            std::env::vars_os().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())),
        )
    }

    fn from_vars(vars: impl Iterator<Item = (String, String)>) -> Option<Self> {
        let vars: std::collections::HashMap<String, String> = vars.filter(|(_, v)| !v.is_empty()).collect();
        let var = |name: &str| vars.get(name).cloned();
        var("AWS_LAMBDA_FUNCTION_NAME")?;
        let other_source = vars.keys().any(|name| {
            name.starts_with("AWS_ENDPOINT_URL_")
                || matches!(name.as_str(), "AWS_PROFILE" | "AWS_CONFIG_FILE" | "AWS_SHARED_CREDENTIALS_FILE")
        });
        if other_source {
            return None;
        }
        let credentials = aws_credential_types::Credentials::new(
            var("AWS_ACCESS_KEY_ID")?,
            var("AWS_SECRET_ACCESS_KEY")?,
            var("AWS_SESSION_TOKEN"),
            None,
            "Environment",
        );
        Some(LambdaEnv { region: var("AWS_REGION")?, credentials, endpoint_url: var("AWS_ENDPOINT_URL") })
    }

    fn sdk_config(
        self,
        http: aws_smithy_runtime_api::client::http::SharedHttpClient,
        timeouts: aws_config::timeout::TimeoutConfig,
        retry: aws_config::retry::RetryConfig,
    ) -> aws_config::SdkConfig {
        use aws_credential_types::provider::SharedCredentialsProvider;
        let mut builder = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.region))
            .credentials_provider(SharedCredentialsProvider::new(self.credentials))
            .http_client(http)
            .timeout_config(timeouts)
            .retry_config(retry)
            .sleep_impl(aws_smithy_async::rt::sleep::default_async_sleep().expect("the Tokio sleep"))
            .time_source(aws_smithy_async::time::SharedTimeSource::default());
        builder.set_endpoint_url(self.endpoint_url);
        builder.build()
    }
}

/// Amazon Trust Services' root CAs, which the endpoints of every AWS service chain to.
const AMAZON_ROOTS: &[u8] = include_bytes!("amazon-trust-services-roots.pem");

/// What the SDK's clients trust: Amazon's five roots, not the system's ~150, which the SDK
/// reads and parses from disk at every cold start (~2 ms, for no endpoint the functions call;
/// and no other CA can vouch for an AWS endpoint). `TWOFA_TLS_ROOTS=system` trusts the
/// system's roots instead (a TLS-inspecting proxy with its own CA, a partition with others).
fn trust_store(setting: Option<&str>) -> aws_smithy_http_client::tls::TrustStore {
    use aws_smithy_http_client::tls::TrustStore;
    match setting {
        Some("system") => TrustStore::default(),
        _ => TrustStore::empty().with_pem_certificate(AMAZON_ROOTS),
    }
}

/// Voice calls: the voices they can be read in, and what places them.
pub struct Calls {
    pub voices: Arc<dyn VoiceCatalog>,
    pub placer: Arc<dyn CallPlacer>,
}

/// Calls as a route: `place_call` on `placer`, in the voices `voices` has.
#[async_trait]
impl Dispatcher for Calls {
    fn delivers(&self, channel: Channel) -> bool {
        channel == Channel::Call
    }

    async fn voices(&self) -> Result<Arc<Vec<Voice>>, DispatchError> {
        self.voices.voices().await
    }

    async fn dispatch(&self, msg: &OutboundMessage<'_>) -> Result<DispatchReceipt, DispatchError> {
        self.placer.place_call(msg).await
    }
}

/// A provider call that got no service error back: `Unconfirmed` when the request may have
/// reached the provider (no answer in time, or an answer we could not read), `Unavailable` when
/// it failed on the way (no connection, a request that could not be made). An I/O error
/// mid-request counts as on the way: the SDK itself retries it on the same route.
pub(crate) fn unanswered<E, R>(e: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> DispatchError {
    use aws_smithy_runtime_api::client::result::SdkError;
    match e {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => DispatchError::Unconfirmed,
        SdkError::DispatchFailure(f) if f.is_timeout() => DispatchError::Unconfirmed,
        _ => DispatchError::Unavailable,
    }
}

/// A provider error the SDK has no variant for: throttling, transient codes and 5xx mean try
/// later (the send is undone); any other 4xx is a refusal of this message.
pub(crate) fn unmodeled_is_refusal(code: Option<&str>, status: Option<u16>) -> bool {
    let transient_code = code.is_some_and(|c| THROTTLING_ERRORS.contains(&c) || TRANSIENT_ERRORS.contains(&c));
    let status_says_refused = status.is_some_and(|s| (400..500).contains(&s) && s != 429 && s != 408);
    !transient_code && status_says_refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_trusts_amazon_trust_services_roots_unless_told_to_trust_the_systems() {
        use rustls_pki_types::{pem::PemObject, CertificateDer};
        use sha2::{Digest, Sha256};
        // Given the bundled roots, when they are parsed, then they are exactly Amazon Root CA
        // 1-4 and Starfield Services Root G2, by the fingerprints Amazon publishes.
        let fingerprints: Vec<String> = CertificateDer::pem_slice_iter(AMAZON_ROOTS)
            .map(|der| hex::encode(Sha256::digest(der.expect("a PEM certificate"))))
            .collect();
        assert_eq!(
            fingerprints,
            [
                "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e",
                "1ba5b2aa8c65401a82960118f80bec4f62304d83cec4713a19c39c011ea46db4",
                "18ce6cfe7bf14e60b2e347b8dfe868cb31d02ebb3ada271569f50343b46db3a4",
                "e35d28419ed02025cfa69038cd623962458da5c695fbdea3c22b0bfb25897092",
                "568d6905a2c88708a4b3025190edcfedb1974a606a13c6e5290fcb2ae63edab5",
            ]
        );
        let system = format!("{:?}", trust_store(Some("system")));
        let amazon = format!("{:?}", trust_store(None));
        assert!(system.contains("enable_native_roots: true"), "{system}");
        assert!(amazon.contains("enable_native_roots: false"), "{amazon}");
    }

    #[test]
    fn throttling_and_server_errors_are_not_refusals() {
        assert!(!unmodeled_is_refusal(Some("Throttling"), Some(400)));
        assert!(!unmodeled_is_refusal(Some("Whatever"), Some(503)));
        assert!(!unmodeled_is_refusal(None, None));
        assert!(unmodeled_is_refusal(Some("OptedOut"), Some(400)));
    }

    fn lambda(extra: &[(&str, &str)]) -> Option<LambdaEnv> {
        let base = [
            ("AWS_LAMBDA_FUNCTION_NAME", "twofa-otp"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
        ];
        LambdaEnv::from_vars(base.iter().chain(extra).map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn in_lambda_the_region_credentials_and_endpoint_come_from_the_variables() {
        let env = lambda(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")]).expect("the Lambda path");
        assert_eq!(env.region, "eu-west-1");
        assert_eq!(env.credentials.access_key_id(), "AKID");
        assert_eq!(env.credentials.session_token(), Some("token"));
        assert_eq!(env.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        let sdk = env.sdk_config(
            aws_smithy_http_client::Builder::new().build_http(),
            production_timeout_config(),
            aws_config::retry::RetryConfig::standard(),
        );
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:5000"));
        assert!(sdk.credentials_provider().is_some() && sdk.sleep_impl().is_some());
    }

    #[test]
    fn outside_lambda_or_with_anything_the_default_chain_reads_it_decides() {
        assert!(LambdaEnv::from_vars([("AWS_REGION".to_string(), "eu-west-1".to_string())].into_iter()).is_none());
        assert!(lambda(&[("AWS_PROFILE", "admin")]).is_none());
        assert!(lambda(&[("AWS_ENDPOINT_URL_PINPOINT_SMS_VOICE_V2", "http://127.0.0.1:9")]).is_none());
        let without_token = [("AWS_LAMBDA_FUNCTION_NAME", "f"), ("AWS_REGION", "r"), ("AWS_ACCESS_KEY_ID", "a")];
        let no_secret = without_token.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        assert!(LambdaEnv::from_vars(no_secret).is_none(), "no secret key: the default chain says why");
    }
}
