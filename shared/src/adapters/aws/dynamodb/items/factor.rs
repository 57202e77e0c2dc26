//! A factor's item (docs/data-model.md, "Factors"): one per factor, in its account and
//! entity's partition, sorted by sid. No TTL: a factor lives until it is deleted.

use serde::{Deserialize, Serialize};

use super::{bytes, corrupt, esc, Key};
use crate::domain::{
    error::{Error, Result},
    factor::{Factor, FactorKind, FactorStatus, TotpAlgorithm, TotpParams},
    time::Millis,
};

pub(crate) const FACTOR_PREFIX: &str = "FACTOR#";

impl Key {
    /// One factor: `FACTOR#{account}#{entity}`, sort key its sid.
    pub fn factor(account_sid: &str, entity: &str, sid: &str) -> Self {
        Key::new(factor_partition(account_sid, entity), sid)
    }
}

/// The partition of one entity's factors.
pub(crate) fn factor_partition(account_sid: &str, entity: &str) -> String {
    format!("{FACTOR_PREFIX}{}#{}", esc(account_sid), esc(entity))
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FactorItem {
    pub pk: String,
    pub sk: String,
    pub account_sid: String,
    pub entity: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    pub status: String,
    pub algorithm: String,
    pub digits: u8,
    pub period: u32,
    #[serde(with = "bytes")]
    pub secret: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_step: Option<i64>,
    #[serde(default)]
    pub confirm_failures: u32,
    pub created_ms: Millis,
    pub updated_ms: Millis,
}

impl FactorItem {
    pub fn new(f: &Factor) -> Self {
        let key = Key::factor(&f.account_sid, &f.entity, &f.sid);
        FactorItem {
            pk: key.pk,
            sk: key.sk,
            account_sid: f.account_sid.clone(),
            entity: f.entity.clone(),
            kind: f.kind.as_str().to_owned(),
            friendly_name: f.friendly_name.clone(),
            status: f.status.as_str().to_owned(),
            algorithm: f.totp.algorithm.as_str().to_owned(),
            digits: f.totp.digits,
            period: f.totp.period_secs,
            secret: f.sealed_secret.clone(),
            last_step: f.last_step,
            confirm_failures: f.confirm_failures,
            created_ms: f.created_ms,
            updated_ms: f.updated_ms,
        }
    }
}

impl TryFrom<FactorItem> for Factor {
    type Error = Error;
    fn try_from(i: FactorItem) -> Result<Self> {
        Ok(Factor {
            sid: i.sk,
            account_sid: i.account_sid,
            entity: i.entity,
            kind: FactorKind::parse(&i.kind).map_or_else(corrupt("kind"), Ok)?,
            friendly_name: i.friendly_name,
            status: FactorStatus::parse(&i.status).map_or_else(corrupt("status"), Ok)?,
            totp: TotpParams {
                algorithm: TotpAlgorithm::parse(&i.algorithm).map_or_else(corrupt("algorithm"), Ok)?,
                digits: i.digits,
                period_secs: i.period,
            },
            sealed_secret: i.secret,
            last_step: i.last_step,
            confirm_failures: i.confirm_failures,
            created_ms: i.created_ms,
            updated_ms: i.updated_ms,
        })
    }
}
