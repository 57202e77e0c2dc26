//! AWS adapters: the DynamoDB store, SNS (SMS) and SES (email) dispatchers, and the
//! dispatcher that routes each message to its channel's.

pub mod dynamodb;
pub mod polly;
pub mod ses;
pub mod sfn;
pub mod sns;
pub mod sqs;
pub mod voice;

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
/// `TWOFA_AWS_ATTEMPT_TIMEOUT_MS` / `TWOFA_AWS_OPERATION_TIMEOUT_MS` say otherwise (a slow
/// emulator on a loaded machine; the fault tests use the constants).
pub fn timeout_config() -> aws_config::timeout::TimeoutConfig {
    let ms = |var: &str, default: Duration| {
        std::env::var(var).ok().and_then(|v| v.parse().ok()).map(Duration::from_millis).unwrap_or(default)
    };
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
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
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeout_config())
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(20))
                .with_max_backoff(Duration::from_millis(100)),
        )
        .load()
        .await
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

/// Routes each message to the dispatcher of its channel.
pub struct ChannelDispatcher {
    pub sms: Arc<dyn Dispatcher>,
    pub email: Arc<dyn Dispatcher>,
    /// Voice calls, when an origination identity is configured.
    pub call: Option<Calls>,
}

#[async_trait]
impl Dispatcher for ChannelDispatcher {
    fn delivers(&self, channel: Channel) -> bool {
        channel != Channel::Call || self.call.is_some()
    }

    async fn voices(&self) -> Result<Arc<Vec<Voice>>, DispatchError> {
        match &self.call {
            Some(calls) => calls.voices.voices().await,
            None => Ok(Arc::new(Vec::new())),
        }
    }

    async fn dispatch(&self, msg: &OutboundMessage) -> Result<DispatchReceipt, DispatchError> {
        match msg.channel {
            Channel::Sms => self.sms.dispatch(msg).await,
            Channel::Email => self.email.dispatch(msg).await,
            Channel::Call => match &self.call {
                Some(calls) => calls.placer.place_call(msg).await,
                None => Err(DispatchError::Rejected {
                    code: "CALL_UNSUPPORTED".into(),
                    message: "voice calls are not configured".into(),
                }),
            },
        }
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

    struct Fixed(&'static str);

    #[async_trait]
    impl Dispatcher for Fixed {
        async fn dispatch(&self, _: &OutboundMessage) -> Result<DispatchReceipt, DispatchError> {
            Ok(DispatchReceipt { provider_id: self.0.into() })
        }
    }

    fn msg(channel: Channel) -> OutboundMessage {
        OutboundMessage {
            request_id: "OTP1".into(),
            event_sid: "OTE1".into(),
            channel,
            from: "Twofa".into(),
            to: "+14155550100".into(),
            subject: None,
            text: "123456".into(),
            html: None,
            ssml: None,
            voice_id: None,
            language: "en-US".into(),
            voice: None,
            repeat: 1,
        }
    }

    #[tokio::test]
    async fn each_channel_goes_to_its_dispatcher_and_calls_need_a_placer() {
        let d = ChannelDispatcher { sms: Arc::new(Fixed("sms")), email: Arc::new(Fixed("email")), call: None };
        assert_eq!(d.dispatch(&msg(Channel::Sms)).await.unwrap().provider_id, "sms");
        assert_eq!(d.dispatch(&msg(Channel::Email)).await.unwrap().provider_id, "email");
        assert!(d.delivers(Channel::Sms) && d.delivers(Channel::Email) && !d.delivers(Channel::Call));
        assert_eq!(
            d.dispatch(&msg(Channel::Call)).await,
            Err(DispatchError::Rejected {
                code: "CALL_UNSUPPORTED".into(),
                message: "voice calls are not configured".into()
            })
        );
    }

    #[test]
    fn throttling_and_server_errors_are_not_refusals() {
        assert!(!unmodeled_is_refusal(Some("Throttling"), Some(400)));
        assert!(!unmodeled_is_refusal(Some("Whatever"), Some(503)));
        assert!(!unmodeled_is_refusal(None, None));
        assert!(unmodeled_is_refusal(Some("OptedOut"), Some(400)));
    }
}
