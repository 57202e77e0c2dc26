//! The dev server's callbacks: the embedded store's change feed (what the DynamoDB Stream is on
//! AWS) turned into signed calls by a background task, retried on the dev clock (so
//! `POST /dev/clock` brings retries forward), and the expiry sweeper. `GET /dev/callbacks` shows
//! what is waiting, what was delivered and the dead letters.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;
use tokio::sync::Notify;
use twofa::{
    adapters::{
        clock::AdjustableClock,
        memory::{MemoryStore, OtpChange},
    },
    domain::{
        callbacks::{self, CallFailure, CallbackEvent, DeadLetter, SweepSlice, RETRY_DELAYS_S},
        time::Millis,
    },
    ports::{Clock, Deps, SystemClock, Webhooks},
};

/// Delivered calls and dead letters the dev server keeps (the newest).
const KEEP: usize = 1_000;
/// How often the retry queue looks at the clock (and at once on a clock move).
const TICK: Duration = Duration::from_millis(200);
/// How often the expiry sweeper runs (and at once on a clock move): it reads every OTP.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A sweep starts no read after this long: the feed waits while it runs, and the next sweep
/// is a second away.
const SWEEP_BUDGET: Duration = Duration::from_millis(250);

/// One event waiting for its next call.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Waiting {
    event: CallbackEvent,
    /// Calls made so far.
    attempts: u32,
    due_ms: Millis,
    last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivered {
    pub event: CallbackEvent,
    pub url: String,
    pub attempts: u32,
}

#[derive(Default)]
struct Queues {
    waiting: Vec<Waiting>,
    delivered: VecDeque<Delivered>,
    dead: VecDeque<DeadLetter>,
}

pub struct DevCallbacks {
    deps: Deps,
    store: Arc<MemoryStore>,
    clock: Arc<AdjustableClock>,
    webhooks: Arc<dyn Webhooks>,
    queues: Mutex<Queues>,
    wake: Notify,
}

impl DevCallbacks {
    pub fn new(deps: Deps, store: Arc<MemoryStore>, clock: Arc<AdjustableClock>, webhooks: Arc<dyn Webhooks>) -> Self {
        DevCallbacks { deps, store, clock, webhooks, queues: Mutex::default(), wake: Notify::new() }
    }

    /// Look again now (the clock moved).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Read the store's changes and make the calls, until the runtime ends.
    pub fn start(self: &Arc<Self>) {
        let Some(mut feed) = self.store.subscribe() else { return };
        let this = self.clone();
        tokio::spawn(async move {
            let mut last_sweep = tokio::time::Instant::now();
            loop {
                let mut woken = false;
                tokio::select! {
                    change = feed.recv() => match change {
                        Some(c) => this.enqueue(c).await,
                        None => return,
                    },
                    _ = tokio::time::sleep(TICK) => {},
                    _ = this.wake.notified() => woken = true,
                }
                let now = this.clock.now_ms();
                if woken || last_sweep.elapsed() >= SWEEP_EVERY {
                    last_sweep = tokio::time::Instant::now();
                    if let Err(e) = callbacks::sweep(this.store.as_ref(), SweepSlice::WHOLE, now, SWEEP_BUDGET).await {
                        tracing::warn!(error = %e, "expiry sweep failed");
                    }
                }
                let due: Vec<Waiting> = {
                    let mut q = this.queues.lock().expect("callbacks lock");
                    let (due, later) = std::mem::take(&mut q.waiting).into_iter().partition(|w| w.due_ms <= now);
                    q.waiting = later;
                    due
                };
                for w in due {
                    tokio::spawn(this.clone().attempt(w));
                }
            }
        });
    }

    /// Queue the events of one change that have somewhere to go.
    async fn enqueue(&self, c: OtpChange) {
        let now = self.clock.now_ms();
        let events = callbacks::events(c.old.as_ref(), &c.new, now);
        if events.is_empty() {
            return;
        }
        // Most OTPs have no callback at all: nothing to queue for them.
        let account_has_one = c.new.delivery.callback.is_some()
            || matches!(self.deps.store.get_account(&c.new.account_sid).await, Ok(Some(a)) if a.policy.callback.is_some());
        if !account_has_one {
            return;
        }
        let mut q = self.queues.lock().expect("callbacks lock");
        for event in events {
            q.waiting.push(Waiting { event, attempts: 0, due_ms: now, last_error: None });
        }
    }

    /// One call of `w`, and what follows from its answer.
    async fn attempt(self: Arc<Self>, mut w: Waiting) {
        let account = match self.deps.store.get_account(&w.event.account_sid).await {
            Ok(a) => a,
            Err(e) => return self.retry(w, format!("account read failed: {e}")),
        };
        let (target, key) = match callbacks::route(&w.event, account.as_ref(), &self.deps.keys) {
            Ok(Some(route)) => route,
            Ok(None) => return,
            Err(reason) => return self.dead(w, None, reason),
        };
        // The transport timestamp is the wall clock's, whatever the dev clock says: receivers
        // check it against their own (Standard Webhooks libraries allow 5 minutes).
        let req = callbacks::request(&w.event, &target, &key, SystemClock.now_ms() / 1000);
        w.attempts += 1;
        match self.webhooks.call(&req).await {
            Ok(()) => {
                let mut q = self.queues.lock().expect("callbacks lock");
                push_bounded(&mut q.delivered, Delivered { event: w.event, url: target.url, attempts: w.attempts });
            }
            Err(CallFailure::Refused(reason)) => self.dead(w, Some(target.url), reason),
            Err(CallFailure::Retry(reason)) => {
                tracing::info!(event = %w.event.sid, attempts = w.attempts, %reason, "callback failed; retrying later");
                if w.attempts as usize > RETRY_DELAYS_S.len() {
                    return self.dead(w, Some(target.url), reason);
                }
                self.retry(w, reason);
            }
        }
    }

    fn retry(&self, mut w: Waiting, reason: String) {
        let delay = RETRY_DELAYS_S[(w.attempts as usize).saturating_sub(1).min(RETRY_DELAYS_S.len() - 1)];
        w.due_ms = self.clock.now_ms() + delay as Millis * 1000;
        w.last_error = Some(reason);
        self.queues.lock().expect("callbacks lock").waiting.push(w);
    }

    fn dead(&self, w: Waiting, url: Option<String>, reason: String) {
        tracing::warn!(event = %w.event.sid, %reason, "callback given up: dead letter");
        let letter = DeadLetter { event: w.event, url, attempts: w.attempts, reason, at_ms: self.clock.now_ms() };
        push_bounded(&mut self.queues.lock().expect("callbacks lock").dead, letter);
    }

    /// What `GET /dev/callbacks` shows.
    pub fn view(&self) -> serde_json::Value {
        let q = self.queues.lock().expect("callbacks lock");
        serde_json::json!({ "waiting": q.waiting, "delivered": q.delivered, "deadLetters": q.dead })
    }
}

fn push_bounded<T>(v: &mut VecDeque<T>, item: T) {
    if v.len() >= KEEP {
        v.pop_front();
    }
    v.push_back(item);
}
