//! The embedded dispatcher: keeps every message in memory instead of delivering it, so a
//! developer (or a test) reads the code from `/dev/outbox`.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;

use crate::{
    domain::{
        callbacks::UrlRules,
        ids::new_sid,
        otp::Channel,
        time::{self, Millis},
    },
    ports::{Clock, DispatchError, DispatchReceipt, Dispatcher, OutboundMessage},
};

#[derive(Debug, Clone, serde::Serialize)]
pub struct OutboxEntry {
    pub id: String,
    pub channel: &'static str,
    pub from: String,
    pub to: String,
    pub subject: Option<String>,
    pub body: String,
    /// Email: the HTML part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Call: exactly what would be spoken (SSML), in which Polly voice and language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssml: Option<String>,
    #[serde(rename = "voiceId", skip_serializing_if = "Option::is_none")]
    pub voice_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(rename = "requestID")]
    pub request_id: String,
    pub time: String,
    #[serde(skip)]
    pub at_ms: Millis,
}

/// What the outbox does with the next messages (tests switch it to see failures handled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutboxMode {
    #[default]
    Deliver,
    /// The provider refuses each message (a failed SDR event).
    Reject,
    /// The provider is down (send answers 503).
    Down,
}

/// Messages the outbox keeps by default: the newest (a developer reads the last few).
pub const DEFAULT_OUTBOX_MAX: usize = 10_000;

pub struct Outbox {
    clock: Arc<dyn Clock>,
    entries: Mutex<VecDeque<OutboxEntry>>,
    mode: Mutex<OutboxMode>,
    max: usize,
    url_rules: UrlRules,
}

impl Outbox {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Outbox {
            clock,
            entries: Mutex::default(),
            mode: Mutex::default(),
            max: DEFAULT_OUTBOX_MAX,
            url_rules: UrlRules::AnyHost,
        }
    }

    /// The same outbox keeping at most `max` messages (the newest).
    pub fn with_max(mut self, max: usize) -> Self {
        self.max = max.max(1);
        self
    }

    /// The same outbox taking only the callback URLs a deployment takes (https, public hosts),
    /// for tests of those rules.
    pub fn with_url_rules(mut self, rules: UrlRules) -> Self {
        self.url_rules = rules;
        self
    }

    pub fn set_mode(&self, mode: OutboxMode) {
        *self.mode.lock().expect("outbox lock") = mode;
    }

    /// Messages, newest first, optionally only those to `to`.
    pub fn messages(&self, to: Option<&str>) -> Vec<OutboxEntry> {
        let entries = self.entries.lock().expect("outbox lock");
        // Numbers are stored in E.164; `14155550100` asks for the same one.
        let same = |a: &str, b: &str| a.strip_prefix('+').unwrap_or(a) == b.strip_prefix('+').unwrap_or(b);
        entries.iter().rev().filter(|e| to.is_none_or(|to| same(&e.to, to))).cloned().collect()
    }
}

#[async_trait]
impl Dispatcher for Outbox {
    fn callback_url_rules(&self) -> UrlRules {
        self.url_rules
    }

    async fn dispatch(&self, msg: &OutboundMessage) -> Result<DispatchReceipt, DispatchError> {
        match *self.mode.lock().expect("outbox lock") {
            OutboxMode::Deliver => {}
            OutboxMode::Reject => {
                return Err(DispatchError::Rejected { code: "30008".into(), message: "Unknown error".into() })
            }
            OutboxMode::Down => return Err(DispatchError::Unavailable),
        }
        let prefix = match msg.channel {
            Channel::Sms => "SM",
            Channel::Call => "CA",
            Channel::Email => "EM",
        };
        let now = self.clock.now_ms();
        let entry = OutboxEntry {
            id: new_sid(prefix),
            channel: msg.channel.as_str(),
            from: msg.from.clone(),
            to: msg.to.clone(),
            subject: msg.subject.clone(),
            // What a listener hears, for a call (the SSML beside it).
            body: msg.text.clone(),
            html: msg.html.clone(),
            ssml: msg.ssml.clone(),
            voice_id: msg.voice_id.clone(),
            language: (msg.channel == Channel::Call).then(|| msg.language.clone()),
            request_id: msg.request_id.clone(),
            time: time::sdr(now),
            at_ms: now,
        };
        let id = entry.id.clone();
        let mut entries = self.entries.lock().expect("outbox lock");
        entries.push_back(entry);
        while entries.len() > self.max {
            entries.pop_front();
        }
        Ok(DispatchReceipt { provider_id: id })
    }
}
