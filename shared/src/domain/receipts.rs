//! Delivery receipts: what a provider says of a dispatch after it took it (an SMS delivered
//! to the handset or not, an email delivered or bounced). A receipt names the dispatch by the
//! provider's message id, the SDR event's `targetSid`, and only ever moves that event forward:
//! `sent` → `delivered` / `undelivered` / `failed`. A late or duplicate receipt changes nothing.

use super::{error::Result, otp::ChannelStatus};
use crate::ports::ReceiptStore;

/// One receipt, as the provider reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The provider's message id (SNS / SES `MessageId`).
    pub provider_id: String,
    pub status: ChannelStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The OTP and event the message was sent for, when the receipt says so itself (End User
    /// Messaging SMS echoes the `context` it was sent with): then no lookup of `provider_id`
    /// is needed to find them.
    pub target: Option<ReceiptTarget>,
    /// Another id the same message may be known by (WhatsApp: Meta's `wamid` beside the
    /// event's AWS `messageId`): the event whose `target_sid` is either is this message's.
    pub also_id: Option<String>,
    /// The account whose own provider reported it (`domain::providers`): only a message of
    /// that account may be moved, any other is `Unknown`, so one account's provider cannot
    /// report on another's messages. None: a deployment route's receipt.
    pub account_sid: Option<String>,
}

impl Receipt {
    /// A report that names its message by the provider's id alone (SNS, SES, calls, a
    /// deployment provider): found through the id's lookup.
    pub fn by_id(
        provider_id: impl Into<String>,
        status: ChannelStatus,
        error_code: Option<String>,
        error_message: Option<String>,
    ) -> Self {
        Receipt {
            provider_id: provider_id.into(),
            status,
            error_code,
            error_message,
            target: None,
            also_id: None,
            account_sid: None,
        }
    }
}

/// Where a dispatch's event is: the OTP's account and sid, and its index in `events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptTarget {
    pub account_sid: String,
    pub otp_sid: String,
    pub event: usize,
}

/// What a receipt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// The event moved from `sent` to the receipt's status.
    Applied,
    /// The event had already moved on (a duplicate, late or concurrent receipt): nothing changed.
    Unchanged,
    /// No OTP has a dispatch with that message id (not ours, or no longer kept).
    Unknown,
}

/// The statuses a receipt may move a `sent` event to.
pub fn is_receipt_status(status: ChannelStatus) -> bool {
    matches!(status, ChannelStatus::Delivered | ChannelStatus::Undelivered | ChannelStatus::Failed)
}

/// Record `receipt` on its event, if that is a move forward (one conditional write: of
/// concurrent receipts for one event exactly one changes it).
pub async fn apply(store: &dyn ReceiptStore, receipt: &Receipt) -> Result<ReceiptOutcome> {
    if !is_receipt_status(receipt.status) || receipt.provider_id.is_empty() {
        return Ok(ReceiptOutcome::Unchanged);
    }
    let outcome = store.apply_receipt(receipt).await?;
    tracing::info!(
        provider_id = %receipt.provider_id,
        status = receipt.status.as_str(),
        outcome = ?outcome,
        "delivery receipt"
    );
    Ok(outcome)
}
