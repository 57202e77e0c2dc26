//! A factor's item (docs/data-model.md, "Factors"): one per factor, in its account and
//! entity's partition, sorted by sid. No TTL: a factor lives until it is deleted.

use serde::{Deserialize, Serialize};

use super::{bytes, corrupt, esc, opt_bytes, Key};
use crate::domain::{
    error::{Error, Result},
    factor::{Factor, FactorKind, FactorStatus, Passkey, PasskeyCredential, TotpAlgorithm, TotpParams},
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
    /// A passkey's are TOTP's defaults, unused.
    pub algorithm: String,
    pub digits: u8,
    pub period: u32,
    /// A TOTP seed, sealed; absent for a passkey.
    #[serde(default, with = "bytes", skip_serializing_if = "Vec::is_empty")]
    pub secret: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_step: Option<i64>,
    #[serde(default)]
    pub confirm_failures: u32,
    pub created_ms: Millis,
    pub updated_ms: Millis,
    /// A passkey's (`Passkey`): present on passkey factors only.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    pub user_handle: Option<Vec<u8>>,
    /// The registration ceremony waiting for `confirm`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    pub ceremony: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    pub credential_id: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transports: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    pub static_state: Option<Vec<u8>>,
    /// Written only over the value read (`use_passkey`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    pub dynamic_state: Option<Vec<u8>>,
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
            user_handle: f.passkey.as_ref().map(|p| p.user_handle.clone()),
            ceremony: f.passkey.as_ref().and_then(|p| p.ceremony.clone()),
            credential_id: credential(f).map(|c| c.id.clone()),
            transports: credential(f).map(|c| c.transports),
            static_state: credential(f).map(|c| c.static_state.clone()),
            dynamic_state: credential(f).map(|c| c.dynamic_state.clone()),
        }
    }
}

fn credential(f: &Factor) -> Option<&PasskeyCredential> {
    f.passkey.as_ref()?.credential.as_ref()
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
            passkey: match i.user_handle {
                None => None,
                Some(user_handle) => Some(Passkey {
                    user_handle,
                    ceremony: i.ceremony,
                    credential: match (i.credential_id, i.static_state, i.dynamic_state) {
                        (Some(id), Some(static_state), Some(dynamic_state)) => Some(PasskeyCredential {
                            id,
                            transports: i.transports.unwrap_or(0),
                            static_state,
                            dynamic_state,
                        }),
                        (None, None, None) => None,
                        _ => return corrupt("credential")(),
                    },
                }),
            },
        })
    }
}
