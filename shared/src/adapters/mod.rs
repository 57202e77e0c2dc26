//! Adapters behind the ports: the embedded ones (in-process store, outbox, adjustable clock)
//! and, with the `aws` feature, DynamoDB, SNS and SES.

pub mod clock;
pub mod emf;
pub mod memory;
pub mod outbox;
pub mod provider;
pub mod router;
pub mod webhook;

#[cfg(feature = "aws")]
pub mod aws;
