//! The factors endpoint group (ours): an entity's authenticator-app factors and their
//! challenges (`domain::factors`, docs/api.md "Factors").
//!
//! `POST|GET /2fa/entities/{entity}/factors`, `GET|DELETE /2fa/entities/{entity}/factors/{sid}`,
//! `POST …/{sid}/confirm` and `POST …/{sid}/challenges`, each with `.json`/`.xml` twins. A
//! challenge answers like a send (`requestID`); `/2fa/verify` closes it.

use axum::{
    extract::{Path, State},
    http::HeaderMap,
    response::IntoResponse,
    routing::{get, post},
    Router,
};
use serde_json::{json, Value};

use crate::{
    domain::{
        error::{Error, Result},
        factor::{Factor, FactorKind, TotpAlgorithm, TotpParams, MAX_FRIENDLY_NAME_LEN},
        factors::{self, ChallengeRequest, Created, NewTotp},
        otp::{DEFAULT_TIMEOUT_SECS, MAX_TIMEOUT_SECS, MIN_TIMEOUT_SECS},
        time,
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
}

async fn create_factor(
    State(deps): State<Deps>,
    Caller(caller): Caller,
    Path(entity): Path<String>,
    p: Params,
) -> Answer {
    if let Some(kind) = p.opt("type")? {
        FactorKind::parse(&kind).ok_or_else(|| Error::invalid("type", "must be totp"))?;
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
    let code = p.required("code")?;
    let account = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let factor = factors::confirm(&deps, &account, &entity, &sid, &code).await?;
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
    let otp_sid = factors::challenge(&deps, &account, &entity, &sid, req).await?;
    Ok(otp_ok("OK", &otp_sid))
}

/// A factor as every answer shows it: never its secret.
fn factor_value(f: &Factor) -> Value {
    json!({
        "sid": f.sid,
        "entity": f.entity,
        "type": f.kind.as_str(),
        "friendlyName": f.friendly_name,
        "status": f.status.as_str(),
        "algorithm": f.totp.algorithm.as_str(),
        "digits": f.totp.digits,
        "period": f.totp.period_secs,
        "accountSid": f.account_sid,
        "uri": format!("/2fa/entities/{}/factors/{}", f.entity, f.sid),
        "dateCreated": time::iso(f.created_ms),
        "dateUpdated": time::iso(f.updated_ms),
    })
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
