//! The dev server's workflow scheduler: what Step Functions' wait states are on AWS, as an
//! in-process queue of due steps on the dev clock. `POST /dev/clock` runs whatever fell due
//! before it answers, so a test (or a developer) sees each step in the outbox at once; a
//! background tick runs them in real time too.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use twofa::{
    adapters::clock::AdjustableClock,
    domain::{error::Error, time::Millis, workflows::run_step},
    ports::{Clock, Deps, Scheduler, StepRun},
    Result,
};

/// How often the queue looks at the clock.
const TICK: Duration = Duration::from_millis(200);
/// A step that failed retryably (the store was busy) is tried again this much later.
const RETRY_MS: Millis = 1_000;
/// Tries of one step before it is given up (logged).
const MAX_TRIES: u32 = 5;

struct Due {
    at_ms: Millis,
    run: StepRun,
    tries: u32,
}

pub struct DevScheduler {
    clock: Arc<AdjustableClock>,
    queue: Mutex<Vec<Due>>,
    /// OTPs whose run is queued or running: a second start of the same OTP is the same run.
    running: Mutex<HashSet<String>>,
    /// One pass over the queue at a time (the tick and a clock move may both ask).
    pass: tokio::sync::Mutex<()>,
}

impl DevScheduler {
    pub fn new(clock: Arc<AdjustableClock>) -> Self {
        DevScheduler { clock, queue: Mutex::default(), running: Mutex::default(), pass: tokio::sync::Mutex::new(()) }
    }

    /// Steps waiting, for `/dev/workflows`: (OTP sid, step, due instant).
    pub fn waiting(&self) -> Vec<(String, u32, Millis)> {
        let q = self.queue.lock().expect("scheduler lock");
        q.iter().map(|d| (d.run.otp_sid.clone(), d.run.step, d.at_ms)).collect()
    }

    fn push(&self, due: Due) {
        self.queue.lock().expect("scheduler lock").push(due);
    }

    /// The steps due now, taken off the queue.
    fn take_due(&self) -> Vec<Due> {
        let now = self.clock.now_ms();
        let mut q = self.queue.lock().expect("scheduler lock");
        let (due, later): (Vec<Due>, Vec<Due>) = q.drain(..).partition(|d| d.at_ms <= now);
        *q = later;
        due
    }

    /// Run every step that is due, and those its runs make due at once, until none is.
    pub async fn run_due(&self, deps: &Deps) {
        let _pass = self.pass.lock().await;
        loop {
            let mut due = self.take_due();
            if due.is_empty() {
                return;
            }
            due.sort_by_key(|d| d.at_ms);
            for d in due {
                match run_step(deps, &d.run).await {
                    // The next step waits its interval after this one was due (not after it
                    // ran), as Step Functions' waits chain.
                    Ok(next) if next.more => {
                        self.push(Due { at_ms: d.at_ms + Millis::from(next.wait) * 1000, run: next, tries: 0 })
                    }
                    Ok(_) => self.finished(&d.run.otp_sid),
                    Err(Error::Unavailable | Error::Contended) if d.tries + 1 < MAX_TRIES => {
                        self.push(Due { at_ms: self.clock.now_ms() + RETRY_MS, tries: d.tries + 1, ..d })
                    }
                    Err(e) => {
                        tracing::warn!(otp = %d.run.otp_sid, step = d.run.step, error = %e, "workflow step failed");
                        self.finished(&d.run.otp_sid);
                    }
                }
            }
        }
    }

    fn finished(&self, otp_sid: &str) {
        self.running.lock().expect("scheduler lock").remove(otp_sid);
    }

    /// Run due steps in real time as well, for the life of the process.
    pub fn start_ticking(self: &Arc<Self>, deps: Deps) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                this.run_due(&deps).await;
            }
        });
    }
}

#[async_trait]
impl Scheduler for DevScheduler {
    async fn start(&self, run: &StepRun) -> Result<()> {
        if !self.running.lock().expect("scheduler lock").insert(run.otp_sid.clone()) {
            return Ok(());
        }
        let at_ms = self.clock.now_ms() + Millis::from(run.wait) * 1000;
        self.push(Due { at_ms, run: run.clone(), tries: 0 });
        Ok(())
    }

    async fn stop(&self, _account_sid: &str, otp_sid: &str) -> Result<()> {
        self.queue.lock().expect("scheduler lock").retain(|d| d.run.otp_sid != otp_sid);
        self.finished(otp_sid);
        Ok(())
    }
}
