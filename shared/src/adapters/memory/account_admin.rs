//! The admin command's account changes on the embedded store (`ports::AccountAdminStore`).
//! The embedded store keeps one copy of each account, so each change is one write.

use async_trait::async_trait;

use super::MemoryStore;
use crate::{
    domain::{
        account::Account,
        cidr::Cidr,
        error::{Error, Result},
    },
    ports::AccountAdminStore,
};

#[async_trait]
impl AccountAdminStore for MemoryStore {
    async fn list_accounts(&self) -> Result<Vec<Account>> {
        let mut all: Vec<Account> = self.lock()?.accounts.values().cloned().collect();
        all.sort_by(|a, b| (a.created_ms, &a.sid).cmp(&(b.created_ms, &b.sid)));
        Ok(all)
    }

    async fn set_suspended(&self, account: &Account, suspended: bool) -> Result<()> {
        let mut s = self.lock()?;
        s.accounts.get_mut(&account.sid).ok_or(Error::NotFound)?.suspended = suspended;
        Ok(())
    }

    async fn replace_token_hash(&self, account: &Account, token_hash: &[u8]) -> Result<()> {
        let mut s = self.lock()?;
        let stored = s.accounts.get_mut(&account.sid).ok_or(Error::NotFound)?;
        if stored.token_hash != account.token_hash {
            return Err(Error::Contended);
        }
        stored.token_hash = token_hash.to_vec();
        Ok(())
    }

    async fn set_allowed_ips(&self, account: &Account, allowed: &[Cidr]) -> Result<()> {
        let mut s = self.lock()?;
        s.accounts.get_mut(&account.sid).ok_or(Error::NotFound)?.allowed_ips = allowed.to_vec();
        Ok(())
    }
}
