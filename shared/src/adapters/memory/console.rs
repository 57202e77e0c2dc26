//! The console's sessions and sign-in counters on the embedded store, under its one lock.

use async_trait::async_trait;

use super::MemoryStore;
use crate::{
    domain::{
        console::ConsoleSession,
        error::{Error, Result},
        time::Millis,
    },
    ports::ConsoleStore,
};

#[async_trait]
impl ConsoleStore for MemoryStore {
    async fn put_console_session(&self, session: &ConsoleSession) -> Result<()> {
        let mut s = self.lock()?;
        // What TTL deletes on DynamoDB: sessions ended before this one began.
        s.console_sessions.retain(|_, old| old.live_at(session.created_ms));
        if s.console_sessions.contains_key(&session.key) {
            return Err(Error::Contended);
        }
        s.console_sessions.insert(session.key.clone(), session.clone());
        Ok(())
    }

    async fn get_console_session(&self, key: &str) -> Result<Option<ConsoleSession>> {
        Ok(self.lock()?.console_sessions.get(key).cloned())
    }

    async fn touch_console_session(&self, key: &str, seen_ms: Millis, _expires_ms: Millis) -> Result<bool> {
        let mut s = self.lock()?;
        Ok(match s.console_sessions.get_mut(key) {
            Some(session) => {
                session.seen_ms = session.seen_ms.max(seen_ms);
                true
            }
            None => false,
        })
    }

    async fn delete_console_session(&self, key: &str) -> Result<()> {
        self.lock()?.console_sessions.remove(key);
        Ok(())
    }

    async fn count_attempt(&self, key: &str, max: u32, now: Millis, expires_ms: Millis) -> Result<bool> {
        let mut s = self.lock()?;
        s.sign_in_counters.retain(|_, (_, expires)| *expires > now);
        let (count, _) = s.sign_in_counters.entry(key.to_owned()).or_insert((0, expires_ms));
        if *count >= max {
            return Ok(false);
        }
        *count += 1;
        Ok(true)
    }
}
