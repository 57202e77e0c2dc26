//! The OTP endpoint group: send, verify, cancel.

use axum::{extract::State, http::HeaderMap, response::IntoResponse, routing::post, Router};
use serde_json::Value;

use crate::{
    domain::{
        autofill,
        callbacks::{self, UrlRules},
        crypto::{MAX_CODE_LEN, MIN_CODE_LEN},
        error::{Error, Result},
        idempotency,
        otp::{
            Channel, Delivery, DEFAULT_LANGUAGE, DEFAULT_LENGTH, DEFAULT_TIMEOUT_SECS, MAX_TIMEOUT_SECS,
            MIN_TIMEOUT_SECS,
        },
        send::{self, SendRequest},
        templates,
        verify::{self, VerifyTarget},
    },
    http::{acting_for, auth::Caller, otp_ok, params::Params, ApiError, Routes},
    ports::Deps,
};

/// Most limits one send may name.
const MAX_LIMITS_PER_SEND: usize = 10;

/// The send/verify/cancel router.
pub fn router(deps: Deps) -> Router {
    routes().finish(deps)
}

/// Every route of the group (and its paths, for the OpenAPI check); with the receipts of a
/// provider of the customer's own, which only the sending function has the secret of.
pub fn routes() -> Routes {
    Routes::new()
        .with_suffixes("/2fa/send", post(send_otp))
        .with_suffixes("/2fa/verify", post(verify_otp))
        .with_suffixes("/2fa/cancel", post(cancel_otp))
        .merge(crate::http::receipts::routes())
}

async fn send_otp(
    State(deps): State<Deps>,
    Caller(caller): Caller,
    headers: HeaderMap,
    p: Params,
) -> Result<impl IntoResponse, ApiError> {
    let mut req = parse_send(&p, deps.dispatcher.callback_url_rules())?;
    req.idempotency_key = idempotency_key(&headers)?;
    let account = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let sid = send::send(&deps, &account, req).await?;
    Ok(otp_ok("OK", &sid))
}

async fn verify_otp(
    State(deps): State<Deps>,
    Caller(caller): Caller,
    p: Params,
) -> Result<impl IntoResponse, ApiError> {
    let code = p.required("code")?;
    // By number when a number is given (the seeds: "the requestId will be ignored").
    let target = match (p.opt("number")?, p.opt("requestId")?) {
        (Some(number), _) => {
            VerifyTarget::Number { service: p.bounded("service", 64, true)?.unwrap_or_default(), number }
        }
        (None, Some(sid)) => VerifyTarget::RequestId(sid),
        (None, None) => return Err(Error::missing("requestId").into()),
    };
    let account = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let sid = verify::verify(&deps, &account, target, &code).await?;
    Ok(otp_ok("OK", &sid))
}

async fn cancel_otp(
    State(deps): State<Deps>,
    Caller(caller): Caller,
    p: Params,
) -> Result<impl IntoResponse, ApiError> {
    let sid = p.required("requestId")?;
    let account = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let sid = verify::cancel(&deps, &account, &sid).await?;
    Ok(otp_ok("canceled", &sid))
}

/// `callbackUrl` and `callbackMethod`: where this OTP's events are told. `rules`: which
/// callback URLs this deployment takes.
pub(crate) fn parse_callback(p: &Params, rules: UrlRules) -> Result<Option<callbacks::CallbackTarget>> {
    match (p.opt("callbackUrl")?, p.opt("callbackMethod")?) {
        (Some(url), method) => {
            Ok(Some(callbacks::target(&url, method.as_deref(), rules, "callbackUrl", "callbackMethod")?))
        }
        (None, Some(_)) => Err(Error::invalid("callbackMethod", "needs callbackUrl")),
        (None, None) => Ok(None),
    }
}

/// `rules`: which callback URLs this deployment takes.
fn parse_send(p: &Params, rules: UrlRules) -> Result<SendRequest> {
    let channel = match p.opt("channel")? {
        None => Channel::Sms,
        Some(c) => {
            Channel::parse(&c).ok_or_else(|| Error::invalid("channel", "must be sms, call, email or whatsapp"))?
        }
    };
    let service = p.bounded("service", 64, true)?.unwrap_or_default();
    let from = p.bounded("from", 254, true)?.unwrap_or_default();
    let to = p.bounded("to", 254, true)?.unwrap_or_default();
    let body = p.bounded("body", 1600, false)?;
    let subject = p.bounded("subject", 998, false)?;
    let language = p.opt("language")?.map(|l| parse_language(&l)).transpose()?;
    // No `body`: the built-in template in `locale`, naming the service, read in a call in that
    // locale's language unless `language` says otherwise. With a `body`, `locale` plays no part
    // (a send with a body is the same request it was before templates existed).
    let (body, language) = match body {
        Some(body) => (body, language.unwrap_or_else(|| DEFAULT_LANGUAGE.to_owned())),
        None => {
            let template = templates::lookup(p.opt("locale")?.as_deref().unwrap_or(templates::DEFAULT_LOCALE))?;
            (template.body(&service), language.unwrap_or_else(|| template.call_language().to_owned()))
        }
    };
    let voice = match p.opt("voice")?.map(|v| v.to_ascii_lowercase()) {
        None => None,
        Some(v) if v == "man" || v == "male" => Some("man".to_owned()),
        Some(v) if v == "woman" || v == "female" => Some("woman".to_owned()),
        Some(_) => return Err(Error::invalid("voice", "must be man or woman")),
    };
    let repeat = p.int("repeat", 1, 5)?.unwrap_or(1) as u8;
    let length = p.int("length", MIN_CODE_LEN.into(), MAX_CODE_LEN.into())?.map_or(DEFAULT_LENGTH, |n| n as u8);
    let timeout_secs =
        p.int("timeout", MIN_TIMEOUT_SECS.into(), MAX_TIMEOUT_SECS.into())?.map_or(DEFAULT_TIMEOUT_SECS, |n| n as u32);
    let guard_time = p.int("guardTime", 0, MAX_TIMEOUT_SECS.into())?.map(|n| n as u32);
    let limits = parse_limits(p)?;
    let web_otp_domain = p.opt("webOtpDomain")?.map(|d| autofill::web_otp_domain(&d)).transpose()?;
    let app_hash = p.opt("appHash")?.map(|h| autofill::app_hash(&h)).transpose()?;
    let callback = parse_callback(p, rules)?;
    Ok(SendRequest {
        service,
        delivery: Delivery {
            channel,
            from,
            to,
            body,
            subject,
            language,
            voice,
            repeat,
            web_otp_domain,
            app_hash,
            callback,
        },
        length,
        timeout_secs,
        guard_time,
        limits,
        idempotency_key: None,
        workflow: p.bounded("workflow", 64, false)?,
        email: p.bounded("email", 254, false)?,
        email_from: p.bounded("emailFrom", 254, false)?,
    })
}

/// The `Idempotency-Key` header, given once at most. Its form (1–255 visible ASCII) is checked
/// with the rest of the request: bytes that are not ASCII come through as non-ASCII text.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>> {
    let mut values = headers.get_all(idempotency::HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(Error::invalid(idempotency::HEADER, "must be given once"));
    }
    Ok(Some(String::from_utf8_lossy(value.as_bytes()).into_owned()))
}

/// `awspolly.ja-JP` or `ja-JP`.
fn parse_language(l: &str) -> Result<String> {
    let code = l.strip_prefix("awspolly.").unwrap_or(l);
    let ok = code.len() <= 8
        && code.split('-').count() == 2
        && code.split('-').all(|part| (2..=3).contains(&part.len()) && part.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok {
        Ok(code.to_owned())
    } else {
        Err(Error::invalid("language", "must be a language code such as en-US or awspolly.ja-JP"))
    }
}

/// `limits`: an ordered map `limitName → key value`, as an object or a string holding one.
pub(crate) fn parse_limits(p: &Params) -> Result<Vec<(String, String)>> {
    let Some(value) = p.json("limits")? else { return Ok(vec![]) };
    let Value::Object(map) = value else {
        return Err(Error::invalid("limits", "must be an object of limit name to key value"));
    };
    if map.len() > MAX_LIMITS_PER_SEND {
        return Err(Error::invalid("limits", format!("at most {MAX_LIMITS_PER_SEND} limits")));
    }
    map.into_iter()
        .map(|(name, v)| match v {
            Value::String(s) if !s.is_empty() && s.len() <= 256 => Ok((name, s)),
            Value::Number(n) => Ok((name, n.to_string())),
            _ => Err(Error::invalid("limits", format!("the value of {name} must be a non-empty string"))),
        })
        .collect()
}
