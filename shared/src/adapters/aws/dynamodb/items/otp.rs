//! OTPs: the OTP item with its checks, channel events and workflow run, where it sits in the
//! due index, and the lookup item of each of its dispatches (receipts).

use serde::{Deserialize, Serialize};

use super::{bytes, channel, corrupt, due_shard_of, epoch_secs, gsi2sk, Key, StepItem, DAY_SECS};
use crate::domain::{
    callbacks::{CallbackMethod, CallbackTarget},
    error::{Error, Result},
    guard,
    otp::{ChannelEvent, ChannelStatus, Check, Delivery, Otp, OtpStatus},
    send::RETENTION_DAYS,
    sms::Encoding,
    time::Millis,
    workflows::{Step, WorkflowRun},
};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CheckItem {
    pub sid: String,
    pub at_ms: Millis,
    pub valid: bool,
    #[serde(with = "bytes")]
    pub sealed_code: Vec<u8>,
}

impl From<&Check> for CheckItem {
    fn from(c: &Check) -> Self {
        CheckItem { sid: c.sid.clone(), at_ms: c.at_ms, valid: c.valid, sealed_code: c.sealed_code.clone() }
    }
}

impl From<CheckItem> for Check {
    fn from(c: CheckItem) -> Self {
        Check { sid: c.sid, at_ms: c.at_ms, valid: c.valid, sealed_code: c.sealed_code }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct EventItem {
    pub sid: String,
    pub at_ms: Millis,
    pub channel: String,
    pub sender: String,
    pub recipient: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_sid: Option<String>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// SMS: `GSM-7` or `UCS-2`, and the segments taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<u32>,
    /// The route that sent or refused it; absent on events from before routes had names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
}

impl From<&ChannelEvent> for EventItem {
    fn from(e: &ChannelEvent) -> Self {
        EventItem {
            sid: e.sid.clone(),
            at_ms: e.at_ms,
            channel: e.channel.as_str().to_owned(),
            sender: e.sender.clone(),
            recipient: e.recipient.clone(),
            target_sid: e.target_sid.clone(),
            status: e.status.as_str().to_owned(),
            error_code: e.error_code.clone(),
            error_message: e.error_message.clone(),
            encoding: e.encoding.map(|x| x.as_str().to_owned()),
            segments: e.segments,
            route: e.route.clone(),
        }
    }
}

impl TryFrom<EventItem> for ChannelEvent {
    type Error = Error;
    fn try_from(e: EventItem) -> Result<Self> {
        Ok(ChannelEvent {
            sid: e.sid,
            at_ms: e.at_ms,
            channel: channel(&e.channel)?,
            sender: e.sender,
            recipient: e.recipient,
            target_sid: e.target_sid,
            status: ChannelStatus::parse(&e.status).map_or_else(corrupt("events.status"), Ok)?,
            error_code: e.error_code,
            error_message: e.error_message,
            encoding: e
                .encoding
                .as_deref()
                .map(|x| Encoding::parse(x).map_or_else(corrupt("events.encoding"), Ok))
                .transpose()?,
            segments: e.segments,
            route: e.route,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OtpItem {
    pub pk: String,
    pub sk: String,
    /// Only while stored pending: the sparse index the expiry sweeper reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2sk: Option<String>,
    pub ttl: i64,
    pub sid: String,
    pub account_sid: String,
    pub service: String,
    pub channel: String,
    pub from: String,
    pub to: String,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub language: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    pub repeat: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_otp_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_method: Option<CallbackMethod>,
    pub length: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(with = "bytes")]
    pub code_hash: Vec<u8>,
    #[serde(with = "bytes")]
    pub sealed_code: Vec<u8>,
    pub status: String,
    pub created_ms: Millis,
    pub updated_ms: Millis,
    pub expires_ms: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard_time: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_at_ms: Option<Millis>,
    pub attempts: u32,
    #[serde(default)]
    pub checks: Vec<CheckItem>,
    #[serde(default)]
    pub events: Vec<EventItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowRunItem>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clears_failures: bool,
    /// Whether the pumping guard counts it (the stream worker reads it), on every OTP with a
    /// country; absent on OTPs from before it (see `Otp::try_from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guarded: Option<bool>,
}

/// The workflow an OTP runs, in the OTP item (`sent` is what a step's claim conditions on).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkflowRunItem {
    pub workflow_sid: String,
    pub steps: Vec<StepItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_from: Option<String>,
    pub sent: u32,
}

impl From<&WorkflowRun> for WorkflowRunItem {
    fn from(w: &WorkflowRun) -> Self {
        WorkflowRunItem {
            workflow_sid: w.workflow_sid.clone(),
            steps: w.steps.iter().map(StepItem::from).collect(),
            email: w.email.clone(),
            email_from: w.email_from.clone(),
            sent: w.sent,
        }
    }
}

impl TryFrom<WorkflowRunItem> for WorkflowRun {
    type Error = Error;
    fn try_from(w: WorkflowRunItem) -> Result<Self> {
        Ok(WorkflowRun {
            workflow_sid: w.workflow_sid,
            steps: w.steps.into_iter().map(Step::try_from).collect::<Result<_>>()?,
            email: w.email,
            email_from: w.email_from,
            sent: w.sent,
        })
    }
}

impl From<&Otp> for OtpItem {
    fn from(o: &Otp) -> Self {
        let key = Key::otp(&o.account_sid, &o.sid);
        let d = &o.delivery;
        // In the sweeper's due index only while pending, and only if someone is told of it.
        let due = o.status == OtpStatus::Pending && o.watched;
        OtpItem {
            pk: key.pk,
            sk: key.sk,
            gsi2pk: due.then(|| due_shard_of(&o.sid)),
            gsi2sk: due.then(|| gsi2sk(deadline(o), &o.sid)),
            ttl: otp_ttl(o.created_ms),
            sid: o.sid.clone(),
            account_sid: o.account_sid.clone(),
            service: o.service.clone(),
            channel: d.channel.as_str().to_owned(),
            from: d.from.clone(),
            to: d.to.clone(),
            body: d.body.clone(),
            subject: d.subject.clone(),
            language: d.language.clone(),
            voice: d.voice.clone(),
            repeat: d.repeat,
            web_otp_domain: d.web_otp_domain.clone(),
            app_hash: d.app_hash.clone(),
            callback_url: d.callback.as_ref().map(|c| c.url.clone()),
            callback_method: d.callback.as_ref().map(|c| c.method),
            length: o.length,
            country: o.country.clone(),
            code_hash: o.code_hash.clone(),
            sealed_code: o.sealed_code.clone(),
            status: o.status.as_str().to_owned(),
            created_ms: o.created_ms,
            updated_ms: o.updated_ms,
            expires_ms: o.expires_ms,
            guard_time: o.guard_time,
            cancel_at_ms: o.cancel_at_ms,
            attempts: o.attempts,
            checks: o.checks.iter().map(CheckItem::from).collect(),
            events: o.events.iter().map(EventItem::from).collect(),
            workflow: o.workflow.as_ref().map(WorkflowRunItem::from),
            clears_failures: o.clears_failures,
            guarded: o.country.is_some().then_some(o.guarded),
        }
    }
}

impl TryFrom<OtpItem> for Otp {
    type Error = Error;
    fn try_from(i: OtpItem) -> Result<Self> {
        // An OTP from before the flag (sent before an upgrade, verified after it): its send
        // was counted if its country was guardable and the account's guard on, which only the
        // account knows; its verify is counted as guarded all the same (a verify too many
        // errs towards sending, for one OTP lifetime after the upgrade).
        let guarded = i.guarded.unwrap_or_else(|| i.country.as_deref().is_some_and(guard::guardable));
        Ok(Otp {
            sid: i.sid,
            account_sid: i.account_sid,
            service: i.service,
            delivery: Delivery {
                channel: channel(&i.channel)?,
                from: i.from,
                to: i.to,
                body: i.body,
                subject: i.subject,
                language: i.language,
                voice: i.voice,
                repeat: i.repeat,
                web_otp_domain: i.web_otp_domain,
                app_hash: i.app_hash,
                callback: i
                    .callback_url
                    .map(|url| CallbackTarget { url, method: i.callback_method.unwrap_or(CallbackMethod::Post) }),
            },
            length: i.length,
            country: i.country,
            code_hash: i.code_hash,
            sealed_code: i.sealed_code,
            status: OtpStatus::parse(&i.status).map_or_else(corrupt("status"), Ok)?,
            created_ms: i.created_ms,
            updated_ms: i.updated_ms,
            expires_ms: i.expires_ms,
            guard_time: i.guard_time,
            cancel_at_ms: i.cancel_at_ms,
            attempts: i.attempts,
            checks: i.checks.into_iter().map(Check::from).collect(),
            events: i.events.into_iter().map(ChannelEvent::try_from).collect::<Result<_>>()?,
            workflow: i.workflow.map(WorkflowRun::try_from).transpose()?,
            // Only a watched OTP is put in the due index, and only while pending; once settled
            // the flag no longer matters.
            watched: i.gsi2pk.is_some(),
            clears_failures: i.clears_failures,
            guarded,
        })
    }
}

/// The `ttl` of an OTP item, kept `RETENTION_DAYS` after its creation (and so of what is
/// written for it: its dispatches' lookup items).
pub(crate) fn otp_ttl(created_ms: Millis) -> i64 {
    epoch_secs(created_ms) + RETENTION_DAYS * DAY_SECS
}

/// When a pending OTP stops being pending if nothing else happens (`Otp::status_at`).
pub(crate) fn deadline(o: &Otp) -> Millis {
    match o.cancel_at_ms {
        Some(at) if at < o.expires_ms => at,
        _ => o.expires_ms,
    }
}

// --- dispatch lookups (receipts) -------------------------------------------------------------

/// One dispatch the provider acknowledged, by its message id: which OTP item and which of its
/// events. One per dispatch (a workflow's OTP has several), so every receipt finds its event.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MessageItem {
    pub pk: String,
    pub sk: String,
    /// The OTP item's key.
    pub otp_pk: String,
    pub otp_sk: String,
    /// The index of the event in the OTP's `events`.
    pub event: u32,
    /// The OTP item's own `ttl`: the lookup goes when the OTP does.
    pub ttl: i64,
}

/// Where a receipt for a provider message id goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dispatch {
    pub otp: Key,
    pub event: u32,
}

impl MessageItem {
    /// The lookup `key` (`Key::message`, `Key::account_message`) of event `event` of `otp`.
    pub fn new(key: Key, otp: &Otp, event: u32) -> Self {
        let otp_key = Key::otp(&otp.account_sid, &otp.sid);
        MessageItem {
            pk: key.pk,
            sk: key.sk,
            otp_pk: otp_key.pk,
            otp_sk: otp_key.sk,
            event,
            ttl: otp_ttl(otp.created_ms),
        }
    }
}

impl TryFrom<MessageItem> for Dispatch {
    type Error = Error;
    fn try_from(i: MessageItem) -> Result<Self> {
        Ok(Dispatch { otp: Key { pk: i.otp_pk, sk: i.otp_sk }, event: i.event })
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::AttributeValue;

    use super::*;
    use crate::adapters::aws::dynamodb::items::{from_item, to_item};

    #[test]
    fn otp_round_trips_through_its_item_with_binaries_as_b() {
        let mut otp = crate::domain::otp::tests::otp_at(1_700_000_000_000);
        otp.sealed_code = vec![1, 2, 3];
        otp.cancel_at_ms = Some(1_700_000_001_000);
        otp.delivery.web_otp_domain = Some("example.com".into());
        otp.delivery.app_hash = Some("FA+9qCX9VSu".into());
        otp.checks.push(Check { sid: "OTC1".into(), at_ms: 5, valid: false, sealed_code: vec![9] });
        let item = to_item(&OtpItem::from(&otp)).unwrap();
        assert!(matches!(item.get("code_hash"), Some(AttributeValue::B(_))));
        assert!(!item.contains_key("subject"), "None is left out, not stored as NULL");
        assert_eq!(item.get("ttl"), Some(&AttributeValue::N((1_700_000_000 + 90 * 86_400).to_string())));
        assert_eq!(item.get("pk"), Some(&AttributeValue::S("OTP#AC0".into())), "the account's OTP partition");
        assert_eq!(item.get("sk"), Some(&AttributeValue::S("OTP0".into())), "sorted by sid");
        let back: Otp = from_item::<OtpItem, _>(item).unwrap();
        assert_eq!(back, otp);
    }
    #[test]
    fn a_corrupt_item_is_internal() {
        let mut item = to_item(&OtpItem::from(&crate::domain::otp::tests::otp_at(0))).unwrap();
        item.insert("status".into(), AttributeValue::S("bogus".into()));
        assert_eq!(from_item::<OtpItem, Otp>(item).unwrap_err(), Error::Internal);
    }
}
