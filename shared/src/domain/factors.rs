//! Factors that send nothing: create, confirm, list, delete an entity's authenticator-app
//! (TOTP) factors, and challenge one. A challenge is an OTP on channel `totp` (a sid like any
//! OTP's, the same lifecycle, records, usage and callbacks) that `/2fa/verify` closes: its code
//! is checked against the factor's seed instead of a stored hash (`challenge_hashes`).

use rand::{rngs::OsRng, RngCore};

use super::{
    account::Account,
    crypto::{Keys, Purpose},
    error::{Error, Result},
    factor::{
        factor_aad, is_valid_entity, Factor, FactorKind, FactorStatus, TotpParams, MAX_CONFIRM_FAILURES,
        MAX_FACTORS_PER_ENTITY,
    },
    ids::{self, new_sid},
    otp::{Channel, ChannelEvent, ChannelStatus, Delivery, Otp, OtpStatus, MAX_ATTEMPTS},
    send::{self, SendRequest},
    time::Millis,
    totp,
};
use crate::ports::Deps;

/// What a challenge's stored hash is the hash of: no presented code can be it (codes are
/// digits), so only `challenge_hashes`, after the factor took the code, verifies a challenge.
const ACCEPTED: &str = "factor-accepted";
/// The issuer an `otpauth://` URI names when the request names none.
pub const DEFAULT_ISSUER: &str = "twofa";

/// A new TOTP factor, as asked for.
#[derive(Debug, Clone)]
pub struct NewTotp {
    pub entity: String,
    pub friendly_name: Option<String>,
    pub issuer: Option<String>,
    pub params: TotpParams,
}

/// A factor just created, with what is shown of its secret this once.
pub struct Created {
    pub factor: Factor,
    /// The seed in base32, as apps take it typed in.
    pub secret: String,
    pub uri: String,
    pub qr_svg: String,
}

/// The entity's id, or a 400 naming `entity`.
pub fn entity(raw: &str) -> Result<&str> {
    if is_valid_entity(raw) {
        Ok(raw)
    } else {
        Err(Error::invalid("entity", "must be 1 to 64 letters, digits or _ . - @ + = :"))
    }
}

pub async fn create(deps: &Deps, account: &Account, new: NewTotp) -> Result<Created> {
    let entity = entity(&new.entity)?.to_owned();
    if deps.store.list_factors(&account.sid, &entity).await?.len() >= MAX_FACTORS_PER_ENTITY {
        return Err(Error::invalid("entity", format!("holds {MAX_FACTORS_PER_ENTITY} factors already")));
    }
    let mut seed = vec![0u8; new.params.algorithm.seed_len()];
    OsRng.fill_bytes(&mut seed);
    let now = deps.clock.now_ms();
    let sid = new_sid(ids::FACTOR);
    let factor = Factor {
        sealed_secret: deps.keys.seal(Purpose::Factor, &seed, &factor_aad(&account.sid, &sid)),
        sid,
        account_sid: account.sid.clone(),
        entity,
        kind: FactorKind::Totp,
        friendly_name: new.friendly_name,
        status: FactorStatus::Unverified,
        totp: new.params,
        last_step: None,
        confirm_failures: 0,
        created_ms: now,
        updated_ms: now,
    };
    deps.store.put_factor(&factor).await?;
    let secret = totp::base32(&seed);
    let issuer = new.issuer.as_deref().unwrap_or(DEFAULT_ISSUER);
    let uri = totp::otpauth_uri(issuer, &factor.entity, &secret, &factor.totp);
    let qr_svg = totp::qr_svg(&uri).ok_or(Error::Internal)?;
    tracing::info!(factor = %factor.sid, "factor created");
    Ok(Created { factor, secret, uri, qr_svg })
}

pub async fn get(deps: &Deps, account: &Account, entity_id: &str, sid: &str) -> Result<Factor> {
    let entity_id = entity(entity_id)?;
    if !ids::is_sid(ids::FACTOR, sid) {
        return Err(Error::FactorNotFound);
    }
    deps.store.get_factor(&account.sid, entity_id, sid).await?.ok_or(Error::FactorNotFound)
}

pub async fn list(deps: &Deps, account: &Account, entity_id: &str) -> Result<Vec<Factor>> {
    deps.store.list_factors(&account.sid, entity(entity_id)?).await
}

pub async fn delete(deps: &Deps, account: &Account, entity_id: &str, sid: &str) -> Result<Factor> {
    let entity_id = entity(entity_id)?;
    if !ids::is_sid(ids::FACTOR, sid) {
        return Err(Error::FactorNotFound);
    }
    let gone = deps.store.delete_factor(&account.sid, entity_id, sid).await?.ok_or(Error::FactorNotFound)?;
    tracing::info!(factor = %sid, "factor deleted");
    Ok(gone)
}

/// The code's shape, as verify takes it: digits only.
fn code_param(code: &str) -> Result<&str> {
    if code.is_empty() || code.len() > 10 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid("code", "must be 4 to 10 digits"));
    }
    Ok(code)
}

/// Confirm a new factor with a first code from the app: it becomes verified. Five wrong codes
/// and it can only be created again.
pub async fn confirm(deps: &Deps, account: &Account, entity_id: &str, sid: &str, code: &str) -> Result<Factor> {
    let code = code_param(code)?;
    let factor = get(deps, account, entity_id, sid).await?;
    if factor.status == FactorStatus::Verified {
        return Err(Error::invalid("factorSid", "is verified already"));
    }
    if factor.confirm_failures >= MAX_CONFIRM_FAILURES {
        return Err(Error::MaxAttempts);
    }
    let now = deps.clock.now_ms();
    let seed = open_secret(deps, &factor).await?;
    if let Some(step) = totp::matching_step(&seed, &factor.totp, code, now) {
        if deps.store.use_factor_step(&account.sid, &factor.entity, sid, step, true, now).await? {
            tracing::info!(factor = %sid, "factor confirmed");
            return Ok(Factor { status: FactorStatus::Verified, last_step: Some(step), updated_ms: now, ..factor });
        }
        // Confirmed by a concurrent request with this very code, or deleted: this use of the
        // code is a replay.
    }
    if deps.store.fail_factor_confirm(&account.sid, &factor.entity, sid, MAX_CONFIRM_FAILURES).await? {
        return Err(Error::InvalidCode);
    }
    // Not counted: at its max, or confirmed (or deleted) by a concurrent request meanwhile.
    match deps.store.get_factor(&account.sid, &factor.entity, sid).await? {
        Some(f) if f.status == FactorStatus::Verified => Err(Error::invalid("factorSid", "is verified already")),
        Some(_) => Err(Error::MaxAttempts),
        None => Err(Error::FactorNotFound),
    }
}

/// What a challenge is created with, besides its factor.
#[derive(Debug, Clone)]
pub struct ChallengeRequest {
    pub service: String,
    pub timeout_secs: u32,
    pub limits: Vec<(String, String)>,
    pub idempotency_key: Option<String>,
    pub callback: Option<super::callbacks::CallbackTarget>,
}

/// Open a challenge of a verified factor: an OTP on the factor's channel, admitted like a send
/// (limits, the failed-verify budget, idempotency, usage) but sending nothing. Its sid.
pub async fn challenge(
    deps: &Deps,
    account: &Account,
    entity_id: &str,
    sid: &str,
    req: ChallengeRequest,
) -> Result<String> {
    let factor = get(deps, account, entity_id, sid).await?;
    if factor.status != FactorStatus::Verified {
        return Err(Error::invalid("factorSid", "must be confirmed with a first code before it is challenged"));
    }
    let now = deps.clock.now_ms();
    let otp_sid = deps.keys.factor_challenge_sid(now, deps.store.otp_shards());
    // The factor is the challenge's sender and the entity its destination: search, the failed
    // verify budget and verify by `to` see the entity as an SMS's number.
    let mut delivery = Delivery::sms(factor.sid.clone(), factor.entity.clone(), "");
    delivery.channel = Channel::Totp;
    delivery.callback = req.callback.clone();
    let event = ChannelEvent {
        sid: new_sid(ids::EVENT),
        at_ms: now,
        channel: Channel::Totp,
        sender: factor.sid.clone(),
        recipient: factor.entity.clone(),
        target_sid: None,
        status: ChannelStatus::Sent,
        error_code: None,
        error_message: None,
        encoding: None,
        segments: None,
        route: None,
    };
    let otp = Otp {
        code_hash: deps.keys.hash_code(&otp_sid, ACCEPTED),
        sealed_code: deps.keys.seal(Purpose::Code, ACCEPTED.as_bytes(), &otp_sid),
        sid: otp_sid,
        account_sid: account.sid.clone(),
        service: req.service.clone(),
        watched: delivery.callback.is_some() || account.policy.callback.is_some(),
        delivery: delivery.clone(),
        length: factor.totp.digits,
        country: None,
        status: OtpStatus::Pending,
        created_ms: now,
        updated_ms: now,
        expires_ms: now + i64::from(req.timeout_secs) * 1000,
        guard_time: None,
        cancel_at_ms: None,
        attempts: 0,
        checks: vec![],
        events: vec![event],
        workflow: None,
        clears_failures: false,
        guarded: false,
    };
    let send = SendRequest {
        service: req.service,
        delivery,
        length: factor.totp.digits,
        timeout_secs: req.timeout_secs,
        guard_time: None,
        limits: req.limits,
        idempotency_key: req.idempotency_key,
        workflow: None,
        email: None,
        email_from: None,
    };
    let sid = send::commit_undelivered(deps, account, &send, otp, now).await?;
    tracing::info!(otp = %sid, factor = %factor.sid, "factor challenged");
    Ok(sid)
}

/// The hashes a verify of challenge `otp_sid` with `code` compares: the stored hash of an
/// accepted code when the factor took the code (its step used now, so never twice), else the
/// code's own, which never match (the write counts them as a wrong code, or refuses them
/// when the challenge is over). Nothing is taken from the factor for a challenge that is over.
pub async fn challenge_hashes(
    deps: &Deps,
    account: &Account,
    otp_sid: &str,
    code: &str,
    now: Millis,
) -> Result<Vec<Vec<u8>>> {
    let wrong = || deps.keys.code_hashes(otp_sid, code);
    let Some(otp) = deps.store.get_otp(&account.sid, otp_sid).await? else { return Ok(wrong()) };
    if otp.delivery.channel != Channel::Totp || otp.status_at(now) != OtpStatus::Pending || otp.attempts >= MAX_ATTEMPTS
    {
        return Ok(wrong());
    }
    let (entity_id, factor_sid) = (&otp.delivery.to, &otp.delivery.from);
    let Some(factor) = deps.store.get_factor(&account.sid, entity_id, factor_sid).await? else {
        // Deleted since: its challenges verify nothing.
        return Ok(wrong());
    };
    let seed = open_secret(deps, &factor).await?;
    let Some(step) = totp::matching_step(&seed, &factor.totp, code, now) else { return Ok(wrong()) };
    if !deps.store.use_factor_step(&account.sid, entity_id, factor_sid, step, false, now).await? {
        tracing::info!(otp = %otp_sid, factor = %factor_sid, "a code of a step already used: refused as a replay");
        return Ok(wrong());
    }
    Ok(deps.keys.code_hashes(otp_sid, ACCEPTED))
}

/// The factor's seed. One sealed under an older key is sealed again under the current one
/// (best effort: the next use tries again), so factors follow the keys as they rotate.
async fn open_secret(deps: &Deps, factor: &Factor) -> Result<Vec<u8>> {
    let aad = factor_aad(&factor.account_sid, &factor.sid);
    let opened = deps.keys.open_any(Purpose::Factor, &factor.sealed_secret, &aad).map_err(|_| {
        tracing::error!(factor = %factor.sid, "a factor's secret does not open under any key of the ring");
        Error::Internal
    })?;
    if opened.kid != deps.keys.writer_kid() {
        let again = deps.keys.seal(Purpose::Factor, &opened.plaintext, &aad);
        let store = &deps.store;
        if let Err(e) =
            store.reseal_factor(&factor.account_sid, &factor.entity, &factor.sid, &factor.sealed_secret, &again).await
        {
            tracing::warn!(factor = %factor.sid, error = %e, "factor not resealed under the current key; next use tries again");
        }
    }
    Ok(opened.plaintext)
}

/// A factor's secret sealed again under the current key when `retiring` sealed it (the
/// operator's `reseal` before a key leaves the ring); None when it is sealed otherwise.
pub fn resealed_secret(keys: &Keys, factor: &Factor, retiring: u8) -> Result<Option<Vec<u8>>> {
    let aad = factor_aad(&factor.account_sid, &factor.sid);
    let opened = keys.open_any(Purpose::Factor, &factor.sealed_secret, &aad)?;
    Ok((opened.kid == retiring).then(|| keys.seal(Purpose::Factor, &opened.plaintext, &aad)))
}
