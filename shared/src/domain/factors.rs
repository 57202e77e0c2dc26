//! Factors that send nothing: create, confirm, list, delete an entity's authenticator-app
//! (TOTP) and passkey (WebAuthn) factors, and challenge one. A challenge is an OTP on channel
//! `totp` or `passkey` (a sid like any OTP's, the same lifecycle, records, usage and callbacks).
//! `/2fa/verify` closes a TOTP challenge, its code checked against the factor's seed instead of
//! a stored hash (`challenge_hashes`); `verify_passkey` closes a passkey's with an assertion.
//! Either way the OTP's one conditional verify write decides, so one verify wins.

use rand::{rngs::OsRng, RngCore};

use super::{
    account::Account,
    crypto::{Keys, Purpose},
    error::{Error, Result},
    factor::{
        factor_aad, is_valid_entity, Factor, FactorKind, FactorStatus, Passkey, PasskeyCredential, TotpParams,
        MAX_CONFIRM_FAILURES, MAX_FACTORS_PER_ENTITY,
    },
    ids::{self, new_sid},
    otp::{Channel, ChannelEvent, ChannelStatus, Delivery, Otp, OtpStatus, MAX_ATTEMPTS},
    passkey::{self, Assertion},
    send::{self, SendRequest},
    time::Millis,
    totp,
    verify::{self, Rejection},
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
        passkey: None,
    };
    deps.store.put_factor(&factor).await?;
    let secret = totp::base32(&seed);
    let issuer = new.issuer.as_deref().unwrap_or(DEFAULT_ISSUER);
    let uri = totp::otpauth_uri(issuer, &factor.entity, &secret, &factor.totp);
    let qr_svg = totp::qr_svg(&uri).ok_or(Error::Internal)?;
    tracing::info!(factor = %factor.sid, "factor created");
    Ok(Created { factor, secret, uri, qr_svg })
}

/// A new passkey factor, as asked for.
#[derive(Debug, Clone)]
pub struct NewPasskey {
    pub entity: String,
    pub friendly_name: Option<String>,
    /// What the authenticator shows the credential as; the entity when None.
    pub user_name: Option<String>,
}

/// Begin registering a passkey: an unverified factor waiting on its registration ceremony,
/// and the options the browser creates the credential with (`confirm` takes its answer).
pub async fn create_passkey(deps: &Deps, account: &Account, new: NewPasskey) -> Result<(Factor, serde_json::Value)> {
    let entity = entity(&new.entity)?.to_owned();
    let settings = account.policy.passkeys.as_ref().ok_or_else(|| {
        Error::invalid("type", "passkeys need the account's relying party first (its policy's passkeys: rpId, origins)")
    })?;
    let existing = deps.store.list_factors(&account.sid, &entity).await?;
    if existing.len() >= MAX_FACTORS_PER_ENTITY {
        return Err(Error::invalid("entity", format!("holds {MAX_FACTORS_PER_ENTITY} factors already")));
    }
    let registered: Vec<&PasskeyCredential> =
        existing.iter().filter_map(|f| f.passkey.as_ref()?.credential.as_ref()).collect();
    let user_handle = passkey::new_user_handle();
    let started =
        passkey::start_registration(settings, &user_handle, new.user_name.as_deref().unwrap_or(&entity), &registered)?;
    let now = deps.clock.now_ms();
    let factor = Factor {
        sid: new_sid(ids::FACTOR),
        account_sid: account.sid.clone(),
        entity,
        kind: FactorKind::Passkey,
        friendly_name: new.friendly_name,
        status: FactorStatus::Unverified,
        totp: TotpParams::default(),
        sealed_secret: Vec::new(),
        last_step: None,
        confirm_failures: 0,
        created_ms: now,
        updated_ms: now,
        passkey: Some(Passkey { user_handle, ceremony: Some(started.state), credential: None }),
    };
    deps.store.put_factor(&factor).await?;
    tracing::info!(factor = %factor.sid, "passkey factor created");
    Ok((factor, started.options))
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

/// What confirms a factor: an authenticator app's first code, or a passkey's registration
/// (the browser's `credential.toJSON()`, as text).
#[derive(Debug, Clone)]
pub enum Proof {
    Code(String),
    Credential(String),
}

/// Confirm a new factor: with a first code from the app, or the browser's answer to the
/// passkey's registration options. It becomes verified. Five failures and it can only be
/// created again.
pub async fn confirm(
    deps: &Deps,
    account: &Account,
    entity_id: &str,
    sid: &str,
    proof: Option<Proof>,
) -> Result<Factor> {
    let factor = get(deps, account, entity_id, sid).await?;
    // The proof's shape before anything else: a malformed one is a client's error, not a try.
    let proof = match (factor.kind, proof) {
        (FactorKind::Totp, Some(Proof::Code(code))) => Proof::Code(code_param(&code)?.to_owned()),
        (FactorKind::Totp, _) => return Err(Error::invalid("code", "is required: the app's first code")),
        (FactorKind::Passkey, Some(Proof::Credential(c))) => Proof::Credential(c),
        (FactorKind::Passkey, _) => {
            return Err(Error::invalid("credential", "is required: the browser's answer to the registration options"))
        }
    };
    if factor.status == FactorStatus::Verified {
        return Err(Error::invalid("factorSid", "is verified already"));
    }
    if factor.confirm_failures >= MAX_CONFIRM_FAILURES {
        return Err(Error::MaxAttempts);
    }
    let now = deps.clock.now_ms();
    let code = match proof {
        Proof::Code(code) => code,
        Proof::Credential(credential) => return confirm_passkey(deps, account, factor, &credential, now).await,
    };
    let code = code.as_str();
    let seed = open_secret(deps, &factor).await?;
    if let Some(step) = totp::matching_step(&seed, &factor.totp, code, now) {
        if deps.store.use_factor_step(&account.sid, &factor.entity, sid, step, true, now).await? {
            tracing::info!(factor = %sid, "factor confirmed");
            return Ok(Factor { status: FactorStatus::Verified, last_step: Some(step), updated_ms: now, ..factor });
        }
        // Confirmed by a concurrent request with this very code, or deleted: this use of the
        // code is a replay.
    }
    confirm_failed(deps, account, &factor).await
}

/// Count a failed confirmation (401 Invalid code), or say why it could not count.
async fn confirm_failed(deps: &Deps, account: &Account, factor: &Factor) -> Result<Factor> {
    let sid = &factor.sid;
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

/// Complete a passkey's registration ceremony with the browser's answer: the credential is
/// stored, and the factor verified, in one write conditional on the ceremony it answers.
async fn confirm_passkey(
    deps: &Deps,
    account: &Account,
    factor: Factor,
    credential: &str,
    now: Millis,
) -> Result<Factor> {
    let Some(pk) = &factor.passkey else { return Err(Error::Internal) };
    let Some(ceremony) = &pk.ceremony else { return confirm_failed(deps, account, &factor).await };
    // The account's relying party as it is now: one removed since refuses the ceremony.
    let Some(settings) = &account.policy.passkeys else {
        tracing::info!(factor = %factor.sid, "passkey registration refused: the account has no relying party now");
        return confirm_failed(deps, account, &factor).await;
    };
    let registered = match passkey::finish_registration(settings, ceremony, credential)? {
        Ok(c) => c,
        Err(why) => {
            tracing::info!(factor = %factor.sid, reason = %why.0, "passkey registration refused");
            return confirm_failed(deps, account, &factor).await;
        }
    };
    let store = &deps.store;
    if store.confirm_passkey(&account.sid, &factor.entity, &factor.sid, ceremony, &registered, now).await? {
        tracing::info!(factor = %factor.sid, "passkey factor confirmed");
        let passkey = Some(Passkey { ceremony: None, credential: Some(registered), ..pk.clone() });
        return Ok(Factor { status: FactorStatus::Verified, updated_ms: now, passkey, ..factor });
    }
    // A concurrent confirmation won (or the factor was deleted): this answer is spent.
    confirm_failed(deps, account, &factor).await
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

/// A challenge opened: its sid (the `requestID`), and for a passkey the options the browser
/// signs the assertion with.
pub struct Challenge {
    pub sid: String,
    pub options: Option<serde_json::Value>,
}

/// Open a challenge of a verified factor: an OTP on the factor's channel, admitted like a send
/// (limits, the failed-verify budget, idempotency, usage) but sending nothing. A passkey's
/// challenge keeps its authentication ceremony in the OTP, sealed like a code.
pub async fn challenge(
    deps: &Deps,
    account: &Account,
    entity_id: &str,
    sid: &str,
    req: ChallengeRequest,
) -> Result<Challenge> {
    let factor = get(deps, account, entity_id, sid).await?;
    if factor.status != FactorStatus::Verified {
        return Err(Error::invalid("factorSid", "must be confirmed before it is challenged"));
    }
    let now = deps.clock.now_ms();
    let otp_sid = deps.keys.factor_challenge_sid(now, deps.store.otp_shards());
    let (channel, sealed, options) = match factor.kind {
        FactorKind::Totp => (Channel::Totp, ACCEPTED.as_bytes().to_vec(), None),
        FactorKind::Passkey => {
            let credential = factor.passkey.as_ref().and_then(|p| p.credential.as_ref()).ok_or(Error::Internal)?;
            let settings = account.policy.passkeys.as_ref().ok_or_else(|| {
                Error::invalid("factorSid", "is a passkey, and the account has no relying party now (policy passkeys)")
            })?;
            let started = passkey::start_authentication(settings, credential, req.timeout_secs)?;
            (Channel::Passkey, ceremony_blob(&started.state, &started.options), Some(started.options))
        }
    };
    // The factor is the challenge's sender and the entity its destination: search, the failed
    // verify budget and verify by `to` see the entity as an SMS's number.
    let mut delivery = Delivery::sms(factor.sid.clone(), factor.entity.clone(), "");
    delivery.channel = channel;
    delivery.callback = req.callback.clone();
    let event = ChannelEvent {
        sid: new_sid(ids::EVENT),
        at_ms: now,
        channel,
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
        sealed_code: deps.keys.seal(Purpose::Code, &sealed, &otp_sid),
        sid: otp_sid.clone(),
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
    let options = match options {
        // An idempotent replay answers the challenge first made, with its options.
        Some(_) if sid != otp_sid => Some(stored_ceremony(deps, account, &sid).await?.1),
        o => o,
    };
    Ok(Challenge { sid, options })
}

/// What a passkey challenge seals in its OTP: the ceremony's state and the options given.
fn ceremony_blob(state: &[u8], options: &serde_json::Value) -> Vec<u8> {
    let mut blob = (state.len() as u32).to_be_bytes().to_vec();
    blob.extend_from_slice(state);
    blob.extend_from_slice(options.to_string().as_bytes());
    blob
}

/// A passkey challenge's ceremony state and options, as `challenge` sealed them.
async fn stored_ceremony(deps: &Deps, account: &Account, otp_sid: &str) -> Result<(Vec<u8>, serde_json::Value)> {
    let otp = deps.store.get_otp(&account.sid, otp_sid).await?.ok_or(Error::Internal)?;
    open_ceremony(deps, &otp)
}

fn open_ceremony(deps: &Deps, otp: &Otp) -> Result<(Vec<u8>, serde_json::Value)> {
    let blob = deps.keys.open(Purpose::Code, &otp.sealed_code, &otp.sid)?;
    let corrupt = || {
        tracing::error!(otp = %otp.sid, "a passkey challenge's ceremony does not decode");
        Error::Internal
    };
    let len = blob.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()).ok_or_else(corrupt)?;
    let len = u32::from_be_bytes(len) as usize;
    let state = blob.get(4..4 + len).ok_or_else(corrupt)?.to_vec();
    let options = serde_json::from_slice(blob.get(4 + len..).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
    Ok((state, options))
}

/// Close passkey challenge `request_id` of factor `factor_sid` with the browser's assertion:
/// answered as `/2fa/verify` answers a code. An assertion the ceremony refuses (another
/// origin, a counter that did not grow, no user verification, another challenge, a bad
/// signature) counts as a wrong code. A right one moves the credential's counter on, written
/// only over the one read, and then presents the accepted marker to the OTP's conditional
/// verify write: of concurrent right answers one verifies.
pub async fn verify_passkey(
    deps: &Deps,
    account: &Account,
    entity_id: &str,
    factor_sid: &str,
    request_id: &str,
    credential: &str,
) -> std::result::Result<String, Rejection> {
    let entity_id = entity(entity_id)?;
    if !ids::is_sid(ids::FACTOR, factor_sid) {
        return Err(Error::FactorNotFound.into());
    }
    let assertion = Assertion::parse(credential)?;
    if !ids::is_sid(ids::OTP, request_id) || !deps.keys.is_factor_challenge(request_id) {
        return Err(Error::OtpNotFound.into());
    }
    let now = deps.clock.now_ms();
    let Some(otp) = deps.store.get_otp(&account.sid, request_id).await? else {
        return Err(Error::OtpNotFound.into());
    };
    // Another factor's challenge (or a TOTP one) answers as an unknown one.
    if otp.delivery.channel != Channel::Passkey || otp.delivery.from != factor_sid || otp.delivery.to != entity_id {
        return Err(Error::OtpNotFound.into());
    }
    let accepted = if otp.status_at(now) == OtpStatus::Pending && otp.attempts < MAX_ATTEMPTS {
        passkey_accepts(deps, account, &otp, &assertion, now).await?
    } else {
        false
    };
    // The marker's hash when the factor took the assertion; else a hash nothing stored equals.
    let hashes = deps.keys.code_hashes(request_id, if accepted { ACCEPTED } else { PASSKEY_REFUSED });
    verify::verify_hashed(deps, account, request_id, PASSKEY_PRESENTED, &hashes).await
}

/// What a refused assertion presents to the verify write: no stored hash is of it.
const PASSKEY_REFUSED: &str = "passkey-refused";
/// What a passkey verify's check shows as the code presented (records show checks' codes).
const PASSKEY_PRESENTED: &str = "passkey";

/// Whether the assertion answers the challenge's ceremony for its factor's credential, its new
/// counter stored (so a replay, or a clone with a stale counter, is refused after it).
async fn passkey_accepts(
    deps: &Deps,
    account: &Account,
    otp: &Otp,
    assertion: &Assertion,
    now: Millis,
) -> Result<bool> {
    let (entity_id, factor_sid) = (&otp.delivery.to, &otp.delivery.from);
    let Some(factor) = deps.store.get_factor(&account.sid, entity_id, factor_sid).await? else {
        // Deleted since: its challenges verify nothing.
        return Ok(false);
    };
    let Some((pk, credential)) = factor.passkey.as_ref().and_then(|p| Some((p, p.credential.as_ref()?))) else {
        return Ok(false);
    };
    let Some(settings) = &account.policy.passkeys else { return Ok(false) };
    let (state, _) = open_ceremony(deps, otp)?;
    let dynamic = match passkey::finish_authentication(settings, &state, &pk.user_handle, credential, assertion)? {
        Ok(d) => d,
        Err(why) => {
            tracing::info!(otp = %otp.sid, factor = %factor_sid, reason = %why.0, "passkey assertion refused");
            return Ok(false);
        }
    };
    let store = &deps.store;
    if !store.use_passkey(&account.sid, entity_id, factor_sid, &credential.dynamic_state, &dynamic, now).await? {
        tracing::info!(otp = %otp.sid, factor = %factor_sid, "passkey state moved meanwhile: the assertion is refused");
        return Ok(false);
    }
    Ok(true)
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
    if otp.delivery.channel == Channel::Passkey {
        return Err(Error::invalid(
            "requestId",
            "is a passkey challenge: verify it with its assertion (POST /2fa/entities/{entity}/factors/{sid}/verify)",
        ));
    }
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
    if factor.kind != FactorKind::Totp {
        // A passkey keeps nothing sealed.
        return Ok(None);
    }
    let aad = factor_aad(&factor.account_sid, &factor.sid);
    let opened = keys.open_any(Purpose::Factor, &factor.sealed_secret, &aad)?;
    Ok((opened.kid == retiring).then(|| keys.seal(Purpose::Factor, &opened.plaintext, &aad)))
}
