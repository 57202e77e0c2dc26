//! Delivery receipts on the embedded store: the event a provider message id names, moved
//! forward under the store's one lock.

use async_trait::async_trait;

use super::MemoryStore;
use crate::{
    domain::{
        error::Result,
        insights,
        otp::ChannelStatus,
        receipts::{Receipt, ReceiptOutcome},
    },
    ports::ReceiptStore,
};

#[async_trait]
impl ReceiptStore for MemoryStore {
    async fn apply_receipt(&self, r: &Receipt) -> Result<ReceiptOutcome> {
        let mut locked = self.lock()?;
        let s = &mut *locked;
        // A scan of the OTPs kept (at most `max_otps`) rather than an index of message ids
        // kept up by every send: receipts are rare in the dev server, sends are not.
        let names = |e: &crate::domain::otp::ChannelEvent| {
            e.target_sid.as_deref().is_some_and(|id| id == r.provider_id || r.also_id.as_deref() == Some(id))
        };
        // An account's own provider reports on that account's messages only, and a deployment
        // route's reports never on a message an account's own provider sent (as DynamoDB keeps
        // the two lookups apart): which one sent it is the event's route, one of the account's
        // providers or not.
        let accounts = &s.accounts;
        let by_own_provider = |o: &crate::domain::otp::Otp, e: &crate::domain::otp::ChannelEvent| {
            let own = |route: &String| {
                accounts.get(&o.account_sid).is_some_and(|a| a.policy.providers.iter().any(|p| p.name == *route))
            };
            e.route.as_ref().is_some_and(own)
        };
        let reported = |o: &crate::domain::otp::Otp, e: &crate::domain::otp::ChannelEvent| {
            names(e)
                && match &r.account_sid {
                    Some(a) => *a == o.account_sid && by_own_provider(o, e),
                    None => !by_own_provider(o, e),
                }
        };
        let Some(otp) = s.otps.values_mut().find(|o| o.events.iter().any(|e| reported(o, e))) else {
            return Ok(ReceiptOutcome::Unknown);
        };
        let i = otp.events.iter().position(|e| reported(otp, e)).expect("found above");
        if otp.events[i].status != ChannelStatus::Sent {
            return Ok(ReceiptOutcome::Unchanged);
        }
        let old = self.heard(&s.accounts, otp).then(|| (**otp).clone());
        let counted = insights::outcome_cell(otp, otp.events[i].channel, Some(ChannelStatus::Sent), r.status);
        let event = &mut otp.events[i];
        event.status = r.status;
        if r.error_code.is_some() {
            event.error_code.clone_from(&r.error_code);
        }
        if r.error_message.is_some() {
            event.error_message.clone_from(&r.error_message);
        }
        if old.is_some() {
            self.tell(old, otp);
        }
        if let Some(cell) = counted {
            s.count(cell);
        }
        Ok(ReceiptOutcome::Applied)
    }
}
