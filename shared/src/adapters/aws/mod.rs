//! AWS adapters: the DynamoDB store, SNS (SMS) and SES (email) dispatchers, and the
//! dispatcher that routes each message to its channel's.

pub mod dynamodb;
pub mod ses;
pub mod sns;

use std::sync::Arc;

use async_trait::async_trait;
use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};

use crate::{
    domain::otp::Channel,
    ports::{DispatchError, DispatchReceipt, Dispatcher, OutboundMessage},
};

/// The SDK configuration from the environment: region, credentials, and `AWS_ENDPOINT_URL`
/// (moto, LocalStack) when set. Call it once per process and build every client from it.
///
/// Not cached in a static on purpose: the HTTP connection pool inside belongs to the Tokio
/// runtime that first used it, and tests run one runtime each.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// Routes each message to the dispatcher of its channel.
pub struct ChannelDispatcher {
    pub sms: Arc<dyn Dispatcher>,
    pub email: Arc<dyn Dispatcher>,
    /// Voice calls, when a call placer is configured.
    pub call: Option<Arc<dyn Dispatcher>>,
}

#[async_trait]
impl Dispatcher for ChannelDispatcher {
    fn delivers(&self, channel: Channel) -> bool {
        channel != Channel::Call || self.call.is_some()
    }

    async fn dispatch(&self, msg: &OutboundMessage) -> Result<DispatchReceipt, DispatchError> {
        match msg.channel {
            Channel::Sms => self.sms.dispatch(msg).await,
            Channel::Email => self.email.dispatch(msg).await,
            Channel::Call => match &self.call {
                Some(call) => call.dispatch(msg).await,
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
