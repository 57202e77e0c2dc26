//! The OTP session and its lifecycle: pending → success | canceled | expired | failed.

use super::{callbacks::CallbackTarget, sms::Encoding, time::Millis, workflows::WorkflowRun};

/// Invalid checks after which an OTP is `failed`.
pub const MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_LENGTH: u8 = 6;
pub const DEFAULT_LANGUAGE: &str = "en-US";
pub const DEFAULT_TIMEOUT_SECS: u32 = 300;
pub const MIN_TIMEOUT_SECS: u32 = 30;
pub const MAX_TIMEOUT_SECS: u32 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Sms,
    Call,
    Email,
    /// WhatsApp, as an authentication template (`adapters::aws::whatsapp`).
    Whatsapp,
    /// A challenge of an authenticator app's factor (`domain::factors`): nothing is sent.
    Totp,
    /// A challenge of a passkey factor (`domain::factors`, WebAuthn): nothing is sent.
    Passkey,
}

impl Channel {
    pub const ALL: [Channel; 6] =
        [Channel::Sms, Channel::Call, Channel::Email, Channel::Whatsapp, Channel::Totp, Channel::Passkey];

    /// Whether a code goes out on this channel; a factor's challenge sends nothing.
    pub fn sends(self) -> bool {
        !matches!(self, Channel::Totp | Channel::Passkey)
    }

    /// A channel a code is sent on (what a send, a workflow step or a route names); `voice`
    /// is accepted for `call`, as the workflow seeds use it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::parse_any(s).filter(|c| c.sends())
    }

    /// Any channel, a factor's too (what search, usage and insights filter on).
    pub fn parse_any(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sms" => Some(Channel::Sms),
            "call" | "voice" => Some(Channel::Call),
            "email" => Some(Channel::Email),
            "whatsapp" => Some(Channel::Whatsapp),
            "totp" => Some(Channel::Totp),
            "passkey" => Some(Channel::Passkey),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Call => "call",
            Channel::Email => "email",
            Channel::Whatsapp => "whatsapp",
            Channel::Totp => "totp",
            Channel::Passkey => "passkey",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpStatus {
    Pending,
    Success,
    Canceled,
    Expired,
    Failed,
}

impl OtpStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => OtpStatus::Pending,
            "success" => OtpStatus::Success,
            "canceled" => OtpStatus::Canceled,
            "expired" => OtpStatus::Expired,
            "failed" => OtpStatus::Failed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OtpStatus::Pending => "pending",
            OtpStatus::Success => "success",
            OtpStatus::Canceled => "canceled",
            OtpStatus::Expired => "expired",
            OtpStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelStatus {
    Queued,
    Sent,
    Delivered,
    Undelivered,
    Failed,
}

impl ChannelStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => ChannelStatus::Queued,
            "sent" => ChannelStatus::Sent,
            "delivered" => ChannelStatus::Delivered,
            "undelivered" => ChannelStatus::Undelivered,
            "failed" => ChannelStatus::Failed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelStatus::Queued => "queued",
            ChannelStatus::Sent => "sent",
            ChannelStatus::Delivered => "delivered",
            ChannelStatus::Undelivered => "undelivered",
            ChannelStatus::Failed => "failed",
        }
    }
}

/// One verify attempt. The code entered is kept sealed (the SDR shows it, the table must not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub sid: String,
    pub at_ms: Millis,
    pub valid: bool,
    pub sealed_code: Vec<u8>,
}

/// One dispatch on a channel, and what the provider said of it.
#[derive(Debug, PartialEq, Eq)]
pub struct ChannelEvent {
    pub sid: String,
    pub at_ms: Millis,
    pub channel: Channel,
    pub sender: String,
    pub recipient: String,
    pub target_sid: Option<String>,
    pub status: ChannelStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// SMS: how the text was encoded and how many segments it took (each is billed).
    pub encoding: Option<Encoding>,
    pub segments: Option<u32>,
    /// The route that sent it or refused it (`domain::routing`); None before it was tried,
    /// and on events stored before routes were named.
    pub route: Option<String>,
}

// By hand for `clone_from`: a stored event updated with the provider's answer keeps its
// strings' buffers (the derived one clones them all anew). Destructured, so a new field
// cannot be forgotten.
impl Clone for ChannelEvent {
    fn clone(&self) -> Self {
        let mut event = ChannelEvent {
            sid: String::new(),
            at_ms: 0,
            channel: self.channel,
            sender: String::new(),
            recipient: String::new(),
            target_sid: None,
            status: self.status,
            error_code: None,
            error_message: None,
            encoding: None,
            segments: None,
            route: None,
        };
        event.clone_from(self);
        event
    }

    fn clone_from(&mut self, source: &Self) {
        let ChannelEvent {
            sid,
            at_ms,
            channel,
            sender,
            recipient,
            target_sid,
            status,
            error_code,
            error_message,
            encoding,
            segments,
            route,
        } = source;
        self.sid.clone_from(sid);
        self.at_ms = *at_ms;
        self.channel = *channel;
        self.sender.clone_from(sender);
        self.recipient.clone_from(recipient);
        self.target_sid.clone_from(target_sid);
        self.status = *status;
        self.error_code.clone_from(error_code);
        self.error_message.clone_from(error_message);
        self.encoding = *encoding;
        self.segments = *segments;
        self.route.clone_from(route);
    }
}

/// How the code reaches the user.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivery {
    pub channel: Channel,
    pub from: String,
    pub to: String,
    /// The message template, with `{code}` in it.
    pub body: String,
    pub subject: Option<String>,
    pub language: String,
    pub voice: Option<String>,
    pub repeat: u8,
    /// WebOTP: the host whose `@host #code` line ends the SMS (`domain::autofill`).
    pub web_otp_domain: Option<String>,
    /// Android SMS Retriever: the app's 11-character hash, added to the SMS.
    pub app_hash: Option<String>,
    /// Where this OTP's events are told instead of the account's callback (`callbackUrl`).
    pub callback: Option<CallbackTarget>,
}

// By hand for `clone_from`, as `ChannelEvent`'s (and `Otp`'s, which uses it).
impl Clone for Delivery {
    fn clone(&self) -> Self {
        let mut delivery = Delivery::sms("", "", "");
        delivery.clone_from(self);
        delivery
    }

    fn clone_from(&mut self, source: &Self) {
        let Delivery { channel, from, to, body, subject, language, voice, repeat, web_otp_domain, app_hash, callback } =
            source;
        self.channel = *channel;
        self.from.clone_from(from);
        self.to.clone_from(to);
        self.body.clone_from(body);
        self.subject.clone_from(subject);
        self.language.clone_from(language);
        self.voice.clone_from(voice);
        self.repeat = *repeat;
        self.web_otp_domain.clone_from(web_otp_domain);
        self.app_hash.clone_from(app_hash);
        self.callback.clone_from(callback);
    }
}

impl Delivery {
    /// An SMS with the defaults of a send that names nothing else.
    pub fn sms(from: impl Into<String>, to: impl Into<String>, body: impl Into<String>) -> Self {
        Delivery {
            channel: Channel::Sms,
            from: from.into(),
            to: to.into(),
            body: body.into(),
            subject: None,
            language: DEFAULT_LANGUAGE.into(),
            voice: None,
            repeat: 1,
            web_otp_domain: None,
            app_hash: None,
            callback: None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Otp {
    pub sid: String,
    pub account_sid: String,
    pub service: String,
    pub delivery: Delivery,
    pub length: u8,
    /// ISO 3166-1 alpha-2 code of a phone destination's country (`phone::Phone::country`);
    /// None for email.
    pub country: Option<String>,
    /// HMAC of the code (see `Keys::hash_code`); the code itself is never stored in clear.
    pub code_hash: Vec<u8>,
    /// The code sealed with AES-GCM, so later channel steps can resend the same code.
    pub sealed_code: Vec<u8>,
    /// The status as last written; `status_at` gives the status as it is now.
    pub status: OtpStatus,
    pub created_ms: Millis,
    pub updated_ms: Millis,
    pub expires_ms: Millis,
    pub guard_time: Option<u32>,
    /// Set when a newer send superseded this OTP: from this instant on it is canceled.
    pub cancel_at_ms: Option<Millis>,
    pub attempts: u32,
    pub checks: Vec<Check>,
    pub events: Vec<ChannelEvent>,
    /// The workflow delivering it, when the send named one.
    pub workflow: Option<WorkflowRun>,
    /// Someone is told of its events (the send or, at send time, the account names a
    /// callback): the expiry sweeper settles it once its deadline passes, so an `expired` /
    /// `canceled` callback follows. An OTP nobody hears of is never swept (and costs no due
    /// entry): its status is computed at read time all the same (`status_at`).
    pub watched: bool,
    /// Its destination had failed verifies when it was sent: verifying it clears them (so an
    /// OTP sent to a destination without any costs its verify nothing more).
    pub clears_failures: bool,
    /// The pumping guard counts it (`domain::guard`): its send in its country's window and the
    /// account-wide one, and its verify there too.
    pub guarded: bool,
}

// By hand for `clone_from`: the embedded store writes a new OTP into the memory of the one
// it evicts (same shape of strings), instead of freeing ~15 blocks and allocating as many.
// Destructured, so a new field cannot be forgotten.
impl Clone for Otp {
    fn clone(&self) -> Self {
        let mut otp = Otp {
            sid: String::new(),
            account_sid: String::new(),
            service: String::new(),
            delivery: self.delivery.clone(),
            length: 0,
            country: None,
            code_hash: Vec::new(),
            sealed_code: Vec::new(),
            status: self.status,
            created_ms: 0,
            updated_ms: 0,
            expires_ms: 0,
            guard_time: None,
            cancel_at_ms: None,
            attempts: 0,
            checks: Vec::new(),
            events: Vec::new(),
            workflow: None,
            watched: false,
            clears_failures: false,
            guarded: false,
        };
        otp.clone_from(self);
        otp
    }

    fn clone_from(&mut self, source: &Self) {
        let Otp {
            sid,
            account_sid,
            service,
            delivery,
            length,
            country,
            code_hash,
            sealed_code,
            status,
            created_ms,
            updated_ms,
            expires_ms,
            guard_time,
            cancel_at_ms,
            attempts,
            checks,
            events,
            workflow,
            watched,
            clears_failures,
            guarded,
        } = source;
        self.sid.clone_from(sid);
        self.account_sid.clone_from(account_sid);
        self.service.clone_from(service);
        self.delivery.clone_from(delivery);
        self.length = *length;
        self.country.clone_from(country);
        self.code_hash.clone_from(code_hash);
        self.sealed_code.clone_from(sealed_code);
        self.status = *status;
        self.created_ms = *created_ms;
        self.updated_ms = *updated_ms;
        self.expires_ms = *expires_ms;
        self.guard_time = *guard_time;
        self.cancel_at_ms = *cancel_at_ms;
        self.attempts = *attempts;
        self.checks.clone_from(checks);
        self.events.clone_from(events);
        self.workflow.clone_from(workflow);
        self.watched = *watched;
        self.clears_failures = *clears_failures;
        self.guarded = *guarded;
    }
}

impl Otp {
    /// The status true at `now`: a pending OTP past its timeout is expired, and one whose
    /// supersede deadline has passed is canceled, whether or not anything rewrote it yet.
    pub fn status_at(&self, now: Millis) -> OtpStatus {
        if self.status != OtpStatus::Pending {
            return self.status;
        }
        match self.cancel_at_ms {
            Some(at) if now >= at && at < self.expires_ms => OtpStatus::Canceled,
            _ if now >= self.expires_ms => OtpStatus::Expired,
            _ => OtpStatus::Pending,
        }
    }

    /// When the status last changed, as the SDR's `dateUpdated` shows it.
    pub fn updated_at(&self, now: Millis) -> Millis {
        match self.status_at(now) {
            OtpStatus::Expired if self.status == OtpStatus::Pending => self.expires_ms,
            OtpStatus::Canceled if self.status == OtpStatus::Pending => self.cancel_at_ms.unwrap_or(self.updated_ms),
            _ => self.updated_ms,
        }
    }
}

/// How long a destination's failed verifies are remembered after the last of them.
pub const FAILURES_KEPT_MS: Millis = 24 * 3600 * 1000;

/// The failed verifies of one account's destination since its last success (across OTPs and
/// services), and when the last one was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureStreak {
    pub count: u32,
    pub last_ms: Millis,
}

impl FailureStreak {
    /// The failures that count at `now`: none once a day has passed since the last.
    pub fn count_at(&self, now: Millis) -> u32 {
        if now - self.last_ms >= FAILURES_KEPT_MS {
            0
        } else {
            self.count
        }
    }

    /// The streak after one more failure at `now`.
    pub fn after_failure(&self, now: Millis) -> FailureStreak {
        FailureStreak { count: self.count_at(now) + 1, last_ms: now }
    }
}

/// What the store keeps per account + service + destination: the newest OTP, and the one it
/// superseded while that one is still inside its guard time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub current: String,
    pub current_guard: Option<u32>,
    pub current_expires_ms: Millis,
    pub previous: Option<Superseded>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superseded {
    pub sid: String,
    pub cancel_at_ms: Millis,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn otp_at(now: Millis) -> Otp {
        Otp {
            sid: "OTP0".into(),
            account_sid: "AC0".into(),
            service: "2FA".into(),
            delivery: Delivery::sms("Twofa", "+14155550100", "code {code}"),
            length: 6,
            country: Some("US".into()),
            code_hash: vec![0; 32],
            sealed_code: vec![],
            status: OtpStatus::Pending,
            created_ms: now,
            updated_ms: now,
            expires_ms: now + 300_000,
            guard_time: None,
            cancel_at_ms: None,
            attempts: 0,
            checks: vec![],
            events: vec![],
            workflow: None,
            watched: true,
            clears_failures: false,
            guarded: false,
        }
    }

    #[test]
    fn pending_otp_reads_expired_after_its_timeout() {
        let otp = otp_at(0);
        assert_eq!(otp.status_at(299_999), OtpStatus::Pending);
        assert_eq!(otp.status_at(300_000), OtpStatus::Expired);
        assert_eq!(otp.updated_at(400_000), 300_000);
    }

    #[test]
    fn superseded_otp_reads_canceled_once_its_guard_time_is_over() {
        let otp = Otp { cancel_at_ms: Some(30_000), ..otp_at(0) };
        assert_eq!(otp.status_at(29_999), OtpStatus::Pending);
        assert_eq!(otp.status_at(30_000), OtpStatus::Canceled);
        assert_eq!(otp.status_at(900_000), OtpStatus::Canceled);
    }

    #[test]
    fn final_statuses_do_not_change_with_time() {
        let otp = Otp { status: OtpStatus::Success, ..otp_at(0) };
        assert_eq!(otp.status_at(10_000_000), OtpStatus::Success);
    }

    /// An OTP with every optional part set and longer strings than `otp_at`'s.
    pub fn full_otp() -> Otp {
        use crate::domain::{
            callbacks::{CallbackMethod, CallbackTarget},
            sms::Encoding,
            workflows::{Step, WorkflowRun},
        };
        let mut delivery = Delivery::sms("Twofa Inc", "+442071838750", "Your Twofa code is {code}");
        delivery.subject = Some("Your code".into());
        delivery.voice = Some("female".into());
        delivery.web_otp_domain = Some("example.com".into());
        delivery.app_hash = Some("FA+9qCX9VSu".into());
        delivery.callback = Some(CallbackTarget { url: "https://example.com/cb".into(), method: CallbackMethod::Get });
        let event = ChannelEvent {
            sid: "EV1".into(),
            at_ms: 5,
            channel: Channel::Sms,
            sender: "Twofa Inc".into(),
            recipient: "+442071838750".into(),
            target_sid: Some("SM1".into()),
            status: ChannelStatus::Failed,
            error_code: Some("30008".into()),
            error_message: Some("Unknown error".into()),
            encoding: Some(Encoding::Gsm7),
            segments: Some(1),
            route: Some("sns".into()),
        };
        Otp {
            sid: "OTPfull".into(),
            account_sid: "ACfull".into(),
            service: "Login".into(),
            delivery,
            length: 8,
            country: Some("GB".into()),
            code_hash: vec![7; 32],
            sealed_code: vec![9; 40],
            status: OtpStatus::Failed,
            created_ms: 1,
            updated_ms: 2,
            expires_ms: 3,
            guard_time: Some(30),
            cancel_at_ms: Some(4),
            attempts: 5,
            checks: vec![Check { sid: "VC1".into(), at_ms: 6, valid: false, sealed_code: vec![1; 30] }],
            events: vec![event.clone(), event],
            workflow: Some(WorkflowRun {
                workflow_sid: "WF1".into(),
                steps: vec![Step { channel: Channel::Sms, interval_secs: 0 }],
                email: Some("a@example.com".into()),
                email_from: None,
                sent: 1,
            }),
            watched: false,
            clears_failures: true,
            guarded: true,
        }
    }

    #[test]
    fn clone_from_makes_an_exact_copy_whatever_the_shapes_were() {
        // Given a plain OTP and one with every optional part set
        let (plain, full) = (otp_at(0), full_otp());
        // When each is written over the other, and each is cloned
        let mut into_plain = plain.clone();
        into_plain.clone_from(&full);
        let mut into_full = full.clone();
        into_full.clone_from(&plain);
        // Then every copy equals its source
        assert_eq!(into_plain, full);
        assert_eq!(into_full, plain);
        assert_eq!(full.clone(), full);
        let mut event = plain.events.first().cloned().unwrap_or_else(|| full.events[0].clone());
        event.clone_from(&full.events[1]);
        assert_eq!(event, full.events[1]);
    }

    #[test]
    fn voice_is_accepted_for_call() {
        assert_eq!(Channel::parse("voice"), Some(Channel::Call));
        assert_eq!(Channel::parse("CALL"), Some(Channel::Call));
        assert_eq!(Channel::parse("fax"), None);
        assert_eq!(Channel::parse("WhatsApp"), Some(Channel::Whatsapp));
        assert_eq!(Channel::parse("totp"), None, "nothing sends on a factor's channel");
        assert_eq!(Channel::parse_any("TOTP"), Some(Channel::Totp));
    }
}
