//! Email through SES `SendEmail`: a text part and a small HTML part from a verified sender, in
//! the configuration set the deployment names (its delivery, bounce and complaint events).

use async_trait::async_trait;
use aws_sdk_ses::{
    error::ProvideErrorMetadata,
    operation::send_email::SendEmailError,
    types::{Body, Content, Destination, Message},
    Client,
};

use super::unmodeled_is_refusal;
use crate::ports::{DispatchError, DispatchReceipt, Dispatcher, OutboundMessage};

pub struct SesEmail {
    client: Client,
    /// The configuration set whose event destination publishes deliveries, bounces and
    /// complaints (to the receipts function); None sends without one (no receipts).
    configuration_set: Option<String>,
}

impl SesEmail {
    pub fn new(client: Client, configuration_set: Option<String>) -> Self {
        SesEmail { client, configuration_set }
    }
}

fn content(data: &str) -> Result<Content, DispatchError> {
    Content::builder().data(data).charset("UTF-8").build().map_err(|e| {
        tracing::error!(error = %e, "cannot build an SES message");
        DispatchError::Unavailable
    })
}

#[async_trait]
impl Dispatcher for SesEmail {
    async fn dispatch(&self, msg: &OutboundMessage<'_>) -> Result<DispatchReceipt, DispatchError> {
        let message = Message::builder()
            .subject(content(msg.subject.unwrap_or_default())?)
            .body(
                Body::builder()
                    .text(content(&msg.text)?)
                    .set_html(msg.html.as_deref().map(content).transpose()?)
                    .build(),
            )
            .build();
        let result = self
            .client
            .send_email()
            .source(msg.from)
            .destination(Destination::builder().to_addresses(msg.to).build())
            .message(message)
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await;
        match result {
            Ok(out) => {
                tracing::info!(request_id = %msg.request_id, event = %msg.event_sid, message_id = %out.message_id, "email sent");
                Ok(DispatchReceipt::new(out.message_id))
            }
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let Some(err) = e.as_service_error() else {
                    let failure = super::unanswered(&e);
                    tracing::warn!(request_id = %msg.request_id, ?failure, "SES unreachable");
                    return Err(failure);
                };
                let code = err.code().unwrap_or("SES_ERROR").to_owned();
                let refusal = match err {
                    SendEmailError::MessageRejected(_) => Some("The email provider refused the message"),
                    SendEmailError::MailFromDomainNotVerifiedException(_) => {
                        Some("The sender address or its domain is not verified")
                    }
                    // Our account or configuration: not this message's fault.
                    SendEmailError::AccountSendingPausedException(_)
                    | SendEmailError::ConfigurationSetDoesNotExistException(_)
                    | SendEmailError::ConfigurationSetSendingPausedException(_) => None,
                    _ => unmodeled_is_refusal(err.code(), status).then_some("The email provider refused the message"),
                };
                match refusal {
                    Some(message) => {
                        tracing::info!(request_id = %msg.request_id, code = %code, "SES refused the email");
                        Err(DispatchError::rejected(code, message))
                    }
                    None => {
                        tracing::warn!(request_id = %msg.request_id, code = %code, ?status, "SES unavailable");
                        Err(DispatchError::Unavailable)
                    }
                }
            }
        }
    }
}
