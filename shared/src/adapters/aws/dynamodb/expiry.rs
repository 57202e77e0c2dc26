//! The expiry sweeper's store on DynamoDB (docs/data-model.md, "Due index"): OTPs stored
//! pending carry `gsi2pk = DUE#{shard}` (512 shards, by sid) and `gsi2sk = {deadline}#{sid}`,
//! so "due at now" is one key range of each shard, read a page at a time; settling one is a
//! conditional `UpdateItem` that also takes it out of the index. Entries the version before
//! the shards wrote (`gsi2pk = DUE`) are read as one more shard. Which shards one sweep reads
//! is its slice's (`callbacks::SweepSlice`: the deployed sweepers are one per slice).

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    operation::update_item::UpdateItemError,
    types::{AttributeValue, ReturnValuesOnConditionCheckFailure},
};

use super::{
    errors,
    items::{attr, deadline, due_partition, from_item, gsi2sk, gsi2sk_due_before, Item, Key, OtpItem, DUE_SHARDS},
    n,
    otps::LEAVE_DUE_INDEX,
    s,
    table::GSI2,
    DynamoStore, Expr,
};
use crate::{
    domain::{
        error::{Error, Result},
        otp::{Otp, OtpStatus},
        time::Millis,
    },
    ports::{DuePage, ExpiryStore},
};

/// Stored pending, past its timeout, and not canceled by a supersede first: what
/// `Otp::status_at` calls expired.
const EXPIRED_AT_NOW: &str = "#status = :pending AND #expires_ms <= :now AND \
    (attribute_not_exists(#cancel_at_ms) OR #cancel_at_ms > :now OR #cancel_at_ms >= #expires_ms)";

/// Stored pending and past the end of the guard time of the send that superseded it.
const CANCELED_AT_NOW: &str =
    "#status = :pending AND #cancel_at_ms = :at AND #cancel_at_ms <= :now AND #cancel_at_ms < #expires_ms";

/// What one conditional write of an OTP came to.
enum Written {
    Yes,
    /// The condition failed; the item as it is (None: there is none).
    Refused(Option<Item>),
}

impl DynamoStore {
    async fn update_otp(
        &self,
        op: &'static str,
        key: &Key,
        update: &str,
        condition: &str,
        expr: Expr,
    ) -> Result<Written> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Written::Yes),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => Ok(Written::Refused(c.item().cloned())),
                Some(UpdateItemError::TransactionConflictException(_)) => Err(Error::Contended),
                _ => Err(errors::sdk(op, &e)),
            },
        }
    }

    /// An OTP refused as not due: if it is still pending its index key was stale (a supersede
    /// undone leaves the earlier deadline), so put it back at its real deadline; if it is not
    /// pending yet still indexed, take it out. Either way the next sweeps stop reading it.
    async fn repair_due_key(&self, key: &Key, otp: &Otp) -> Result<()> {
        let status = Expr::default().name(attr::STATUS).value(":st", s(otp.status.as_str()));
        let (update, expr) = if otp.status == OtpStatus::Pending {
            ("SET #gsi2sk = :due", status.name(attr::GSI2SK).value(":due", s(gsi2sk(deadline(otp), &otp.sid))))
        } else {
            (LEAVE_DUE_INDEX, status)
        };
        // Conditional on what was read: a concurrent change wins and is left alone.
        let _ = self
            .update_otp("UpdateItem(due_key)", key, update, "#status = :st AND attribute_exists(gsi2pk)", expr)
            .await?;
        Ok(())
    }
}

/// Where a page of the due index ended: its `LastEvaluatedKey` (the index's key and the
/// table's, all strings), kept as JSON between two Queries of the same sweep.
fn cursor_of(key: Item) -> Result<String> {
    let key: std::collections::BTreeMap<String, String> = key
        .into_iter()
        .map(|(name, value)| match value {
            AttributeValue::S(v) => Ok((name, v)),
            _ => {
                tracing::error!(attribute = %name, "a key of the due index that is not a string");
                Err(Error::Internal)
            }
        })
        .collect::<Result<_>>()?;
    serde_json::to_string(&key).map_err(|_| Error::Internal)
}

fn cursor_key(cursor: &str) -> Result<Item> {
    let key: std::collections::BTreeMap<String, String> = serde_json::from_str(cursor).map_err(|_| Error::Internal)?;
    Ok(key.into_iter().map(|(name, v)| (name, AttributeValue::S(v))).collect())
}

#[async_trait]
impl ExpiryStore for DynamoStore {
    /// The 512 shards of the index, and one more: the legacy `DUE` partition (`due_partition`).
    fn due_shards(&self) -> usize {
        DUE_SHARDS + 1
    }

    async fn due_otps(&self, shard: usize, now: Millis, limit: usize, after: Option<&str>) -> Result<DuePage> {
        #[derive(serde::Deserialize)]
        struct Due {
            account_sid: String,
            sid: String,
        }
        let start = after.map(cursor_key).transpose()?;
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI2)
            .key_condition_expression("#pk = :due AND #sk < :before")
            .expression_attribute_names("#pk", attr::GSI2PK)
            .expression_attribute_names("#sk", attr::GSI2SK)
            .expression_attribute_values(":due", s(due_partition(shard)))
            .expression_attribute_values(":before", s(gsi2sk_due_before(now)))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| errors::sdk("Query(due)", &e))?;
        let due = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let due: Due = serde_dynamo::from_item(item).map_err(|e| {
                    tracing::error!(error = %e, "corrupt due index entry");
                    Error::Internal
                })?;
                Ok((due.account_sid, due.sid))
            })
            .collect::<Result<_>>()?;
        let next = out.last_evaluated_key.map(cursor_of).transpose()?;
        Ok(DuePage { due, next })
    }

    async fn settle(&self, account_sid: &str, otp_sid: &str, now: Millis) -> Result<bool> {
        let key = Key::otp(account_sid, otp_sid);
        let base = Expr::default()
            .name(attr::STATUS)
            .name(attr::EXPIRES_MS)
            .name(attr::CANCEL_AT_MS)
            .name(attr::UPDATED_MS)
            .value(":pending", s(OtpStatus::Pending.as_str()))
            .value(":now", n(now));
        // Most due OTPs simply expired: try that first, dated at the timeout itself.
        let expired = base.clone().value(":expired", s(OtpStatus::Expired.as_str()));
        let update = format!("SET #status = :expired, #updated_ms = #expires_ms {LEAVE_DUE_INDEX}");
        let current = match self.update_otp("UpdateItem(expire)", &key, &update, EXPIRED_AT_NOW, expired).await? {
            Written::Yes => return Ok(true),
            Written::Refused(None) => return Ok(false),
            Written::Refused(Some(item)) => from_item::<OtpItem, Otp>(item)?,
        };
        let now_status = current.status_at(now);
        if current.status != OtpStatus::Pending || now_status == OtpStatus::Pending {
            self.repair_due_key(&key, &current).await?;
            return Ok(false);
        }
        let (OtpStatus::Canceled, Some(at)) = (now_status, current.cancel_at_ms) else {
            // Expired after all: it changed between the two reads; the next sweep looks again.
            return Ok(false);
        };
        let canceled =
            base.value(":canceled", s(OtpStatus::Canceled.as_str())).value(":at", AttributeValue::N(at.to_string()));
        let update = format!("SET #status = :canceled, #updated_ms = :at {LEAVE_DUE_INDEX}");
        let written = self.update_otp("UpdateItem(supersede)", &key, &update, CANCELED_AT_NOW, canceled).await?;
        Ok(matches!(written, Written::Yes))
    }
}
