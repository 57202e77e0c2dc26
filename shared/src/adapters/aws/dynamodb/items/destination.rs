//! Destinations: one item per account and destination, holding every service's supersede
//! pointer, the default limit's counter and the failed-verify streak.

use serde::{Deserialize, Serialize};

use super::{attr, corrupt, epoch_secs, Item, DAY_SECS};
use crate::domain::{
    error::{Error, Result},
    otp::{Destination, FailureStreak, Superseded},
    time::Millis,
};

/// The attribute of a destination item that holds one service's pointer.
pub(crate) fn service_attr(service: &str) -> String {
    format!("svc:{service}")
}

/// One service's pointer to a destination (the `svc:{service}` map of its item).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DestinationEntry {
    pub current: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_guard: Option<u32>,
    pub current_expires_ms: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_cancel_at_ms: Option<Millis>,
}

impl From<&Destination> for DestinationEntry {
    fn from(d: &Destination) -> Self {
        DestinationEntry {
            current: d.current.clone(),
            current_guard: d.current_guard,
            current_expires_ms: d.current_expires_ms,
            previous_sid: d.previous.as_ref().map(|p| p.sid.clone()),
            previous_cancel_at_ms: d.previous.as_ref().map(|p| p.cancel_at_ms),
        }
    }
}

impl TryFrom<DestinationEntry> for Destination {
    type Error = Error;
    fn try_from(i: DestinationEntry) -> Result<Self> {
        let previous = match (i.previous_sid, i.previous_cancel_at_ms) {
            (Some(sid), Some(cancel_at_ms)) => Some(Superseded { sid, cancel_at_ms }),
            (None, None) => None,
            _ => return corrupt("previous")(),
        };
        Ok(Destination {
            current: i.current,
            current_guard: i.current_guard,
            current_expires_ms: i.current_expires_ms,
            previous,
        })
    }
}

/// The pointer of `service` in a destination item, if it has one.
pub(crate) fn destination_of(item: &Item, service: &str) -> Result<Option<Destination>> {
    let Some(value) = item.get(&service_attr(service)) else { return Ok(None) };
    let entry: DestinationEntry = serde_dynamo::from_attribute_value(value.clone()).map_err(|e| {
        // Not the key: a destination item's key holds the phone number or email.
        tracing::error!(error = %e, "corrupt destination pointer");
        Error::Internal
    })?;
    Destination::try_from(entry).map(Some)
}

/// What a write of `d` sets as its item's `ttl`: a day past its OTP's expiry. That is never
/// before another service's pointer in the item is done with: timeouts are at most a day
/// (30–86400 s) and every other pointer was written earlier; the default limit's window
/// (60 s) ends sooner still.
pub(crate) fn destination_ttl(d: &Destination) -> i64 {
    epoch_secs(d.current_expires_ms) + DAY_SECS
}

/// A destination item's failure streak (none recorded: the default).
pub(crate) fn failures_of(item: &Item) -> Result<FailureStreak> {
    let number = |name: &str| item.get(name).map(|v| v.as_n().ok().and_then(|n| n.parse::<i64>().ok()));
    match (number(attr::FAILS), number(attr::FAILS_AT)) {
        (None, _) => Ok(FailureStreak::default()),
        (Some(Some(count)), Some(Some(last_ms))) => match u32::try_from(count) {
            Ok(count) => Ok(FailureStreak { count, last_ms }),
            Err(_) => corrupt("fails")(),
        },
        _ => corrupt("destination failures")(),
    }
}
