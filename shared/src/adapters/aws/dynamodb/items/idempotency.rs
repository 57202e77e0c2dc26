//! Idempotency records: a send's `Idempotency-Key` and what it answered, for 24 hours.

use serde::{Deserialize, Serialize};

use super::{bytes, epoch_secs, Key};
use crate::domain::{
    error::{Error, Result},
    idempotency::{IdempotencyRecord, WINDOW_MS},
    time::Millis,
};

/// Kept an hour past the 24 h window (TTL deletion is lazy anyway; the age is checked in code).
const IDEMPOTENCY_TTL_SLACK_SECS: i64 = 3600;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct IdempotencyItem {
    pub pk: String,
    pub sk: String,
    pub ttl: i64,
    pub key: String,
    pub otp_sid: String,
    #[serde(with = "bytes")]
    pub fingerprint: Vec<u8>,
    pub created_ms: Millis,
}

impl IdempotencyItem {
    pub fn new(account_sid: &str, r: &IdempotencyRecord) -> Self {
        let key = Key::idempotency(account_sid, &r.key);
        IdempotencyItem {
            pk: key.pk,
            sk: key.sk,
            ttl: epoch_secs(r.created_ms + WINDOW_MS) + IDEMPOTENCY_TTL_SLACK_SECS,
            key: r.key.clone(),
            otp_sid: r.otp_sid.clone(),
            fingerprint: r.fingerprint.clone(),
            created_ms: r.created_ms,
        }
    }
}

impl TryFrom<IdempotencyItem> for IdempotencyRecord {
    type Error = Error;
    fn try_from(i: IdempotencyItem) -> Result<Self> {
        Ok(IdempotencyRecord { key: i.key, otp_sid: i.otp_sid, fingerprint: i.fingerprint, created_ms: i.created_ms })
    }
}
