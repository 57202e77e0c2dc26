//! The console's sessions and sign-in counters on DynamoDB (docs/data-model.md, "Console"):
//! one small item each, every write conditional, TTL deleting what has ended.

use async_trait::async_trait;

use super::{
    errors,
    items::{attr, console_ttl, from_item, to_item, ConsoleSessionItem, Key},
    n, DynamoStore,
};
use crate::{
    domain::{console::ConsoleSession, error::Result, time::Millis},
    ports::ConsoleStore,
};

const SEEN_MS: &str = "seen_ms";

#[async_trait]
impl ConsoleStore for DynamoStore {
    async fn put_console_session(&self, session: &ConsoleSession) -> Result<()> {
        let item = to_item(&ConsoleSessionItem::new(session))?;
        self.put_new("PutItem(console_session)", item).await
    }

    async fn get_console_session(&self, key: &str) -> Result<Option<ConsoleSession>> {
        let item = self.get("GetItem(console_session)", &Key::console_session(key), true).await?;
        item.map(from_item::<ConsoleSessionItem, ConsoleSession>).transpose()
    }

    async fn touch_console_session(&self, key: &str, seen_ms: Millis, expires_ms: Millis) -> Result<bool> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Key::console_session(key).to_item()))
            .update_expression("SET #seen = :seen, #ttl = :ttl")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#seen", SEEN_MS)
            .expression_attribute_names("#ttl", attr::TTL)
            .expression_attribute_values(":seen", n(seen_ms))
            .expression_attribute_values(":ttl", n(console_ttl(expires_ms)))
            .send()
            .await;
        errors::conditional(out, "UpdateItem(console_session)")
    }

    async fn delete_console_session(&self, key: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Key::console_session(key).to_item()))
            .send()
            .await
            .map_err(|e| errors::sdk("DeleteItem(console_session)", &e))?;
        Ok(())
    }

    async fn count_attempt(&self, key: &str, max: u32, _now: Millis, expires_ms: Millis) -> Result<bool> {
        // The key names the window, so a counter is never reset: it only counts up to `max`.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Key::sign_in_counter(key).to_item()))
            .update_expression("ADD #count :one SET #ttl = :ttl")
            .condition_expression("attribute_not_exists(#count) OR #count < :max")
            .expression_attribute_names("#count", attr::COUNT)
            .expression_attribute_names("#ttl", attr::TTL)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max))
            .expression_attribute_values(":ttl", n(console_ttl(expires_ms)))
            .send()
            .await;
        errors::conditional(out, "UpdateItem(sign_in_counter)")
    }
}
