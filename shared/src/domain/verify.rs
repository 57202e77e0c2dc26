//! Verify and cancel.

use super::{
    account::Account,
    crypto::Purpose,
    error::{Error, Result},
    factors,
    ids::{self, new_sid},
    otp::{Check, OtpStatus, MAX_ATTEMPTS},
    phone,
    time::Millis,
};
use crate::ports::{CancelWrite, Deps, VerifyWrite};

const MAX_VERIFY_ROUNDS: u32 = 8;

/// An error and the OTP it concerns (the envelope's `requestID`), when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub error: Error,
    pub request_id: Option<String>,
}

impl From<Error> for Rejection {
    fn from(error: Error) -> Self {
        Rejection { error, request_id: None }
    }
}

impl Rejection {
    fn on(error: Error, sid: &str) -> Self {
        Rejection { error, request_id: Some(sid.to_owned()) }
    }
}

pub enum VerifyTarget {
    RequestId(String),
    /// The newest pending OTP for this destination, or one still inside its guard time.
    Number {
        service: String,
        number: String,
    },
}

/// Why an OTP that is not pending at `now` refuses a verify.
fn refusal(status: OtpStatus) -> Option<Error> {
    match status {
        OtpStatus::Pending => None,
        OtpStatus::Success => Some(Error::AlreadyVerified),
        OtpStatus::Canceled => Some(Error::Canceled),
        OtpStatus::Expired => Some(Error::Expired),
        OtpStatus::Failed => Some(Error::MaxAttempts),
    }
}

pub async fn verify(deps: &Deps, account: &Account, target: VerifyTarget, code: &str) -> Result<String, Rejection> {
    if code.is_empty() || code.len() > 10 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid("code", "must be 4 to 10 digits").into());
    }
    let now = deps.clock.now_ms();
    let candidates = match target {
        // No OTP has any other shape: answered like an unknown one, without a store round trip
        // (and no key built from a client's arbitrary string).
        VerifyTarget::RequestId(sid) if !ids::is_sid(ids::OTP, &sid) => return Err(Error::OtpNotFound.into()),
        VerifyTarget::RequestId(sid) => vec![sid],
        VerifyTarget::Number { service, number } => {
            // Stored in E.164: `919960639901` names the OTP sent to it as much as `+919960639901`;
            // an email address in lower case, as the send stored it; anything else (a factor's
            // entity) as given.
            let number = match phone::parse(&number, "number") {
                Ok(p) => p.e164,
                Err(_) if super::send::is_email(&number) => number.to_ascii_lowercase(),
                Err(_) => number,
            };
            let Some(d) = deps.store.get_destination(&account.sid, &service, &number).await? else {
                return Err(Error::OtpNotFound.into());
            };
            let mut c = vec![d.current];
            c.extend(d.previous.filter(|p| p.cancel_at_ms > now).map(|p| p.sid));
            c
        }
    };
    // Each candidate compares the code in a write that counts it when it is wrong: a guess
    // compared with two OTPs (the current one and the one in its guard time) counts on both.
    let mut wrong_on: Option<&str> = None;
    let mut first_refusal: Option<Rejection> = None;
    for sid in &candidates {
        match attempt(deps, account, sid, code, now).await? {
            Attempt::Verified => {
                stop_workflow(deps, &account.sid, sid);
                return Ok(sid.clone());
            }
            Attempt::Wrong => {
                wrong_on.get_or_insert(sid);
            }
            Attempt::Refused(rejection) => {
                first_refusal.get_or_insert(rejection);
            }
            Attempt::Unknown => {
                if first_refusal.is_none() && candidates.len() == 1 {
                    return Err(Error::OtpNotFound.into());
                }
            }
        }
    }
    match (wrong_on, first_refusal) {
        (Some(sid), _) => Err(Rejection::on(Error::InvalidCode, sid)),
        (None, Some(r)) => Err(r),
        (None, None) => Err(Error::OtpNotFound.into()),
    }
}

enum Attempt {
    Verified,
    /// The code was wrong, and counted.
    Wrong,
    Refused(Rejection),
    Unknown,
}

/// Verify OTP `sid` by the hashes a factor made of what was presented (`factors`), answered
/// as `verify` answers one `requestId`; `presented` is what its check records.
pub async fn verify_hashed(
    deps: &Deps,
    account: &Account,
    sid: &str,
    presented: &str,
    hashes: &[Vec<u8>],
) -> Result<String, Rejection> {
    let now = deps.clock.now_ms();
    match attempt_with(deps, account, sid, presented, hashes, now).await? {
        Attempt::Verified => {
            stop_workflow(deps, &account.sid, sid);
            Ok(sid.to_owned())
        }
        Attempt::Wrong => Err(Rejection::on(Error::InvalidCode, sid)),
        Attempt::Refused(r) => Err(r),
        Attempt::Unknown => Err(Error::OtpNotFound.into()),
    }
}

async fn attempt(deps: &Deps, account: &Account, sid: &str, code: &str, now: Millis) -> Result<Attempt> {
    // The code as each key of the ring would have stored it: the OTP names none before it is
    // read. A factor's challenge stores no code: its factor checks it (`factors`).
    let hashes = if deps.keys.is_factor_challenge(sid) {
        factors::challenge_hashes(deps, account, sid, code, now).await?
    } else {
        deps.keys.code_hashes(sid, code)
    };
    attempt_with(deps, account, sid, code, &hashes, now).await
}

/// Compare `hashes` with OTP `sid`'s in its conditional verify write (`presented` sealed in
/// the check it records).
async fn attempt_with(
    deps: &Deps,
    account: &Account,
    sid: &str,
    presented: &str,
    hashes: &[Vec<u8>],
    now: Millis,
) -> Result<Attempt> {
    let check = Check {
        sid: new_sid(ids::CHECK),
        at_ms: now,
        valid: true,
        sealed_code: deps.keys.seal(Purpose::Code, presented.as_bytes(), sid),
    };
    // The pumping guard counts the verify where the OTP says (`Otp::guarded`): the embedded
    // store in this write, DynamoDB off the table's stream. Nothing to name here.
    for round in 0..MAX_VERIFY_ROUNDS {
        let written = deps.store.verify_code(&account.sid, sid, hashes, &check, now).await;
        match written {
            Ok(VerifyWrite::Verified) => {
                tracing::info!(otp = %sid, "otp verified");
                return Ok(Attempt::Verified);
            }
            Ok(VerifyWrite::Wrong { failed }) => {
                tracing::info!(otp = %sid, failed, "invalid code");
                return Ok(Attempt::Wrong);
            }
            Ok(VerifyWrite::Refused(None)) => return Ok(Attempt::Unknown),
            Ok(VerifyWrite::Refused(Some(otp))) => {
                if let Some(e) = refusal(otp.status_at(now)) {
                    return Ok(Attempt::Refused(Rejection::on(e, sid)));
                }
                if otp.attempts >= MAX_ATTEMPTS {
                    return Ok(Attempt::Refused(Rejection::on(Error::MaxAttempts, sid)));
                }
                // Pending with attempts left, yet refused: it changed between the two writes
                // of a right code (a concurrent guess); look again.
            }
            // A concurrent write to the OTP: nothing was compared.
            Err(Error::Contended) => backoff(round).await,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Unavailable)
}

async fn backoff(round: u32) {
    let cap_ms = (5u64 << round.min(5)).min(100);
    let ms = rand::Rng::gen_range(&mut rand::thread_rng(), 1..=cap_ms);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// A verified or canceled OTP's workflow has nothing left to send: stop its run, off the
/// request's path and best effort (each step checks the OTP before it sends, which is the
/// guarantee; a run not stopped ends at its next step without sending).
fn stop_workflow(deps: &Deps, account_sid: &str, otp_sid: &str) {
    if !deps.scheduler.runs_workflows() {
        return;
    }
    let (scheduler, account_sid, otp_sid) = (deps.scheduler.clone(), account_sid.to_owned(), otp_sid.to_owned());
    tokio::spawn(async move {
        if let Err(e) = scheduler.stop(&account_sid, &otp_sid).await {
            tracing::debug!(otp = %otp_sid, error = %e, "workflow run not stopped; its next step will end it");
        }
    });
}

pub async fn cancel(deps: &Deps, account: &Account, sid: &str) -> Result<String, Rejection> {
    if !ids::is_sid(ids::OTP, sid) {
        return Err(Error::CancelNotFound.into());
    }
    let now = deps.clock.now_ms();
    match deps.store.cancel_otp(&account.sid, sid, now).await? {
        CancelWrite::Canceled => {
            tracing::info!(otp = %sid, "otp canceled");
            stop_workflow(deps, &account.sid, sid);
            Ok(sid.to_owned())
        }
        CancelWrite::Refused(None) => Err(Error::CancelNotFound.into()),
        CancelWrite::Refused(Some(otp)) => match otp.status_at(now) {
            // Canceling twice is not an error: the OTP is canceled, as asked.
            OtpStatus::Canceled => Ok(sid.to_owned()),
            OtpStatus::Success => Err(Rejection::on(Error::AlreadyVerified, sid)),
            OtpStatus::Expired => Err(Rejection::on(Error::Expired, sid)),
            OtpStatus::Failed => Err(Rejection::on(Error::MaxAttempts, sid)),
            OtpStatus::Pending => Err(Error::Contended.into()),
        },
    }
}
