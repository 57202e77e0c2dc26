//! The embedded dispatcher: keeps every message in memory instead of delivering it, so a
//! developer (or a test) reads the code from `/dev/outbox`.

use std::{
    collections::{HashMap, VecDeque},
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

/// The outbox's own route name (`adapters::router::OUTBOX`), and its second SMS route on the
/// dev server: routing tables and failover can be tried there (`/dev/outbox/mode` takes a
/// route).
pub const BACKUP_ROUTE: &str = "outbox-backup";

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OutboxEntry {
    pub id: String,
    pub channel: &'static str,
    /// The route that took it (`outbox`, `outbox-backup`).
    pub route: String,
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
    /// Routes whose mode is set apart from `mode`.
    route_modes: Mutex<HashMap<String, OutboxMode>>,
    max: usize,
    url_rules: UrlRules,
}

impl Outbox {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Outbox {
            clock,
            entries: Mutex::default(),
            mode: Mutex::default(),
            route_modes: Mutex::default(),
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

    /// The mode of every route (those set apart included).
    pub fn set_mode(&self, mode: OutboxMode) {
        *self.mode.lock().expect("outbox lock") = mode;
        self.route_modes.lock().expect("outbox lock").clear();
    }

    /// The mode of one route.
    pub fn set_route_mode(&self, route: &str, mode: OutboxMode) {
        self.route_modes.lock().expect("outbox lock").insert(route.to_owned(), mode);
    }

    /// A route named `name` into this outbox.
    pub fn route(self: &Arc<Self>, name: &str) -> OutboxRoute {
        OutboxRoute { outbox: self.clone(), name: name.to_owned() }
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

    async fn dispatch(&self, msg: &OutboundMessage<'_>) -> Result<DispatchReceipt, DispatchError> {
        self.deliver(msg, crate::adapters::router::OUTBOX)
    }
}

/// One named route into an outbox (the messages it takes show its name).
pub struct OutboxRoute {
    outbox: Arc<Outbox>,
    name: String,
}

#[async_trait]
impl Dispatcher for OutboxRoute {
    fn callback_url_rules(&self) -> UrlRules {
        self.outbox.url_rules
    }

    async fn dispatch(&self, msg: &OutboundMessage<'_>) -> Result<DispatchReceipt, DispatchError> {
        self.outbox.deliver(msg, &self.name)
    }
}

impl Outbox {
    fn deliver(&self, msg: &OutboundMessage<'_>, route_name: &str) -> Result<DispatchReceipt, DispatchError> {
        let set_apart = self.route_modes.lock().expect("outbox lock").get(route_name).copied();
        match set_apart.unwrap_or(*self.mode.lock().expect("outbox lock")) {
            OutboxMode::Deliver => {}
            OutboxMode::Reject => return Err(DispatchError::rejected("30008", "Unknown error")),
            OutboxMode::Down => return Err(DispatchError::Unavailable),
        }
        let prefix = match msg.channel {
            Channel::Sms => "SM",
            Channel::Call => "CA",
            Channel::Email => "EM",
            Channel::Whatsapp => "WA",
            // Nothing dispatches a factor's challenge; a prefix all the same.
            Channel::Totp => "TO",
            Channel::Passkey => "PK",
        };
        let now = self.clock.now_ms();
        let id = new_sid(prefix);
        let time = time::sdr(now);
        let mut entries = self.entries.lock().expect("outbox lock");
        // At the cap, the oldest entry's strings take the new message (`clone_from` reuses
        // their memory): no block freed and allocated again per string.
        let mut entry = None;
        while entries.len() >= self.max {
            entry = entries.pop_front();
        }
        let mut entry = entry.unwrap_or_default();
        // Destructured, so a new field cannot keep the old message's value.
        let OutboxEntry {
            id: entry_id,
            channel,
            route,
            from,
            to,
            subject,
            body,
            html,
            ssml,
            voice_id,
            language,
            request_id,
            time: entry_time,
            at_ms,
        } = &mut entry;
        entry_id.clone_from(&id);
        *channel = msg.channel.as_str();
        set(route, route_name);
        set(from, msg.from);
        set(to, msg.to);
        set_opt(subject, msg.subject);
        // What a listener hears, for a call (the SSML beside it).
        body.clone_from(&msg.text);
        html.clone_from(&msg.html);
        ssml.clone_from(&msg.ssml);
        voice_id.clone_from(&msg.voice_id);
        match msg.channel {
            Channel::Call => set_opt(language, Some(msg.language)),
            _ => *language = None,
        }
        set(request_id, msg.request_id);
        *entry_time = time;
        *at_ms = now;
        entries.push_back(entry);
        Ok(DispatchReceipt::new(id))
    }
}

/// `to` holding `value`, in the memory it has.
fn set(to: &mut String, value: &str) {
    to.clear();
    to.push_str(value);
}

fn set_opt(to: &mut Option<String>, value: Option<&str>) {
    match value {
        Some(v) => set(to.get_or_insert_default(), v),
        None => *to = None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::clock::AdjustableClock;

    fn message(channel: Channel, to: &str) -> OutboundMessage<'_> {
        OutboundMessage::sample(channel, to)
    }

    #[tokio::test]
    async fn a_capped_outbox_keeps_the_newest_messages_exactly_as_sent() {
        // Given an outbox that keeps two messages
        let outbox = Outbox::new(Arc::new(AdjustableClock::default())).with_max(2);
        // When a call, an email, an SMS and another SMS go out (each past the cap written into
        // the oldest entry's memory)
        let sent = [
            message(Channel::Call, "+14155550101"),
            message(Channel::Email, "a@example.com"),
            message(Channel::Sms, "+14155550103"),
            message(Channel::Sms, "+1415555010"),
        ];
        let mut ids = vec![];
        for m in &sent {
            ids.push(outbox.dispatch(m).await.unwrap().provider_id);
        }
        // Then the two newest read as sent, with nothing left of the call and the email
        let kept = outbox.messages(None);
        assert_eq!(kept.len(), 2);
        for (entry, (m, id)) in kept.iter().zip(sent.iter().zip(&ids).rev()) {
            assert_eq!(
                (entry.id.as_str(), entry.channel, entry.to.as_str(), entry.body.as_str()),
                (id.as_str(), "sms", m.to, m.text.as_str())
            );
            assert_eq!((entry.from.as_str(), entry.request_id.as_str()), (m.from, m.request_id));
            assert!(entry.subject.is_none() && entry.html.is_none() && entry.ssml.is_none());
            assert!(entry.voice_id.is_none() && entry.language.is_none());
        }
    }
}
