//! Factors on the embedded store, under its one lock: each change is checked and made in one
//! step, as DynamoDB's conditional writes make it.

use async_trait::async_trait;

use super::MemoryStore;
use crate::{
    domain::{
        error::{Error, Result},
        factor::{Factor, FactorStatus, PasskeyCredential},
        time::Millis,
    },
    ports::{FactorScan, FactorStore, FactorsPage},
};

fn key(account_sid: &str, entity: &str, sid: &str) -> (String, String, String) {
    (account_sid.to_owned(), entity.to_owned(), sid.to_owned())
}

#[async_trait]
impl FactorStore for MemoryStore {
    async fn put_factor(&self, factor: &Factor) -> Result<()> {
        let mut s = self.lock()?;
        let k = key(&factor.account_sid, &factor.entity, &factor.sid);
        if s.factors.contains_key(&k) {
            return Err(Error::Contended);
        }
        s.factors.insert(k, factor.clone());
        Ok(())
    }

    async fn get_factor(&self, account_sid: &str, entity: &str, sid: &str) -> Result<Option<Factor>> {
        Ok(self.lock()?.factors.get(&key(account_sid, entity, sid)).cloned())
    }

    async fn list_factors(&self, account_sid: &str, entity: &str) -> Result<Vec<Factor>> {
        let s = self.lock()?;
        let from = key(account_sid, entity, "");
        let mut all: Vec<Factor> = s
            .factors
            .range(from..)
            .take_while(|((a, e, _), _)| a == account_sid && e == entity)
            .map(|(_, f)| f.clone())
            .collect();
        all.sort_by(|a, b| (a.created_ms, &a.sid).cmp(&(b.created_ms, &b.sid)));
        Ok(all)
    }

    async fn delete_factor(&self, account_sid: &str, entity: &str, sid: &str) -> Result<Option<Factor>> {
        Ok(self.lock()?.factors.remove(&key(account_sid, entity, sid)))
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
        let mut s = self.lock()?;
        let Some(f) = s.factors.get_mut(&key(account_sid, entity, sid)) else { return Ok(false) };
        let wanted = if confirm { FactorStatus::Unverified } else { FactorStatus::Verified };
        if f.status != wanted || f.last_step.is_some_and(|last| last >= step) {
            return Ok(false);
        }
        f.status = FactorStatus::Verified;
        f.last_step = Some(step);
        f.updated_ms = now;
        Ok(true)
    }

    async fn fail_factor_confirm(&self, account_sid: &str, entity: &str, sid: &str, max: u32) -> Result<bool> {
        let mut s = self.lock()?;
        let Some(f) = s.factors.get_mut(&key(account_sid, entity, sid)) else { return Ok(false) };
        if f.status != FactorStatus::Unverified || f.confirm_failures >= max {
            return Ok(false);
        }
        f.confirm_failures += 1;
        Ok(true)
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
        let mut s = self.lock()?;
        let Some(f) = s.factors.get_mut(&key(account_sid, entity, sid)) else { return Ok(false) };
        let Some(pk) = f.passkey.as_mut() else { return Ok(false) };
        if f.status != FactorStatus::Unverified || pk.ceremony.as_deref() != Some(ceremony) {
            return Ok(false);
        }
        pk.ceremony = None;
        pk.credential = Some(credential.clone());
        f.status = FactorStatus::Verified;
        f.updated_ms = now;
        Ok(true)
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
        let mut s = self.lock()?;
        let Some(f) = s.factors.get_mut(&key(account_sid, entity, sid)) else { return Ok(false) };
        let verified = f.status == FactorStatus::Verified;
        let Some(c) = f.passkey.as_mut().and_then(|p| p.credential.as_mut()) else { return Ok(false) };
        if !verified || c.dynamic_state != was {
            return Ok(false);
        }
        c.dynamic_state = new.to_vec();
        f.updated_ms = now;
        Ok(true)
    }

    async fn reseal_factor(
        &self,
        account_sid: &str,
        entity: &str,
        sid: &str,
        was: &[u8],
        sealed: &[u8],
    ) -> Result<bool> {
        let mut s = self.lock()?;
        match s.factors.get_mut(&key(account_sid, entity, sid)) {
            Some(f) if f.sealed_secret == was => {
                f.sealed_secret = sealed.to_vec();
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl FactorScan for MemoryStore {
    async fn factors_page(&self, after: Option<&str>) -> Result<FactorsPage> {
        let s = self.lock()?;
        let start = match after {
            Some(cursor) => {
                let mut parts = cursor.splitn(3, '\n').map(str::to_owned);
                let key = (parts.next(), parts.next(), parts.next());
                let (Some(a), Some(e), Some(f)) = key else { return Err(Error::invalid("after", "not a cursor")) };
                std::ops::Bound::Excluded((a, e, f))
            }
            None => std::ops::Bound::Unbounded,
        };
        let factors: Vec<Factor> =
            s.factors.range((start, std::ops::Bound::Unbounded)).take(PAGE).map(|(_, f)| f.clone()).collect();
        let next = (factors.len() == PAGE)
            .then(|| factors.last().map(|f| format!("{}\n{}\n{}", f.account_sid, f.entity, f.sid)))
            .flatten();
        Ok(FactorsPage { factors, next })
    }
}

/// Factors a page of `factors_page` holds at most.
const PAGE: usize = 500;
