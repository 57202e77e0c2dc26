//! `POST /2fa/receipts/{provider}`: delivery reports from a provider of the customer's own
//! (`adapters::provider`), signed the Standard Webhooks way with that provider's secret, each
//! moving the event whose `targetSid` is its `messageId` forward (`domain::receipts`). Served
//! by the function that sends (it holds the provider's secret), and by the dev server.
//!
//! `POST /2fa/receipts/{accountSid}/{provider}`: the same from a provider of an account's own
//! (`domain::providers`), signed with that provider's secret; it moves only that account's
//! events (a report naming another account's message is `unknown` and changes nothing).

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::post,
    Json,
};
use serde_json::{json, Value};

use crate::{
    adapters::provider::MAX_MESSAGE_ID_LEN,
    domain::{
        callbacks,
        error::Error,
        otp::ChannelStatus,
        receipts::{self, Receipt, ReceiptOutcome},
    },
    http::{ApiError, Routes},
    ports::Deps,
};

const MAX_ERROR_CODE_LEN: usize = 64;
const MAX_ERROR_MESSAGE_LEN: usize = 512;

/// The receipt route (and its path, for the OpenAPI check).
pub fn routes() -> Routes {
    Routes::new()
        .route("/2fa/receipts/{provider}", post(receive))
        .route("/2fa/receipts/{accountSid}/{provider}", post(receive_for_account))
}

async fn receive_for_account(
    State(deps): State<Deps>,
    Path((account_sid, provider)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let provider = crate::http::strip_format_suffix(&provider);
    // Unsigned: 401 before anything is read.
    if headers.get("webhook-signature").is_none_or(|v| v.is_empty()) {
        return Err(Error::Unauthenticated.into());
    }
    // An account or provider that is not there: 404, as the path names nothing.
    let account = deps.store.get_account(&account_sid).await?.ok_or(Error::NotFound)?;
    let own = account.policy.providers.iter().find(|p| p.name == provider).ok_or(Error::NotFound)?;
    let opened = own.open(&deps.keys, &account.sid).map_err(|_| {
        tracing::warn!(account = %account.sid, provider = %provider, "provider secret does not open: receipt refused");
        Error::Unauthenticated
    })?;
    let payload = verified(&opened.key, &headers, &body, provider)?;
    let mut receipt = parse(payload)?;
    receipt.account_sid = Some(account.sid.clone());
    applied(&deps, &receipt).await
}

async fn receive(
    State(deps): State<Deps>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // A provider this deployment does not have has no key to sign with: refused like a bad
    // signature, so the answer does not tell which providers exist.
    let provider = crate::http::strip_format_suffix(&provider);
    let key = deps.dispatcher.receipt_key(provider).ok_or(Error::Unauthenticated)?;
    let payload = verified(key, &headers, &body, provider)?;
    let receipt = parse(payload)?;
    applied(&deps, &receipt).await
}

/// The body, if the headers sign it with `key` (Standard Webhooks, within the tolerance);
/// 401 otherwise.
fn verified<'b>(key: &[u8], headers: &HeaderMap, body: &'b Bytes, provider: &str) -> Result<&'b str, Error> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let payload = std::str::from_utf8(body).map_err(|_| Error::Unauthenticated)?;
    let now_secs = chrono::Utc::now().timestamp();
    let signed = callbacks::verify(
        key,
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        payload,
        now_secs,
    );
    if !signed {
        tracing::warn!(provider = %provider, "receipt with a bad or stale signature refused");
        return Err(Error::Unauthenticated);
    }
    Ok(payload)
}

async fn applied(deps: &Deps, receipt: &Receipt) -> Result<Response, ApiError> {
    let outcome = receipts::apply(deps.store.as_ref(), receipt).await?;
    let outcome = match outcome {
        ReceiptOutcome::Applied => "applied",
        ReceiptOutcome::Unchanged => "unchanged",
        ReceiptOutcome::Unknown => "unknown",
    };
    // 200 whatever the outcome: a report for a message that is not (or no longer) ours, or
    // that came late, is not worth the provider's retries.
    Ok(Json(json!({ "code": 200, "message": "OK", "outcome": outcome })).into_response())
}

/// `{"messageId", "status": "sent|delivered|failed|undelivered", "errorCode"?, "errorMessage"?}`;
/// a 400 naming the field that is wrong. `sent` is taken and changes nothing.
fn parse(payload: &str) -> Result<Receipt, Error> {
    let v: Value = serde_json::from_str(payload).map_err(|_| Error::invalid("body", "must be a JSON object"))?;
    let v = v.as_object().ok_or_else(|| Error::invalid("body", "must be a JSON object"))?;
    let text = |name: &'static str, max: usize, required: bool| -> Result<Option<String>, Error> {
        match v.get(name) {
            None | Some(Value::Null) if !required => Ok(None),
            Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= max => Ok(Some(s.clone())),
            _ => Err(Error::invalid(name, format!("must be a string of 1 to {max} characters"))),
        }
    };
    let provider_id = text("messageId", MAX_MESSAGE_ID_LEN, true)?.unwrap_or_default();
    let status = match v.get("status").and_then(Value::as_str) {
        Some(s @ ("sent" | "delivered" | "failed" | "undelivered")) => {
            ChannelStatus::parse(s).ok_or_else(|| Error::invalid("status", "unknown"))?
        }
        _ => return Err(Error::invalid("status", "must be sent, delivered, failed or undelivered")),
    };
    Ok(Receipt {
        provider_id,
        status,
        error_code: text("errorCode", MAX_ERROR_CODE_LEN, false)?,
        error_message: text("errorMessage", MAX_ERROR_MESSAGE_LEN, false)?,
        // A provider's report names its message alone: found through the `MSG#` lookup.
        target: None,
        also_id: None,
        account_sid: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_the_field_it_gets_wrong() {
        let bad = |p: &str| match parse(p) {
            Err(Error::InvalidParameter { param, .. }) => param.into_owned(),
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(bad("[]"), "body");
        assert_eq!(bad("{"), "body");
        assert_eq!(bad(r#"{"status":"delivered"}"#), "messageId");
        assert_eq!(bad(r#"{"messageId":"m1","status":"read"}"#), "status");
        assert_eq!(bad(r#"{"messageId":"m1","status":"failed","errorCode":7}"#), "errorCode");
        let r = parse(r#"{"messageId":"m1","status":"failed","errorCode":"E1","errorMessage":"no route"}"#).unwrap();
        assert_eq!(r, Receipt::by_id("m1", ChannelStatus::Failed, Some("E1".into()), Some("no route".into())));
    }
}
