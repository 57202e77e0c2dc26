//! Factors on DynamoDB (docs/data-model.md, "Factors"): one item per factor in its account and
//! entity's partition; every change one conditional write on that item.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::{
    operation::{delete_item::DeleteItemError, put_item::PutItemError, update_item::UpdateItemError},
    primitives::Blob,
    types::{AttributeValue, ReturnValue},
};

use super::{
    errors,
    items::{factor_partition, from_item, to_item, FactorItem, Key},
    n, s, DynamoStore,
};
use crate::{
    domain::{
        error::{Error, Result},
        factor::{Factor, FactorStatus},
        ids,
        time::Millis,
    },
    ports::FactorStore,
};

/// A conditional update's outcome: applied, or its condition did not hold.
fn applied(out: std::result::Result<(), SdkError<UpdateItemError>>, op: &'static str) -> Result<bool> {
    match out {
        Ok(()) => Ok(true),
        Err(e) => match e.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(false),
            Some(UpdateItemError::TransactionConflictException(_)) => Err(Error::Contended),
            _ => Err(errors::sdk(op, &e)),
        },
    }
}

#[async_trait]
impl FactorStore for DynamoStore {
    async fn put_factor(&self, factor: &Factor) -> Result<()> {
        let item = to_item(&FactorItem::new(factor))?;
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => Err(Error::Contended),
                _ => Err(errors::sdk("PutItem(factor)", &e)),
            },
        }
    }

    async fn get_factor(&self, account_sid: &str, entity: &str, sid: &str) -> Result<Option<Factor>> {
        let item = self.get("GetItem(factor)", &Key::factor(account_sid, entity, sid), true).await?;
        item.map(from_item::<FactorItem, Factor>).transpose()
    }

    async fn list_factors(&self, account_sid: &str, entity: &str) -> Result<Vec<Factor>> {
        // Every sort key of the partition is a factor sid. (A key condition cannot compare with
        // an empty string: DynamoDB refuses `begins_with(sk, "")` as a ValidationException.)
        let items = self.query_prefix("Query(factors)", factor_partition(account_sid, entity), ids::FACTOR).await?;
        let mut all = items.into_iter().map(from_item::<FactorItem, Factor>).collect::<Result<Vec<_>>>()?;
        all.sort_by(|a, b| (a.created_ms, &a.sid).cmp(&(b.created_ms, &b.sid)));
        Ok(all)
    }

    async fn delete_factor(&self, account_sid: &str, entity: &str, sid: &str) -> Result<Option<Factor>> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Key::factor(account_sid, entity, sid).to_item()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match out {
            Ok(out) => out.attributes.map(from_item::<FactorItem, Factor>).transpose(),
            Err(e) => match e.as_service_error() {
                Some(DeleteItemError::TransactionConflictException(_)) => Err(Error::Contended),
                _ => Err(errors::sdk("DeleteItem(factor)", &e)),
            },
        }
    }

    async fn use_factor_step(
        &self,
        account_sid: &str,
        entity: &str,
        sid: &str,
        step: i64,
        confirm: bool,
        now: Millis,
    ) -> Result<bool> {
        let wanted = if confirm { FactorStatus::Unverified } else { FactorStatus::Verified };
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Key::factor(account_sid, entity, sid).to_item()))
            .update_expression("SET #status = :verified, #last = :step, #updated = :now")
            .condition_expression(
                "attribute_exists(pk) AND #status = :wanted AND (attribute_not_exists(#last) OR #last < :step)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#last", "last_step")
            .expression_attribute_names("#updated", "updated_ms")
            .expression_attribute_values(":verified", s(FactorStatus::Verified.as_str()))
            .expression_attribute_values(":wanted", s(wanted.as_str()))
            .expression_attribute_values(":step", n(step))
            .expression_attribute_values(":now", n(now))
            .send()
            .await
            .map(|_| ());
        applied(out, "UpdateItem(factor step)")
    }

    async fn fail_factor_confirm(&self, account_sid: &str, entity: &str, sid: &str, max: u32) -> Result<bool> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Key::factor(account_sid, entity, sid).to_item()))
            .update_expression("ADD #failures :one")
            .condition_expression(
                "attribute_exists(pk) AND #status = :unverified AND (attribute_not_exists(#failures) OR #failures < :max)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#failures", "confirm_failures")
            .expression_attribute_values(":unverified", s(FactorStatus::Unverified.as_str()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max))
            .send()
            .await
            .map(|_| ());
        applied(out, "UpdateItem(factor confirm)")
    }

    async fn reseal_factor(
        &self,
        account_sid: &str,
        entity: &str,
        sid: &str,
        was: &[u8],
        sealed: &[u8],
    ) -> Result<bool> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Key::factor(account_sid, entity, sid).to_item()))
            .update_expression("SET #secret = :sealed")
            .condition_expression("#secret = :was")
            .expression_attribute_names("#secret", "secret")
            .expression_attribute_values(":was", AttributeValue::B(Blob::new(was)))
            .expression_attribute_values(":sealed", AttributeValue::B(Blob::new(sealed)))
            .send()
            .await
            .map(|_| ());
        applied(out, "UpdateItem(factor reseal)")
    }
}
