//! Factors on DynamoDB (docs/data-model.md, "Factors"): one item per factor in its account and
//! entity's partition; every change one conditional write on that item.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    operation::delete_item::DeleteItemError,
    primitives::Blob,
    types::{AttributeValue, ReturnValue},
};

use super::{
    errors,
    items::{attr, factor_partition, from_item, to_item, FactorItem, Key, FACTOR_PREFIX},
    n, s, DynamoStore,
};
use crate::{
    domain::{
        error::{Error, Result},
        factor::{Factor, FactorStatus, PasskeyCredential},
        ids,
        time::Millis,
    },
    ports::{FactorScan, FactorStore, FactorsPage},
};

#[async_trait]
impl FactorStore for DynamoStore {
    async fn put_factor(&self, factor: &Factor) -> Result<()> {
        let item = to_item(&FactorItem::new(factor))?;
        self.put_new("PutItem(factor)", item).await
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
            .condition_expression("attribute_exists(pk)")
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match out {
            Ok(out) => out.attributes.map(from_item::<FactorItem, Factor>).transpose(),
            Err(e) => match e.as_service_error() {
                // Nothing to delete: gone already (a concurrent delete won).
                Some(DeleteItemError::ConditionalCheckFailedException(_)) => Ok(None),
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
        self.update_factor(
            "UpdateItem(factor step)",
            Key::factor(account_sid, entity, sid),
            "SET #status = :verified, #last = :step, #updated = :now",
            "attribute_exists(pk) AND #status = :wanted AND (attribute_not_exists(#last) OR #last < :step)",
            &[("#status", "status"), ("#last", "last_step"), ("#updated", "updated_ms")],
            vec![
                (":verified", s(FactorStatus::Verified.as_str())),
                (":wanted", s(wanted.as_str())),
                (":step", n(step)),
                (":now", n(now)),
            ],
        )
        .await
    }

    async fn fail_factor_confirm(&self, account_sid: &str, entity: &str, sid: &str, max: u32) -> Result<bool> {
        self.update_factor(
            "UpdateItem(factor confirm)",
            Key::factor(account_sid, entity, sid),
            "ADD #failures :one",
            "attribute_exists(pk) AND #status = :unverified AND (attribute_not_exists(#failures) OR #failures < :max)",
            &[("#status", "status"), ("#failures", "confirm_failures")],
            vec![(":unverified", s(FactorStatus::Unverified.as_str())), (":one", n(1)), (":max", n(max))],
        )
        .await
    }

    async fn confirm_passkey(
        &self,
        account_sid: &str,
        entity: &str,
        sid: &str,
        ceremony: &[u8],
        credential: &PasskeyCredential,
        now: Millis,
    ) -> Result<bool> {
        let b = |v: &[u8]| AttributeValue::B(Blob::new(v));
        self.update_factor(
            "UpdateItem(passkey confirm)",
            Key::factor(account_sid, entity, sid),
            "SET #status = :verified, #id = :id, #transports = :transports, #static = :static, \
                 #dynamic = :dynamic, #updated = :now REMOVE #ceremony",
            "attribute_exists(pk) AND #status = :unverified AND #ceremony = :ceremony",
            &[
                ("#status", "status"),
                ("#ceremony", "ceremony"),
                ("#id", "credential_id"),
                ("#transports", "transports"),
                ("#static", "static_state"),
                ("#dynamic", "dynamic_state"),
                ("#updated", "updated_ms"),
            ],
            vec![
                (":verified", s(FactorStatus::Verified.as_str())),
                (":unverified", s(FactorStatus::Unverified.as_str())),
                (":ceremony", b(ceremony)),
                (":id", b(&credential.id)),
                (":transports", n(credential.transports)),
                (":static", b(&credential.static_state)),
                (":dynamic", b(&credential.dynamic_state)),
                (":now", n(now)),
            ],
        )
        .await
    }

    async fn use_passkey(
        &self,
        account_sid: &str,
        entity: &str,
        sid: &str,
        was: &[u8],
        new: &[u8],
        now: Millis,
    ) -> Result<bool> {
        self.update_factor(
            "UpdateItem(passkey use)",
            Key::factor(account_sid, entity, sid),
            "SET #dynamic = :new, #updated = :now",
            "attribute_exists(pk) AND #status = :verified AND #dynamic = :was",
            &[("#status", "status"), ("#dynamic", "dynamic_state"), ("#updated", "updated_ms")],
            vec![
                (":verified", s(FactorStatus::Verified.as_str())),
                (":was", AttributeValue::B(Blob::new(was))),
                (":new", AttributeValue::B(Blob::new(new))),
                (":now", n(now)),
            ],
        )
        .await
    }

    async fn reseal_factor(
        &self,
        account_sid: &str,
        entity: &str,
        sid: &str,
        was: &[u8],
        sealed: &[u8],
    ) -> Result<bool> {
        self.update_factor(
            "UpdateItem(factor reseal)",
            Key::factor(account_sid, entity, sid),
            "SET #secret = :sealed",
            "#secret = :was",
            &[("#secret", "secret")],
            vec![(":was", AttributeValue::B(Blob::new(was))), (":sealed", AttributeValue::B(Blob::new(sealed)))],
        )
        .await
    }
}

impl DynamoStore {
    /// One conditional `UpdateItem` of a factor: true when written, false when its condition
    /// did not hold.
    async fn update_factor(
        &self,
        what: &'static str,
        key: Key,
        update: &str,
        condition: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .update_expression(update)
            .condition_expression(condition);
        for (placeholder, name) in names {
            req = req.expression_attribute_names(*placeholder, *name);
        }
        for (placeholder, value) in values {
            req = req.expression_attribute_values(placeholder, value);
        }
        errors::conditional(req.send().await.map(|_| ()), what)
    }
}

#[async_trait]
impl FactorScan for DynamoStore {
    async fn factors_page(&self, after: Option<&str>) -> Result<FactorsPage> {
        let start = match after {
            Some(cursor) => {
                let (pk, sk) = cursor.split_once('\n').ok_or_else(|| Error::invalid("after", "not a cursor"))?;
                Some(HashMap::from([(attr::PK.to_owned(), s(pk)), (attr::SK.to_owned(), s(sk))]))
            }
            None => None,
        };
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(#pk, :prefix)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_values(":prefix", s(FACTOR_PREFIX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| errors::sdk("Scan(factors)", &e))?;
        let factors = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item::<FactorItem, Factor>)
            .collect::<Result<Vec<_>>>()?;
        let next = out.last_evaluated_key.filter(|k| !k.is_empty()).and_then(|k| {
            let text = |name: &str| k.get(name).and_then(|v| v.as_s().ok()).cloned();
            Some(format!("{}\n{}", text(attr::PK)?, text(attr::SK)?))
        });
        Ok(FactorsPage { factors, next })
    }
}
