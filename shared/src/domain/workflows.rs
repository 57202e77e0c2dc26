//! Workflows: an OTP delivered by up to 10 steps, each on its channel after its interval, all
//! with the same code, while the OTP is still pending (multi-channel fallback).
//!
//! Step 1 goes out with the send when its interval is 0; the `Scheduler` (Step Functions wait
//! states on AWS, the dev clock in the dev server) runs the rest through `run_step`. A step is
//! claimed by a conditional write on the number of steps sent so far before it is dispatched,
//! so a step run twice (a retried Lambda, a duplicated execution) sends once; a step whose OTP
//! is no longer pending, or whose time falls after the OTP's expiry, is not sent at all.

use serde_json::{Map, Value};

use super::{
    account::Account,
    content,
    crypto::{Code, Purpose},
    error::{Error, Result},
    ids::{self, new_sid},
    otp::{Channel, ChannelEvent, ChannelStatus, Delivery, Otp, MAX_TIMEOUT_SECS},
    routing,
    send::is_email,
    time::{self, Millis},
    usage::{UsageCategory, UsageKey},
    voice::{self, Gender},
};
use crate::ports::{Deps, OutboundMessage, StepRun};

pub const MAX_STEPS: usize = 10;
pub const MAX_NAME_LEN: usize = 64;

/// One step: its channel, and the seconds to wait after the step before it (after the send,
/// for the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub channel: Channel,
    pub interval_secs: u32,
}

/// A workflow definition. Names are unique per account, like limits'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowDef {
    pub sid: String,
    /// The account it belongs to (a send of that account may name it).
    pub account_sid: String,
    pub created_by: String,
    pub name: String,
    pub steps: Vec<Step>,
    /// The steps as the client wrote them (`"voice"`, `"interval":"60"`), echoed back as an
    /// array whichever form they came in.
    pub channels_json: String,
    pub description: Option<String>,
    pub created_ms: Millis,
    pub updated_ms: Millis,
}

/// The workflow an OTP is delivered by, as it was when the OTP was sent (a later change of the
/// definition does not change a running OTP), and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRun {
    pub workflow_sid: String,
    pub steps: Vec<Step>,
    /// Where the email steps go, and from whom.
    pub email: Option<String>,
    pub email_from: Option<String>,
    /// Steps claimed so far (each claimed step was dispatched once, or recorded as failed).
    pub sent: u32,
}

impl WorkflowRun {
    /// When step `i` is due: the send's instant plus every interval up to and including its own.
    pub fn due_ms(&self, created_ms: Millis, i: usize) -> Millis {
        created_ms + self.steps.iter().take(i + 1).map(|s| i64::from(s.interval_secs) * 1000).sum::<i64>()
    }
}

/// A workflow name: 1 to 64 characters, no control characters (the seeds' names have spaces).
pub fn validate_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Error::invalid("name", "must be 1 to 64 characters"));
    }
    Ok(())
}

/// `channels`: an array of `{channel, interval}`, or a string holding one (the seeds send a
/// string). The steps, and the array to echo (each step's `channel` and `interval` as given).
pub fn parse_channels(v: &Value) -> Result<(Vec<Step>, String)> {
    let parsed;
    let v = match v {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s).map_err(|_| Error::invalid("channels", "malformed JSON"))?;
            &parsed
        }
        v => v,
    };
    let Value::Array(items) = v else {
        return Err(Error::invalid("channels", "must be an array of {channel, interval}"));
    };
    if items.is_empty() || items.len() > MAX_STEPS {
        return Err(Error::invalid("channels", format!("must have 1 to {MAX_STEPS} steps")));
    }
    let mut steps = Vec::with_capacity(items.len());
    let mut echo = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(step) = item else {
            return Err(Error::invalid(format!("channels[{i}]"), "must be an object {channel, interval}"));
        };
        let channel = step.get("channel").and_then(Value::as_str).and_then(Channel::parse).ok_or_else(|| {
            Error::invalid(format!("channels[{i}].channel"), "must be sms, voice, call, email or whatsapp")
        })?;
        let interval = step.get("interval");
        let interval_secs = match interval {
            None | Some(Value::Null) => Some(0),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
            Some(_) => None,
        }
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            Error::invalid(format!("channels[{i}].interval"), "must be a whole number of seconds, 0 or more")
        })?;
        steps.push(Step { channel, interval_secs });
        let mut e = Map::new();
        e.insert("channel".into(), step["channel"].clone());
        e.insert("interval".into(), interval.cloned().unwrap_or(Value::from(0)));
        echo.push(Value::Object(e));
    }
    let total: u64 = steps.iter().map(|s| u64::from(s.interval_secs)).sum();
    if total > u64::from(MAX_TIMEOUT_SECS) {
        return Err(Error::invalid(
            "channels",
            format!("the intervals add up to {total} s, longer than an OTP can live ({MAX_TIMEOUT_SECS} s)"),
        ));
    }
    Ok((steps, Value::Array(echo).to_string()))
}

/// The delivery of a step of an OTP delivered as `d`: the OTP's own for sms and calls, to
/// `email` from `email_from` for email steps.
pub fn step_delivery(d: &Delivery, run: &WorkflowRun, step: Step) -> Delivery {
    let mut out = d.clone();
    out.channel = step.channel;
    if step.channel == Channel::Email {
        out.to = run.email.clone().unwrap_or_else(|| d.to.clone());
        out.from = run.email_from.clone().unwrap_or_else(|| d.from.clone());
    }
    out
}

/// The extra send parameters of a workflow send, checked against its steps before anything is
/// written: an email step needs `email` (or an address in `to`), a sender address and a subject.
pub fn check_send(d: &Delivery, steps: &[Step], email: Option<&str>, email_from: Option<&str>) -> Result<()> {
    if !steps.iter().any(|s| s.channel == Channel::Email) {
        return Ok(());
    }
    let to = email.or(is_email(&d.to).then_some(d.to.as_str()));
    if !to.is_some_and(is_email) {
        return Err(Error::invalid("email", "required: the workflow has an email step"));
    }
    if !email_from.or(Some(d.from.as_str())).is_some_and(is_email) {
        return Err(Error::invalid("emailFrom", "the workflow has an email step: give a sender address"));
    }
    if d.subject.as_deref().is_none_or(str::is_empty) {
        return Err(Error::invalid("subject", "required: the workflow has an email step"));
    }
    Ok(())
}

/// A new event for a step about to be dispatched.
pub fn queued_event(d: &Delivery, now: Millis) -> ChannelEvent {
    ChannelEvent {
        sid: new_sid(ids::EVENT),
        at_ms: now,
        channel: d.channel,
        sender: d.from.clone(),
        recipient: d.to.clone(),
        target_sid: None,
        status: ChannelStatus::Queued,
        error_code: None,
        error_message: None,
        encoding: None,
        segments: None,
        route: None,
    }
}

/// Send step `run.step` of the OTP `run.otp_sid`, if it is still due: the OTP is pending, the
/// step is not sent yet and falls before the OTP's expiry. Answers where the run stands next
/// (`more: false` when nothing is left to send). `Error::Unavailable` / `Error::Contended`
/// (nothing sent) may be retried; nothing else should be.
pub async fn run_step(deps: &Deps, run: &StepRun) -> Result<StepRun> {
    let done = StepRun { more: false, wait: 0, ..run.clone() };
    // The account (its routing table) is read beside the OTP, not after it: no round trip
    // more, and a warm function has it cached.
    let (otp, account) =
        futures::join!(deps.store.get_otp(&run.account_sid, &run.otp_sid), deps.store.get_account(&run.account_sid));
    let Some(otp) = otp? else {
        tracing::warn!(otp = %run.otp_sid, "workflow step of an OTP that is gone");
        return Ok(done);
    };
    let Some(wf) = otp.workflow.clone() else { return Ok(done) };
    let index = run.step as usize;
    let Some(step) = wf.steps.get(index).copied() else { return Ok(done) };
    let now = deps.clock.now_ms();
    let next = next_run(&otp, &wf, run, index);
    if wf.sent > run.step {
        // Claimed before (a retried or duplicated invocation): never again.
        tracing::info!(otp = %otp.sid, step = run.step, "workflow step already sent");
        return Ok(next);
    }
    if !otp_pending(&otp, now) || wf.due_ms(otp.created_ms, index) >= otp.expires_ms {
        tracing::info!(otp = %otp.sid, step = run.step, status = otp.status_at(now).as_str(), "workflow stops");
        return Ok(done);
    }
    let d = step_delivery(&otp.delivery, &wf, step);
    let code = Code::new(
        String::from_utf8(deps.keys.open(Purpose::Code, &otp.sealed_code, &otp.sid)?).map_err(|_| Error::Internal)?,
    );
    let chosen = match step.channel {
        Channel::Call => {
            let voices = deps.dispatcher.voices().await.map_err(|_| Error::Unavailable)?;
            voice::choose(&voices, &d.language, Gender::from_param(d.voice.as_deref())).ok().cloned()
        }
        _ => None,
    };
    let mut event = queued_event(&d, now);
    let content = match content::compose(&d, &code, chosen.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            // Checked at send time; a step that cannot be said is recorded failed, not retried.
            event.status = ChannelStatus::Failed;
            event.error_code = Some("UNSENDABLE".into());
            event.error_message = Some(e.to_string());
            claim(deps, &otp, run.step, &event, now).await?;
            return Ok(next);
        }
    };
    event.encoding = content.sms.map(|m| m.encoding);
    event.segments = content.sms.map(|m| m.segments);
    if !claim(deps, &otp, run.step, &event, now).await? {
        // Verified, canceled or claimed by a concurrent run between the read and the write.
        let now_otp = deps.store.get_otp(&run.account_sid, &run.otp_sid).await?;
        let claimed = now_otp.as_ref().and_then(|o| o.workflow.as_ref()).is_some_and(|w| w.sent > run.step);
        return Ok(if claimed { next } else { done });
    }
    // Claimed: whatever happens now, this step is not sent again. A provider that is down
    // leaves a failed event and the next step (the fallback) still goes out.
    let index_of_event = otp.events.len();
    // The account's routing table as it is now (its account gone: the deployment's routes).
    let (table, own) = match account {
        Ok(Some(account)) => (account.policy.routes, account.policy.providers),
        Ok(None) => (Vec::new(), Vec::new()),
        Err(e) => {
            tracing::warn!(otp = %otp.sid, error = %e, "account unreadable: the step takes the deployment's routes");
            (Vec::new(), Vec::new())
        }
    };
    let routes = routing::routes_for(&table, d.channel, otp.country.as_deref());
    let own = super::providers::opened_for(&deps.keys, &otp.account_sid, &own, routes);
    let message = OutboundMessage::new(&otp, index_of_event, &event.sid, &d, code.reveal(), content, now)
        .with_routes(routes)
        .with_providers(&own);
    let outcome = deps.dispatcher.dispatch(&message).await;
    drop(message);
    let lookup = super::send::record_outcome(&mut event, outcome);
    if let Err(e) = deps.store.update_event(&otp, index_of_event, &event, lookup).await {
        tracing::warn!(otp = %otp.sid, error = %e, "could not record the step's dispatch result");
    }
    tracing::info!(otp = %otp.sid, step = run.step, channel = d.channel.as_str(), status = event.status.as_str(), "workflow step sent");
    Ok(next)
}

/// Pending at `now`, as every state change requires.
fn otp_pending(otp: &Otp, now: Millis) -> bool {
    otp.status_at(now) == super::otp::OtpStatus::Pending
}

/// The run after step `index`: the next step and its wait, when there is one that falls before
/// the OTP's expiry.
fn next_run(otp: &Otp, wf: &WorkflowRun, run: &StepRun, index: usize) -> StepRun {
    match wf.steps.get(index + 1) {
        Some(s) if wf.due_ms(otp.created_ms, index + 1) < otp.expires_ms => {
            StepRun { step: run.step + 1, wait: s.interval_secs, more: true, ..run.clone() }
        }
        _ => StepRun { more: false, wait: 0, ..run.clone() },
    }
}

/// Claim step `step` (append its event, count it in usage for its channel), only if the OTP is
/// still pending and no run claimed the step first.
async fn claim(deps: &Deps, otp: &Otp, step: u32, event: &ChannelEvent, now: Millis) -> Result<bool> {
    let usage = [UsageKey {
        account_sid: otp.account_sid.clone(),
        day: time::day(now),
        category: UsageCategory::Channel(event.channel),
    }];
    deps.store.claim_step(&otp.account_sid, &otp.sid, step, event, &usage, now).await
}

/// Resolve the `workflow` parameter of a send: a sid or a name of the acting account.
pub async fn resolve(deps: &Deps, account: &Account, workflow: &str) -> Result<WorkflowDef> {
    let found = if ids::is_sid(ids::WORKFLOW, workflow) {
        deps.store.get_workflow(&account.sid, workflow).await?
    } else if workflow.chars().count() > MAX_NAME_LEN {
        // No workflow has such a name: unknown, without a key built from it.
        None
    } else {
        deps.store.get_workflow_by_name(&account.sid, workflow).await?
    };
    found.ok_or(Error::WorkflowNotFound)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn channels_come_as_the_seeds_string_or_an_array_and_echo_as_given() {
        let seed = json!("[{ \"channel\":\"sms\", \"interval\":\"0\"}, { \"channel\":\"sms\", \"interval\":\"60\"}, { \"channel\":\"voice\", \"interval\":\"60\"}]");
        let (steps, echo) = parse_channels(&seed).unwrap();
        assert_eq!(
            steps,
            vec![
                Step { channel: Channel::Sms, interval_secs: 0 },
                Step { channel: Channel::Sms, interval_secs: 60 },
                Step { channel: Channel::Call, interval_secs: 60 },
            ]
        );
        assert_eq!(
            echo,
            r#"[{"channel":"sms","interval":"0"},{"channel":"sms","interval":"60"},{"channel":"voice","interval":"60"}]"#
        );
        let (steps, echo) = parse_channels(&json!([{ "channel": "email", "interval": 30 }])).unwrap();
        assert_eq!(steps, vec![Step { channel: Channel::Email, interval_secs: 30 }]);
        assert_eq!(echo, r#"[{"channel":"email","interval":30}]"#);
    }

    fn param(r: Result<(Vec<Step>, String)>) -> String {
        match r {
            Err(Error::InvalidParameter { param, .. }) => param.into_owned(),
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn bad_steps_name_the_field() {
        assert_eq!(param(parse_channels(&json!([]))), "channels");
        let eleven: Vec<Value> = (0..11).map(|_| json!({ "channel": "sms", "interval": 1 })).collect();
        assert_eq!(param(parse_channels(&Value::Array(eleven))), "channels");
        assert_eq!(param(parse_channels(&json!([{ "channel": "fax", "interval": 0 }]))), "channels[0].channel");
        assert_eq!(
            param(parse_channels(&json!([{ "channel": "sms", "interval": 0 }, { "channel": "sms", "interval": -5 }]))),
            "channels[1].interval"
        );
        assert_eq!(param(parse_channels(&json!([{ "channel": "sms", "interval": "soon" }]))), "channels[0].interval");
        assert_eq!(param(parse_channels(&json!([{ "channel": "sms", "interval": 1.5 }]))), "channels[0].interval");
        assert_eq!(
            param(parse_channels(
                &json!([{ "channel": "sms", "interval": 86_000 }, { "channel": "call", "interval": 401 }])
            )),
            "channels"
        );
        assert_eq!(param(parse_channels(&json!("[{oops"))), "channels");
        assert_eq!(param(parse_channels(&json!({ "channel": "sms" }))), "channels");
    }

    #[test]
    fn steps_fall_due_after_the_intervals_before_them() {
        let run = WorkflowRun {
            workflow_sid: "WF1".into(),
            steps: vec![
                Step { channel: Channel::Sms, interval_secs: 0 },
                Step { channel: Channel::Sms, interval_secs: 60 },
                Step { channel: Channel::Call, interval_secs: 120 },
            ],
            email: None,
            email_from: None,
            sent: 0,
        };
        assert_eq!((run.due_ms(1_000, 0), run.due_ms(1_000, 1), run.due_ms(1_000, 2)), (1_000, 61_000, 181_000));
    }

    #[test]
    fn names_may_hold_spaces_but_not_be_empty_or_long() {
        assert!(validate_name("Workflow SSV").is_ok());
        assert!(validate_name(" ").is_err());
        assert!(validate_name(&"w".repeat(65)).is_err());
        assert!(validate_name("a\nb").is_err());
    }
}
