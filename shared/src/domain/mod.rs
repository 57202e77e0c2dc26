//! The domain: plain Rust, no AWS SDK.

pub mod account;
pub mod account_admin;
pub mod autofill;
pub mod callbacks;
pub mod cidr;
pub mod console;
pub mod content;
pub mod crypto;
pub mod definitions;
pub mod error;
pub mod factor;
pub mod factors;
pub mod guard;
pub mod idempotency;
pub mod ids;
pub mod insights;
pub mod limit_admin;
pub mod limits;
pub mod otp;
pub mod phone;
pub mod policy;
#[cfg(test)]
mod properties;
pub mod providers;
pub mod receipts;
pub mod records;
pub mod routing;
pub mod send;
pub mod sms;
pub mod templates;
pub mod time;
pub mod totp;
pub mod usage;
pub mod verify;
pub mod voice;
pub mod workflow_admin;
pub mod workflows;
