//! Delivery receipts on DynamoDB (docs/data-model.md, "Receipts"): the OTP and event a
//! provider message id belongs to is one strongly consistent `GetItem` of its lookup item
//! (`MSG#{id}`, written by `update_event` for each dispatch), then the event moves forward in
//! one conditional `UpdateItem`.

use async_trait::async_trait;
use std::collections::HashMap;

use aws_sdk_dynamodb::{
    operation::update_item::UpdateItemError,
    types::{AttributeValue, ReturnValuesOnConditionCheckFailure},
};

use super::{
    errors,
    items::{attr, from_item, Dispatch, Key, MessageItem},
    n, s, DynamoStore, Expr,
};
use crate::{
    domain::{
        error::{Error, Result},
        otp::ChannelStatus,
        receipts::{Receipt, ReceiptOutcome},
    },
    ports::ReceiptStore,
};

#[async_trait]
impl ReceiptStore for DynamoStore {
    async fn apply_receipt(&self, r: &Receipt) -> Result<ReceiptOutcome> {
        let (otp_key, i) = match &r.target {
            // The receipt names its OTP and event (End User Messaging's `context`): no lookup.
            // What it says is checked by the update's condition, not trusted.
            Some(t) => (Key::otp(&t.account_sid, &t.otp_sid), t.event),
            None => {
                // Strongly consistent: a receipt that follows its dispatch closely still finds it.
                // A report of an account's own provider looks in that account's lookups only.
                let key = match &r.account_sid {
                    Some(account) => Key::account_message(account, &r.provider_id),
                    None => Key::message(&r.provider_id),
                };
                let Some(item) = self.get("GetItem(message)", &key, true).await? else {
                    return Ok(ReceiptOutcome::Unknown);
                };
                let found: Dispatch = from_item::<MessageItem, _>(item)?;
                (found.otp, found.event as usize)
            }
        };

        // The event must still be `sent` and still be this dispatch: forward only, once.
        let mut update = format!("SET #events[{i}].#status = :status");
        // An account's own provider reports on that account's messages only: the OTP the
        // lookup names must be that account's.
        let mut condition = format!(
            "attribute_exists(pk) AND size(#events) > :i AND #events[{i}].target_sid IN (:id, :also) AND #events[{i}].#status = :sent"
        );
        let mut expr = Expr::default()
            .name(attr::EVENTS)
            .name(attr::STATUS)
            .value(":status", s(r.status.as_str()))
            .value(":sent", s(ChannelStatus::Sent.as_str()))
            .value(":id", s(&r.provider_id))
            .value(":also", s(r.also_id.as_deref().unwrap_or(&r.provider_id)));
        if let Some(code) = &r.error_code {
            update.push_str(&format!(", #events[{i}].error_code = :code"));
            expr = expr.value(":code", s(code));
        }
        if let Some(message) = &r.error_message {
            update.push_str(&format!(", #events[{i}].error_message = :message"));
            expr = expr.value(":message", s(message));
        }
        if let Some(account) = &r.account_sid {
            condition.push_str(" AND #account_sid = :account");
            expr = expr.name(attr::ACCOUNT_SID).value(":account", s(account));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(otp_key.to_item()))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.clone().value(":i", n(i)).values())
            // The item as it was, when the condition failed: no second read to tell a late
            // receipt from one that names no dispatch of ours.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(ReceiptOutcome::Applied),
            Err(e) => match e.as_service_error() {
                // A receipt that named an OTP or event that is not (or no longer) there, or
                // is not this message's: as unknown as one with no lookup item.
                Some(UpdateItemError::ConditionalCheckFailedException(c))
                    if r.target.is_some() || r.account_sid.is_some() =>
                {
                    let also = r.also_id.as_deref();
                    let account_matches = r.account_sid.as_ref().is_none_or(|a| of_account(c.item(), a));
                    let named = names_dispatch(c.item(), i, &r.provider_id)
                        || also.is_some_and(|a| names_dispatch(c.item(), i, a));
                    Ok(if account_matches && named { ReceiptOutcome::Unchanged } else { ReceiptOutcome::Unknown })
                }
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(ReceiptOutcome::Unchanged),
                Some(UpdateItemError::TransactionConflictException(_)) => Err(Error::Contended),
                _ => Err(errors::sdk("UpdateItem(receipt)", &e)),
            },
        }
    }
}

/// Whether `item` (an OTP as it was) is account `account_sid`'s.
fn of_account(item: Option<&HashMap<String, AttributeValue>>, account_sid: &str) -> bool {
    item.and_then(|item| item.get(attr::ACCOUNT_SID)?.as_s().ok()).is_some_and(|a| a == account_sid)
}

/// Whether `item` (an OTP as it was) has event `i` dispatched as `provider_id`.
fn names_dispatch(item: Option<&HashMap<String, AttributeValue>>, i: usize, provider_id: &str) -> bool {
    let event = item.and_then(|item| item.get(attr::EVENTS)?.as_l().ok()?.get(i)?.as_m().ok());
    event.and_then(|e| e.get("target_sid")?.as_s().ok()).is_some_and(|id| id == provider_id)
}
