//! The factors endpoint group (ours): an entity's authenticator-app and passkey factors and
//! their challenges (`domain::factors`, docs/api.md "Factors").
//!
//! `POST|GET /2fa/entities/{entity}/factors`, `GET|DELETE /2fa/entities/{entity}/factors/{sid}`,
//! `POST …/{sid}/confirm`, `POST …/{sid}/challenges` and `POST …/{sid}/verify`, each with
//! `.json`/`.xml` twins. A challenge answers like a send (`requestID`, and a passkey's the
//! options its assertion is made with); `/2fa/verify` closes a TOTP one, `…/verify` a passkey's.

use axum::{
    extract::{Path, State},
    http::HeaderMap,
    response::IntoResponse,
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};

use crate::{
    domain::{
        error::{Error, Result},
        factor::{Factor, FactorKind, TotpAlgorithm, TotpParams, MAX_FRIENDLY_NAME_LEN},
        factors::{self, ChallengeRequest, Created, NewPasskey, NewTotp, Proof},
        otp::{DEFAULT_TIMEOUT_SECS, MAX_TIMEOUT_SECS, MIN_TIMEOUT_SECS},
    },
    http::{
        acting_for,
        auth::Caller,
        definitions::{ok, Answer},
        otp::{idempotency_key, parse_callback, parse_limits},
        otp_ok,
        params::Params,
        strip_format_suffix, ApiError, Routes,
    },
    ports::Deps,
};

/// The service a challenge is counted under when the request names none.
const DEFAULT_SERVICE: &str = "2FA";

pub fn router(deps: Deps) -> Router {
    routes().finish(deps)
}

/// Every route of the group (and its paths, for the OpenAPI check).
pub fn routes() -> Routes {
    Routes::new()
        .with_suffixes("/2fa/entities/{entity}/factors", post(create_factor).get(list_factors))
        .route("/2fa/entities/{entity}/factors/{sid}", get(fetch_factor).delete(delete_factor))
        .with_suffixes("/2fa/entities/{entity}/factors/{sid}/confirm", post(confirm_factor))
        .with_suffixes("/2fa/entities/{entity}/factors/{sid}/challenges", post(challenge_factor))
        .with_suffixes("/2fa/entities/{entity}/factors/{sid}/verify", post(verify_passkey))
}

async fn create_factor(
    State(deps): State<Deps>,
    Caller(caller): Caller,
    Path(entity): Path<String>,
    p: Params,
) -> Answer {
    let kind = match p.opt("type")? {
        None => FactorKind::Totp,
        Some(kind) => FactorKind::parse(&kind).ok_or_else(|| Error::invalid("type", "must be totp or passkey"))?,
    };
    if kind == FactorKind::Passkey {
        let new = NewPasskey {
            entity,
            friendly_name: p.bounded("friendlyName", MAX_FRIENDLY_NAME_LEN, false)?,
            user_name: p.bounded("userName", 64, false)?,
        };
        let account = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
        let (factor, options) = factors::create_passkey(&deps, &account, new).await?;
        let mut v = factor_value(&factor);
        v["options"] = options;
        return Ok(ok(v));
    }
    let algorithm = match p.opt("algorithm")? {
        None => TotpAlgorithm::Sha1,
        Some(a) => TotpAlgorithm::parse(&a).ok_or_else(|| Error::invalid("algorithm", "must be SHA1 or SHA256"))?,
    };
    let digits = match p.int("digits", 6, 8)? {
        None => 6,
        Some(d @ (6 | 8)) => d as u8,
        Some(_) => return Err(Error::invalid("digits", "must be 6 or 8").into()),
    };
    let new = NewTotp {
        entity,
        friendly_name: p.bounded("friendlyName", MAX_FRIENDLY_NAME_LEN, false)?,
        issuer: p.bounded("issuer", 64, false)?.filter(|i| !i.contains(':')),
        params: TotpParams { algorithm, digits, ..TotpParams::default() },
    };
    if p.opt("issuer")?.is_some_and(|i| i.contains(':')) {
        return Err(Error::invalid("issuer", "must not contain ':'").into());
    }
    let account = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let created = factors::create(&deps, &account, new).await?;
    Ok(ok(created_value(&created)))
}

async fn list_factors(
    State(deps): State<Deps>,
    Caller(caller): Caller,
    Path(entity): Path<String>,
    p: Params,
) -> Answer {
    let account = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let all = factors::list(&deps, &account, &entity).await?;
    Ok(ok(json!({ "entity": entity, "factors": all.iter().map(factor_value).collect::<Vec<_>>() })))
}

async fn fetch_factor(
    State(deps): State<Deps>,
    Caller(caller): Caller,
    Path((entity, sid)): Path<(String, String)>,
    p: Params,
) -> Answer {
    let account = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let factor = factors::get(&deps, &account, &entity, strip_format_suffix(&sid)).await?;
    Ok(ok(factor_value(&factor)))
}

async fn delete_factor(
    State(deps): State<Deps>,
    Caller(caller): Caller,
    Path((entity, sid)): Path<(String, String)>,
    p: Params,
) -> Answer {
    let account = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let gone = factors::delete(&deps, &account, &entity, strip_format_suffix(&sid)).await?;
    Ok(ok(factor_value(&gone)))
}

async fn confirm_factor(
    State(deps): State<Deps>,
    Caller(caller): Caller,
    Path((entity, sid)): Path<(String, String)>,
    p: Params,
) -> Answer {
    // The factor's kind says which it needs: the app's code, or the browser's credential.
    let proof = match (p.opt("code")?, credential(&p)?) {
        (Some(code), _) => Some(Proof::Code(code)),
        (None, Some(credential)) => Some(Proof::Credential(credential)),
        (None, None) => None,
    };
    let account = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let factor = factors::confirm(&deps, &account, &entity, &sid, proof).await?;
    Ok(ok(factor_value(&factor)))
}

async fn challenge_factor(
    State(deps): State<Deps>,
    Caller(caller): Caller,
    Path((entity, sid)): Path<(String, String)>,
    headers: HeaderMap,
    p: Params,
) -> Result<impl IntoResponse, ApiError> {
    let req = ChallengeRequest {
        service: p.bounded("service", 64, false)?.unwrap_or_else(|| DEFAULT_SERVICE.to_owned()),
        timeout_secs: p
            .int("timeout", MIN_TIMEOUT_SECS.into(), MAX_TIMEOUT_SECS.into())?
            .map_or(DEFAULT_TIMEOUT_SECS, |n| n as u32),
        limits: parse_limits(&p)?,
        idempotency_key: idempotency_key(&headers)?,
        callback: parse_callback(&p, deps.dispatcher.callback_url_rules())?,
    };
    let account = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let challenge = factors::challenge(&deps, &account, &entity, &sid, req).await?;
    Ok(match challenge.options {
        None => otp_ok("OK", &challenge.sid),
        Some(options) => Json(json!({ "code": 200, "message": "OK", "requestID": challenge.sid, "options": options }))
            .into_response(),
    })
}

/// Close a passkey's challenge with the browser's assertion: answered as `/2fa/verify`.
async fn verify_passkey(
    State(deps): State<Deps>,
    Caller(caller): Caller,
    Path((entity, sid)): Path<(String, String)>,
    p: Params,
) -> Result<impl IntoResponse, ApiError> {
    let request_id = p.required("requestId")?;
    let credential = credential(&p)?.ok_or_else(|| Error::missing("credential"))?;
    let account = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let otp_sid = factors::verify_passkey(&deps, &account, &entity, &sid, &request_id, &credential).await?;
    Ok(otp_ok("OK", &otp_sid))
}

/// `credential`: the browser's `credential.toJSON()`, as JSON text or (in a JSON body) the
/// object itself.
fn credential(p: &Params) -> Result<Option<String>> {
    Ok(match p.get("credential") {
        Some(v @ serde_json::Value::Object(_)) => Some(v.to_string()),
        _ => p.bounded("credential", 16 * 1024, false)?,
    })
}

/// A factor as every answer shows it: never its secret.
fn factor_value(f: &Factor) -> Value {
    f.view()
}

/// A factor just created: with its secret, the `otpauth://` URI and its QR code, this once.
fn created_value(c: &Created) -> Value {
    let mut v = factor_value(&c.factor);
    if let Value::Object(map) = &mut v {
        map.insert("secret".into(), Value::String(c.secret.clone()));
        map.insert("otpauthUri".into(), Value::String(c.uri.clone()));
        map.insert("qrCode".into(), Value::String(c.qr_svg.clone()));
    }
    v
}
