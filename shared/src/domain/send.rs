//! Send: admit the OTP against its limits, supersede the older one, store it, deliver it.

use std::{borrow::Cow, time::Duration};

use rand::Rng;

use super::{
    account::Account,
    autofill, content,
    crypto::{generate_code, Code, Purpose},
    error::{Error, Result},
    guard,
    idempotency::{self, IdempotencyRecord},
    ids::{self, new_sid},
    insights,
    limits::{admissions, default_admission, plan_counters, Admission, Counter, LimitDef},
    otp::{Channel, ChannelEvent, ChannelStatus, Delivery, Destination, Otp, OtpStatus, Superseded},
    phone,
    policy::GuardSettings,
    providers, routing,
    time::{self, Millis},
    usage::{UsageCategory, UsageKey},
    voice::{self, Gender},
    workflows::{self, WorkflowRun},
};
use crate::ports::{
    Deps, DispatchError, DispatchReceipt, Lookup, OutboundMessage, SendPlan, SendSnapshot, SnapshotRequest, StepRun,
};

/// How often a send re-reads and re-plans after losing a conditional write to a concurrent one.
pub const MAX_COMMIT_ATTEMPTS: u32 = 12;
/// Most counters one send may touch: with the OTP, destination, supersede, usage and
/// idempotency items they must fit in one DynamoDB transaction (100 items).
pub const MAX_COUNTERS_PER_SEND: usize = 90;
/// The `targetSid` of a send to a test destination (nothing was handed to a provider).
pub const TEST_PROVIDER_ID: &str = "test";
/// OTP records are kept this long after creation for search and reports.
pub const RETENTION_DAYS: i64 = 90;

/// A validated send request.
#[derive(Debug, Clone)]
pub struct SendRequest {
    pub service: String,
    pub delivery: Delivery,
    pub length: u8,
    pub timeout_secs: u32,
    pub guard_time: Option<u32>,
    /// `limitName → key value`, in the order given.
    pub limits: Vec<(String, String)>,
    /// The `Idempotency-Key` header, scoped to the acting account.
    pub idempotency_key: Option<String>,
    /// `workflow`: the sid or name of the workflow that delivers the OTP.
    pub workflow: Option<String>,
    /// `email` / `emailFrom`: where a workflow's email steps go, and from whom.
    pub email: Option<String>,
    pub email_from: Option<String>,
}

impl SendRequest {
    /// Cross-field rules the parser cannot see one parameter at a time, and the destination put
    /// in its one form: a phone number in E.164 (whose country it answers), an address as given.
    pub fn validate(&mut self) -> Result<Option<String>> {
        let mut country = None;
        if matches!(self.delivery.channel, Channel::Sms | Channel::Call | Channel::Whatsapp) {
            let number = phone::parse(&self.delivery.to, "to")?;
            self.delivery.to = number.e164;
            country = Some(number.country);
        }
        // An address in one form, lower case (as test destinations keep theirs): the default
        // limit, the supersede pointer, verify by number and the failed-verify budget see
        // `User@Example.com` and `user@example.com` as one destination.
        if self.delivery.channel == Channel::Email && is_email(&self.delivery.to) {
            self.delivery.to.make_ascii_lowercase();
        }
        // A limit keyed by an address counts it in that one form too.
        for (_, value) in &mut self.limits {
            if is_email(value) {
                value.make_ascii_lowercase();
            }
        }
        let d = &self.delivery;
        if !d.body.contains("{code}") {
            return Err(Error::invalid("body", "must contain {code}"));
        }
        match d.channel {
            Channel::Email if !is_email(&d.to) => return Err(Error::invalid("to", "must be an email address")),
            Channel::Email if !is_email(&d.from) => {
                return Err(Error::invalid("from", "must be a verified sender address for email"));
            }
            Channel::Email if d.subject.as_deref().is_none_or(str::is_empty) => {
                return Err(Error::invalid("subject", "required for email"));
            }
            _ => {}
        }
        autofill::validate(d)?;
        if let Some(guard) = self.guard_time {
            if guard > self.timeout_secs {
                return Err(Error::invalid("guardTime", "must not exceed timeout"));
            }
        }
        if let Some(key) = &self.idempotency_key {
            idempotency::validate_key(key)?;
        }
        Ok(country)
    }
}

pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    !local.is_empty()
        && s.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c == '<' || c == '>' || c == ',')
}

/// The whole text of a delivery: the body with the code, and the autofill lines an SMS asked
/// for (WebOTP, SMS Retriever).
pub fn message(d: &Delivery, code: &Code) -> String {
    autofill::append(render(&d.body, d.channel, code), d, code)
}

/// The message text with the code in it. Calls read the digits one by one.
pub fn render(template: &str, channel: Channel, code: &Code) -> String {
    let code_text = match channel {
        Channel::Call => code.reveal().chars().map(String::from).collect::<Vec<_>>().join(" "),
        _ => code.reveal().to_owned(),
    };
    template.replace("{code}", &code_text)
}

pub async fn send(deps: &Deps, account: &Account, mut req: SendRequest) -> Result<String> {
    // A limit name no limit can have (they are 1-64 letters, digits, `_ . -`) is unknown,
    // answered before any key is built from it.
    if let Some((name, _)) = req.limits.iter().find(|(name, _)| !crate::domain::limits::is_valid_limit_name(name)) {
        return Err(Error::UnknownLimitName(name.chars().take(crate::domain::limits::MAX_NAME_LEN).collect()));
    }
    // A workflow decides the channels: `to` is a phone number when any step is sms or call.
    let workflow = match req.workflow.as_deref() {
        Some(w) => Some(workflows::resolve(deps, account, w).await?),
        None => None,
    };
    if let Some(wf) = &workflow {
        if wf.steps.len() > 1 && !deps.scheduler.runs_workflows() {
            return Err(Error::invalid(
                "workflow",
                "workflows of more than one step are not available in this deployment",
            ));
        }
        let phone = wf.steps.iter().map(|s| s.channel).find(|c| *c != Channel::Email);
        req.delivery.channel = phone.unwrap_or(Channel::Email);
        if phone.is_none() {
            if let Some(from) = &req.email_from {
                req.delivery.from = from.clone();
            }
        }
    }
    let country = req.validate()?;
    let channels: Vec<Channel> = match &workflow {
        Some(wf) => {
            workflows::check_send(&req.delivery, &wf.steps, req.email.as_deref(), req.email_from.as_deref())?;
            wf.steps.iter().map(|s| s.channel).collect()
        }
        None => vec![req.delivery.channel],
    };
    for channel in &channels {
        if !deps.dispatcher.delivers(*channel) {
            let param = if workflow.is_some() { "workflow" } else { "channel" };
            return Err(Error::invalid(param, format!("{} is not available in this deployment", channel.as_str())));
        }
    }
    // Only a sender the account may use, checked before anything is written: one tenant
    // cannot send as another (its addresses, its sender ID, its registered numbers).
    for channel in &channels {
        let (param, from) = match (channel, req.email_from.as_deref()) {
            (Channel::Email, Some(from)) if req.delivery.channel != Channel::Email => ("emailFrom", from),
            _ => ("from", req.delivery.from.as_str()),
        };
        if !account.policy.allows_sender(*channel, from) {
            return Err(Error::invalid(param, "not a sender this account may use"));
        }
    }
    // A test destination receives nothing and verifies with its fixed code: no geo check, no
    // guard, no default limit, no delivery; counted as `test` usage only.
    let test = account.policy.test_destination(&req.delivery.to);
    if let (Some(cc), None) = (&country, test) {
        for channel in channels.iter().filter(|c| **c != Channel::Email) {
            if !account.policy.allows(*channel, cc) {
                let refused = Error::CountryNotAllowed(cc.clone());
                insights::count_refusal(deps, &account.sid, channels[0], Some(cc), &refused).await;
                return Err(refused);
            }
        }
    }
    // The pumping guard watches this send's country (None: not guarded).
    let guarded = country.as_deref().filter(|cc| test.is_none() && guard::guards(&account.policy.guard, cc));
    let now = deps.clock.now_ms();
    let (sid, code) = match test {
        Some(t) => (
            deps.keys.otp_sid(None, now, deps.store.otp_shards()),
            t.code(&deps.keys, &account.sid).ok_or(Error::Internal)?,
        ),
        None => (deps.keys.otp_sid(country.as_deref(), now, deps.store.otp_shards()), generate_code(req.length)),
    };
    let run = workflow.map(|wf| WorkflowRun {
        workflow_sid: wf.sid,
        email: req.email.clone().or_else(|| is_email(&req.delivery.to).then(|| req.delivery.to.clone())),
        email_from: req.email_from.clone().or_else(|| is_email(&req.delivery.from).then(|| req.delivery.from.clone())),
        steps: wf.steps,
        sent: 0,
    });
    // What each channel will say, checked before anything is written: an SMS over its segment
    // budget or a call in a language no voice speaks costs nothing.
    // Without a workflow the one step is the request's delivery itself, borrowed.
    let steps: Vec<Cow<'_, Delivery>> = match &run {
        Some(run) => run.steps.iter().map(|s| Cow::Owned(workflows::step_delivery(&req.delivery, run, *s))).collect(),
        None => vec![Cow::Borrowed(&req.delivery)],
    };
    let mut voices = None;
    let mut contents = Vec::with_capacity(steps.len());
    for d in &steps {
        let chosen = match d.channel {
            Channel::Call => {
                if voices.is_none() {
                    voices = Some(deps.dispatcher.voices().await.map_err(|_| Error::Unavailable)?);
                }
                let all = voices.as_deref().map(Vec::as_slice).unwrap_or_default();
                Some(voice::choose(all, &d.language, Gender::from_param(d.voice.as_deref()))?.clone())
            }
            _ => None,
        };
        contents.push(content::compose(d, &code, chosen.as_ref())?);
    }
    // The first step goes out with the send unless it waits.
    let inline = run.as_ref().is_none_or(|r| r.steps[0].interval_secs == 0);
    let d = &steps[0];
    let content = contents.swap_remove(0);
    let event = ChannelEvent {
        sid: new_sid(ids::EVENT),
        at_ms: now,
        channel: d.channel,
        sender: d.from.clone(),
        recipient: d.to.clone(),
        // A test send is done once stored: "sent" to nobody, by the "test" provider.
        target_sid: test.map(|_| TEST_PROVIDER_ID.to_owned()),
        status: if test.is_some() { ChannelStatus::Sent } else { ChannelStatus::Queued },
        error_code: None,
        error_message: None,
        encoding: content.sms.map(|m| m.encoding),
        segments: content.sms.map(|m| m.segments),
        route: None,
    };
    // A test destination takes no workflow: it is sent (to nobody) once.
    let run = run.filter(|_| test.is_none()).map(|r| WorkflowRun { sent: u32::from(inline), ..r });
    let otp = Otp {
        code_hash: deps.keys.hash_code(&sid, code.reveal()),
        sealed_code: deps.keys.seal(Purpose::Code, code.reveal().as_bytes(), &sid),
        sid,
        account_sid: account.sid.clone(),
        service: req.service.clone(),
        delivery: req.delivery.clone(),
        length: code.reveal().len() as u8,
        country: country.clone(),
        status: OtpStatus::Pending,
        created_ms: now,
        updated_ms: now,
        expires_ms: now + i64::from(req.timeout_secs) * 1000,
        guard_time: req.guard_time,
        cancel_at_ms: None,
        attempts: 0,
        checks: vec![],
        events: if inline || test.is_some() { vec![event.clone()] } else { vec![] },
        workflow: run,
        watched: req.delivery.callback.is_some() || account.policy.callback.is_some(),
        clears_failures: false,
        guarded: guarded.is_some(),
    };

    let guarded = guarded.map(|cc| (cc, &account.policy.guard));
    let max_failures = account.policy.max_failed_verifies;
    let admitted = match admit(deps, &req, otp, now, guarded, test.is_some(), max_failures).await {
        Ok(admitted) => admitted,
        Err(e) => {
            // A refusal (453, 454, 477, 478) counts in insights; other errors do not.
            insights::count_refusal(deps, &account.sid, channels[0], country.as_deref(), &e).await;
            return Err(e);
        }
    };
    let plan = match admitted {
        Admitted::Plan(plan) => plan,
        Admitted::Replay(sid) => {
            tracing::info!(otp = %sid, "idempotent repeat: first response, nothing sent");
            return Ok(sid);
        }
    };
    let otp = &plan.otp;
    if test.is_some() {
        tracing::info!(otp = %otp.sid, "otp to a test destination: stored, nothing delivered");
        return Ok(otp.sid.clone());
    }
    // The later steps are scheduled before the first goes out: a scheduler that is down
    // undoes the send rather than leave an OTP without its fallbacks.
    if let Some(next) = otp.workflow.as_ref().and_then(|w| first_scheduled(otp, w)) {
        if let Err(e) = deps.scheduler.start(&next).await {
            tracing::warn!(otp = %otp.sid, error = %e, "workflow could not be scheduled: send undone");
            undo(deps, &plan).await;
            return Err(Error::Unavailable);
        }
    }
    if !inline {
        tracing::info!(otp = %otp.sid, "otp stored; its workflow's first step waits");
        return Ok(otp.sid.clone());
    }
    let routes = routing::routes_for(&account.policy.routes, d.channel, otp.country.as_deref());
    let own = providers::opened_for(&deps.keys, &account.sid, &account.policy.providers, routes);
    let message = OutboundMessage::new(otp, 0, &event.sid, d, code.reveal(), content, now)
        .with_routes(routes)
        .with_providers(&own);
    let dispatched = deps.dispatcher.dispatch(&message).await;
    let mut event = event;
    let lookup = match dispatched {
        Err(DispatchError::Unavailable | DispatchError::Unconfirmed) => {
            // Nothing was delivered (or, unconfirmed, its code must not work): take the whole
            // send back so it leaves no trace (a scheduled step finds no OTP and sends nothing).
            undo(deps, &plan).await;
            if otp.workflow.is_some() {
                let _ = deps.scheduler.stop(&otp.account_sid, &otp.sid).await;
            }
            return Err(Error::Unavailable);
        }
        outcome => record_outcome(&mut event, outcome),
    };
    // The message is out; failing to note the provider's id must not fail the send.
    if let Err(e) = deps.store.update_event(otp, 0, &event, lookup).await {
        tracing::warn!(otp = %otp.sid, error = %e, "could not record the dispatch result");
    }
    tracing::info!(otp = %otp.sid, channel = d.channel.as_str(), status = event.status.as_str(), "otp sent");
    Ok(otp.sid.clone())
}

/// Admit and store `otp`, which nothing delivers (a factor's challenge, `domain::factors`):
/// the send's limits, failed-verify budget, idempotency and usage, and nothing sent. Its sid
/// (an idempotent repeat's: the first one's).
pub(crate) async fn commit_undelivered(
    deps: &Deps,
    account: &Account,
    req: &SendRequest,
    otp: Otp,
    now: Millis,
) -> Result<String> {
    if let Some((name, _)) = req.limits.iter().find(|(name, _)| !crate::domain::limits::is_valid_limit_name(name)) {
        return Err(Error::UnknownLimitName(name.chars().take(crate::domain::limits::MAX_NAME_LEN).collect()));
    }
    if let Some(key) = &req.idempotency_key {
        idempotency::validate_key(key)?;
    }
    let channel = otp.delivery.channel;
    match admit(deps, req, otp, now, None, false, account.policy.max_failed_verifies).await {
        Ok(Admitted::Plan(plan)) => Ok(plan.otp.sid),
        Ok(Admitted::Replay(sid)) => Ok(sid),
        Err(e) => {
            insights::count_refusal(deps, &account.sid, channel, None, &e).await;
            Err(e)
        }
    }
}

/// `event` as a dispatch left it: sent (with the provider's id) or refused, by its route.
/// Answers which lookup of the provider id receipts need. A route that was down or silent is
/// a failed event too (a workflow step's; a send undoes itself first).
pub(crate) fn record_outcome(event: &mut ChannelEvent, outcome: Result<DispatchReceipt, DispatchError>) -> Lookup {
    match outcome {
        Ok(receipt) => {
            event.status = ChannelStatus::Sent;
            event.target_sid = Some(receipt.provider_id);
            event.route = receipt.route;
            if receipt.receipts_name_event {
                Lookup::None
            } else if receipt.account_provider {
                Lookup::Account
            } else {
                Lookup::Deployment
            }
        }
        Err(DispatchError::Rejected { code, message, route }) => {
            event.status = ChannelStatus::Failed;
            event.error_code = Some(code);
            event.error_message = Some(message);
            event.route = route;
            Lookup::Deployment
        }
        Err(DispatchError::Unavailable) => {
            event.status = ChannelStatus::Failed;
            event.error_code = Some("UNAVAILABLE".into());
            event.error_message = Some("The provider could not be reached".into());
            Lookup::Deployment
        }
        Err(DispatchError::Unconfirmed) => {
            event.status = ChannelStatus::Failed;
            event.error_code = Some("UNCONFIRMED".into());
            event.error_message = Some("The provider did not answer in time; the message may have gone".into());
            Lookup::Deployment
        }
    }
}

/// The first step the scheduler runs, if any falls before the OTP's expiry.
fn first_scheduled(otp: &Otp, w: &WorkflowRun) -> Option<StepRun> {
    let step = w.sent as usize;
    let s = w.steps.get(step)?;
    (w.due_ms(otp.created_ms, step) < otp.expires_ms).then(|| StepRun {
        account_sid: otp.account_sid.clone(),
        otp_sid: otp.sid.clone(),
        step: w.sent,
        wait: s.interval_secs,
        more: true,
    })
}

/// Take a committed send back; if the store cannot be reached now, keep trying in the
/// background.
async fn undo(deps: &Deps, plan: &SendPlan) {
    if let Err(e) = deps.store.undo_send(plan).await {
        tracing::warn!(otp = %plan.otp.sid, error = %e, "undo of an undelivered send failed; trying again later");
        tokio::spawn(undo_if_it_lands(deps.clone(), plan.clone()));
    }
}

/// What admission decided.
// One per request, moved once.
#[allow(clippy::large_enum_variant)]
enum Admitted {
    /// Committed: dispatch it.
    Plan(SendPlan),
    /// The idempotency key was used for this very request within 24 h: its OTP sid, nothing
    /// written and nothing to send.
    Replay(String),
}

/// Read, plan and commit, again while a concurrent send wins the race. `guarded`: the country
/// the pumping guard watches for this send, and the account's settings.
async fn admit(
    deps: &Deps,
    req: &SendRequest,
    otp: Otp,
    now: Millis,
    guarded: Option<(&str, &GuardSettings)>,
    test: bool,
    max_failures: u32,
) -> Result<Admitted> {
    let account = otp.account_sid.clone();
    let (sid, to) = (otp.sid.clone(), otp.delivery.to.clone());
    let first_channel = otp.events.first().map(|e| e.channel);
    // The OTP goes into the first plan as it is; a plan after a lost race gets a copy.
    let mut spare = Some(otp);
    let key = req.idempotency_key.as_deref();
    let fingerprint = key.map(|_| idempotency::fingerprint(req));
    // A batch read is not isolated from a concurrent transaction (DynamoDB reads each item
    // committed, not the batch): a limit refusal of a keyed send is confirmed by one more read,
    // in case it saw the counters of a send with the same key but not yet its record.
    let mut confirmed = false;
    // The last plan that answered `Contended`: if the record then names its OTP, that commit was
    // applied after all (an answer lost and retried), and it is this send's to dispatch.
    let mut contended: Option<SendPlan> = None;
    let names: Vec<String> = req.limits.iter().map(|(n, _)| n.clone()).collect();
    // The default limit (one code a minute per destination) is against pumping and bombing:
    // a factor's challenge sends nothing, and its guesses are bounded by the failed-verify
    // budget instead.
    let sends = spare.as_ref().is_some_and(|o| o.delivery.channel.sends());
    let default = (req.limits.is_empty() && !test && sends).then(|| default_admission(&account, &to));
    let default_keys: Vec<_> = default.iter().flat_map(|a| a.counters.iter().map(|(k, _)| k.clone())).collect();
    let guard_keys = guarded.map(|(cc, _)| guard::windows(&account, cc, now)).unwrap_or_default();
    for attempt in 0..MAX_COMMIT_ATTEMPTS {
        let snap = deps
            .store
            .snapshot(&SnapshotRequest {
                account_sid: &account,
                service: &req.service,
                to: &to,
                limit_names: &names,
                counters: &default_keys,
                idempotency_key: key,
                guard: &guard_keys,
            })
            .await?;
        // The pointer names this very OTP: a commit answered `Contended` was applied after all
        // (its answer lost and the retry refused; DynamoDB's request token usually hides that).
        if let Some(plan) = contended.as_ref().filter(|_| snap.destination.as_ref().is_some_and(|d| d.current == sid)) {
            return Ok(Admitted::Plan(plan.clone()));
        }
        // A repeat is answered before anything else is looked at: it touches no limit or usage.
        if let (Some(record), Some(fp)) = (snap.idempotency.as_ref().filter(|r| r.live_at(now)), &fingerprint) {
            if record.otp_sid == sid {
                return contended.map(Admitted::Plan).ok_or(Error::Internal);
            }
            return if record.fingerprint == *fp {
                Ok(Admitted::Replay(record.otp_sid.clone()))
            } else {
                Err(idempotency::reused())
            };
        }
        if let Some((cc, settings)) = guarded {
            if let Some(paused) = guard::pausing(settings, cc, &snap.guard) {
                tracing::warn!(account = %account, country = cc, window = paused, "pumping guard: sends paused");
                return Err(Error::SendsPaused(paused.to_owned()));
            }
        }
        // Too many failed verifies at this destination since its last success: no new code
        // (each would bring five more guesses) until one succeeds, the operator clears them, or
        // a day passes without one.
        let failures = snap.failures.count_at(now);
        if failures >= max_failures {
            tracing::warn!(account = %account, failures, "sends paused: too many failed verifies at the destination");
            return Err(Error::TooManyFailures);
        }
        // The default limit's admission and windows are borrowed as they are (the snapshot
        // read its windows); named limits are resolved and their windows read now.
        let (named, fetched);
        let (adm, states): (&[Admission], &[Option<Counter>]) = match &default {
            Some(d) => (std::slice::from_ref(d), &snap.counters),
            None => {
                named = admissions(&account, &resolve_limits(&req.limits, &snap)?);
                let keys: Vec<_> = named.iter().flat_map(|a| a.counters.iter().map(|(k, _)| k.clone())).collect();
                if keys.len() > MAX_COUNTERS_PER_SEND {
                    return Err(Error::invalid(
                        "limits",
                        format!("at most {MAX_COUNTERS_PER_SEND} buckets across the limits of one send"),
                    ));
                }
                fetched = deps.store.get_counters(&keys).await?;
                (&named, &fetched)
            }
        };
        let counters = match plan_counters(now, adm, states) {
            Ok(c) => c,
            Err(Error::TooManyToDestination | Error::LimitExceeded(_))
                if key.is_some() && !confirmed && attempt + 1 < MAX_COMMIT_ATTEMPTS =>
            {
                confirmed = true;
                backoff(attempt).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut otp = match spare.take() {
            Some(otp) => otp,
            None => contended.as_ref().map(|p| p.otp.clone()).ok_or(Error::Internal)?,
        };
        otp.clears_failures = failures > 0;
        let (destination, expected_current, supersede) = supersede(snap.destination, &otp, req.guard_time, now);
        let plan = SendPlan {
            destination,
            expected_current,
            supersede,
            counters,
            usage: if test {
                vec![UsageKey { account_sid: account.clone(), day: time::day(now), category: UsageCategory::Test }]
            } else {
                // All, and the channel of what goes out with the send (a workflow step that
                // waits is counted when it is sent).
                std::iter::once(UsageCategory::All)
                    .chain(first_channel.map(UsageCategory::Channel))
                    .map(|category| UsageKey { account_sid: account.clone(), day: time::day(now), category })
                    .collect()
            },
            idempotency: key.zip(fingerprint.clone()).map(|(key, fingerprint)| IdempotencyRecord {
                key: key.to_owned(),
                otp_sid: sid.clone(),
                fingerprint,
                created_ms: now,
            }),
            guard: guarded.map(|(cc, _)| guard::counted_in(&account, cc, now, &sid)).unwrap_or_default(),
            otp,
        };
        match deps.store.commit_send(&plan).await {
            Ok(()) => return Ok(Admitted::Plan(plan)),
            Err(Error::Contended) => {
                contended = Some(plan);
                backoff(attempt).await;
            }
            Err(Error::Unavailable) => {
                // A timed-out commit may still be applied later (the request reached the store
                // before it stopped answering): the caller hears 503, so take it back if it lands.
                tokio::spawn(undo_if_it_lands(deps.clone(), plan));
                return Err(Error::Unavailable);
            }
            Err(e) => return Err(e),
        }
    }
    // Out of attempts: if one of them was applied after all, take it back once it shows.
    if let Some(plan) = contended {
        tokio::spawn(undo_if_it_lands(deps.clone(), plan));
    }
    Err(Error::Unavailable)
}

fn resolve_limits(named: &[(String, String)], snap: &SendSnapshot) -> Result<Vec<(LimitDef, String)>> {
    named
        .iter()
        .zip(snap.limits.iter().chain(std::iter::repeat(&None)))
        .map(|((name, value), def)| match def {
            Some(def) => Ok((def.clone(), value.clone())),
            None => Err(Error::UnknownLimitName(name.clone())),
        })
        .collect()
}

/// The new destination pointer and what happens to the OTP it replaces: canceled now, or after
/// a guard time (the new send's, else the older OTP's own).
fn supersede(
    current: Option<Destination>,
    otp: &Otp,
    guard_time: Option<u32>,
    now: Millis,
) -> (Destination, Option<String>, Option<Superseded>) {
    let fresh = |previous| Destination {
        current: otp.sid.clone(),
        current_guard: guard_time,
        current_expires_ms: otp.expires_ms,
        previous,
    };
    match current {
        None => (fresh(None), None, None),
        // The older OTP is past its timeout: nothing to cancel.
        Some(d) if d.current_expires_ms <= now => (fresh(None), Some(d.current), None),
        Some(d) => {
            let guard = guard_time.or(d.current_guard).unwrap_or(0);
            let old = Superseded { sid: d.current.clone(), cancel_at_ms: now + i64::from(guard) * 1000 };
            (fresh(Some(old.clone())), Some(d.current), Some(old))
        }
    }
}

/// How long after a commit whose outcome is unknown its undo is tried (seconds after the
/// failure): past the operation timeout and any pause of the store a request can survive.
pub const UNDO_IF_IT_LANDS_AFTER_S: [u64; 7] = [1, 2, 3, 5, 8, 13, 21];

/// Undo a commit that answered "unavailable" once it shows up, for about half a minute: a send
/// answered 503 leaves nothing behind. `NotFound`: not (yet) applied.
async fn undo_if_it_lands(deps: Deps, plan: SendPlan) {
    let mut waited = 0;
    for at in UNDO_IF_IT_LANDS_AFTER_S {
        tokio::time::sleep(Duration::from_secs(at - waited)).await;
        waited = at;
        match deps.store.undo_send(&plan).await {
            Ok(()) => {
                tracing::warn!(otp = %plan.otp.sid, "a commit answered as failed landed later: undone");
                return;
            }
            Err(Error::NotFound) => {}
            Err(e) => tracing::warn!(otp = %plan.otp.sid, error = %e, "undo of an unknown commit failed; trying again"),
        }
    }
}

async fn backoff(attempt: u32) {
    let cap_ms = (5u64 << attempt.min(6)).min(250);
    let ms = rand::thread_rng().gen_range(1..=cap_ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_read_the_code_digit_by_digit() {
        let code = Code::new("123");
        assert_eq!(render("Code {code}.", Channel::Sms, &code), "Code 123.");
        assert_eq!(render("Code {code}.", Channel::Call, &code), "Code 1 2 3.");
    }

    #[test]
    fn supersede_uses_the_new_guard_time_else_the_old_one() {
        let otp = crate::domain::otp::tests::otp_at(1_000);
        let old = Destination {
            current: "OTPold".into(),
            current_guard: Some(30),
            current_expires_ms: 500_000,
            previous: None,
        };
        let (_, _, s) = supersede(Some(old.clone()), &otp, Some(10), 1_000);
        assert_eq!(s.unwrap().cancel_at_ms, 11_000);
        let (_, _, s) = supersede(Some(old.clone()), &otp, None, 1_000);
        assert_eq!(s.unwrap().cancel_at_ms, 31_000);
        let (d, expected, s) = supersede(Some(Destination { current_guard: None, ..old }), &otp, None, 1_000);
        assert_eq!(s.unwrap().cancel_at_ms, 1_000, "no guard time: canceled at once");
        assert_eq!(expected.as_deref(), Some("OTPold"));
        assert_eq!(d.current, otp.sid);
    }

    #[test]
    fn an_expired_older_otp_is_not_touched() {
        let otp = crate::domain::otp::tests::otp_at(1_000);
        let old =
            Destination { current: "OTPold".into(), current_guard: None, current_expires_ms: 1_000, previous: None };
        let (d, expected, s) = supersede(Some(old), &otp, None, 1_000);
        assert!(s.is_none());
        assert!(d.previous.is_none());
        assert_eq!(expected.as_deref(), Some("OTPold"));
    }
}
