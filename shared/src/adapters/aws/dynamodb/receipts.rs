//! Delivery receipts on DynamoDB (docs/data-model.md, "Receipts index"): the OTP a provider
//! message id belongs to is one `Query` of the sparse `gsi3` (`update_event` writes `gsi3pk`
//! with the id), then the event moves forward in one conditional `UpdateItem`.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;

use super::{
    errors,
    items::{attr, gsi3pk, Key},
    n, s,
    table::GSI3,
    DynamoStore, Expr,
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
        #[derive(serde::Deserialize)]
        struct Found {
            pk: String,
            sk: String,
            provider_event: u32,
        }
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI3)
            .key_condition_expression("#pk = :id")
            .expression_attribute_names("#pk", attr::GSI3PK)
            .expression_attribute_values(":id", s(gsi3pk(&r.provider_id)))
            .send()
            .await
            .map_err(|e| errors::sdk("Query(receipt)", &e))?;
        let Some(item) = out.items.unwrap_or_default().into_iter().next() else {
            return Ok(ReceiptOutcome::Unknown);
        };
        let found: Found = serde_dynamo::from_item(item).map_err(|e| {
            tracing::error!(error = %e, "corrupt receipts index entry");
            Error::Internal
        })?;

        // The event must still be `sent` and still be this dispatch: forward only, once.
        let i = found.provider_event;
        let mut update = format!("SET #events[{i}].#status = :status");
        let mut expr = Expr::default()
            .name(attr::EVENTS)
            .name(attr::STATUS)
            .value(":status", s(r.status.as_str()))
            .value(":sent", s(ChannelStatus::Sent.as_str()))
            .value(":id", s(&r.provider_id));
        if let Some(code) = &r.error_code {
            update.push_str(&format!(", #events[{i}].error_code = :code"));
            expr = expr.value(":code", s(code));
        }
        if let Some(message) = &r.error_message {
            update.push_str(&format!(", #events[{i}].error_message = :message"));
            expr = expr.value(":message", s(message));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Key { pk: found.pk, sk: found.sk }.to_item()))
            .update_expression(update)
            .condition_expression(format!(
                "size(#events) > :i AND #events[{i}].target_sid = :id AND #events[{i}].#status = :sent"
            ))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.clone().value(":i", n(i)).values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(ReceiptOutcome::Applied),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(ReceiptOutcome::Unchanged),
                Some(UpdateItemError::TransactionConflictException(_)) => Err(Error::Contended),
                _ => Err(errors::sdk("UpdateItem(receipt)", &e)),
            },
        }
    }
}
