//! The console's items (docs/data-model.md, "Console"): a session under a hash of its id, and
//! a sign-in counter per address or account and window; both deleted by TTL.

use serde::{Deserialize, Serialize};

use super::{epoch_secs, Key};
use crate::domain::{
    console::ConsoleSession,
    error::{Error, Result},
    time::Millis,
};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ConsoleSessionItem {
    pub pk: String,
    pub sk: String,
    pub ttl: i64,
    pub account_sid: String,
    pub token_fingerprint: String,
    pub created_ms: Millis,
    pub seen_ms: Millis,
}

impl ConsoleSessionItem {
    pub fn new(s: &ConsoleSession) -> Self {
        let key = Key::console_session(&s.key);
        ConsoleSessionItem {
            pk: key.pk,
            sk: key.sk,
            ttl: console_ttl(s.expires_ms()),
            account_sid: s.account_sid.clone(),
            token_fingerprint: s.token_fingerprint.clone(),
            created_ms: s.created_ms,
            seen_ms: s.seen_ms,
        }
    }
}

/// The TTL of a console item that ends at `expires_ms` (a minute later; the code checks the
/// time itself, TTL deletion being lazy).
pub(crate) fn console_ttl(expires_ms: Millis) -> i64 {
    epoch_secs(expires_ms) + 60
}

impl TryFrom<ConsoleSessionItem> for ConsoleSession {
    type Error = Error;
    fn try_from(i: ConsoleSessionItem) -> Result<Self> {
        let key = i.pk.strip_prefix(CONSOLE_SESSION_PREFIX).ok_or(Error::Internal)?.to_owned();
        Ok(ConsoleSession {
            key,
            account_sid: i.account_sid,
            token_fingerprint: i.token_fingerprint,
            created_ms: i.created_ms,
            seen_ms: i.seen_ms,
        })
    }
}

pub(crate) const CONSOLE_SESSION_PREFIX: &str = "CONSOLE#";
pub(crate) const SIGN_IN_PREFIX: &str = "SIGNIN#";
